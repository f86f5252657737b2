/*
 * upload: POST /api/v1/firmware and /api/v1/firmware/validate.
 *
 * The multipart body is parsed by MHD's post processor and streamed part by
 * part into a fresh directory <data_dir>/uploads/XXXXXX (the "manifest" part
 * becomes manifest.json, every other part is stored under its file name, which
 * must be a safe catalog name). When the body is complete the connection is
 * suspended and a thread validates (and imports) the directory with the
 * catalog -- hashing and compressing megabytes must not stall the loop -- then
 * reports back through a pipe; the loop resumes the connection and answers.
 *
 * A bundle (Content-Type application/x-tar, gzip, zip or octet-stream, see
 * bundle.h) is streamed unparsed into <upload dir>/.bundle; the thread first
 * extracts it into <upload dir>/x (bundle.c: paths rebuilt, links, devices,
 * bombs refused) and removes the archive, then validates/imports the directory
 * holding manifest.json exactly like a multipart upload. An unsafe or
 * unreadable bundle is a 400 naming the entry; entries the set does not use
 * are warnings.
 *
 * A bundle without the station's manifest.json is a build's output (ESP-IDF,
 * PlatformIO, Arduino, ESP Web Tools, a merged image): buildimport.c
 * recognises it and imports one set per build (?name= and ?version= override
 * what the build suggests); the answer says what was recognised ("source").
 * Nothing recognised is a 400, a recognised build with a problem a 422, both
 * naming the file.
 *
 * Invariants: nothing outside the upload directory is ever written (names are
 * checked with catalog_name_valid() before use); the directory is removed when
 * the request ends, and stale ones are removed at start-up; the thread touches
 * only its struct upload (result fields) and the catalog (thread-safe).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>

#include "buildimport.h"
#include "bundle.h"
#include "catalog.h"
#include "config.h"
#include "log.h"
#include "loop.h"
#include "station.h"
#include "web_priv.h"

struct upload {
    struct web *w;
    struct MHD_Connection *c;
    struct MHD_PostProcessor *pp;
    char dir[PATH_MAX];
    char setdir[PATH_MAX]; /* holds manifest.json: dir, or a bundle's extraction directory */
    bool validate_only, replace;
    bool bundle;         /* an archive body, stored as <dir>/.bundle */
    uint64_t bundle_max; /* unpacked bytes allowed (api.max_body_bytes, read on the loop) */
    int fd;
    char key[128], file[CATALOG_NAME_MAX];
    bool have_manifest;
    size_t total;
    /* first problem with the body */
    int fail_status;
    char fail_code[32];
    char fail_msg[256];
    /* the thread */
    struct catalog *cat;
    pthread_t th;
    bool running, finished;
    int rc;
    struct catalog_report rep;
    char name[CATALOG_NAME_MAX], version[CATALOG_NAME_MAX];
    int bundle_rc; /* the extraction failed: 400 (or 500 for storage errors) with bres.err */
    struct bundle_result bres;
    /* a build's output instead of a manifest (bres.build) */
    char q_name[CATALOG_NAME_MAX + 1], q_version[CATALOG_NAME_MAX + 1]; /* ?name= ?version= */
    struct buildimport_result bi;
};

static void fail(struct upload *u, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void fail(struct upload *u, int status, const char *code, const char *fmt, ...)
{
    if (u->fail_status)
        return;
    u->fail_status = status;
    snprintf(u->fail_code, sizeof(u->fail_code), "%s", code);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(u->fail_msg, sizeof(u->fail_msg), fmt, ap);
    va_end(ap);
}

/* Removes dir and the plain files in it. */
static void remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            char p[PATH_MAX + 256];
            snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
            if (unlink(p) != 0 && errno == EISDIR)
                remove_dir(p);
        }
        closedir(d);
    }
    rmdir(dir);
}

static void close_part(struct upload *u)
{
    if (u->fd >= 0) {
        if (close(u->fd) != 0)
            fail(u, 500, "internal", "cannot store the upload: %s", strerror(errno));
        u->fd = -1;
    }
}

static bool reserved(const char *name)
{
    size_t n = strlen(name);
    return strcmp(name, "manifest.json") == 0 || strcmp(name, "index.json") == 0 ||
           (n >= 2 && strcmp(name + n - 2, ".z") == 0);
}

