/*
 * catalog_priv.h: what the firmware catalog's files share: catalog.c (the store on
 * disk, listing, loading, deleting, file plumbing), catalog_manifest.c (names and
 * manifest parsing), catalog_validate.c (the report and the checks of a set's files)
 * and catalog_import.c (storing a set). Not for other modules: they use catalog.h.
 */
#ifndef ESPSTATION_CATALOG_PRIV_H
#define ESPSTATION_CATALOG_PRIV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>
#include <openssl/evp.h>

#include "catalog.h"

#define MANIFEST_FILE "manifest.json"
#define INDEX_FILE "index.json"
#define MANIFEST_MAX_BYTES (256u * 1024)
#define INDEX_MAX_BYTES (256u * 1024)
#define TMP_IMPORT ".import-"
#define TMP_DELETE ".delete-"

struct catalog {
    char *root; /* <data_dir>/firmware */
};

/* A manifest as parsed, with what is known to be usable for later checks. */
struct cat_parsed {
    struct catalog_manifest *m;
    bool chip_ok;
    bool region_offset_ok[CATALOG_MAX_REGIONS];
    bool region_file_ok[CATALOG_MAX_REGIONS];
    bool region_kind_ok[CATALOG_MAX_REGIONS];
    uint32_t slot_bytes; /* dual layout: the size of one slot (user2 offset - 0x1000), else 0 */
};

/* A region's file as read for validation and import. */
struct cat_loaded {
    uint8_t *data;
    size_t len;
    bool ok; /* present, non-empty, within limits */
};

/* ---- catalog_manifest.c ---------------------------------------------------------------- */

extern const char cat_name_rule[]; /* what catalog_name_valid allows, for messages */

int cat_kind_from_string(const char *s); /* enum catalog_kind, or -EINVAL */

/*
 * Fills p->m as far as the manifest allows, adding every problem to rep.
 * Returns -EINVAL when the text is not a JSON object at all (nothing usable),
 * -ENOMEM, else 0 (check rep->n_errors). p->m is set (free it) unless -ENOMEM.
 */
int cat_manifest_parse(const char *json, size_t len, struct cat_parsed *p,
                       struct catalog_report *rep);

/* ---- catalog_validate.c ---------------------------------------------------------------- */

/* Adds a problem (region -1: the whole set); at most REPORT_CAP kept, the rest counted. */
void cat_rep_add(struct catalog_report *rep, bool warning, int region, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/*
 * Whole validation. On return *p holds the parsed manifest (free with
 * catalog_manifest_free) and *lp the loaded files (cat_free_loaded), both also on
 * error. Returns 0 if rep gained no errors, -EINVAL if it did, -ENOMEM.
 */
int cat_validate_core(const char *json, size_t len, catalog_load_fn load, void *ctx,
                      struct catalog_report *rep, struct cat_parsed *p, struct cat_loaded **lp);
void cat_free_loaded(struct cat_loaded *l, size_t n); /* NULL allowed */

/* catalog_load_fn reading <ctx: a directory>/<file>. */
int cat_dir_load(void *ctx, const char *file, uint8_t **data, size_t *len);

/* Reads <dir>/manifest.json into a malloc'd NUL-terminated buffer; problems into rep. */
int cat_read_manifest(const char *dir, char **json, size_t *len, struct catalog_report *rep);

/* ---- catalog.c ------------------------------------------------------------------------- */

/* String value without embedded NULs; NULL otherwise. */
const char *cat_json_str(json_object *v);

/* Hex digest of data into out (2 * digest size + 1 bytes). 0, -ENOMEM. */
int cat_digest_hex(const EVP_MD *md, const uint8_t *data, size_t len, char *out);

char *cat_path_join(const char *a, const char *b);                 /* "a/b", malloc'd */
char *cat_path_join3(const char *a, const char *b, const char *c); /* "a/b/c", malloc'd */

/* Reads a regular file of at most max bytes into a malloc'd buffer (+1 NUL byte). */
int cat_read_file(const char *path, size_t max, uint8_t **data, size_t *len);

int cat_fsync_dir(const char *path);
int cat_rm_rf(const char *path); /* a missing path is not an error */
int cat_dir_exists(const char *path);

#endif
