/*
 * Per-board data pools (profile "per_board", docs/CONFIG.md): a directory of
 * .bin files, one per board (ESP-IDF mfg_gen NVS images, certificates, serial
 * numbers). A board takes the first free file in name order; the records
 * (pool_items) remember which file went to which MAC, so a file never goes to
 * a second board and a re-flash of the same board writes the same file again.
 * Loop thread only (it uses the records store).
 */
#ifndef ESPSTATION_POOL_H
#define ESPSTATION_POOL_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "job.h"
#include "records.h"

#define POOL_MAX_FILE_BYTES (16u * 1024 * 1024)

struct pool_status {
    char file[RECORDS_POOL_FILE_LEN]; /* pool_take: the file the board got */
    bool reused;                      /* pool_take: the board already held it */
    int64_t files;                    /* .bin files in the directory (-1: unreadable) */
    int64_t used;                     /* files given to boards (records) */
    int64_t free;                     /* files in the directory not given to any board */
};

/*
 * This board's file of the pool: the one it already holds, else the first free
 * one, recorded for mac (job_id: the job taking it). Fills out (data owned by
 * the caller) and st. On failure returns < 0 with a technician-grade message
 * and advice: -ENOSPC the pool is exhausted, -ENOENT the board's file is gone,
 * -EBADMSG its file changed since it was given, -EIO the directory or file
 * cannot be read, -EFBIG a file is empty or too large.
 */
int pool_take(struct records *rec, const struct config_per_board *pb, const char *mac,
              int64_t job_id, struct job_extra *out, struct pool_status *st, char *msg,
              size_t msglen, char *advice, size_t advlen);

/* Counts for the API: files, used, free (files = -1 when the directory cannot be read). */
int pool_stat(struct records *rec, const struct config_per_board *pb, struct pool_status *st);

#endif
