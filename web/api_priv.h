/*
 * api_priv: what the API's files share (routes.c, api.c, api_ota.c): the
 * route handlers the table in routes.c points to, and a few helpers.
 * Loop thread only.
 */
#ifndef ESPSTATION_API_PRIV_H
#define ESPSTATION_API_PRIV_H

#include <stdbool.h>

#include "api.h"
#include "routes.h"

struct station;

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

/* api_ota.c */
API_HANDLER(api_h_board_target);
API_HANDLER(api_h_board_ota);
API_HANDLER(api_h_board_ota_push);
API_HANDLER(api_h_bulk_list);
API_HANDLER(api_h_bulk_start);
API_HANDLER(api_h_bulk);
API_HANDLER(api_h_bulk_cancel);

#endif
