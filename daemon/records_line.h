/*
 * records_line: the line of stations in the records store (schema 7's `stations`
 * table): each station's heartbeat row, the list the line view shows, and taking
 * over the unfinished jobs of a station that stopped heartbeating.
 *
 * A station writes its row every heartbeat (records_station_heartbeat); a station
 * whose row is older than the line's gone_after is gone. The first station that
 * sees it (records_jobs_interrupt_station) marks the gone station's queued and
 * running jobs 'interrupted', each with a job.interrupted event naming the
 * station that did it and why, and records one station.gone event, in one
 * transaction that re-checks the row under a lock: however many stations look,
 * each job is interrupted once and the station is reported gone once per death
 * (its next heartbeat clears the mark).
 *
 * Also here: counters of this store's database work (round trips, time per
 * operation, p99), for the line status and the benchmark.
 *
 * Threads: the store's one thread, as records.h.
 */
#ifndef ESPSTATION_RECORDS_LINE_H
#define ESPSTATION_RECORDS_LINE_H

#include <stdbool.h>
#include <stdint.h>

#include "records.h"

#define RECORDS_ADDRESS_LEN 256       /* a station's REST base URL */
#define RECORDS_LINE_STATUS_LEN 32768 /* a station's status JSON */

struct records_station {
    char name[RECORDS_STATION_LEN];
    char address[RECORDS_ADDRESS_LEN]; /* "http://10.0.0.5:8080", "" unknown */
    char version[RECORDS_NAME_LEN];
    int64_t started_at;   /* unix ms, 0 unknown */
    int64_t heartbeat_at; /* unix ms of its last heartbeat */
    /* JSON object text as the station wrote it ({"slots": [...], "counters": {...}}), with
     * "gone": {"by", "at", "jobs", "reason"} added by the station that found it gone;
     * "" none. */
    char status[RECORDS_LINE_STATUS_LEN];
};

/* Upserts this store's station row (records_station(r); -EINVAL for an unnamed store):
 * address, version, started_at (unix ms) and status (a JSON object text, NULL = {})
 * with heartbeat_at = now. Replaces a "gone" mark: the station is back. */
int records_station_heartbeat(struct records *r, const char *address, const char *version,
                              int64_t started_at, const char *status, struct records_error *err);

typedef int (*records_station_cb)(const struct records_station *s, void *ctx);
/* Every station of the line, by name. Returns rows delivered. */
int records_station_list(struct records *r, records_station_cb cb, void *ctx,
                         struct records_error *err);

/* Names (up to max, each RECORDS_STATION_LEN) of the stations other than this one whose
 * heartbeat is older than before_ms and that are not yet marked gone. Returns how many. */
int records_station_gone_candidates(struct records *r, int64_t before_ms,
                                    char (*names)[RECORDS_STATION_LEN], int max,
                                    struct records_error *err);

/*
 * Station `station` (not this one: -EINVAL) stopped heartbeating: if its heartbeat is
 * still older than before_ms (checked under a row lock), its queued and running jobs
 * become 'interrupted' (error "station <name> stopped while <stage>", advice naming this
 * station) with a job.interrupted event each ({"job", "state", "stage", "message",
 * "station", "by", "reason"}), and, unless already marked, its row gets the "gone" mark
 * and a station.gone event ({"station", "heartbeat_at", "by", "jobs", "reason"}) is
 * appended. One durable transaction; *jobs gets how many jobs this call interrupted and
 * *marked whether it wrote the station.gone event (either may be NULL). 0 (also when the
 * station came back or another station got there first) or -errno.
 */
int records_jobs_interrupt_station(struct records *r, const char *station, int64_t before_ms,
                                   const char *reason, int *jobs, bool *marked,
                                   struct records_error *err);

/* Jobs of `station` (NULL/"" = this one) started at or after since_ms, by state
 * (counts[RECORDS_JOB_STATE_COUNT], filled with zeros first). 0 or -errno. */
int records_station_job_counts(struct records *r, const char *station, int64_t since_ms,
                               int64_t counts[RECORDS_JOB_STATE_COUNT], struct records_error *err);

/* ---- database work counters --------------------------------------------------- */

struct records_db_stats {
    uint64_t round_trips;          /* statements run + BEGIN/COMMIT/ROLLBACK/exec sent */
    uint64_t ops;                  /* units: a statement outside a transaction, or a transaction */
    double total_ms;               /* time inside the backend for all ops */
    double p50_ms, p99_ms, max_ms; /* over the last RECORDS_DB_STATS_WINDOW ops */
    uint64_t window;               /* ops in the window */
};
#define RECORDS_DB_STATS_WINDOW 16384

/* Starts counting this store's database work (a wrapper around the backend's calls:
 * two clock reads per step). Idempotent; counting ends when the store closes. */
int records_db_stats_enable(struct records *r);
/* The counters so far (zeros when not enabled). */
void records_db_stats_get(struct records *r, struct records_db_stats *out);

#endif
