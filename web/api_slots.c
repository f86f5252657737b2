/*
 * api_slots: the slots and their ports: a slot's JSON view (api_slot_json, also the event
 * stream's), GET /slots and /slots/{id}, attaching and detaching ports, and resetting a slot's
 * learnt baud limit. Starting jobs on a slot is api_jobs.c's. Shapes: docs/API.md.
 */
#include "api.h"
#include "api_priv.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <json-c/json.h>

#include "records.h"
#include "slot.h"
#include "station.h"
#include "transport.h"

struct json_object *api_progress_json(uint64_t done, uint64_t total, double kbps)
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
    api_jadd(o, "label", api_jstr(s->label));
    api_jadd(o, "uri", api_jstr(s->uri));
    api_jadd(o, "present", json_object_new_boolean(s->present));
    api_jadd(o, "manual", json_object_new_boolean(s->manual || strncmp(s->key, "uri:", 4) == 0));
    api_jadd(o, "usb_jtag", json_object_new_boolean(s->usb_jtag));
    api_jadd(o, "phase", json_object_new_string(board_phase_to_string(s->phase)));
    api_jadd(o, "busy", json_object_new_boolean(station_slot_busy(st, s)));
    api_jadd(o, "stage", api_jstr(s->stage));
    /* What the running job waits for from the technician (hold BOOT, tap EN), else null. */
    api_jadd(o, "notice", s->notice[0] ? json_object_new_string(s->notice) : NULL);
    api_jadd(o, "progress", s->job ? api_progress_json(s->done, s->total, s->kbps) : NULL);
    api_jadd(o, "mac", api_jstr(s->mac));
    api_jadd(o, "chip", api_jstr(s->chip));
    api_jadd(o, "firmware", api_jstr(s->firmware));
    api_jadd(o, "job_id", s->job_id > 0 ? json_object_new_int64(s->job_id) : NULL);
    api_jadd(o, "job_kind", api_jstr(station_slot_job_kind(st, s)));
    api_jadd(o, "elapsed_ms", api_jint_opt(station_slot_elapsed_ms(st, s)));
    /* From the board's record and the last job (cheap indexed lookups). */
    struct records_board b;
    struct records_error re;
    bool have_board = s->mac[0] && records_board_get(station_records(st), s->mac, &b, &re) == 0;
    api_jadd(o, "ip", have_board ? api_jstr(b.ip) : NULL);
    api_jadd(o, "running_version", have_board ? api_jstr(b.running_version) : NULL);
    /* What the board carries now (its record): differs from `firmware` (the slot's last job)
     * after an update over the network. */
    api_jadd(o, "board_firmware", have_board ? api_jstr(b.current_firmware) : NULL);
    struct records_job lj;
    bool have_job = !s->job && s->job_id > 0 &&
                    records_job_get(station_records(st), s->job_id, &lj, &re) == 0 && lj.ended_at;
    api_jadd(o, "last_seconds", have_job && lj.seconds >= 0 ? api_jdouble(lj.seconds, 1) : NULL);
    struct json_object *err = NULL;
    if (s->error[0]) {
        err = json_object_new_object();
        api_jadd(err, "stage", have_job ? api_jstr(lj.error_stage) : api_jstr(s->stage));
        api_jadd(err, "message", json_object_new_string(s->error));
        api_jadd(err, "advice", api_jstr(s->advice));
        api_jadd(err, "device_status", api_jint_opt(s->device_status));
        api_jadd(err, "device_error", api_jint_opt(s->device_error));
    }
    api_jadd(o, "error", err);
    api_jadd(o, "failures", json_object_new_int(s->failures));
    api_jadd(o, "flagged", json_object_new_boolean(s->flagged));
    api_jadd(o, "attempt", json_object_new_int(s->attempt));
    api_jadd(o, "baud_limit", s->baud_limit ? json_object_new_int64(s->baud_limit) : NULL);
    api_jadd(o, "adapter_baud", s->adapter_baud ? json_object_new_int64(s->adapter_baud) : NULL);
    return o;
}

const struct slot *api_slot_with_board(struct station *st, const char *mac)
{
    const struct slot_table *t = station_slots(st);
    for (size_t i = 0; i < t->n; i++)
        if (t->v[i]->present && strcmp(t->v[i]->mac, mac) == 0)
            return t->v[i];
    return NULL;
}

static void get_slots(struct api *a, const struct api_request *rq, struct api_response *resp)
{
    const char *phase = api_arg(rq, "phase"), *chip = api_arg(rq, "chip");
    int present = api_parse_bool(api_arg(rq, "present")),
        busy = api_parse_bool(api_arg(rq, "busy"));
    if (api_arg(rq, "present") && present < 0) {
        api_error(resp, 400, "bad_request", "present", "present: expected true or false");
        return;
    }
    if (api_arg(rq, "busy") && busy < 0) {
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

struct slot *api_find_slot(struct api *a, const char *id, struct api_response *resp)
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
    if (api_body_object(rq, resp, false, &o))
        return;
    static const char *const keys[] = {"uri", "label", NULL};
    const char *uri = NULL, *label = NULL;
    int rc;
    if (api_check_members(o, NULL, keys, resp) ||
        (rc = api_get_string(o, "uri", "uri", 240, &uri, resp)) < 0 || rc > 1 ||
        api_get_string(o, "label", "label", 64, &label, resp) > 1)
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
    api_jadd(d, "label", api_jstr(label));
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
    struct slot *s = api_find_slot(a, id, resp);
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

/* POST /slots/{id}/reset-baud: forget the slot's learnt baud limit (link back-off). No
 * job is started; the answer is the slot. */
static void slot_reset_baud(struct api *a, struct slot *s, const struct api_request *rq,
                            struct api_response *resp)
{
    struct json_object *o;
    if (api_body_object(rq, resp, true, &o))
        return;
    static const char *const keys[] = {NULL};
    if (!api_check_members(o, NULL, keys, resp)) {
        station_slot_reset_baud(a->st, s);
        api_json(resp, 200, api_slot_json(a->st, s));
    }
    json_object_put(o);
}

API_HANDLER(api_h_slots)
{
    (void)p;
    get_slots(a, rq, resp);
}

API_HANDLER(api_h_slot)
{
    (void)rq;
    struct slot *s = api_find_slot(a, p->v[0], resp);
    if (s)
        api_json(resp, 200, api_slot_json(a->st, s));
}

API_HANDLER(api_h_slot_reset_baud)
{
    struct slot *s = api_find_slot(a, p->v[0], resp);
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
