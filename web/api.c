/*
 * api: see api.h. The JSON handlers (the route table, its dispatcher and the policy
 * checks are in routes.c).
 *
 * Shapes are documented in docs/API.md (authoritative): change both together.
 * Absent values are JSON null, never -1 or "". Times are ISO-8601 UTC strings.
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
#include "line_fw.h"
#include "config.h"
#include "esp_chip.h"
#include "job.h"
#include "ota.h"
#include "pool.h"
#include "records.h"
#include "slot.h"
#include "station.h"
#include "station_serial.h"
#include "transport.h"

#define DEFAULT_LIMIT 100
#define MAX_LIMIT 1000
#define CACHE_MAX_AGE_MS 1000

/* ---- small helpers ----------------------------------------------------------------- */

void api_response_init(struct api_response *resp)
{
    memset(resp, 0, sizeof(*resp));
    resp->sse_after = -1;
    resp->no_store = true;
}

void api_response_free(struct api_response *resp)
{
    free(resp->body);
    resp->body = NULL;
    resp->len = 0;
}

void api_set_body(struct api_response *resp, int status, const char *ctype, const char *text,
                  size_t len)
{
    free(resp->body);
    resp->body = malloc(len + 1);
    if (resp->body) {
        memcpy(resp->body, text, len);
        resp->body[len] = '\0';
        resp->len = len;
    } else {
        resp->len = 0;
    }
    resp->status = status;
    resp->content_type = ctype;
}

void api_json(struct api_response *resp, int status, struct json_object *o)
{
    if (!o) {
        api_error(resp, 500, "internal", NULL, "out of memory");
        return;
    }
    size_t len = 0;
    const char *text = json_object_to_json_string_length(
        o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
    api_set_body(resp, status, "application/json", text ? text : "null", text ? len : 4);
    json_object_put(o);
}

int api_error(struct api_response *resp, int status, const char *code, const char *field,
              const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    struct json_object *e = json_object_new_object();
    json_object_object_add(e, "code", json_object_new_string(code));
    json_object_object_add(e, "message", json_object_new_string(msg));
    if (field)
        json_object_object_add(e, "field", json_object_new_string(field));
    struct json_object *o = json_object_new_object();
    json_object_object_add(o, "error", e);
    api_json(resp, status, o);
    return status;
}

/* Adds a member to the error object of resp (after api_error). */
static void error_add(struct api_response *resp, const char *key, struct json_object *v)
{
    struct json_object *o = resp->body ? json_tokener_parse(resp->body) : NULL;
    struct json_object *e;
    if (!o || !json_object_object_get_ex(o, "error", &e)) {
        json_object_put(o);
        json_object_put(v);
        return;
    }
    json_object_object_add(e, key, v);
    api_json(resp, resp->status, o);
}

static struct json_object *jstr(const char *s)
{
    return s && *s ? json_object_new_string(s) : NULL;
}

static struct json_object *jint_opt(int64_t v)
{
    return v >= 0 ? json_object_new_int64(v) : NULL;
}

struct json_object *api_jtime(int64_t ms)
{
    if (ms <= 0)
        return NULL;
    char buf[RECORDS_TIME_LEN];
    return json_object_new_string(records_format_time(ms, buf, sizeof(buf)));
}

struct json_object *api_jdouble(double v, int decimals)
{
    char buf[64];
    snprintf(buf, sizeof(buf), "%.*f", decimals, v);
    return json_object_new_double_s(v, buf);
}

void api_jadd(struct json_object *o, const char *k, struct json_object *v)
{
    json_object_object_add(o, k, v);
}

static const char *arg(const struct api_request *rq, const char *key)
{
    for (size_t i = 0; i < rq->n_args; i++)
        if (rq->args[i].key && strcmp(rq->args[i].key, key) == 0)
            return rq->args[i].value ? rq->args[i].value : "";
    return NULL;
}

bool api_streq(const char *a, const char *b)
{
    return a && b && strcmp(a, b) == 0;
}

/* "true"/"1"/"yes" -> 1, "false"/"0"/"no" -> 0, else -1. */
static int parse_bool(const char *s)
{
    if (!s)
        return -1;
    if (!strcasecmp(s, "true") || !strcmp(s, "1") || !strcasecmp(s, "yes"))
        return 1;
    if (!strcasecmp(s, "false") || !strcmp(s, "0") || !strcasecmp(s, "no"))
        return 0;
    return -1;
}

static int parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out)
{
    if (!s || !*s)
        return -EINVAL;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v < lo || v > hi)
        return -EINVAL;
    *out = v;
    return 0;
}

