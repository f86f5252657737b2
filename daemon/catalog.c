/*
 * catalog: the firmware catalog on disk — opening it, listing its sets, loading a
 * set with every file checked against the digests recorded at import, deleting —
 * and the file plumbing the catalog's other files share (catalog_priv.h).
 *
 * Owns the on-disk layout described in catalog.h: <data_dir>/firmware/<name>/<version>/
 * with manifest.json, index.json (sizes and digests), each file and its compressed
 * copy <file>.z. Digests come from libcrypto (EVP). Manifest parsing is in
 * catalog_manifest.c, validation in catalog_validate.c, import in catalog_import.c.
 */
#include "catalog_priv.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <json-c/json.h>
#include <openssl/evp.h>

#include "esp_loader.h"

/* ---- shared helpers (catalog_priv.h) ------------------------------------------------- */

/* String value without embedded NULs; NULL otherwise. */
const char *cat_json_str(json_object *v)
{
    if (!json_object_is_type(v, json_type_string))
        return NULL;
    const char *s = json_object_get_string(v);
    if (!s || strlen(s) != (size_t)json_object_get_string_len(v))
        return NULL;
    return s;
}

static void hex(const uint8_t *d, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[d[i] >> 4];
        out[2 * i + 1] = digits[d[i] & 15];
    }
    out[2 * n] = '\0';
}

int cat_digest_hex(const EVP_MD *md, const uint8_t *data, size_t len, char *out)
{
    uint8_t d[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (EVP_Digest(data, len, d, &n, md, NULL) != 1)
        return -ENOMEM;
    hex(d, n, out);
    return 0;
}

char *cat_path_join(const char *a, const char *b)
{
    char *p = NULL;
    if (asprintf(&p, "%s/%s", a, b) < 0)
        return NULL;
    return p;
}

char *cat_path_join3(const char *a, const char *b, const char *c)
{
    char *p = NULL;
    if (asprintf(&p, "%s/%s/%s", a, b, c) < 0)
        return NULL;
    return p;
}

/* Reads a regular file of at most max bytes into a malloc'd buffer (+1 NUL byte). */
int cat_read_file(const char *path, size_t max, uint8_t **data, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;
    }
    if ((uint64_t)st.st_size > max) {
        close(fd);
        return -EFBIG;
    }
    size_t size = (size_t)st.st_size;
    uint8_t *buf = malloc(size + 1);
    if (!buf) {
        close(fd);
        return -ENOMEM;
    }
    size_t got = 0;
    while (got < size) {
        ssize_t n = read(fd, buf + got, size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int e = n < 0 ? errno : EIO; /* file shrank under us */
            free(buf);
            close(fd);
            return -e;
        }
        got += (size_t)n;
    }
    close(fd);
    buf[size] = 0;
    *data = buf;
    *len = size;
    return 0;
}

int cat_fsync_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = fsync(fd) == 0 ? 0 : -errno;
    close(fd);
    return rc;
}

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    if (remove(p) != 0 && errno != ENOENT)
        return -1;
    return 0;
}

int cat_rm_rf(const char *path)
{
    if (nftw(path, rm_cb, 16, FTW_DEPTH | FTW_PHYS) != 0)
        return errno == ENOENT ? 0 : -errno;
    return 0;
}

static int mkdir_p(const char *path)
{
    char *tmp = strdup(path);
    if (!tmp)
        return -ENOMEM;
    int rc = 0;
    for (char *p = tmp + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char c = *p;
        *p = '\0';
        if (mkdir(tmp, 0755) != 0 && errno != EEXIST) {
            rc = -errno;
            break;
        }
        *p = c;
        if (c == '\0')
            break;
    }
    free(tmp);
    if (rc == 0) {
        struct stat st;
        if (stat(path, &st) != 0)
            rc = -errno;
        else if (!S_ISDIR(st.st_mode))
            rc = -ENOTDIR;
    }
    return rc;
}

int cat_dir_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* ---- catalog on disk ----------------------------------------------------------------- */

const char *catalog_root(const struct catalog *cat)
{
    return cat ? cat->root : NULL;
}

