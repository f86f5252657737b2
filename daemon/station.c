/*
 * station: see station.h. This file holds the station's life cycle (new, start, reload, stop,
 * free), the loop glue (worker messages), events and the small helpers the station_*.c files
 * share (station_priv.h), and the accessors of the web layer.
 *
 * The other parts: station_ports.c (ports and slots arriving and leaving), station_jobs.c
 * (starting jobs: the queue, job parameters, per-slot timers), station_plan.c (what an
 * identified board gets), station_results.c (an ended job: records, events, retries),
 * station_requests.c (jobs asked for through the REST API), station_firmware.c (the cache of
 * verified sets, the firmware import), station_profiles.c, station_serial.c and
 * station_records.c.
 *
 * Invariants:
 *  - Loop thread only. A job is in st->jobs from job_start() until its
 *    JOB_MSG_DONE is handled; slot->job points to it meanwhile.
 *  - Every job that got a records id is finished in the records exactly once,
 *    in st_finish_job(), whatever ended it (worker error, unplug, stop).
 *  - st->running == number of started jobs not yet finished <= max_parallel
 *    (a reload that lowers max_parallel lets the running ones finish).
 */
#include "station.h"
#include "station_priv.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>

#include "catalog.h"
#include "config.h"
#include "job.h"
#include "line_fw.h"
#include "log.h"
#include "loop.h"
#include "ota.h"
#include "records.h"
#include "slot.h"

#define DEFAULT_RETRY_BACKOFF_MS 2000
#define DEFAULT_MANUAL_POLL_MS 1000
#define DEFAULT_REENUM_GRACE_MS 3000

/* ---- small helpers ------------------------------------------------------------ */

static void st_resolve_name(struct station *st);

/* Copies src into dst[n], truncating (on a byte boundary; inputs here are ASCII). */
void st_scopy(char *dst, size_t n, const char *src)
{
    size_t k = strnlen(src, n - 1);
    memcpy(dst, src, k);
    dst[k] = '\0';
}

void st_rec_warn(const struct records_error *re)
{
    log_msg(LOG_LEVEL_WARN, "%s", re->message[0] ? re->message : "records: unknown error");
}

void st_notify_slot(struct station *st, const struct slot *s, bool progress)
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
        st_rec_warn(&re);
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
    st_notify_slot(st, s, false);
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

void st_slog(const struct slot *s, enum log_level lv, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vboard(lv, slot_name(s), s->mac, fmt, ap);
    va_end(ap);
}

void st_set_phase(struct station *st, struct slot *s, enum board_phase p)
{
    st_notify_slot(st, s, false);
    if (slot_set_phase(s, p) < 0) {
        /* A bug, not device input: say so loudly and move anyway. */
        st_slog(s, LOG_LEVEL_ERROR, "internal: phase %s -> %s is not allowed",
                board_phase_to_string(s->phase), board_phase_to_string(p));
        s->phase = p;
    }
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

int st_mkdir_p(const char *path)
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

const struct config_profile *st_active_profile(const struct station *st)
{
    return config_profile(st->cfg, NULL);
}

/* ---- worker messages ------------------------------------------------------------------ */

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
            st_rec_warn(&re);
        st_slog(s, m->level, "%s", m->text);
        break;
    case JOB_MSG_PHASE: {
        j->phase = m->phase;
        snprintf(j->stage, sizeof(j->stage), "%s", m->stage);
        if (j->removed || s->in_grace)
            break; /* the slot already shows the removal */
        if (board_phase_is_active(m->phase))
            st_set_phase(st, s, m->phase);
        snprintf(s->stage, sizeof(s->stage), "%s", m->stage);
        snprintf(s->notice, sizeof(s->notice), "%s", m->note);
        if (records_job_progress(st->rec, j->id, m->stage, -1, -1, &re) < 0)
            st_rec_warn(&re);
        struct json_object *d = st_jobj();
        st_jset_str(d, "phase", board_phase_to_string(m->phase));
        st_jset_str(d, "stage", m->stage);
        if (m->note[0])
            st_jset_str(d, "notice", m->note);
        st_event(st, "job.progress", s, j->mac, j->id, d);
        st_slog(s, LOG_LEVEL_DEBUG, "%s (%s)", board_phase_to_string(m->phase), m->stage);
        break;
    }
    case JOB_MSG_PROGRESS:
        s->done = m->done;
        s->total = m->total;
        s->kbps = m->kbps;
        if (!j->removed && !s->in_grace)
            st_notify_slot(st, s, true);
        if (records_job_progress(st->rec, j->id, NULL, (int64_t)m->done, (int64_t)m->wire, &re) < 0)
            st_rec_warn(&re);
        break;
    case JOB_MSG_IDENTIFIED:
        st_on_identified(st, j, m);
        break;
    case JOB_MSG_FLASH_INFO:
        st_on_flash_info(st, j, m);
        break;
    case JOB_MSG_CAPTURE:
        st_on_capture(st, j, m);
        break;
    case JOB_MSG_DONE:
        j->phase = m->phase;
        st_finish_job(st, j, &m->result);
        break;
    }
    job_msg_free(m);
}