/* ISO-8601 UTC ("2024-05-01T12:00:00Z", ".123", "+00:00") or unix milliseconds. */
static int parse_time(const char *s, int64_t *ms)
{
    if (!s || !*s)
        return -EINVAL;
    bool digits = true;
    for (const char *p = s; *p; p++)
        digits = digits && isdigit((unsigned char)*p);
    if (digits)
        return parse_i64(s, 0, INT64_MAX / 2, ms);
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

static int paging(const struct api_request *rq, struct api_response *resp, int *limit, int *offset)
{
    int64_t v;
    *limit = DEFAULT_LIMIT;
    *offset = 0;
    const char *l = arg(rq, "limit"), *o = arg(rq, "offset");
    if (l) {
        if (parse_i64(l, 1, MAX_LIMIT, &v) < 0)
            return api_error(resp, 400, "bad_request", "limit",
                             "limit: expected an integer from 1 to %d", MAX_LIMIT);
        *limit = (int)v;
    }
    if (o) {
        if (parse_i64(o, 0, INT_MAX, &v) < 0)
            return api_error(resp, 400, "bad_request", "offset",
                             "offset: expected a non-negative integer");
        *offset = (int)v;
    }
    return 0;
}

static int time_range(const struct api_request *rq, struct api_response *resp, int64_t *since,
                      int64_t *until)
{
    const char *s = arg(rq, "since"), *u = arg(rq, "until");
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

int api_parse_mac(const char *s, size_t len, char out[RECORDS_MAC_LEN])
{
    if (!s || len != 17)
        return -EINVAL;
    for (size_t i = 0; i < 17; i++) {
        char c = s[i];
        if (i % 3 == 2) {
            if (c != ':' && c != '-')
                return -EINVAL;
            out[i] = ':';
        } else {
            if (!isxdigit((unsigned char)c))
                return -EINVAL;
            out[i] = (char)tolower((unsigned char)c);
        }
    }
    out[17] = '\0';
    return 0;
}

static int parse_mac(const char *s, char out[RECORDS_MAC_LEN])
{
    return api_parse_mac(s, s ? strlen(s) : 0, out);
}

/* The chip family key of the config ("esp32c3") for a chip. */
static void chip_key(enum esp_chip chip, char *out, size_t len)
{
    const struct esp_chip_desc *d = esp_chip_get(chip);
    snprintf(out, len, "%s", d && d->stub_name ? d->stub_name : esp_chip_to_string(chip));
}

int api_records_fail(struct api_response *resp, const struct records_error *re)
{
    /* The line's database away (records_pg.c says "unreachable"): not the station's fault,
     * and it passes; flashing goes on meanwhile (the journal). */
    if (re->code == -EIO && strstr(re->message, "unreachable"))
        return api_error(resp, 503, "unavailable", NULL,
                         "%s; this station keeps flashing and keeps its records in its journal "
                         "until the database answers: try again shortly",
                         re->message);
    return api_error(resp, 500, "internal", NULL, "%s",
                     re->message[0] ? re->message : "records: unknown error");
}

/* ---- JSON bodies --------------------------------------------------------------------- */

static bool ctype_is(const char *ct, const char *want)
{
    if (!ct)
        return false;
    while (*ct == ' ')
        ct++;
    size_t n = strlen(want);
    return strncasecmp(ct, want, n) == 0 && (ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ');
}

/*
 * Parses the body as a JSON object into *out. An empty body gives an empty object when
 * allow_empty. Returns 0, or the status written into resp.
 */
static int body_object(const struct api_request *rq, struct api_response *resp, bool allow_empty,
                       struct json_object **out)
{
    *out = NULL;
    if (rq->body_len == 0) {
        if (!allow_empty)
            return api_error(resp, 400, "invalid_json", NULL,
                             "a JSON object body is required (Content-Type: application/json)");
        *out = json_object_new_object();
        return *out ? 0 : api_error(resp, 500, "internal", NULL, "out of memory");
    }
    if (!ctype_is(rq->content_type, "application/json"))
        return api_error(resp, 415, "unsupported_media_type", NULL,
                         "send the body as Content-Type: application/json (got %.80s)",
                         rq->content_type ? rq->content_type : "none");
    if (rq->body_len > API_MAX_JSON_BODY)
        return api_error(resp, 413, "payload_too_large", NULL,
                         "JSON bodies are limited to %u bytes", API_MAX_JSON_BODY);
    json_tokener *tok = json_tokener_new();
    if (!tok)
        return api_error(resp, 500, "internal", NULL, "out of memory");
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
    struct json_object *o = json_tokener_parse_ex(tok, rq->body, (int)rq->body_len);
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    size_t end = json_tokener_get_parse_end(tok);
    json_tokener_free(tok);
    if (!o && jerr == json_tokener_continue)
        return api_error(resp, 400, "invalid_json", NULL,
                         "JSON syntax error: unexpected end of the body");
    if (jerr != json_tokener_success) {
        json_object_put(o);
        return api_error(resp, 400, "invalid_json", NULL, "JSON syntax error at byte %zu: %s", end,
                         json_tokener_error_desc(jerr));
    }
    for (size_t i = end; i < rq->body_len; i++) {
        if (!isspace((unsigned char)rq->body[i])) {
            json_object_put(o);
            return api_error(resp, 400, "invalid_json", NULL,
                             "JSON syntax error at byte %zu: text after the JSON value", i);
        }
    }
    if (!json_object_is_type(o, json_type_object)) {
        json_object_put(o);
        return api_error(resp, 422, "validation_failed", NULL, "the body must be a JSON object");
    }
    *out = o;
    return 0;
}

int api_body_object(const struct api_request *rq, struct api_response *resp, bool allow_empty,
                    struct json_object **out)
{
    return body_object(rq, resp, allow_empty, out);
}

/* Refuses members not in allowed (NULL-terminated). prefix names the object in messages. */
static int check_members(struct json_object *o, const char *prefix, const char *const *allowed,
                         struct api_response *resp)
{
    json_object_object_foreach(o, key, val)
    {
        (void)val;
        bool ok = false;
        for (size_t i = 0; allowed[i] && !ok; i++)
            ok = strcmp(allowed[i], key) == 0;
        if (!ok) {
            char field[128], list[256] = "";
            size_t used = 0;
            snprintf(field, sizeof(field), "%s%s%.64s", prefix ? prefix : "", prefix ? "." : "",
                     key);
            for (size_t i = 0; allowed[i] && used < sizeof(list); i++)
                used += (size_t)snprintf(list + used, sizeof(list) - used, "%s%s", i ? ", " : "",
                                         allowed[i]);
            return api_error(resp, 422, "validation_failed", field,
                             "%s: unknown member (allowed: %s)", field, list);
        }
    }
    return 0;
}

/* Optional string member: 0 absent, 1 present (*out), or the error status. */
static int get_string(struct json_object *o, const char *key, const char *field, size_t maxlen,
                      const char **out, struct api_response *resp)
{
    struct json_object *v;
    *out = NULL;
    if (!json_object_object_get_ex(o, key, &v) || json_object_is_type(v, json_type_null))
        return 0;
    if (!json_object_is_type(v, json_type_string))
        return api_error(resp, 422, "validation_failed", field, "%s: must be a string", field);
    const char *s = json_object_get_string(v);
    if ((size_t)json_object_get_string_len(v) > maxlen ||
        strlen(s) != (size_t)json_object_get_string_len(v))
        return api_error(resp, 422, "validation_failed", field,
                         "%s: must be a string of at most %zu characters (no NUL)", field, maxlen);
    *out = s;
    return 1;
}

static int get_boolean(struct json_object *o, const char *key, const char *field, int *out,
                       struct api_response *resp)
{
    struct json_object *v;
    if (!json_object_object_get_ex(o, key, &v) || json_object_is_type(v, json_type_null))
        return 0;
    if (!json_object_is_type(v, json_type_boolean))
        return api_error(resp, 422, "validation_failed", field, "%s: must be true or false", field);
    *out = json_object_get_boolean(v) ? 1 : 0;
    return 1;
}

/* Optional integer member: 0 absent, 1 present (*out), or the error status. With
 * hex_string, a string holding a number ("0x1000", as offsets are written in manifests) is
 * taken too; otherwise only a JSON integer. */
static int get_integer(struct json_object *o, const char *key, const char *field, int64_t lo,
                       int64_t hi, bool hex_string, int64_t *out, struct api_response *resp)
{
    struct json_object *v;
    if (!json_object_object_get_ex(o, key, &v) || json_object_is_type(v, json_type_null))
        return 0;
    int64_t x;
    if (json_object_is_type(v, json_type_int)) {
        errno = 0;
        x = json_object_get_int64(v);
    } else if (hex_string && json_object_is_type(v, json_type_string)) {
        /* "0x1000" for offsets, as in manifests */
        const char *s = json_object_get_string(v);
        char *end;
        errno = 0;
        long long y = strtoll(s, &end, 0);
        if (errno || *end || end == s)
            return api_error(resp, 422, "validation_failed", field,
                             "%s: must be an integer from %lld to %lld", field, (long long)lo,
                             (long long)hi);
        x = y;
    } else {
        return api_error(resp, 422, "validation_failed", field,
                         "%s: must be an integer from %lld to %lld", field, (long long)lo,
                         (long long)hi);
    }
    if (x < lo || x > hi)
        return api_error(resp, 422, "validation_failed", field,
                         "%s: must be an integer from %lld to %lld (got %lld)", field,
                         (long long)lo, (long long)hi, (long long)x);
    *out = x;
    return 1;
}

/* ---- JSON views ---------------------------------------------------------------------- */

static struct json_object *progress_json(uint64_t done, uint64_t total, double kbps)
{
    if (!total && !done)
        return NULL;
    struct json_object *p = json_object_new_object();
    api_jadd(p, "done", json_object_new_int64((int64_t)done));
    api_jadd(p, "total", json_object_new_int64((int64_t)total));
    api_jadd(p, "percent", api_jdouble(total ? 100.0 * (double)done / (double)total : 0.0, 1));
    api_jadd(p, "kbps", api_jdouble(kbps > 0 ? kbps : 0.0, 1));
    return p;
}

static size_t slot_index(struct station *st, const struct slot *s)
{
    const struct slot_table *t = station_slots(st);
    for (size_t i = 0; i < t->n; i++)
        if (t->v[i] == s)
            return i;
    return 0;
}

struct json_object *api_slot_json(struct station *st, const struct slot *s)
{
    struct json_object *o = json_object_new_object();
    if (!o)
        return NULL;
    api_jadd(o, "index", json_object_new_int64((int64_t)slot_index(st, s)));
    api_jadd(o, "id", json_object_new_string(slot_name(s)));
    api_jadd(o, "key", json_object_new_string(s->key));
    api_jadd(o, "label", jstr(s->label));
    api_jadd(o, "uri", jstr(s->uri));
    api_jadd(o, "present", json_object_new_boolean(s->present));
    api_jadd(o, "manual", json_object_new_boolean(s->manual || strncmp(s->key, "uri:", 4) == 0));
    api_jadd(o, "usb_jtag", json_object_new_boolean(s->usb_jtag));
    api_jadd(o, "phase", json_object_new_string(board_phase_to_string(s->phase)));
    api_jadd(o, "busy", json_object_new_boolean(station_slot_busy(st, s)));
    api_jadd(o, "stage", jstr(s->stage));
    api_jadd(o, "progress", s->job ? progress_json(s->done, s->total, s->kbps) : NULL);
    api_jadd(o, "mac", jstr(s->mac));
    api_jadd(o, "chip", jstr(s->chip));
    api_jadd(o, "firmware", jstr(s->firmware));
    api_jadd(o, "job_id", s->job_id > 0 ? json_object_new_int64(s->job_id) : NULL);
    api_jadd(o, "job_kind", jstr(station_slot_job_kind(st, s)));
    api_jadd(o, "elapsed_ms", jint_opt(station_slot_elapsed_ms(st, s)));
    /* From the board's record and the last job (cheap indexed lookups). */
    struct records_board b;
    struct records_error re;
    bool have_board = s->mac[0] && records_board_get(station_records(st), s->mac, &b, &re) == 0;
    api_jadd(o, "ip", have_board ? jstr(b.ip) : NULL);
    api_jadd(o, "running_version", have_board ? jstr(b.running_version) : NULL);
    /* What the board carries now (its record): differs from `firmware` (the slot's last job)
     * after an update over the network. */
    api_jadd(o, "board_firmware", have_board ? jstr(b.current_firmware) : NULL);
    struct records_job lj;
    bool have_job = !s->job && s->job_id > 0 &&
                    records_job_get(station_records(st), s->job_id, &lj, &re) == 0 && lj.ended_at;
    api_jadd(o, "last_seconds", have_job && lj.seconds >= 0 ? api_jdouble(lj.seconds, 1) : NULL);
    struct json_object *err = NULL;
    if (s->error[0]) {
        err = json_object_new_object();
        api_jadd(err, "stage", have_job ? jstr(lj.error_stage) : jstr(s->stage));
        api_jadd(err, "message", json_object_new_string(s->error));
        api_jadd(err, "advice", jstr(s->advice));
        api_jadd(err, "device_status", jint_opt(s->device_status));
        api_jadd(err, "device_error", jint_opt(s->device_error));
    }
    api_jadd(o, "error", err);
    api_jadd(o, "failures", json_object_new_int(s->failures));
    api_jadd(o, "flagged", json_object_new_boolean(s->flagged));
    api_jadd(o, "attempt", json_object_new_int(s->attempt));
    api_jadd(o, "baud_limit", s->baud_limit ? json_object_new_int64(s->baud_limit) : NULL);
    api_jadd(o, "adapter_baud", s->adapter_baud ? json_object_new_int64(s->adapter_baud) : NULL);
    return o;
}

static const struct slot *slot_with_board(struct station *st, const char *mac)
{
    const struct slot_table *t = station_slots(st);
    for (size_t i = 0; i < t->n; i++)
        if (t->v[i]->present && strcmp(t->v[i]->mac, mac) == 0)
            return t->v[i];
    return NULL;
}

static struct json_object *board_json(struct station *st, const struct records_board *b)
{
    struct json_object *o = json_object_new_object();
    api_jadd(o, "mac", json_object_new_string(b->mac));
    api_jadd(o, "chip", jstr(b->chip));
    api_jadd(o, "revision", jint_opt(b->revision));
    api_jadd(o, "flash_id", jint_opt(b->flash_id));
    api_jadd(o, "flash_size", jint_opt(b->flash_size));
    api_jadd(o, "crystal_mhz", jint_opt(b->crystal_mhz));
    api_jadd(o, "first_seen", api_jtime(b->first_seen));
    api_jadd(o, "last_seen", api_jtime(b->last_seen));
    api_jadd(o, "slot", jstr(b->slot));
    const struct slot *s = slot_with_board(st, b->mac);
    api_jadd(o, "present_on", s ? json_object_new_string(slot_name(s)) : NULL);
    api_jadd(o, "current_firmware", jstr(b->current_firmware));
    api_jadd(o, "current_md5", jstr(b->current_md5));
    api_jadd(o, "ip", jstr(b->ip));
    /* how far the station trusts ip (daemon/board_addr.h): pushes need it confirmed */
    api_jadd(o, "ip_confirmed", json_object_new_boolean(b->ip_confirmed));
    api_jadd(o, "ip_source", jstr(b->ip_source));
    api_jadd(o, "ip_claim", jstr(b->ip_claim));
    api_jadd(o, "ip_claim_source", b->ip_claim[0] ? jstr(b->ip_claim_source) : NULL);
    api_jadd(o, "running_version", jstr(b->running_version));
    api_jadd(o, "target_firmware", jstr(b->target_firmware));
    api_jadd(o, "online_state", jstr(b->online_state));
    api_jadd(o, "notes", jstr(b->notes));
    struct json_object *groups = json_object_new_array();
    for (int i = 0; i < b->n_groups; i++)
        json_object_array_add(groups, json_object_new_string(b->groups[i]));
    api_jadd(o, "groups", groups);
    return o;
}

static struct json_object *job_json(struct station *st, const struct records_job *j)
{
    struct json_object *o = json_object_new_object();
    api_jadd(o, "id", json_object_new_int64(j->id));
    api_jadd(o, "kind", json_object_new_string(j->kind));
    api_jadd(o, "board", jstr(j->board_mac));
    api_jadd(o, "chip", NULL); /* filled by fill_chips(), outside the store's callbacks */
    api_jadd(o, "slot", jstr(j->slot));
    api_jadd(o, "station", jstr(j->station));
    api_jadd(o, "firmware", jstr(j->firmware));
    api_jadd(o, "state", json_object_new_string(records_job_state_to_string(j->state)));
    api_jadd(o, "stage", jstr(j->stage));
    api_jadd(o, "started_at", api_jtime(j->started_at));
    api_jadd(o, "ended_at", api_jtime(j->ended_at));
    const struct slot *s = j->ended_at ? NULL : station_slot_of_job(st, j->id);
    api_jadd(o, "progress", s ? progress_json(s->done, s->total, s->kbps) : NULL);
    api_jadd(o, "bytes", jint_opt(j->bytes));
    api_jadd(o, "wire_bytes", jint_opt(j->wire_bytes));
    api_jadd(o, "kbps", j->kbps >= 0 ? api_jdouble(j->kbps, 1) : NULL);
    api_jadd(o, "seconds", j->seconds >= 0 ? api_jdouble(j->seconds, 3) : NULL);
    api_jadd(o, "retries", json_object_new_int(j->retries));
    api_jadd(o, "result_code", j->ended_at ? json_object_new_int(j->result_code) : NULL);
    struct json_object *err = NULL;
    if (j->ended_at && (j->error_message[0] || j->error_stage[0])) {
        err = json_object_new_object();
        api_jadd(err, "stage", jstr(j->error_stage));
        api_jadd(err, "message", jstr(j->error_message));
        api_jadd(err, "advice", jstr(j->error_advice));
        api_jadd(err, "device_status", jint_opt(j->device_status));
        api_jadd(err, "device_error", jint_opt(j->device_error));
        api_jadd(err, "op", jint_opt(j->error_op));
        api_jadd(err, "address", jint_opt(j->error_address));
    }
    api_jadd(o, "error", err);
    return o;
}

/* Sets "chip" of every job object in arr (an array, or one job object) from its board. */
static void fill_chips(struct station *st, struct json_object *arr)
{
    bool one = json_object_is_type(arr, json_type_object);
    size_t n = one ? 1 : json_object_array_length(arr);
    char last_mac[RECORDS_MAC_LEN] = "", last_chip[RECORDS_CHIP_LEN] = "";
    for (size_t i = 0; i < n; i++) {
        struct json_object *j = one ? arr : json_object_array_get_idx(arr, i), *b;
        if (!json_object_object_get_ex(j, "board", &b) || !json_object_is_type(b, json_type_string))
            continue;
        const char *mac = json_object_get_string(b);
        if (strcmp(mac, last_mac) != 0) {
            struct records_board rb;
            struct records_error re;
            snprintf(last_mac, sizeof(last_mac), "%s", mac);
            last_chip[0] = '\0';
            if (records_board_get(station_records(st), mac, &rb, &re) == 0)
                snprintf(last_chip, sizeof(last_chip), "%s", rb.chip);
        }
        api_jadd(j, "chip", jstr(last_chip));
    }
}

struct json_object *api_event_json(const struct records_event *e)
{
    struct json_object *o = json_object_new_object();
    if (!o)
        return NULL;
    api_jadd(o, "id", json_object_new_int64(e->id));
    api_jadd(o, "ts", api_jtime(e->ts));
    api_jadd(o, "kind", json_object_new_string(e->kind));
    api_jadd(o, "slot", jstr(e->slot));
    api_jadd(o, "board", jstr(e->board_mac));
    api_jadd(o, "job", e->job_id > 0 ? json_object_new_int64(e->job_id) : NULL);
    api_jadd(o, "station", jstr(e->station));
    api_jadd(o, "data", e->data[0] ? json_tokener_parse(e->data) : NULL);
    return o;
}

/* ---- slots and ports ------------------------------------------------------------------ */

static void get_slots(struct api *a, const struct api_request *rq, struct api_response *resp)
{
    const char *phase = arg(rq, "phase"), *chip = arg(rq, "chip");
    int present = parse_bool(arg(rq, "present")), busy = parse_bool(arg(rq, "busy"));
    if (arg(rq, "present") && present < 0) {
        api_error(resp, 400, "bad_request", "present", "present: expected true or false");
        return;
    }
    if (arg(rq, "busy") && busy < 0) {
        api_error(resp, 400, "bad_request", "busy", "busy: expected true or false");
        return;
    }
    if (phase) {
        bool known = false;
        for (int p = 0; p < BOARD_PHASE_COUNT && !known; p++)
            known = strcmp(board_phase_to_string((enum board_phase)p), phase) == 0;
        if (!known) {
            api_error(resp, 400, "bad_request", "phase", "phase: unknown phase \"%.32s\"", phase);
            return;
        }
    }
    const struct slot_table *t = station_slots(a->st);
    struct json_object *arr = json_object_new_array();
    for (size_t i = 0; i < t->n; i++) {
        const struct slot *s = t->v[i];
        if (phase && strcmp(board_phase_to_string(s->phase), phase) != 0)
            continue;
        if (present >= 0 && s->present != (present == 1))
            continue;
        if (busy >= 0 && station_slot_busy(a->st, s) != (busy == 1))
            continue;
        if (chip && strcasecmp(s->chip, chip) != 0)
            continue;
        json_object_array_add(arr, api_slot_json(a->st, s));
    }
    struct json_object *o = json_object_new_object();
    api_jadd(o, "slots", arr);
    api_json(resp, 200, o);
}

static struct slot *find_slot(struct api *a, const char *id, struct api_response *resp)
{
    struct slot *s = station_find_slot(a->st, id);
    if (!s)
        api_error(resp, 404, "not_found", "slot", "no slot \"%.200s\"", id);
    return s;
}

static bool label_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 32)
        return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && !strchr(" _.-/", *s))
            return false;
    return true;
}

