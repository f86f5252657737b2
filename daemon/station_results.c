/*
 * station_results: an ended job: how it is recorded (an unplug is "board removed during
 * <stage>"), the board's new state, the events, the slot's counters and learnt baud limit,
 * and whether the board is tried again. Split from station.c; shares struct station through
 * station_priv.h. Loop thread only.
 */
#include "station.h"
#include "station_priv.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <json-c/json.h>

#include "config.h"
#include "devsrc.h"
#include "job.h"
#include "log.h"
#include "loop.h"
#include "ota.h"
#include "records.h"
#include "slot.h"

/* ---- finishing a job -------------------------------------------------------------------- */

static void unlink_job(struct station *st, struct job *j)
{
    for (struct job **pp = &st->jobs; *pp; pp = &(*pp)->next) {
        if (*pp == j) {
            *pp = j->next;
            return;
        }
    }
}

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

void st_finish_job(struct station *st, struct job *j, struct job_result *r)
{
    struct slot *s = j->slot;
    s->notice[0] = '\0'; /* the job no longer waits for anybody */
    struct station_req *rq = st_req_of_job(st, j->id);
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

    const struct config_profile *prof = st_active_profile(st);
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
    res.skipped_bytes = r->skipped_bytes;
    res.kbps = r->kbps;
    res.retries = s->attempt;
    struct records_error re;
    if (records_job_finish(st->rec, j->id, &res, &re) < 0)
        st_rec_warn(&re);

    if (!flash && state == RECORDS_JOB_PASSED && strcmp(kind, "erase") == 0 && j->mac[0]) {
        struct records_board b;
        records_board_init(&b);
        snprintf(b.mac, sizeof(b.mac), "%s", j->mac);
        snprintf(b.online_state, sizeof(b.online_state), "%s", "erased");
        if (records_board_upsert(st->rec, &b, &re) < 0)
            st_rec_warn(&re);
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
            st_rec_warn(&re);
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
        st_slog(s, LOG_LEVEL_INFO, "online at %s (boot check)", j->boot_ip);
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
                st_slog(s, LOG_LEVEL_NOTICE,
                        "%u baud worked on slot %s: the slot's limit is now %u",
                        (unsigned)r->link_baud, slot_name(s), (unsigned)s->baud_limit);
            else
                st_slog(s, LOG_LEVEL_NOTICE,
                        "%u baud worked on slot %s: limit cleared, jobs run at the profile's rate",
                        (unsigned)r->link_baud, slot_name(s));
        }
        if (!flash) {
            st_slog(s, LOG_LEVEL_NOTICE, "passed: %s job %lld in %.1f s", kind, (long long)j->id,
                    secs);
            st_set_phase(st, s, BOARD_IDLE);
            break;
        }
        st_slog(s, LOG_LEVEL_NOTICE, "passed: %s written, %lld bytes in %.1f s (%.0f kbit/s)",
                r->firmware, (long long)r->bytes, secs, r->kbps > 0 ? r->kbps : 0.0);
        st_set_phase(st, s, BOARD_AWAITING_NETWORK);
        if (checked_in || boot_online)
            st_set_phase(st, s, BOARD_ONLINE);
        break;
    case RECORDS_JOB_SKIPPED:
        slot_count_result(s, false, true, st->opt.flag_after);
        st_slog(s, LOG_LEVEL_NOTICE, "skipped: %s", msg);
        st_set_phase(st, s, BOARD_SKIPPED);
        break;
    case RECORDS_JOB_CANCELLED:
        st_slog(s, LOG_LEVEL_NOTICE, "cancelled: %s", msg);
        st_set_phase(st, s, BOARD_CANCELLED);
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
            st_slog(s, LOG_LEVEL_WARN,
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
            st_slog(s, LOG_LEVEL_WARN,
                    "link errors at %u baud on slot %s: %s at %u; the slot keeps this limit "
                    "-- check the cable/adapter",
                    (unsigned)r->link_baud, slot_name(s), rq ? "limited" : "retrying",
                    (unsigned)lower);
        }
        /* A job asked for through the API is not retried: the caller decides. */
        bool baud_retry = lower && !rq;
        /* A failure before anything is written (the set or its per-board data does not fit
         * this board, or its flash chip does not answer: a board fault, esp_start.c
         * flash_not_answering) fails the same way again: not retried. */
        bool again = !(e->code && (e->stage == ESP_STAGE_PREPARE || e->code == -ENOMEDIUM));
        bool retry = !rq && !removed && !st->stopping && s->present &&
                     (baud_retry || (again && s->attempt < retries));
        if (removed) {
            slot_count_result(s, true, false, st->opt.flag_after);
            st_slog(s, LOG_LEVEL_WARN, "failed: %s", msg);
        } else if (baud_retry) {
            /* Not the board's fault nor a new failure of the slot: the limit is the finding. */
            slot_count_result(s, true, false, st->opt.flag_after);
            st_slog(s, LOG_LEVEL_ERROR, "failed during %s at %u baud: %s%s; retrying at once at %u",
                    err_stage ? err_stage : "?", (unsigned)r->link_baud, msg, dev, (unsigned)lower);
        } else {
            bool flagged = slot_count_result(s, true, true, st->opt.flag_after);
            if (retry)
                st_slog(s, LOG_LEVEL_ERROR, "failed during %s: %s%s; retrying in %d ms (%d of %d)",
                        err_stage ? err_stage : "?", msg, dev, st->opt.retry_backoff_ms,
                        s->attempt + 1, retries);
            else
                st_slog(s, LOG_LEVEL_ERROR, "failed during %s: %s%s%s%s",
                        err_stage ? err_stage : "?", msg, dev, advice[0] ? " -- " : "", advice);
            if (flagged) {
                struct json_object *fd = st_jobj();
                st_jset_int(fd, "failures", s->failures);
                st_event(st, "slot.flagged", s, j->mac, j->id, fd);
                st_slog(
                    s, LOG_LEVEL_WARN,
                    "slot flagged: %d failed jobs in a row; check the cable, socket and adapter",
                    s->failures);
            }
        }
        st_set_phase(st, s, BOARD_FAILED);
        if (retry) {
            if (baud_retry)
                s->baud_retry = true;
            else
                s->attempt++;
            s->retry_pending = true;
            st_set_phase(st, s, BOARD_QUEUED);
            if (st_slot_timer_arm(st, s, baud_retry ? 1 : st->opt.retry_backoff_ms) < 0) {
                s->retry_pending = false;
                st_set_phase(st, s, BOARD_FAILED);
            }
        }
        break;
    }
    }
    if (removed && s->present && s->manual && st_manual_path(s->key + 4)) {
        /* The worker saw the port vanish before the presence poll did. For a pty path
         * that is an unplug: record it now and remember the identity the path had, so
         * a stale symlink whose /dev/pts number another program reuses stays absent. */
        struct port_event ev;
        devsrc_manual_event(PORT_REMOVED, s->key + 4, NULL, &ev);
        st_port_removed(st, &ev);
    }
    if (removed || !s->present) {
        s->in_grace = false;
        if (s->timer && !s->retry_pending)
            loop_timer_disarm(s->timer);
        st_set_phase(st, s, BOARD_EMPTY);
    }
    st_req_free(st, rq);
    job_free(j);
    st_notify_slot(st, s, false);
    st_start_queued(st);
    if (st->stopping && st->running == 0 && !st->stopped) {
        st->stopped = true;
        loop_stop(st->loop);
    }
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
    st_slog(s, LOG_LEVEL_NOTICE, "baud limit %u cleared: jobs run at the profile's baud again",
            (unsigned)was);
    return was;
}
