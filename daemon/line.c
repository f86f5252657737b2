/*
 * line: see line.h. The heartbeat timer and the gone-station check.
 */
#include "line.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "config.h"
#include "log.h"
#include "loop.h"
#include "records.h"
#include "records_line.h"
#include "slot.h"
#include "station.h"

#define GONE_PER_TICK 8

struct line {
    struct station *st;
    struct loop_timer *timer;
    char address[RECORDS_ADDRESS_LEN];
    char version[RECORDS_NAME_LEN];
    int64_t started_at;
    bool failing; /* the last heartbeat failed (logged once until it works again) */
};

void line_default_address(const char *listen_host, uint16_t port, int tls, char *buf, size_t len)
{
    char host[256] = "";
    const char *h = listen_host && *listen_host ? listen_host : "127.0.0.1";
    if (!strcmp(h, "0.0.0.0") || !strcmp(h, "::") || !strcmp(h, "*")) {
        if (gethostname(host, sizeof(host) - 1) < 0 || !host[0])
            snprintf(host, sizeof(host), "localhost");
        h = host;
    }
    if (strchr(h, ':')) /* an IPv6 literal */
        snprintf(buf, len, "%s://[%s]:%u", tls ? "https" : "http", h, (unsigned)port);
    else
        snprintf(buf, len, "%s://%s:%u", tls ? "https" : "http", h, (unsigned)port);
}

const char *line_address(const struct line *l)
{
    return l ? l->address : "";
}

static int64_t local_midnight_ms(int64_t now_ms)
{
    time_t t = (time_t)(now_ms / 1000);
    struct tm tm;
    localtime_r(&t, &tm);
    tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
    tm.tm_isdst = -1;
    return (int64_t)mktime(&tm) * 1000;
}

static void jadd(struct json_object *o, const char *k, struct json_object *v)
{
    json_object_object_add(o, k, v);
}

static struct json_object *jms(double ms)
{
    char buf[32];
    snprintf(buf, sizeof(buf), "%.3f", ms);
    return json_object_new_double_s(ms, buf);
}

static struct json_object *slot_json(struct station *st, const struct slot *s)
{
    struct json_object *o = json_object_new_object();
    jadd(o, "slot", json_object_new_string(slot_name(s)));
    jadd(o, "state",
         json_object_new_string(
             s->present || s->phase != BOARD_EMPTY ? board_phase_to_string(s->phase) : "empty"));
    jadd(o, "present", json_object_new_boolean(s->present));
    if (s->mac[0])
        jadd(o, "mac", json_object_new_string(s->mac));
    if (s->chip[0])
        jadd(o, "chip", json_object_new_string(s->chip));
    if (s->job_id > 0)
        jadd(o, "job", json_object_new_int64(s->job_id));
    if (s->job_kind[0])
        jadd(o, "kind", json_object_new_string(s->job_kind));
    if (board_phase_is_active(s->phase)) {
        if (s->stage[0])
            jadd(o, "stage", json_object_new_string(s->stage));
        jadd(o, "done", json_object_new_int64((int64_t)s->done));
        jadd(o, "total", json_object_new_int64((int64_t)s->total));
        if (s->total)
            jadd(o, "progress", json_object_new_int((int)(s->done * 100 / s->total)));
    }
    if (s->phase == BOARD_FAILED && s->error[0])
        jadd(o, "error", json_object_new_string(s->error));
    if (s->flagged)
        jadd(o, "flagged", json_object_new_boolean(true));
    (void)st;
    return o;
}