static enum MHD_Result on_part(void *cls, enum MHD_ValueKind kind, const char *key,
                               const char *filename, const char *content_type,
                               const char *transfer_encoding, const char *data, uint64_t off,
                               size_t size)
{
    (void)kind;
    (void)content_type;
    (void)transfer_encoding;
    struct upload *u = cls;
    if (u->fail_status)
        return MHD_YES; /* keep reading; the answer is decided */
    if (!key)
        key = "";
    if (off == 0 || u->fd < 0 || strcmp(u->key, key) != 0) {
        /* A new part. */
        close_part(u);
        const char *name;
        if (strcmp(key, "manifest") == 0) {
            name = "manifest.json";
            if (u->have_manifest) {
                fail(u, 400, "bad_request", "more than one \"manifest\" part");
                return MHD_YES;
            }
            u->have_manifest = true;
        } else {
            name = filename && *filename ? filename : key;
            const char *slash = strrchr(name, '/');
            if (slash)
                name = slash + 1;
            if (!catalog_name_valid(name) || strlen(name) >= CATALOG_NAME_MAX) {
                fail(u, 400, "bad_request",
                     "part \"%.64s\": the file name \"%.64s\" is not allowed (letters, digits, "
                     "'.', '_' and '-'; not starting with '.')",
                     key, name);
                return MHD_YES;
            }
            if (reserved(name)) {
                fail(u, 400, "bad_request",
                     "part \"%.64s\": \"%s\" is a reserved name (send the manifest as the "
                     "part named \"manifest\")",
                     key, name);
                return MHD_YES;
            }
        }
        snprintf(u->key, sizeof(u->key), "%s", key);
        snprintf(u->file, sizeof(u->file), "%s", name);
        char path[PATH_MAX + CATALOG_NAME_MAX];
        snprintf(path, sizeof(path), "%s/%s", u->dir, name);
        u->fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (u->fd < 0) {
            if (errno == EEXIST)
                fail(u, 400, "bad_request", "two parts for the file \"%s\"", name);
            else
                fail(u, 500, "internal", "cannot store the upload: %s", strerror(errno));
            return MHD_YES;
        }
    }
    while (size > 0) {
        ssize_t n = write(u->fd, data, size);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            fail(u, 500, "internal", "cannot store the upload: %s", strerror(errno));
            return MHD_YES;
        }
        data += n;
        size -= (size_t)n;
    }
    return MHD_YES;
}

struct upload *upload_begin(struct web *w, struct MHD_Connection *c, bool validate_only,
                            bool replace, struct api_response *resp)
{
    struct upload *u = calloc(1, sizeof(*u));
    if (!u) {
        api_error(resp, 500, "internal", NULL, "out of memory");
        return NULL;
    }
    u->w = w;
    u->c = c;
    u->fd = -1;
    u->validate_only = validate_only;
    u->replace = replace;
    u->cat = station_catalog(w->st);
    catalog_report_init(&u->rep);
    char base[PATH_MAX - 16];
    snprintf(base, sizeof(base), "%s/uploads", station_data_dir(w->st));
    if (mkdir(base, 0700) != 0 && errno != EEXIST) {
        api_error(resp, 500, "internal", NULL, "cannot create %s: %s", base, strerror(errno));
        free(u);
        return NULL;
    }
    snprintf(u->dir, sizeof(u->dir), "%s/XXXXXX", base);
    if (!mkdtemp(u->dir)) {
        api_error(resp, 500, "internal", NULL, "cannot create an upload directory in %s: %s", base,
                  strerror(errno));
        free(u);
        return NULL;
    }
    snprintf(u->setdir, sizeof(u->setdir), "%s", u->dir);
    const char *qn = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "name");
    const char *qv = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "version");
    snprintf(u->q_name, sizeof(u->q_name), "%s", qn ? qn : "");
    snprintf(u->q_version, sizeof(u->q_version), "%s", qv ? qv : "");
    if (bundle_content_type(MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Type"))) {
        u->bundle = true;
        u->bundle_max = station_config(w->st)->api.max_body_bytes;
        char path[PATH_MAX + 16];
        snprintf(path, sizeof(path), "%s/.bundle", u->dir);
        u->fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (u->fd < 0) {
            api_error(resp, 500, "internal", NULL, "cannot store the upload: %s", strerror(errno));
            remove_dir(u->dir);
            free(u);
            return NULL;
        }
        return u;
    }
    u->pp = MHD_create_post_processor(c, 64 * 1024, on_part, u);
    if (!u->pp) {
        api_error(resp, 400, "bad_request", NULL,
                  "cannot read the multipart body (is the boundary in the Content-Type?)");
        remove_dir(u->dir);
        free(u);
        return NULL;
    }
    return u;
}