int catalog_open(const char *data_dir, struct catalog **out, char *err, size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    if (!out || !data_dir || !*data_dir)
        return -EINVAL;
    *out = NULL;
    struct catalog *cat = calloc(1, sizeof(*cat));
    if (!cat || !(cat->root = cat_path_join(data_dir, "firmware"))) {
        free(cat);
        return -ENOMEM;
    }
    int rc = mkdir_p(cat->root);
    if (rc < 0) {
        if (err && errlen)
            snprintf(err, errlen, "firmware catalog %s: cannot create the directory: %s", cat->root,
                     strerror(-rc));
        catalog_close(cat);
        return rc;
    }
    /* Leftovers of interrupted imports/deletes: never visible, removed now. */
    DIR *d = opendir(cat->root);
    if (!d) {
        rc = -errno;
        if (err && errlen)
            snprintf(err, errlen, "firmware catalog %s: cannot read the directory: %s", cat->root,
                     strerror(-rc));
        catalog_close(cat);
        return rc;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, TMP_IMPORT, strlen(TMP_IMPORT)) != 0 &&
            strncmp(e->d_name, TMP_DELETE, strlen(TMP_DELETE)) != 0)
            continue;
        char *p = cat_path_join(cat->root, e->d_name);
        if (p)
            cat_rm_rf(p);
        free(p);
    }
    closedir(d);
    *out = cat;
    return 0;
}

void catalog_close(struct catalog *cat)
{
    if (!cat)
        return;
    free(cat->root);
    free(cat);
}

/* ---- listing ------------------------------------------------------------------------- */

static json_object *read_index(const char *dir)
{
    char *path = cat_path_join(dir, INDEX_FILE);
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = path ? cat_read_file(path, INDEX_MAX_BYTES, &buf, &len) : -ENOMEM;
    free(path);
    if (rc < 0)
        return NULL;
    json_object *root = json_tokener_parse((const char *)buf);
    free(buf);
    if (root && !json_object_is_type(root, json_type_object)) {
        json_object_put(root);
        return NULL;
    }
    return root;
}

static int entry_cmp(const void *a, const void *b)
{
    const struct catalog_entry *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : strverscmp(x->version, y->version);
}

void catalog_entries_free(struct catalog_entry *entries, size_t n)
{
    if (!entries)
        return;
    for (size_t i = 0; i < n; i++) {
        free(entries[i].name);
        free(entries[i].version);
    }
    free(entries);
}

static int list_versions(const char *root, const char *name, struct catalog_entry **es, size_t *n,
                         size_t *cap)
{
    char *ndir = cat_path_join(root, name);
    if (!ndir)
        return -ENOMEM;
    DIR *d = opendir(ndir);
    if (!d) {
        free(ndir);
        return 0; /* not a directory, or vanished: not a set */
    }
    int rc = 0;
    struct dirent *e;
    while (rc == 0 && (e = readdir(d)) != NULL) {
        if (!catalog_name_valid(e->d_name))
            continue;
        char *vdir = cat_path_join(ndir, e->d_name);
        json_object *idx = vdir ? read_index(vdir) : NULL;
        free(vdir);
        json_object *v, *regions;
        const char *chip_name = NULL;
        if (idx && json_object_object_get_ex(idx, "chip", &v))
            chip_name = cat_json_str(v);
        const struct esp_chip_desc *chip = esp_chip_by_name(chip_name);
        if (!idx || !chip || !json_object_object_get_ex(idx, "regions", &regions) ||
            !json_object_is_type(regions, json_type_array)) {
            json_object_put(idx);
            continue; /* incomplete or foreign directory: not listed */
        }
        if (*n == *cap) {
            size_t ncap = *cap ? *cap * 2 : 16;
            struct catalog_entry *ne = realloc(*es, ncap * sizeof(*ne));
            if (!ne) {
                json_object_put(idx);
                rc = -ENOMEM;
                break;
            }
            *es = ne;
            *cap = ncap;
        }
        struct catalog_entry *ce = &(*es)[*n];
        memset(ce, 0, sizeof(*ce));
        ce->name = strdup(name);
        ce->version = strdup(e->d_name);
        ce->chip = chip->chip;
        ce->n_regions = json_object_array_length(regions);
        for (size_t i = 0; i < ce->n_regions; i++) {
            json_object *r = json_object_array_get_idx(regions, i), *sz;
            if (json_object_object_get_ex(r, "size", &sz))
                ce->total_bytes += (uint64_t)json_object_get_int64(sz);
        }
        (*n)++;
        if (!ce->name || !ce->version)
            rc = -ENOMEM;
        json_object_put(idx);
    }
    closedir(d);
    free(ndir);
    return rc;
}

int catalog_list(struct catalog *cat, struct catalog_entry **out, size_t *n_out)
{
    if (!cat || !out || !n_out)
        return -EINVAL;
    *out = NULL;
    *n_out = 0;
    DIR *d = opendir(cat->root);
    if (!d)
        return -errno;
    struct catalog_entry *es = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    struct dirent *e;
    while (rc == 0 && (e = readdir(d)) != NULL)
        if (catalog_name_valid(e->d_name))
            rc = list_versions(cat->root, e->d_name, &es, &n, &cap);
    closedir(d);
    if (rc < 0) {
        catalog_entries_free(es, n);
        return rc;
    }
    if (n > 1)
        qsort(es, n, sizeof(*es), entry_cmp);
    *out = es;
    *n_out = n;
    return 0;
}

