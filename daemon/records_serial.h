/*
 * records_serial: serial numbers per profile (profile "serial", docs/CONFIG.md),
 * shared by every station of a line (table serials, schema 7: PK (profile,
 * number), UNIQUE (profile, mac)).
 *
 * A number never goes to two boards and a board never gets two numbers of one
 * profile, on both backends, however many stations allocate at once: the
 * allocation is one transaction (read the board's number, else insert max + 1),
 * and a unique violation (another station committed that number, or this very
 * board, first) rolls back and tries again with what is committed by then.
 * Same threading and error rules as records.h.
 */
#ifndef RECORDS_SERIAL_H
#define RECORDS_SERIAL_H

#include <stdint.h>

#include "records.h"
#include "serial_fmt.h"

#define RECORDS_SERIAL_TEXT_LEN SERIAL_TEXT_MAX
#define RECORDS_SERIAL_PROFILE_LEN 64
#define RECORDS_SERIAL_MAX_NUMBER 999999999999LL /* start and numbers: 0 .. this */
#define RECORDS_SERIAL_ATTEMPTS 32               /* unique violations survived before -EAGAIN */

struct records_serial {
    char profile[RECORDS_SERIAL_PROFILE_LEN];
    int64_t number;
    char text[RECORDS_SERIAL_TEXT_LEN]; /* the number rendered with the profile's format */
    char mac[RECORDS_MAC_LEN];
    int64_t job_id;                    /* the job that took it, 0 none */
    char station[RECORDS_STATION_LEN]; /* the station that took it, "" unnamed */
    int64_t assigned_at;               /* unix ms */
};
typedef int (*records_serial_cb)(const struct records_serial *s, void *ctx);

/*
 * The board's serial number of the profile: the one it holds, else the next one
 * (the highest of the profile + 1, at least start), its text rendered with format
 * (serial_fmt.h), recorded with job_id (> 0, or 0 none) and this store's station
 * (durable). *number and text (RECORDS_SERIAL_TEXT_LEN) get it. Returns 1 when the
 * board already held it (its text as recorded then, whatever the format is now),
 * 0 when it was given now; -EINVAL bad argument or format, -ERANGE the profile's
 * numbers are used up (RECORDS_SERIAL_MAX_NUMBER), -EAGAIN when other stations won
 * RECORDS_SERIAL_ATTEMPTS races in a row, other -errno for the database.
 */
int records_serial_assign(struct records *r, const char *profile, const char *mac, int64_t start,
                          const char *format, int64_t job_id, int64_t *number, char *text,
                          struct records_error *err);

/* The board's serial number of the profile: 0, -ENOENT when it has none. */
int records_serial_of(struct records *r, const char *profile, const char *mac,
                      struct records_serial *out, struct records_error *err);

/* The board's serial numbers, newest first; returns how many or < 0. */
int records_serials_of_board(struct records *r, const char *mac, records_serial_cb cb, void *ctx,
                             struct records_error *err);

/* How many numbers of the profile went to boards. */
int records_serial_count(struct records *r, const char *profile, int64_t *n,
                         struct records_error *err);

#endif
