/*
 * line_fw.c: fetching a firmware set another station of the line holds into the
 * local catalog (line_fw.h): which files from which holders (the line's
 * description, line_fw_desc.h; records_blobs.h), a worker thread per set that
 * GETs each file (line_fetch.h) and checks it by size, SHA-256 and MD5, the
 * catalog import, and the jobs waiting for it. Publishing this station's own
 * sets is line_fw_publish.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>
#include <openssl/evp.h>

#include "catalog.h"
#include "config.h"
#include "line_fetch.h"
#include "line_fw_desc.h"
#include "line_fw_priv.h"
#include "log.h"
#include "loop.h"
#include "records.h"
#include "records_blobs.h"
#include "station.h"

#define MAX_HOLDERS 8
#define PROFILE_CHECK_MS 5000

struct lf_holder {
    char station[RECORDS_STATION_LEN];
    char address[RECORDS_ADDRESS_LEN];
};

struct lf_file {
    char file[CATALOG_NAME_MAX + 1];
    char sha[RECORDS_SHA256_LEN];
    char md5[33];
    int64_t size;
    struct lf_holder holders[MAX_HOLDERS];
    size_t n_holders;
    uint8_t *data; /* worker: the checked content */
    char from[RECORDS_STATION_LEN];
};

struct lf_waiter {
    line_fw_done_fn done;
    void *ctx;
    int64_t key;
    void *data;
    struct lf_waiter *next;
};

enum lf_state { LF_FETCHING = 0, LF_FAILED, LF_DONE };

struct lf_fetch {
    struct line_fw *lf;
    char name[RECORDS_NAME_LEN];
    char version[RECORDS_NAME_LEN];
    char *manifest; /* the manifest.json text to import */
    struct lf_file *files;
    size_t n_files;
    char *token; /* api.token of this station, NULL none */
    struct catalog *cat;
    pthread_t thread;
    bool joinable;
    /* worker result */
    int rc;
    char err[600];
    uint64_t bytes;
    /* loop side */
    enum lf_state state;
    int64_t ended_ms;
    int64_t started_ms;
    struct lf_waiter *waiters;
    struct lf_fetch *next;
};

static int64_t now_ms(void)
{
    return loop_now_ms();
}

static const char *lf_token(struct line_fw *lf)
{
    const struct config *cfg = station_config(lf->st);
    return cfg && cfg->api.token && cfg->api.token[0] ? cfg->api.token : NULL;
}

/* ---- the fetch worker ------------------------------------------------------------------- */

static void hex_digest(const EVP_MD *md, const uint8_t *d, size_t n, char *out)
{
    unsigned char h[EVP_MAX_MD_SIZE];
    unsigned int hl = 0;
    EVP_Digest(d, n, h, &hl, md, NULL);
    for (unsigned i = 0; i < hl; i++)
        sprintf(out + 2 * i, "%02x", h[i]);
    out[2 * hl] = '\0';
}

static int fetch_file(struct lf_fetch *f, struct lf_file *fi)
{
    char first[400] = "";
    int first_rc = -EHOSTUNREACH;
    for (size_t h = 0; h < fi->n_holders && !atomic_load(&f->lf->stopping); h++) {
        const struct lf_holder *ho = &fi->holders[h];
        char why[400] = "";
        uint8_t *data = NULL;
        int rc;
        if (!ho->address[0]) {
            snprintf(why, sizeof(why), "it has no address in the line (no heartbeat)");
            rc = -EHOSTUNREACH;
        } else {
            rc = line_fetch_blob(ho->address, fi->sha, f->token, fi->size, &data, why, sizeof(why));
        }
        if (rc == 0) {
            char sha[65], md5[33];
            hex_digest(EVP_sha256(), data, (size_t)fi->size, sha);
            hex_digest(EVP_md5(), data, (size_t)fi->size, md5);
            if (strcmp(sha, fi->sha) != 0 || (fi->md5[0] && strcmp(md5, fi->md5) != 0)) {
                snprintf(why, sizeof(why),
                         "refused: its content has %s %s, the manifest says %s (the holder's copy "
                         "is corrupted)",
                         strcmp(sha, fi->sha) != 0 ? "SHA-256" : "MD5",
                         strcmp(sha, fi->sha) != 0 ? sha : md5,
                         strcmp(sha, fi->sha) != 0 ? fi->sha : fi->md5);
                free(data);
                rc = -EBADMSG;
            } else {
                fi->data = data;
                snprintf(fi->from, sizeof(fi->from), "%s", ho->station);
                f->bytes += (uint64_t)fi->size;
                return 0;
            }
        }
        log_msg(LOG_LEVEL_WARN, "line: firmware %s@%s: file %s from station %s: %s", f->name,
                f->version, fi->file, ho->station, why);
        if (!first[0] || (rc == -EBADMSG && first_rc != -EBADMSG)) {
            snprintf(first, sizeof(first), "station %s: %s", ho->station, why);
            first_rc = rc;
        }
    }
    snprintf(f->err, sizeof(f->err),
             "firmware %s@%s: file %s (sha256 %.12s...) could not be fetched: %s", f->name,
             f->version, fi->file, fi->sha, first[0] ? first : "the station is stopping");
    return first_rc == -EBADMSG ? -EBADMSG : first_rc;
}

