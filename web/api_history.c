/*
 * api_history: the job history: GET /jobs and GET /records, filtered (board, slot, kind,
 * state, time range, chip, firmware) and paged, as JSON or as the records' CSV export.
 * Shapes: docs/API.md.
 */
#include "api.h"
#include "api_priv.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>

#include "records.h"
#include "station.h"

/* ISO-8601 UTC ("2024-05-01T12:00:00Z", ".123", "+00:00") or unix milliseconds. */
static int parse_time(const char *s, int64_t *ms)
{
    if (!s || !*s)
        return -EINVAL;
    bool digits = true;
    for (const char *p = s; *p; p++)
        digits = digits && isdigit((unsigned char)*p);
    if (digits)
        return api_parse_i64(s, 0, INT64_MAX / 2, ms);
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    const char *p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!p) {
        memset(&tm, 0, sizeof(tm));
        p = strptime(s, "%Y-%m-%d", &tm);
        if (!p || *p)
            return -EINVAL;
    }
    int64_t frac = 0;
    if (*p == '.') {
        p++;
        int nd = 0;
        while (isdigit((unsigned char)*p)) {
            if (nd < 3)
                frac = frac * 10 + (*p - '0');
            nd++;
            p++;
        }
        if (nd == 0)
            return -EINVAL;
        for (; nd < 3; nd++)
            frac *= 10;
    }
    if (*p == 'Z' || *p == 'z')
        p++;
    else if (strcmp(p, "+00:00") == 0)
        p += 6;
    if (*p)
        return -EINVAL;
    time_t t = timegm(&tm);
    if (t == (time_t)-1)
        return -EINVAL;
    *ms = (int64_t)t * 1000 + frac;
    return 0;
}

static int time_range(const struct api_request *rq, struct api_response *resp, int64_t *since,
                      int64_t *until)
{
    const char *s = api_arg(rq, "since"), *u = api_arg(rq, "until");
    *since = *until = 0;
    if (s && parse_time(s, since) < 0)
        return api_error(resp, 400, "bad_request", "since",
                         "since: expected an ISO-8601 UTC time (2024-05-01T12:00:00Z) or unix "
                         "milliseconds, got \"%.64s\"",
                         s);
    if (u && parse_time(u, until) < 0)
        return api_error(resp, 400, "bad_request", "until",
                         "until: expected an ISO-8601 UTC time (2024-05-01T12:00:00Z) or unix "
                         "milliseconds, got \"%.64s\"",
                         u);
    return 0;
}

/* The filters the records query cannot apply: firmware name (any version) and a MAC list. */
static bool job_wanted(const struct api_list_ctx *c, const struct records_job *j)
{
    if (!api_fw_match(c->fw, j->firmware))
        return false;
    if (!c->macs)
        return true;
    for (size_t i = 0; i < c->n_macs; i++)
        if (strcmp(c->macs[i], j->board_mac) == 0)
            return true;
    return false;
}

static int job_cb(const struct records_job *j, void *ctx)
{
    struct api_list_ctx *c = ctx;
    if (!job_wanted(c, j))
        return 0;
    if (!api_page_take(c))
        return c->paging && c->left <= 0 && c->skip <= 0;
    json_object_array_add(c->arr, api_job_json(c->a->st, j));
    return 0;
}

static int mac_cb(const struct records_board *b, void *ctx)
{
    struct api_list_ctx *c = ctx;
    char **v = realloc(c->macs, (c->n_macs + 1) * sizeof(*v));
    if (!v)
        return 1;
    c->macs = v;
    c->macs[c->n_macs] = strdup(b->mac);
    if (c->macs[c->n_macs])
        c->n_macs++;
    return 0;
}

static void free_macs(struct api_list_ctx *c)
{
    for (size_t i = 0; i < c->n_macs; i++)
        free(c->macs[i]);
    free(c->macs);
    c->macs = NULL;
    c->n_macs = 0;
}

/*
 * Job filters shared by /jobs and /records: fills f (strings borrowed from rq or
 * mac) and the post-filters of c. 0 or the status written.
 */
static int job_filter(struct api *a, const struct api_request *rq, struct api_response *resp,
                      bool records, struct records_job_filter *f, struct api_list_ctx *c,
                      char mac[RECORDS_MAC_LEN])
{
    records_job_filter_init(f);
    const char *m = api_arg(rq, records ? "mac" : "board");
    if (m) {
        if (api_parse_mac_str(m, mac) < 0)
            return api_error(resp, 400, "bad_request", records ? "mac" : "board",
                             "%s: expected a MAC address like 24:6f:28:7a:d8:84",
                             records ? "mac" : "board");
        f->board_mac = mac;
    }
    f->slot = api_arg(rq, "slot");
    f->kind = api_arg(rq, "kind");
    f->station = api_arg(rq, "station");
    const char *state = api_arg(rq, records ? "result" : "state");
    if (state && records_job_state_from_string(state, &f->state) < 0)
        return api_error(resp, 400, "bad_request", records ? "result" : "state",
                         "%s: unknown job state \"%.32s\" (queued, running, passed, failed, "
                         "interrupted, cancelled, skipped)",
                         records ? "result" : "state", state);
    if (time_range(rq, resp, &f->since, &f->until))
        return resp->status;
    c->fw = api_arg(rq, "firmware");
    const char *chip = api_arg(rq, "chip");
    if (chip) {
        struct records_board_filter bf = {.chip = chip};
        struct records_error re;
        if (records_board_list(station_records(a->st), &bf, mac_cb, c, &re) < 0)
            return api_records_fail(resp, &re);
        if (!c->macs) {
            c->macs = malloc(sizeof(char *)); /* no board of that chip: nothing matches */
            if (!c->macs)
                return api_error(resp, 500, "internal", NULL, "out of memory");
        }
    }
    return 0;
}

