/*
 * station_jobs: starting jobs: the queue of boards waiting for a free place under
 * max_parallel, the job parameters from the active profile (and the slot's learnt baud
 * limit), and the per-slot timers (retry backoff, USB re-enumeration grace). Split from
 * station.c; shares struct station through station_priv.h. Loop thread only.
 */
#include "station.h"
#include "station_priv.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "catalog.h"
#include "config.h"
#include "job.h"
#include "log.h"
#include "loop.h"
#include "records.h"
#include "slot.h"

/* ---- jobs ---------------------------------------------------------------------------- */

void st_queue_remove(struct station *st, struct slot *s)
{
    size_t k = 0;
    for (size_t i = 0; i < st->nq; i++)
        if (st->queue[i] != s)
            st->queue[k++] = st->queue[i];
    st->nq = k;
}

int st_queue_push(struct station *st, struct slot *s)
{
    st_queue_remove(st, s);
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
    st_scopy(p->stub_dir, sizeof(p->stub_dir), st->stub_dir);
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
    p->stub_fixed = prof->stub_set;
    p->after_fixed = prof->after_set;
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

/*
 * esptool_args.before of the sets a flash job may write (the request's set, else the active
 * profile's, one per chip family): the reset into the loader happens before the chip is
 * known, so a set's "no-reset" (or "usb-reset") is followed only when every candidate asks
 * for the same; otherwise the station resets as usual and says so.
 */
static void choose_before(struct station *st, const struct slot *s, const struct station_req *rq,
                          struct job_params *p)
{
    p->before = ESP_BEFORE_DEFAULT_RESET;
    if (p->kind[0] && strcmp(p->kind, "flash") != 0)
        return;
    struct config_firmware_ref one = {0};
    const struct config_firmware_ref *refs = NULL;
    size_t n = 0;
    if (rq && rq->fw_name[0]) {
        one.name = (char *)rq->fw_name;
        one.version = (char *)rq->fw_version;
        refs = &one;
        n = 1;
    } else {
        const struct config_profile *prof = config_profile(st->cfg, NULL);
        if (prof) {
            refs = prof->firmware;
            n = prof->n_firmware;
        }
    }
    bool first = true, same = true;
    enum esp_before b = ESP_BEFORE_DEFAULT_RESET;
    char names[sizeof(p->before_set)] = "";
    size_t used = 0;
    for (size_t i = 0; i < n; i++) {
        struct catalog_esptool_args ea;
        if (catalog_get_esptool_args(st->cat, refs[i].name, refs[i].version, &ea) < 0)
            memset(&ea, 0, sizeof(ea)); /* not here (yet): the station's default */
        enum esp_before x = ea.has_before ? ea.before : ESP_BEFORE_DEFAULT_RESET;
        if (x != ESP_BEFORE_DEFAULT_RESET && used < sizeof(names))
            used += (size_t)snprintf(names + used, sizeof(names) - used, "%s%s@%s",
                                     used ? ", " : "", refs[i].name, refs[i].version);
        if (!first && x != b)
            same = false;
        b = x;
        first = false;
    }
    if (!names[0])
        return;
    if (same) {
        p->before = b;
        st_scopy(p->before_set, sizeof(p->before_set), names);
    } else {
        st_slog(s, LOG_LEVEL_WARN,
                "esptool_args.before of %s is not shared by every set of the profile: the chip "
                "is not known before connecting, so the board is reset into its loader as usual",
                names);
    }
}

void st_start_job(struct station *st, struct slot *s)
{
    struct records_error re;
    struct station_req *rq = st_req_pending(st, s);
    struct records_job_new jn = {
        .kind = rq ? rq->kind : "flash",
        .slot = slot_name(s),
        .stage = "open",
    };
    int64_t id = rq ? rq->job_id : 0;
    if (id) {
        /* Queued by the API: the records job exists and becomes 'running'. */
        if (records_job_progress(st->rec, id, "open", -1, -1, &re) < 0)
            st_rec_warn(&re);
    } else if (records_job_begin(st->rec, &jn, &id, &re) < 0) {
        /* Without a record the job would be invisible: refuse it and say why. */
        st_slog(s, LOG_LEVEL_ERROR, "cannot start a job: %s", re.message);
        st_req_free(st, rq);
        st_set_phase(st, s, BOARD_IDLE);
        return;
    }
    struct job_params p;
    fill_params(st, s, &p);
    if (rq) {
        rq->job_id = id;
        st_apply_req(rq, &p);
    }
    choose_before(st, s, rq, &p);
    /* The slot's learnt link limit (back-off after link errors) caps every job on it, but
     * after baud_probe_after clean jobs one job tries a step up (not jobs asked for
     * through the API: a failed probe would fail the caller's job). */
    const struct config_profile *prof = config_profile(st->cfg, NULL);
    int probe_after = rq || !prof ? 0 : prof->baud_probe_after;
    s->link_ceiling = p.baud;
    p.baud = slot_link_job_baud(s, s->link_ceiling, probe_after);
    bool capped = p.baud < s->link_ceiling && !s->probe_baud;
    if (s->probe_baud)
        st_slog(s, LOG_LEVEL_NOTICE,
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
        st_slog(s, LOG_LEVEL_ERROR, "%s", msg);
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
        st_req_free(st, rq);
        st_set_phase(st, s, BOARD_IDLE);
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
    st_set_phase(st, s, BOARD_CONNECTING);
    snprintf(s->stage, sizeof(s->stage), "open");
    s->notice[0] = '\0';
    struct json_object *d = st_jobj();
    st_jset_str(d, "uri", s->uri);
    st_jset_int(d, "attempt", s->attempt + 1);
    st_jset_str(d, "kind", p.kind[0] ? p.kind : "flash");
    st_event(st, "job.started", s, NULL, id, d);
    st_slog(s, LOG_LEVEL_INFO, "job %lld started on %s%s%s", (long long)id, s->uri,
            s->attempt || s->baud_retry ? " (retry)" : "",
            capped ? " (baud limited by the slot)" : "");
    s->baud_retry = false;
}

/* Starts a job for the board on s now, or queues it. */
void st_schedule(struct station *st, struct slot *s)
{
    if (st->stopping) {
        st_set_phase(st, s, BOARD_IDLE);
        return;
    }
    if (st->running < st->cfg->max_parallel && st->nq == 0) {
        st_start_job(st, s);
        return;
    }
    st_set_phase(st, s, BOARD_QUEUED);
    if (st_queue_push(st, s) < 0)
        st_slog(s, LOG_LEVEL_ERROR, "out of memory: board not queued");
    else
        st_slog(s, LOG_LEVEL_INFO, "queued: %d boards flashing (max_parallel %d)", st->running,
                st->cfg->max_parallel);
}

void st_start_queued(struct station *st)
{
    while (!st->stopping && st->nq > 0 && st->running < st->cfg->max_parallel) {
        struct slot *s = st->queue[0];
        memmove(st->queue, st->queue + 1, (st->nq - 1) * sizeof(*st->queue));
        st->nq--;
        if (s->present && !s->job && s->phase == BOARD_QUEUED)
            st_start_job(st, s);
    }
}

/* ---- timers per slot (retry backoff, re-enumeration grace) --------------------------- */

struct slot_timer_ctx {
    struct station *st;
    struct slot *s;
};

static void slot_timer_fire(void *ctx);

int st_slot_timer_arm(struct station *st, struct slot *s, int ms)
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
            st_slog(s, LOG_LEVEL_INFO, "port did not come back within %d ms",
                    st->opt.reenum_grace_ms);
            s->job->removed = true;
            job_cancel(s->job);
        }
        return;
    }
    if (s->retry_pending) {
        s->retry_pending = false;
        if (s->present && !s->job && !st->stopping)
            st_schedule(st, s);
    }
}
