/*
 * api_line: GET /api/v1/line, the line of stations sharing this station's records
 * database (daemon/line.h writes each station's row): every station with its
 * address, version, last heartbeat, its age, "up" or "gone" (older than this
 * station's line.gone_after_s), its slots and counters as that station wrote them.
 * On SQLite the line is this station alone. Loop thread only.
 */
#include "api.h"
#include "api_priv.h"

#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "config.h"
#include "records.h"
#include "records_line.h"
#include "station.h"

struct line_ctx {
    struct json_object *list;
    int64_t now;
    int64_t gone_ms;
    const char *self;
};

static void copy_key(struct json_object *to, struct json_object *from, const char *key,
                     const char *as)
{
    struct json_object *v;
    if (from && json_object_object_get_ex(from, key, &v))
        api_jadd(to, as, json_object_get(v));
}

static int station_cb(const struct records_station *s, void *ctx)
{
    struct line_ctx *c = ctx;
    struct json_object *o = json_object_new_object();
    struct json_object *status = s->status[0] ? json_tokener_parse(s->status) : NULL;
    if (status && !json_object_is_type(status, json_type_object)) {
        json_object_put(status);
        status = NULL;
    }
    int64_t age = c->now - s->heartbeat_at;
    bool gone = age > c->gone_ms;
    api_jadd(o, "name", json_object_new_string(s->name));
    api_jadd(o, "address", s->address[0] ? json_object_new_string(s->address) : NULL);
    api_jadd(o, "version", s->version[0] ? json_object_new_string(s->version) : NULL);
    api_jadd(o, "started_at", s->started_at ? api_jtime(s->started_at) : NULL);
    api_jadd(o, "heartbeat_at", api_jtime(s->heartbeat_at));
    api_jadd(o, "age_s", api_jdouble(age > 0 ? (double)age / 1000.0 : 0.0, 1));
    api_jadd(o, "state", json_object_new_string(gone ? "gone" : "up"));
    api_jadd(o, "this", json_object_new_boolean(!strcmp(s->name, c->self)));
    struct json_object *v;
    if (status && json_object_object_get_ex(status, "slots", &v))
        api_jadd(o, "slots", json_object_get(v));
    else
        api_jadd(o, "slots", json_object_new_array());
    if (status && json_object_object_get_ex(status, "counters", &v))
        api_jadd(o, "counters", json_object_get(v));
    else
        api_jadd(o, "counters", json_object_new_object());
    copy_key(o, status, "running", "running");
    copy_key(o, status, "max_parallel", "max_parallel");
    copy_key(o, status, "backend", "backend");
    copy_key(o, status, "db", "db");
    /* Who found it gone and what was taken over (until it heartbeats again). */
    copy_key(o, status, "gone", "gone_mark");
    json_object_put(status);
    json_object_array_add(c->list, o);
    return 0;
}

API_HANDLER(api_h_line)
{
    (void)rq;
    (void)p;
    struct station *st = api_station(a);
    struct records *r = station_records(st);
    const struct config *cfg = station_config(st);
    struct records_error re;
    struct line_ctx c = {
        .list = json_object_new_array(),
        .now = records_now_ms(r),
        .gone_ms = (int64_t)cfg->line.gone_after_s * 1000,
        .self = station_name(st),
    };
    /* The database gone: the view still answers, with this station's journal, so the
     * technician sees why the line is blank and that nothing is lost. */
    struct records_journal_status js;
    bool have_js = records_journal_status(r, &js) == 0;
    bool listed = records_station_list(r, station_cb, &c, &re) >= 0;
    if (!listed && !(have_js && !js.connected)) {
        json_object_put(c.list);
        api_records_fail(resp, &re);
        return;
    }
    struct json_object *db = json_object_new_object();
    api_jadd(db, "connected", json_object_new_boolean(listed));
    api_jadd(db, "error", listed ? NULL : json_object_new_string(re.message));
    if (have_js) {
        struct json_object *j = json_object_new_object();
        api_jadd(j, "pending", json_object_new_int64(js.pending));
        api_jadd(j, "bytes", json_object_new_int64(js.bytes));
        api_jadd(j, "journaled", json_object_new_int64(js.journaled));
        api_jadd(j, "replayed", json_object_new_int64(js.replayed));
        api_jadd(j, "dropped", json_object_new_int64(js.dropped));
        api_jadd(j, "reserved_ids", json_object_new_int64(js.reserved_ids));
        api_jadd(j, "last_error", js.last_error[0] ? json_object_new_string(js.last_error) : NULL);
        api_jadd(db, "journal", j);
    }
    struct json_object *o = json_object_new_object();
    api_jadd(o, "database", db);
    api_jadd(o, "this", json_object_new_string(station_name(st)));
    api_jadd(o, "tls", api_tls_json(a)); /* this station's certificates, null plain HTTP */
    api_jadd(o, "backend", json_object_new_string(records_backend_to_string(records_backend(r))));
    api_jadd(o, "heartbeat_s", json_object_new_int(cfg->line.heartbeat_s));
    api_jadd(o, "gone_after_s", json_object_new_int(cfg->line.gone_after_s));
    api_jadd(o, "now", api_jtime(c.now));
    api_jadd(o, "stations", c.list);
    api_json(resp, 200, o);
}