/* A port URI that can open: the transport's own syntax check (tcp://host:port with a
 * port, a non-empty pty:/serial: path, no unknown scheme), an absolute path (the daemon's
 * working directory means nothing to an API client), and no fd:N (that names one of the
 * daemon's own descriptors, which the transport would take over and close). 0 or the
 * status written. */
static int port_uri_check(const char *uri, struct api_response *resp)
{
    struct esp_error e;
    esp_error_clear(&e);
    if (transport_uri_check(uri, &e) < 0)
        return api_error(resp, 422, "validation_failed", "uri", "uri: %s (%s)", e.message,
                         e.advice);
    if (strncmp(uri, "fd:", 3) == 0)
        return api_error(resp, 422, "validation_failed", "uri",
                         "uri: fd:N names a descriptor of the daemon itself; attach a device "
                         "path, pty:/path or tcp://host:port");
    const char *path = strncmp(uri, "pty:", 4) == 0      ? uri + 4
                       : strncmp(uri, "serial:", 7) == 0 ? uri + 7
                                                         : uri;
    if (!strstr(uri, "://") && path[0] != '/')
        return api_error(resp, 422, "validation_failed", "uri",
                         "uri: \"%s\" is not an absolute path (write /dev/ttyUSB0, "
                         "pty:/dev/pts/5 or tcp://host:port)",
                         uri);
    return 0;
}

static void post_ports(struct api *a, const struct api_request *rq, struct api_response *resp)
{
    struct json_object *o;
    if (body_object(rq, resp, false, &o))
        return;
    static const char *const keys[] = {"uri", "label", NULL};
    const char *uri = NULL, *label = NULL;
    int rc;
    if (check_members(o, NULL, keys, resp) ||
        (rc = get_string(o, "uri", "uri", 240, &uri, resp)) < 0 || rc > 1 ||
        get_string(o, "label", "label", 64, &label, resp) > 1)
        goto out;
    if (!uri || !*uri) {
        api_error(resp, 422, "validation_failed", "uri",
                  "uri: required (a pty or serial path, or tcp://host:port)");
        goto out;
    }
    for (const char *p = uri; *p; p++) {
        if ((unsigned char)*p < 0x20 || *p == 0x7f) {
            api_error(resp, 422, "validation_failed", "uri", "uri: control characters");
            goto out;
        }
    }
    if (port_uri_check(uri, resp))
        goto out;
    if (label && !label_ok(label)) {
        api_error(resp, 422, "validation_failed", "label",
                  "label: up to 32 letters, digits, spaces and _ . - /");
        goto out;
    }
    if (label) {
        /* Labels share one namespace: another slot with this name would be ambiguous. */
        struct slot *other = station_find_slot(a->st, label);
        char key[300];
        snprintf(key, sizeof(key), "uri:%s", uri);
        if (other && strcmp(other->key, key) != 0) {
            api_error(resp, 409, "exists", "label", "label \"%s\" is already used by slot %s",
                      label, other->key);
            goto out;
        }
    }
    char key[300];
    snprintf(key, sizeof(key), "uri:%s", uri);
    struct slot *s = station_find_slot(a->st, key);
    if (s && station_slot_busy(a->st, s)) {
        api_error(resp, 409, "slot_busy", "uri", "slot %s is busy", slot_name(s));
        goto out;
    }
    if (a->dry_run) {
        struct json_object *r = json_object_new_object();
        api_jadd(r, "id", json_object_new_string(label ? label : key));
        api_json(resp, 201, r);
        goto out;
    }
    rc = station_attach(a->st, uri, label);
    if (rc < 0) {
        api_error(resp, 422, "validation_failed", "uri", "cannot attach %s: %s", uri,
                  strerror(-rc));
        goto out;
    }
    s = station_find_slot(a->st, key);
    if (!s) {
        api_error(resp, 500, "internal", NULL, "attached, but the slot is not there");
        goto out;
    }
    struct json_object *d = json_object_new_object();
    api_jadd(d, "uri", json_object_new_string(uri));
    api_jadd(d, "label", jstr(label));
    station_post_event(a->st, "port.attached", s, NULL, 0,
                       json_object_to_json_string_ext(d, JSON_C_TO_STRING_PLAIN));
    json_object_put(d);
    snprintf(resp->location, sizeof(resp->location), "/api/v1/slots/%zu", slot_index(a->st, s));
    api_json(resp, 201, api_slot_json(a->st, s));
out:
    json_object_put(o);
}

static void delete_port(struct api *a, const char *id, struct api_response *resp)
{
    struct slot *s = find_slot(a, id, resp);
    if (!s)
        return;
    if (!s->present) {
        api_error(resp, 409, "slot_empty", "slot", "slot %s is not attached", slot_name(s));
        return;
    }
    if (!a->dry_run) {
        char uri[256];
        snprintf(uri, sizeof(uri), "%s", s->uri);
        station_detach(a->st, s);
        struct json_object *d = json_object_new_object();
        api_jadd(d, "uri", json_object_new_string(uri));
        station_post_event(a->st, "port.detached", s, NULL, 0,
                           json_object_to_json_string_ext(d, JSON_C_TO_STRING_PLAIN));
        json_object_put(d);
    }
    api_json(resp, 200, api_slot_json(a->st, s));
}

/* ---- jobs ------------------------------------------------------------------------------ */

/* Checks "name@version" against the catalog. 0, or the status written. */
static int firmware_ref(struct api *a, const char *ref, char *name, char *version,
                        struct api_response *resp, const char *field)
{
    const char *at = strchr(ref, '@');
    if (!at || (size_t)(at - ref) >= RECORDS_NAME_LEN || strlen(at + 1) >= RECORDS_NAME_LEN) {
        return api_error(resp, 422, "validation_failed", field,
                         "%s: expected \"name@version\" of a firmware set in the catalog", field);
    }
    memcpy(name, ref, (size_t)(at - ref));
    name[at - ref] = '\0';
    snprintf(version, RECORDS_NAME_LEN, "%s", at + 1);
    if (!catalog_name_valid(name) || !catalog_name_valid(version))
        return api_error(resp, 422, "validation_failed", field,
                         "%s: names and versions hold letters, digits, '.', '_' and '-' only",
                         field);
    struct catalog_entry *ents = NULL;
    size_t n = 0;
    if (catalog_list(station_catalog(a->st), &ents, &n) < 0)
        return api_error(resp, 500, "internal", NULL, "cannot list the firmware catalog");
    bool found = false;
    for (size_t i = 0; i < n && !found; i++)
        found = strcmp(ents[i].name, name) == 0 && strcmp(ents[i].version, version) == 0;
    catalog_entries_free(ents, n);
    /* a set of the line (imported on another station) is fetched when the job needs it */
    if (!found && line_fw_known(station_line_fw(a->st), name, version))
        found = true;
    if (!found)
        return api_error(resp, 422, "validation_failed", field,
                         "%s: %s@%s is not in the firmware catalog (GET /api/v1/firmware)", field,
                         name, version);
    return 0;
}

/* Parses options {"force","erase_all","verify","baud"} into r. 0 or the status. */
static int job_options(struct json_object *opts, struct station_job_request *r,
                       struct api_response *resp)
{
    if (!opts || json_object_is_type(opts, json_type_null))
        return 0;
    if (!json_object_is_type(opts, json_type_object))
        return api_error(resp, 422, "validation_failed", "options", "options: must be an object");
    static const char *const keys[] = {"force", "erase_all", "verify", "baud", NULL};
    int b;
    int64_t baud;
    if (check_members(opts, "options", keys, resp))
        return resp->status;
    b = r->force;
    if (get_boolean(opts, "force", "options.force", &b, resp) > 1)
        return resp->status;
    r->force = b == 1;
    if (get_boolean(opts, "erase_all", "options.erase_all", &r->erase_all, resp) > 1 ||
        get_boolean(opts, "verify", "options.verify", &r->verify, resp) > 1)
        return resp->status;
    int rc = get_integer(opts, "baud", "options.baud", 9600, 5000000, false, &baud, resp);
    if (rc > 1)
        return rc;
    if (rc == 1)
        r->baud = (uint32_t)baud;
    return 0;
}

