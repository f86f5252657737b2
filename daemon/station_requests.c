/*
 * station_requests: jobs asked for through the REST API (flash, erase, info, reset on one
 * slot): started at once or queued with a 'queued' records job, cancelled, and dropped when
 * their board leaves or the daemon stops before they ran. Split from station.c; shares
 * struct station through station_priv.h. Loop thread only.
 */
#include "station.h"
#include "station_priv.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "job.h"
#include "log.h"
#include "records.h"
#include "slot.h"

/* ---- REST API job requests ------------------------------------------------------------ */

/* The request waiting for (not yet running on) slot s, NULL if none. */
struct station_req *st_req_pending(const struct station *st, const struct slot *s)
{
    for (struct station_req *r = st->reqs; r; r = r->next)
        if (r->s == s && !r->started)
            return r;
    return NULL;
}

struct station_req *st_req_of_job(const struct station *st, int64_t id)
{
    for (struct station_req *r = st->reqs; r && id; r = r->next)
        if (r->job_id == id)
            return r;
    return NULL;
}

void st_req_free(struct station *st, struct station_req *rq)
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
void st_req_drop(struct station *st, struct station_req *rq, const char *why)
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
            st_rec_warn(&re);
        struct json_object *d = st_jobj();
        st_jset_str(d, "state", "cancelled");
        st_jset_str(d, "kind", rq->kind);
        st_jset_str(d, "stage", "queued");
        st_jset_str(d, "message", why);
        st_event(st, "job.finished", rq->s, NULL, rq->job_id, d);
    }
    st_req_free(st, rq);
}

void st_apply_req(const struct station_req *rq, struct job_params *p)
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
    if (p->erase_all) { /* the stub erases the chip, whatever the set asks for */
        p->stub = true;
        p->stub_fixed = true;
    }
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
        st_scopy(rq->fw_name, sizeof(rq->fw_name), r->firmware_name);
        st_scopy(rq->fw_version, sizeof(rq->fw_version), r->firmware_version);
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
        st_start_job(st, s);
        if (!s->job || rq != st_req_of_job(st, s->job_id)) {
            /* st_start_job logged why and freed the request. */
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
        st_req_free(st, rq);
        json_object_put(d);
        return -EIO;
    }
    *job_id = rq->job_id;
    s->job_id = rq->job_id;
    st_set_phase(st, s, BOARD_QUEUED);
    if (st_queue_push(st, s) < 0) {
        st_req_drop(st, rq, "out of memory");
        json_object_put(d);
        return -ENOMEM;
    }
    st_slog(s, LOG_LEVEL_INFO, "%s job %lld queued: %d boards flashing (max_parallel %d)", r->kind,
            (long long)*job_id, st->running, st->cfg->max_parallel);
    st_event(st, "job.requested", s, s->mac, *job_id, d);
    return 0;
}

int station_cancel_job(struct station *st, int64_t id)
{
    for (struct job *j = st->jobs; j; j = j->next) {
        if (j->id == id) {
            st_slog(j->slot, LOG_LEVEL_NOTICE, "job %lld: cancel requested through the API",
                    (long long)id);
            job_cancel(j);
            return 0;
        }
    }
    struct station_req *rq = st_req_of_job(st, id);
    if (rq && !rq->started) {
        struct slot *s = rq->s;
        st_queue_remove(st, s);
        st_req_drop(st, rq, "cancelled through the API while queued");
        st_set_phase(st, s, BOARD_CANCELLED);
        return 1;
    }
    return -ENOENT;
}
