/*
 * fuzz_buildsrc: the build descriptor parsers (ESP-IDF flasher_args.json, PlatformIO
 * idedata.json, ESP Web Tools manifest.json) and the checks of what they describe.
 * Input: one selector byte (0 flasher_args, 1 idedata, 2 web tools; others: all three),
 * the descriptor text, then optionally a NUL byte and the bytes every named file holds
 * (so image, partition-table and merged-image checks are reached).
 * Must never crash or leak; a refusal has a printable message naming something, and a set
 * that passes the checks has a chip and at most BUILDSRC_MAX_PARTS parts.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buildsrc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef int (*parse_fn)(const char *, size_t, const char *, struct buildsrc *, struct esp_error *);

static void check(int cond)
{
    if (!cond)
        abort();
}

static void check_text(const char *s)
{
    check(s[0] != '\0');
    for (const char *p = s; *p; p++)
        check((unsigned char)*p >= 0x20 || *p == '\n');
}

static void run(parse_fn fn, const char *json, size_t len, const uint8_t *blob, size_t blen)
{
    struct buildsrc *src = calloc(1, sizeof(*src));
    if (!src)
        return;
    struct esp_error err;
    esp_error_clear(&err);
    int rc = fn(json, len, "fuzz.json", src, &err);
    check(rc == 0 || rc == -EINVAL || rc == -ENOMEM);
    check(src->n_sets <= BUILDSRC_MAX_SETS);
    if (rc < 0) {
        check(err.code == rc);
        check_text(err.message);
        buildsrc_free(src);
        return;
    }
    check(src->n_sets >= 1);
    for (size_t s = 0; s < src->n_sets; s++) {
        check(src->sets[s].n_parts <= BUILDSRC_MAX_PARTS);
        for (size_t i = 0; i < src->sets[s].n_parts; i++) {
            struct buildsrc_part *p = &src->sets[s].parts[i];
            check(p->path && p->path[0]);
            if (blob && blen) {
                p->data = malloc(blen);
                if (!p->data)
                    continue;
                memcpy(p->data, blob, blen);
                p->len = blen;
            }
        }
    }
    if (blob && blen) {
        bool all = true;
        for (size_t s = 0; s < src->n_sets; s++)
            for (size_t i = 0; i < src->sets[s].n_parts; i++)
                all &= src->sets[s].parts[i].data != NULL;
        if (all) {
            esp_error_clear(&err);
            int crc = buildsrc_check(src, &err);
            check(crc == 0 || crc == -EINVAL || crc == -ENOTSUP || crc == -ENOMEM);
            if (crc == 0) {
                for (size_t s = 0; s < src->n_sets; s++)
                    check(src->sets[s].chip != NULL);
            } else {
                check_text(err.message);
            }
        }
    }
    json_object *j = buildsrc_to_json(src);
    check(j != NULL);
    check(json_object_to_json_string(j) != NULL);
    json_object_put(j);
    buildsrc_free(src);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const parse_fn fns[] = {buildsrc_parse_flasher_args, buildsrc_parse_idedata,
                                   buildsrc_parse_web_tools};
    if (size < 1)
        return 0;
    unsigned sel = data[0];
    data++;
    size--;
    const uint8_t *nul = memchr(data, 0, size);
    size_t jlen = nul ? (size_t)(nul - data) : size;
    const uint8_t *blob = nul ? nul + 1 : NULL;
    size_t blen = nul ? size - jlen - 1 : 0;
    for (unsigned i = 0; i < 3; i++)
        if (sel == i || sel > 2)
            run(fns[i], (const char *)data, jlen, blob, blen);
    char in[64], name[16];
    size_t n = jlen < sizeof(in) - 1 ? jlen : sizeof(in) - 1;
    memcpy(in, data, n);
    in[n] = '\0';
    buildsrc_safe_name(in, name, sizeof(name));
    check(!strstr(name, "..") && name[0] != '.');
    return 0;
}