void upload_feed(struct upload *u, const char *data, size_t len)
{
    if (u->fail_status == 413)
        return;
    u->total += len;
    if (u->total > station_config(u->w->st)->api.max_body_bytes) {
        u->fail_status = 0; /* 413 wins over anything else */
        fail(u, 413, "payload_too_large",
             "the upload is larger than api.max_body_bytes (%zu bytes)",
             station_config(u->w->st)->api.max_body_bytes);
        close_part(u);
        return;
    }
    if (u->bundle) {
        while (len > 0 && !u->fail_status) {
            ssize_t n = write(u->fd, data, len);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0) {
                fail(u, 500, "internal", "cannot store the upload: %s",
                     n < 0 ? strerror(errno) : "short write");
                close_part(u);
                return;
            }
            data += n;
            len -= (size_t)n;
        }
        return;
    }
    if (MHD_post_process(u->pp, data, len) != MHD_YES)
        fail(u, 400, "bad_request", "malformed multipart/form-data body");
}

/* On the thread: <dir>/.bundle -> <dir>/x; setdir names the directory holding manifest.json. */
static int extract_bundle(struct upload *u)
{
    char archive[PATH_MAX + 16], x[PATH_MAX + 16];
    snprintf(archive, sizeof(archive), "%s/.bundle", u->dir);
    snprintf(x, sizeof(x), "%s/x", u->dir);
    const struct bundle_limits lim = {
        .max_entries = BUNDLE_MAX_ENTRIES,
        .max_bytes = u->bundle_max,
        .allow_build = true,
    };
    int rc = mkdir(x, 0700) == 0 ? 0 : -errno;
    if (rc < 0)
        snprintf(u->bres.err, sizeof(u->bres.err), "cannot create %s: %s", x, strerror(-rc));
    else
        rc = bundle_extract_file(archive, x, &lim, &u->bres);
    unlink(archive); /* no longer needed: free the space before hashing */
    if (rc < 0) {
        u->bundle_rc = rc;
        u->rc = rc; /* nothing was imported: no firmware.imported event (on_done) */
        log_msg(LOG_LEVEL_INFO, "firmware bundle refused: %s", u->bres.err);
        return rc;
    }
    snprintf(u->setdir, sizeof(u->setdir), "%s%s%s", x, u->bres.root[0] ? "/" : "", u->bres.root);
    return 0;
}

/* On the thread: a bundle holding a build's output (bres.build) into the catalog. */
static void import_build(struct upload *u)
{
    /* A bundle of one directory ("blink-export/..."): the build is in it. */
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s", u->setdir);
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e, *only = NULL;
        size_t n = 0;
        char name[256] = "";
        while ((e = readdir(d)) != NULL)
            if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0 && ++n == 1) {
                only = e;
                snprintf(name, sizeof(name), "%s", only->d_name);
            }
        closedir(d);
        char sub[PATH_MAX + 256];
        struct stat st;
        snprintf(sub, sizeof(sub), "%s/%s", dir, name);
        if (n == 1 && name[0] != '.' && stat(sub, &st) == 0 && S_ISDIR(st.st_mode) &&
            strlen(sub) < sizeof(dir))
            snprintf(dir, sizeof(dir), "%s", sub);
    }
    const struct buildimport_opts o = {
        .name = u->q_name[0] ? u->q_name : NULL,
        .version = u->q_version[0] ? u->q_version : NULL,
        .replace = u->replace,
        .validate_only = u->validate_only,
    };
    u->rc = buildimport_run(u->cat, dir, &o, &u->bi, &u->rep);
    if (u->bi.n_sets) {
        size_t last = u->rc == 0 ? 0 : u->bi.n_sets - 1; /* the one named in the answer */
        snprintf(u->name, sizeof(u->name), "%s", u->bi.names[last]);
        snprintf(u->version, sizeof(u->version), "%s", u->bi.versions[last]);
    }
    if (u->bi.err[0])
        log_msg(LOG_LEVEL_INFO, "firmware bundle refused: %s", u->bi.err);
}