static int mem_load(void *ctx, const char *file, uint8_t **data, size_t *len)
{
    struct lf_fetch *f = ctx;
    for (size_t i = 0; i < f->n_files; i++)
        if (strcmp(f->files[i].file, file) == 0 && f->files[i].data) {
            size_t n = (size_t)f->files[i].size;
            *data = malloc(n ? n : 1);
            if (!*data)
                return -ENOMEM;
            memcpy(*data, f->files[i].data, n);
            *len = n;
            return 0;
        }
    return -ENOENT;
}

static void *fetch_main(void *arg)
{
    struct lf_fetch *f = arg;
    f->rc = 0;
    for (size_t i = 0; i < f->n_files && f->rc == 0; i++) {
        /* a file listed twice (same hash) is fetched once */
        bool dup = false;
        for (size_t k = 0; k < i && !dup; k++)
            dup = strcmp(f->files[k].file, f->files[i].file) == 0;
        if (!dup)
            f->rc = fetch_file(f, &f->files[i]);
    }
    if (f->rc == 0) {
        struct catalog_report rep;
        catalog_report_init(&rep);
        f->rc =
            catalog_import_mem(f->cat, f->manifest, strlen(f->manifest), mem_load, f, false, &rep);
        if (f->rc == -EEXIST)
            f->rc = 0; /* imported meanwhile (the API, another fetch): it is here */
        else if (f->rc < 0) {
            char buf[1024] = "";
            catalog_report_format(&rep, buf, sizeof(buf));
            buf[strcspn(buf, "\n")] = '\0';
            snprintf(f->err, sizeof(f->err), "firmware %s@%s: fetched, but the import failed: %s",
                     f->name, f->version, buf[0] ? buf : strerror(-f->rc));
        }
        catalog_report_free(&rep);
    }
    if (write(f->lf->pipe[1], &f, sizeof(f)) != sizeof(f))
        log_msg(LOG_LEVEL_ERROR, "line: cannot report the end of a firmware fetch");
    return NULL;
}

/* ---- fetches (loop thread) --------------------------------------------------------------- */

static void fetch_free_data(struct lf_fetch *f)
{
    for (size_t i = 0; i < f->n_files; i++) {
        free(f->files[i].data);
        f->files[i].data = NULL;
    }
    free(f->manifest);
    f->manifest = NULL;
    free(f->token);
    f->token = NULL;
}

static void fetch_free(struct lf_fetch *f)
{
    fetch_free_data(f);
    while (f->waiters) {
        struct lf_waiter *w = f->waiters;
        f->waiters = w->next;
        free(w->data);
        free(w);
    }
    free(f->files);
    free(f);
}

static struct lf_fetch *fetch_find(struct line_fw *lf, const char *name, const char *version)
{
    for (struct lf_fetch *f = lf->fetches; f; f = f->next)
        if (strcmp(f->name, name) == 0 && strcmp(f->version, version) == 0)
            return f;
    return NULL;
}