static void answer_job(struct api *a, int64_t id, struct api_response *resp)
{
    struct records_job j;
    struct records_error re;
    if (a->dry_run) {
        struct json_object *o = json_object_new_object();
        api_jadd(o, "id", json_object_new_int64(id));
        api_json(resp, 202, o);
        return;
    }
    if (records_job_get(station_records(a->st), id, &j, &re) < 0) {
        api_records_fail(resp, &re);
        return;
    }
    snprintf(resp->location, sizeof(resp->location), "/api/v1/jobs/%lld", (long long)id);
    struct json_object *o = job_json(a->st, &j);
    fill_chips(a->st, o);
    api_json(resp, 202, o);
}

static void start_request(struct api *a, struct slot *s, struct station_job_request *r,
                          struct api_response *resp)
{
    char err[512] = "";
    int64_t id = 0;
    int rc;
    if (a->dry_run) {
        if (station_slot_busy(a->st, s)) {
            api_error(resp, 409, "slot_busy", "slot", "slot %s is busy", slot_name(s));
            return;
        }
        if (!s->present) {
            api_error(resp, 409, "slot_empty", "slot", "no board on slot %s", slot_name(s));
            return;
        }
        answer_job(a, ++a->fake_job_id, resp);
        return;
    }
    rc = station_request_job(a->st, s, r, &id, err, sizeof(err));
    switch (rc) {
    case 0:
        answer_job(a, id, resp);
        return;
    case -EBUSY:
        api_error(resp, 409, "slot_busy", "slot", "%s", err);
        if (s->job_id > 0)
            error_add(resp, "job", json_object_new_int64(s->job_id));
        return;
    case -ENODEV:
        api_error(resp, 409, "slot_empty", "slot", "%s", err);
        return;
    case -ESHUTDOWN:
        api_error(resp, 503, "unavailable", NULL, "%s", err);
        return;
    case -EINVAL:
        api_error(resp, 422, "validation_failed", NULL, "%s", err);
        return;
    default:
        api_error(resp, 500, "internal", NULL, "%s", err[0] ? err : strerror(-rc));
        return;
    }
}

static void init_request(struct station_job_request *r, const char *kind)
{
    memset(r, 0, sizeof(*r));
    r->kind = kind;
    r->erase_all = -1;
    r->verify = -1;
}

/* POST /slots/{id}/{reflash|erase|info|reset} */
static void slot_action(struct api *a, struct slot *s, const char *action,
                        const struct api_request *rq, struct api_response *resp)
{
    struct json_object *o;
    if (body_object(rq, resp, true, &o))
        return;
    struct station_job_request r;
    char name[RECORDS_NAME_LEN], version[RECORDS_NAME_LEN];
    if (strcmp(action, "reflash") == 0) {
        init_request(&r, "flash");
        static const char *const keys[] = {"firmware", "force", "options", NULL};
        const char *fw = NULL;
        int force = 0;
        struct json_object *opts = NULL;
        if (check_members(o, NULL, keys, resp) ||
            get_string(o, "firmware", "firmware", 200, &fw, resp) > 1 ||
            get_boolean(o, "force", "force", &force, resp) > 1)
            goto out;
        json_object_object_get_ex(o, "options", &opts);
        if (job_options(opts, &r, resp))
            goto out;
        if (force == 1)
            r.force = true;
        if (fw) {
            if (firmware_ref(a, fw, name, version, resp, "firmware"))
                goto out;
            r.firmware_name = name;
            r.firmware_version = version;
        }
    } else if (strcmp(action, "erase") == 0) {
        init_request(&r, "erase");
        static const char *const keys[] = {"all", "offset", "size", NULL};
        int all = -1;
        int64_t off = -1, size = -1;
        if (check_members(o, NULL, keys, resp) || get_boolean(o, "all", "all", &all, resp) > 1 ||
            get_integer(o, "offset", "offset", 0, 0x7ffff000, true, &off, resp) > 1 ||
            get_integer(o, "size", "size", 4096, 0x7ffff000, true, &size, resp) > 1)
            goto out;
        if ((off >= 0) != (size >= 0)) {
            api_error(resp, 422, "validation_failed", off >= 0 ? "size" : "offset",
                      "offset and size go together (both multiples of 4096)");
            goto out;
        }
        if (off >= 0) {
            if (all == 1) {
                api_error(resp, 422, "validation_failed", "all",
                          "all: give either \"all\": true or offset/size");
                goto out;
            }
            if (off % 4096 || size % 4096) {
                api_error(resp, 422, "validation_failed", off % 4096 ? "offset" : "size",
                          "%s: must be a multiple of 4096 (a flash sector)",
                          off % 4096 ? "offset" : "size");
                goto out;
            }
            r.erase_region = true;
            r.erase_offset = (uint32_t)off;
            r.erase_size = (uint32_t)size;
        } else if (all == 0) {
            api_error(resp, 422, "validation_failed", "all", "all: false needs offset and size");
            goto out;
        }
    } else {
        init_request(&r, action); /* info, reset: no parameters */
        static const char *const keys[] = {NULL};
        if (check_members(o, NULL, keys, resp))
            goto out;
    }
    start_request(a, s, &r, resp);
out:
    json_object_put(o);
}

/* POST /slots/{id}/reset-baud: forget the slot's learnt baud limit (link back-off). No
 * job is started; the answer is the slot. */
static void slot_reset_baud(struct api *a, struct slot *s, const struct api_request *rq,
                            struct api_response *resp)
{
    struct json_object *o;
    if (body_object(rq, resp, true, &o))
        return;
    static const char *const keys[] = {NULL};
    if (!check_members(o, NULL, keys, resp)) {
        station_slot_reset_baud(a->st, s);
        api_json(resp, 200, api_slot_json(a->st, s));
    }
    json_object_put(o);
}

static void post_jobs(struct api *a, const struct api_request *rq, struct api_response *resp)
{
    struct json_object *o;
    if (body_object(rq, resp, false, &o))
        return;
    static const char *const keys[] = {"slot", "board", "firmware", "options", NULL};
    const char *slot = NULL, *board = NULL, *fw = NULL;
    struct json_object *opts = NULL;
    struct station_job_request r;
    char name[RECORDS_NAME_LEN], version[RECORDS_NAME_LEN];
    init_request(&r, "flash");
    if (check_members(o, NULL, keys, resp) || get_string(o, "slot", "slot", 300, &slot, resp) > 1 ||
        get_string(o, "board", "board", 32, &board, resp) > 1 ||
        get_string(o, "firmware", "firmware", 200, &fw, resp) > 1)
        goto out;
    json_object_object_get_ex(o, "options", &opts);
    if (job_options(opts, &r, resp))
        goto out;
    if (!slot == !board) {
        api_error(resp, 422, "validation_failed", slot ? "board" : "slot",
                  "give exactly one of \"slot\" (a slot id) or \"board\" (a MAC address)");
        goto out;
    }
    struct slot *s = NULL;
    if (slot) {
        s = station_find_slot(a->st, slot);
        if (!s) {
            api_error(resp, 404, "not_found", "slot", "no slot \"%.200s\"", slot);
            goto out;
        }
    } else {
        char mac[RECORDS_MAC_LEN];
        if (parse_mac(board, mac) < 0) {
            api_error(resp, 422, "validation_failed", "board",
                      "board: expected a MAC address like 24:6f:28:7a:d8:84");
            goto out;
        }
        struct records_board b;
        struct records_error re;
        int rc = a->dry_run ? -ENOENT : records_board_get(station_records(a->st), mac, &b, &re);
        if (rc == -ENOENT) {
            api_error(resp, 404, "not_found", "board", "no board %s in the records", mac);
            goto out;
        } else if (rc < 0) {
            api_records_fail(resp, &re);
            goto out;
        }
        s = (struct slot *)slot_with_board(a->st, mac);
        if (!s) {
            api_error(resp, 409, "slot_empty", "board", "board %s is not on any slot now", mac);
            goto out;
        }
    }
    if (fw) {
        if (firmware_ref(a, fw, name, version, resp, "firmware"))
            goto out;
        r.firmware_name = name;
        r.firmware_version = version;
    }
    start_request(a, s, &r, resp);
out:
    json_object_put(o);
}

struct list_ctx {
    struct api *a;
    struct json_object *arr;
    /* post-filters */
    const char *fw;    /* exact "name@version" or "name" */
    const char *state; /* board online_state */
    const char *slot;  /* board slot */
    int present;       /* -1 any */
    char **macs;       /* chip filter on jobs: boards of that chip */
    size_t n_macs;
    int skip, left; /* paging done here when post-filtering */
    bool paging;
};

static bool fw_match(const char *want, const char *have)
{
    if (!want)
        return true;
    if (strchr(want, '@'))
        return strcmp(want, have) == 0;
    size_t n = strlen(want);
    return strncmp(want, have, n) == 0 && have[n] == '@';
}

static bool page_take(struct list_ctx *c)
{
    if (!c->paging)
        return true;
    if (c->skip > 0) {
        c->skip--;
        return false;
    }
    if (c->left <= 0)
        return false;
    c->left--;
    return true;
}

