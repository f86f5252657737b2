/*
 * line: this station in a line of stations sharing one records database.
 *
 * Every line.heartbeat_s (config "line") the station writes its row in the
 * records' stations table (records_line.h): its address (the REST base URL the
 * other stations and the line view use), version, start time and a status JSON
 * object: {"slots": [{slot, state, mac, chip, job, kind, stage, done, total,
 * flagged}], "counters": {since, passed, failed, ...: this station's jobs since
 * local midnight}, "running", "max_parallel", "db": {the store's database work}}.
 * The same tick looks for stations whose heartbeat is older than
 * line.gone_after_s and takes over their unfinished jobs (interrupted, once,
 * whichever station gets there first; a station.gone event).
 *
 * On SQLite the line is this one station: the row is written all the same, so
 * GET /api/v1/line answers the same way.
 *
 * Threads: loop thread (a timer); each tick makes three short database calls
 * (heartbeat, counters, gone stations) and more only when a station is gone.
 */
#ifndef ESPSTATION_LINE_H
#define ESPSTATION_LINE_H

#include <stddef.h>
#include <stdint.h>

struct station;
struct loop;
struct line;

/* Starts the heartbeat: writes the first one now (before any job starts: a station that
 * restarts is "up" again before it records new jobs), then every line.heartbeat_s.
 * api_port: the REST API's bound port, for the default address. 0 or -errno (err). */
int line_new(struct station *st, struct loop *loop, const char *version, uint16_t api_port,
             struct line **out, char *err, size_t errlen);
/* This station's address as written in its row. */
const char *line_address(const struct line *l);
/* Stops the heartbeat. NULL allowed. */
void line_free(struct line *l);

/* The default address: "http[s]://<host>:<port>" with the listen host, or this machine's
 * name when the API listens on every address (0.0.0.0, ::). */
void line_default_address(const char *listen_host, uint16_t port, int tls, char *buf, size_t len);

#endif
