/*
 * api_boards: the boards the records know: their JSON view, GET /boards (filtered, paged and
 * micro-cached), GET /boards/{mac} with its jobs, per-board data and OTA state, PUT (notes,
 * groups) and the operator's address confirmation. Shapes: docs/API.md.
 */
#include "api.h"
#include "api_priv.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>

#include "board_addr.h"
#include "ota.h"
#include "records.h"
#include "slot.h"
#include "station.h"
#include "station_serial.h"

#define CACHE_MAX_AGE_MS 1000

static struct json_object *board_json(struct station *st, const struct records_board *b)
{
    struct json_object *o = json_object_new_object();
    api_jadd(o, "mac", json_object_new_string(b->mac));
    api_jadd(o, "chip", api_jstr(b->chip));
    api_jadd(o, "revision", api_jint_opt(b->revision));
    api_jadd(o, "flash_id", api_jint_opt(b->flash_id));
    api_jadd(o, "flash_size", api_jint_opt(b->flash_size));
    api_jadd(o, "crystal_mhz", api_jint_opt(b->crystal_mhz));
    api_jadd(o, "first_seen", api_jtime(b->first_seen));
    api_jadd(o, "last_seen", api_jtime(b->last_seen));
    api_jadd(o, "slot", api_jstr(b->slot));
    const struct slot *s = api_slot_with_board(st, b->mac);
    api_jadd(o, "present_on", s ? json_object_new_string(slot_name(s)) : NULL);
    api_jadd(o, "current_firmware", api_jstr(b->current_firmware));
    api_jadd(o, "current_md5", api_jstr(b->current_md5));
    api_jadd(o, "ip", api_jstr(b->ip));
    /* how far the station trusts ip (daemon/board_addr.h): pushes need it confirmed */
    api_jadd(o, "ip_confirmed", json_object_new_boolean(b->ip_confirmed));
    api_jadd(o, "ip_source", api_jstr(b->ip_source));
    api_jadd(o, "ip_claim", api_jstr(b->ip_claim));
    api_jadd(o, "ip_claim_source", b->ip_claim[0] ? api_jstr(b->ip_claim_source) : NULL);
    api_jadd(o, "running_version", api_jstr(b->running_version));
    api_jadd(o, "target_firmware", api_jstr(b->target_firmware));
    api_jadd(o, "online_state", api_jstr(b->online_state));
    api_jadd(o, "notes", api_jstr(b->notes));
    struct json_object *groups = json_object_new_array();
    for (int i = 0; i < b->n_groups; i++)
        json_object_array_add(groups, json_object_new_string(b->groups[i]));
    api_jadd(o, "groups", groups);
    return o;
}

static int board_cb(const struct records_board *b, void *ctx)
{
    struct api_list_ctx *c = ctx;
    if (!api_fw_match(c->fw, b->current_firmware))
        return 0;
    if (c->state && strcmp(c->state, b->online_state) != 0)
        return 0;
    if (c->slot && strcmp(c->slot, b->slot) != 0)
        return 0;
    if (c->present >= 0 && (api_slot_with_board(c->a->st, b->mac) != NULL) != (c->present == 1))
        return 0;
    if (!api_page_take(c))
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
    if (api_paging(rq, resp, &limit, &offset))
        return;
    struct api_list_ctx c = {.a = a, .present = -1};
    c.fw = api_arg(rq, "firmware");
    c.state = api_arg(rq, "state");
    c.slot = api_arg(rq, "slot");
    if (api_arg(rq, "present") && (c.present = api_parse_bool(api_arg(rq, "present"))) < 0) {
        api_error(resp, 400, "bad_request", "present", "present: expected true or false");
        return;
    }
    struct records_board_filter f = {.chip = api_arg(rq, "chip"), .group = api_arg(rq, "group")};
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

static int pool_item_cb(const struct records_pool_item *it, void *ctx)
{
    struct json_object *o = json_object_new_object();
    api_jadd(o, "pool", json_object_new_string(it->pool));
    api_jadd(o, "file", json_object_new_string(it->file));
    api_jadd(o, "md5", api_jstr(it->md5));
    api_jadd(o, "job_id", it->job_id > 0 ? json_object_new_int64(it->job_id) : NULL);
    api_jadd(o, "assigned", api_jtime(it->assigned_at));
    json_object_array_add(ctx, o);
    return 0;
}

static int history_cb(const struct records_job *j, void *ctx)
{
    struct api_list_ctx *c = ctx;
    json_object_array_add(c->arr, api_job_json(c->a->st, j));
    return 0;
}

static void get_board(struct api *a, const char *m, struct api_response *resp)
{
    char mac[RECORDS_MAC_LEN];
    if (api_parse_mac_str(m, mac) < 0) {
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
    struct api_list_ctx c = {.a = a, .arr = json_object_new_array()};
    if (records_job_list(station_records(a->st), &f, history_cb, &c, &re) < 0) {
        json_object_put(c.arr);
        json_object_put(o);
        api_records_fail(resp, &re);
        return;
    }
    api_fill_chips(a->st, c.arr);
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

/* PUT /api/v1/boards/{mac}: {"notes": "..." | null, "groups": ["line-a", ...] | null}, each
 * member optional (absent: unchanged; null: cleared). Validates everything before writing. */
static void put_board(struct api *a, const char *m, const struct api_request *rq,
                      struct api_response *resp)
{
    char mac[RECORDS_MAC_LEN];
    if (api_parse_mac_str(m, mac) < 0) {
        api_error(resp, 400, "bad_request", "mac",
                  "expected a MAC address like 24:6f:28:7a:d8:84, got \"%.40s\"", m);
        return;
    }
    struct json_object *body = NULL, *v;
    if (api_body_object(rq, resp, false, &body))
        return;
    static const char *const keys[] = {"notes", "groups", NULL};
    const char *notes = NULL, *names[RECORDS_GROUPS_MAX];
    bool set_notes = false, set_groups = false;
    size_t n = 0;
    if (api_check_members(body, NULL, keys, resp))
        goto out;
    if (json_object_object_get_ex(body, "notes", &v)) {
        set_notes = true;
        if (api_get_string(body, "notes", "notes", RECORDS_TEXT_LEN - 1, &notes, resp) > 1)
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
        api_jadd(ev, "notes", api_jstr(b.notes));
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
    if (api_parse_mac_str(m, mac) < 0) {
        api_error(resp, 400, "bad_request", "mac",
                  "expected a MAC address like 24:6f:28:7a:d8:84, got \"%.40s\"", m);
        return;
    }
    struct json_object *body = NULL, *v;
    if (api_body_object(rq, resp, false, &body))
        return;
    static const char *const keys[] = {"ip", "accept_claim", NULL};
    const char *want = NULL;
    int accept = 0;
    if (api_check_members(body, NULL, keys, resp) ||
        api_get_boolean(body, "accept_claim", "accept_claim", &accept, resp) > 1)
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
