/*
 * line_fw_desc.c: writing and reading the line's description of a firmware set
 * (line_fw_desc.h).
 */
#include "line_fw_desc.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool line_fw_sha_ok(const char *s)
{
    if (!s || strlen(s) != 64)
        return false;
    for (size_t i = 0; i < 64; i++)
        if (!isxdigit((unsigned char)s[i]) || isupper((unsigned char)s[i]))
            return false;
    return true;
}

const char *line_fw_jstr(json_object *o, const char *k)
{
    json_object *v;
    return o && json_object_object_get_ex(o, k, &v) && json_object_is_type(v, json_type_string)
               ? json_object_get_string(v)
               : NULL;
}

int64_t line_fw_jint(json_object *o, const char *k)
{
    json_object *v;
    return o && json_object_object_get_ex(o, k, &v) ? json_object_get_int64(v) : -1;
}

char *line_fw_describe(const char *dir, struct json_object **regions_out)
{
    char mp[4096], ip[4096];
    snprintf(mp, sizeof(mp), "%s/manifest.json", dir);
    snprintf(ip, sizeof(ip), "%s/index.json", dir);
    json_object *man = json_object_from_file(mp), *idx = json_object_from_file(ip), *regs;
    char *out = NULL;
    if (man && idx && json_object_object_get_ex(idx, "regions", &regs)) {
        json_object *d = json_object_new_object(), *rs = json_object_new_array();
        json_object_object_add(d, "format", json_object_new_int(1));
        json_object_object_add(d, "manifest", json_object_get(man));
        for (size_t k = 0; k < json_object_array_length(regs); k++) {
            json_object *r = json_object_array_get_idx(regs, k), *e = json_object_new_object();
            static const char *const keys[] = {"file", "offset", "size", "sha256", "md5"};
            for (size_t i = 0; i < 5; i++) {
                json_object *v;
                if (json_object_object_get_ex(r, keys[i], &v))
                    json_object_object_add(e, keys[i], json_object_get(v));
            }
            json_object_array_add(rs, e);
        }
        json_object_object_add(d, "regions", rs);
        out = strdup(json_object_to_json_string_ext(d, JSON_C_TO_STRING_PLAIN |
                                                           JSON_C_TO_STRING_NOSLASHESCAPE));
        if (regions_out)
            *regions_out = json_object_get(rs);
        json_object_put(d);
    }
    json_object_put(man);
    json_object_put(idx);
    return out;
}

void line_fw_regions_key(json_object *regs, char *buf, size_t n)
{
    size_t used = 0;
    buf[0] = '\0';
    for (size_t k = 0; regs && k < json_object_array_length(regs) && used < n; k++) {
        const char *s = line_fw_jstr(json_object_array_get_idx(regs, k), "sha256");
        used += (size_t)snprintf(buf + used, n - used, "%s,", s ? s : "?");
    }
}

void line_fw_desc_free(struct line_fw_desc *d)
{
    free(d->manifest);
    free(d->files);
    memset(d, 0, sizeof(*d));
}

static bool md5_ok(const char *s)
{
    if (strlen(s) != 32)
        return false;
    for (size_t i = 0; i < 32; i++)
        if (!isxdigit((unsigned char)s[i]) || isupper((unsigned char)s[i]))
            return false;
    return true;
}

int line_fw_desc_parse(const char *text, const char *name, const char *version,
                       struct line_fw_desc *d, char *err, size_t errlen)
{
    memset(d, 0, sizeof(*d));
    json_object *j = json_tokener_parse(text), *man = NULL, *regs = NULL, *fmt = NULL;
    int rc = 0;
    if (!j || !json_object_object_get_ex(j, "manifest", &man) ||
        !json_object_object_get_ex(j, "regions", &regs) ||
        !json_object_is_type(regs, json_type_array)) {
        snprintf(err, errlen,
                 "firmware %s@%s: the line's record of it names no files by hash; import it on "
                 "this station",
                 name, version);
        rc = -ENOENT;
        goto out;
    }
    if (!json_object_object_get_ex(j, "format", &fmt) || !json_object_is_type(fmt, json_type_int) ||
        json_object_get_int64(fmt) != 1) {
        snprintf(err, errlen,
                 "firmware %s@%s: the line's record of it is in a description format this "
                 "station does not read (%s, not 1): update this station or import the set here",
                 name, version, fmt ? json_object_to_json_string(fmt) : "none");
        rc = -EBADMSG;
        goto out;
    }
    d->n_files = json_object_array_length(regs);
    if (!json_object_is_type(man, json_type_object) || d->n_files == 0 ||
        d->n_files > CATALOG_MAX_REGIONS) {
        snprintf(err, errlen,
                 "firmware %s@%s: the line's record of it is damaged (%s); import the set on "
                 "this station",
                 name, version,
                 !json_object_is_type(man, json_type_object) ? "its manifest is not an object"
                 : d->n_files == 0                           ? "no regions"
                                                             : "too many regions");
        d->n_files = 0;
        rc = -EBADMSG;
        goto out;
    }
    d->manifest = strdup(json_object_to_json_string_ext(man, JSON_C_TO_STRING_PLAIN |
                                                                 JSON_C_TO_STRING_NOSLASHESCAPE));
    d->files = calloc(d->n_files, sizeof(*d->files));
    if (!d->manifest || !d->files) {
        snprintf(err, errlen, "out of memory");
        rc = -ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < d->n_files; i++) {
        json_object *r = json_object_array_get_idx(regs, i), *sz = NULL;
        struct line_fw_desc_file *fi = &d->files[i];
        const char *file = line_fw_jstr(r, "file"), *sha = line_fw_jstr(r, "sha256"),
                   *md5 = line_fw_jstr(r, "md5");
        bool size_ok =
            json_object_object_get_ex(r, "size", &sz) && json_object_is_type(sz, json_type_int);
        fi->size = size_ok ? json_object_get_int64(sz) : -1;
        bool ok = file && catalog_name_valid(file) && line_fw_sha_ok(sha) && fi->size >= 0 &&
                  fi->size <= CATALOG_MAX_FILE_BYTES && (!md5 || md5_ok(md5));
        /* a file named twice (two regions of one file) must be the same file both times */
        for (size_t k = 0; ok && k < i; k++)
            if (strcmp(d->files[k].file, file) == 0)
                ok = strcmp(d->files[k].sha, sha) == 0 && d->files[k].size == fi->size;
        if (!ok) {
            snprintf(err, errlen, "firmware %s@%s: the line's record of region %zu is damaged",
                     name, version, i);
            rc = -EBADMSG;
            goto out;
        }
        snprintf(fi->file, sizeof(fi->file), "%s", file);
        snprintf(fi->sha, sizeof(fi->sha), "%s", sha);
        snprintf(fi->md5, sizeof(fi->md5), "%s", md5 ? md5 : "");
    }
out:
    json_object_put(j);
    return rc;
}
