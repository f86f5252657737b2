/*
 * bundle: safe extraction of a tar / tar.gz / zip firmware bundle (see bundle.h
 * for the rules). libarchive only reads: paths are checked and rebuilt here and
 * files are created with openat(O_EXCL | O_NOFOLLOW) below the extraction
 * directory, two levels at most, so no entry can write anywhere else.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>
#include <json-c/json.h>

#include "bundle.h"

#define PATH_MAX_CHARS 1024
#define MANIFEST_MAX_BYTES (1024 * 1024)
#define COPY_BUF (64 * 1024)
#define MACOS_JUNK "__MACOSX" /* resource forks a Mac's zip adds: ignored silently */

struct rec {
    char *path;                                         /* normalised: components joined by '/' */
    int depth;                                          /* number of components */
    char top[CATALOG_NAME_MAX], base[CATALOG_NAME_MAX]; /* when they fit and are safe */
    bool extracted;
};

struct ctx {
    struct archive *a;
    int dfd;
    const struct bundle_limits *lim;
    struct bundle_result *res;
    struct rec *recs;
    size_t n, cap;
    char *buf;
};

static int failf(struct ctx *c, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int failf(struct ctx *c, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->res->err, sizeof(c->res->err), fmt, ap);
    va_end(ap);
    for (char *p = c->res->err; *p; p++) /* libarchive's messages may quote raw bytes */
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
    return rc;
}

/* libarchive's last message without its trailing newline (def when there is none). */
static const char *aerr(struct archive *a, const char *def, char *out, size_t len)
{
    const char *e = archive_error_string(a);
    snprintf(out, len, "%s", e && *e ? e : def);
    size_t n = strlen(out);
    while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == '\r' || out[n - 1] == ' '))
        out[--n] = '\0';
    return out;
}

/* A printable, bounded copy of an archive name for messages. */
static const char *shown(const char *s, char *out, size_t len)
{
    size_t i = 0;
    for (; s && *s && i + 4 < len; s++)
        out[i++] = ((unsigned char)*s < 0x20 || *s == 0x7f) ? '?' : *s;
    if (s && *s)
        out[i++] = '.', out[i++] = '.', out[i++] = '.';
    out[i] = '\0';
    return out;
}

static bool ctype_is(const char *ct, const char *want)
{
    while (*ct == ' ')
        ct++;
    size_t n = strlen(want);
    return strncasecmp(ct, want, n) == 0 && (ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ');
}

bool bundle_content_type(const char *ct)
{
    static const char *const types[] = {
        "application/x-tar",
        "application/tar",
        "application/gzip",
        "application/x-gzip",
        "application/x-compressed-tar",
        "application/x-gtar",
        "application/zip",
        "application/x-zip-compressed",
        "application/octet-stream",
    };
    if (!ct)
        return false;
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
        if (ctype_is(ct, types[i]))
            return true;
    return false;
}

void bundle_result_free(struct bundle_result *res)
{
    if (!res)
        return;
    for (size_t i = 0; i < res->n_warnings; i++)
        free(res->warnings[i]);
    free(res->warnings);
    memset(res, 0, sizeof(*res));
}

/*
 * Normalises raw into out ("./a//b" -> "a/b"). Returns the number of components
 * (0: the archive root itself), or -1 with *why set for an unsafe path.
 */
static int norm_path(const char *raw, char *out, size_t outlen, const char **why)
{
    if (raw[0] == '/') {
        *why = "is an absolute path";
        return -1;
    }
    if (strlen(raw) >= PATH_MAX_CHARS || strlen(raw) >= outlen) {
        *why = "has a path longer than 1023 characters";
        return -1;
    }
    size_t o = 0;
    int depth = 0;
    const char *p = raw;
    while (*p) {
        const char *slash = strchr(p, '/');
        size_t n = slash ? (size_t)(slash - p) : strlen(p);
        if (n == 2 && p[0] == '.' && p[1] == '.') {
            *why = "has a \"..\" component (it would leave the bundle)";
            return -1;
        }
        if (n > 0 && !(n == 1 && p[0] == '.')) {
            if (o)
                out[o++] = '/';
            memcpy(out + o, p, n);
            o += n;
            depth++;
        }
        p += n;
        if (*p == '/')
            p++;
    }
    out[o] = '\0';
    return depth;
}

static bool safe_name(const char *s, size_t n)
{
    if (n == 0 || n >= CATALOG_NAME_MAX)
        return false;
    char tmp[CATALOG_NAME_MAX];
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    return catalog_name_valid(tmp);
}

static int add_rec(struct ctx *c, const char *path, int depth)
{
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 32;
        struct rec *nr = realloc(c->recs, cap * sizeof(*nr));
        if (!nr)
            return -ENOMEM;
        c->recs = nr;
        c->cap = cap;
    }
    struct rec *r = &c->recs[c->n];
    memset(r, 0, sizeof(*r));
    if (!(r->path = strdup(path)))
        return -ENOMEM;
    r->depth = depth;
    const char *slash = strchr(path, '/');
    const char *first_end = slash ? slash : path + strlen(path);
    if (depth == 1 && safe_name(path, strlen(path))) {
        memcpy(r->base, path, strlen(path) + 1);
    } else if (depth == 2 && safe_name(path, (size_t)(first_end - path)) &&
               safe_name(slash + 1, strlen(slash + 1))) {
        memcpy(r->top, path, (size_t)(first_end - path));
        memcpy(r->base, slash + 1, strlen(slash + 1) + 1);
    }
    c->n++;
    return 0;
}