/* The status object of this station's row. */
static char *status_text(struct line *l, struct records *r)
{
    struct station *st = l->st;
    struct json_object *o = json_object_new_object(), *slots = json_object_new_array();
    const struct slot_table *t = station_slots(st);
    for (size_t i = 0; i < t->n; i++)
        json_object_array_add(slots, slot_json(st, t->v[i]));
    jadd(o, "slots", slots);

    int64_t since = local_midnight_ms(records_now_ms(r));
    int64_t n[RECORDS_JOB_STATE_COUNT];
    struct records_error re;
    struct json_object *c = json_object_new_object();
    jadd(c, "since", json_object_new_int64(since));
    if (records_station_job_counts(r, NULL, since, n, &re) == 0) {
        int64_t total = 0;
        for (int i = 0; i < RECORDS_JOB_STATE_COUNT; i++) {
            jadd(c, records_job_state_to_string((enum records_job_state)i),
                 json_object_new_int64(n[i]));
            total += n[i];
        }
        jadd(c, "total", json_object_new_int64(total));
    }
    jadd(o, "counters", c);
    jadd(o, "running", json_object_new_int(station_running(st)));
    jadd(o, "max_parallel", json_object_new_int(station_config(st)->max_parallel));
    jadd(o, "backend", json_object_new_string(records_backend_to_string(records_backend(r))));

    struct records_db_stats ds;
    records_db_stats_get(r, &ds);
    struct json_object *d = json_object_new_object();
    jadd(d, "round_trips", json_object_new_int64((int64_t)ds.round_trips));
    jadd(d, "ops", json_object_new_int64((int64_t)ds.ops));
    jadd(d, "total_ms", jms(ds.total_ms));
    jadd(d, "p50_ms", jms(ds.p50_ms));
    jadd(d, "p99_ms", jms(ds.p99_ms));
    jadd(d, "max_ms", jms(ds.max_ms));
    jadd(d, "window", json_object_new_int64((int64_t)ds.window));
    jadd(o, "db", d);

    char *text = strdup(
        json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(o);
    return text;
}

static void heartbeat(struct line *l)
{
    struct records *r = station_records(l->st);
    struct records_error re;
    char *status = status_text(l, r);
    int rc = records_station_heartbeat(r, l->address, l->version, l->started_at, status, &re);
    free(status);
    if (rc < 0) {
        if (!l->failing)
            log_msg(LOG_LEVEL_WARN, "line: cannot write this station's heartbeat: %s", re.message);
        l->failing = true;
        return; /* not seen by the line: no business judging the others either */
    }
    if (l->failing)
        log_msg(LOG_LEVEL_NOTICE, "line: heartbeat written again");
    l->failing = false;

    /* Stations gone quiet: their unfinished jobs are interrupted, once, by whoever
     * sees it first. */
    const struct config *cfg = station_config(l->st);
    int64_t gone_ms = (int64_t)cfg->line.gone_after_s * 1000;
    int64_t before = records_now_ms(r) - gone_ms;
    char names[GONE_PER_TICK][RECORDS_STATION_LEN];
    int n = records_station_gone_candidates(r, before, names, GONE_PER_TICK, &re);
    if (n < 0) {
        log_msg(LOG_LEVEL_WARN, "line: %s", re.message);
        return;
    }
    for (int i = 0; i < n; i++) {
        char reason[128];
        int jobs = 0;
        bool marked = false;
        snprintf(reason, sizeof(reason), "no heartbeat for more than %d s (line.gone_after_s)",
                 cfg->line.gone_after_s);
        if (records_jobs_interrupt_station(r, names[i], before, reason, &jobs, &marked, &re) < 0) {
            log_msg(LOG_LEVEL_WARN, "line: %s", re.message);
            continue;
        }
        if (marked)
            log_msg(LOG_LEVEL_WARN,
                    "line: station %s is gone (%s); %d unfinished job(s) of it marked "
                    "interrupted",
                    names[i], reason, jobs);
    }
}

static void tick(void *ctx)
{
    heartbeat(ctx);
}

int line_new(struct station *st, struct loop *loop, const char *version, uint16_t api_port,
             struct line **out, char *err, size_t errlen)
{
    const struct config *cfg = station_config(st);
    struct records *r = station_records(st);
    struct line *l = calloc(1, sizeof(*l));
    *out = NULL;
    if (!l) {
        snprintf(err, errlen, "line: out of memory");
        return -ENOMEM;
    }
    l->st = st;
    snprintf(l->version, sizeof(l->version), "%s", version ? version : "");
    if (cfg->line.address)
        snprintf(l->address, sizeof(l->address), "%s", cfg->line.address);
    else
        line_default_address(cfg->listen_host, api_port, cfg->api.tls.cert != NULL, l->address,
                             sizeof(l->address));
    l->started_at = records_now_ms(r);
    records_db_stats_enable(r);
    l->timer = loop_timer_new(loop, tick, l);
    if (!l->timer) {
        free(l);
        snprintf(err, errlen, "line: cannot create the heartbeat timer");
        return -ENOMEM;
    }
    int64_t ms = (int64_t)cfg->line.heartbeat_s * 1000;
    int rc = loop_timer_arm(l->timer, ms, ms);
    if (rc < 0) {
        loop_timer_free(l->timer);
        free(l);
        snprintf(err, errlen, "line: cannot arm the heartbeat timer: %s", strerror(-rc));
        return rc;
    }
    heartbeat(l);
    log_msg(LOG_LEVEL_INFO, "line: station %s at %s, heartbeat every %d s, gone after %d s",
            station_name(st), l->address, cfg->line.heartbeat_s, cfg->line.gone_after_s);
    *out = l;
    return 0;
}

void line_free(struct line *l)
{
    if (!l)
        return;
    loop_timer_free(l->timer);
    free(l);
}
