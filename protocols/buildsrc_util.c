/*
 * buildsrc_util: small helpers of the build-output reader (messages, paths, files, JSON
 * values, parts). Shared through buildsrc_priv.h.
 */
#include "buildsrc_priv.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "esp_cmd.h"

const char bsrc_adv_build[] = "check that the build finished and that the directory is the one "
                              "the build tool wrote";

/* ---- small helpers -------------------------------------------------------------------- */

/* Control characters (from untrusted names) shown as '?' in messages. */
void bsrc_printable(char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            *s = '?';
}

int bsrc_fail(struct esp_error *err, int code, const char *advice, const char *fmt, ...)
{
    char msg[sizeof(err->message)];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    bsrc_printable(msg); /* names and paths come from the files */
    return esp_error_set(err, code, ESP_STAGE_PREPARE, advice, "%s", msg);
}

void bsrc_note(struct buildsrc *src, const char *fmt, ...)
{
    if (src->n_notes >= BUILDSRC_MAX_NOTES)
        return;
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) >= 0) {
        bsrc_printable(s);
        src->notes[src->n_notes++] = s;
    }
    va_end(ap);
}

void buildsrc_safe_name(const char *s, char *out, size_t max)
{
    size_t o = 0;
    if (max == 0)
        return;
    for (; s && *s && o + 1 < max; s++) {
        unsigned char c = (unsigned char)*s;
        char w = (isalnum(c) || c == '_' || c == '-' || c == '.') && c < 0x80 ? (char)c : '-';
        if (o == 0 && w == '.')
            continue;
        if (w == '.' && o > 0 && out[o - 1] == '.')
            continue; /* never ".." */
        if (w == '-' && o > 0 && out[o - 1] == '-')
            continue;
        out[o++] = w;
    }
    while (o > 0 && (out[o - 1] == '-' || out[o - 1] == '.'))
        o--;
    out[o] = '\0';
}

bool bsrc_has_suffix(const char *s, const char *suf)
{
    size_t n = strlen(s), m = strlen(suf);
    return n >= m && strcmp(s + n - m, suf) == 0;
}

const char *bsrc_base_name(const char *p)
{
    const char *b = strrchr(p, '/');
    return b ? b + 1 : p;
}

char *bsrc_join(const char *a, const char *b)
{
    char *s = NULL;
    if (asprintf(&s, "%s%s%s", a, a[0] && !bsrc_has_suffix(a, "/") ? "/" : "", b) < 0)
        return NULL;
    return s;
}

bool bsrc_is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

bool bsrc_is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Reads a whole regular file of at most max bytes. 0, -ENOENT, -EFBIG, -EISDIR, -errno. */
int bsrc_read_all(const char *path, size_t max, uint8_t **data, size_t *len)
{
    *data = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return -EISDIR;
    }
    if ((uint64_t)st.st_size > max) {
        close(fd);
        return -EFBIG;
    }
    size_t n = (size_t)st.st_size;
    uint8_t *buf = malloc(n + 1);
    if (!buf) {
        close(fd);
        return -ENOMEM;
    }
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            int e = r < 0 ? -errno : -EIO;
            free(buf);
            close(fd);
            return e;
        }
        got += (size_t)r;
    }
    close(fd);
    buf[n] = '\0';
    *data = buf;
    *len = n;
    return 0;
}

json_object *bsrc_parse_json(const char *json, size_t len, const char *what, struct esp_error *err)
{
    if (len > BUILDSRC_MAX_JSON_BYTES) {
        bsrc_fail(err, -EINVAL, bsrc_adv_build, "%s: too large for a build description (%zu bytes)",
                  what, len);
        return NULL;
    }
    json_tokener *tok = json_tokener_new();
    if (!tok) {
        bsrc_fail(err, -ENOMEM, NULL, "out of memory");
        return NULL;
    }
    json_object *o = json_tokener_parse_ex(tok, json, (int)len);
    enum json_tokener_error je = json_tokener_get_error(tok);
    if (o && (size_t)json_tokener_get_parse_end(tok) < len) {
        /* trailing bytes: only whitespace is allowed */
        for (size_t i = json_tokener_get_parse_end(tok); i < len && o; i++)
            if (!isspace((unsigned char)json[i])) {
                json_object_put(o);
                o = NULL;
                je = json_tokener_error_parse_unexpected;
            }
    }
    json_tokener_free(tok);
    if (!o || je != json_tokener_success) {
        json_object_put(o);
        bsrc_fail(err, -EINVAL, bsrc_adv_build, "%s: not valid JSON (%s)", what,
                  je == json_tokener_continue ? "it ends early" : json_tokener_error_desc(je));
        return NULL;
    }
    if (!json_object_is_type(o, json_type_object)) {
        json_object_put(o);
        bsrc_fail(err, -EINVAL, bsrc_adv_build, "%s: not a JSON object", what);
        return NULL;
    }
    return o;
}

const char *bsrc_get_str(json_object *o, const char *key)
{
    json_object *v;
    if (!o || !json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
        return NULL;
    return json_object_get_string(v);
}

/* An offset: a JSON integer, or a string "0x1000" / "4096". 0 or -EINVAL. */
int bsrc_get_offset(json_object *v, uint32_t *out)
{
    if (json_object_is_type(v, json_type_int)) {
        int64_t x = json_object_get_int64(v);
        if (x < 0 || x > (int64_t)UINT32_MAX)
            return -EINVAL;
        *out = (uint32_t)x;
        return 0;
    }
    if (!json_object_is_type(v, json_type_string))
        return -EINVAL;
    const char *s = json_object_get_string(v);
    int base = 10;
    if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        base = 16;
        s += 2;
    }
    if (!*s || strlen(s) > (base == 16 ? 8u : 10u))
        return -EINVAL;
    uint64_t x = 0;
    for (; *s; s++) {
        int d;
        if (isdigit((unsigned char)*s))
            d = *s - '0';
        else if (base == 16 && isxdigit((unsigned char)*s))
            d = tolower((unsigned char)*s) - 'a' + 10;
        else
            return -EINVAL;
        x = x * (uint64_t)base + (uint64_t)d;
    }
    if (x > UINT32_MAX)
        return -EINVAL;
    *out = (uint32_t)x;
    return 0;
}

/* Adds a part to set (path copied). Returns the part or NULL (err set). */
struct buildsrc_part *bsrc_add_part(struct buildsrc_set *set, uint32_t offset,
                                    enum buildsrc_role role, const char *path, const char *what,
                                    struct esp_error *err)
{
    if (set->n_parts >= BUILDSRC_MAX_PARTS) {
        bsrc_fail(err, -EINVAL, bsrc_adv_build, "%s: more than %d files to flash", what,
                  BUILDSRC_MAX_PARTS);
        return NULL;
    }
    if (!path || !*path || strlen(path) > 1000) {
        bsrc_fail(err, -EINVAL, bsrc_adv_build, "%s: a file at 0x%x has no usable path", what,
                  offset);
        return NULL;
    }
    struct buildsrc_part *p = &set->parts[set->n_parts];
    memset(p, 0, sizeof(*p));
    if (!(p->path = strdup(path))) {
        bsrc_fail(err, -ENOMEM, NULL, "out of memory");
        return NULL;
    }
    p->offset = offset;
    p->role = role;
    set->n_parts++;
    return p;
}

void bsrc_set_init(struct buildsrc_set *set)
{
    memset(set, 0, sizeof(*set));
    set->flash_mode = -1;
    set->header_mode = -1;
}
