/*
 * api_priv: what the API's files share (routes.c, api.c, api_ota.c, api_metrics.c): the
 * route handlers the table in routes.c points to, and a few helpers.
 * Loop thread only.
 */
#ifndef ESPSTATION_API_PRIV_H
#define ESPSTATION_API_PRIV_H

#include <stdbool.h>

#include "api.h"
#include "routes.h"

struct station;

#include <stddef.h>
#include <stdint.h>

struct json_object;
struct records_error;

#define CACHE_ENTRIES 8

/*
 * A micro-cache for GET /api/v1/boards (the status page's and scripts' most
 * polled list): an answer is reused until anything changes -- every journal
 * event and every slot change (api_invalidate, from the station hooks) -- and
 * for at most CACHE_MAX_AGE_MS, which bounds the staleness of the few board
 * record updates that no event follows at once.
 */
struct cache_entry {
    char key[512];
    char *body;
    size_t len;
    uint64_t gen;
    int64_t at_ms;
};

struct api {
    struct station *st;
    bool dry_run;
    int64_t fake_job_id; /* dry run */
    struct api_metrics m;
    struct ota_metric {
        char name[16]; /* "pulls", "pushes", "bulk" */
        char l1[24], l2[24];
        uint64_t n;
    } ota_m[64]; /* /metrics OTA counters from events (api_note_event) */
    size_t n_ota_m;
    uint64_t ota_served_bytes, ota_pushed_bytes;
    uint64_t gen;
    struct cache_entry cache[CACHE_ENTRIES];
    size_t cache_next;
};

/* api.c helpers shared with api_metrics.c */
void api_set_body(struct api_response *resp, int status, const char *ctype, const char *text,
                  size_t len);
struct json_object *api_jtime(int64_t ms);
struct json_object *api_jdouble(double v, int decimals);
void api_jadd(struct json_object *o, const char *k, struct json_object *v);
bool api_streq(const char *a, const char *b);
int api_records_fail(struct api_response *resp, const struct records_error *re);

/* api_metrics.c */
/* line: every station's jobs on the shared database, else this station's. */
void api_get_counters(struct api *a, bool line, struct api_response *resp);
void api_get_metrics(struct api *a, struct api_response *resp);

struct station *api_station(struct api *a);

/* The value of query parameter key ("" for a key without '='), NULL when absent. */
const char *api_arg(const struct api_request *rq, const char *key);

/* "true"/"1"/"yes" -> 1, "false"/"0"/"no" -> 0, else -1. */
int api_parse_bool(const char *s);

/* The media type of a Content-Type value is want (parameters after ';' ignored). */
bool api_ctype_is(const char *ct, const char *want);

/* Every handler has this signature; p holds the pattern's captures. */
#define API_HANDLER(name)                                                                          \
    void name(struct api *a, const struct api_request *rq, const struct route_params *p,           \
              struct api_response *resp)

/* api.c */
API_HANDLER(api_h_metrics);
API_HANDLER(api_h_slots);
API_HANDLER(api_h_slot);
API_HANDLER(api_h_slot_action); /* reflash, erase, info, reset: the last path segment */
API_HANDLER(api_h_slot_reset_baud);
API_HANDLER(api_h_port_attach);
API_HANDLER(api_h_port_detach);
API_HANDLER(api_h_boards);
API_HANDLER(api_h_board);
API_HANDLER(api_h_board_put);
API_HANDLER(api_h_board_address);
API_HANDLER(api_h_pools);
API_HANDLER(api_h_jobs);
API_HANDLER(api_h_job_start);
API_HANDLER(api_h_job);
API_HANDLER(api_h_job_cancel);
API_HANDLER(api_h_firmware_list);
API_HANDLER(api_h_firmware_upload); /* reached only when the body is not an upload */
API_HANDLER(api_h_firmware);
API_HANDLER(api_h_firmware_delete);
API_HANDLER(api_h_profiles);
API_HANDLER(api_h_profile);
API_HANDLER(api_h_profile_put);
API_HANDLER(api_h_profile_delete);
API_HANDLER(api_h_profile_active);
API_HANDLER(api_h_profile_active_put);
API_HANDLER(api_h_profile_active_delete);
API_HANDLER(api_h_records);
API_HANDLER(api_h_counters);
API_HANDLER(api_h_events);

/* api_line.c */
API_HANDLER(api_h_line);

/* api_blobs.c */
API_HANDLER(api_h_blob);

/* api_ota.c */
API_HANDLER(api_h_board_target);
API_HANDLER(api_h_board_ota);
API_HANDLER(api_h_board_ota_push);
API_HANDLER(api_h_bulk_list);
API_HANDLER(api_h_bulk_start);
API_HANDLER(api_h_bulk);
API_HANDLER(api_h_bulk_cancel);

#endif