static void list_jobs(struct api *a, const struct api_request *rq, struct api_response *resp,
                      bool records)
{
    int limit, offset;
    if (api_paging(rq, resp, &limit, &offset))
        return;
    struct records_job_filter f;
    struct api_list_ctx c = {.a = a, .present = -1};
    char mac[RECORDS_MAC_LEN];
    if (job_filter(a, rq, resp, records, &f, &c, mac)) {
        free_macs(&c);
        return;
    }
    if (c.fw || c.macs) {
        c.paging = true;
        c.skip = offset;
        c.left = limit;
    } else {
        f.limit = limit;
        f.offset = offset;
    }
    c.arr = json_object_new_array();
    struct records_error re;
    int rc = records_job_list(station_records(a->st), &f, job_cb, &c, &re);
    free_macs(&c);
    if (rc < 0) {
        json_object_put(c.arr);
        api_records_fail(resp, &re);
        return;
    }
    struct json_object *o = json_object_new_object();
    api_fill_chips(a->st, c.arr);
    api_jadd(o, records ? "records" : "jobs", c.arr);
    api_jadd(o, "limit", json_object_new_int(limit));
    api_jadd(o, "offset", json_object_new_int(offset));
    api_json(resp, 200, o);
}

static int id_cb(const struct records_job *j, void *ctx)
{
    struct api_list_ctx *c = ctx;
    if (!job_wanted(c, j))
        return 0;
    /* c->skip counts ids; the ids go into arr as ints */
    json_object_array_add(c->arr, json_object_new_int64(j->id));
    return 0;
}

static int cmp_i64(const void *x, const void *y)
{
    int64_t a = *(const int64_t *)x, b = *(const int64_t *)y;
    return a < b ? -1 : a > b;
}

/* GET /records?format=csv: the store's export, rows post-filtered by chip/firmware. */
static void records_csv(struct api *a, const struct api_request *rq, struct api_response *resp)
{
    struct records_job_filter f;
    struct api_list_ctx c = {.a = a, .present = -1};
    char mac[RECORDS_MAC_LEN];
    if (job_filter(a, rq, resp, true, &f, &c, mac)) {
        free_macs(&c);
        return;
    }
    struct records_error re;
    int64_t *ids = NULL;
    size_t n_ids = 0;
    bool post = c.fw || c.macs;
    if (post) {
        c.arr = json_object_new_array();
        if (records_job_list(station_records(a->st), &f, id_cb, &c, &re) < 0) {
            json_object_put(c.arr);
            free_macs(&c);
            api_records_fail(resp, &re);
            return;
        }
        n_ids = json_object_array_length(c.arr);
        ids = malloc((n_ids ? n_ids : 1) * sizeof(*ids));
        for (size_t i = 0; ids && i < n_ids; i++)
            ids[i] = json_object_get_int64(json_object_array_get_idx(c.arr, i));
        json_object_put(c.arr);
        if (!ids) {
            free_macs(&c);
            api_error(resp, 500, "internal", NULL, "out of memory");
            return;
        }
        qsort(ids, n_ids, sizeof(*ids), cmp_i64);
    }
    free_macs(&c);
    char *buf = NULL;
    size_t len = 0;
    FILE *mf = open_memstream(&buf, &len);
    if (!mf) {
        free(ids);
        api_error(resp, 500, "internal", NULL, "out of memory");
        return;
    }
    int rc = records_export_csv(station_records(a->st), mf, &f, &re);
    fclose(mf);
    if (rc < 0) {
        free(buf);
        free(ids);
        api_records_fail(resp, &re);
        return;
    }
    if (post && buf) {
        /* Keep the header and the rows whose id (first field, never quoted) was listed.
         * Rows end with CRLF outside quotes (fields may hold quoted line breaks). */
        size_t w = 0, start = 0;
        bool quoted = false, header = true;
        for (size_t i = 0; i < len; i++) {
            if (buf[i] == '"')
                quoted = !quoted;
            if (quoted || buf[i] != '\n')
                continue;
            size_t end = i + 1;
            bool keep = header;
            if (!header) {
                int64_t id = strtoll(buf + start, NULL, 10);
                keep = bsearch(&id, ids, n_ids, sizeof(*ids), cmp_i64) != NULL;
            }
            if (keep) {
                memmove(buf + w, buf + start, end - start);
                w += end - start;
            }
            header = false;
            start = end;
        }
        len = w;
    }
    free(ids);
    api_set_body(resp, 200, "text/csv; charset=utf-8", buf ? buf : "", buf ? len : 0);
    free(buf);
    snprintf(resp->disposition, sizeof(resp->disposition),
             "attachment; filename=\"espstation-records.csv\"");
}

API_HANDLER(api_h_jobs)
{
    (void)p;
    list_jobs(a, rq, resp, false);
}

API_HANDLER(api_h_records)
{
    (void)p;
    const char *fmt = api_arg(rq, "format");
    if (fmt && strcmp(fmt, "csv") == 0)
        return records_csv(a, rq, resp);
    if (fmt && strcmp(fmt, "json") != 0)
        return (void)api_error(resp, 400, "bad_request", "format", "format: json (default) or csv");
    list_jobs(a, rq, resp, true);
}
