/*
 * station_serial: serial numbers in the daemon (station_serial.c): what the REST
 * API shows of them (docs/API.md). The allocation itself is station_priv.h's
 * station_take_serial(). Loop thread only.
 */
#ifndef ESPSTATION_STATION_SERIAL_H
#define ESPSTATION_STATION_SERIAL_H

struct station;
struct config_profile;
struct json_object;
struct records_error;

/* Adds to o a board's "serial" ({"profile", "number", "text", "job_id", "station",
 * "assigned"} of the active profile, else its newest; null when none) and "serials"
 * (all of them, newest first). 0, or < 0 with re. */
int station_board_serials_json(struct station *st, const char *mac, struct json_object *o,
                               struct records_error *re);

/* A profile's "serial" as the config spells it ({"format", "start"[, "offset"]}),
 * NULL when it has none. */
struct json_object *station_profile_serial_json(const struct config_profile *p);

#endif