/* ---- loading ------------------------------------------------------------------------- */

void catalog_free_set(struct catalog_set *set)
{
    if (!set)
        return;
    free(set->name);
    free(set->version);
    free(set->description);
    for (size_t i = 0; i < set->n_regions; i++) {
        free(set->regions[i].file);
        free(set->regions[i].data);
        free(set->regions[i].zdata);
    }
    free(set->regions);
    free(set);
}

static int set_err(char *err, size_t errlen, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int set_err(char *err, size_t errlen, int rc, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return rc;
}

static const char *idx_str(json_object *o, const char *key)
{
    json_object *v;
    return json_object_object_get_ex(o, key, &v) ? cat_json_str(v) : NULL;
}

static bool idx_int(json_object *o, const char *key, int64_t *out)
{
    json_object *v;
    if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_int))
        return false;
    *out = json_object_get_int64(v);
    return true;
}

/* Loads and verifies one region of dir per its index entry. */
static int load_region(const char *dir, const char *id, json_object *jr,
                       const struct catalog_manifest_region *mr, struct catalog_region *r,
                       char *err, size_t errlen)
{
    static const char advice[] = "delete the set and import it again";
    const char *sha = idx_str(jr, "sha256"), *md5 = idx_str(jr, "md5"),
               *zsha = idx_str(jr, "zsha256");
    const char *file = idx_str(jr, "file");
    int64_t off, size, zsize;
    if (!sha || !md5 || !zsha || !file || strcmp(file, mr->file) != 0 ||
        !idx_int(jr, "offset", &off) || off != mr->offset || !idx_int(jr, "size", &size) ||
        !idx_int(jr, "zsize", &zsize))
        return set_err(err, errlen, -EBADMSG,
                       "firmware %s: index.json does not match manifest.json for %s; %s", id,
                       mr->file, advice);
    r->offset = mr->offset;
    r->kind = mr->kind;
    r->slot = mr->slot;
    if (!(r->file = strdup(mr->file)))
        return -ENOMEM;

    char zname[CATALOG_NAME_MAX + 3];
    snprintf(zname, sizeof(zname), "%s.z", mr->file);
    char *p = cat_path_join(dir, mr->file), *zp = cat_path_join(dir, zname);
    int rc = (!p || !zp) ? -ENOMEM : cat_read_file(p, CATALOG_MAX_FILE_BYTES, &r->data, &r->size);
    if (rc == 0)
        rc = cat_read_file(zp, CATALOG_MAX_FILE_BYTES + CATALOG_MAX_FILE_BYTES / 8, &r->zdata,
                           &r->zsize);
    free(p);
    free(zp);
    if (rc == -ENOMEM)
        return rc;
    if (rc < 0)
        return set_err(err, errlen, rc == -ENOENT ? -EBADMSG : -EIO,
                       "firmware %s: cannot read %s: %s; %s", id, mr->file, strerror(-rc), advice);
    char zcheck[65];
    if (cat_digest_hex(EVP_sha256(), r->data, r->size, r->sha256) < 0 ||
        cat_digest_hex(EVP_md5(), r->data, r->size, r->md5) < 0 ||
        cat_digest_hex(EVP_sha256(), r->zdata, r->zsize, zcheck) < 0)
        return -ENOMEM;
    if ((int64_t)r->size != size || strcmp(r->sha256, sha) != 0 || strcmp(r->md5, md5) != 0)
        return set_err(err, errlen, -EBADMSG,
                       "firmware %s: %s is corrupted on disk (%s differs from the one recorded "
                       "at import); %s",
                       id, mr->file, (int64_t)r->size != size ? "size" : "checksum", advice);
    if ((int64_t)r->zsize != zsize || strcmp(zcheck, zsha) != 0)
        return set_err(err, errlen, -EBADMSG,
                       "firmware %s: the compressed copy of %s is corrupted on disk; %s", id,
                       mr->file, advice);
    r->gzip = r->size >= 2 && r->data[0] == 0x1F && r->data[1] == 0x8B;
    return 0;
}

int catalog_get_esptool_args(struct catalog *cat, const char *name, const char *version,
                             struct catalog_esptool_args *out)
{
    memset(out, 0, sizeof(*out));
    if (!cat || !catalog_name_valid(name) || !catalog_name_valid(version))
        return -EINVAL;
    char *dir = cat_path_join3(cat->root, name, version);
    if (!dir)
        return -ENOMEM;
    struct catalog_report rep;
    catalog_report_init(&rep);
    char *json = NULL;
    size_t len = 0;
    struct catalog_manifest *m = NULL;
    int rc = cat_dir_exists(dir) ? cat_read_manifest(dir, &json, &len, &rep) : -ENOENT;
    if (rc == 0 && (rc = catalog_manifest_parse(json, len, &m, &rep)) == 0)
        *out = m->esptool_args;
    catalog_manifest_free(m);
    free(json);
    free(dir);
    catalog_report_free(&rep);
    return rc == -ENOENT || rc == -ENOMEM ? rc : rc < 0 ? -EINVAL : 0;
}