static void fetch_ended(struct line_fw *lf, struct lf_fetch *f)
{
    if (f->joinable) {
        pthread_join(f->thread, NULL);
        f->joinable = false;
    }
    f->state = f->rc == 0 ? LF_DONE : LF_FAILED;
    f->ended_ms = now_ms();
    char from[400] = "";
    size_t used = 0;
    json_object *d = json_object_new_object(), *files = json_object_new_array();
    json_object_object_add(d, "firmware", json_object_new_string(f->name));
    json_object_object_add(d, "version", json_object_new_string(f->version));
    for (size_t i = 0; i < f->n_files; i++) {
        if (!f->files[i].from[0])
            continue;
        json_object *e = json_object_new_object();
        json_object_object_add(e, "file", json_object_new_string(f->files[i].file));
        json_object_object_add(e, "sha256", json_object_new_string(f->files[i].sha));
        json_object_object_add(e, "station", json_object_new_string(f->files[i].from));
        json_object_array_add(files, e);
        if (!strstr(from, f->files[i].from) && used < sizeof(from))
            used += (size_t)snprintf(from + used, sizeof(from) - used, "%s%s", used ? ", " : "",
                                     f->files[i].from);
    }
    json_object_object_add(d, "files", files);
    json_object_object_add(d, "bytes", json_object_new_int64((int64_t)f->bytes));
    char line[900];
    if (f->rc == 0) {
        snprintf(line, sizeof(line),
                 "firmware %s@%s fetched from station %s (%zu files, %llu bytes, SHA-256 and MD5 "
                 "checked) into the local catalog",
                 f->name, f->version, from[0] ? from : "?", f->n_files,
                 (unsigned long long)f->bytes);
        log_msg(LOG_LEVEL_NOTICE, "line: %s", line);
        station_post_event(lf->st, "firmware.fetched", NULL, NULL, 0,
                           json_object_to_json_string_ext(d, JSON_C_TO_STRING_PLAIN));
        /* this station holds the files now: the line may fetch them here too */
        station_catalog_changed(lf->st);
    } else {
        snprintf(line, sizeof(line), "%s", f->err[0] ? f->err : strerror(-f->rc));
        log_msg(LOG_LEVEL_ERROR, "line: %s", line);
        json_object_object_add(d, "error", json_object_new_string(line));
        station_post_event(lf->st, "firmware.fetch_failed", NULL, NULL, 0,
                           json_object_to_json_string_ext(d, JSON_C_TO_STRING_PLAIN));
    }
    json_object_put(d);
    fetch_free_data(f);
    struct lf_waiter *w = f->waiters;
    f->waiters = NULL;
    while (w) {
        struct lf_waiter *next = w->next;
        if (w->key > 0)
            records_job_log(station_records(lf->st), w->key, f->rc == 0 ? "info" : "error", line,
                            NULL);
        if (w->done)
            w->done(w->ctx, w->key, f->rc, f->rc == 0 ? NULL : line, w->data);
        free(w->data);
        free(w);
        w = next;
    }
}

static void on_pipe(void *ctx, int fd, uint32_t events)
{
    (void)events;
    struct line_fw *lf = ctx;
    struct lf_fetch *f;
    while (read(fd, &f, sizeof(f)) == sizeof(f))
        fetch_ended(lf, f);
}

static int holder_cb(const struct records_blob_holder *h, void *ctx)
{
    struct lf_file *fi = ctx;
    if (fi->n_holders >= MAX_HOLDERS)
        return 1;
    struct lf_holder *ho = &fi->holders[fi->n_holders++];
    snprintf(ho->station, sizeof(ho->station), "%s", h->station);
    snprintf(ho->address, sizeof(ho->address), "%s", h->address);
    return 0;
}

