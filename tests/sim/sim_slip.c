/*
 * sim_slip: SLIP decoder for what the host sends to the board.
 *
 * Every 0xC0 is a delimiter; the bytes between two delimiters are a frame
 * candidate. Empty candidates (runs of 0xC0) are skipped, bytes before the
 * first delimiter are line noise. A bad escape (0xDB followed by anything
 * but 0xDC/0xDD) or a frame longer than SIM_MAX_FRAME poisons the candidate
 * until the next delimiter, like a real ROM that gives no answer.
 * Kept independent of protocols/slip.c on purpose: the board is a second,
 * separate implementation the library is tested against.
 */
#include <stdlib.h>

#include "sim.h"

int sim_slip_init(struct sim_slip *s)
{
    s->buf = malloc(SIM_MAX_FRAME);
    if (!s->buf)
        return -1;
    sim_slip_reset(s);
    return 0;
}

void sim_slip_free(struct sim_slip *s)
{
    free(s->buf);
    s->buf = NULL;
}

void sim_slip_reset(struct sim_slip *s)
{
    s->len = 0;
    s->started = false;
    s->escape = false;
    s->bad = false;
    s->garbled = false;
    s->garbled_baud = 0;
    s->complete = false;
}

bool sim_slip_feed(struct sim_slip *s, uint8_t byte, bool garbled, uint32_t host_baud)
{
    if (s->complete) {
        s->complete = false;
        s->len = 0;
        s->garbled = false;
    }
    if (garbled) {
        s->garbled = true;
        s->garbled_baud = host_baud;
    }
    if (byte == 0xC0) {
        bool done = s->started && !s->bad && !s->escape && s->len > 0;
        if (!done) {
            s->len = 0;
            s->garbled = false;
        }
        s->started = true;
        s->bad = false;
        s->escape = false;
        s->complete = done;
        return done;
    }
    if (!s->started || s->bad)
        return false;
    if (s->escape) {
        s->escape = false;
        if (byte == 0xDC) {
            byte = 0xC0;
        } else if (byte == 0xDD) {
            byte = 0xDB;
        } else {
            s->bad = true;
            return false;
        }
    } else if (byte == 0xDB) {
        s->escape = true;
        return false;
    }
    if (s->len >= SIM_MAX_FRAME) {
        s->bad = true;
        return false;
    }
    s->buf[s->len++] = byte;
    return false;
}
