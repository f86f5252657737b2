/*
 * fuzz_line_fw_desc: the reader of the line's firmware description
 * (daemon/line_fw_desc.c), the text another station wrote into the shared
 * `firmware` table: {"format":1,"manifest":{...},"regions":[{file, offset, size,
 * sha256, md5}]}. Input: the text. Aborts if a description is accepted with no
 * region or more than CATALOG_MAX_REGIONS, a region the fetch could not use (a bad
 * file name, hash, MD5 or size), one file named twice with different contents, or a
 * manifest that is not a JSON object; or if an error comes without a message.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "line_fw_desc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond)
{
    if (!cond)
        abort();
}

static int md5_ok(const char *s)
{
    if (!s[0])
        return 1;
    if (strlen(s) != 32)
        return 0;
    for (size_t i = 0; i < 32; i++)
        if (!strchr("0123456789abcdef", s[i]))
            return 0;
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    check(text != NULL);
    memcpy(text, data, size);
    text[size] = '\0';
    struct line_fw_desc d;
    char err[300] = "";
    int rc = line_fw_desc_parse(text, "fw", "1.0", &d, err, sizeof(err));
    if (rc < 0) {
        check(rc == -ENOENT || rc == -EBADMSG || rc == -ENOMEM);
        check(err[0] != '\0');
    } else {
        check(rc == 0 && d.manifest != NULL);
        check(d.n_files >= 1 && d.n_files <= CATALOG_MAX_REGIONS);
        json_object *m = json_tokener_parse(d.manifest);
        check(m && json_object_is_type(m, json_type_object));
        json_object_put(m);
        for (size_t i = 0; i < d.n_files; i++) {
            const struct line_fw_desc_file *f = &d.files[i];
            check(catalog_name_valid(f->file) && line_fw_sha_ok(f->sha) && md5_ok(f->md5));
            check(f->size >= 0 && f->size <= (int64_t)CATALOG_MAX_FILE_BYTES);
            for (size_t k = 0; k < i; k++)
                if (strcmp(d.files[k].file, f->file) == 0)
                    check(strcmp(d.files[k].sha, f->sha) == 0 && d.files[k].size == f->size);
        }
    }
    line_fw_desc_free(&d);
    free(text);
    return 0;
}
