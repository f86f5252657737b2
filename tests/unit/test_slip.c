/*
 * test_slip: SLIP encoder and streaming decoder.
 *
 * Round trips over random data rich in 0xC0/0xDB, every short sequence of the
 * special bytes, junk before and between frames, bad escapes, oversized
 * frames, runs of 0xC0, byte-by-byte and odd-chunk feeding, the junk ring.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "slip.h"

#define MAX_FRAMES 64

struct collected {
    size_t n;
    size_t len[MAX_FRAMES];
    uint8_t *data[MAX_FRAMES];
    unsigned bad;
};

static void collected_free(struct collected *c)
{
    for (size_t i = 0; i < c->n; i++)
        free(c->data[i]);
    c->n = 0;
}

/* Feeds in to d in chunks of at most chunk bytes, collecting every frame. */
static void feed_all(struct slip_decoder *d, const uint8_t *in, size_t len, size_t chunk,
                     struct collected *c)
{
    size_t pos = 0;
    while (pos < len) {
        size_t n = len - pos < chunk ? len - pos : chunk;
        size_t off = 0;
        while (off < n) {
            size_t used = 0;
            enum slip_result r = slip_decoder_feed(d, in + pos + off, n - off, &used);
            assert_true(used <= n - off);
            off += used;
            if (r == SLIP_FRAME) {
                assert_true(c->n < MAX_FRAMES);
                c->len[c->n] = d->frame_len;
                c->data[c->n] = malloc(d->frame_len ? d->frame_len : 1);
                assert_non_null(c->data[c->n]);
                memcpy(c->data[c->n], d->frame, d->frame_len);
                c->n++;
            } else if (r == SLIP_BAD_FRAME) {
                c->bad++;
            } else {
                assert_int_equal(off, n);
            }
        }
        pos += n;
    }
}

static uint32_t rng_state = 12345;

static uint32_t rnd(void)
{
    rng_state = rng_state * 1103515245u + 12345u;
    return rng_state >> 8;
}

/* Random bytes with many SLIP specials. */
static uint8_t rnd_byte(void)
{
    static const uint8_t specials[] = {SLIP_END, SLIP_ESC, SLIP_ESC_END, SLIP_ESC_ESC};
    uint32_t r = rnd();
    if (r % 3 == 0)
        return specials[(r >> 4) % 4];
    return (uint8_t)(r >> 8);
}

static void test_encode_known(void **state)
{
    (void)state;
    const uint8_t in[] = {0x01, 0xC0, 0x02, 0xDB, 0x03};
    const uint8_t want[] = {0xC0, 0x01, 0xDB, 0xDC, 0x02, 0xDB, 0xDD, 0x03, 0xC0};
    uint8_t out[32];
    size_t n = slip_encode(in, sizeof(in), out);
    assert_int_equal(n, sizeof(want));
    assert_memory_equal(out, want, sizeof(want));

    /* Worst case is exactly slip_encoded_max. */
    const uint8_t all_special[] = {0xC0, 0xDB, 0xC0, 0xDB};
    n = slip_encode(all_special, sizeof(all_special), out);
    assert_int_equal(n, slip_encoded_max(sizeof(all_special)));

    /* Empty packet: just the two delimiters. */
    n = slip_encode(NULL, 0, out);
    assert_int_equal(n, 2);
    assert_int_equal(out[0], 0xC0);
    assert_int_equal(out[1], 0xC0);
}

static void roundtrip_one(const uint8_t *data, size_t len, size_t chunk)
{
    struct slip_decoder d;
    assert_int_equal(slip_decoder_init(&d, 1024), 0);
    uint8_t *enc = malloc(slip_encoded_max(len));
    assert_non_null(enc);
    size_t n = slip_encode(data, len, enc);
    assert_true(n <= slip_encoded_max(len));
    struct collected c = {0};
    feed_all(&d, enc, n, chunk, &c);
    assert_int_equal(c.bad, 0);
    assert_int_equal(c.n, 1);
    assert_int_equal(c.len[0], len);
    assert_memory_equal(c.data[0], data, len);
    assert_int_equal(d.junk_total, 0);
    collected_free(&c);
    free(enc);
    slip_decoder_free(&d);
}

static void test_roundtrip_random(void **state)
{
    (void)state;
    uint8_t buf[600];
    for (int iter = 0; iter < 500; iter++) {
        size_t len = 1 + rnd() % sizeof(buf);
        for (size_t i = 0; i < len; i++)
            buf[i] = rnd_byte();
        size_t chunk = 1 + rnd() % 64;
        roundtrip_one(buf, len, iter % 5 == 0 ? 1 : chunk);
    }
}