static bool macos_junk(const char *path)
{
    size_t n = strlen(MACOS_JUNK);
    return strncmp(path, MACOS_JUNK, n) == 0 && (path[n] == '/' || path[n] == '\0');
}

/* A build tree's entry: at most BUNDLE_MAX_DEPTH components, each a safe name or '.' and a
 * safe name (".pio"); never "." or ".." (norm_path removed and refused those). */
static bool build_path_ok(const char *path, int depth)
{
    if (depth > BUNDLE_MAX_DEPTH || macos_junk(path))
        return false;
    for (const char *p = path; *p;) {
        const char *slash = strchr(p, '/');
        size_t n = slash ? (size_t)(slash - p) : strlen(p);
        const char *s = p[0] == '.' ? p + 1 : p;
        if (!safe_name(s, n - (size_t)(s - p)))
            return false;
        p += n;
        if (*p == '/')
            p++;
    }
    return true;
}

/* Creates the directories of path's parents below dfd (existing ones are fine). */
static int make_parents(int dfd, const char *path)
{
    char tmp[PATH_MAX_CHARS];
    snprintf(tmp, sizeof(tmp), "%s", path);
    for (char *s = strchr(tmp, '/'); s; s = strchr(s + 1, '/')) {
        *s = '\0';
        if (mkdirat(dfd, tmp, 0700) != 0 && errno != EEXIST)
            return -errno;
        *s = '/';
    }
    return 0;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return w < 0 ? -errno : -EIO;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int too_big(struct ctx *c, const char *name)
{
    char s[160];
    return failf(c, -EFBIG,
                 "bundle entry \"%s\": the bundle unpacks to more than %llu bytes (the upload "
                 "limit api.max_body_bytes); is it a zip/gzip bomb? Send only the manifest and "
                 "the region files",
                 shown(name, s, sizeof(s)), (unsigned long long)c->lim->max_bytes);
}

/* The data of the current regular-file entry: into fd (or discarded when fd < 0), counted. */
static int copy_data(struct ctx *c, struct archive_entry *e, const char *name, int fd)
{
    char s[160], m[200];
    if (archive_entry_size_is_set(e) && archive_entry_size(e) > 0 &&
        (uint64_t)archive_entry_size(e) > c->lim->max_bytes - c->res->bytes)
        return too_big(c, name);
    for (;;) {
        la_ssize_t n = archive_read_data(c->a, c->buf, COPY_BUF);
        if (n == 0)
            return 0;
        if (n < 0) {
            return failf(c, -EINVAL, "bundle entry \"%s\": its data cannot be read (%s)",
                         shown(name, s, sizeof(s)), aerr(c->a, "damaged", m, sizeof(m)));
        }
        if ((uint64_t)n > c->lim->max_bytes - c->res->bytes)
            return too_big(c, name);
        c->res->bytes += (uint64_t)n;
        if (fd >= 0) {
            int rc = write_all(fd, c->buf, (size_t)n);
            if (rc < 0)
                return failf(c, rc, "cannot store the bundle entry \"%s\": %s",
                             shown(name, s, sizeof(s)), strerror(-rc));
        }
    }
}

static int on_file(struct ctx *c, struct archive_entry *e, const char *path, int depth)
{
    char s[160];
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->recs[i].path, path) == 0)
            return failf(c, -EINVAL,
                         "bundle entry \"%s\" appears twice: every file must be in the bundle once",
                         shown(path, s, sizeof(s)));
    int rc = add_rec(c, path, depth);
    if (rc < 0)
        return failf(c, rc, "out of memory");
    struct rec *r = &c->recs[c->n - 1];
    int fd = -1;
    bool wanted = r->base[0] && !(r->top[0] && strcmp(r->top, MACOS_JUNK) == 0);
    if (!wanted && c->lim->allow_build)
        wanted = build_path_ok(path, depth);
    if (wanted) {
        if ((rc = make_parents(c->dfd, path)) < 0)
            return failf(c, rc, "cannot store the bundle entry \"%s\": %s",
                         shown(path, s, sizeof(s)), strerror(-rc));
        fd = openat(c->dfd, path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (fd < 0) {
            if (errno == EEXIST || errno == ENOTDIR || errno == EISDIR || errno == ELOOP)
                return failf(c, -EINVAL,
                             "bundle entry \"%s\": its name is used both as a file and as a "
                             "directory",
                             shown(path, s, sizeof(s)));
            return failf(c, -errno, "cannot store the bundle entry \"%s\": %s",
                         shown(path, s, sizeof(s)), strerror(errno));
        }
        r->extracted = true;
    }
    rc = copy_data(c, e, path, fd);
    if (fd >= 0 && close(fd) != 0 && rc == 0)
        rc = failf(c, -errno, "cannot store the bundle entry \"%s\": %s", shown(path, s, sizeof(s)),
                   strerror(errno));
    return rc;
}

