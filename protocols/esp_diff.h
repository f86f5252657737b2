/*
 * esp_diff: which 4 KiB sectors of a region differ from what the flash holds,
 * found by asking the chip for MD5s of ranges (SPI_FLASH_MD5), never by
 * reading the flash back. Internal to the engine (esp_flash.c drives it); the
 * MD5 source is a callback so the search can be tested without a board.
 *
 * The search (esp_diff_plan):
 *   1. a probe of the region's first sector: erased flash there while the image
 *      has data there = a blank board, write all of it (one short MD5 instead
 *      of hashing the whole region on every fresh board); a first sector that
 *      differs (a rebuild changes the app descriptor there) already says the
 *      region differs;
 *   2. otherwise the MD5 of the whole region (or the caller's, when it just read
 *      it): equal = nothing to write; all 0xFF = blank, write all of it;
 *   3. on regions of 16 sectors or more, four sample sectors spread over it: all
 *      four differ = another firmware, write all of it;
 *   4. bisection, level by level: every range known to differ is split at a
 *      sector boundary near its middle; the first half is hashed and, only when
 *      it differs too, the second (a parent that differs whose first half
 *      matches has a second half that differs), down to single sectors. Answers
 *      already had (probe, samples) are not asked for again.
 * It also gives up (verdict FULL: write the whole region) when more than
 * ESP_DIFF_MAX_MD5 MD5s would be needed, or when from the quarter level on
 * more than three quarters of the region still differ (hashing on would cost
 * more than it saves).
 *
 * Invariants: the region starts on a sector boundary; ranges are offsets from
 * its start, sector aligned, the last one may end with the region (len need
 * not be a multiple of 4096); the runs are ascending, disjoint, adjacent
 * sectors merged. Nothing here writes: a plan is only advice, and the caller
 * verifies the whole region's MD5 after writing the runs.
 */
#ifndef ESP_DIFF_H
#define ESP_DIFF_H

#include <stddef.h>
#include <stdint.h>

#include "esp_error.h"

#define ESP_DIFF_SECTOR 0x1000u
/* MD5 requests one search may make (probe and whole region included). At 921600
 * baud a request and its reply take about 0.6 ms on the wire plus the chip's
 * hashing; this bounds the search to well under the time of one 64 KiB write. */
#define ESP_DIFF_MAX_MD5 96u

/* MD5 of flash [region start + off, + len) as the chip computes it. 0 or <0 with err. */
typedef int (*esp_diff_md5_fn)(void *ctx, uint32_t off, uint32_t len, uint8_t md5[16],
                               struct esp_error *err);

enum esp_diff_verdict {
    ESP_DIFF_SAME = 0, /* the flash already holds the region: write nothing */
    ESP_DIFF_SECTORS,  /* write only the runs */
    ESP_DIFF_FULL,     /* write the whole region (reason in why) */
};

const char *esp_diff_verdict_to_string(enum esp_diff_verdict v);

struct esp_diff_run {
    uint32_t off, len; /* from the region start */
};

struct esp_diff_result {
    enum esp_diff_verdict verdict;
    struct esp_diff_run *runs; /* ESP_DIFF_SECTORS: owned (esp_diff_result_free) */
    size_t n_runs;
    uint64_t diff_bytes; /* bytes in the runs (SECTORS only) */
    unsigned sectors;    /* sectors in the runs */
    unsigned md5_calls;  /* MD5 requests made */
    const char *why;     /* FULL: why the whole region is written (static text) */
};

/*
 * Plans the write of want[0, len) over flash that md5 describes. whole_md5,
 * when not NULL, is the flash MD5 of the whole region the caller already has.
 * max_calls bounds the MD5 requests (0 = ESP_DIFF_MAX_MD5). Returns 0 with
 * *out filled, or the callback's error (out->verdict FULL then), or -ENOMEM.
 */
int esp_diff_plan(const uint8_t *want, size_t len, const uint8_t *whole_md5, unsigned max_calls,
                  esp_diff_md5_fn md5, void *ctx, struct esp_diff_result *out,
                  struct esp_error *err);

void esp_diff_result_free(struct esp_diff_result *r); /* NULL allowed; keeps the counters */

#endif