static int board_cb(const struct records_board *b, void *ctx)
{
    struct list_ctx *c = ctx;
    if (!fw_match(c->fw, b->current_firmware))
        return 0;
    if (c->state && strcmp(c->state, b->online_state) != 0)
        return 0;
    if (c->slot && strcmp(c->slot, b->slot) != 0)
        return 0;
    if (c->present >= 0 && (slot_with_board(c->a->st, b->mac) != NULL) != (c->present == 1))
        return 0;
    if (!page_take(c))
        return c->paging && c->left <= 0 && c->skip <= 0;
    json_object_array_add(c->arr, board_json(c->a->st, b));
    return 0;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void api_invalidate(struct api *a)
{
    a->gen++;
}

/* The request's cache key (path and arguments in order); false when too long. */
static bool cache_key(const struct api_request *rq, char *key, size_t len)
{
    size_t used = (size_t)snprintf(key, len, "%s", rq->path);
    for (size_t i = 0; i < rq->n_args && used < len; i++)
        used += (size_t)snprintf(key + used, len - used, "%c%s=%s", i ? '&' : '?',
                                 rq->args[i].key ? rq->args[i].key : "",
                                 rq->args[i].value ? rq->args[i].value : "");
    return used < len;
}

static bool cache_get(struct api *a, const char *key, struct api_response *resp)
{
    int64_t now = mono_ms();
    for (size_t i = 0; i < CACHE_ENTRIES; i++) {
        struct cache_entry *e = &a->cache[i];
        if (e->body && e->gen == a->gen && now - e->at_ms < CACHE_MAX_AGE_MS &&
            strcmp(e->key, key) == 0) {
            api_set_body(resp, 200, "application/json", e->body, e->len);
            return resp->body != NULL;
        }
    }
    return false;
}

static void cache_put(struct api *a, const char *key, const struct api_response *resp)
{
    if (resp->status != 200 || !resp->body)
        return;
    struct cache_entry *e = &a->cache[a->cache_next];
    a->cache_next = (a->cache_next + 1) % CACHE_ENTRIES;
    char *copy = malloc(resp->len + 1);
    if (!copy)
        return;
    memcpy(copy, resp->body, resp->len + 1);
    free(e->body);
    e->body = copy;
    e->len = resp->len;
    e->gen = a->gen;
    e->at_ms = mono_ms();
    snprintf(e->key, sizeof(e->key), "%s", key);
}

static void get_boards(struct api *a, const struct api_request *rq, struct api_response *resp)
{
    char key[512];
    bool cacheable = !a->dry_run && cache_key(rq, key, sizeof(key));
    if (cacheable && cache_get(a, key, resp))
        return;
    int limit, offset;
    if (paging(rq, resp, &limit, &offset))
        return;
    struct list_ctx c = {.a = a, .present = -1};
    c.fw = arg(rq, "firmware");
    c.state = arg(rq, "state");
    c.slot = arg(rq, "slot");
    if (arg(rq, "present") && (c.present = parse_bool(arg(rq, "present"))) < 0) {
        api_error(resp, 400, "bad_request", "present", "present: expected true or false");
        return;
    }
    struct records_board_filter f = {.chip = arg(rq, "chip"), .group = arg(rq, "group")};
    if (f.group && !records_group_name_ok(f.group)) {
        api_error(resp, 400, "bad_request", "group",
                  "group: a group name is 1 to 64 of A-Z a-z 0-9 . _ - (got \"%.80s\")", f.group);
        return;
    }
    if (c.fw && strchr(c.fw, '@'))
        f.firmware = c.fw; /* exact: the store filters */
    bool post = (c.fw && !f.firmware) || c.state || c.slot || c.present >= 0;
    if (post) {
        c.paging = true;
        c.skip = offset;
        c.left = limit;
    } else {
        f.limit = limit;
        f.offset = offset;
    }
    c.arr = json_object_new_array();
    struct records_error re;
    if (records_board_list(station_records(a->st), &f, board_cb, &c, &re) < 0) {
        json_object_put(c.arr);
        api_records_fail(resp, &re);
        return;
    }
    struct json_object *o = json_object_new_object();
    api_jadd(o, "boards", c.arr);
    api_jadd(o, "limit", json_object_new_int(limit));
    api_jadd(o, "offset", json_object_new_int(offset));
    api_json(resp, 200, o);
    if (cacheable)
        cache_put(a, key, resp);
}

/* The filters the records query cannot apply: firmware name (any version) and a MAC list. */
static bool job_wanted(const struct list_ctx *c, const struct records_job *j)
{
    if (!fw_match(c->fw, j->firmware))
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
    struct list_ctx *c = ctx;
    if (!job_wanted(c, j))
        return 0;
    if (!page_take(c))
        return c->paging && c->left <= 0 && c->skip <= 0;
    json_object_array_add(c->arr, job_json(c->a->st, j));
    return 0;
}

static int mac_cb(const struct records_board *b, void *ctx)
{
    struct list_ctx *c = ctx;
    char **v = realloc(c->macs, (c->n_macs + 1) * sizeof(*v));
    if (!v)
        return 1;
    c->macs = v;
    c->macs[c->n_macs] = strdup(b->mac);
    if (c->macs[c->n_macs])
        c->n_macs++;
    return 0;
}

static void free_macs(struct list_ctx *c)
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
                      bool records, struct records_job_filter *f, struct list_ctx *c,
                      char mac[RECORDS_MAC_LEN])
{
    records_job_filter_init(f);
    const char *m = arg(rq, records ? "mac" : "board");
    if (m) {
        if (parse_mac(m, mac) < 0)
            return api_error(resp, 400, "bad_request", records ? "mac" : "board",
                             "%s: expected a MAC address like 24:6f:28:7a:d8:84",
                             records ? "mac" : "board");
        f->board_mac = mac;
    }
    f->slot = arg(rq, "slot");
    f->kind = arg(rq, "kind");
    f->station = arg(rq, "station");
    const char *state = arg(rq, records ? "result" : "state");
    if (state && records_job_state_from_string(state, &f->state) < 0)
        return api_error(resp, 400, "bad_request", records ? "result" : "state",
                         "%s: unknown job state \"%.32s\" (queued, running, passed, failed, "
                         "interrupted, cancelled, skipped)",
                         records ? "result" : "state", state);
    if (time_range(rq, resp, &f->since, &f->until))
        return resp->status;
    c->fw = arg(rq, "firmware");
    const char *chip = arg(rq, "chip");
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
    if (paging(rq, resp, &limit, &offset))
        return;
    struct records_job_filter f;
    struct list_ctx c = {.a = a, .present = -1};
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
    fill_chips(a->st, c.arr);
    api_jadd(o, records ? "records" : "jobs", c.arr);
    api_jadd(o, "limit", json_object_new_int(limit));
    api_jadd(o, "offset", json_object_new_int(offset));
    api_json(resp, 200, o);
}

