/*
 * api: see api.h. What the handler files share: responses and errors, JSON values, query
 * arguments, JSON request bodies, records failures and list paging; the api object itself;
 * and the handlers with no resource of their own (/metrics, /counters, /events).
 * The route table, its dispatcher and the policy checks are in routes.c; the handlers by
 * resource in api_slots.c, api_jobs.c, api_history.c, api_boards.c, api_firmware.c,
 * api_profiles.c, api_ota.c, api_line.c and api_blobs.c.
 *
 * Shapes are documented in docs/API.md (authoritative): change both together.
 * Absent values are JSON null, never -1 or "". Times are ISO-8601 UTC strings.
 */
#include "api.h"
#include "api_priv.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <json-c/json.h>

#include "records.h"

#define DEFAULT_LIMIT 100
#define MAX_LIMIT 1000

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

struct json_object *api_jstr(const char *s)
{
    return s && *s ? json_object_new_string(s) : NULL;
}

struct json_object *api_jint_opt(int64_t v)
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

const char *api_arg(const struct api_request *rq, const char *key)
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
int api_parse_bool(const char *s)
{
    if (!s)
        return -1;
    if (!strcasecmp(s, "true") || !strcmp(s, "1") || !strcasecmp(s, "yes"))
        return 1;
    if (!strcasecmp(s, "false") || !strcmp(s, "0") || !strcasecmp(s, "no"))
        return 0;
    return -1;
}

int api_parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out)
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

int api_paging(const struct api_request *rq, struct api_response *resp, int *limit, int *offset)
{
    int64_t v;
    *limit = DEFAULT_LIMIT;
    *offset = 0;
    const char *l = api_arg(rq, "limit"), *o = api_arg(rq, "offset");
    if (l) {
        if (api_parse_i64(l, 1, MAX_LIMIT, &v) < 0)
            return api_error(resp, 400, "bad_request", "limit",
                             "limit: expected an integer from 1 to %d", MAX_LIMIT);
        *limit = (int)v;
    }
    if (o) {
        if (api_parse_i64(o, 0, INT_MAX, &v) < 0)
            return api_error(resp, 400, "bad_request", "offset",
                             "offset: expected a non-negative integer");
        *offset = (int)v;
    }
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

int api_parse_mac_str(const char *s, char out[RECORDS_MAC_LEN])
{
    return api_parse_mac(s, s ? strlen(s) : 0, out);
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

bool api_ctype_is(const char *ct, const char *want)
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
int api_body_object(const struct api_request *rq, struct api_response *resp, bool allow_empty,
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
    if (!api_ctype_is(rq->content_type, "application/json"))
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

/* Refuses members not in allowed (NULL-terminated). prefix names the object in messages. */
int api_check_members(struct json_object *o, const char *prefix, const char *const *allowed,
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
int api_get_string(struct json_object *o, const char *key, const char *field, size_t maxlen,
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

int api_get_boolean(struct json_object *o, const char *key, const char *field, int *out,
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
int api_get_integer(struct json_object *o, const char *key, const char *field, int64_t lo,
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

struct json_object *api_event_json(const struct records_event *e)
{
    struct json_object *o = json_object_new_object();
    if (!o)
        return NULL;
    api_jadd(o, "id", json_object_new_int64(e->id));
    api_jadd(o, "ts", api_jtime(e->ts));
    api_jadd(o, "kind", json_object_new_string(e->kind));
    api_jadd(o, "slot", api_jstr(e->slot));
    api_jadd(o, "board", api_jstr(e->board_mac));
    api_jadd(o, "job", e->job_id > 0 ? json_object_new_int64(e->job_id) : NULL);
    api_jadd(o, "station", api_jstr(e->station));
    api_jadd(o, "data", e->data[0] ? json_tokener_parse(e->data) : NULL);
    return o;
}

bool api_fw_match(const char *want, const char *have)
{
    if (!want)
        return true;
    if (strchr(want, '@'))
        return strcmp(want, have) == 0;
    size_t n = strlen(want);
    return strncmp(want, have, n) == 0 && have[n] == '@';
}

bool api_page_take(struct api_list_ctx *c)
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

/* ---- route handlers (the table and the policy checks are in routes.c) ---------------------- */

struct station *api_station(struct api *a)
{
    return a->st;
}

API_HANDLER(api_h_metrics)
{
    (void)rq;
    (void)p;
    api_get_metrics(a, resp);
}

API_HANDLER(api_h_counters)
{
    (void)p;
    const char *scope = api_arg(rq, "scope");
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
        id = api_arg(rq, "last_event_id");
    int64_t after = -1;
    if (id && *id && api_parse_i64(id, 0, INT64_MAX / 2, &after) < 0)
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
