/*
 * api_priv: what the API's files share (routes.c, api.c and the api_*.c handler files): the
 * route handlers the table in routes.c points to, and the helpers they share.
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
struct records_job;
struct slot;

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
    int64_t api_tls_not_after; /* api_set_tls_expiry; 0 plain HTTP */
    char api_tls_subject[160];
    uint64_t gen;
    struct cache_entry cache[CACHE_ENTRIES];
    size_t cache_next;
};

/* ---- api_tls.c ---- */
/* {"api": Cert|null, "ota": Cert|null} (Cert: not_after, subject, days_left), or NULL when
 * both servers speak plain HTTP. */
struct json_object *api_tls_json(struct api *a);

/* ---- api.c: the helpers every handler file shares ---- */
void api_set_body(struct api_response *resp, int status, const char *ctype, const char *text,
                  size_t len);
struct json_object *api_jtime(int64_t ms);
struct json_object *api_jdouble(double v, int decimals);
void api_jadd(struct json_object *o, const char *k, struct json_object *v);
bool api_streq(const char *a, const char *b);
int api_records_fail(struct api_response *resp, const struct records_error *re);

/* s as a JSON string; null when NULL or "". */
struct json_object *api_jstr(const char *s);
/* v as a JSON integer; null when negative (absent). */
struct json_object *api_jint_opt(int64_t v);

/* A decimal integer from lo to hi into *out: 0, or -EINVAL. */
int api_parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out);
/* The limit and offset arguments (defaults 100 and 0): 0, or the status written. */
int api_paging(const struct api_request *rq, struct api_response *resp, int *limit, int *offset);
/* api_parse_mac() of a NUL-terminated string (NULL allowed: -EINVAL). */
int api_parse_mac_str(const char *s, char out[18]);

/* JSON body members (the body from api_body_object()). Refuses members not in allowed
 * (NULL-terminated); prefix names the object in messages. 0 or the status written. */
int api_check_members(struct json_object *o, const char *prefix, const char *const *allowed,
                      struct api_response *resp);
/* Optional members: 0 absent (or null), 1 present (*out), or the error status written.
 * api_get_integer takes a string holding a number ("0x1000") too when hex_string. */
int api_get_string(struct json_object *o, const char *key, const char *field, size_t maxlen,
                   const char **out, struct api_response *resp);
int api_get_boolean(struct json_object *o, const char *key, const char *field, int *out,
                    struct api_response *resp);
int api_get_integer(struct json_object *o, const char *key, const char *field, int64_t lo,
                    int64_t hi, bool hex_string, int64_t *out, struct api_response *resp);

/* A list of boards or jobs being built from the records' callbacks: the filters the
 * records query cannot apply, and the paging done here when post-filtering. */
struct api_list_ctx {
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

/* firmware "name@version" matches want, an exact "name@version" or a "name" (any version);
 * NULL matches anything. */
bool api_fw_match(const char *want, const char *have);
/* Paging of a post-filtered list: whether this item goes in (skips offset, stops at limit). */
bool api_page_take(struct api_list_ctx *c);

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
API_HANDLER(api_h_counters);
API_HANDLER(api_h_events);

/* api_slots.c */
/* A slot's progress object (null when nothing to report); also a running job's. */
struct json_object *api_progress_json(uint64_t done, uint64_t total, double kbps);
/* The slot the board mac is present on, or NULL. */
const struct slot *api_slot_with_board(struct station *st, const char *mac);
/* The slot named id; NULL with a 404 written into resp. */
struct slot *api_find_slot(struct api *a, const char *id, struct api_response *resp);
API_HANDLER(api_h_slots);
API_HANDLER(api_h_slot);
API_HANDLER(api_h_slot_reset_baud);
API_HANDLER(api_h_port_attach);
API_HANDLER(api_h_port_detach);

/* api_jobs.c */
/* A job's JSON view; "chip" is null until api_fill_chips() (outside the store's callbacks). */
struct json_object *api_job_json(struct station *st, const struct records_job *j);
/* Sets "chip" of every job object in arr (an array, or one job object) from its board. */
void api_fill_chips(struct station *st, struct json_object *arr);
API_HANDLER(api_h_slot_action); /* reflash, erase, info, reset: the last path segment */
API_HANDLER(api_h_job_start);
API_HANDLER(api_h_job);
API_HANDLER(api_h_job_cancel);

/* api_history.c */
API_HANDLER(api_h_jobs);
API_HANDLER(api_h_records);

/* api_boards.c */
API_HANDLER(api_h_boards);
API_HANDLER(api_h_board);
API_HANDLER(api_h_board_put);
API_HANDLER(api_h_board_address);

/* api_firmware.c */
API_HANDLER(api_h_firmware_list);
API_HANDLER(api_h_firmware_upload); /* reached only when the body is not an upload */
API_HANDLER(api_h_firmware);
API_HANDLER(api_h_firmware_delete);

/* api_profiles.c */
API_HANDLER(api_h_profiles);
API_HANDLER(api_h_profile);
API_HANDLER(api_h_profile_put);
API_HANDLER(api_h_profile_delete);
API_HANDLER(api_h_profile_active);
API_HANDLER(api_h_profile_active_put);
API_HANDLER(api_h_profile_active_delete);
API_HANDLER(api_h_pools);

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