static int id_cb(const struct records_job *j, void *ctx)
{
    struct list_ctx *c = ctx;
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
    struct list_ctx c = {.a = a, .present = -1};
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

struct log_ctx {
    struct json_object *arr;
};

static int log_cb(const struct records_log_line *l, void *ctx)
{
    struct log_ctx *c = ctx;
    struct json_object *o = json_object_new_object();
    api_jadd(o, "ts", api_jtime(l->ts));
    api_jadd(o, "level", json_object_new_string(l->level));
    api_jadd(o, "line", json_object_new_string(l->line));
    json_object_array_add(c->arr, o);
    return 0;
}

static int parse_job_id(const char *s, int64_t *id)
{
    return parse_i64(s, 1, INT64_MAX / 2, id);
}

/* Loads the job named by ids into *j; on failure the answer (404 or a records error) is
 * already in resp and -1 is returned. */
static int load_job(struct api *a, const char *ids, int64_t *id, struct records_job *j,
                    struct api_response *resp)
{
    if (parse_job_id(ids, id) < 0) {
        api_error(resp, 404, "not_found", "job", "no job \"%.40s\" (job ids are integers)", ids);
        return -1;
    }
    struct records_error re;
    int rc = records_job_get(station_records(a->st), *id, j, &re);
    if (rc == -ENOENT) {
        api_error(resp, 404, "not_found", "job", "no job %lld", (long long)*id);
        return -1;
    }
    if (rc < 0) {
        api_records_fail(resp, &re);
        return -1;
    }
    return 0;
}

static void get_job(struct api *a, const char *ids, struct api_response *resp)
{
    int64_t id;
    struct records_job j;
    struct records_error re;
    if (load_job(a, ids, &id, &j, resp) < 0)
        return;
    struct json_object *o = job_json(a->st, &j);
    fill_chips(a->st, o);
    struct log_ctx lc = {.arr = json_object_new_array()};
    if (records_job_log_list(station_records(a->st), id, log_cb, &lc, &re) < 0) {
        json_object_put(lc.arr);
        json_object_put(o);
        api_records_fail(resp, &re);
        return;
    }
    api_jadd(o, "log", lc.arr);
    api_json(resp, 200, o);
}

static void cancel_job(struct api *a, const char *ids, struct api_response *resp)
{
    int64_t id;
    struct records_job j;
    struct records_error re;
    if (load_job(a, ids, &id, &j, resp) < 0)
        return;
    int rc = a->dry_run ? -ENOENT : station_cancel_job(a->st, id);
    if (rc == -ENOENT) {
        if (j.ended_at || records_job_state_is_final(j.state))
            api_error(resp, 409, "job_finished", "job", "job %lld already ended (%s)",
                      (long long)id, records_job_state_to_string(j.state));
        else
            api_error(resp, 409, "job_finished", "job", "job %lld is not running", (long long)id);
        return;
    }
    if (records_job_get(station_records(a->st), id, &j, &re) < 0) {
        api_records_fail(resp, &re);
        return;
    }
    struct json_object *o = job_json(a->st, &j);
    fill_chips(a->st, o);
    api_json(resp, rc == 1 ? 200 : 202, o);
}

/* ---- boards ----------------------------------------------------------------------------- */

static int pool_item_cb(const struct records_pool_item *it, void *ctx)
{
    struct json_object *o = json_object_new_object();
    api_jadd(o, "pool", json_object_new_string(it->pool));
    api_jadd(o, "file", json_object_new_string(it->file));
    api_jadd(o, "md5", jstr(it->md5));
    api_jadd(o, "job_id", it->job_id > 0 ? json_object_new_int64(it->job_id) : NULL);
    api_jadd(o, "assigned", api_jtime(it->assigned_at));
    json_object_array_add(ctx, o);
    return 0;
}

static int history_cb(const struct records_job *j, void *ctx)
{
    struct list_ctx *c = ctx;
    json_object_array_add(c->arr, job_json(c->a->st, j));
    return 0;
}

static void get_board(struct api *a, const char *m, struct api_response *resp)
{
    char mac[RECORDS_MAC_LEN];
    if (parse_mac(m, mac) < 0) {
        api_error(resp, 400, "bad_request", "mac",
                  "expected a MAC address like 24:6f:28:7a:d8:84, got \"%.40s\"", m);
        return;
    }
    struct records_board b;
    struct records_error re;
    int rc = records_board_get(station_records(a->st), mac, &b, &re);
    if (rc == -ENOENT) {
        api_error(resp, 404, "not_found", "mac", "no board %s in the records", mac);
        return;
    }
    if (rc < 0) {
        api_records_fail(resp, &re);
        return;
    }
    struct json_object *o = board_json(a->st, &b);
    struct records_job_filter f;
    records_job_filter_init(&f);
    f.board_mac = mac;
    struct list_ctx c = {.a = a, .arr = json_object_new_array()};
    if (records_job_list(station_records(a->st), &f, history_cb, &c, &re) < 0) {
        json_object_put(c.arr);
        json_object_put(o);
        api_records_fail(resp, &re);
        return;
    }
    fill_chips(a->st, c.arr);
    api_jadd(o, "jobs", c.arr);
    struct json_object *items = json_object_new_array();
    if (records_pool_items_of_board(station_records(a->st), b.mac, pool_item_cb, items, &re) < 0) {
        json_object_put(items);
        json_object_put(o);
        api_records_fail(resp, &re);
        return;
    }
    api_jadd(o, "per_board", items);
    if (station_board_serials_json(a->st, b.mac, o, &re) < 0) {
        json_object_put(o);
        api_records_fail(resp, &re);
        return;
    }
    char *ota_state = station_ota(a->st) ? ota_board_json(station_ota(a->st), b.mac) : NULL;
    api_jadd(o, "ota", ota_state ? json_tokener_parse(ota_state) : NULL);
    free(ota_state);
    api_json(resp, 200, o);
}

/* GET /api/v1/pools: every per-board data pool named by a profile, with its counts. */
static void get_pools(struct api *a, struct api_response *resp)
{
    const struct config *cfg = station_config(a->st);
    struct json_object *arr = json_object_new_array();
    for (size_t i = 0; i < cfg->n_profiles; i++) {
        const struct config_profile *p = &cfg->profiles[i];
        for (size_t k = 0; k < p->n_per_board; k++) {
            const struct config_per_board *pb = &p->per_board[k];
            struct json_object *o = NULL;
            for (size_t n = 0; n < json_object_array_length(arr) && !o; n++) {
                struct json_object *e = json_object_array_get_idx(arr, n), *v;
                if (json_object_object_get_ex(e, "name", &v) &&
                    api_streq(json_object_get_string(v), pb->name))
                    o = e;
            }
            if (!o) {
                struct pool_status ps;
                if (pool_stat(station_records(a->st), pb, &ps) < 0)
                    ps.files = -1;
                char off[16];
                snprintf(off, sizeof(off), "0x%x", pb->offset);
                o = json_object_new_object();
                api_jadd(o, "name", json_object_new_string(pb->name));
                api_jadd(o, "dir", json_object_new_string(pb->dir));
                api_jadd(o, "offset", json_object_new_string(off));
                api_jadd(o, "files", ps.files >= 0 ? json_object_new_int64(ps.files) : NULL);
                api_jadd(o, "used", json_object_new_int64(ps.used));
                api_jadd(o, "free", ps.files >= 0 ? json_object_new_int64(ps.free) : NULL);
                api_jadd(o, "readable", json_object_new_boolean(ps.files >= 0));
                api_jadd(o, "profiles", json_object_new_array());
                json_object_array_add(arr, o);
            }
            struct json_object *profs;
            json_object_object_get_ex(o, "profiles", &profs);
            json_object_array_add(profs, json_object_new_string(p->name));
            if (cfg->active_profile && api_streq(cfg->active_profile, p->name))
                api_jadd(o, "active", json_object_new_boolean(true));
        }
    }
    struct json_object *o = json_object_new_object();
    api_jadd(o, "pools", arr);
    api_json(resp, 200, o);
}

/* PUT /api/v1/boards/{mac}: {"notes": "..." | null, "groups": ["line-a", ...] | null}, each
 * member optional (absent: unchanged; null: cleared). Validates everything before writing. */
static void put_board(struct api *a, const char *m, const struct api_request *rq,
                      struct api_response *resp)
{
    char mac[RECORDS_MAC_LEN];
    if (parse_mac(m, mac) < 0) {
        api_error(resp, 400, "bad_request", "mac",
                  "expected a MAC address like 24:6f:28:7a:d8:84, got \"%.40s\"", m);
        return;
    }
    struct json_object *body = NULL, *v;
    if (body_object(rq, resp, false, &body))
        return;
    static const char *const keys[] = {"notes", "groups", NULL};
    const char *notes = NULL, *names[RECORDS_GROUPS_MAX];
    bool set_notes = false, set_groups = false;
    size_t n = 0;
    if (check_members(body, NULL, keys, resp))
        goto out;
    if (json_object_object_get_ex(body, "notes", &v)) {
        set_notes = true;
        if (get_string(body, "notes", "notes", RECORDS_TEXT_LEN - 1, &notes, resp) > 1)
            goto out;
    }
    if (json_object_object_get_ex(body, "groups", &v) && !json_object_is_type(v, json_type_null)) {
        if (!json_object_is_type(v, json_type_array)) {
            api_error(resp, 422, "validation_failed", "groups",
                      "groups: an array of group names, e.g. [\"line-a\", \"batch-42\"]");
            goto out;
        }
        size_t len = json_object_array_length(v);
        for (size_t i = 0; i < len; i++) {
            struct json_object *e = json_object_array_get_idx(v, i);
            const char *g =
                json_object_is_type(e, json_type_string) ? json_object_get_string(e) : NULL;
            if (!g || !records_group_name_ok(g) ||
                strlen(g) != (size_t)json_object_get_string_len(e)) {
                api_error(resp, 422, "validation_failed", "groups",
                          "groups[%zu]: a group name is 1 to 64 of A-Z a-z 0-9 . _ -", i);
                goto out;
            }
            bool dup = false;
            for (size_t k = 0; k < n && !dup; k++)
                dup = strcmp(names[k], g) == 0;
            if (dup)
                continue;
            if (n == RECORDS_GROUPS_MAX) {
                api_error(resp, 422, "validation_failed", "groups",
                          "groups: at most %d groups per board", RECORDS_GROUPS_MAX);
                goto out;
            }
            names[n++] = g;
        }
        set_groups = true;
    } else if (json_object_object_get_ex(body, "groups", &v)) {
        set_groups = true; /* null clears */
    }
    struct records *rec = station_records(a->st);
    struct records_board b;
    struct records_error re;
    int rc = records_board_get(rec, mac, &b, &re);
    if (rc == 0 && set_notes)
        rc = records_board_set_notes(rec, mac, notes, &re);
    if (rc == 0 && set_groups)
        rc = records_board_set_groups(rec, mac, names, n, &re);
    if (rc == -ENOENT) {
        api_error(resp, 404, "not_found", "mac", "no board %s in the records", mac);
        goto out;
    }
    if (rc == 0)
        rc = records_board_get(rec, mac, &b, &re);
    if (rc < 0) {
        api_records_fail(resp, &re);
        goto out;
    }
    struct json_object *o = board_json(a->st, &b);
    if (set_notes || set_groups) {
        struct json_object *ev = json_object_new_object(), *changed = json_object_new_array();
        if (set_notes)
            json_object_array_add(changed, json_object_new_string("notes"));
        if (set_groups)
            json_object_array_add(changed, json_object_new_string("groups"));
        api_jadd(ev, "changed", changed);
        api_jadd(ev, "notes", jstr(b.notes));
        struct json_object *g = NULL;
        json_object_object_get_ex(o, "groups", &g);
        api_jadd(ev, "groups", json_object_get(g));
        station_post_event(a->st, "board.updated", NULL, b.mac, 0,
                           json_object_to_json_string_ext(ev, JSON_C_TO_STRING_PLAIN));
        json_object_put(ev);
    }
    api_json(resp, 200, o);
out:
    json_object_put(body);
}

/* An IPv4 address the station can push to, written a.b.c.d; normalised into out. Not
 * 0.0.0.0/8, multicast (224/4) or the limited broadcast: no board answers there. */
static bool board_ip_ok(const char *s, char out[RECORDS_IP_LEN])
{
    struct in_addr in;
    if (!s || inet_pton(AF_INET, s, &in) != 1)
        return false;
    uint32_t h = ntohl(in.s_addr);
    if ((h >> 24) == 0 || (h >> 28) == 0xe || h == 0xffffffffu)
        return false;
    return inet_ntop(AF_INET, &in, out, RECORDS_IP_LEN) != NULL;
}

/* POST /api/v1/boards/{mac}/address: the operator confirms the board's address,
 * {"ip": "a.b.c.d"} or {"accept_claim": true} (the pending claim). Pushes go only to a
 * confirmed address (daemon/board_addr.h); the operator vouches for this one. */
static void post_board_address(struct api *a, const char *m, const struct api_request *rq,
                               struct api_response *resp)
{
    char mac[RECORDS_MAC_LEN], ip[RECORDS_IP_LEN] = "";
    if (parse_mac(m, mac) < 0) {
        api_error(resp, 400, "bad_request", "mac",
                  "expected a MAC address like 24:6f:28:7a:d8:84, got \"%.40s\"", m);
        return;
    }
    struct json_object *body = NULL, *v;
    if (body_object(rq, resp, false, &body))
        return;
    static const char *const keys[] = {"ip", "accept_claim", NULL};
    const char *want = NULL;
    int accept = 0;
    if (check_members(body, NULL, keys, resp) ||
        get_boolean(body, "accept_claim", "accept_claim", &accept, resp) > 1)
        goto out;
    if (json_object_object_get_ex(body, "ip", &v) && !json_object_is_type(v, json_type_null)) {
        want = json_object_is_type(v, json_type_string) ? json_object_get_string(v) : "";
        if (!board_ip_ok(want, ip)) {
            api_error(resp, 400, "bad_request", "ip",
                      "ip: expected the board's IPv4 address like 192.168.1.23, got %s%.46s%s",
                      json_object_is_type(v, json_type_string) ? "\"" : "",
                      json_object_is_type(v, json_type_string) ? want : "a non-string",
                      json_object_is_type(v, json_type_string) ? "\"" : "");
            goto out;
        }
    }
    if (!want == !accept) {
        api_error(resp, 400, "bad_request", want ? "accept_claim" : "ip",
                  "send either {\"ip\": \"a.b.c.d\"} (the board's address) or "
                  "{\"accept_claim\": true} (the address it last claimed)");
        goto out;
    }
    struct records *rec = station_records(a->st);
    struct records_board b;
    struct records_error re;
    int rc = records_board_get(rec, mac, &b, &re);
    if (rc == -ENOENT) {
        api_error(resp, 404, "not_found", "mac", "no board %s in the records", mac);
        goto out;
    }
    if (rc < 0) {
        api_records_fail(resp, &re);
        goto out;
    }
    if (accept) {
        if (!b.ip_claim[0]) {
            api_error(resp, 409, "no_claim", "accept_claim",
                      "board %s has no pending claim (its address is %s, %s): send {\"ip\": "
                      "\"a.b.c.d\"} to confirm an address",
                      b.mac, b.ip[0] ? b.ip : "unknown",
                      b.ip[0] ? (b.ip_confirmed ? "confirmed" : "unconfirmed") : "none recorded");
            goto out;
        }
        snprintf(ip, sizeof(ip), "%s", b.ip_claim);
    }
    if (board_addr_note(a->st, b.mac, ip, BOARD_ADDR_OPERATOR, NULL, 0) == BOARD_ADDR_ERROR) {
        api_error(resp, 500, "internal", NULL, "cannot record the address %s of %s", ip, b.mac);
        goto out;
    }
    if (records_board_get(rec, mac, &b, &re) < 0) {
        api_records_fail(resp, &re);
        goto out;
    }
    api_json(resp, 200, board_json(a->st, &b));
out:
    json_object_put(body);
}

/* ---- firmware ---------------------------------------------------------------------------- */

static void get_firmware_list(struct api *a, const struct api_request *rq,
                              struct api_response *resp)
{
    const char *chip = arg(rq, "chip");
    const struct esp_chip_desc *want = NULL;
    if (chip && !(want = esp_chip_by_name(chip))) {
        api_error(resp, 400, "bad_request", "chip", "chip: unknown chip family \"%.32s\"", chip);
        return;
    }
    struct catalog_entry *ents = NULL;
    size_t n = 0;
    if (catalog_list(station_catalog(a->st), &ents, &n) < 0) {
        api_error(resp, 500, "internal", NULL, "cannot list the firmware catalog");
        return;
    }
    struct json_object *arr = json_object_new_array();
    for (size_t i = 0; i < n; i++) {
        if (want && ents[i].chip != want->chip)
            continue;
        struct json_object *e = json_object_new_object();
        api_jadd(e, "name", json_object_new_string(ents[i].name));
        api_jadd(e, "version", json_object_new_string(ents[i].version));
        api_jadd(e, "chip", json_object_new_string(esp_chip_to_string(ents[i].chip)));
        api_jadd(e, "regions", json_object_new_int64((int64_t)ents[i].n_regions));
        api_jadd(e, "total_bytes", json_object_new_int64((int64_t)ents[i].total_bytes));
        json_object_array_add(arr, e);
    }
    catalog_entries_free(ents, n);
    struct json_object *o = json_object_new_object();
    api_jadd(o, "firmware", arr);
    api_json(resp, 200, o);
}

/* Splits "{name}/{version}" (one '/'); 0 or the status written. */
static int split_fw(const char *rest, char *name, char *version, struct api_response *resp)
{
    const char *slash = strchr(rest, '/');
    if (strstr(rest, "..") || rest[0] == '.' || (slash && slash[1] == '.'))
        return api_error(resp, 400, "bad_request", "name",
                         "names and versions hold letters, digits, '.', '_' and '-' only, do not "
                         "start with '.' and do not contain \"..\"");
    if (!slash || strchr(slash + 1, '/'))
        return api_error(resp, 404, "not_found", NULL,
                         "expected /api/v1/firmware/{name}/{version}");
    size_t n = (size_t)(slash - rest);
    if (n == 0 || n >= CATALOG_NAME_MAX || strlen(slash + 1) >= CATALOG_NAME_MAX)
        return api_error(resp, 400, "bad_request", "name", "name and version: 1 to %d characters",
                         CATALOG_NAME_MAX - 1);
    memcpy(name, rest, n);
    name[n] = '\0';
    snprintf(version, CATALOG_NAME_MAX, "%s", slash + 1);
    if (!catalog_name_valid(name) || !catalog_name_valid(version))
        return api_error(resp, 400, "bad_request", catalog_name_valid(name) ? "version" : "name",
                         "names and versions hold letters, digits, '.', '_' and '-' only, do not "
                         "start with '.' and do not contain \"..\"");
    return 0;
}

static struct json_object *read_json_file(const char *path)
{
    return json_object_from_file(path);
}

struct json_object *api_firmware_json(struct station *st, const char *name, const char *version)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s/%s/index.json", catalog_root(station_catalog(st)), name,
             version);
    struct json_object *idx = read_json_file(path);
    if (!idx)
        return NULL;
    snprintf(path, sizeof(path), "%s/%s/%s/manifest.json", catalog_root(station_catalog(st)), name,
             version);
    struct json_object *man = read_json_file(path);
    struct json_object *o = json_object_new_object();
    api_jadd(o, "name", json_object_new_string(name));
    api_jadd(o, "version", json_object_new_string(version));
    struct json_object *v;
    const struct esp_chip_desc *chip = NULL;
    if (json_object_object_get_ex(idx, "chip", &v))
        chip = esp_chip_by_name(json_object_get_string(v));
    api_jadd(o, "chip", chip ? json_object_new_string(chip->name) : NULL);
    api_jadd(o, "description",
             man && json_object_object_get_ex(man, "description", &v) ? json_object_get(v) : NULL);
    struct json_object *regs = json_object_new_array(), *ir;
    int64_t total = 0;
    if (json_object_object_get_ex(idx, "regions", &ir) &&
        json_object_is_type(ir, json_type_array)) {
        for (size_t i = 0; i < json_object_array_length(ir); i++) {
            struct json_object *r = json_object_array_get_idx(ir, i), *x;
            struct json_object *e = json_object_new_object();
            static const char *const keys[] = {"offset", "file", "kind", "size", "sha256", "md5"};
            for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++)
                api_jadd(e, keys[k],
                         json_object_object_get_ex(r, keys[k], &x) ? json_object_get(x) : NULL);
            if (json_object_object_get_ex(r, "size", &x))
                total += json_object_get_int64(x);
            json_object_array_add(regs, e);
        }
    }
    api_jadd(o, "regions", regs);
    api_jadd(o, "total_bytes", json_object_new_int64(total));
    api_jadd(o, "manifest", man);
    json_object_put(idx);
    return o;
}

