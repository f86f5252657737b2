/*
 * slip: SLIP encoder and streaming decoder.
 *
 * Owns: the decoder state machine and its junk ring.
 * Invariants: d->frame never holds more than max_frame bytes; d->raw never
 * more than 2 * max_frame (the largest escaped form of a valid frame); every
 * byte that does not end up in a delivered frame (delimiters aside) goes
 * through junk_push(), so junk_total counts all discarded input.
 * A frame is delimited by 0xC0 on both sides; bytes seen while not inside a
 * frame are junk. A dropped frame (bad escape, too long) is reported at its
 * closing 0xC0, so the stream stays aligned on delimiters.
 */
#include "slip.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

size_t slip_encode(const uint8_t *in, size_t len, uint8_t *out)
{
    size_t o = 0;
    out[o++] = SLIP_END;
    for (size_t i = 0; i < len; i++) {
        uint8_t b = in[i];
        if (b == SLIP_END) {
            out[o++] = SLIP_ESC;
            out[o++] = SLIP_ESC_END;
        } else if (b == SLIP_ESC) {
            out[o++] = SLIP_ESC;
            out[o++] = SLIP_ESC_ESC;
        } else {
            out[o++] = b;
        }
    }
    out[o++] = SLIP_END;
    return o;
}

static size_t raw_cap(const struct slip_decoder *d)
{
    return d->raw ? 2 * d->max_frame : 0;
}

static void junk_push(struct slip_decoder *d, uint8_t b)
{
    if (d->junk_len < SLIP_JUNK_KEEP) {
        d->junk[(d->junk_start + d->junk_len) % SLIP_JUNK_KEEP] = b;
        d->junk_len++;
    } else {
        d->junk[d->junk_start] = b;
        d->junk_start = (d->junk_start + 1) % SLIP_JUNK_KEEP;
    }
    d->junk_total++;
}

/* Moves the raw bytes gathered so far for the current frame to junk. */
static void raw_to_junk(struct slip_decoder *d)
{
    for (size_t i = 0; i < d->raw_len; i++)
        junk_push(d, d->raw[i]);
    d->raw_len = 0;
}

/* Marks the current frame as dropped: it is skipped until the next 0xC0. */
static void frame_drop(struct slip_decoder *d)
{
    raw_to_junk(d);
    d->overflow = true;
    d->escape = false;
    d->frame_len = 0;
}

int slip_decoder_init(struct slip_decoder *d, size_t max_frame)
{
    memset(d, 0, sizeof(*d));
    if (max_frame > (SIZE_MAX - 1) / 2)
        return -ENOMEM;
    d->max_frame = max_frame;
    d->frame = malloc(max_frame ? max_frame : 1);
    d->raw = malloc(max_frame ? 2 * max_frame : 1);
    if (!d->frame || !d->raw) {
        slip_decoder_free(d);
        return -ENOMEM;
    }
    return 0;
}

void slip_decoder_free(struct slip_decoder *d)
{
    if (!d)
        return;
    free(d->frame);
    free(d->raw);
    d->frame = NULL;
    d->raw = NULL;
    d->frame_len = 0;
    d->raw_len = 0;
    d->in_frame = false;
    d->escape = false;
    d->overflow = false;
}

void slip_decoder_reset(struct slip_decoder *d)
{
    if (d->in_frame && !d->overflow)
        raw_to_junk(d);
    d->raw_len = 0;
    d->frame_len = 0;
    d->in_frame = false;
    d->escape = false;
    d->overflow = false;
}

/* Adds one decoded byte to the frame; drops the frame when it gets too long. */
static void frame_add(struct slip_decoder *d, uint8_t b)
{
    if (d->frame_len >= d->max_frame || !d->frame) {
        frame_drop(d);
        return;
    }
    d->frame[d->frame_len++] = b;
}

enum slip_result slip_decoder_feed(struct slip_decoder *d, const uint8_t *in, size_t len,
                                   size_t *consumed)
{
    size_t i = 0;
    enum slip_result res = SLIP_NEED_MORE;

    /* A frame delivered by the previous call is released now. */
    if (!d->in_frame)
        d->frame_len = 0;

    while (i < len) {
        uint8_t b = in[i++];

        if (!d->in_frame) {
            if (b == SLIP_END) {
                d->in_frame = true;
                d->escape = false;
                d->overflow = false;
                d->frame_len = 0;
                d->raw_len = 0;
            } else {
                junk_push(d, b);
            }
            continue;
        }

        if (b == SLIP_END) {
            if (d->overflow) {
                d->in_frame = false;
                d->overflow = false;
                d->escape = false;
                d->frame_len = 0;
                d->raw_len = 0;
                d->bad_frames++;
                res = SLIP_BAD_FRAME;
                break;
            }
            if (d->escape) {
                /* 0xDB right before the delimiter: the frame is broken. */
                frame_drop(d);
                d->in_frame = false;
                d->overflow = false;
                d->bad_frames++;
                res = SLIP_BAD_FRAME;
                break;
            }
            if (d->raw_len == 0) {
                /* Empty frame (run of 0xC0): stay inside, wait for data. */
                continue;
            }
            d->in_frame = false;
            d->raw_len = 0;
            res = SLIP_FRAME;
            break;
        }

        if (d->overflow) {
            junk_push(d, b);
            continue;
        }

        if (d->raw_len >= raw_cap(d)) {
            /* Cannot happen for valid frames (raw <= 2 * max_frame). */
            frame_drop(d);
            junk_push(d, b);
            continue;
        }
        d->raw[d->raw_len++] = b;

        if (d->escape) {
            d->escape = false;
            if (b == SLIP_ESC_END) {
                frame_add(d, SLIP_END);
            } else if (b == SLIP_ESC_ESC) {
                frame_add(d, SLIP_ESC);
            } else {
                frame_drop(d);
            }
        } else if (b == SLIP_ESC) {
            d->escape = true;
        } else {
            frame_add(d, b);
        }
    }

    if (consumed)
        *consumed = i;
    return res;
}

size_t slip_decoder_junk(struct slip_decoder *d, uint8_t *out, size_t cap, bool clear)
{
    size_t n = d->junk_len < cap ? d->junk_len : cap;
    /* The most recent n bytes, oldest first. */
    size_t first = d->junk_len - n;
    for (size_t k = 0; k < n; k++)
        out[k] = d->junk[(d->junk_start + first + k) % SLIP_JUNK_KEEP];
    if (clear) {
        d->junk_start = 0;
        d->junk_len = 0;
    }
    return n;
}