static void *worker(void *arg)
{
    struct upload *u = arg;
    if (u->bundle && extract_bundle(u) < 0)
        goto done;
    if (u->bundle && u->bres.build) {
        import_build(u);
        goto done;
    }
    char path[PATH_MAX + 32];
    snprintf(path, sizeof(path), "%s/manifest.json", u->setdir);
    struct json_object *m = json_object_from_file(path), *v;
    if (m && json_object_object_get_ex(m, "name", &v) && json_object_is_type(v, json_type_string))
        snprintf(u->name, sizeof(u->name), "%s", json_object_get_string(v));
    if (m && json_object_object_get_ex(m, "version", &v) &&
        json_object_is_type(v, json_type_string))
        snprintf(u->version, sizeof(u->version), "%s", json_object_get_string(v));
    json_object_put(m);
    if (u->validate_only)
        u->rc = catalog_validate_dir(u->setdir, &u->rep);
    else
        u->rc = catalog_import(u->cat, u->setdir, u->replace, &u->rep);
done:
    /* Last touch: the loop takes over. */
    if (write(u->w->upload_pipe[1], &u, sizeof(u)) != (ssize_t)sizeof(u))
        abort(); /* the pipe outlives every thread (upload_fini joins them first) */
    return NULL;
}

static void on_done(void *ctx, int fd, uint32_t events)
{
    (void)events;
    struct web *w = ctx;
    struct upload *u;
    while (read(fd, &u, sizeof(u)) == (ssize_t)sizeof(u)) {
        pthread_join(u->th, NULL);
        u->running = false;
        u->finished = true;
        w->uploads_running--;
        /* A build's sets: all but the last are in the catalog even if the last failed. */
        size_t n_done = !u->bres.build ? (u->rc == 0 && u->name[0])
                        : u->rc == 0   ? u->bi.n_sets
                        : u->bi.n_sets ? u->bi.n_sets - 1
                                       : 0;
        if (u->validate_only || u->bundle_rc != 0)
            n_done = 0;
        if (n_done)
            station_catalog_changed(w->st);
        for (size_t i = 0; i < n_done; i++) {
            const char *name = u->bres.build ? u->bi.names[i] : u->name;
            const char *version = u->bres.build ? u->bi.versions[i] : u->version;
            struct json_object *d = json_object_new_object();
            json_object_object_add(d, "name", json_object_new_string(name));
            json_object_object_add(d, "version", json_object_new_string(version));
            if (u->replace)
                json_object_object_add(d, "replace", json_object_new_boolean(true));
            station_post_event(w->st, "firmware.imported", NULL, NULL, 0,
                               json_object_to_json_string_ext(d, JSON_C_TO_STRING_PLAIN));
            json_object_put(d);
            log_msg(LOG_LEVEL_NOTICE, "firmware %s@%s imported through the API", name, version);
        }
        MHD_resume_connection(u->c);
        web_kick(w);
    }
}

/* "regions[2] app.bin: ..." -> the file named by the manifest's regions[i]. */
static struct json_object *problems_json(const struct upload *u, bool warnings_only)
{
    char path[PATH_MAX + 32];
    snprintf(path, sizeof(path), "%s/manifest.json", u->setdir);
    struct json_object *m = json_object_from_file(path), *regs = NULL;
    if (m && (!json_object_object_get_ex(m, "regions", &regs) ||
              !json_object_is_type(regs, json_type_array)))
        regs = NULL;
    struct json_object *arr = json_object_new_array();
    for (size_t i = 0; i < u->rep.n; i++) {
        const struct catalog_problem *p = &u->rep.items[i];
        if (warnings_only && !p->warning)
            continue;
        struct json_object *o = json_object_new_object();
        json_object_object_add(o, "severity",
                               json_object_new_string(p->warning ? "warning" : "error"));
        json_object_object_add(o, "region", p->region >= 0 ? json_object_new_int(p->region) : NULL);
        struct json_object *file = NULL, *r, *f;
        if (p->region >= 0 && regs && (size_t)p->region < json_object_array_length(regs) &&
            (r = json_object_array_get_idx(regs, (size_t)p->region)) &&
            json_object_object_get_ex(r, "file", &f) && json_object_is_type(f, json_type_string))
            file = json_object_new_string(json_object_get_string(f));
        json_object_object_add(o, "file", file);
        json_object_object_add(o, "message", json_object_new_string(p->message));
        json_object_array_add(arr, o);
    }
    for (size_t i = 0; i < u->bres.n_warnings; i++) {
        struct json_object *o = json_object_new_object();
        json_object_object_add(o, "severity", json_object_new_string("warning"));
        json_object_object_add(o, "region", NULL);
        json_object_object_add(o, "file", NULL);
        json_object_object_add(o, "message", json_object_new_string(u->bres.warnings[i]));
        json_object_array_add(arr, o);
    }
    json_object_put(m);
    return arr;
}

