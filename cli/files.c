/*
 * files: command-line numbers, image files and host-side MD5.
 *
 * Files are read whole into memory (flash images are at most a few MB); an
 * empty, unreadable or oversized file is refused with a message naming it.
 */
#include "cli.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/evp.h>

#include "zcompress.h"

/* Larger than any ESP flash: a file this big is a mistake (wrong file, device node). */
#define CLI_MAX_FILE (256u * 1024 * 1024)

int cli_parse_u32(const char *s, uint32_t *out)
{
    if (!s || !*s || *s == '-' || *s == '+')
        return -EINVAL;
    int base = 10;
    const char *p = s;
    if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
        base = 16;
        p += 2;
        if (!*p)
            return -EINVAL;
    }
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(p, &end, base);
    if (errno || end == p)
        return -EINVAL;
    unsigned long long mul = 1;
    if (*end == 'k' || *end == 'K')
        mul = 1024;
    else if (*end == 'm' || *end == 'M')
        mul = 1024 * 1024;
    if (mul != 1) {
        end++;
        if (*end == 'B' || *end == 'b')
            end++;
    }
    if (*end != '\0')
        return -EINVAL;
    if (v > UINT32_MAX / mul)
        return -ERANGE;
    *out = (uint32_t)(v * mul);
    return 0;
}

int cli_file_load(struct cli_file *f, struct esp_error *err)
{
    const char *adv = "check the file name and that the file is readable";
    FILE *fp = fopen(f->path, "rb");
    if (!fp)
        return esp_error_set(err, -errno, ESP_STAGE_PREPARE, adv, "cannot open '%s': %s", f->path,
                             strerror(errno));
    struct stat st;
    if (fstat(fileno(fp), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(fp);
        return esp_error_set(err, -EINVAL, ESP_STAGE_PREPARE, adv, "'%s' is not a regular file",
                             f->path);
    }
    if (st.st_size == 0) {
        fclose(fp);
        return esp_error_set(err, -EINVAL, ESP_STAGE_PREPARE,
                             "an empty file usually means a failed build or download",
                             "'%s' is empty", f->path);
    }
    if ((unsigned long long)st.st_size > CLI_MAX_FILE) {
        fclose(fp);
        return esp_error_set(err, -EINVAL, ESP_STAGE_PREPARE, adv,
                             "'%s' is too large for any flash (%lld bytes)", f->path,
                             (long long)st.st_size);
    }
    size_t len = (size_t)st.st_size;
    uint8_t *data = malloc(len);
    if (!data) {
        fclose(fp);
        return esp_error_set(err, -ENOMEM, ESP_STAGE_PREPARE, NULL, "out of memory reading '%s'",
                             f->path);
    }
    size_t got = fread(data, 1, len, fp);
    int rerr = ferror(fp) ? errno : 0;
    fclose(fp);
    if (got != len) {
        free(data);
        return esp_error_set(err, rerr ? -rerr : -EIO, ESP_STAGE_PREPARE, adv,
                             "cannot read '%s': %s", f->path,
                             rerr ? strerror(rerr) : "file changed while reading");
    }
    f->data = data;
    f->len = len;
    cli_md5(data, len, f->md5);
    return 0;
}

void cli_files_free(struct cli_file *files, size_t n)
{
    if (!files)
        return;
    for (size_t i = 0; i < n; i++) {
        free(files[i].data);
        free(files[i].zdata);
    }
    free(files);
}

int cli_file_zopfli(struct cli_file *f, bool *zopfli, struct esp_error *err)
{
    enum zcompress_method m = ZCOMPRESS_ZLIB9;
    free(f->zdata);
    f->zdata = NULL;
    f->zlen = 0;
    int rc = zcompress_best(f->data, f->len, ZCOMPRESS_ITERATIONS, &f->zdata, &f->zlen, &m);
    if (rc < 0)
        return esp_error_set(err, rc, ESP_STAGE_PREPARE, NULL, "cannot compress '%s'", f->path);
    *zopfli = m == ZCOMPRESS_ZOPFLI;
    return 0;
}

void cli_md5(const uint8_t *data, size_t len, uint8_t md5[16])
{
    unsigned int n = 16;
    if (EVP_Digest(data, len, md5, &n, EVP_md5(), NULL) != 1)
        memset(md5, 0, 16);
}

void cli_hex(const uint8_t *bytes, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[bytes[i] >> 4];
        out[2 * i + 1] = digits[bytes[i] & 0xf];
    }
    out[2 * n] = '\0';
}