static void destroy_message(void *ctx, void *msg)
{
    (void)ctx;
    job_msg_free(msg);
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
    rc = st_mkdir_p(st->data_dir);
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
    st_check_profiles(st);
    *out = st;
    return 0;
fail:
    station_free(st);
    return rc < 0 ? rc : -EINVAL;
}

int station_start(struct station *st)
{
    st->poll_timer = loop_timer_new(st->loop, st_poll_manual, st);
    if (!st->poll_timer)
        return -ENOMEM;
    int rc = loop_timer_arm(st->poll_timer, st->opt.manual_poll_ms, st->opt.manual_poll_ms);
    if (rc < 0 || (rc = st_records_watch(st)) < 0)
        return rc;
    if (!st->opt.no_udev)
        st_udev_start(st);
    for (size_t i = 0; i < st->cfg->n_ports; i++) {
        if (!st_manual_present(st->cfg->ports[i].uri))
            log_msg(LOG_LEVEL_INFO, "manual port %s is absent: polling for it",
                    st->cfg->ports[i].uri);
    }
    /* this station's sets described for the line, and fetched from it when missing */
    st->lfw = line_fw_new(st, st->loop);
    line_fw_publish(st->lfw);
    st_poll_manual(st); /* manual ports present at start */
    log_msg(LOG_LEVEL_NOTICE, "station running: %zu manual port(s), max_parallel %d, profile %s",
            st->cfg->n_ports, st->cfg->max_parallel,
            st_active_profile(st) ? st_active_profile(st)->name : "(none)");
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
    if (st->hooks.reload) /* the REST API's certificate (api.tls) */
        st->hooks.reload(st->hooks.ctx);
    log_msg(LOG_LEVEL_NOTICE, "configuration reloaded%s%s: profile %s, max_parallel %d",
            st->config_path ? " from " : "", st->config_path ? st->config_path : "",
            st_active_profile(st) ? st_active_profile(st)->name : "(none)", st->cfg->max_parallel);
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
    st_fw_cache_clear(st);
    ota_reload(st->ota); /* a changed ota.listen is re-bound (keeps the old one on failure) */
    st_check_profiles(st);
    st_poll_manual(st);
    st_start_queued(st);
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
        struct station_req *rq = st_req_pending(st, st->slots.v[k]);
        if (rq)
            st_req_drop(st, rq, "daemon stopping (while queued)");
    }
    for (size_t k = 0; k < st->slots.n; k++) {
        struct slot *s = st->slots.v[k];
        s->retry_pending = false;
        s->in_grace = false;
        if (s->timer)
            loop_timer_disarm(s->timer);
        if (!s->job && s->phase == BOARD_QUEUED)
            st_set_phase(st, s, BOARD_IDLE);
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
    st_fw_cache_clear(st);
    free(st->fw);
    free(st->queue);
    catalog_close(st->cat);
    if (st->rec) {
        records_close(st->rec);
        log_msg(LOG_LEVEL_INFO, "records closed");
    }
    while (st->reqs)
        st_req_free(st, st->reqs);
    json_object_put(st->overlay);
    config_free(st->cfg);
    free(st->config_path);
    free(st);
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

bool station_slot_busy(const struct station *st, const struct slot *s)
{
    return s->job || s->phase == BOARD_QUEUED || s->retry_pending || s->in_grace ||
           st_req_pending(st, s) != NULL;
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
            st_set_phase(st, s, BOARD_ONLINE);
            st_notify_slot(st, s, false);
        }
    }
}