/* Builds the fetch of name@version from the line's description. 0, or -errno with err. */
static int fetch_prepare(struct line_fw *lf, struct lf_fetch *f, const struct records_firmware *fw,
                         char *err, size_t errlen)
{
    struct line_fw_desc d;
    int rc = line_fw_desc_parse(fw->manifest, fw->name, fw->version, &d, err, errlen);
    if (rc < 0)
        goto out;
    f->manifest = d.manifest;
    d.manifest = NULL;
    f->n_files = d.n_files;
    f->files = calloc(f->n_files ? f->n_files : 1, sizeof(*f->files));
    if (!f->files) {
        snprintf(err, errlen, "out of memory");
        rc = -ENOMEM;
        goto out;
    }
    struct records_error re;
    for (size_t i = 0; i < f->n_files; i++) {
        struct lf_file *fi = &f->files[i];
        snprintf(fi->file, sizeof(fi->file), "%s", d.files[i].file);
        snprintf(fi->sha, sizeof(fi->sha), "%s", d.files[i].sha);
        snprintf(fi->md5, sizeof(fi->md5), "%s", d.files[i].md5);
        fi->size = d.files[i].size;
        int64_t fresh = records_now_ms(station_records(lf->st)) - LINE_FW_FRESH_MS;
        if (records_blob_holders(station_records(lf->st), fi->sha, fresh, holder_cb, fi, &re) < 0) {
            snprintf(err, errlen, "firmware %s@%s: %s", fw->name, fw->version, re.message);
            rc = re.code;
            goto out;
        }
        if (fi->n_holders == 0) {
            snprintf(err, errlen,
                     "firmware %s@%s: no other station of the line holds file %s (sha256 "
                     "%.12s...); import the set on this station",
                     fw->name, fw->version, fi->file, fi->sha);
            rc = -ENOENT;
            goto out;
        }
    }
out:
    line_fw_desc_free(&d);
    return rc;
}

int line_fw_need(struct line_fw *lf, const char *name, const char *version, line_fw_done_fn done,
                 void *ctx, int64_t key, const void *data, size_t len, char *err, size_t errlen)
{
    char dummy[8];
    if (!err || !errlen) {
        err = dummy;
        errlen = sizeof(dummy);
    }
    err[0] = '\0';
    if (!lf || !catalog_name_valid(name) || !catalog_name_valid(version))
        return 0;
    struct lf_fetch *f = fetch_find(lf, name, version);
    if (f && f->state != LF_FETCHING && now_ms() - f->ended_ms < LINE_FW_RETRY_MS &&
        f->state == LF_FAILED) {
        snprintf(err, errlen, "%s", f->err[0] ? f->err : strerror(-f->rc));
        return f->rc < 0 ? f->rc : -EIO;
    }
    if (!f || f->state != LF_FETCHING) {
        struct records_firmware *fw = malloc(sizeof(*fw));
        struct records_error re;
        int rc =
            fw ? records_firmware_get(station_records(lf->st), name, version, fw, &re) : -ENOMEM;
        if (rc == -ENOENT) {
            free(fw);
            return 0;
        }
        if (rc < 0) {
            snprintf(err, errlen, "firmware %s@%s: %s", name, version,
                     fw ? re.message : "out of memory");
            free(fw);
            return rc;
        }
        if (!f) {
            f = calloc(1, sizeof(*f));
            if (!f) {
                free(fw);
                snprintf(err, errlen, "out of memory");
                return -ENOMEM;
            }
            f->lf = lf;
            snprintf(f->name, sizeof(f->name), "%s", name);
            snprintf(f->version, sizeof(f->version), "%s", version);
            f->next = lf->fetches;
            lf->fetches = f;
        } else {
            free(f->files);
            f->files = NULL;
            f->n_files = 0;
        }
        f->rc = 0;
        f->err[0] = '\0';
        f->bytes = 0;
        rc = fetch_prepare(lf, f, fw, f->err, sizeof(f->err));
        free(fw);
        if (rc == 0) {
            f->cat = station_catalog(lf->st);
            f->token = lf_token(lf) ? strdup(lf_token(lf)) : NULL;
            f->state = LF_FETCHING;
            f->started_ms = now_ms();
            rc = pthread_create(&f->thread, NULL, fetch_main, f);
            if (rc != 0) {
                rc = -rc;
                snprintf(f->err, sizeof(f->err), "firmware %s@%s: cannot start the fetch: %s", name,
                         version, strerror(-rc));
            } else {
                f->joinable = true;
                log_msg(LOG_LEVEL_NOTICE,
                        "line: firmware %s@%s is not in this station's catalog: fetching %zu "
                        "file(s) from station %s",
                        name, version, f->n_files, f->files[0].holders[0].station);
            }
        }
        if (rc < 0) {
            fetch_free_data(f);
            f->state = LF_FAILED;
            f->rc = rc;
            f->ended_ms = now_ms();
            log_msg(LOG_LEVEL_ERROR, "line: %s", f->err);
            snprintf(err, errlen, "%s", f->err);
            return rc;
        }
    }
    snprintf(err, errlen, "firmware %s@%s is being fetched from station %s", name, version,
             f->n_files ? f->files[0].holders[0].station : "?");
    if (done || key > 0) {
        struct lf_waiter *w = calloc(1, sizeof(*w));
        if (w && len)
            w->data = malloc(len);
        if (!w || (len && !w->data)) {
            if (w)
                free(w);
            snprintf(err, errlen, "out of memory");
            return -ENOMEM;
        }
        if (len)
            memcpy(w->data, data, len);
        w->done = done;
        w->ctx = ctx;
        w->key = key;
        w->next = f->waiters;
        f->waiters = w;
    }
    return 1;
}