static void test_roundtrip_all_special_sequences(void **state)
{
    (void)state;
    /* Every sequence of length 1..4 over the special bytes plus one plain byte. */
    static const uint8_t alphabet[] = {SLIP_END, SLIP_ESC, SLIP_ESC_END, SLIP_ESC_ESC, 0x00};
    const size_t k = sizeof(alphabet);
    unsigned count = 0;
    for (size_t len = 1; len <= 4; len++) {
        size_t total = 1;
        for (size_t i = 0; i < len; i++)
            total *= k;
        for (size_t v = 0; v < total; v++) {
            uint8_t seq[4];
            size_t x = v;
            for (size_t i = 0; i < len; i++) {
                seq[i] = alphabet[x % k];
                x /= k;
            }
            roundtrip_one(seq, len, 1);
            roundtrip_one(seq, len, 64);
            count++;
        }
    }
    assert_int_equal(count, 5 + 25 + 125 + 625);
}

static void test_many_frames_byte_by_byte(void **state)
{
    (void)state;
    /* junk, frame, junk, frame, ... as one stream, fed in several ways. */
    uint8_t stream[8192];
    size_t slen = 0;
    uint8_t frames[10][100];
    size_t flen[10];
    uint8_t junk[4096];
    size_t jlen = 0;
    for (int f = 0; f < 10; f++) {
        /* junk without 0xC0 between frames */
        size_t nj = rnd() % 20;
        for (size_t i = 0; i < nj; i++) {
            uint8_t b = (uint8_t)(rnd() % 0xC0);
            stream[slen++] = b;
            junk[jlen++] = b;
        }
        flen[f] = 1 + rnd() % 100;
        for (size_t i = 0; i < flen[f]; i++)
            frames[f][i] = rnd_byte();
        slen += slip_encode(frames[f], flen[f], stream + slen);
    }
    static const size_t chunks[] = {1, 2, 3, 7, 64, 8192};
    for (size_t ci = 0; ci < sizeof(chunks) / sizeof(chunks[0]); ci++) {
        struct slip_decoder d;
        assert_int_equal(slip_decoder_init(&d, 256), 0);
        struct collected c = {0};
        feed_all(&d, stream, slen, chunks[ci], &c);
        assert_int_equal(c.bad, 0);
        assert_int_equal(c.n, 10);
        for (int f = 0; f < 10; f++) {
            assert_int_equal(c.len[f], flen[f]);
            assert_memory_equal(c.data[f], frames[f], flen[f]);
        }
        uint8_t got[4096];
        size_t n = slip_decoder_junk(&d, got, sizeof(got), false);
        assert_int_equal(n, jlen);
        assert_memory_equal(got, junk, jlen);
        assert_int_equal(d.junk_total, jlen);
        collected_free(&c);
        slip_decoder_free(&d);
    }
}

static void test_garbage_before_frame(void **state)
{
    (void)state;
    const char *boot = "ets Jan  8 2013,rst cause:2, boot mode:(3,6)\r\n";
    uint8_t stream[256];
    size_t n = strlen(boot);
    memcpy(stream, boot, n);
    const uint8_t pkt[] = {0x01, 0x08, 0x02, 0x00, 0, 0, 0, 0, 0, 0};
    n += slip_encode(pkt, sizeof(pkt), stream + n);

    struct slip_decoder d;
    assert_int_equal(slip_decoder_init(&d, 64), 0);
    size_t used = 0;
    assert_int_equal(slip_decoder_feed(&d, stream, n, &used), SLIP_FRAME);
    assert_int_equal(used, n);
    assert_int_equal(d.frame_len, sizeof(pkt));
    assert_memory_equal(d.frame, pkt, sizeof(pkt));

    uint8_t junk[128];
    size_t j = slip_decoder_junk(&d, junk, sizeof(junk), true);
    assert_int_equal(j, strlen(boot));
    assert_memory_equal(junk, boot, j);
    assert_int_equal(slip_decoder_junk(&d, junk, sizeof(junk), false), 0);
    assert_int_equal(d.junk_total, strlen(boot));
    slip_decoder_free(&d);
}

struct bad_case {
    const char *name;
    uint8_t in[16];
    size_t len;
    size_t junk_len; /* bytes of the dropped frame that must show up as junk */
};

