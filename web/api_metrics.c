/*
 * api_metrics: GET /api/v1/counters (today's and all-time job counts per kind and slot)
 * and GET /metrics (Prometheus text, checked by promtool in the tests), and the OTA
 * counters kept from journal events (api_note_event). Split from api.c; shares struct
 * api through api_priv.h. Loop thread only.
 */
#include "api.h"
#include "api_priv.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <json-c/json.h>

#include "board_addr.h"
#include "bundle.h"
#include "catalog.h"
#include "config.h"
#include "esp_chip.h"
#include "job.h"
#include "ota.h"
#include "pool.h"
#include "records.h"
#include "slot.h"
#include "station.h"
#include "transport.h"

/* ---- counters and metrics ---------------------------------------------------------------- */

static int64_t local_midnight_ms(int64_t now_ms)
{
    time_t t = (time_t)(now_ms / 1000);
    struct tm tm;
    localtime_r(&t, &tm);
    tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
    tm.tm_isdst = -1;
    return (int64_t)mktime(&tm) * 1000;
}

static int slot_stat_cb(const char *slot, double mean, int64_t jobs, void *ctx)
{
    struct json_object *e = json_object_new_object();
    api_jadd(e, "slot", json_object_new_string(slot));
    api_jadd(e, "mean_seconds", api_jdouble(mean, 2));
    api_jadd(e, "jobs", json_object_new_int64(jobs));
    json_object_array_add(ctx, e);
    return 0;
}

static int count_job_cb(const struct records_job *j, void *ctx)
{
    (void)j;
    (*(int64_t *)ctx)++;
    return 0;
}

void api_get_counters(struct api *a, bool line, struct api_response *resp)
{
    struct records *r = station_records(a->st);
    int64_t since = local_midnight_ms(records_now_ms(r));
    struct records_counters c;
    struct records_error re;
    /* On a line's shared database a station counts its own jobs unless asked for
     * the line's; its SQLite file holds only its own. */
    bool shared = records_backend(r) == RECORDS_BACKEND_POSTGRESQL;
    if ((line ? records_counters_line(r, since, &c, &re) : records_counters(r, since, &c, &re)) <
        0) {
        api_records_fail(resp, &re);
        return;
    }
    struct json_object *mean = json_object_new_array();
    if (records_slot_flash_seconds(r, since, slot_stat_cb, mean, &re) < 0) {
        json_object_put(mean);
        api_records_fail(resp, &re);
        return;
    }
    /* Flash jobs only (the store's counters count every kind). */
    int64_t flashed = 0;
    struct records_job_filter jf;
    records_job_filter_init(&jf);
    jf.kind = "flash";
    jf.state = RECORDS_JOB_PASSED;
    jf.since = since;
    jf.station = shared && !line ? station_name(a->st) : NULL;
    if (records_job_list(r, &jf, count_job_cb, &flashed, &re) < 0) {
        json_object_put(mean);
        api_records_fail(resp, &re);
        return;
    }
    struct json_object *o = json_object_new_object();
    api_jadd(o, "since", api_jtime(since));
    api_jadd(o, "station", json_object_new_string(station_name(a->st)));
    api_jadd(o, "scope", json_object_new_string(line ? "line" : "station"));
    api_jadd(o, "flashed_today", json_object_new_int64(flashed));
    api_jadd(o, "passed", json_object_new_int64(c.passed));
    api_jadd(o, "failed", json_object_new_int64(c.failed));
    struct json_object *bs = json_object_new_object();
    for (int i = 0; i < RECORDS_JOB_STATE_COUNT; i++)
        api_jadd(bs, records_job_state_to_string((enum records_job_state)i),
                 json_object_new_int64(c.by_state[i]));
    api_jadd(o, "by_state", bs);
    api_jadd(o, "boards_last_hour", json_object_new_int64(c.boards_last_hour));
    api_jadd(o, "boards_per_hour", json_object_new_int64(c.boards_last_hour));
    api_jadd(o, "mean_flash_seconds", mean);
    const struct slot_table *t = station_slots(a->st);
    int present = 0, busy = 0, failed = 0;
    for (size_t i = 0; i < t->n; i++) {
        present += t->v[i]->present;
        busy += station_slot_busy(a->st, t->v[i]);
        failed += t->v[i]->phase == BOARD_FAILED;
    }
    struct json_object *so = json_object_new_object();
    api_jadd(so, "total", json_object_new_int64((int64_t)t->n));
    api_jadd(so, "present", json_object_new_int(present));
    api_jadd(so, "busy", json_object_new_int(busy));
    api_jadd(so, "failed", json_object_new_int(failed));
    api_jadd(o, "slots", so);
    api_json(resp, 200, o);
}