static void answer(struct upload *u, struct api_response *resp)
{
    if (u->bundle_rc == -EINVAL || u->bundle_rc == -EFBIG) {
        api_error(resp, 400, "bad_request", NULL, "%s", u->bres.err);
        return;
    }
    if (u->bundle_rc < 0) {
        api_error(resp, 500, "internal", NULL, "the bundle could not be unpacked: %s", u->bres.err);
        return;
    }
    if (u->bres.build && u->rc == -ENOTSUP) {
        api_error(resp, 400, "bad_request", NULL,
                  "the bundle has no manifest.json (at its root or in one top-level directory) "
                  "and no build the station recognises: %s",
                  u->bi.err);
        return;
    }
    if (u->bres.build && !u->bi.source && u->rc < 0 && u->rc != -ENOMEM) {
        /* A recognised build with a problem: the message names the file. */
        api_error(resp, 422, "validation_failed", NULL, "the build cannot be imported: %s",
                  u->bi.err);
        struct json_object *o = json_tokener_parse(resp->body), *e;
        if (o && json_object_object_get_ex(o, "error", &e)) {
            struct json_object *arr = json_object_new_array(), *p = json_object_new_object();
            json_object_object_add(p, "severity", json_object_new_string("error"));
            json_object_object_add(p, "region", NULL);
            json_object_object_add(p, "file", NULL);
            json_object_object_add(p, "message", json_object_new_string(u->bi.err));
            json_object_array_add(arr, p);
            json_object_object_add(e, "problems", arr);
            json_object_object_add(o, "valid", json_object_new_boolean(false));
            api_json(resp, 422, o);
        } else {
            json_object_put(o);
        }
        return;
    }
    if (u->rc == -EINVAL || (u->rc < 0 && u->rep.n_errors > 0 && u->rc != -EEXIST)) {
        char first[400] = "";
        for (size_t i = 0; i < u->rep.n && !first[0]; i++)
            if (!u->rep.items[i].warning)
                snprintf(first, sizeof(first), "%s", u->rep.items[i].message);
        api_error(resp, 422, "validation_failed", NULL, "the firmware set has %zu problem(s)%s%s",
                  u->rep.n_errors, first[0] ? "; first: " : "", first);
        struct json_object *o = json_tokener_parse(resp->body), *e;
        if (o && json_object_object_get_ex(o, "error", &e)) {
            json_object_object_add(e, "problems", problems_json(u, false));
            json_object_object_add(o, "valid", json_object_new_boolean(false));
            api_json(resp, 422, o);
        } else {
            json_object_put(o);
        }
        return;
    }
    if (u->rc == -EEXIST) {
        api_error(resp, 409, "exists", "version",
                  "%s@%s is already in the catalog (versions are immutable; add ?replace=true "
                  "to replace it)",
                  u->name, u->version);
        return;
    }
    if (u->rc < 0) {
        char buf[1024];
        catalog_report_format(&u->rep, buf, sizeof(buf));
        api_error(resp, 500, "internal", NULL, "the firmware set could not be stored: %s%s",
                  strerror(-u->rc), buf[0] ? buf : "");
        return;
    }
    struct json_object *o = json_object_new_object();
    if (u->bres.build) /* what was recognised, and every set made from it */
        json_object_object_add(o, "source", json_object_get(u->bi.source));
    if (u->validate_only) {
        json_object_object_add(o, "valid", json_object_new_boolean(true));
        json_object_object_add(o, "problems", problems_json(u, true));
        api_json(resp, 200, o);
        return;
    }
    json_object_object_add(o, "imported", api_firmware_json(u->w->st, u->name, u->version));
    if (u->bres.build) {
        struct json_object *all = json_object_new_array();
        for (size_t i = 0; i < u->bi.n_sets; i++)
            json_object_array_add(all,
                                  api_firmware_json(u->w->st, u->bi.names[i], u->bi.versions[i]));
        json_object_object_add(o, "sets", all);
    }
    json_object_object_add(o, "warnings", problems_json(u, true));
    snprintf(resp->location, sizeof(resp->location), "/api/v1/firmware/%.38s/%.38s", u->name,
             u->version);
    api_json(resp, 201, o);
}