static void test_bad_frames(void **state)
{
    (void)state;
    static const struct bad_case cases[] = {
        {"bad escape", {0xC0, 0x01, 0xDB, 0x41, 0x02, 0xC0}, 6, 4},
        {"escape then end", {0xC0, 0x01, 0xDB, 0xC0}, 4, 2},
        {"escape of plain", {0xC0, 0xDB, 0x00, 0xC0}, 4, 2},
        {"escape of escape", {0xC0, 0xDB, 0xDB, 0xDC, 0xC0}, 5, 3},
        {"too long", {0xC0, 1, 2, 3, 4, 5, 0xC0}, 7, 5},
        {"too long escaped", {0xC0, 1, 2, 3, 0xDB, 0xDC, 0xDB, 0xDD, 0xC0}, 9, 7},
    };
    const uint8_t good[] = {0xC0, 0x01, 0x02, 0xC0};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct bad_case *bc = &cases[i];
        struct slip_decoder d;
        assert_int_equal(slip_decoder_init(&d, 4), 0);
        uint8_t stream[32];
        memcpy(stream, bc->in, bc->len);
        memcpy(stream + bc->len, good, sizeof(good));
        size_t total = bc->len + sizeof(good);

        size_t used = 0;
        enum slip_result r = slip_decoder_feed(&d, stream, total, &used);
        if (r != SLIP_BAD_FRAME)
            fail_msg("%s: expected SLIP_BAD_FRAME, got %d", bc->name, r);
        assert_int_equal(used, bc->len);
        assert_int_equal(d.bad_frames, 1);
        assert_int_equal(d.junk_total, bc->junk_len);
        uint8_t junk[32];
        size_t j = slip_decoder_junk(&d, junk, sizeof(junk), false);
        assert_int_equal(j, bc->junk_len);
        assert_memory_equal(junk, bc->in + 1, bc->junk_len);

        /* The decoder recovers on the next frame. */
        size_t used2 = 0;
        r = slip_decoder_feed(&d, stream + used, total - used, &used2);
        if (r != SLIP_FRAME)
            fail_msg("%s: no recovery, got %d", bc->name, r);
        assert_int_equal(used + used2, total);
        assert_int_equal(d.frame_len, 2);
        assert_int_equal(d.frame[0], 0x01);
        assert_int_equal(d.frame[1], 0x02);
        slip_decoder_free(&d);
    }
}

static void test_max_frame_exact_fits(void **state)
{
    (void)state;
    struct slip_decoder d;
    assert_int_equal(slip_decoder_init(&d, 4), 0);
    const uint8_t data[] = {0xC0, 0xDB, 0xC0, 0xDB};
    uint8_t enc[16];
    size_t n = slip_encode(data, sizeof(data), enc);
    size_t used;
    assert_int_equal(slip_decoder_feed(&d, enc, n, &used), SLIP_FRAME);
    assert_int_equal(d.frame_len, 4);
    assert_memory_equal(d.frame, data, 4);
    slip_decoder_free(&d);
}

static void test_consecutive_ends(void **state)
{
    (void)state;
    const uint8_t stream[] = {0xC0, 0xC0, 0xC0, 0x01, 0x02, 0xC0, 0xC0, 0xC0, 0xC0, 0x03, 0xC0};
    struct slip_decoder d;
    assert_int_equal(slip_decoder_init(&d, 64), 0);
    size_t used;
    assert_int_equal(slip_decoder_feed(&d, stream, sizeof(stream), &used), SLIP_FRAME);
    assert_int_equal(used, 6);
    assert_int_equal(d.frame_len, 2);
    size_t used2;
    assert_int_equal(slip_decoder_feed(&d, stream + used, sizeof(stream) - used, &used2),
                     SLIP_FRAME);
    assert_int_equal(used + used2, sizeof(stream));
    assert_int_equal(d.frame_len, 1);
    assert_int_equal(d.frame[0], 0x03);
    assert_int_equal(d.junk_total, 0);
    assert_int_equal(d.bad_frames, 0);
    /* Only delimiters: nothing, and all consumed. */
    const uint8_t ends[] = {0xC0, 0xC0, 0xC0};
    assert_int_equal(slip_decoder_feed(&d, ends, sizeof(ends), &used), SLIP_NEED_MORE);
    assert_int_equal(used, sizeof(ends));
    assert_int_equal(d.frame_len, 0);
    slip_decoder_free(&d);
}

static void test_frame_released_on_next_call(void **state)
{
    (void)state;
    const uint8_t stream[] = {0xC0, 0xAA, 0xBB, 0xC0};
    struct slip_decoder d;
    assert_int_equal(slip_decoder_init(&d, 64), 0);
    size_t used;
    assert_int_equal(slip_decoder_feed(&d, stream, sizeof(stream), &used), SLIP_FRAME);
    assert_int_equal(d.frame_len, 2);
    assert_int_equal(slip_decoder_feed(&d, NULL, 0, &used), SLIP_NEED_MORE);
    assert_int_equal(used, 0);
    assert_int_equal(d.frame_len, 0);
    slip_decoder_free(&d);
}