static const double duration_bounds[API_DURATION_BUCKETS] = {1, 2, 5, 10, 20, 30, 60, 120, 300};

static void count_job(struct api *a, const char *kind, const char *result)
{
    struct api_job_count *jc = NULL;
    for (size_t i = 0; i < a->m.n_jobs && !jc; i++)
        if (strcmp(a->m.jobs[i].kind, kind) == 0 && strcmp(a->m.jobs[i].result, result) == 0)
            jc = &a->m.jobs[i];
    if (!jc && a->m.n_jobs < sizeof(a->m.jobs) / sizeof(a->m.jobs[0])) {
        jc = &a->m.jobs[a->m.n_jobs++];
        snprintf(jc->kind, sizeof(jc->kind), "%s", kind);
        snprintf(jc->result, sizeof(jc->result), "%s", result);
    }
    if (jc)
        jc->n++;
}

static void count_ota(struct api *a, const char *name, const char *l1, const char *l2)
{
    struct ota_metric *c = NULL;
    for (size_t i = 0; i < a->n_ota_m && !c; i++)
        if (strcmp(a->ota_m[i].name, name) == 0 && strcmp(a->ota_m[i].l1, l1) == 0 &&
            strcmp(a->ota_m[i].l2, l2) == 0)
            c = &a->ota_m[i];
    if (!c && a->n_ota_m < sizeof(a->ota_m) / sizeof(a->ota_m[0])) {
        c = &a->ota_m[a->n_ota_m++];
        snprintf(c->name, sizeof(c->name), "%s", name);
        snprintf(c->l1, sizeof(c->l1), "%s", l1);
        snprintf(c->l2, sizeof(c->l2), "%s", l2);
    }
    if (c)
        c->n++;
}