const char *line_fw_fetching_from(struct line_fw *lf, const char *name, const char *version)
{
    struct lf_fetch *f = lf ? fetch_find(lf, name, version) : NULL;
    return f && f->state == LF_FETCHING && f->n_files ? f->files[0].holders[0].station : "";
}

/* The active profile's sets: fetched before a board needs them. */
static void on_timer(void *ctx)
{
    struct line_fw *lf = ctx;
    if (station_stopping(lf->st))
        return;
    const struct config_profile *p = config_profile(station_config(lf->st), NULL);
    for (size_t i = 0; p && i < p->n_firmware; i++) {
        const struct config_firmware_ref *ref = &p->firmware[i];
        char dir[4096];
        struct stat sb;
        snprintf(dir, sizeof(dir), "%s/%s/%s/index.json", catalog_root(station_catalog(lf->st)),
                 ref->name, ref->version);
        if (stat(dir, &sb) == 0)
            continue;
        struct lf_fetch *f = fetch_find(lf, ref->name, ref->version);
        if (f && (f->state == LF_FETCHING || now_ms() - f->ended_ms < LINE_FW_RETRY_MS * 6))
            continue; /* running, or failed lately: a board's job asks again */
        line_fw_need(lf, ref->name, ref->version, NULL, NULL, 0, NULL, 0, NULL, 0);
    }
}

struct line_fw *line_fw_new(struct station *st, struct loop *loop)
{
    struct line_fw *lf = calloc(1, sizeof(*lf));
    if (!lf)
        return NULL;
    lf->st = st;
    lf->loop = loop;
    atomic_init(&lf->stopping, false);
    if (pipe2(lf->pipe, O_CLOEXEC | O_NONBLOCK) < 0) {
        log_msg(LOG_LEVEL_ERROR, "line: cannot create a pipe: %s", strerror(errno));
        free(lf);
        return NULL;
    }
    /* the worker's one write must not fail on a full pipe: block in the worker */
    fcntl(lf->pipe[1], F_SETFL, fcntl(lf->pipe[1], F_GETFL) & ~O_NONBLOCK);
    lf->timer = loop_timer_new(loop, on_timer, lf);
    if (loop_add_fd(loop, lf->pipe[0], EPOLLIN, on_pipe, lf) < 0 || !lf->timer ||
        loop_timer_arm(lf->timer, 500, PROFILE_CHECK_MS) < 0) {
        log_msg(LOG_LEVEL_ERROR, "line: cannot watch firmware fetches");
        loop_del_fd(loop, lf->pipe[0]);
        loop_timer_free(lf->timer);
        close(lf->pipe[0]);
        close(lf->pipe[1]);
        free(lf);
        return NULL;
    }
    return lf;
}

void line_fw_free(struct line_fw *lf)
{
    if (!lf)
        return;
    atomic_store(&lf->stopping, true);
    loop_timer_free(lf->timer);
    loop_del_fd(lf->loop, lf->pipe[0]);
    while (lf->fetches) {
        struct lf_fetch *f = lf->fetches;
        lf->fetches = f->next;
        if (f->joinable)
            pthread_join(f->thread, NULL); /* its pipe write is then unread: fine */
        fetch_free(f);
    }
    close(lf->pipe[0]);
    close(lf->pipe[1]);
    free(lf);
}