static void test_reset_forgets_partial(void **state)
{
    (void)state;
    const uint8_t part[] = {0xC0, 0x11, 0x22};
    const uint8_t rest[] = {0x33, 0xC0, 0xC0, 0x44, 0xC0};
    struct slip_decoder d;
    assert_int_equal(slip_decoder_init(&d, 64), 0);
    size_t used;
    assert_int_equal(slip_decoder_feed(&d, part, sizeof(part), &used), SLIP_NEED_MORE);
    slip_decoder_reset(&d);
    /* 0x33 is now outside a frame (junk); the 0xC0 after it opens a frame. */
    assert_int_equal(slip_decoder_feed(&d, rest, sizeof(rest), &used), SLIP_FRAME);
    assert_int_equal(used, sizeof(rest));
    assert_int_equal(d.frame_len, 1);
    assert_int_equal(d.frame[0], 0x44);
    uint8_t junk[16];
    size_t j = slip_decoder_junk(&d, junk, sizeof(junk), false);
    assert_int_equal(j, 3);
    assert_int_equal(junk[0], 0x11);
    assert_int_equal(junk[1], 0x22);
    assert_int_equal(junk[2], 0x33);
    slip_decoder_free(&d);
}

static void test_junk_ring_keeps_recent(void **state)
{
    (void)state;
    struct slip_decoder d;
    assert_int_equal(slip_decoder_init(&d, 16), 0);
    uint8_t in[5000];
    for (size_t i = 0; i < sizeof(in); i++)
        in[i] = (uint8_t)(i % 0xC0);
    size_t used;
    assert_int_equal(slip_decoder_feed(&d, in, sizeof(in), &used), SLIP_NEED_MORE);
    assert_int_equal(used, sizeof(in));
    assert_int_equal(d.junk_total, sizeof(in));
    assert_int_equal(d.junk_len, SLIP_JUNK_KEEP);

    static uint8_t out[SLIP_JUNK_KEEP];
    size_t n = slip_decoder_junk(&d, out, sizeof(out), false);
    assert_int_equal(n, SLIP_JUNK_KEEP);
    assert_memory_equal(out, in + sizeof(in) - SLIP_JUNK_KEEP, SLIP_JUNK_KEEP);

    /* A small cap gets the most recent bytes, oldest first. */
    uint8_t small[10];
    n = slip_decoder_junk(&d, small, sizeof(small), false);
    assert_int_equal(n, 10);
    assert_memory_equal(small, in + sizeof(in) - 10, 10);

    /* An oversized dropped frame also lands in the ring. */
    uint8_t big[40];
    big[0] = 0xC0;
    for (int i = 1; i < 39; i++)
        big[i] = 0x41;
    big[39] = 0xC0;
    assert_int_equal(slip_decoder_feed(&d, big, sizeof(big), &used), SLIP_BAD_FRAME);
    assert_int_equal(d.junk_total, sizeof(in) + 38);
    n = slip_decoder_junk(&d, out, sizeof(out), true);
    assert_int_equal(n, SLIP_JUNK_KEEP);
    assert_int_equal(out[SLIP_JUNK_KEEP - 1], 0x41);
    assert_int_equal(out[SLIP_JUNK_KEEP - 38], 0x41);
    assert_int_equal(out[SLIP_JUNK_KEEP - 39], (uint8_t)((sizeof(in) - 1) % 0xC0));
    assert_int_equal(slip_decoder_junk(&d, out, sizeof(out), false), 0);
    slip_decoder_free(&d);
}

static void test_free_zeroed_and_twice(void **state)
{
    (void)state;
    struct slip_decoder d;
    memset(&d, 0, sizeof(d));
    slip_decoder_free(&d);
    assert_int_equal(slip_decoder_init(&d, 8), 0);
    slip_decoder_free(&d);
    slip_decoder_free(&d);
    slip_decoder_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_encode_known),
        cmocka_unit_test(test_roundtrip_random),
        cmocka_unit_test(test_roundtrip_all_special_sequences),
        cmocka_unit_test(test_many_frames_byte_by_byte),
        cmocka_unit_test(test_garbage_before_frame),
        cmocka_unit_test(test_bad_frames),
        cmocka_unit_test(test_max_frame_exact_fits),
        cmocka_unit_test(test_consecutive_ends),
        cmocka_unit_test(test_frame_released_on_next_call),
        cmocka_unit_test(test_reset_forgets_partial),
        cmocka_unit_test(test_junk_ring_keeps_recent),
        cmocka_unit_test(test_free_zeroed_and_twice),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