static void get_firmware(struct api *a, const char *rest, struct api_response *resp)
{
    char name[CATALOG_NAME_MAX], version[CATALOG_NAME_MAX];
    if (split_fw(rest, name, version, resp))
        return;
    struct json_object *o = api_firmware_json(a->st, name, version);
    if (!o) {
        api_error(resp, 404, "not_found", "firmware", "no firmware %s@%s in the catalog", name,
                  version);
        return;
    }
    api_json(resp, 200, o);
}

static void delete_firmware(struct api *a, const char *rest, struct api_response *resp)
{
    char name[CATALOG_NAME_MAX], version[CATALOG_NAME_MAX];
    if (split_fw(rest, name, version, resp))
        return;
    int rc = catalog_delete(station_catalog(a->st), name, version);
    if (rc == -ENOENT) {
        api_error(resp, 404, "not_found", "firmware", "no firmware %s@%s in the catalog", name,
                  version);
        return;
    }
    if (rc < 0) {
        api_error(resp, 500, "internal", NULL, "cannot delete %s@%s: %s", name, version,
                  strerror(-rc));
        return;
    }
    station_catalog_changed(a->st);
    struct json_object *d = json_object_new_object();
    api_jadd(d, "name", json_object_new_string(name));
    api_jadd(d, "version", json_object_new_string(version));
    station_post_event(a->st, "firmware.deleted", NULL, NULL, 0,
                       json_object_to_json_string_ext(d, JSON_C_TO_STRING_PLAIN));
    struct json_object *o = json_object_new_object();
    api_jadd(o, "deleted", d);
    api_json(resp, 200, o);
}

/* ---- profiles ---------------------------------------------------------------------------- */

static struct json_object *profile_json(const struct config *cfg, const struct config_profile *p)
{
    struct json_object *o = json_object_new_object();
    api_jadd(o, "name", json_object_new_string(p->name));
    api_jadd(
        o, "active",
        json_object_new_boolean(cfg->active_profile && strcmp(cfg->active_profile, p->name) == 0));
    struct json_object *fw = json_object_new_object();
    for (size_t i = 0; i < p->n_firmware; i++) {
        char key[32], ref[2 * CATALOG_NAME_MAX + 2];
        chip_key(p->firmware[i].chip, key, sizeof(key));
        snprintf(ref, sizeof(ref), "%s@%s", p->firmware[i].name, p->firmware[i].version);
        api_jadd(fw, key, json_object_new_string(ref));
    }
    api_jadd(o, "firmware", fw);
    api_jadd(o, "erase_all", json_object_new_boolean(p->erase_all));
    api_jadd(o, "baud",
             p->baud_auto ? json_object_new_string("auto") : json_object_new_int64(p->baud));
    api_jadd(o, "baud_probe_after", json_object_new_int(p->baud_probe_after));
    api_jadd(o, "stub", json_object_new_boolean(p->stub));
    api_jadd(o, "compress", json_object_new_boolean(p->compress));
    api_jadd(o, "verify", json_object_new_boolean(p->verify));
    api_jadd(o, "skip_if_same", json_object_new_boolean(p->skip_if_same));
    api_jadd(o, "diff", json_object_new_boolean(p->diff));
    api_jadd(o, "retries", json_object_new_int(p->retries));
    api_jadd(o, "after", json_object_new_string(esp_after_to_string(p->after)));
    struct json_object *bc = NULL;
    if (p->boot_check.enabled) {
        bc = json_object_new_object();
        api_jadd(bc, "pattern", jstr(p->boot_check.pattern));
        api_jadd(bc, "timeout_ms", json_object_new_int(p->boot_check.timeout_ms));
        api_jadd(bc, "baud", json_object_new_int64(p->boot_check.baud));
        struct json_object *cap = json_object_new_array();
        for (size_t i = 0; i < p->boot_check.n_capture; i++)
            json_object_array_add(cap, json_object_new_string(p->boot_check.capture[i]));
        api_jadd(bc, "capture", cap);
    }
    api_jadd(o, "boot_check", bc);
    struct json_object *ofw = json_object_new_object();
    for (size_t i = 0; i < p->n_ota_firmware; i++) {
        char key[32], ref[2 * CATALOG_NAME_MAX + 2];
        chip_key(p->ota_firmware[i].chip, key, sizeof(key));
        snprintf(ref, sizeof(ref), "%s@%s", p->ota_firmware[i].name, p->ota_firmware[i].version);
        api_jadd(ofw, key, json_object_new_string(ref));
    }
    api_jadd(o, "ota_firmware", ofw);
    api_jadd(o, "require_signed", json_object_new_boolean(p->require_signed));
    api_jadd(o, "public_key", jstr(p->public_key)); /* ota_password is a secret: never shown */
    struct json_object *pbs = json_object_new_array();
    for (size_t i = 0; i < p->n_per_board; i++) {
        struct json_object *pb = json_object_new_object();
        char off[16];
        snprintf(off, sizeof(off), "0x%x", p->per_board[i].offset);
        api_jadd(pb, "name", json_object_new_string(p->per_board[i].name));
        api_jadd(pb, "offset", json_object_new_string(off));
        api_jadd(pb, "dir", json_object_new_string(p->per_board[i].dir));
        json_object_array_add(pbs, pb);
    }
    api_jadd(o, "per_board", pbs);
    if (p->serial.enabled) /* left out when none, as a PUT spells it */
        api_jadd(o, "serial", station_profile_serial_json(p));
    return o;
}

static void get_profiles(struct api *a, struct api_response *resp)
{
    const struct config *cfg = station_config(a->st);
    struct json_object *arr = json_object_new_array();
    for (size_t i = 0; i < cfg->n_profiles; i++)
        json_object_array_add(arr, profile_json(cfg, &cfg->profiles[i]));
    struct json_object *o = json_object_new_object();
    api_jadd(o, "active", jstr(cfg->active_profile));
    api_jadd(o, "persistence", json_object_new_string("data_dir"));
    char path[PATH_MAX + 32];
    api_jadd(o, "overlay_file",
             json_object_new_string(station_profiles_file(a->st, path, sizeof(path))));
    struct json_object *changed = json_object_new_array();
    for (size_t i = 0; i < cfg->n_profiles; i++)
        if (station_profile_overridden(a->st, cfg->profiles[i].name))
            json_object_array_add(changed, json_object_new_string(cfg->profiles[i].name));
    struct json_object *ov = json_object_new_object();
    api_jadd(ov, "profiles", changed);
    api_jadd(ov, "active", json_object_new_boolean(station_profile_overridden(a->st, NULL)));
    api_jadd(o, "overlay", ov);
    api_jadd(o, "profiles", arr);
    api_json(resp, 200, o);
}

static void get_profile(struct api *a, const char *name, struct api_response *resp)
{
    const struct config *cfg = station_config(a->st);
    const struct config_profile *p = config_profile(cfg, name);
    if (!p) {
        if (name)
            api_error(resp, 404, "not_found", "profile", "no profile \"%.64s\"", name);
        else
            api_error(resp, 404, "not_found", "profile", "no profile is active");
        return;
    }
    api_json(resp, 200, profile_json(cfg, p));
}

/* "config: profiles.x.baud: must be ..." -> field "baud" (after the profile's key path). */
static void config_field(const char *msg, const char *name, char *field, size_t len)
{
    char prefix[128];
    snprintf(prefix, sizeof(prefix), "profiles.%s.", name);
    const char *p = strstr(msg, prefix);
    field[0] = '\0';
    if (!p)
        return;
    p += strlen(prefix);
    size_t n = strcspn(p, ": ");
    if (n >= len)
        n = len - 1;
    memcpy(field, p, n);
    field[n] = '\0';
}

static bool profile_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64)
        return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '_' && *s != '-')
            return false;
    return true;
}

static void put_profile(struct api *a, const char *name, const struct api_request *rq,
                        struct api_response *resp)
{
    struct json_object *o;
    if (body_object(rq, resp, false, &o))
        return;
    if (!profile_name_ok(name)) {
        api_error(resp, 400, "bad_request", "name",
                  "profile names hold letters, digits, '_' and '-' only (1 to 64 characters)");
        json_object_put(o);
        return;
    }
    json_object_object_del(o, "name");
    json_object_object_del(o, "active");
    /* The config spells a disabled boot check by leaving it out. */
    struct json_object *bc;
    if (json_object_object_get_ex(o, "boot_check", &bc) && json_object_is_type(bc, json_type_null))
        json_object_object_del(o, "boot_check");
    if (json_object_object_get_ex(o, "public_key", &bc) && json_object_is_type(bc, json_type_null))
        json_object_object_del(o, "public_key");
    char err[512] = "";
    int rc = station_put_profile(
        a->st, name, json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN), err, sizeof(err));
    json_object_put(o);
    if (rc == -EINVAL) {
        char field[64];
        config_field(err, name, field, sizeof(field));
        api_error(resp, 422, "validation_failed", field[0] ? field : NULL, "%s", err);
        return;
    }
    if (rc < 0) {
        api_error(resp, 500, "internal", NULL, "%s", err[0] ? err : strerror(-rc));
        return;
    }
    get_profile(a, name, resp);
}

