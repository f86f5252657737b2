/*
 * catalog_import: storing a validated firmware set in the catalog atomically — each
 * file with its SHA-256/MD5 and its compressed copy, index.json, then one rename of
 * the finished temporary directory into place (see catalog.h). The compressed copy
 * is made once here by zcompress_best (zopfli, or zlib level 9 where that is
 * smaller): any zlib stream inflates to the same bytes on the chip, and the smaller
 * one is sent to every board (FLASH_DEFL_DATA).
 */
#include "catalog_priv.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <openssl/evp.h>

#include "esp_loader.h"
#include "zcompress.h"

static int write_all(int fd, const uint8_t *data, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, data, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Creates path (must not exist) with data, fsynced. */
static int write_file_sync(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    int rc = write_all(fd, data, len);
    if (rc == 0 && fsync(fd) != 0)
        rc = -errno;
    if (close(fd) != 0 && rc == 0)
        rc = -errno;
    return rc;
}

static int store_region(const char *tmp, const struct catalog_manifest_region *r,
                        const struct cat_loaded *l, json_object *jregions,
                        struct catalog_report *rep, int ri)
{
    char sha[65], md5[33], zsha[65];
    uint8_t *z = NULL;
    size_t zlen = 0;
    enum zcompress_method zm = ZCOMPRESS_ZLIB9;
    if (cat_digest_hex(EVP_sha256(), l->data, l->len, sha) < 0 ||
        cat_digest_hex(EVP_md5(), l->data, l->len, md5) < 0 ||
        zcompress_best(l->data, l->len, ZCOMPRESS_ITERATIONS, &z, &zlen, &zm) < 0 ||
        cat_digest_hex(EVP_sha256(), z, zlen, zsha) < 0) {
        free(z);
        cat_rep_add(rep, false, ri, "regions[%d] %s: out of memory while hashing/compressing", ri,
                    r->file);
        return -ENOMEM;
    }
    char zname[CATALOG_NAME_MAX + 3];
    snprintf(zname, sizeof(zname), "%s.z", r->file);
    char *p = cat_path_join(tmp, r->file), *zp = cat_path_join(tmp, zname);
    int rc = (!p || !zp) ? -ENOMEM : write_file_sync(p, l->data, l->len);
    if (rc < 0)
        cat_rep_add(rep, false, ri, "regions[%d] %s: storing the file failed: %s", ri, r->file,
                    strerror(-rc));
    if (rc == 0 && (rc = write_file_sync(zp, z, zlen)) < 0)
        cat_rep_add(rep, false, ri, "regions[%d] %s: storing the compressed copy failed: %s", ri,
                    r->file, strerror(-rc));
    free(p);
    free(zp);
    free(z);
    if (rc < 0)
        return rc;

    json_object *jr = json_object_new_object();
    if (!jr)
        return -ENOMEM;
    json_object_object_add(jr, "file", json_object_new_string(r->file));
    json_object_object_add(jr, "offset", json_object_new_int64(r->offset));
    json_object_object_add(jr, "kind", json_object_new_string(catalog_kind_to_string(r->kind)));
    if (r->slot != CATALOG_SLOT_NONE)
        json_object_object_add(jr, "slot", json_object_new_string(catalog_slot_to_string(r->slot)));
    json_object_object_add(jr, "size", json_object_new_int64((int64_t)l->len));
    json_object_object_add(jr, "sha256", json_object_new_string(sha));
    json_object_object_add(jr, "md5", json_object_new_string(md5));
    json_object_object_add(jr, "zsize", json_object_new_int64((int64_t)zlen));
    json_object_object_add(jr, "zsha256", json_object_new_string(zsha));
    json_object_object_add(jr, "zmethod", json_object_new_string(zcompress_method_to_string(zm)));
    json_object_array_add(jregions, jr);
    return 0;
}

/* Moves the finished temp dir to final; see catalog.h for the atomicity argument. */
static int install_dir(struct catalog *cat, const char *tmp, const char *final, bool replace)
{
    if (replace && cat_dir_exists(final)) {
        if (renameat2(AT_FDCWD, tmp, AT_FDCWD, final, RENAME_EXCHANGE) == 0) {
            cat_rm_rf(tmp); /* tmp now holds the old set */
            return 0;
        }
        if (errno != EINVAL && errno != ENOSYS)
            return -errno;
        /* No RENAME_EXCHANGE on this file system: two renames; a crash in
         * between loses the old set but never shows a half one. */
        char *del = cat_path_join(cat->root, TMP_DELETE "XXXXXX");
        if (!del)
            return -ENOMEM;
        int rc = 0;
        if (!mkdtemp(del) || rename(final, del) != 0 || rename(tmp, final) != 0)
            rc = -errno;
        cat_rm_rf(del);
        free(del);
        return rc;
    }
    if (renameat2(AT_FDCWD, tmp, AT_FDCWD, final, RENAME_NOREPLACE) == 0)
        return 0;
    if (errno == EEXIST || errno == ENOTEMPTY)
        return -EEXIST;
    if (errno != EINVAL && errno != ENOSYS)
        return -errno;
    if (cat_dir_exists(final))
        return -EEXIST;
    return rename(tmp, final) == 0 ? 0 : -errno;
}

static int import_core(struct catalog *cat, const char *json, size_t len, catalog_load_fn load,
                       void *ctx, bool replace, struct catalog_report *rep)
{
    struct cat_parsed p;
    struct cat_loaded *l = NULL;
    int rc = cat_validate_core(json, len, load, ctx, rep, &p, &l);
    struct catalog_manifest *m = p.m;
    char *tmp = NULL, *namedir = NULL, *final = NULL;
    json_object *index = NULL;
    if (rc < 0)
        goto out;

    namedir = cat_path_join(cat->root, m->name);
    final = cat_path_join3(cat->root, m->name, m->version);
    tmp = cat_path_join(cat->root, TMP_IMPORT "XXXXXX");
    if (!namedir || !final || !tmp) {
        rc = -ENOMEM;
        goto out;
    }
    if (!replace && cat_dir_exists(final)) {
        cat_rep_add(rep, false, -1,
                    "%s@%s is already in the catalog; delete it first or import with replace",
                    m->name, m->version);
        rc = -EEXIST;
        goto out;
    }
    if (!mkdtemp(tmp)) {
        rc = -errno;
        cat_rep_add(rep, false, -1, "cannot create a temporary directory in %s: %s", cat->root,
                    strerror(-rc));
        free(tmp);
        tmp = NULL;
        goto out;
    }

    index = json_object_new_object();
    json_object *jregions = json_object_new_array();
    if (!index || !jregions) {
        json_object_put(jregions);
        rc = -ENOMEM;
        goto out;
    }
    json_object_object_add(index, "format", json_object_new_int(1));
    json_object_object_add(index, "name", json_object_new_string(m->name));
    json_object_object_add(index, "version", json_object_new_string(m->version));
    json_object_object_add(index, "chip", json_object_new_string(esp_chip_get(m->chip)->stub_name));
    json_object_object_add(index, "imported", json_object_new_int64((int64_t)time(NULL)));
    json_object_object_add(index, "regions", jregions);
    for (size_t i = 0; i < m->n_regions && rc == 0; i++)
        rc = store_region(tmp, &m->regions[i], &l[i], jregions, rep, (int)i);
    if (rc < 0)
        goto out;

    char *mpath = cat_path_join(tmp, MANIFEST_FILE), *ipath = cat_path_join(tmp, INDEX_FILE);
    const char *itext = json_object_to_json_string_ext(index, JSON_C_TO_STRING_PRETTY |
                                                                  JSON_C_TO_STRING_NOSLASHESCAPE);
    if (!mpath || !ipath || !itext)
        rc = -ENOMEM;
    if (rc == 0)
        rc = write_file_sync(mpath, json, len);
    if (rc == 0)
        rc = write_file_sync(ipath, itext, strlen(itext));
    free(mpath);
    free(ipath);
    if (rc == 0)
        rc = cat_fsync_dir(tmp);
    if (rc == 0 && mkdir(namedir, 0755) != 0 && errno != EEXIST)
        rc = -errno;
    if (rc == 0)
        rc = cat_fsync_dir(cat->root);
    if (rc < 0) {
        cat_rep_add(rep, false, -1, "storing %s@%s in %s failed: %s", m->name, m->version,
                    cat->root, strerror(-rc));
        goto out;
    }
    rc = install_dir(cat, tmp, final, replace);
    if (rc == -EEXIST)
        cat_rep_add(rep, false, -1,
                    "%s@%s is already in the catalog; delete it first or import with replace",
                    m->name, m->version);
    else if (rc < 0)
        cat_rep_add(rep, false, -1, "storing %s@%s in %s failed: %s", m->name, m->version,
                    cat->root, strerror(-rc));
    if (rc == 0) {
        cat_fsync_dir(namedir);
        free(tmp);
        tmp = NULL; /* renamed away */
    }

out:
    if (tmp)
        cat_rm_rf(tmp);
    free(tmp);
    free(namedir);
    free(final);
    json_object_put(index);
    cat_free_loaded(l, m ? m->n_regions : 0);
    catalog_manifest_free(m);
    return rc;
}

int catalog_import_mem(struct catalog *cat, const char *manifest_json, size_t len,
                       catalog_load_fn load, void *ctx, bool replace, struct catalog_report *rep)
{
    struct catalog_report local;
    if (!rep) {
        catalog_report_init(&local);
        rep = &local;
    }
    int rc = (!cat || !manifest_json || !load)
                 ? -EINVAL
                 : import_core(cat, manifest_json, len, load, ctx, replace, rep);
    if (rep == &local)
        catalog_report_free(&local);
    return rc;
}

int catalog_import(struct catalog *cat, const char *src_dir, bool replace,
                   struct catalog_report *rep)
{
    struct catalog_report local;
    if (!rep) {
        catalog_report_init(&local);
        rep = &local;
    }
    char *json = NULL;
    size_t len = 0;
    int rc = (!cat || !src_dir) ? -EINVAL : cat_read_manifest(src_dir, &json, &len, rep);
    if (rc == 0)
        rc = import_core(cat, json, len, cat_dir_load, (void *)src_dir, replace, rep);
    else if (rc != -ENOMEM)
        rc = -EINVAL;
    free(json);
    if (rep == &local)
        catalog_report_free(&local);
    return rc;
}