static int on_entry(struct ctx *c, struct archive_entry *e)
{
    char s[160], t[160];
    const char *raw = archive_entry_pathname(e);
    if (!raw)
        raw = archive_entry_pathname_utf8(e);
    if (!raw || !*raw)
        return failf(c, -EINVAL,
                     "bundle entry #%zu has no readable name: pack the files with tar or zip "
                     "under plain names",
                     c->res->n_entries);
    char path[PATH_MAX_CHARS];
    const char *why = NULL;
    int depth = norm_path(raw, path, sizeof(path), &why);
    if (depth < 0)
        return failf(c, -EINVAL,
                     "bundle entry \"%s\" %s: refused; pack the files under relative "
                     "names",
                     shown(raw, s, sizeof(s)), why);
    if (archive_entry_hardlink(e))
        return failf(c, -EINVAL,
                     "bundle entry \"%s\" is a hard link (to \"%s\"): links are not allowed; "
                     "pack the file itself",
                     shown(raw, s, sizeof(s)), shown(archive_entry_hardlink(e), t, sizeof(t)));
    switch (archive_entry_filetype(e)) {
    case AE_IFREG:
        if (depth == 0)
            return failf(c, -EINVAL, "bundle entry \"%s\" is a file without a name",
                         shown(raw, s, sizeof(s)));
        return on_file(c, e, path, depth);
    case AE_IFDIR:
        if (depth == 1 && safe_name(path, strlen(path)) && mkdirat(c->dfd, path, 0700) != 0 &&
            errno != EEXIST)
            return failf(c, -errno, "cannot store the bundle entry \"%s\": %s",
                         shown(path, s, sizeof(s)), strerror(errno));
        return 0;
    case AE_IFLNK:
        return failf(
            c, -EINVAL,
            "bundle entry \"%s\" is a symbolic link (to \"%s\"): links are not "
            "allowed; pack the file itself",
            shown(raw, s, sizeof(s)),
            shown(archive_entry_symlink(e) ? archive_entry_symlink(e) : "?", t, sizeof(t)));
    default:
        return failf(c, -EINVAL,
                     "bundle entry \"%s\" is a device, FIFO or socket: only plain files are "
                     "allowed",
                     shown(raw, s, sizeof(s)));
    }
}

