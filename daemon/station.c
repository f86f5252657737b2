/*
 * station: see station.h. The profile overlay file and the profile calls of the web layer
 * are in station_profiles.c; struct station is in station_priv.h.
 *
 * Invariants:
 *  - Loop thread only. A job is in st->jobs from job_start() until its
 *    JOB_MSG_DONE is handled; slot->job points to it meanwhile.
 *  - Every job that got a records id is finished in the records exactly once,
 *    in finish_job(), whatever ended it (worker error, unplug, stop).
 *  - st->running == number of started jobs not yet finished <= max_parallel
 *    (a reload that lowers max_parallel lets the running ones finish).
 */
#include "station.h"
#include "station_priv.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "board_addr.h"
#include "buildimport.h"
#include "catalog.h"
#include "config.h"
#include "job.h"
#include "line_fw.h"
#include "log.h"
#include "loop.h"
#include "ota.h"
#include "pool.h"
#include "records.h"
#include "slot.h"

#define DEFAULT_RETRY_BACKOFF_MS 2000
#define DEFAULT_MANUAL_POLL_MS 1000
#define DEFAULT_REENUM_GRACE_MS 3000

/*
 * A job asked for through the REST API, from the request until the job is
 * finished. While queued (max_parallel reached) it already has a 'queued'
 * records job, so the API can answer with its id.
 */
struct station_req {
    struct slot *s;
    int64_t job_id; /* 0 until the records job exists */
    bool started;   /* a worker runs it (s->job) */
    char kind[16];
    char fw_name[RECORDS_NAME_LEN];
    char fw_version[RECORDS_NAME_LEN];
    bool force;
    int erase_all, verify;
    uint32_t baud;
    bool erase_region;
    uint32_t erase_offset, erase_size;
    struct station_req *next;
};

/* ---- small helpers ------------------------------------------------------------ */

/* Copies src into dst[n], truncating (on a byte boundary; inputs here are ASCII). */
static void st_resolve_name(struct station *st);

static void scopy(char *dst, size_t n, const char *src)
{
    size_t k = strnlen(src, n - 1);
    memcpy(dst, src, k);
    dst[k] = '\0';
}

static void rec_warn(const struct records_error *re)
{
    log_msg(LOG_LEVEL_WARN, "%s", re->message[0] ? re->message : "records: unknown error");
}

static void notify_slot(struct station *st, const struct slot *s, bool progress)
{
    if (st->hooks.slot && s)
        st->hooks.slot(st->hooks.ctx, s, progress);
}

/* Appends an event (data: JSON object text or NULL) and tells the hooks. */
static int event_text(struct station *st, const char *kind, const struct slot *s, const char *mac,
                      int64_t job_id, const char *data)
{
    struct records_error re;
    struct records_event_new e = {
        .kind = kind,
        .board_mac = mac && *mac ? mac : NULL,
        .slot = s ? slot_name(s) : NULL,
        .job_id = job_id,
        .data = data,
    };
    int64_t id = 0;
    int rc = records_event_append(st->rec, &e, &id, &re);
    if (rc < 0) {
        rec_warn(&re);
        return rc;
    }
    if (st->hooks.event) {
        struct records_event ev;
        memset(&ev, 0, sizeof(ev));
        ev.id = id;
        ev.ts = records_now_ms(st->rec);
        snprintf(ev.kind, sizeof(ev.kind), "%s", kind);
        if (e.board_mac)
            snprintf(ev.board_mac, sizeof(ev.board_mac), "%s", e.board_mac);
        if (e.slot)
            snprintf(ev.slot, sizeof(ev.slot), "%s", e.slot);
        ev.job_id = job_id;
        if (data)
            snprintf(ev.data, sizeof(ev.data), "%s", data);
        st->hooks.event(st->hooks.ctx, &ev);
    }
    notify_slot(st, s, false);
    return 0;
}

/* Appends an event; data is a json object (consumed) or NULL. */
void st_event(struct station *st, const char *kind, const struct slot *s, const char *mac,
              int64_t job_id, struct json_object *data)
{
    event_text(st, kind, s, mac, job_id,
               data ? json_object_to_json_string_ext(data, JSON_C_TO_STRING_PLAIN) : NULL);
    json_object_put(data);
}

struct json_object *st_jobj(void)
{
    return json_object_new_object();
}

void st_jset_str(struct json_object *o, const char *k, const char *v)
{
    if (o && v)
        json_object_object_add(o, k, json_object_new_string(v));
}

void st_jset_int(struct json_object *o, const char *k, int64_t v)
{
    if (o)
        json_object_object_add(o, k, json_object_new_int64(v));
}