int upload_finish(struct upload *u, struct api_response *resp)
{
    api_response_init(resp);
    if (u->finished) {
        answer(u, resp);
        return 0;
    }
    if (!u->fail_status && u->pp) {
        if (MHD_destroy_post_processor(u->pp) != MHD_YES)
            fail(u, 400, "bad_request", "the multipart/form-data body ended early");
        u->pp = NULL;
    }
    close_part(u);
    if (!u->fail_status && u->bundle && u->total == 0)
        fail(u, 400, "bad_request",
             "the body is empty: send the .tar, .tar.gz or .zip bundle as the request body");
    if (!u->fail_status && !u->have_manifest && !u->bundle)
        fail(u, 400, "bad_request",
             "no \"manifest\" part: send the manifest JSON as the part named \"manifest\" and "
             "each region file as a file part named by its file name");
    if (u->fail_status) {
        api_error(resp, u->fail_status, u->fail_code, NULL, "%s", u->fail_msg);
        return 0;
    }
    int rc = pthread_create(&u->th, NULL, worker, u);
    if (rc != 0) {
        api_error(resp, 503, "unavailable", NULL, "cannot start the validation: %s", strerror(rc));
        return 0;
    }
    u->running = true;
    u->w->uploads_running++;
    return 1;
}

void upload_free(struct upload *u)
{
    if (!u)
        return;
    if (u->running)
        return; /* cannot happen: a suspended connection never completes */
    if (u->pp)
        MHD_destroy_post_processor(u->pp);
    if (u->fd >= 0)
        close(u->fd);
    remove_dir(u->dir);
    catalog_report_free(&u->rep);
    bundle_result_free(&u->bres);
    buildimport_result_free(&u->bi);
    free(u);
}

int upload_init(struct web *w)
{
    if (pipe2(w->upload_pipe, O_CLOEXEC | O_NONBLOCK) != 0)
        return -errno;
    int rc = loop_add_fd(w->loop, w->upload_pipe[0], EPOLLIN, on_done, w);
    if (rc < 0)
        return rc;
    /* Left behind by a crash: never needed again. */
    char base[PATH_MAX];
    snprintf(base, sizeof(base), "%s/uploads", station_data_dir(w->st));
    DIR *d = opendir(base);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (e->d_name[0] == '.')
                continue;
            char p[PATH_MAX + 256];
            snprintf(p, sizeof(p), "%s/%s", base, e->d_name);
            remove_dir(p);
        }
        closedir(d);
    }
    return 0;
}

void upload_fini(struct web *w)
{
    if (w->upload_pipe[0] < 0)
        return;
    /* Wait for running validations; their answers resume the connections. */
    while (w->uploads_running > 0) {
        struct upload *u;
        int fl = fcntl(w->upload_pipe[0], F_GETFL);
        fcntl(w->upload_pipe[0], F_SETFL, fl & ~O_NONBLOCK);
        if (read(w->upload_pipe[0], &u, sizeof(u)) != (ssize_t)sizeof(u))
            break;
        pthread_join(u->th, NULL);
        u->running = false;
        u->finished = true;
        w->uploads_running--;
        MHD_resume_connection(u->c);
    }
    loop_del_fd(w->loop, w->upload_pipe[0]);
    close(w->upload_pipe[0]);
    close(w->upload_pipe[1]);
    w->upload_pipe[0] = w->upload_pipe[1] = -1;
}