/* DELETE /profiles/{name} (name NULL: /profiles/active): drops the API's change. */
static void delete_profile(struct api *a, const char *name, struct api_response *resp)
{
    char err[512] = "";
    int rc = station_delete_profile(a->st, name, err, sizeof(err));
    if (rc == -ENOENT) {
        api_error(resp, 404, "not_found", "profile", "%s", err);
        return;
    }
    if (rc == -EALREADY) {
        api_error(resp, 409, "not_changed", "profile", "%s", err);
        return;
    }
    if (rc < 0) {
        api_error(resp, rc == -EINVAL ? 422 : 500, rc == -EINVAL ? "validation_failed" : "internal",
                  NULL, "%s", err[0] ? err : strerror(-rc));
        return;
    }
    const struct config *cfg = station_config(a->st);
    struct json_object *r = json_object_new_object();
    if (name) {
        const struct config_profile *p = config_profile(cfg, name);
        api_jadd(r, "name", json_object_new_string(name));
        api_jadd(r, "result", json_object_new_string(p ? "reverted" : "removed"));
        api_jadd(r, "profile", p ? profile_json(cfg, p) : NULL);
    } else {
        api_jadd(r, "result", json_object_new_string("reverted"));
    }
    api_jadd(r, "active", jstr(cfg->active_profile));
    api_json(resp, 200, r);
}

static void put_active(struct api *a, const struct api_request *rq, struct api_response *resp)
{
    struct json_object *o;
    if (body_object(rq, resp, false, &o))
        return;
    static const char *const keys[] = {"name", NULL};
    struct json_object *v;
    if (check_members(o, NULL, keys, resp))
        goto out;
    if (!json_object_object_get_ex(o, "name", &v)) {
        api_error(resp, 422, "validation_failed", "name",
                  "name: required (a profile name, or null for none)");
        goto out;
    }
    const char *name = NULL;
    if (!json_object_is_type(v, json_type_null)) {
        if (!json_object_is_type(v, json_type_string)) {
            api_error(resp, 422, "validation_failed", "name", "name: must be a string or null");
            goto out;
        }
        name = json_object_get_string(v);
    }
    char err[512] = "";
    int rc = station_set_active_profile(a->st, name, err, sizeof(err));
    if (rc == -ENOENT) {
        api_error(resp, 404, "not_found", "name", "%s", err);
        goto out;
    }
    if (rc < 0) {
        api_error(resp, rc == -EINVAL ? 422 : 500, rc == -EINVAL ? "validation_failed" : "internal",
                  NULL, "%s", err[0] ? err : strerror(-rc));
        goto out;
    }
    if (station_config(a->st)->active_profile) {
        get_profile(a, NULL, resp);
    } else {
        struct json_object *r = json_object_new_object();
        api_jadd(r, "active", NULL);
        api_json(resp, 200, r);
    }
out:
    json_object_put(o);
}

/* ---- route handlers (the table and the policy checks are in routes.c) ---------------------- */

struct station *api_station(struct api *a)
{
    return a->st;
}

const char *api_arg(const struct api_request *rq, const char *key)
{
    return arg(rq, key);
}

bool api_ctype_is(const char *ct, const char *want)
{
    return ctype_is(ct, want);
}

int api_parse_bool(const char *s)
{
    return parse_bool(s);
}

API_HANDLER(api_h_metrics)
{
    (void)rq;
    (void)p;
    api_get_metrics(a, resp);
}

API_HANDLER(api_h_slots)
{
    (void)p;
    get_slots(a, rq, resp);
}

API_HANDLER(api_h_slot)
{
    (void)rq;
    struct slot *s = find_slot(a, p->v[0], resp);
    if (s)
        api_json(resp, 200, api_slot_json(a->st, s));
}

/* POST /slots/{id}/{reflash|erase|info|reset}: the action is the path's last segment. */
API_HANDLER(api_h_slot_action)
{
    struct slot *s = find_slot(a, p->v[0], resp);
    if (s)
        slot_action(a, s, strrchr(rq->path, '/') + 1, rq, resp);
}

API_HANDLER(api_h_slot_reset_baud)
{
    struct slot *s = find_slot(a, p->v[0], resp);
    if (s)
        slot_reset_baud(a, s, rq, resp);
}

API_HANDLER(api_h_port_attach)
{
    (void)p;
    post_ports(a, rq, resp);
}

API_HANDLER(api_h_port_detach)
{
    (void)rq;
    delete_port(a, p->v[0], resp);
}

API_HANDLER(api_h_boards)
{
    (void)p;
    get_boards(a, rq, resp);
}

API_HANDLER(api_h_board)
{
    (void)rq;
    get_board(a, p->v[0], resp);
}

API_HANDLER(api_h_board_put)
{
    put_board(a, p->v[0], rq, resp);
}

API_HANDLER(api_h_board_address)
{
    post_board_address(a, p->v[0], rq, resp);
}

API_HANDLER(api_h_pools)
{
    (void)rq;
    (void)p;
    get_pools(a, resp);
}

API_HANDLER(api_h_jobs)
{
    (void)p;
    list_jobs(a, rq, resp, false);
}

API_HANDLER(api_h_job_start)
{
    (void)p;
    post_jobs(a, rq, resp);
}

API_HANDLER(api_h_job)
{
    (void)rq;
    get_job(a, p->v[0], resp);
}

API_HANDLER(api_h_job_cancel)
{
    (void)rq;
    cancel_job(a, p->v[0], resp);
}

API_HANDLER(api_h_firmware_list)
{
    (void)p;
    get_firmware_list(a, rq, resp);
}

/* Reached only when the HTTP layer did not take the body as an upload. */
API_HANDLER(api_h_firmware_upload)
{
    (void)a;
    (void)rq;
    (void)p;
    api_error(resp, 415, "unsupported_media_type", NULL,
              "upload a firmware set as multipart/form-data (a \"manifest\" part and one file "
              "part per region file) or as one .tar, .tar.gz or .zip bundle (Content-Type "
              "application/x-tar, application/gzip, application/zip or "
              "application/octet-stream)");
}

/* {name}/{version} as split_fw() expects it. */
static void fw_rest(const struct route_params *p, char *out, size_t len)
{
    snprintf(out, len, "%s/%s", p->v[0], p->v[1]);
}

API_HANDLER(api_h_firmware)
{
    (void)rq;
    char rest[ROUTE_MAX_PATH + 2];
    fw_rest(p, rest, sizeof(rest));
    get_firmware(a, rest, resp);
}

API_HANDLER(api_h_firmware_delete)
{
    (void)rq;
    char rest[ROUTE_MAX_PATH + 2];
    fw_rest(p, rest, sizeof(rest));
    delete_firmware(a, rest, resp);
}

API_HANDLER(api_h_profiles)
{
    (void)rq;
    (void)p;
    get_profiles(a, resp);
}

API_HANDLER(api_h_profile)
{
    (void)rq;
    get_profile(a, p->v[0], resp);
}

API_HANDLER(api_h_profile_put)
{
    put_profile(a, p->v[0], rq, resp);
}

API_HANDLER(api_h_profile_delete)
{
    (void)rq;
    delete_profile(a, p->v[0], resp);
}

API_HANDLER(api_h_profile_active)
{
    (void)rq;
    (void)p;
    get_profile(a, NULL, resp);
}

API_HANDLER(api_h_profile_active_put)
{
    (void)p;
    put_active(a, rq, resp);
}

API_HANDLER(api_h_profile_active_delete)
{
    (void)rq;
    (void)p;
    delete_profile(a, NULL, resp);
}

API_HANDLER(api_h_records)
{
    (void)p;
    const char *fmt = arg(rq, "format");
    if (fmt && strcmp(fmt, "csv") == 0)
        return records_csv(a, rq, resp);
    if (fmt && strcmp(fmt, "json") != 0)
        return (void)api_error(resp, 400, "bad_request", "format", "format: json (default) or csv");
    list_jobs(a, rq, resp, true);
}

API_HANDLER(api_h_counters)
{
    (void)p;
    const char *scope = arg(rq, "scope");
    if (scope && strcmp(scope, "station") != 0 && strcmp(scope, "line") != 0)
        return (void)api_error(resp, 400, "bad_request", "scope",
                               "scope: \"station\" (the default: this station's jobs) or "
                               "\"line\" (every station's on the shared database)");
    api_get_counters(a, scope && strcmp(scope, "line") == 0, resp);
}

/* The event stream: classified here, served by the HTTP layer (resp->sse). */
API_HANDLER(api_h_events)
{
    (void)a;
    (void)p;
    const char *id = rq->last_event_id;
    if (!id || !*id)
        id = arg(rq, "last_event_id");
    int64_t after = -1;
    if (id && *id && parse_i64(id, 0, INT64_MAX / 2, &after) < 0)
        return (void)api_error(resp, 400, "bad_request", "Last-Event-ID",
                               "Last-Event-ID: expected an event id (integer)");
    resp->sse = true;
    resp->sse_after = after;
    resp->status = 200;
}

/* ---- construction -------------------------------------------------------------------------- */

struct api *api_new(struct station *st)
{
    struct api *a = calloc(1, sizeof(*a));
    if (a)
        a->st = st;
    return a;
}

void api_free(struct api *a)
{
    if (!a)
        return;
    for (size_t i = 0; i < CACHE_ENTRIES; i++)
        free(a->cache[i].body);
    free(a);
}

void api_set_dry_run(struct api *a, bool dry_run)
{
    a->dry_run = dry_run;
}

struct api_metrics *api_metrics(struct api *a)
{
    return &a->m;
}

char *api_unescape(char *s)
{
    char *w = s;
    for (const char *r = s; *r; r++) {
        if (*r == '%' && isxdigit((unsigned char)r[1]) && isxdigit((unsigned char)r[2])) {
            char hex[3] = {r[1], r[2], 0};
            char c = (char)strtol(hex, NULL, 16);
            if (c == '\0')
                c = 0x7f; /* never cut a string short; a control byte the router refuses */
            *w++ = c;
            r += 2;
        } else {
            *w++ = *r;
        }
    }
    *w = '\0';
    return s;
}

size_t api_parse_query(char *buf, struct api_kv *args, size_t max)
{
    size_t n = 0;
    char *save = NULL;
    for (char *tok = strtok_r(buf, "&", &save); tok && n < max; tok = strtok_r(NULL, "&", &save)) {
        char *eq = strchr(tok, '=');
        if (eq)
            *eq = '\0';
        for (char *p = tok; *p; p++)
            if (*p == '+')
                *p = ' ';
        args[n].key = api_unescape(tok);
        if (eq) {
            for (char *p = eq + 1; *p; p++)
                if (*p == '+')
                    *p = ' ';
        }
        args[n].value = eq ? api_unescape(eq + 1) : NULL;
        n++;
    }
    return n;
}