static void slog(const struct slot *s, enum log_level lv, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void slog(const struct slot *s, enum log_level lv, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vboard(lv, slot_name(s), s->mac, fmt, ap);
    va_end(ap);
}

static void set_phase(struct station *st, struct slot *s, enum board_phase p)
{
    notify_slot(st, s, false);
    if (slot_set_phase(s, p) < 0) {
        /* A bug, not device input: say so loudly and move anyway. */
        slog(s, LOG_LEVEL_ERROR, "internal: phase %s -> %s is not allowed",
             board_phase_to_string(s->phase), board_phase_to_string(p));
        s->phase = p;
    }
}

/* The path whose existence means "plugged in" for a manual URI; NULL: always present. */
static const char *manual_path(const char *uri)
{
    if (strncmp(uri, "tcp://", 6) == 0 || strncmp(uri, "rfc2217://", 10) == 0 ||
        strncmp(uri, "fd:", 3) == 0)
        return NULL;
    if (strncmp(uri, "pty:", 4) == 0)
        return uri + 4;
    if (strncmp(uri, "serial:", 7) == 0)
        return uri + 7;
    return uri;
}

/*
 * Identity of a manual port's path: 0 when absent, 1 for URIs without a path
 * (tcp://, rfc2217://, fd:), else a hash of the path's own inode and change time (lstat:
 * a symlink re-created by a restarted board differs) and the device it leads
 * to. A pty symlink left behind by a board that died can point at a /dev/pts
 * number that a new, unrelated pty reuses; comparing with the identity the
 * port had when it went away keeps such a stale path "absent".
 */
static uint64_t manual_id(const char *uri)
{
    const char *p = manual_path(uri);
    if (!p)
        return 1;
    struct stat ls, ts;
    if (lstat(p, &ls) != 0 || stat(p, &ts) != 0)
        return 0;
    uint64_t h = 1469598103934665603ull;
    uint64_t parts[5] = {(uint64_t)ls.st_ino, (uint64_t)ls.st_ctim.tv_sec,
                         (uint64_t)ls.st_ctim.tv_nsec, (uint64_t)ts.st_rdev, (uint64_t)ts.st_ino};
    for (int i = 0; i < 5; i++)
        h = (h ^ parts[i]) * 1099511628211ull;
    return h ? h : 2;
}

static bool manual_present(const char *uri)
{
    return manual_id(uri) != 0;
}

/* The stub directory, first named of: --stub-dir, the config's stub_dir,
 * $ESPSTATION_STUB_DIR, the build's default (the order --help and CONFIG.md state).
 * A change (or the first choice) is logged with where it came from. */
void st_resolve_dirs(struct station *st)
{
    snprintf(st->data_dir, sizeof(st->data_dir), "%s",
             st->data_override[0] ? st->data_override : st->cfg->data_dir);
    const char *cfg_stub = st->cfg->stub_dir && *st->cfg->stub_dir ? st->cfg->stub_dir : NULL;
    const struct {
        const char *dir, *from;
    } order[] = {
        {st->stub_override, "--stub-dir"},
        {cfg_stub, "config stub_dir"},
        {st->stub_env, "$ESPSTATION_STUB_DIR"},
        {st->stub_build, "the build's default"},
    };
    const char *dir = "", *from = NULL;
    for (size_t i = 0; i < sizeof(order) / sizeof(order[0]) && !from; i++)
        if (order[i].dir && order[i].dir[0]) {
            dir = order[i].dir;
            from = order[i].from;
        }
    if (strcmp(dir, st->stub_dir) != 0 && from)
        log_msg(LOG_LEVEL_INFO, "flasher stubs from %s (%s)", dir, from);
    snprintf(st->stub_dir, sizeof(st->stub_dir), "%s", dir);
}

static int mkdir_p(const char *path)
{
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof(tmp), "%s", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
        return -errno;
    return 0;
}

/* ---- firmware -------------------------------------------------------------------- */

static void fw_cache_clear(struct station *st)
{
    for (size_t i = 0; i < st->nfw; i++)
        job_firmware_unref(st->fw[i]);
    st->nfw = 0;
}

/* A new reference to name@version, loaded (and verified) once and then cached. */
static int fw_get(struct station *st, const struct config_firmware_ref *ref,
                  struct job_firmware **out, char *err, size_t errlen)
{
    char key[RECORDS_FIRMWARE_LEN];
    snprintf(key, sizeof(key), "%s@%s", ref->name, ref->version);
    for (size_t i = 0; i < st->nfw; i++) {
        if (strcmp(st->fw[i]->ref, key) == 0) {
            *out = job_firmware_ref(st->fw[i]);
            return 0;
        }
    }
    struct catalog_set *set = NULL;
    int rc = catalog_get(st->cat, ref->name, ref->version, &set, err, errlen);
    if (rc < 0)
        return rc;
    if (set->chip != ref->chip) {
        snprintf(err, errlen, "firmware %s is for %s, not %s", key, esp_chip_to_string(set->chip),
                 esp_chip_to_string(ref->chip));
        catalog_free_set(set);
        return -EINVAL;
    }
    struct job_firmware *fw = job_firmware_new(set);
    if (!fw)
        return -ENOMEM;
    if (st->nfw == st->capfw) {
        size_t cap = st->capfw ? st->capfw * 2 : 8;
        struct job_firmware **v = realloc(st->fw, cap * sizeof(*v));
        if (!v) {
            *out = fw; /* usable, just not cached */
            return 0;
        }
        st->fw = v;
        st->capfw = cap;
    }
    st->fw[st->nfw++] = fw;
    log_msg(LOG_LEVEL_INFO, "firmware %s loaded and verified (%zu regions)", key, set->n_regions);
    *out = job_firmware_ref(fw);
    return 0;
}

/* Warns about profile firmware refs missing from the catalog. Returns how many. */
static int check_profiles(struct station *st)
{
    struct catalog_entry *ents = NULL;
    size_t n = 0;
    if (catalog_list(st->cat, &ents, &n) < 0) {
        log_msg(LOG_LEVEL_WARN, "cannot list the firmware catalog in %s", catalog_root(st->cat));
        return -1;
    }
    int missing = 0;
    for (size_t p = 0; p < st->cfg->n_profiles; p++) {
        const struct config_profile *prof = &st->cfg->profiles[p];
        for (size_t f = 0; f < prof->n_firmware; f++) {
            const struct config_firmware_ref *ref = &prof->firmware[f];
            bool found = false;
            for (size_t i = 0; i < n && !found; i++)
                found = strcmp(ents[i].name, ref->name) == 0 &&
                        strcmp(ents[i].version, ref->version) == 0 && ents[i].chip == ref->chip;
            if (!found) {
                missing++;
                log_msg(LOG_LEVEL_WARN,
                        "profile %s: firmware %s@%s for %s is not in the catalog (%s); boards of "
                        "that family will fail until it is imported",
                        prof->name, ref->name, ref->version, esp_chip_to_string(ref->chip),
                        catalog_root(st->cat));
            }
        }
    }
    catalog_entries_free(ents, n);
    if (!config_profile(st->cfg, NULL))
        log_msg(LOG_LEVEL_NOTICE,
                "no active profile: boards are identified and recorded, not flashed");
    return missing;
}

/* ---- jobs ---------------------------------------------------------------------------- */

static void start_queued(struct station *st);

static void queue_remove(struct station *st, struct slot *s)
{
    size_t k = 0;
    for (size_t i = 0; i < st->nq; i++)
        if (st->queue[i] != s)
            st->queue[k++] = st->queue[i];
    st->nq = k;
}

static int queue_push(struct station *st, struct slot *s)
{
    queue_remove(st, s);
    if (st->nq == st->capq) {
        size_t cap = st->capq ? st->capq * 2 : 16;
        struct slot **v = realloc(st->queue, cap * sizeof(*v));
        if (!v)
            return -ENOMEM;
        st->queue = v;
        st->capq = cap;
    }
    st->queue[st->nq++] = s;
    return 0;
}

static void fill_params(struct station *st, const struct slot *s, struct job_params *p)
{
    memset(p, 0, sizeof(*p));
    snprintf(p->uri, sizeof(p->uri), "%s", s->uri);
    snprintf(p->slot, sizeof(p->slot), "%s", slot_name(s));
    scopy(p->stub_dir, sizeof(p->stub_dir), st->stub_dir);
    p->usb_jtag = s->usb_jtag;
    p->reenum_grace_ms = st->opt.reenum_grace_ms;
    p->boot_baud = CONFIG_DEFAULT_BOOT_BAUD;
    const struct config_profile *prof = config_profile(st->cfg, NULL);
    if (!prof) {
        /* Identify and record only: nothing is written, the ROM is enough. */
        p->baud = 115200;
        p->stub = false;
        p->after = ESP_AFTER_HARD_RESET;
        return;
    }
    /* "auto": the adapter's highest reliable rate (bridges.h); 0 for the chip's own USB
     * (the rate paces nothing: no change); an unknown adapter gets the default. */
    if (prof->baud_auto)
        p->baud = s->adapter_known ? s->adapter_baud : CONFIG_DEFAULT_BAUD;
    else
        p->baud = prof->baud;
    p->stub = prof->stub;
    p->compress = prof->compress;
    p->verify = prof->verify;
    p->erase_all = prof->erase_all;
    p->skip_if_same = prof->skip_if_same;
    p->diff = prof->diff;
    p->after = prof->after;
    if (prof->boot_check.enabled && prof->boot_check.pattern) {
        p->boot_check = true;
        snprintf(p->boot_pattern, sizeof(p->boot_pattern), "%s", prof->boot_check.pattern);
        p->boot_timeout_ms = prof->boot_check.timeout_ms;
        p->boot_baud = prof->boot_check.baud ? prof->boot_check.baud : CONFIG_DEFAULT_BOOT_BAUD;
        for (size_t i = 0; i < prof->boot_check.n_capture && i < JOB_MAX_CAPTURE; i++)
            snprintf(p->capture[i], sizeof(p->capture[i]), "%s", prof->boot_check.capture[i]);
        p->n_capture = prof->boot_check.n_capture < JOB_MAX_CAPTURE ? prof->boot_check.n_capture
                                                                    : JOB_MAX_CAPTURE;
    }
}

/* ---- REST API job requests ------------------------------------------------------------ */

/* The request waiting for (not yet running on) slot s, NULL if none. */
static struct station_req *req_pending(const struct station *st, const struct slot *s)
{
    for (struct station_req *r = st->reqs; r; r = r->next)
        if (r->s == s && !r->started)
            return r;
    return NULL;
}

static struct station_req *req_of_job(const struct station *st, int64_t id)
{
    for (struct station_req *r = st->reqs; r && id; r = r->next)
        if (r->job_id == id)
            return r;
    return NULL;
}

static void req_free(struct station *st, struct station_req *rq)
{
    if (!rq)
        return;
    for (struct station_req **pp = &st->reqs; *pp; pp = &(*pp)->next) {
        if (*pp == rq) {
            *pp = rq->next;
            break;
        }
    }
    free(rq);
}

/* Ends a request that never ran: its queued records job becomes cancelled. */
static void req_drop(struct station *st, struct station_req *rq, const char *why)
{
    if (rq->job_id) {
        struct records_error re;
        struct records_job_result res;
        records_job_result_init(&res);
        res.state = RECORDS_JOB_CANCELLED;
        res.result_code = -ECANCELED;
        res.error_stage = "queued";
        res.error_message = why;
        if (records_job_finish(st->rec, rq->job_id, &res, &re) < 0)
            rec_warn(&re);
        struct json_object *d = st_jobj();
        st_jset_str(d, "state", "cancelled");
        st_jset_str(d, "kind", rq->kind);
        st_jset_str(d, "stage", "queued");
        st_jset_str(d, "message", why);
        st_event(st, "job.finished", rq->s, NULL, rq->job_id, d);
    }
    req_free(st, rq);
}

static void apply_req(const struct station_req *rq, struct job_params *p)
{
    snprintf(p->kind, sizeof(p->kind), "%s", rq->kind);
    if (rq->force) { /* a forced re-flash writes every byte */
        p->skip_if_same = false;
        p->diff = false;
    }
    if (rq->erase_all >= 0)
        p->erase_all = rq->erase_all != 0;
    if (rq->verify >= 0)
        p->verify = rq->verify != 0;
    if (rq->baud)
        p->baud = rq->baud;
    if (strcmp(rq->kind, "erase") == 0) {
        p->stub = true; /* the ROM cannot erase the whole chip; falls back with a warning */
        p->erase_region = rq->erase_region;
        p->erase_offset = rq->erase_offset;
        p->erase_size = rq->erase_size;
    }
    if (p->erase_all && !p->stub)
        p->stub = true;
}

static void start_job(struct station *st, struct slot *s)
{
    struct records_error re;
    struct station_req *rq = req_pending(st, s);
    struct records_job_new jn = {
        .kind = rq ? rq->kind : "flash",
        .slot = slot_name(s),
        .stage = "open",
    };
    int64_t id = rq ? rq->job_id : 0;
    if (id) {
        /* Queued by the API: the records job exists and becomes 'running'. */
        if (records_job_progress(st->rec, id, "open", -1, -1, &re) < 0)
            rec_warn(&re);
    } else if (records_job_begin(st->rec, &jn, &id, &re) < 0) {
        /* Without a record the job would be invisible: refuse it and say why. */
        slog(s, LOG_LEVEL_ERROR, "cannot start a job: %s", re.message);
        req_free(st, rq);
        set_phase(st, s, BOARD_IDLE);
        return;
    }
    struct job_params p;
    fill_params(st, s, &p);
    if (rq) {
        rq->job_id = id;
        apply_req(rq, &p);
    }
    /* The slot's learnt link limit (back-off after link errors) caps every job on it, but
     * after baud_probe_after clean jobs one job tries a step up (not jobs asked for
     * through the API: a failed probe would fail the caller's job). */
    const struct config_profile *prof = config_profile(st->cfg, NULL);
    int probe_after = rq || !prof ? 0 : prof->baud_probe_after;
    s->link_ceiling = p.baud;
    p.baud = slot_link_job_baud(s, s->link_ceiling, probe_after);
    bool capped = p.baud < s->link_ceiling && !s->probe_baud;
    if (s->probe_baud)
        slog(s, LOG_LEVEL_NOTICE,
             "trying %u baud again on slot %s after %d clean jobs at %u (baud_probe_after)",
             (unsigned)s->probe_baud, slot_name(s), s->clean_jobs, (unsigned)s->baud_limit);
    struct job *j = job_new(&p, st->loop, id);
    int rc = j ? job_start(j) : -(errno ? errno : ENOMEM);
    if (rc < 0) {
        /* The true errno, with a stage: "too many open files" sends the technician to the
         * open-file limit, "cannot allocate memory" to the machine. */
        bool fds = rc == -EMFILE || rc == -ENFILE;
        char msg[160];
        snprintf(msg, sizeof(msg), "cannot start the job%s: %s",
                 j ? " (no worker thread)" : " (no cancel eventfd)", strerror(-rc));
        slog(s, LOG_LEVEL_ERROR, "%s", msg);
        struct records_job_result res;
        records_job_result_init(&res);
        res.result_code = rc;
        res.error_stage = "open";
        res.error_message = msg;
        res.error_advice =
            fds ? "the station ran out of file descriptors: see the 'open files' line at start, "
                  "raise LimitNOFILE or lower max_parallel, and look for clients holding many "
                  "connections; unplug and replug the board to try again"
                : "the station is short of memory or threads: check the machine, then unplug "
                  "and replug the board to try again";
        records_job_finish(st->rec, id, &res, &re);
        job_free(j);
        req_free(st, rq);
        set_phase(st, s, BOARD_IDLE);
        return;
    }
    if (rq)
        rq->started = true;
    j->slot = s;
    j->started_ms = loop_now_ms();
    j->next = st->jobs;
    st->jobs = j;
    st->running++;
    s->job = j;
    s->job_id = id;
    snprintf(s->job_kind, sizeof(s->job_kind), "%s", j->params.kind[0] ? j->params.kind : "flash");
    s->retry_pending = false;
    set_phase(st, s, BOARD_CONNECTING);
    snprintf(s->stage, sizeof(s->stage), "open");
    struct json_object *d = st_jobj();
    st_jset_str(d, "uri", s->uri);
    st_jset_int(d, "attempt", s->attempt + 1);
    st_jset_str(d, "kind", p.kind[0] ? p.kind : "flash");
    st_event(st, "job.started", s, NULL, id, d);
    slog(s, LOG_LEVEL_INFO, "job %lld started on %s%s%s", (long long)id, s->uri,
         s->attempt || s->baud_retry ? " (retry)" : "",
         capped ? " (baud limited by the slot)" : "");
    s->baud_retry = false;
}

/* Starts a job for the board on s now, or queues it. */
static void schedule(struct station *st, struct slot *s)
{
    if (st->stopping) {
        set_phase(st, s, BOARD_IDLE);
        return;
    }
    if (st->running < st->cfg->max_parallel && st->nq == 0) {
        start_job(st, s);
        return;
    }
    set_phase(st, s, BOARD_QUEUED);
    if (queue_push(st, s) < 0)
        slog(s, LOG_LEVEL_ERROR, "out of memory: board not queued");
    else
        slog(s, LOG_LEVEL_INFO, "queued: %d boards flashing (max_parallel %d)", st->running,
             st->cfg->max_parallel);
}

static void start_queued(struct station *st)
{
    while (!st->stopping && st->nq > 0 && st->running < st->cfg->max_parallel) {
        struct slot *s = st->queue[0];
        memmove(st->queue, st->queue + 1, (st->nq - 1) * sizeof(*st->queue));
        st->nq--;
        if (s->present && !s->job && s->phase == BOARD_QUEUED)
            start_job(st, s);
    }
}

static void unlink_job(struct station *st, struct job *j)
{
    for (struct job **pp = &st->jobs; *pp; pp = &(*pp)->next) {
        if (*pp == j) {
            *pp = j->next;
            return;
        }
    }
}

static const struct config_profile *active_profile(const struct station *st)
{
    return config_profile(st->cfg, NULL);
}

/* ---- timers per slot (retry backoff, re-enumeration grace) --------------------------- */

struct slot_timer_ctx {
    struct station *st;
    struct slot *s;
};

static void slot_timer_fire(void *ctx);

static int slot_timer_arm(struct station *st, struct slot *s, int ms)
{
    if (!s->timer) {
        struct slot_timer_ctx *c = calloc(1, sizeof(*c));
        if (!c)
            return -ENOMEM;
        c->st = st;
        c->s = s;
        s->timer = loop_timer_new(st->loop, slot_timer_fire, c);
        if (!s->timer) {
            free(c);
            return -ENOMEM;
        }
        /* The ctx is freed with the station (see station_free). */
        s->timer_ctx = c;
    }
    return loop_timer_arm(s->timer, ms, 0);
}

static void slot_timer_fire(void *ctx)
{
    struct slot_timer_ctx *c = ctx;
    struct station *st = c->st;
    struct slot *s = c->s;
    if (s->in_grace) {
        s->in_grace = false;
        if (s->job) {
            slog(s, LOG_LEVEL_INFO, "port did not come back within %d ms", st->opt.reenum_grace_ms);
            s->job->removed = true;
            job_cancel(s->job);
        }
        return;
    }
    if (s->retry_pending) {
        s->retry_pending = false;
        if (s->present && !s->job && !st->stopping)
            schedule(st, s);
    }
}

/* ---- finishing a job -------------------------------------------------------------------- */

static void port_removed(struct station *st, const struct port_event *ev);

/* Keeps the slot's learnt baud limit (0 = none) in the records across restarts. */
static void store_baud_limit(struct station *st, const struct slot *s)
{
    struct records_error re;
    if (records_slot_baud_limit_set(st->rec, s->key, s->baud_limit, &re) < 0)
        log_msg(LOG_LEVEL_WARN, "records: the baud limit of slot %s is not kept: %s", s->key,
                re.message);
}

static const char *removed_advice =
    "the board was unplugged (or its USB connection dropped) before the job ended; plug it in "
    "again to flash it";
static const char *removed_tcp_advice =
    "check that the serial server (ser2net or similar) is running and reachable over the "
    "network, and that the board is powered; the slot is flashed again when it answers";

static void finish_job(struct station *st, struct job *j, struct job_result *r)
{
    struct slot *s = j->slot;
    struct station_req *rq = req_of_job(st, j->id);
    const char *kind = j->params.kind[0] ? j->params.kind : "flash";
    bool flash = strcmp(kind, "flash") == 0;
    struct esp_error *e = &r->err;
    const char *stage = r->stage[0] ? r->stage : j->stage;
    bool removed = j->removed || (r->state == RECORDS_JOB_FAILED && e->code == -ENODEV);
    enum records_job_state state = r->state;
    char msg[512], advice[256];
    snprintf(msg, sizeof(msg), "%s", e->message);
    snprintf(advice, sizeof(advice), "%s", e->advice);
    const char *err_stage = e->code && e->stage != ESP_STAGE_NONE ? esp_stage_to_string(e->stage)
                                                                  : (e->code ? stage : NULL);
    if (removed && state != RECORDS_JOB_PASSED && state != RECORDS_JOB_SKIPPED) {
        if (e->code && e->code != -ECANCELED && e->message[0]) {
            struct records_error re;
            char line[600];
            snprintf(line, sizeof(line), "port lost: %s", e->message);
            records_job_log(st->rec, j->id, "info", line, NULL);
            (void)re;
        }
        state = RECORDS_JOB_FAILED;
        if (strncmp(j->params.uri, "tcp://", 6) == 0 ||
            strncmp(j->params.uri, "rfc2217://", 10) == 0) {
            /* a ser2net-style serial server, not a USB cable */
            snprintf(msg, sizeof(msg), "the serial server %.200s closed the connection during %s",
                     j->params.uri, stage);
            snprintf(advice, sizeof(advice), "%s", removed_tcp_advice);
        } else {
            slot_removed_message(stage, j->phase, msg, sizeof(msg));
            snprintf(advice, sizeof(advice), "%s", removed_advice);
        }
        err_stage = stage;
        e->code = -ENODEV;
    } else if (state == RECORDS_JOB_CANCELLED && j->stopping) {
        snprintf(msg, sizeof(msg), "daemon stopping (during %s)", stage);
        advice[0] = '\0';
        err_stage = stage;
    }

    const struct config_profile *prof = active_profile(st);
    bool flash_ok =
        flash && (state == RECORDS_JOB_PASSED || (state == RECORDS_JOB_SKIPPED && r->firmware[0]));
    bool checked_in = flash_ok && j->mac[0] && ota_checked_in_during(st->ota, j->mac, j->id);
    /* The boot check captured the IP of the new firmware: on the network (issue 5). */
    bool boot_online = flash_ok && j->mac[0] && !checked_in && j->boot_ip[0] && !removed;
    struct records_job_result res;
    records_job_result_init(&res);
    res.state = state;
    res.result_code = state == RECORDS_JOB_PASSED ? 0 : e->code;
    if (state != RECORDS_JOB_PASSED) {
        res.error_stage = err_stage;
        res.error_message = msg[0] ? msg : NULL;
        res.error_advice = advice[0] ? advice : NULL;
    }
    if (e->has_device_status && !removed) {
        res.device_status = e->status;
        res.device_error = e->error;
        res.error_op = e->op;
    }
    if (e->has_address && !removed)
        res.error_address = e->address;
    res.bytes = r->bytes;
    res.wire_bytes = r->wire_bytes;
    res.kbps = r->kbps;
    res.retries = s->attempt;
    struct records_error re;
    if (records_job_finish(st->rec, j->id, &res, &re) < 0)
        rec_warn(&re);

    if (!flash && state == RECORDS_JOB_PASSED && strcmp(kind, "erase") == 0 && j->mac[0]) {
        struct records_board b;
        records_board_init(&b);
        snprintf(b.mac, sizeof(b.mac), "%s", j->mac);
        snprintf(b.online_state, sizeof(b.online_state), "%s", "erased");
        if (records_board_upsert(st->rec, &b, &re) < 0)
            rec_warn(&re);
    }
    if (flash_ok && j->mac[0]) {
        struct records_board b;
        records_board_init(&b);
        snprintf(b.mac, sizeof(b.mac), "%s", j->mac);
        snprintf(b.current_firmware, sizeof(b.current_firmware), "%s", r->firmware);
        snprintf(b.current_md5, sizeof(b.current_md5), "%s", r->md5);
        /* A board whose firmware already checked in during the boot check, or whose IP
         * the boot check captured, is online. */
        snprintf(b.online_state, sizeof(b.online_state), "%s",
                 checked_in || boot_online ? "online" : "awaiting_network");
        snprintf(b.slot, sizeof(b.slot), "%s", slot_name(s));
        if (records_board_upsert(st->rec, &b, &re) < 0)
            rec_warn(&re);
    }

    struct json_object *d = st_jobj();
    st_jset_str(d, "state", records_job_state_to_string(state));
    if (state != RECORDS_JOB_PASSED) {
        st_jset_str(d, "stage", err_stage);
        st_jset_str(d, "message", msg);
    }
    if (r->firmware[0])
        st_jset_str(d, "firmware", r->firmware);
    st_jset_str(d, "kind", kind);
    if (r->bytes >= 0)
        st_jset_int(d, "bytes", r->bytes);
    if (r->skipped_bytes >= 0)
        st_jset_int(d, "skipped_bytes", r->skipped_bytes);
    if (r->stub_fallback) {
        struct json_object *warn = json_object_new_array();
        json_object_array_add(warn, json_object_new_string(ESP_STUB_FALLBACK_WARNING));
        json_object_object_add(d, "warnings", warn);
    }
    json_object_object_add(
        d, "seconds", json_object_new_double((double)(loop_now_ms() - j->started_ms) / 1000.0));
    st_event(st, "job.finished", s, j->mac, j->id, d);
    if (boot_online) {
        struct json_object *o = st_jobj();
        st_jset_str(o, "ip", j->boot_ip);
        st_jset_str(o, "source", "boot-check");
        if (r->firmware[0])
            st_jset_str(o, "firmware", r->firmware);
        st_event(st, "board.online", s, j->mac, j->id, o);
        slog(s, LOG_LEVEL_INFO, "online at %s (boot check)", j->boot_ip);
    }

    /* Decide and log once. */
    s->job = NULL;
    st->running--;
    unlink_job(st, j);
    snprintf(s->error, sizeof(s->error), "%s", state == RECORDS_JOB_PASSED ? "" : msg);
    snprintf(s->advice, sizeof(s->advice), "%s", state == RECORDS_JOB_PASSED ? "" : advice);
    s->device_status = res.device_status;
    s->device_error = res.device_error;
    if (r->firmware[0])
        snprintf(s->firmware, sizeof(s->firmware), "%s", r->firmware);
    double secs = (double)(loop_now_ms() - j->started_ms) / 1000.0;

    switch (state) {
    case RECORDS_JOB_PASSED:
        slot_count_result(s, false, true, st->opt.flag_after);
        if (slot_link_passed(s, r->link_baud, s->link_ceiling)) {
            /* A step-up probe passed: the slot's limit moves up one rung (or goes). */
            store_baud_limit(st, s);
            struct json_object *bd = st_jobj();
            st_jset_int(bd, "probed_baud", r->link_baud);
            if (s->baud_limit)
                st_jset_int(bd, "baud_limit", s->baud_limit);
            else
                json_object_object_add(bd, "baud_limit", NULL);
            st_event(st, "slot.baud_raised", s, j->mac, j->id, bd);
            if (s->baud_limit)
                slog(s, LOG_LEVEL_NOTICE, "%u baud worked on slot %s: the slot's limit is now %u",
                     (unsigned)r->link_baud, slot_name(s), (unsigned)s->baud_limit);
            else
                slog(s, LOG_LEVEL_NOTICE,
                     "%u baud worked on slot %s: limit cleared, jobs run at the profile's rate",
                     (unsigned)r->link_baud, slot_name(s));
        }
        if (!flash) {
            slog(s, LOG_LEVEL_NOTICE, "passed: %s job %lld in %.1f s", kind, (long long)j->id,
                 secs);
            set_phase(st, s, BOARD_IDLE);
            break;
        }
        slog(s, LOG_LEVEL_NOTICE, "passed: %s written, %lld bytes in %.1f s (%.0f kbit/s)",
             r->firmware, (long long)r->bytes, secs, r->kbps > 0 ? r->kbps : 0.0);
        set_phase(st, s, BOARD_AWAITING_NETWORK);
        if (checked_in || boot_online)
            set_phase(st, s, BOARD_ONLINE);
        break;
    case RECORDS_JOB_SKIPPED:
        slot_count_result(s, false, true, st->opt.flag_after);
        slog(s, LOG_LEVEL_NOTICE, "skipped: %s", msg);
        set_phase(st, s, BOARD_SKIPPED);
        break;
    case RECORDS_JOB_CANCELLED:
        slog(s, LOG_LEVEL_NOTICE, "cancelled: %s", msg);
        set_phase(st, s, BOARD_CANCELLED);
        break;
    default: {
        char dev[64] = "";
        if (res.device_status >= 0)
            snprintf(dev, sizeof(dev), " (device status 0x%02X error 0x%02X)",
                     (unsigned)res.device_status, (unsigned)res.device_error);
        int retries = prof ? prof->retries : 0;
        /* Link back-off: link errors after the baud change at a rate above 115200 teach the
         * slot a lower limit, and the board is tried again at once at that rate, outside the
         * profile's retries budget (at most once per step down, so it ends). */
        uint32_t lower = 0;
        bool probe_failed = false;
        if (!removed && !st->stopping && s->present && e->code && r->link_baud > 115200 &&
            !r->board_silent &&
            slot_link_error(e->code, (int)e->stage, e->has_device_status, e->status, e->error))
            lower = slot_link_failed(s, r->link_baud, &probe_failed);
        if (probe_failed) {
            /* The step-up probe failed: the limit stays, the count of clean jobs restarts. */
            struct json_object *bd = st_jobj();
            st_jset_int(bd, "failed_baud", r->link_baud);
            st_jset_int(bd, "baud_limit", lower);
            st_jset_str(bd, "stage", err_stage ? err_stage : "");
            st_event(st, "slot.baud_probe_failed", s, j->mac, j->id, bd);
            slog(s, LOG_LEVEL_WARN,
                 "link errors at %u baud on slot %s: the step up failed; retrying at %u, the "
                 "slot keeps this limit",
                 (unsigned)r->link_baud, slot_name(s), (unsigned)lower);
        } else if (lower) {
            store_baud_limit(st, s);
            struct json_object *bd = st_jobj();
            st_jset_int(bd, "failed_baud", r->link_baud);
            st_jset_int(bd, "baud_limit", lower);
            st_jset_str(bd, "stage", err_stage ? err_stage : "");
            st_event(st, "slot.baud_limited", s, j->mac, j->id, bd);
            slog(s, LOG_LEVEL_WARN,
                 "link errors at %u baud on slot %s: %s at %u; the slot keeps this limit "
                 "-- check the cable/adapter",
                 (unsigned)r->link_baud, slot_name(s), rq ? "limited" : "retrying",
                 (unsigned)lower);
        }
        /* A job asked for through the API is not retried: the caller decides. */
        bool baud_retry = lower && !rq;
        /* A failure before anything is written (the set or its per-board data does not fit
         * this board) fails the same way again: not retried. */
        bool again = !(e->code && e->stage == ESP_STAGE_PREPARE);
        bool retry = !rq && !removed && !st->stopping && s->present &&
                     (baud_retry || (again && s->attempt < retries));
        if (removed) {
            slot_count_result(s, true, false, st->opt.flag_after);
            slog(s, LOG_LEVEL_WARN, "failed: %s", msg);
        } else if (baud_retry) {
            /* Not the board's fault nor a new failure of the slot: the limit is the finding. */
            slot_count_result(s, true, false, st->opt.flag_after);
            slog(s, LOG_LEVEL_ERROR, "failed during %s at %u baud: %s%s; retrying at once at %u",
                 err_stage ? err_stage : "?", (unsigned)r->link_baud, msg, dev, (unsigned)lower);
        } else {
            bool flagged = slot_count_result(s, true, true, st->opt.flag_after);
            if (retry)
                slog(s, LOG_LEVEL_ERROR, "failed during %s: %s%s; retrying in %d ms (%d of %d)",
                     err_stage ? err_stage : "?", msg, dev, st->opt.retry_backoff_ms,
                     s->attempt + 1, retries);
            else
                slog(s, LOG_LEVEL_ERROR, "failed during %s: %s%s%s%s", err_stage ? err_stage : "?",
                     msg, dev, advice[0] ? " -- " : "", advice);
            if (flagged) {
                struct json_object *fd = st_jobj();
                st_jset_int(fd, "failures", s->failures);
                st_event(st, "slot.flagged", s, j->mac, j->id, fd);
                slog(s, LOG_LEVEL_WARN,
                     "slot flagged: %d failed jobs in a row; check the cable, socket and adapter",
                     s->failures);
            }
        }
        set_phase(st, s, BOARD_FAILED);
        if (retry) {
            if (baud_retry)
                s->baud_retry = true;
            else
                s->attempt++;
            s->retry_pending = true;
            set_phase(st, s, BOARD_QUEUED);
            if (slot_timer_arm(st, s, baud_retry ? 1 : st->opt.retry_backoff_ms) < 0) {
                s->retry_pending = false;
                set_phase(st, s, BOARD_FAILED);
            }
        }
        break;
    }
    }
    if (removed && s->present && s->manual && manual_path(s->key + 4)) {
        /* The worker saw the port vanish before the presence poll did. For a pty path
         * that is an unplug: record it now and remember the identity the path had, so
         * a stale symlink whose /dev/pts number another program reuses stays absent. */
        struct port_event ev;
        devsrc_manual_event(PORT_REMOVED, s->key + 4, NULL, &ev);
        port_removed(st, &ev);
    }
    if (removed || !s->present) {
        s->in_grace = false;
        if (s->timer && !s->retry_pending)
            loop_timer_disarm(s->timer);
        set_phase(st, s, BOARD_EMPTY);
    }
    req_free(st, rq);
    job_free(j);
    notify_slot(st, s, false);
    start_queued(st);
    if (st->stopping && st->running == 0 && !st->stopped) {
        st->stopped = true;
        loop_stop(st->loop);
    }
}

/* ---- worker messages ---------------------------------------------------------------------- */

static void plan_job(struct station *st, struct job *j, const struct esp_chip_info *ci);

static void mac_string(const struct esp_chip_info *ci, char *out, size_t len)
{
    if (!ci->mac_valid) {
        out[0] = '\0';
        return;
    }
    snprintf(out, len, "%02x:%02x:%02x:%02x:%02x:%02x", ci->mac[0], ci->mac[1], ci->mac[2],
             ci->mac[3], ci->mac[4], ci->mac[5]);
}

/* The active profile's per-board regions for this board (pool.h): on failure the plan
 * gets the message and advice, the regions taken so far stay recorded for the board. */
static int take_per_board(struct station *st, struct job *j, struct job_plan *plan)
{
    const struct config_profile *prof = active_profile(st);
    struct slot *s = j->slot;
    for (size_t i = 0; prof && i < prof->n_per_board && i < JOB_MAX_EXTRA; i++) {
        const struct config_per_board *pb = &prof->per_board[i];
        struct pool_status ps;
        if (!j->mac[0]) {
            snprintf(plan->message, sizeof(plan->message),
                     "pool %s: the board's MAC is unknown, so it cannot be given per-board data",
                     pb->name);
            snprintf(plan->advice, sizeof(plan->advice), "check the chip's eFuse MAC");
            job_plan_free_extra(plan);
            return -EINVAL;
        }
        int rc =
            pool_take(st->rec, pb, j->mac, j->id, &plan->extra[plan->n_extra], &ps, plan->message,
                      sizeof(plan->message), plan->advice, sizeof(plan->advice));
        struct json_object *d = st_jobj();
        st_jset_str(d, "pool", pb->name);
        if (rc < 0) {
            st_jset_str(d, "error", plan->message);
            st_event(st, "pool.failed", s, j->mac, j->id, d);
            slog(s, LOG_LEVEL_ERROR, "%s", plan->message);
            job_plan_free_extra(plan);
            return rc;
        }
        plan->n_extra++;
        st_jset_str(d, "file", ps.file);
        st_jset_int(d, "offset", pb->offset);
        json_object_object_add(d, "reused", json_object_new_boolean(ps.reused));
        st_jset_int(d, "free", ps.free);
        st_event(st, "pool.assigned", s, j->mac, j->id, d);
        slog(s, ps.free < 10 ? LOG_LEVEL_WARN : LOG_LEVEL_INFO,
             "pool %s: %s %s at 0x%x (%lld free%s)", pb->name, ps.file,
             ps.reused ? "again (this board's)" : "given to this board", pb->offset,
             (long long)ps.free, ps.free < 10 ? ": add files soon" : "");
    }
    return 0;
}

static void on_identified(struct station *st, struct job *j, const struct job_msg *m)
{
    struct slot *s = j->slot;
    const struct esp_chip_info *ci = &m->info;
    struct records_error re;
    mac_string(ci, j->mac, sizeof(j->mac));
    snprintf(j->chip, sizeof(j->chip), "%s", ci->chip ? ci->chip->name : "unknown");
    snprintf(s->mac, sizeof(s->mac), "%s", j->mac);
    snprintf(s->chip, sizeof(s->chip), "%s", j->chip);
    if (j->mac[0]) {
        struct records_board b;
        records_board_init(&b);
        snprintf(b.mac, sizeof(b.mac), "%s", j->mac);
        snprintf(b.chip, sizeof(b.chip), "%s", j->chip);
        b.revision = ci->revision;
        b.crystal_mhz = ci->xtal_mhz ? (int)ci->xtal_mhz : -1;
        snprintf(b.slot, sizeof(b.slot), "%s", slot_name(s));
        if (records_board_upsert(st->rec, &b, &re) < 0 ||
            records_job_set_board(st->rec, j->id, j->mac, &re) < 0)
            rec_warn(&re);
    }
    struct json_object *d = st_jobj();
    st_jset_str(d, "chip", j->chip);
    st_jset_int(d, "revision", ci->revision);
    if (ci->usb_jtag)
        json_object_object_add(d, "usb_jtag", json_object_new_boolean(true));
    st_event(st, "board.identified", s, j->mac, j->id, d);
    char rev[16] = "?";
    if (ci->revision >= 0)
        snprintf(rev, sizeof(rev), "%d.%d", ci->revision / 100, ci->revision % 100);
    slog(s, LOG_LEVEL_INFO, "identified %s rev %s, crystal %u MHz", j->chip, rev, ci->xtal_mhz);
    if (ci->usb_jtag)
        s->usb_jtag = true;
    plan_job(st, j, ci);
}

/* A set fetched from the line (line_fw.h) for a job that waits for its plan: plan again. */
static void line_fw_ready(void *ctx, int64_t job_id, int rc, const char *err, const void *data)
{
    (void)rc;
    (void)err;
    struct station *st = ctx;
    for (struct job *j = st->jobs; j; j = j->next)
        if (j->id == job_id && !j->replied)
            plan_job(st, j, data);
}

/* Decides what the identified board gets and answers the worker (job_reply); a set that
 * only the line holds is fetched first (the answer waits for it). */
static void plan_job(struct station *st, struct job *j, const struct esp_chip_info *ci)
{
    struct slot *s = j->slot;
    struct records_error re;
    /* Decide what this board gets. */
    struct job_plan plan;
    memset(&plan, 0, sizeof(plan));
    if (j->params.kind[0] && strcmp(j->params.kind, "flash") != 0) {
        /* info / reset / erase: nothing to write. */
        j->replied = true;
        job_reply(j, &plan);
        return;
    }
    const struct config_firmware_ref *ref = NULL;
    int pick = station_choose_firmware(st->cfg, ci->chip, ci->magic, &ref, plan.message,
                                       sizeof(plan.message), plan.advice, sizeof(plan.advice));
    struct station_req *rq = req_of_job(st, j->id);
    struct config_firmware_ref override;
    if (rq && rq->fw_name[0] && ci->chip) {
        /* The API named the firmware: it replaces the profile's choice (fw_get checks the chip). */
        override.chip = ci->chip->chip;
        override.name = rq->fw_name;
        override.version = rq->fw_version;
        ref = &override;
        pick = 1;
    }
    plan.nofw_state = pick < 0 ? RECORDS_JOB_FAILED : RECORDS_JOB_SKIPPED;
    if (pick == 0 && ci->chip && !active_profile(st)) {
        /* The line stands still for this board: say so where the technician looks. */
        struct json_object *np = st_jobj();
        struct json_object *names = json_object_new_array();
        for (size_t i = 0; i < st->cfg->n_profiles; i++)
            json_object_array_add(names, json_object_new_string(st->cfg->profiles[i].name));
        st_jset_str(np, "chip", j->chip);
        json_object_object_add(np, "profiles", names);
        st_jset_str(np, "message", plan.message);
        st_jset_str(np, "advice", plan.advice);
        st_event(st, "slot.no_profile", s, j->mac, j->id, np);
        slog(s, LOG_LEVEL_WARN, "%s -- %s", plan.message, plan.advice);
    }
    if (pick > 0) {
        char err[512] = "";
        int rc = fw_get(st, ref, &plan.fw, err, sizeof(err));
        if (rc == -ENOENT) {
            /* not here: another station of the line may hold it (fetched, then planned) */
            int lrc = line_fw_need(st->lfw, ref->name, ref->version, line_fw_ready, st, j->id, ci,
                                   sizeof(*ci), err, sizeof(err));
            if (lrc > 0) {
                slog(s, LOG_LEVEL_INFO, "%s; the job waits for it", err);
                return;
            }
            if (lrc < 0)
                rc = lrc;
        }
        if (rc < 0) {
            plan.fw = NULL;
            plan.nofw_state = RECORDS_JOB_FAILED;
            scopy(plan.message, sizeof(plan.message), err[0] ? err : "cannot load the firmware");
            snprintf(plan.advice, sizeof(plan.advice),
                     "import %s@%s with espstationd --import-firmware DIR (or fix the profile)",
                     ref->name, ref->version);
        } else if (records_job_set_firmware(st->rec, j->id, plan.fw->ref, &re) < 0) {
            rec_warn(&re);
        }
    }
    int prc = plan.fw ? station_take_serial(st, j, &plan) : 0;
    if (prc == 0 && plan.fw)
        prc = take_per_board(st, j, &plan);
    if (prc < 0) {
        job_firmware_unref(plan.fw);
        plan.fw = NULL;
        plan.nofw_state = RECORDS_JOB_FAILED;
        plan.prepare_failed = prc;
    }
    j->replied = true;
    job_reply(j, &plan);
    job_firmware_unref(plan.fw); /* NULL after job_reply moved it; kept for clarity */
}

int station_choose_firmware(const struct config *cfg, const struct esp_chip_desc *chip,
                            uint32_t magic, const struct config_firmware_ref **ref, char *msg,
                            size_t msglen, char *advice, size_t advlen)
{
    *ref = NULL;
    msg[0] = advice[0] = '\0';
    if (!chip) {
        snprintf(msg, msglen, "unknown chip (magic 0x%08X)", magic);
        snprintf(advice, advlen, "this chip family is not supported by the station");
        return -ENOTSUP;
    }
    const struct config_profile *prof = config_profile(cfg, NULL);
    if (!prof) {
        char names[200] = "";
        size_t used = 0;
        for (size_t i = 0; i < cfg->n_profiles && used < sizeof(names); i++)
            used += (size_t)snprintf(names + used, sizeof(names) - used, "%s%s", i ? ", " : "",
                                     cfg->profiles[i].name);
        snprintf(msg, msglen,
                 "no active profile: %s identified and recorded, not flashed (%zu profile(s) "
                 "defined, none chosen)",
                 chip->name, cfg->n_profiles);
        if (cfg->n_profiles)
            snprintf(advice, advlen,
                     "choose the profile to flash with: PUT /api/v1/profiles/active "
                     "{\"name\": \"%s\"} or active_profile in the config (profiles: %s), "
                     "then plug the board in again",
                     cfg->profiles[0].name, names);
        else
            snprintf(advice, advlen,
                     "define a profile (PUT /api/v1/profiles/NAME or \"profiles\" in the config) "
                     "to flash boards");
        return 0;
    }
    *ref = config_profile_firmware(prof, chip->chip);
    if (!*ref) {
        snprintf(msg, msglen, "no firmware configured for %s in profile %s", chip->name,
                 prof->name);
        snprintf(advice, advlen,
                 "add \"%s\": \"name@version\" to profiles.%s.firmware in the config",
                 chip->stub_name, prof->name);
        return 0;
    }
    return 1;
}

static void on_flash_info(struct station *st, struct job *j, const struct job_msg *m)
{
    if (!j->mac[0])
        return;
    struct records_board b;
    records_board_init(&b);
    snprintf(b.mac, sizeof(b.mac), "%s", j->mac);
    b.flash_id = m->info.flash_id ? (int64_t)m->info.flash_id : -1;
    b.flash_size = m->info.flash_size ? (int64_t)m->info.flash_size : -1;
    struct records_error re;
    if (records_board_upsert(st->rec, &b, &re) < 0)
        rec_warn(&re);
}

static void on_capture(struct station *st, struct job *j, const struct job_msg *m)
{
    if (!j->mac[0])
        return;
    struct records_board b;
    records_board_init(&b);
    snprintf(b.mac, sizeof(b.mac), "%s", j->mac);
    if (strcmp(m->name, "version") == 0) {
        scopy(b.running_version, sizeof(b.running_version), m->value);
    } else if (strcmp(m->name, "ip") == 0) {
        scopy(j->boot_ip, sizeof(j->boot_ip), m->value); /* online when the job ends */
        /* Printed by the board on its own UART in this slot: a confirmed address. */
        board_addr_note(st, j->mac, m->value, BOARD_ADDR_BOOT_CHECK, j->slot, j->id);
        return;
    } else {
        snprintf(b.notes, sizeof(b.notes), "boot %s=%s", m->name, m->value);
    }
    struct records_error re;
    if (records_board_upsert(st->rec, &b, &re) < 0)
        rec_warn(&re);
}

static void on_message(void *ctx, void *msg)
{
    struct station *st = ctx;
    struct job_msg *m = msg;
    struct job *j = m->job;
    struct slot *s = j->slot;
    struct records_error re;
    switch (m->kind) {
    case JOB_MSG_LOG:
        if (records_job_log(st->rec, j->id, log_level_to_string(m->level), m->text, &re) < 0)
            rec_warn(&re);
        slog(s, m->level, "%s", m->text);
        break;
    case JOB_MSG_PHASE: {
        j->phase = m->phase;
        snprintf(j->stage, sizeof(j->stage), "%s", m->stage);
        if (j->removed || s->in_grace)
            break; /* the slot already shows the removal */
        if (board_phase_is_active(m->phase))
            set_phase(st, s, m->phase);
        snprintf(s->stage, sizeof(s->stage), "%s", m->stage);
        if (records_job_progress(st->rec, j->id, m->stage, -1, -1, &re) < 0)
            rec_warn(&re);
        struct json_object *d = st_jobj();
        st_jset_str(d, "phase", board_phase_to_string(m->phase));
        st_jset_str(d, "stage", m->stage);
        st_event(st, "job.progress", s, j->mac, j->id, d);
        slog(s, LOG_LEVEL_DEBUG, "%s (%s)", board_phase_to_string(m->phase), m->stage);
        break;
    }
    case JOB_MSG_PROGRESS:
        s->done = m->done;
        s->total = m->total;
        s->kbps = m->kbps;
        if (!j->removed && !s->in_grace)
            notify_slot(st, s, true);
        if (records_job_progress(st->rec, j->id, NULL, (int64_t)m->done, (int64_t)m->wire, &re) < 0)
            rec_warn(&re);
        break;
    case JOB_MSG_IDENTIFIED:
        on_identified(st, j, m);
        break;
    case JOB_MSG_FLASH_INFO:
        on_flash_info(st, j, m);
        break;
    case JOB_MSG_CAPTURE:
        on_capture(st, j, m);
        break;
    case JOB_MSG_DONE:
        j->phase = m->phase;
        finish_job(st, j, &m->result);
        break;
    }
    job_msg_free(m);
}

static void destroy_message(void *ctx, void *msg)
{
    (void)ctx;
    job_msg_free(msg);
}

/* ---- ports ---------------------------------------------------------------------------------- */

static void port_added(struct station *st, const struct port_event *ev)
{
    struct slot *s = slot_table_get(&st->slots, ev->slot_key);
    if (!s) {
        log_msg(LOG_LEVEL_ERROR, "out of memory: port %s ignored", ev->uri);
        return;
    }
    if (!s->link_loaded) {
        struct records_error re;
        if (records_slot_baud_limit_get(st->rec, s->key, &s->baud_limit, &re) < 0)
            log_msg(LOG_LEVEL_WARN, "records: %s", re.message);
        else if (s->baud_limit)
            log_msg(LOG_LEVEL_NOTICE,
                    "slot %s: baud limited to %u (learnt from link errors earlier; POST "
                    "/api/v1/slots/{id}/reset-baud forgets it)",
                    s->key, (unsigned)s->baud_limit);
        s->link_loaded = true;
    }
    const char *label = ev->label[0] ? ev->label : config_slot_label(st->cfg, ev->slot_key);
    snprintf(s->label, sizeof(s->label), "%s", label ? label : "");
    if (s->in_grace && s->job) {
        /* A USB-Serial/JTAG board back after its reset: same job, same slot. */
        s->in_grace = false;
        loop_timer_disarm(s->timer);
        s->present = true;
        snprintf(s->uri, sizeof(s->uri), "%s", ev->uri);
        slog(s, LOG_LEVEL_INFO, "port back as %s: the job continues", ev->uri);
        job_port_back(s->job, ev->uri);
        return;
    }
    if (s->present && (s->job || s->phase != BOARD_EMPTY)) {
        if (strcmp(s->uri, ev->uri) != 0)
            snprintf(s->uri, sizeof(s->uri), "%s", ev->uri);
        return; /* seen already (coldplug and hotplug racing) */
    }
    s->present = true;
    s->usb_jtag = ev->usb_jtag;
    s->adapter_known = ev->bridge_known;
    s->adapter_baud = ev->max_baud;
    snprintf(s->uri, sizeof(s->uri), "%s", ev->uri);
    slot_clear_board(s);
    struct json_object *d = st_jobj();
    st_jset_str(d, "uri", ev->uri);
    if (ev->vid || ev->pid) {
        char id[16];
        snprintf(id, sizeof(id), "%04x:%04x", ev->vid, ev->pid);
        st_jset_str(d, "usb_id", id);
    }
    if (ev->coldplug)
        json_object_object_add(d, "coldplug", json_object_new_boolean(true));
    if (ev->max_baud)
        st_jset_int(d, "adapter_baud", ev->max_baud);
    st_event(st, "port.added", s, NULL, 0, d);
    char adapter[48] = "";
    if (ev->max_baud)
        snprintf(adapter, sizeof(adapter), " (adapter good to %u baud)", (unsigned)ev->max_baud);
    slog(s, LOG_LEVEL_INFO, "port added: %s%s%s", ev->uri, adapter,
         ev->coldplug ? " (present at start)" : "");
    if (s->job) /* a job still ending from the previous board: it will not be retried */
        return;
    schedule(st, s);
}

static void port_removed(struct station *st, const struct port_event *ev)
{
    struct slot *s = slot_table_find(&st->slots, ev->slot_key);
    if (!s || !s->present)
        return;
    s->present = false;
    if (s->manual)
        s->dead_id = s->manual_id;
    struct json_object *d = st_jobj();
    st_jset_str(d, "uri", ev->uri);
    st_event(st, "port.removed", s, s->mac, s->job ? s->job->id : 0, d);
    if (s->job) {
        struct job *j = s->job;
        bool jtag = s->usb_jtag || ev->usb_jtag;
        if (jtag && (j->phase == BOARD_RESETTING || j->phase == BOARD_BOOT_CHECK) &&
            st->opt.reenum_grace_ms > 0) {
            s->in_grace = true;
            slog(s, LOG_LEVEL_INFO,
                 "port gone during %s (USB-Serial/JTAG re-enumeration?): "
                 "waiting %d ms for it",
                 j->stage, st->opt.reenum_grace_ms);
            if (slot_timer_arm(st, s, st->opt.reenum_grace_ms) < 0) {
                s->in_grace = false;
                j->removed = true;
                job_cancel(j);
            }
            return;
        }
        slog(s, LOG_LEVEL_INFO, "port removed during %s: cancelling job %lld", j->stage,
             (long long)j->id);
        j->removed = true;
        job_cancel(j);
        return; /* finish_job empties the slot */
    }
    slog(s, LOG_LEVEL_INFO, "port removed");
    struct station_req *rq = req_pending(st, s);
    if (rq)
        req_drop(st, rq, "board removed while queued");
    queue_remove(st, s);
    s->retry_pending = false;
    if (s->timer)
        loop_timer_disarm(s->timer);
    set_phase(st, s, BOARD_EMPTY);
}

void station_port_event(void *ctx, const struct port_event *ev)
{
    struct station *st = ctx;
    if (ev->kind == PORT_ADDED)
        port_added(st, ev);
    else
        port_removed(st, ev);
}

/* Polls the config's manual ports: a path that does not exist is "not plugged". */
static void poll_manual(void *ctx)
{
    struct station *st = ctx;
    if (st->stopping)
        return;
    for (size_t i = 0; i < st->cfg->n_ports; i++) {
        const struct config_port *p = &st->cfg->ports[i];
        struct port_event ev;
        devsrc_manual_event(PORT_ADDED, p->uri, p->label, &ev);
        struct slot *s = slot_table_find(&st->slots, ev.slot_key);
        uint64_t id = manual_id(p->uri);
        bool was = s && s->present;
        if (was && id != 0 && id != s->manual_id && id != 1) {
            /* Replaced between two polls (a new board on the same path). */
            ev.kind = PORT_REMOVED;
            port_removed(st, &ev);
            ev.kind = PORT_ADDED;
            was = false;
        }
        if (id != 0 && !was && !(s && s->dead_id == id)) {
            port_added(st, &ev);
            s = slot_table_find(&st->slots, ev.slot_key);
            if (s) {
                s->manual = true;
                s->manual_id = id;
                s->dead_id = 0;
            }
        } else if (id == 0 && was) {
            ev.kind = PORT_REMOVED;
            port_removed(st, &ev);
        }
    }
    /* Manual slots no longer in the config are unplugged. */
    for (size_t k = 0; k < st->slots.n; k++) {
        struct slot *s = st->slots.v[k];
        if (!s->manual || !s->present)
            continue;
        bool listed = false;
        for (size_t i = 0; i < st->cfg->n_ports && !listed; i++)
            listed = strcmp(s->key + 4, st->cfg->ports[i].uri) == 0;
        if (!listed) {
            struct port_event ev;
            devsrc_manual_event(PORT_REMOVED, s->key + 4, NULL, &ev);
            port_removed(st, &ev);
        }
    }
}

int station_attach(struct station *st, const char *uri, const char *label)
{
    if (!uri || !*uri || strlen(uri) >= 250)
        return -EINVAL;
    struct port_event ev;
    devsrc_manual_event(PORT_ADDED, uri, label, &ev);
    port_added(st, &ev);
    return 0;
}

/* ---- udev -------------------------------------------------------------------------------------
 */

static void udev_ready(void *ctx, int fd, uint32_t events)
{
    (void)fd;
    (void)events;
    struct station *st = ctx;
    devsrc_udev_dispatch(st->udev);
}

/* Starts the udev source: hotplug monitor, then coldplug through the same path.
 * Failure is a warning: the station still serves manual ports. */
static void udev_start(struct station *st)
{
    char err[256] = "";
    int rc = devsrc_udev_new(st->cfg, station_port_event, st, &st->udev, err, sizeof(err));
    if (rc < 0) {
        st->udev = NULL;
        log_msg(LOG_LEVEL_WARN, "udev monitor unavailable (%s): only manual ports are served",
                err[0] ? err : strerror(-rc));
        return;
    }
    st->udev_fd = devsrc_udev_fd(st->udev);
    if (loop_add_fd(st->loop, st->udev_fd, EPOLLIN, udev_ready, st) < 0) {
        log_msg(LOG_LEVEL_WARN, "cannot watch the udev monitor: only manual ports are served");
        devsrc_udev_free(st->udev);
        st->udev = NULL;
        return;
    }
    rc = devsrc_udev_coldplug(st->udev);
    if (rc < 0)
        log_msg(LOG_LEVEL_WARN, "udev coldplug failed: %s", strerror(-rc));
}

/* ---- life cycle -------------------------------------------------------------------------------
 */

static int load_config(const char *path, struct config **out, char *err, size_t errlen)
{
    return config_load(path, out, err, errlen);
}

int station_new(const struct station_options *o, struct loop *loop, struct station **out, char *err,
                size_t errlen)
{
    *out = NULL;
    struct station *st = calloc(1, sizeof(*st));
    if (!st)
        return -ENOMEM;
    st->opt = *o;
    st->loop = loop;
    st->udev_fd = -1;
    if (st->opt.flag_after <= 0)
        st->opt.flag_after = SLOT_DEFAULT_FLAG_AFTER;
    if (st->opt.retry_backoff_ms <= 0)
        st->opt.retry_backoff_ms = DEFAULT_RETRY_BACKOFF_MS;
    if (st->opt.manual_poll_ms <= 0)
        st->opt.manual_poll_ms = DEFAULT_MANUAL_POLL_MS;
    if (st->opt.reenum_grace_ms <= 0)
        st->opt.reenum_grace_ms = DEFAULT_REENUM_GRACE_MS;
    if (o->config_path)
        st->config_path = strdup(o->config_path);
    if (o->data_dir)
        snprintf(st->data_override, sizeof(st->data_override), "%s", o->data_dir);
    if (o->stub_dir)
        snprintf(st->stub_override, sizeof(st->stub_override), "%s", o->stub_dir);
    if (o->stub_dir_env)
        snprintf(st->stub_env, sizeof(st->stub_env), "%s", o->stub_dir_env);
    if (o->stub_dir_build)
        snprintf(st->stub_build, sizeof(st->stub_build), "%s", o->stub_dir_build);
    st->opt.config_path = st->config_path;
    st->opt.data_dir = st->opt.stub_dir = NULL;
    st->opt.stub_dir_env = st->opt.stub_dir_build = NULL;
    slot_table_init(&st->slots);

    int rc = load_config(st->config_path, &st->cfg, err, errlen);
    if (rc < 0)
        goto fail;
    st_resolve_dirs(st);
    rc = mkdir_p(st->data_dir);
    if (rc < 0) {
        snprintf(err, errlen, "cannot create the data directory %s: %s", st->data_dir,
                 strerror(-rc));
        goto fail;
    }
    char path[PATH_MAX + 16];
    snprintf(path, sizeof(path), "%s/records.db", st->data_dir);
    struct records_error re;
    st_resolve_name(st);
    if (st->cfg->records.postgresql) {
        /* A line's shared database: re.message names the server and what to check. */
        char journal[PATH_MAX + 16];
        snprintf(journal, sizeof(journal), "%s/records.journal", st->data_dir);
        rc = st_records_open(st, journal, &re);
        snprintf(path, sizeof(path), "PostgreSQL, station %s", st->name);
    } else {
        rc = records_open_station(RECORDS_BACKEND_SQLITE, path, st->name, &st->rec, &re);
    }
    if (rc < 0) {
        snprintf(err, errlen, "%s", re.message);
        goto fail;
    }
    int recovered = records_recovered_jobs(st->rec);
    if (recovered > 0)
        log_msg(LOG_LEVEL_WARN,
                "records: %d job(s) were interrupted by a crash or kill and are marked "
                "'interrupted'; their boards are flashed again when seen",
                recovered);
    rc = catalog_open(st->data_dir, &st->cat, err, errlen);
    if (rc < 0)
        goto fail;
    st_load_overlay_file(st);
    loop_set_msg_handler(loop, on_message, destroy_message, st);
    log_msg(LOG_LEVEL_INFO, "station %s: data directory %s (records %s, firmware %s)", st->name,
            st->data_dir, path, catalog_root(st->cat));
    if (!st->stub_dir[0])
        log_msg(LOG_LEVEL_WARN, "no flasher stub directory: ROM-only flashing (slower)");
    check_profiles(st);
    *out = st;
    return 0;
fail:
    station_free(st);
    return rc < 0 ? rc : -EINVAL;
}

int station_start(struct station *st)
{
    st->poll_timer = loop_timer_new(st->loop, poll_manual, st);
    if (!st->poll_timer)
        return -ENOMEM;
    int rc = loop_timer_arm(st->poll_timer, st->opt.manual_poll_ms, st->opt.manual_poll_ms);
    if (rc < 0 || (rc = st_records_watch(st)) < 0)
        return rc;
    if (!st->opt.no_udev)
        udev_start(st);
    for (size_t i = 0; i < st->cfg->n_ports; i++) {
        if (!manual_present(st->cfg->ports[i].uri))
            log_msg(LOG_LEVEL_INFO, "manual port %s is absent: polling for it",
                    st->cfg->ports[i].uri);
    }
    /* this station's sets described for the line, and fetched from it when missing */
    st->lfw = line_fw_new(st, st->loop);
    line_fw_publish(st->lfw);
    poll_manual(st); /* manual ports present at start */
    log_msg(LOG_LEVEL_NOTICE, "station running: %zu manual port(s), max_parallel %d, profile %s",
            st->cfg->n_ports, st->cfg->max_parallel,
            active_profile(st) ? active_profile(st)->name : "(none)");
    return 0;
}

static const char *overlay_text(const struct station *st)
{
    return st->overlay ? json_object_to_json_string_ext(st->overlay, JSON_C_TO_STRING_PLAIN) : NULL;
}

static void budget_reload(struct station *st);

int station_reload(struct station *st)
{
    char err[512] = "";
    struct config *cfg = NULL;
    int rc = config_load_overlay(st->config_path, overlay_text(st), &cfg, err, sizeof(err));
    if (rc < 0 && st->overlay) {
        /* The file may have changed under the API's profile changes: try it alone. */
        char err2[512] = "";
        struct config *plain = NULL;
        if (load_config(st->config_path, &plain, err2, sizeof(err2)) == 0) {
            log_msg(LOG_LEVEL_WARN,
                    "profile changes made through the API do not fit the reloaded "
                    "configuration and are dropped: %s",
                    err);
            json_object_put(st->overlay);
            st->overlay = NULL;
            st_quarantine_overlay(st, "its profiles do not fit the reloaded config file");
            cfg = plain;
            rc = 0;
        }
    }
    if (rc < 0) {
        log_msg(LOG_LEVEL_ERROR, "reload refused, keeping the running configuration: %s", err);
        return rc;
    }
    st_apply_config(st, cfg);
    budget_reload(st);
    log_msg(LOG_LEVEL_NOTICE, "configuration reloaded%s%s: profile %s, max_parallel %d",
            st->config_path ? " from " : "", st->config_path ? st->config_path : "",
            active_profile(st) ? active_profile(st)->name : "(none)", st->cfg->max_parallel);
    return 0;
}

/* Swaps in a new config (owned by the station from here). */
void st_apply_config(struct station *st, struct config *cfg)
{
    char old_data[PATH_MAX];
    snprintf(old_data, sizeof(old_data), "%s", st->data_dir);
    /* Jobs copied what they need (struct job_params): nothing borrows the old config. */
    config_free(st->cfg);
    st->cfg = cfg;
    st_resolve_dirs(st);
    if (strcmp(old_data, st->data_dir) != 0) {
        log_msg(LOG_LEVEL_WARN,
                "data_dir changed to %s: takes effect after a restart; still "
                "using %s",
                old_data, old_data);
        snprintf(st->data_dir, sizeof(st->data_dir), "%s", old_data);
    }
    if (st->udev)
        devsrc_udev_set_config(st->udev, st->cfg);
    for (size_t k = 0; k < st->slots.n; k++) {
        struct slot *s = st->slots.v[k];
        if (s->manual) {
            for (size_t i = 0; i < st->cfg->n_ports; i++)
                if (strcmp(s->key + 4, st->cfg->ports[i].uri) == 0)
                    snprintf(s->label, sizeof(s->label), "%s",
                             st->cfg->ports[i].label ? st->cfg->ports[i].label : "");
        } else {
            const char *l = config_slot_label(st->cfg, s->key);
            snprintf(s->label, sizeof(s->label), "%s", l ? l : "");
        }
    }
    fw_cache_clear(st);
    ota_reload(st->ota); /* a changed ota.listen is re-bound (keeps the old one on failure) */
    check_profiles(st);
    poll_manual(st);
    start_queued(st);
}

void station_stop(struct station *st)
{
    if (st->stopping) {
        log_msg(LOG_LEVEL_NOTICE, "already stopping: waiting for %d job(s)", st->running);
        return;
    }
    st->stopping = true;
    log_msg(LOG_LEVEL_NOTICE, "stopping: cancelling %d running job(s)", st->running);
    for (struct job *j = st->jobs; j; j = j->next) {
        j->stopping = true;
        job_cancel(j);
    }
    st->nq = 0;
    for (size_t k = 0; k < st->slots.n; k++) {
        struct station_req *rq = req_pending(st, st->slots.v[k]);
        if (rq)
            req_drop(st, rq, "daemon stopping (while queued)");
    }
    for (size_t k = 0; k < st->slots.n; k++) {
        struct slot *s = st->slots.v[k];
        s->retry_pending = false;
        s->in_grace = false;
        if (s->timer)
            loop_timer_disarm(s->timer);
        if (!s->job && s->phase == BOARD_QUEUED)
            set_phase(st, s, BOARD_IDLE);
    }
    if (st->running == 0) {
        st->stopped = true;
        loop_stop(st->loop);
    }
}

bool station_stopped(const struct station *st)
{
    return st->stopped;
}

void station_on_signal(void *ctx, int signo)
{
    struct station *st = ctx;
    switch (signo) {
    case SIGHUP:
        log_msg(LOG_LEVEL_NOTICE, "SIGHUP: reloading the configuration and the catalog");
        station_reload(st);
        break;
    case SIGTERM:
    case SIGINT:
        log_msg(LOG_LEVEL_NOTICE, "%s received", signo == SIGTERM ? "SIGTERM" : "SIGINT");
        station_stop(st);
        break;
    default:
        break;
    }
}

void station_free(struct station *st)
{
    if (!st)
        return;
    /* No job may be running here; join defensively if one is (a bug). */
    while (st->jobs) {
        struct job *j = st->jobs;
        st->jobs = j->next;
        job_cancel(j);
        job_free(j);
    }
    if (st->udev) {
        if (st->udev_fd >= 0)
            loop_del_fd(st->loop, st->udev_fd);
        devsrc_udev_free(st->udev);
    }
    for (size_t k = 0; k < st->slots.n; k++) {
        loop_timer_free(st->slots.v[k]->timer);
        free(st->slots.v[k]->timer_ctx);
    }
    slot_table_free(&st->slots);
    loop_timer_free(st->poll_timer);
    line_fw_free(st->lfw); /* before the catalog: a fetch may be importing into it */
    st_records_unwatch(st);
    fw_cache_clear(st);
    free(st->fw);
    free(st->queue);
    catalog_close(st->cat);
    if (st->rec) {
        records_close(st->rec);
        log_msg(LOG_LEVEL_INFO, "records closed");
    }
    while (st->reqs)
        req_free(st, st->reqs);
    json_object_put(st->overlay);
    config_free(st->cfg);
    free(st->config_path);
    free(st);
}

/* A build's output (buildimport.h): logs what was recognised and each set imported. */
static int import_build(struct catalog *cat, const struct station_options *o, const char *path,
                        bool replace, struct catalog_report *rep)
{
    const struct buildimport_opts bo = {
        .name = o->import_name, .version = o->import_version, .replace = replace};
    struct buildimport_result res;
    int rc = buildimport_run(cat, path, &bo, &res, rep);
    if (res.err[0])
        log_msg(LOG_LEVEL_ERROR, "%s: %s", path, res.err);
    json_object *src = res.source, *v, *sets = NULL;
    if (src) {
        json_object_object_get_ex(src, "sets", &sets);
        const char *fmt =
            json_object_object_get_ex(src, "format", &v) ? json_object_get_string(v) : "?";
        const char *desc =
            json_object_object_get_ex(src, "descriptor", &v) && v ? json_object_get_string(v) : "-";
        log_msg(LOG_LEVEL_NOTICE, "%s: recognised %s (%s), %zu firmware set(s)", path, fmt, desc,
                sets ? json_object_array_length(sets) : 0);
        json_object *notes;
        if (json_object_object_get_ex(src, "notes", &notes))
            for (size_t i = 0; i < json_object_array_length(notes); i++)
                log_msg(LOG_LEVEL_NOTICE, "%s: %s", path,
                        json_object_get_string(json_object_array_get_idx(notes, i)));
    }
    for (size_t i = 0; i < res.n_sets && sets; i++) {
        json_object *s = json_object_array_get_idx(sets, i), *regs;
        const char *chip =
            json_object_object_get_ex(s, "chip", &v) ? json_object_get_string(v) : "?";
        size_t nr =
            json_object_object_get_ex(s, "regions", &regs) ? json_object_array_length(regs) : 0;
        bool done = rc == 0 || i + 1 < res.n_sets;
        log_msg(done ? LOG_LEVEL_NOTICE : LOG_LEVEL_ERROR, "%s: %s %s@%s (%s, %zu regions)", path,
                done ? "firmware set" : "refused:", res.names[i], res.versions[i], chip, nr);
    }
    buildimport_result_free(&res);
    return rc;
}

int station_import_firmware(const struct station_options *o, const char *dir, bool replace)
{
    char err[512] = "";
    struct config *cfg = NULL;
    int rc = config_load(o->config_path, &cfg, err, sizeof(err));
    if (rc < 0) {
        log_msg(LOG_LEVEL_ERROR, "%s", err);
        return rc;
    }
    const char *data_dir = o->data_dir ? o->data_dir : cfg->data_dir;
    rc = mkdir_p(data_dir);
    struct catalog *cat = NULL;
    if (rc == 0)
        rc = catalog_open(data_dir, &cat, err, sizeof(err));
    if (rc < 0) {
        log_msg(LOG_LEVEL_ERROR, "cannot open the catalog in %s: %s", data_dir,
                err[0] ? err : strerror(-rc));
        config_free(cfg);
        return rc;
    }
    struct catalog_report rep;
    catalog_report_init(&rep);
    struct stat st;
    bool build = stat(dir, &st) != 0 || !S_ISDIR(st.st_mode) || !buildimport_is_station_set(dir);
    if (build)
        rc = import_build(cat, o, dir, replace, &rep);
    else
        rc = catalog_import(cat, dir, replace, &rep);
    if (rep.n) {
        size_t len = rep.n * 420 + 64;
        char *buf = malloc(len);
        if (buf) {
            catalog_report_format(&rep, buf, len);
            for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n"))
                log_msg(strncmp(line, "error", 5) == 0 ? LOG_LEVEL_ERROR : LOG_LEVEL_WARN, "%s",
                        line);
            free(buf);
        }
    }
    if (rc == -EEXIST)
        log_msg(LOG_LEVEL_ERROR, "%s: this name@version is already in the catalog (use --replace)",
                dir);
    else if (rc < 0)
        log_msg(LOG_LEVEL_ERROR, "import of %s refused (%zu problem(s))", dir, rep.n_errors);
    else
        log_msg(LOG_LEVEL_NOTICE, "imported %s into %s", dir, catalog_root(cat));
    catalog_report_free(&rep);
    catalog_close(cat);
    config_free(cfg);
    return rc;
}

/* ---- for the web layer ------------------------------------------------------------------ */

struct records *station_records(struct station *st)
{
    return st->rec;
}

struct catalog *station_catalog(struct station *st)
{
    return st->cat;
}

struct line_fw *station_line_fw(struct station *st)
{
    return st->lfw;
}

const struct config *station_config(const struct station *st)
{
    return st->cfg;
}

const struct slot_table *station_slots(const struct station *st)
{
    return &st->slots;
}

/* config "station", else the host name with characters a station name cannot
 * hold turned into '-' ("station" when even that is empty). */
static void st_resolve_name(struct station *st)
{
    char host[256] = "";
    size_t n = 0;
    if (st->cfg->station) {
        snprintf(st->name, sizeof(st->name), "%s", st->cfg->station);
        return;
    }
    if (gethostname(host, sizeof(host) - 1) < 0)
        host[0] = '\0';
    for (const char *p = host; *p && n + 1 < sizeof(st->name); p++) {
        char c = *p;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-';
        st->name[n++] = ok ? c : '-';
    }
    st->name[n] = '\0';
    if (!records_station_name_ok(st->name))
        snprintf(st->name, sizeof(st->name), "station");
}

const char *station_name(const struct station *st)
{
    return st->name;
}

const char *station_data_dir(const struct station *st)
{
    return st->data_dir;
}

bool station_stopping(const struct station *st)
{
    return st->stopping;
}

int station_running(const struct station *st)
{
    return st->running;
}

struct slot *station_find_slot(const struct station *st, const char *id)
{
    if (!id || !*id)
        return NULL;
    for (size_t k = 0; k < st->slots.n; k++)
        if (strcmp(slot_name(st->slots.v[k]), id) == 0)
            return st->slots.v[k];
    for (size_t k = 0; k < st->slots.n; k++)
        if (strcmp(st->slots.v[k]->key, id) == 0 || strcmp(st->slots.v[k]->label, id) == 0)
            return st->slots.v[k];
    char *end;
    errno = 0;
    unsigned long long i = strtoull(id, &end, 10);
    if (!errno && *end == '\0' && id[0] >= '0' && id[0] <= '9' && i < st->slots.n)
        return st->slots.v[i];
    return NULL;
}

uint32_t station_slot_reset_baud(struct station *st, struct slot *s)
{
    uint32_t was = s->baud_limit;
    if (!was)
        return 0;
    s->baud_limit = 0;
    s->clean_jobs = 0;
    s->probe_baud = 0;
    store_baud_limit(st, s);
    struct json_object *d = st_jobj();
    st_jset_int(d, "baud_limit", was);
    st_event(st, "slot.baud_limit_cleared", s, s->mac[0] ? s->mac : NULL, 0, d);
    slog(s, LOG_LEVEL_NOTICE, "baud limit %u cleared: jobs run at the profile's baud again",
         (unsigned)was);
    return was;
}

bool station_slot_busy(const struct station *st, const struct slot *s)
{
    return s->job || s->phase == BOARD_QUEUED || s->retry_pending || s->in_grace ||
           req_pending(st, s) != NULL;
}

const char *station_slot_job_kind(const struct station *st, const struct slot *s)
{
    (void)st;
    if (s->job)
        return s->job->params.kind[0] ? s->job->params.kind : "flash";
    return s->job_id > 0 && s->job_kind[0] ? s->job_kind : NULL; /* the last job's */
}

int64_t station_slot_elapsed_ms(const struct station *st, const struct slot *s)
{
    (void)st;
    return s->job ? loop_now_ms() - s->job->started_ms : -1;
}

struct slot *station_slot_of_job(const struct station *st, int64_t id)
{
    for (struct job *j = st->jobs; j; j = j->next)
        if (j->id == id)
            return j->slot;
    return NULL;
}

void station_set_hooks(struct station *st, const struct station_hooks *h)
{
    if (h)
        st->hooks = *h;
    else
        memset(&st->hooks, 0, sizeof(st->hooks));
}

int station_post_event(struct station *st, const char *kind, const struct slot *s, const char *mac,
                       int64_t job_id, const char *data)
{
    return event_text(st, kind, s, mac, job_id, data);
}

int station_request_job(struct station *st, struct slot *s, const struct station_job_request *r,
                        int64_t *job_id, char *err, size_t errlen)
{
    *job_id = 0;
    if (err && errlen)
        err[0] = '\0';
    if (st->stopping) {
        snprintf(err, errlen, "the station is stopping");
        return -ESHUTDOWN;
    }
    if (!r->kind || (strcmp(r->kind, "flash") && strcmp(r->kind, "erase") &&
                     strcmp(r->kind, "info") && strcmp(r->kind, "reset"))) {
        snprintf(err, errlen, "unknown job kind");
        return -EINVAL;
    }
    if (station_slot_busy(st, s)) {
        if (s->job)
            snprintf(err, errlen, "slot %s is busy with job %lld (%s)", slot_name(s),
                     (long long)s->job->id, board_phase_to_string(s->phase));
        else
            snprintf(err, errlen, "slot %s is busy (%s)", slot_name(s),
                     s->retry_pending ? "retry pending" : board_phase_to_string(s->phase));
        return -EBUSY;
    }
    if (!s->present) {
        snprintf(err, errlen, "no board on slot %s", slot_name(s));
        return -ENODEV;
    }
    struct station_req *rq = calloc(1, sizeof(*rq));
    if (!rq)
        return -ENOMEM;
    rq->s = s;
    snprintf(rq->kind, sizeof(rq->kind), "%s", r->kind);
    if (r->firmware_name && r->firmware_version) {
        scopy(rq->fw_name, sizeof(rq->fw_name), r->firmware_name);
        scopy(rq->fw_version, sizeof(rq->fw_version), r->firmware_version);
    }
    rq->force = r->force;
    rq->erase_all = r->erase_all;
    rq->verify = r->verify;
    rq->baud = r->baud;
    rq->erase_region = r->erase_region;
    rq->erase_offset = r->erase_offset;
    rq->erase_size = r->erase_size;
    rq->next = st->reqs;
    st->reqs = rq;
    s->attempt = 0;
    s->retry_pending = false;

    char fwref[RECORDS_FIRMWARE_LEN] = "";
    if (rq->fw_name[0])
        snprintf(fwref, sizeof(fwref), "%s@%s", rq->fw_name, rq->fw_version);
    struct json_object *d = st_jobj();
    st_jset_str(d, "kind", rq->kind);
    if (fwref[0])
        st_jset_str(d, "firmware", fwref);
    if (rq->force)
        json_object_object_add(d, "force", json_object_new_boolean(true));

    if (st->running < st->cfg->max_parallel && st->nq == 0) {
        start_job(st, s);
        if (!s->job || rq != req_of_job(st, s->job_id)) {
            /* start_job logged why and freed the request. */
            snprintf(err, errlen, "cannot start the job on slot %s (see the daemon log)",
                     slot_name(s));
            json_object_put(d);
            return -EIO;
        }
        *job_id = s->job_id;
        st_event(st, "job.requested", s, s->mac, *job_id, d);
        return 0;
    }
    /* max_parallel jobs run: a 'queued' records job now, the worker later. */
    struct records_error re;
    struct records_job_new jn = {
        .kind = rq->kind,
        .slot = slot_name(s),
        .firmware = fwref[0] ? fwref : NULL,
        .stage = "queued",
        .queued = true,
    };
    if (records_job_begin(st->rec, &jn, &rq->job_id, &re) < 0) {
        snprintf(err, errlen, "%s", re.message);
        req_free(st, rq);
        json_object_put(d);
        return -EIO;
    }
    *job_id = rq->job_id;
    s->job_id = rq->job_id;
    set_phase(st, s, BOARD_QUEUED);
    if (queue_push(st, s) < 0) {
        req_drop(st, rq, "out of memory");
        json_object_put(d);
        return -ENOMEM;
    }
    slog(s, LOG_LEVEL_INFO, "%s job %lld queued: %d boards flashing (max_parallel %d)", r->kind,
         (long long)*job_id, st->running, st->cfg->max_parallel);
    st_event(st, "job.requested", s, s->mac, *job_id, d);
    return 0;
}

int station_cancel_job(struct station *st, int64_t id)
{
    for (struct job *j = st->jobs; j; j = j->next) {
        if (j->id == id) {
            slog(j->slot, LOG_LEVEL_NOTICE, "job %lld: cancel requested through the API",
                 (long long)id);
            job_cancel(j);
            return 0;
        }
    }
    struct station_req *rq = req_of_job(st, id);
    if (rq && !rq->started) {
        struct slot *s = rq->s;
        queue_remove(st, s);
        req_drop(st, rq, "cancelled through the API while queued");
        set_phase(st, s, BOARD_CANCELLED);
        return 1;
    }
    return -ENOENT;
}

int station_detach(struct station *st, struct slot *s)
{
    if (!s->present)
        return -ENODEV;
    struct port_event ev;
    devsrc_manual_event(PORT_REMOVED, s->uri, NULL, &ev);
    snprintf(ev.slot_key, sizeof(ev.slot_key), "%s", s->key);
    slog(s, LOG_LEVEL_NOTICE, "detached through the API");
    port_removed(st, &ev);
    /* Taken out of service on purpose: whatever cable/adapter comes back is tried at full
     * speed again (an unplug or a board change keeps the limit). */
    station_slot_reset_baud(st, s);
    return 0;
}

/* Loads the config with overlay ov (consumed on success: it becomes the station's). */
void station_set_ota(struct station *st, struct ota *o)
{
    st->ota = o;
}

struct ota *station_ota(const struct station *st)
{
    return st->ota;
}

void station_set_fd_budget(struct station *st, const struct fd_budget *b)
{
    st->budget = *b;
    st->api_idle_start = st->cfg->api.idle_timeout_s;
}

const struct fd_budget *station_fd_budget(const struct station *st)
{
    return &st->budget;
}

/* After a reload: the budget for the new config. The REST API keeps the cap and idle
 * timeout it was started with (libmicrohttpd takes them once); the OTA cap moves. */
static void budget_reload(struct station *st)
{
    struct fd_budget *b = &st->budget;
    if (b->limit <= 0)
        return; /* never set (unit tests) */
    struct fd_budget old = *b;
    fd_budget_compute(b, old.limit, st->cfg, old.api_max);
    if (st->cfg->api.max_connections != old.api_want ||
        st->cfg->api.idle_timeout_s != st->api_idle_start)
        log_msg(LOG_LEVEL_NOTICE,
                "api.max_connections and api.idle_timeout_s take effect at the next start "
                "(the REST API keeps %d connections, %d s)",
                b->api_max, st->api_idle_start);
    if (b->short_by > 0)
        log_msg(LOG_LEVEL_ERROR,
                "open files: the limit %ld is %ld short of what max_parallel %d needs beside "
                "the REST API's %d connections: jobs may fail with \"too many open files\"; "
                "raise LimitNOFILE (systemd) or lower max_parallel, then restart",
                b->limit, b->short_by, st->cfg->max_parallel, b->api_max);
    else if (b->ota_max != old.ota_max || b->jobs != old.jobs) {
        char line[400];
        fd_budget_describe(b, line, sizeof(line));
        log_msg(LOG_LEVEL_INFO, "%s", line);
    }
}

void station_board_online(struct station *st, const char *mac)
{
    for (size_t i = 0; i < st->slots.n; i++) {
        struct slot *s = st->slots.v[i];
        if (strcasecmp(s->mac, mac) == 0 && s->phase == BOARD_AWAITING_NETWORK && !s->job) {
            set_phase(st, s, BOARD_ONLINE);
            notify_slot(st, s, false);
        }
    }
}

void station_catalog_changed(struct station *st)
{
    ota_invalidate(st->ota);
    fw_cache_clear(st);
    check_profiles(st);
    line_fw_publish(st->lfw);
}
