/*
 * line_fw_publish.c: this station's part in the line's firmware table (line_fw.h):
 * every set of its catalog described in the records' `firmware` rows
 * (line_fw_desc.h) and its files registered in `blobs` with this station as holder;
 * and the local file behind a hash, for GET /api/v1/blobs/<sha256>.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "catalog.h"
#include "line_fw_desc.h"
#include "line_fw_priv.h"
#include "log.h"
#include "records.h"
#include "records_blobs.h"
#include "station.h"

/* ---- finding files by hash (the catalog's index.json files) ------------------------------ */

int line_fw_find_blob(struct catalog *cat, const char *sha, char *path, size_t n, int64_t *size)
{
    if (!line_fw_sha_ok(sha))
        return -EINVAL;
    struct catalog_entry *ents = NULL;
    size_t ne = 0;
    int rc = catalog_list(cat, &ents, &ne);
    if (rc < 0)
        return rc;
    rc = -ENOENT;
    for (size_t i = 0; i < ne && rc == -ENOENT; i++) {
        char ip[4096];
        snprintf(ip, sizeof(ip), "%s/%s/%s/index.json", catalog_root(cat), ents[i].name,
                 ents[i].version);
        json_object *idx = json_object_from_file(ip), *regs;
        if (idx && json_object_object_get_ex(idx, "regions", &regs))
            for (size_t k = 0; k < json_object_array_length(regs) && rc == -ENOENT; k++) {
                json_object *r = json_object_array_get_idx(regs, k);
                const char *s = line_fw_jstr(r, "sha256"), *f = line_fw_jstr(r, "file");
                if (s && f && strcmp(s, sha) == 0 && catalog_name_valid(f)) {
                    snprintf(path, n, "%s/%s/%s/%s", catalog_root(cat), ents[i].name,
                             ents[i].version, f);
                    *size = line_fw_jint(r, "size");
                    rc = 0;
                }
            }
        json_object_put(idx);
    }
    catalog_entries_free(ents, ne);
    return rc;
}

/* ---- publishing -------------------------------------------------------------------------- */

struct sha_set {
    char (*v)[RECORDS_SHA256_LEN];
    size_t n, cap;
};

static void sha_add(struct sha_set *s, const char *sha)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 32;
        void *nv = realloc(s->v, cap * sizeof(*s->v));
        if (!nv)
            return;
        s->v = nv;
        s->cap = cap;
    }
    snprintf(s->v[s->n++], RECORDS_SHA256_LEN, "%s", sha);
}

static bool sha_has(const struct sha_set *s, const char *sha)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->v[i], sha) == 0)
            return true;
    return false;
}

static void publish_set(struct line_fw *lf, const struct catalog_entry *e, struct sha_set *held)
{
    struct records *rec = station_records(lf->st);
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s/%s/%s", catalog_root(station_catalog(lf->st)), e->name,
             e->version);
    json_object *regs = NULL;
    char *desc = line_fw_describe(dir, &regs);
    if (!desc) {
        log_msg(LOG_LEVEL_WARN, "line: cannot describe firmware %s@%s (%s) for the line", e->name,
                e->version, dir);
        return;
    }
    struct records_firmware *fw = calloc(1, sizeof(*fw));
    struct records_error re;
    if (fw && strlen(desc) < sizeof(fw->manifest)) {
        snprintf(fw->name, sizeof(fw->name), "%s", e->name);
        snprintf(fw->version, sizeof(fw->version), "%s", e->version);
        snprintf(fw->chip, sizeof(fw->chip), "%s", esp_chip_to_string(e->chip));
        snprintf(fw->manifest, sizeof(fw->manifest), "%s", desc);
        int rc = records_firmware_put(rec, fw, &re);
        if (rc == -EEXIST && records_firmware_get(rec, e->name, e->version, fw, &re) == 0) {
            /* versions are immutable: the line's record stays; say when it differs */
            json_object *theirs = json_tokener_parse(fw->manifest), *tr = NULL;
            char a[4096], b[4096];
            if (theirs)
                json_object_object_get_ex(theirs, "regions", &tr);
            line_fw_regions_key(regs, a, sizeof(a));
            line_fw_regions_key(tr, b, sizeof(b));
            if (strcmp(a, b) != 0)
                log_msg(LOG_LEVEL_WARN,
                        "line: firmware %s@%s of this station differs from the line's set of "
                        "that name (another station imported other files under it): the line "
                        "keeps its own; give this build a new version",
                        e->name, e->version);
            json_object_put(theirs);
        } else if (rc < 0) {
            log_msg(LOG_LEVEL_WARN, "line: cannot describe firmware %s@%s: %s", e->name, e->version,
                    re.message);
        }
    } else if (fw) {
        log_msg(LOG_LEVEL_WARN,
                "line: firmware %s@%s: its manifest is too large to share (%zu bytes)", e->name,
                e->version, strlen(desc));
    }
    free(fw);
    for (size_t k = 0; regs && k < json_object_array_length(regs); k++) {
        json_object *r = json_object_array_get_idx(regs, k);
        const char *sha = line_fw_jstr(r, "sha256");
        if (!line_fw_sha_ok(sha))
            continue;
        sha_add(held, sha);
        if (records_blob_put(rec, sha, line_fw_jint(r, "size"), &re) < 0)
            log_msg(LOG_LEVEL_WARN, "line: %s", re.message);
    }
    json_object_put(regs);
    free(desc);
}

static int mine_cb(const char *sha, int64_t size, void *ctx)
{
    (void)size;
    sha_add(ctx, sha);
    return 0;
}

void line_fw_publish(struct line_fw *lf)
{
    if (!lf)
        return;
    struct catalog_entry *ents = NULL;
    size_t n = 0;
    if (catalog_list(station_catalog(lf->st), &ents, &n) < 0) {
        log_msg(LOG_LEVEL_WARN, "line: cannot list the firmware catalog to share it");
        return;
    }
    struct sha_set held = {0}, mine = {0};
    for (size_t i = 0; i < n; i++)
        publish_set(lf, &ents[i], &held);
    catalog_entries_free(ents, n);
    struct records *rec = station_records(lf->st);
    struct records_error re;
    if (records_blob_list_mine(rec, mine_cb, &mine, &re) >= 0)
        for (size_t i = 0; i < mine.n; i++)
            if (!sha_has(&held, mine.v[i]) && records_blob_drop(rec, mine.v[i], &re) < 0)
                log_msg(LOG_LEVEL_WARN, "line: %s", re.message);
    free(held.v);
    free(mine.v);
}

bool line_fw_known(struct line_fw *lf, const char *name, const char *version)
{
    if (!lf)
        return false;
    struct records_firmware *fw = malloc(sizeof(*fw));
    bool known = fw && records_firmware_get(station_records(lf->st), name, version, fw, NULL) == 0;
    free(fw);
    return known;
}
