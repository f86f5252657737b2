/*
 * fuzz_slip: the streaming SLIP decoder on arbitrary input fed in arbitrary
 * chunks, plus an encode/decode round trip of the input itself.
 * Input: byte 0 picks max_frame, byte 1 seeds the chunk sizes, the rest is
 * the stream. Aborts if the decoder breaks an invariant.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "slip.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond)
{
    if (!cond)
        abort();
}

static void decode_stream(const uint8_t *in, size_t len, size_t max_frame, uint8_t seed)
{
    struct slip_decoder d;
    if (slip_decoder_init(&d, max_frame) != 0)
        return;
    size_t pos = 0;
    unsigned x = seed;
    while (pos < len) {
        x = x * 1103515245u + 12345u;
        size_t chunk = 1 + (x >> 16) % 97;
        if (chunk > len - pos)
            chunk = len - pos;
        size_t used = 0;
        enum slip_result r = slip_decoder_feed(&d, in + pos, chunk, &used);
        check(used <= chunk);
        check(r == SLIP_FRAME || r == SLIP_BAD_FRAME || used == chunk);
        if (r == SLIP_FRAME)
            check(d.frame_len > 0 && d.frame_len <= max_frame);
        check(d.junk_len <= SLIP_JUNK_KEEP);
        pos += used;
        if (used == 0 && r == SLIP_NEED_MORE)
            break;
    }
    static uint8_t junk[SLIP_JUNK_KEEP];
    size_t n = slip_decoder_junk(&d, junk, sizeof(junk), (seed & 1) != 0);
    check(n <= SLIP_JUNK_KEEP && n <= d.junk_total);
    slip_decoder_reset(&d);
    slip_decoder_free(&d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t max_frame = (size_t)data[0] * 16;
    uint8_t seed = data[1];
    const uint8_t *in = data + 2;
    size_t len = size - 2;

    decode_stream(in, len, max_frame, seed);

    /* Round trip: the encoded input decodes to itself in one frame. */
    if (len == 0)
        return 0;
    uint8_t *enc = malloc(slip_encoded_max(len));
    if (!enc)
        return 0;
    size_t n = slip_encode(in, len, enc);
    check(n <= slip_encoded_max(len));
    struct slip_decoder d;
    if (slip_decoder_init(&d, len) == 0) {
        size_t used = 0;
        enum slip_result r = slip_decoder_feed(&d, enc, n, &used);
        check(r == SLIP_FRAME && used == n);
        check(d.frame_len == len && memcmp(d.frame, in, len) == 0);
        check(d.junk_total == 0);
        slip_decoder_free(&d);
    }
    free(enc);
    return 0;
}