/* A string member of d (a label value: letters, digits, '-', '_', '.' only), else def. */
static const char *label_of(struct json_object *d, const char *key, const char *def)
{
    struct json_object *v;
    const char *s = json_object_object_get_ex(d, key, &v) ? json_object_get_string(v) : NULL;
    if (!s || !s[0])
        return def;
    for (const char *p = s; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_' && *p != '.')
            return def;
    return s;
}

static uint64_t bytes_of(struct json_object *d)
{
    struct json_object *v;
    int64_t n = json_object_object_get_ex(d, "bytes", &v) ? json_object_get_int64(v) : 0;
    return n > 0 ? (uint64_t)n : 0;
}

void api_note_event(struct api *a, const struct records_event *e)
{
    if (e->id > a->m.last_event_id)
        a->m.last_event_id = e->id;
    bool job = strcmp(e->kind, "job.finished") == 0, served = strcmp(e->kind, "ota.served") == 0,
         pushed = strcmp(e->kind, "ota.push.finished") == 0,
         bulk = strcmp(e->kind, "bulk.board") == 0;
    if (!(job || served || pushed || bulk) || !e->data[0])
        return;
    struct json_object *d = json_tokener_parse(e->data), *v;
    if (!d)
        return;
    if (served) { /* a complete pull (an incomplete one: ota_counters) */
        bool fs = strcmp(label_of(d, "image", "app"), "filesystem") == 0;
        if (e->job_id > 0) /* a plain GET from an unknown address has no job */
            count_job(a, fs ? "ota-pull-fs" : "ota-pull", "passed");
        count_ota(a, "pulls", fs ? "filesystem" : "app", "passed");
        a->ota_served_bytes += bytes_of(d);
    } else if (pushed) {
        bool fs = strcmp(label_of(d, "image", "app"), "filesystem") == 0;
        const char *result = label_of(d, "state", "unknown");
        count_job(a, fs ? "ota-push-fs" : "ota-push", result);
        count_ota(a, "pushes", label_of(d, "method", "unknown"), result);
        a->ota_pushed_bytes += bytes_of(d);
    } else if (bulk) {
        count_ota(a, "bulk", label_of(d, "state", "unknown"), "");
    }
    if (!job) {
        json_object_put(d);
        return;
    }
    const char *kind = label_of(d, "kind", "flash"), *result = label_of(d, "state", "unknown");
    count_job(a, kind, result);
    if (strcmp(kind, "flash") == 0 && strcmp(result, "passed") == 0) {
        if (json_object_object_get_ex(d, "bytes", &v))
            a->m.flash_bytes += (uint64_t)json_object_get_int64(v);
        if (json_object_object_get_ex(d, "seconds", &v)) {
            double sec = json_object_get_double(v);
            size_t b = 0;
            while (b < API_DURATION_BUCKETS && sec > duration_bounds[b])
                b++;
            a->m.duration_buckets[b]++;
            a->m.duration_sum += sec;
            a->m.duration_count++;
        }
    }
    json_object_put(d);
}

static int count_board_cb(const struct records_board *b, void *ctx)
{
    (void)b;
    (*(int64_t *)ctx)++;
    return 0;
}

void api_set_tls_expiry(struct api *a, int64_t not_after_s, const char *subject)
{
    if (!a)
        return;
    a->api_tls_not_after = not_after_s;
    snprintf(a->api_tls_subject, sizeof(a->api_tls_subject), "%s", subject ? subject : "");
}

/* The not-after of each HTTPS server's certificate (the one new connections get), so an
 * alert can fire before it expires: espstation_tls_cert_expiry_seconds - time() < 14 days.
 * Nothing for a server that speaks plain HTTP. */
static void write_tls_metrics(const struct api *a, FILE *f)
{
    int64_t api = a->api_tls_not_after, ota = ota_tls_expiry(station_ota(a->st));
    if (!api && !ota)
        return;
    fprintf(f, "# HELP espstation_tls_cert_expiry_seconds Not-after of the certificate each "
               "HTTPS server presents to new connections (Unix time; reloaded on SIGHUP).\n"
               "# TYPE espstation_tls_cert_expiry_seconds gauge\n");
    if (api)
        fprintf(f, "espstation_tls_cert_expiry_seconds{server=\"api\"} %lld\n", (long long)api);
    if (ota)
        fprintf(f, "espstation_tls_cert_expiry_seconds{server=\"ota\"} %lld\n", (long long)ota);
}

static void write_ota_metrics(const struct api *a, FILE *f, const struct ota_counters *oc,
                              const char *const images[2])
{
    fprintf(f, "# HELP espstation_ota_checkins_total Requests to the OTA update endpoint, by "
               "the HTTP status answered.\n"
               "# TYPE espstation_ota_checkins_total counter\n");
    for (size_t i = 0; oc && i < OTA_CHECKIN_STATUSES && oc->checkins[i].status; i++)
        fprintf(f, "espstation_ota_checkins_total{answer=\"%d\"} %llu\n", oc->checkins[i].status,
                (unsigned long long)oc->checkins[i].n);
    fprintf(f, "# HELP espstation_ota_pulls_total Images served to pulling boards (HTTP OTA), "
               "by image and result.\n"
               "# TYPE espstation_ota_pulls_total counter\n");
    for (size_t i = 0; i < a->n_ota_m; i++)
        if (strcmp(a->ota_m[i].name, "pulls") == 0)
            fprintf(f, "espstation_ota_pulls_total{image=\"%s\",result=\"%s\"} %llu\n",
                    a->ota_m[i].l1, a->ota_m[i].l2, (unsigned long long)a->ota_m[i].n);
    for (int i = 0; oc && i < 2; i++)
        if (oc->pulls_failed[i] + oc->plain_pulls_failed[i])
            fprintf(f, "espstation_ota_pulls_total{image=\"%s\",result=\"failed\"} %llu\n",
                    images[i],
                    (unsigned long long)(oc->pulls_failed[i] + oc->plain_pulls_failed[i]));
    fprintf(f, "# HELP espstation_ota_pushes_total Push jobs finished, by method and result.\n"
               "# TYPE espstation_ota_pushes_total counter\n");
    for (size_t i = 0; i < a->n_ota_m; i++)
        if (strcmp(a->ota_m[i].name, "pushes") == 0)
            fprintf(f, "espstation_ota_pushes_total{method=\"%s\",result=\"%s\"} %llu\n",
                    a->ota_m[i].l1, a->ota_m[i].l2, (unsigned long long)a->ota_m[i].n);
    fprintf(f,
            "# HELP espstation_ota_bytes_total Image bytes sent over the network: served "
            "to pulling boards, pushed to boards (incomplete transfers included).\n"
            "# TYPE espstation_ota_bytes_total counter\n"
            "espstation_ota_bytes_total{direction=\"served\"} %llu\n"
            "espstation_ota_bytes_total{direction=\"pushed\"} %llu\n",
            (unsigned long long)(a->ota_served_bytes + (oc ? oc->pull_failed_bytes : 0)),
            (unsigned long long)a->ota_pushed_bytes);
    fprintf(f, "# HELP espstation_ota_bulk_boards_total Boards of bulk updates ended, by "
               "result (pending: failed, to be retried).\n"
               "# TYPE espstation_ota_bulk_boards_total counter\n");
    for (size_t i = 0; i < a->n_ota_m; i++)
        if (strcmp(a->ota_m[i].name, "bulk") == 0)
            fprintf(f, "espstation_ota_bulk_boards_total{result=\"%s\"} %llu\n", a->ota_m[i].l1,
                    (unsigned long long)a->ota_m[i].n);
}

void api_get_metrics(struct api *a, struct api_response *resp)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) {
        api_error(resp, 500, "internal", NULL, "out of memory");
        return;
    }
    const struct api_metrics *m = &a->m;
    const struct ota_counters *oc = ota_counters(station_ota(a->st));
    static const char *const images[2] = {"app", "filesystem"};
    fprintf(f, "# HELP espstation_jobs_total Jobs finished since the daemon started.\n"
               "# TYPE espstation_jobs_total counter\n");
    for (size_t i = 0; i < m->n_jobs; i++)
        fprintf(f, "espstation_jobs_total{kind=\"%s\",result=\"%s\"} %llu\n", m->jobs[i].kind,
                m->jobs[i].result, (unsigned long long)m->jobs[i].n);
    for (int i = 0; oc && i < 2; i++) /* incomplete pulls post no event */
        if (oc->pulls_failed[i])
            fprintf(f, "espstation_jobs_total{kind=\"%s\",result=\"failed\"} %llu\n",
                    i ? "ota-pull-fs" : "ota-pull", (unsigned long long)oc->pulls_failed[i]);
    write_ota_metrics(a, f, oc, images);
    fprintf(f,
            "# HELP espstation_flash_bytes_total Image bytes written by passed flash jobs.\n"
            "# TYPE espstation_flash_bytes_total counter\n"
            "espstation_flash_bytes_total %llu\n",
            (unsigned long long)m->flash_bytes);
    fprintf(f, "# HELP espstation_flash_duration_seconds Duration of passed flash jobs.\n"
               "# TYPE espstation_flash_duration_seconds histogram\n");
    uint64_t cum = 0;
    for (size_t b = 0; b < API_DURATION_BUCKETS; b++) {
        cum += m->duration_buckets[b];
        fprintf(f, "espstation_flash_duration_seconds_bucket{le=\"%g\"} %llu\n", duration_bounds[b],
                (unsigned long long)cum);
    }
    cum += m->duration_buckets[API_DURATION_BUCKETS];
    fprintf(f,
            "espstation_flash_duration_seconds_bucket{le=\"+Inf\"} %llu\n"
            "espstation_flash_duration_seconds_sum %.3f\n"
            "espstation_flash_duration_seconds_count %llu\n",
            (unsigned long long)cum, m->duration_sum, (unsigned long long)m->duration_count);
    const struct slot_table *t = station_slots(a->st);
    int present = 0, busy = 0;
    for (size_t i = 0; i < t->n; i++) {
        present += t->v[i]->present;
        busy += station_slot_busy(a->st, t->v[i]);
    }
    int64_t boards = 0, last_id = 0;
    struct records_error re;
    struct records_board_filter bf = {0};
    records_board_list(station_records(a->st), &bf, count_board_cb, &boards, &re);
    records_events_last_id(station_records(a->st), &last_id, &re);
    fprintf(f,
            "# HELP espstation_slots Slots known.\n# TYPE espstation_slots gauge\n"
            "espstation_slots %zu\n"
            "# HELP espstation_slots_present Slots with a port present.\n"
            "# TYPE espstation_slots_present gauge\nespstation_slots_present %d\n"
            "# HELP espstation_slots_busy Slots with a job.\n"
            "# TYPE espstation_slots_busy gauge\nespstation_slots_busy %d\n"
            "# HELP espstation_boards_seen Board records in the store.\n"
            "# TYPE espstation_boards_seen gauge\nespstation_boards_seen %lld\n"
            "# HELP espstation_events_last_id Newest event id.\n"
            "# TYPE espstation_events_last_id gauge\nespstation_events_last_id %lld\n"
            "# HELP espstation_sse_clients Connected event-stream clients.\n"
            "# TYPE espstation_sse_clients gauge\nespstation_sse_clients %d\n"
            "# HELP espstation_http_requests_total HTTP requests answered.\n"
            "# TYPE espstation_http_requests_total counter\n",
            t->n, present, busy, (long long)boards, (long long)last_id, m->sse_clients);
    for (int c = 1; c <= 5; c++)
        fprintf(f, "espstation_http_requests_total{code=\"%dxx\"} %llu\n", c,
                (unsigned long long)m->http_by_class[c]);
    const struct config *cfg = station_config(a->st);
    const struct config_profile *ap = NULL;
    for (size_t i = 0; i < cfg->n_profiles && cfg->active_profile; i++)
        if (api_streq(cfg->profiles[i].name, cfg->active_profile))
            ap = &cfg->profiles[i];
    if (ap && ap->n_per_board)
        fprintf(f, "# HELP espstation_pool_free Files of the active profile's per-board data "
                   "pools not yet given to a board.\n# TYPE espstation_pool_free gauge\n");
    for (size_t i = 0; ap && i < ap->n_per_board; i++) {
        struct pool_status ps;
        if (pool_stat(station_records(a->st), &ap->per_board[i], &ps) == 0 && ps.files >= 0)
            fprintf(f, "espstation_pool_free{pool=\"%s\"} %lld\n", ap->per_board[i].name,
                    (long long)ps.free);
    }
    write_tls_metrics(a, f);
    fclose(f);
    api_set_body(resp, 200, "text/plain; version=0.0.4; charset=utf-8", buf ? buf : "",
                 buf ? len : 0);
    free(buf);
}
