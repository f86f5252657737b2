/*
 * fuzz_manifest: the firmware-set manifest parser and the whole in-memory
 * validation (image checks, overlaps, fit). Input: the manifest text, then
 * optionally a NUL byte and the bytes every region file resolves to (so image
 * parsing is reached); a file named "missing.bin" does not exist.
 * Must never crash or leak; the report must agree with the return code.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "catalog.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct blob {
    const uint8_t *data;
    size_t len;
};

static void check(int cond)
{
    if (!cond)
        abort();
}

static int load(void *ctx, const char *file, uint8_t **data, size_t *len)
{
    const struct blob *b = ctx;
    check(catalog_name_valid(file));
    if (strcmp(file, "missing.bin") == 0)
        return -ENOENT;
    *data = malloc(b->len ? b->len : 1);
    if (!*data)
        return -ENOMEM;
    if (b->len)
        memcpy(*data, b->data, b->len);
    *len = b->len;
    return 0;
}

static void check_report(const struct catalog_report *rep, int rc)
{
    check(rep->n + rep->n_dropped == rep->n_errors + rep->n_warnings);
    check((rc == 0) == (rep->n_errors == 0) || rc == -ENOMEM);
    for (size_t i = 0; i < rep->n; i++) {
        check(rep->items[i].message[0] != '\0');
        for (const char *p = rep->items[i].message; *p; p++)
            check((unsigned char)*p >= 0x20 && *p != 0x7f);
        check(rep->items[i].region >= -1 && rep->items[i].region < CATALOG_MAX_REGIONS);
    }
    char buf[2048];
    catalog_report_format(rep, buf, sizeof(buf));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, 0, size);
    size_t mlen = nul ? (size_t)(nul - data) : size;
    struct blob b = {nul ? nul + 1 : NULL, nul ? size - mlen - 1 : 0};

    struct catalog_report rep;
    catalog_report_init(&rep);
    struct catalog_manifest *m = NULL;
    int rc = catalog_manifest_parse((const char *)data, mlen, &m, &rep);
    check_report(&rep, rc);
    if (rc == 0) {
        check(m && m->name && m->version && m->n_regions >= 1);
        check(catalog_name_valid(m->name) && catalog_name_valid(m->version));
        for (size_t i = 0; i < m->n_regions; i++)
            check(catalog_name_valid(m->regions[i].file) && m->regions[i].offset % 4 == 0);
    } else {
        check(m == NULL);
    }
    catalog_manifest_free(m);
    catalog_report_free(&rep);

    int vrc = catalog_validate_mem((const char *)data, mlen, load, &b, &rep);
    check_report(&rep, vrc);
    check(rc == 0 || vrc != 0); /* a manifest error is a validation error */
    catalog_report_free(&rep);
    return 0;
}