/* Reads <root>/manifest.json as JSON (NULL: unreadable). */
static struct json_object *manifest_json(struct ctx *c, const char *root)
{
    char p[CATALOG_NAME_MAX + 32];
    snprintf(p, sizeof(p), "%s%smanifest.json", root, root[0] ? "/" : "");
    int fd = openat(c->dfd, p, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    char *buf = malloc(MANIFEST_MAX_BYTES + 1);
    size_t len = 0;
    ssize_t n = 0;
    while (buf && len < MANIFEST_MAX_BYTES &&
           ((n = read(fd, buf + len, MANIFEST_MAX_BYTES - len)) > 0 || (n < 0 && errno == EINTR)))
        if (n > 0)
            len += (size_t)n;
    close(fd);
    struct json_object *m = NULL;
    if (buf && n >= 0) {
        buf[len] = '\0';
        m = json_tokener_parse(buf);
    }
    free(buf);
    return m;
}

/* An ESP Web Tools manifest (builds[], no regions)? */
static bool web_tools_manifest(struct ctx *c, const char *root)
{
    struct json_object *m = manifest_json(c, root);
    bool r = m && json_object_is_type(m, json_type_object) &&
             json_object_object_get_ex(m, "builds", NULL) &&
             !json_object_object_get_ex(m, "regions", NULL);
    json_object_put(m);
    return r;
}

/* The file names the regions of <root>/manifest.json use (NULL: unreadable). */
static struct json_object *manifest_files(struct ctx *c, const char *root)
{
    struct json_object *m = manifest_json(c, root), *regs = NULL, *out = NULL;
    if (m && json_object_object_get_ex(m, "regions", &regs) &&
        json_object_is_type(regs, json_type_array)) {
        out = json_object_new_object();
        for (size_t i = 0; out && i < json_object_array_length(regs); i++) {
            struct json_object *r = json_object_array_get_idx(regs, i), *f;
            if (json_object_is_type(r, json_type_object) &&
                json_object_object_get_ex(r, "file", &f) &&
                json_object_is_type(f, json_type_string))
                json_object_object_add(out, json_object_get_string(f), NULL);
        }
    }
    json_object_put(m);
    return out;
}

static int add_warning(struct bundle_result *res, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int add_warning(struct bundle_result *res, const char *fmt, ...)
{
    char **nw = realloc(res->warnings, (res->n_warnings + 1) * sizeof(*nw));
    if (!nw)
        return -ENOMEM;
    res->warnings = nw;
    va_list ap;
    va_start(ap, fmt);
    int rc = vasprintf(&nw[res->n_warnings], fmt, ap);
    va_end(ap);
    if (rc < 0)
        return -ENOMEM;
    res->n_warnings++;
    return 0;
}

/* Picks the set's directory (where manifest.json is) and lists what the set does not use. */
static int finish(struct ctx *c)
{
    char s[160], t[160];
    const struct rec *root_m = NULL, *top_m = NULL, *top_m2 = NULL, *deep_m = NULL;
    for (size_t i = 0; i < c->n; i++) {
        const struct rec *r = &c->recs[i];
        const char *b = strrchr(r->path, '/');
        if (r->extracted && strcmp(r->base, "manifest.json") == 0) {
            if (!r->top[0])
                root_m = r;
            else if (!top_m)
                top_m = r;
            else if (!top_m2)
                top_m2 = r;
        } else if (!deep_m && !macos_junk(r->path) && b && strcmp(b + 1, "manifest.json") == 0) {
            deep_m = r;
        }
    }
    if (c->lim->allow_build && !root_m && !top_m) {
        c->res->build = true; /* no station manifest: the caller recognises the build */
        return 0;
    }
    if (!root_m && top_m2)
        return failf(c, -EINVAL,
                     "the bundle has two manifests, \"%s\" and \"%s\": send one firmware set "
                     "per bundle",
                     shown(top_m->path, s, sizeof(s)), shown(top_m2->path, t, sizeof(t)));
    if (!root_m && !top_m) {
        if (deep_m)
            return failf(c, -EINVAL,
                         "no manifest.json at the root of the bundle or in one top-level "
                         "directory (found \"%s\", too deep): put manifest.json and the region "
                         "files at the root or in one directory",
                         shown(deep_m->path, s, sizeof(s)));
        return failf(c, -EINVAL,
                     "the bundle has no manifest.json (at its root or in one top-level "
                     "directory): add the manifest next to the region files");
    }
    const char *root = root_m ? "" : top_m->top;
    snprintf(c->res->root, sizeof(c->res->root), "%s", root);

    if (c->lim->allow_build && web_tools_manifest(c, root)) {
        c->res->build = true; /* ESP Web Tools' manifest.json: builds[], not regions */
        return 0;
    }
    struct json_object *used = manifest_files(c, root);
    if (!used)
        return 0; /* the validation reports the manifest; ignored files are beside the point */
    size_t ignored = 0;
    int rc = 0;
    for (size_t i = 0; i < c->n && rc == 0; i++) {
        const struct rec *r = &c->recs[i];
        if (r == root_m || r == top_m || macos_junk(r->path))
            continue;
        bool in_root = root[0] ? (r->depth == 2 && strcmp(r->top, root) == 0) : r->depth == 1;
        const char *why;
        if (!in_root)
            why = "it is not in the directory holding manifest.json";
        else if (!r->extracted)
            why = "its name is not a usable file name (letters, digits, '.', '_' and '-'; not "
                  "starting with '.')";
        else if (json_object_object_get_ex(used, r->base, NULL))
            continue;
        else
            why = "the manifest does not use it";
        if (++ignored <= BUNDLE_MAX_WARNINGS)
            rc = add_warning(c->res, "bundle entry \"%s\" ignored: %s",
                             shown(r->path, s, sizeof(s)), why);
    }
    if (rc == 0 && ignored > BUNDLE_MAX_WARNINGS)
        rc = add_warning(c->res, "%zu more bundle entries ignored", ignored - BUNDLE_MAX_WARNINGS);
    json_object_put(used);
    return rc < 0 ? failf(c, rc, "out of memory") : 0;
}

static int extract(struct archive *a, int open_rc, const char *dir, const struct bundle_limits *lim,
                   struct bundle_result *res)
{
    struct ctx c = {.a = a, .dfd = -1, .lim = lim, .res = res};
    int rc = 0;
    char m[200];
    if (open_rc != ARCHIVE_OK && open_rc != ARCHIVE_WARN) {
        rc = failf(&c, -EINVAL,
                   "the body is not a readable tar, tar.gz or zip archive (%s): send a .tar, "
                   ".tar.gz or .zip file, or the manifest and files as multipart/form-data",
                   aerr(a, "unknown format", m, sizeof(m)));
        goto out;
    }
    c.dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (c.dfd < 0) {
        rc = failf(&c, -errno, "cannot open %s: %s", dir, strerror(errno));
        goto out;
    }
    if (!(c.buf = malloc(COPY_BUF))) {
        rc = failf(&c, -ENOMEM, "out of memory");
        goto out;
    }
    const char *last = NULL;
    for (;;) {
        struct archive_entry *e;
        int r = archive_read_next_header(a, &e);
        if (r == ARCHIVE_EOF)
            break;
        if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
            char s[160];
            const char *msg = aerr(a, "damaged", m, sizeof(m));
            if (res->n_entries == 0)
                rc = failf(&c, -EINVAL,
                           "the body is not a readable tar, tar.gz or zip archive (%s): send a "
                           ".tar, .tar.gz or .zip file, or the manifest and files as "
                           "multipart/form-data",
                           msg);
            else
                rc = failf(&c, -EINVAL,
                           "the bundle is damaged after the entry \"%s\" (%s): pack it again",
                           shown(last ? last : "?", s, sizeof(s)), msg);
            goto out;
        }
        if (++res->n_entries > lim->max_entries) {
            rc = failf(&c, -EFBIG,
                       "the bundle has more than %zu entries: send only the manifest and the "
                       "region files",
                       lim->max_entries);
            goto out;
        }
        if ((rc = on_entry(&c, e)) < 0)
            goto out;
        if (c.n)
            last = c.recs[c.n - 1].path;
    }
    rc = finish(&c);
out:
    if (c.dfd >= 0)
        close(c.dfd);
    for (size_t i = 0; i < c.n; i++)
        free(c.recs[i].path);
    free(c.recs);
    free(c.buf);
    archive_read_free(a);
    if (rc < 0) {
        for (size_t i = 0; i < res->n_warnings; i++)
            free(res->warnings[i]);
        free(res->warnings);
        res->warnings = NULL;
        res->n_warnings = 0;
        res->root[0] = '\0';
    }
    return rc;
}

static struct archive *reader(void)
{
    struct archive *a = archive_read_new();
    if (!a)
        return NULL;
    /* Only what a firmware bundle needs: less code reachable from the network. */
    if (archive_read_support_filter_gzip(a) < ARCHIVE_WARN ||
        archive_read_support_format_tar(a) != ARCHIVE_OK ||
        archive_read_support_format_zip(a) != ARCHIVE_OK) {
        archive_read_free(a);
        return NULL;
    }
    return a;
}

int bundle_extract_file(const char *path, const char *dir, const struct bundle_limits *lim,
                        struct bundle_result *res)
{
    memset(res, 0, sizeof(*res));
    struct archive *a = reader();
    if (!a) {
        snprintf(res->err, sizeof(res->err), "cannot set up the archive reader");
        return -ENOMEM;
    }
    return extract(a, archive_read_open_filename(a, path, COPY_BUF), dir, lim, res);
}

int bundle_extract_mem(const void *data, size_t len, const char *dir,
                       const struct bundle_limits *lim, struct bundle_result *res)
{
    memset(res, 0, sizeof(*res));
    struct archive *a = reader();
    if (!a) {
        snprintf(res->err, sizeof(res->err), "cannot set up the archive reader");
        return -ENOMEM;
    }
    return extract(a, archive_read_open_memory(a, data, len), dir, lim, res);
}
