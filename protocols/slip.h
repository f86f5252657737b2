/*
 * slip: SLIP framing as the ESP ROM bootloader uses it (0xC0 delimiters,
 * 0xDB 0xDC for 0xC0 and 0xDB 0xDD for 0xDB inside a frame).
 *
 * The decoder is streaming: feed it bytes as they arrive, it yields one frame
 * at a time. Bytes outside a frame (boot log, noise) and the bytes of frames
 * that fail to decode (bad escape, oversized) are not thrown away: they are
 * kept in a bounded "junk" buffer (most recent SLIP_JUNK_KEEP bytes) so a
 * caller can show the ROM boot log when diagnosing a failed connect.
 * Runs of consecutive 0xC0 (empty frames) are skipped silently.
 */
#ifndef SLIP_H
#define SLIP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SLIP_END 0xC0
#define SLIP_ESC 0xDB
#define SLIP_ESC_END 0xDC
#define SLIP_ESC_ESC 0xDD

#define SLIP_JUNK_KEEP 4096

/* Worst-case encoded size of a len-byte packet, delimiters included. */
static inline size_t slip_encoded_max(size_t len)
{
    return 2 * len + 2;
}

/* Encodes in[0..len) as one frame into out (room for slip_encoded_max(len)).
 * Returns the number of bytes written. */
size_t slip_encode(const uint8_t *in, size_t len, uint8_t *out);

enum slip_result {
    SLIP_NEED_MORE = 0, /* all input consumed, no complete frame yet */
    SLIP_FRAME = 1,     /* a complete frame is available in frame/frame_len */
    SLIP_BAD_FRAME = 2, /* a frame was dropped (bad escape or > max_frame); bytes went to junk */
};

struct slip_decoder {
    uint8_t *frame; /* current/complete frame, owned */
    size_t frame_len;
    size_t max_frame; /* frames longer than this are dropped as bad */
    bool in_frame;
    bool escape;
    bool overflow; /* current frame exceeded max_frame; skip until next 0xC0 */
    uint8_t *raw;  /* raw bytes of the current frame, for junk on error, owned */
    size_t raw_len;
    uint8_t junk[SLIP_JUNK_KEEP]; /* ring of the most recent discarded bytes */
    size_t junk_start;            /* ring start index */
    size_t junk_len;              /* bytes in ring (<= SLIP_JUNK_KEEP) */
    uint64_t junk_total;          /* all discarded bytes ever */
    uint64_t bad_frames;          /* frames dropped as bad */
};

/* Initialises a decoder for frames up to max_frame decoded bytes.
 * Returns 0 or -ENOMEM. */
int slip_decoder_init(struct slip_decoder *d, size_t max_frame);

/* Frees buffers; the struct itself is the caller's. Safe on a zeroed struct. */
void slip_decoder_free(struct slip_decoder *d);

/* Forgets any partial frame (e.g. after flushing input). Junk is kept. */
void slip_decoder_reset(struct slip_decoder *d);

/*
 * Feeds up to len bytes. *consumed receives how many were used. Stops right
 * after the closing 0xC0 of a frame and returns SLIP_FRAME; the frame stays in
 * d->frame/d->frame_len until the next call. Returns SLIP_BAD_FRAME after
 * dropping a frame (the caller may simply feed the rest again), or
 * SLIP_NEED_MORE when everything was consumed.
 */
enum slip_result slip_decoder_feed(struct slip_decoder *d, const uint8_t *in, size_t len,
                                   size_t *consumed);

/* Copies the kept junk (oldest first) into out, at most cap bytes; returns the count.
 * With clear=true the ring is emptied. */
size_t slip_decoder_junk(struct slip_decoder *d, uint8_t *out, size_t cap, bool clear);

#endif