int catalog_get(struct catalog *cat, const char *name, const char *version,
                struct catalog_set **out, char *err, size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    if (!cat || !out)
        return -EINVAL;
    *out = NULL;
    if (!catalog_name_valid(name) || !catalog_name_valid(version))
        return set_err(err, errlen, -EINVAL, "firmware name or version is not valid: %s",
                       cat_name_rule);
    char id[2 * CATALOG_NAME_MAX + 2];
    snprintf(id, sizeof(id), "%s@%s", name, version);
    char *dir = cat_path_join3(cat->root, name, version);
    if (!dir)
        return -ENOMEM;
    if (!cat_dir_exists(dir)) {
        free(dir);
        return set_err(err, errlen, -ENOENT, "firmware %s is not in the catalog", id);
    }

    struct catalog_report rep;
    catalog_report_init(&rep);
    char *json = NULL;
    size_t len = 0;
    struct catalog_manifest *m = NULL;
    json_object *idx = NULL, *jregions = NULL;
    struct catalog_set *set = NULL;
    int rc = cat_read_manifest(dir, &json, &len, &rep);
    if (rc == 0 && catalog_manifest_parse(json, len, &m, &rep) != 0)
        rc = -EBADMSG;
    if (rc < 0 && rc != -ENOMEM) {
        rc = set_err(err, errlen, -EBADMSG,
                     "firmware %s: manifest.json is damaged on disk (%s); delete the set and "
                     "import it again",
                     id, rep.n ? rep.items[0].message : "unreadable");
        goto out;
    }
    if (rc < 0)
        goto out;
    idx = read_index(dir);
    if (!idx || strcmp(m->name, name) != 0 || strcmp(m->version, version) != 0 ||
        !json_object_object_get_ex(idx, "regions", &jregions) ||
        !json_object_is_type(jregions, json_type_array) ||
        json_object_array_length(jregions) != m->n_regions) {
        rc = set_err(err, errlen, -EBADMSG,
                     "firmware %s: index.json is missing or does not match manifest.json; delete "
                     "the set and import it again",
                     id);
        goto out;
    }
    set = calloc(1, sizeof(*set));
    if (!set || !(set->regions = calloc(m->n_regions, sizeof(*set->regions)))) {
        rc = -ENOMEM;
        goto out;
    }
    set->n_regions = m->n_regions;
    set->chip = m->chip;
    set->flash_mode = m->flash_mode;
    set->flash_size = m->flash_size;
    set->flash_size_code = m->flash_size_code;
    set->flash_freq_code = m->flash_freq_code;
    set->esptool_args = m->esptool_args;
    set->name = strdup(name);
    set->version = strdup(version);
    if (!set->name || !set->version ||
        (m->description && !(set->description = strdup(m->description)))) {
        rc = -ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < m->n_regions && rc == 0; i++)
        rc = load_region(dir, id, json_object_array_get_idx(jregions, i), &m->regions[i],
                         &set->regions[i], err, errlen);

out:
    if (rc == -ENOMEM)
        set_err(err, errlen, rc, "firmware %s: out of memory while loading", id);
    if (rc == 0) {
        *out = set;
        set = NULL;
    }
    catalog_free_set(set);
    json_object_put(idx);
    catalog_manifest_free(m);
    free(json);
    catalog_report_free(&rep);
    free(dir);
    return rc;
}

int catalog_delete(struct catalog *cat, const char *name, const char *version)
{
    if (!cat || !catalog_name_valid(name) || !catalog_name_valid(version))
        return -EINVAL;
    char *namedir = cat_path_join(cat->root, name);
    char *dir = cat_path_join3(cat->root, name, version);
    char *del = cat_path_join(cat->root, TMP_DELETE "XXXXXX");
    int rc = 0;
    if (!namedir || !dir || !del)
        rc = -ENOMEM;
    else if (!cat_dir_exists(dir))
        rc = -ENOENT;
    else if (!mkdtemp(del))
        rc = -errno;
    else if (rename(dir, del) != 0) { /* onto the empty temp dir: atomic */
        rc = errno == ENOENT ? -ENOENT : -EIO;
        rmdir(del);
    } else {
        cat_fsync_dir(namedir);
        cat_rm_rf(del);
        rmdir(namedir); /* fails harmlessly while other versions remain */
    }
    free(namedir);
    free(dir);
    free(del);
    return rc;
}
