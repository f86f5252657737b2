/*
 * line_fw_desc: the line's description of a firmware set, as each station writes it
 * into the records' shared `firmware` table (records_firmware_*, the manifest column)
 * and as another station reads it to fetch the set:
 *
 *   {"format":1,"manifest":{...the set's manifest.json...},
 *    "regions":[{"file":"app.bin","offset":65536,"size":123,"sha256":"<64 hex>",
 *                "md5":"<32 hex>"}, ...]}
 *
 * The region hashes come from the catalog's index.json (made at import). What another
 * station wrote is input from outside: the reader checks every field it uses.
 */
#ifndef ESPSTATION_LINE_FW_DESC_H
#define ESPSTATION_LINE_FW_DESC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#include "catalog.h"

/* s is 64 lowercase hex digits (a SHA-256 as the line names blobs). */
bool line_fw_sha_ok(const char *s);

/* o's member k if it is a string, else NULL. */
const char *line_fw_jstr(json_object *o, const char *k);
/* o's member k as an integer, -1 when absent. */
int64_t line_fw_jint(json_object *o, const char *k);

/* The description of the catalog set in dir (its manifest.json and index.json), as
 * text (malloc'd), NULL when they cannot be read. *regions_out (may be NULL) gets a
 * reference to its "regions" array (json_object_put it). */
char *line_fw_describe(const char *dir, json_object **regions_out);

/* The sha256 list of a description's regions joined ("a,b,"), to compare two. */
void line_fw_regions_key(json_object *regs, char *buf, size_t n);

/* A file of a described set. */
struct line_fw_desc_file {
    char file[CATALOG_NAME_MAX + 1];
    char sha[65];
    char md5[33]; /* "" when the description gives none */
    int64_t size;
};

struct line_fw_desc {
    char *manifest; /* the manifest.json text to import */
    struct line_fw_desc_file *files;
    size_t n_files;
};

/*
 * Reads the description text of name@version (names only for the messages) into *d
 * (line_fw_desc_free it, also after an error). 0 with 1 to CATALOG_MAX_REGIONS files,
 * each a valid catalog name, a SHA-256, an integer size up to CATALOG_MAX_FILE_BYTES
 * and an MD5 (32 lowercase hex) or none, a file named twice the same both times; and
 * the manifest (an object) as text. -ENOENT when it names no files by hash (not a
 * description), -EBADMSG when it is damaged or of another format, -ENOMEM; err says
 * which.
 */
int line_fw_desc_parse(const char *text, const char *name, const char *version,
                       struct line_fw_desc *d, char *err, size_t errlen);
void line_fw_desc_free(struct line_fw_desc *d);

#endif
