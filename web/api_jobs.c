/*
 * api_jobs: one job: its JSON view, starting it (POST /jobs and the slot actions reflash,
 * erase, info, reset), reading it with its log, and cancelling it. Lists of jobs are
 * api_history.c's. Shapes: docs/API.md.
 */
#include "api.h"
#include "api_priv.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <json-c/json.h>

#include "catalog.h"
#include "line_fw.h"
#include "records.h"
#include "slot.h"
#include "station.h"

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

struct json_object *api_job_json(struct station *st, const struct records_job *j)
{
    struct json_object *o = json_object_new_object();
    api_jadd(o, "id", json_object_new_int64(j->id));
    api_jadd(o, "kind", json_object_new_string(j->kind));
    api_jadd(o, "board", api_jstr(j->board_mac));
    api_jadd(o, "chip", NULL); /* filled by api_fill_chips(), outside the store's callbacks */
    api_jadd(o, "slot", api_jstr(j->slot));
    api_jadd(o, "station", api_jstr(j->station));
    api_jadd(o, "firmware", api_jstr(j->firmware));
    api_jadd(o, "state", json_object_new_string(records_job_state_to_string(j->state)));
    api_jadd(o, "stage", api_jstr(j->stage));
    api_jadd(o, "started_at", api_jtime(j->started_at));
    api_jadd(o, "ended_at", api_jtime(j->ended_at));
    const struct slot *s = j->ended_at ? NULL : station_slot_of_job(st, j->id);
    api_jadd(o, "progress", s ? api_progress_json(s->done, s->total, s->kbps) : NULL);
    api_jadd(o, "notice", s && s->notice[0] ? json_object_new_string(s->notice) : NULL);
    api_jadd(o, "bytes", api_jint_opt(j->bytes));
    api_jadd(o, "wire_bytes", api_jint_opt(j->wire_bytes));
    api_jadd(o, "skipped_bytes", api_jint_opt(j->skipped_bytes));
    api_jadd(o, "kbps", j->kbps >= 0 ? api_jdouble(j->kbps, 1) : NULL);
    api_jadd(o, "seconds", j->seconds >= 0 ? api_jdouble(j->seconds, 3) : NULL);
    api_jadd(o, "retries", json_object_new_int(j->retries));
    api_jadd(o, "result_code", j->ended_at ? json_object_new_int(j->result_code) : NULL);
    struct json_object *err = NULL;
    if (j->ended_at && (j->error_message[0] || j->error_stage[0])) {
        err = json_object_new_object();
        api_jadd(err, "stage", api_jstr(j->error_stage));
        api_jadd(err, "message", api_jstr(j->error_message));
        api_jadd(err, "advice", api_jstr(j->error_advice));
        api_jadd(err, "device_status", api_jint_opt(j->device_status));
        api_jadd(err, "device_error", api_jint_opt(j->device_error));
        api_jadd(err, "op", api_jint_opt(j->error_op));
        api_jadd(err, "address", api_jint_opt(j->error_address));
    }
    api_jadd(o, "error", err);
    return o;
}

/* Sets "chip" of every job object in arr (an array, or one job object) from its board. */
void api_fill_chips(struct station *st, struct json_object *arr)
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
        api_jadd(j, "chip", api_jstr(last_chip));
    }
}

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
    if (api_check_members(opts, "options", keys, resp))
        return resp->status;
    b = r->force;
    if (api_get_boolean(opts, "force", "options.force", &b, resp) > 1)
        return resp->status;
    r->force = b == 1;
    if (api_get_boolean(opts, "erase_all", "options.erase_all", &r->erase_all, resp) > 1 ||
        api_get_boolean(opts, "verify", "options.verify", &r->verify, resp) > 1)
        return resp->status;
    int rc = api_get_integer(opts, "baud", "options.baud", 9600, 5000000, false, &baud, resp);
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
    struct json_object *o = api_job_json(a->st, &j);
    api_fill_chips(a->st, o);
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
    if (api_body_object(rq, resp, true, &o))
        return;
    struct station_job_request r;
    char name[RECORDS_NAME_LEN], version[RECORDS_NAME_LEN];
    if (strcmp(action, "reflash") == 0) {
        init_request(&r, "flash");
        static const char *const keys[] = {"firmware", "force", "options", NULL};
        const char *fw = NULL;
        int force = 0;
        struct json_object *opts = NULL;
        if (api_check_members(o, NULL, keys, resp) ||
            api_get_string(o, "firmware", "firmware", 200, &fw, resp) > 1 ||
            api_get_boolean(o, "force", "force", &force, resp) > 1)
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
        if (api_check_members(o, NULL, keys, resp) ||
            api_get_boolean(o, "all", "all", &all, resp) > 1 ||
            api_get_integer(o, "offset", "offset", 0, 0x7ffff000, true, &off, resp) > 1 ||
            api_get_integer(o, "size", "size", 4096, 0x7ffff000, true, &size, resp) > 1)
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
        if (api_check_members(o, NULL, keys, resp))
            goto out;
    }
    start_request(a, s, &r, resp);
out:
    json_object_put(o);
}

static void post_jobs(struct api *a, const struct api_request *rq, struct api_response *resp)
{
    struct json_object *o;
    if (api_body_object(rq, resp, false, &o))
        return;
    static const char *const keys[] = {"slot", "board", "firmware", "options", NULL};
    const char *slot = NULL, *board = NULL, *fw = NULL;
    struct json_object *opts = NULL;
    struct station_job_request r;
    char name[RECORDS_NAME_LEN], version[RECORDS_NAME_LEN];
    init_request(&r, "flash");
    if (api_check_members(o, NULL, keys, resp) ||
        api_get_string(o, "slot", "slot", 300, &slot, resp) > 1 ||
        api_get_string(o, "board", "board", 32, &board, resp) > 1 ||
        api_get_string(o, "firmware", "firmware", 200, &fw, resp) > 1)
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
        if (api_parse_mac_str(board, mac) < 0) {
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
        s = (struct slot *)api_slot_with_board(a->st, mac);
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
    return api_parse_i64(s, 1, INT64_MAX / 2, id);
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
    struct json_object *o = api_job_json(a->st, &j);
    api_fill_chips(a->st, o);
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
    struct json_object *o = api_job_json(a->st, &j);
    api_fill_chips(a->st, o);
    api_json(resp, rc == 1 ? 200 : 202, o);
}

/* POST /slots/{id}/{reflash|erase|info|reset}: the action is the path's last segment. */
API_HANDLER(api_h_slot_action)
{
    struct slot *s = api_find_slot(a, p->v[0], resp);
    if (s)
        slot_action(a, s, strrchr(rq->path, '/') + 1, rq, resp);
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
