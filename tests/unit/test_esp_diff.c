/*
 * test_esp_diff: re-flashing only the sectors that changed.
 *
 * Part 1 drives the search (esp_diff_plan) over an in-memory flash: which MD5s
 * it asks for, the runs it finds, when it gives up. Part 2 drives the whole
 * engine (esp_loader_flash with opts.diff) against a small fake board whose
 * flasher stub is already running (found by SYNC): what is written, what is verified, and the
 * fall back to a full write when the result does not verify.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <zlib.h>

#include "esp_chip.h"
#include "esp_cmd.h"
#include "esp_diff.h"
#include "esp_loader.h"
#include "slip.h"
#include "transport.h"

#define SECTOR 0x1000u
#define MIB (1024u * 1024u)

static void md5_of(const uint8_t *d, size_t n, uint8_t out[16])
{
    unsigned int ml = 16;
    EVP_Digest(d, n, out, &ml, EVP_md5(), NULL);
}

static void fill_pattern(uint8_t *d, size_t n, uint32_t seed)
{
    uint32_t x = seed;
    for (size_t i = 0; i < n; i++) {
        x = x * 1103515245u + 12345u;
        d[i] = (uint8_t)(x >> 16);
    }
}

/* ==== part 1: the search over an in-memory flash ==================================== */

struct mem {
    const uint8_t *flash; /* the region as the board holds it */
    unsigned calls;
    uint64_t hashed; /* bytes the board hashed */
    int fail_at;     /* this call (1-based) fails with -ETIMEDOUT; 0 never */
    bool wrong;      /* every answer is wrong */
};

static int mem_md5(void *ctx, uint32_t off, uint32_t len, uint8_t md5[16], struct esp_error *err)
{
    struct mem *m = ctx;
    m->calls++;
    if (m->fail_at && (int)m->calls == m->fail_at)
        return esp_error_set(err, -ETIMEDOUT, ESP_STAGE_WRITE, NULL, "no reply");
    m->hashed += len;
    md5_of(m->flash + off, len, md5);
    if (m->wrong)
        md5[0] ^= 0x5A;
    return 0;
}

/* want = a pattern, flash = want with the given sectors changed (one byte each). */
struct pair {
    uint8_t *want, *flash;
    size_t len;
};

static struct pair pair_new(size_t len, uint32_t seed)
{
    struct pair p = {malloc(len), malloc(len), len};
    assert_non_null(p.want);
    assert_non_null(p.flash);
    fill_pattern(p.want, len, seed);
    memcpy(p.flash, p.want, len);
    return p;
}

static void pair_change(struct pair *p, uint32_t sector, uint32_t at)
{
    size_t i = (size_t)sector * SECTOR + at;
    assert_true(i < p->len);
    p->flash[i] ^= 0xA5;
}

static void pair_free(struct pair *p)
{
    free(p->want);
    free(p->flash);
}

static void plan(struct pair *p, struct mem *m, const uint8_t *whole, unsigned max,
                 struct esp_diff_result *r, int want_rc)
{
    m->flash = p->flash;
    struct esp_error err;
    esp_error_clear(&err);
    int rc = esp_diff_plan(p->want, p->len, whole, max, mem_md5, m, r, &err);
    assert_int_equal(rc, want_rc);
    assert_int_equal(r->md5_calls, m->calls);
}

static void test_same(void **state)
{
    (void)state;
    struct pair p = pair_new(MIB, 1);
    struct mem m = {0};
    struct esp_diff_result r;
    plan(&p, &m, NULL, 0, &r, 0);
    assert_int_equal(r.verdict, ESP_DIFF_SAME);
    assert_int_equal(m.calls, 3); /* the first sector, then the two halves */
    assert_int_equal(m.hashed, SECTOR + MIB);
    assert_int_equal(r.n_runs, 0);
    /* With the caller's whole-region MD5: no request at all. */
    uint8_t whole[16];
    md5_of(p.flash, p.len, whole);
    struct mem m2 = {0};
    plan(&p, &m2, whole, 0, &r, 0);
    assert_int_equal(r.verdict, ESP_DIFF_SAME);
    assert_int_equal(m2.calls, 0);
    pair_free(&p);
}

static void test_blank(void **state)
{
    (void)state;
    struct pair p = pair_new(MIB, 2);
    memset(p.flash, 0xFF, p.len);
    struct mem m = {0};
    struct esp_diff_result r;
    plan(&p, &m, NULL, 0, &r, 0);
    assert_int_equal(r.verdict, ESP_DIFF_FULL);
    assert_int_equal(m.calls, 1); /* one sector's MD5 on a fresh board */
    assert_int_equal(m.hashed, SECTOR);
    assert_non_null(strstr(r.why, "erased"));

    /* An image whose first sector is 0xFF: no probe, the two halves tell. */
    memset(p.want, 0xFF, SECTOR);
    struct mem m2 = {0};
    plan(&p, &m2, NULL, 0, &r, 0);
    assert_int_equal(r.verdict, ESP_DIFF_FULL);
    assert_int_equal(m2.calls, 2);
    assert_int_equal(m2.hashed, MIB);
    assert_non_null(strstr(r.why, "erased"));
    pair_free(&p);
}

/* One changed sector anywhere (first, middle, last, partial last) is found
 * exactly, with at most two MD5s per level (after the probe, the whole region and
 * the samples). */
static void test_one_sector(void **state)
{
    (void)state;
    static const struct {
        size_t len;
        uint32_t sector;
    } cases[] = {
        {MIB, 0},       {MIB, 1},        {MIB, 127},       {MIB, 128},
        {MIB, 200},     {MIB, 255},      {MIB + 100, 256}, /* the partial last sector */
        {24 * 1024, 3}, {3 * SECTOR, 2}, {2 * SECTOR, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct pair p = pair_new(cases[i].len, 10 + (uint32_t)i);
        pair_change(&p, cases[i].sector, 7);
        struct mem m = {0};
        struct esp_diff_result r;
        plan(&p, &m, NULL, 0, &r, 0);
        assert_int_equal(r.verdict, ESP_DIFF_SECTORS);
        assert_int_equal(r.n_runs, 1);
        assert_int_equal(r.runs[0].off, cases[i].sector * SECTOR);
        size_t end = (size_t)(cases[i].sector + 1) * SECTOR;
        assert_int_equal(r.runs[0].len, (end < p.len ? end : p.len) - cases[i].sector * SECTOR);
        assert_int_equal(r.sectors, 1);
        assert_int_equal(r.diff_bytes, r.runs[0].len);
        unsigned levels = 0;
        for (size_t s = (p.len + SECTOR - 1) / SECTOR; s > 1; s = (s + 1) / 2)
            levels++;
        size_t nsec = (p.len + SECTOR - 1) / SECTOR;
        assert_true(m.calls <= 2 + (nsec >= 16 ? 4 : 0) + 2 * levels);
        /* the halves hash the region once; each deeper level at most its range */
        assert_true(m.hashed <= 5 * SECTOR + 2 * p.len);
        esp_diff_result_free(&r);
        pair_free(&p);
    }
}

static void test_adjacent_merged(void **state)
{
    (void)state;
    struct pair p = pair_new(MIB, 3);
    pair_change(&p, 100, 0);
    pair_change(&p, 101, 4095);
    pair_change(&p, 102, 1);
    pair_change(&p, 200, 9);
    struct mem m = {0};
    struct esp_diff_result r;
    plan(&p, &m, NULL, 0, &r, 0);
    assert_int_equal(r.verdict, ESP_DIFF_SECTORS);
    assert_int_equal(r.n_runs, 2);
    assert_int_equal(r.runs[0].off, 100 * SECTOR);
    assert_int_equal(r.runs[0].len, 3 * SECTOR);
    assert_int_equal(r.runs[1].off, 200 * SECTOR);
    assert_int_equal(r.runs[1].len, SECTOR);
    assert_int_equal(r.sectors, 4);
    assert_int_equal(r.diff_bytes, 4 * SECTOR);
    esp_diff_result_free(&r);
    pair_free(&p);
}

/* A typical rebuild: header, app descriptor, trailer (hash) and one function. */
static void test_rebuild_pattern(void **state)
{
    (void)state;
    struct pair p = pair_new(MIB, 4);
    pair_change(&p, 0, 0x20);
    pair_change(&p, 77, 5);
    pair_change(&p, 255, 4000);
    struct mem m = {0};
    struct esp_diff_result r;
    plan(&p, &m, NULL, 0, &r, 0);
    assert_int_equal(r.verdict, ESP_DIFF_SECTORS);
    assert_int_equal(r.n_runs, 3);
    assert_int_equal(r.runs[0].off, 0);
    assert_int_equal(r.runs[1].off, 77 * SECTOR);
    assert_int_equal(r.runs[2].off, 255 * SECTOR);
    assert_true(m.calls <= ESP_DIFF_MAX_MD5);
    esp_diff_result_free(&r);
    pair_free(&p);
}

/* Another firmware altogether: the probe and four samples, a few KiB hashed,
 * not the whole region. */
static void test_other_firmware(void **state)
{
    (void)state;
    struct pair p = pair_new(MIB, 5);
    fill_pattern(p.flash, p.len, 99);
    struct mem m = {0};
    struct esp_diff_result r;
    plan(&p, &m, NULL, 0, &r, 0);
    assert_int_equal(r.verdict, ESP_DIFF_FULL);
    assert_non_null(strstr(r.why, "another firmware"));
    assert_null(r.runs);
    assert_int_equal(m.calls, 5);
    assert_int_equal(m.hashed, 5 * SECTOR);
    pair_free(&p);
}

/* Changes in every quarter (none where the samples are): give up at the quarter
 * level, not after hashing on. */
static void test_most_differ(void **state)
{
    (void)state;
    struct pair q = pair_new(MIB, 6);
    for (uint32_t s = 0; s < 256; s += 64)
        pair_change(&q, s + 3, 0);
    struct mem m = {0};
    struct esp_diff_result r;
    plan(&q, &m, NULL, 0, &r, 0);
    assert_int_equal(r.verdict, ESP_DIFF_FULL);
    assert_non_null(strstr(r.why, "most of the region"));
    assert_true(m.calls <= 1 + 2 + 4 + 4); /* probe, halves, samples, quarters */
    pair_free(&q);
}

static void test_every_sector_differs(void **state)
{
    (void)state;
    struct pair p = pair_new(2 * SECTOR, 7);
    pair_change(&p, 0, 1);
    pair_change(&p, 1, 1);
    struct mem m = {0};
    struct esp_diff_result r;
    plan(&p, &m, NULL, 0, &r, 0);
    assert_int_equal(r.verdict, ESP_DIFF_FULL);
    assert_non_null(strstr(r.why, "every sector"));
    /* A one-sector region that differs: the whole region. */
    struct pair q = pair_new(3000, 8);
    pair_change(&q, 0, 2999);
    struct mem m2 = {0};
    plan(&q, &m2, NULL, 0, &r, 0);
    assert_int_equal(r.verdict, ESP_DIFF_FULL);
    assert_int_equal(m2.calls, 1); /* the probe is the whole region */
    pair_free(&q);
    pair_free(&p);
}

static void test_budget(void **state)
{
    (void)state;
    struct pair p = pair_new(MIB, 9);
    for (uint32_t s = 5; s < 64; s += 9) /* 7 sectors, all in the first quarter */
        pair_change(&p, s, 0);
    struct mem m = {0};
    struct esp_diff_result r;
    plan(&p, &m, NULL, 12, &r, 0);
    assert_int_equal(r.verdict, ESP_DIFF_FULL);
    assert_non_null(strstr(r.why, "too many"));
    assert_int_equal(m.calls, 12);
    /* The default budget finds them all. */
    struct mem m2 = {0};
    plan(&p, &m2, NULL, 0, &r, 0);
    assert_int_equal(r.verdict, ESP_DIFF_SECTORS);
    assert_int_equal(r.sectors, 7);
    esp_diff_result_free(&r);
    pair_free(&p);
}

static void test_md5_error(void **state)
{
    (void)state;
    struct pair p = pair_new(MIB, 11);
    pair_change(&p, 40, 0);
    for (int at = 1; at <= 4; at++) {
        struct mem m = {.fail_at = at};
        struct esp_diff_result r;
        plan(&p, &m, NULL, 0, &r, -ETIMEDOUT);
        assert_int_equal(r.verdict, ESP_DIFF_FULL);
        assert_null(r.runs);
    }
    /* A board whose every MD5 is wrong never gets a partial plan that looks right:
     * everything "differs", so the whole region is written (and its verify fails). */
    struct mem m = {.wrong = true};
    struct esp_diff_result r;
    plan(&p, &m, NULL, 0, &r, 0);
    assert_int_equal(r.verdict, ESP_DIFF_FULL);
    pair_free(&p);
}

/* Random sets of a few changed sectors: the runs are exactly the changed sectors. */
static void test_random_sets(void **state)
{
    (void)state;
    uint32_t x = 12345;
    for (int round = 0; round < 200; round++) {
        x = x * 1103515245u + 12345u;
        size_t len = (size_t)(8 + (x >> 8) % 400) * SECTOR - ((x >> 20) % 3) * 1000;
        struct pair p = pair_new(len, x);
        size_t nsec = (len + SECTOR - 1) / SECTOR;
        bool *changed = calloc(nsec, 1);
        assert_non_null(changed);
        int k = 1 + (int)((x >> 4) % 4);
        uint32_t base = (uint32_t)((x >> 12) % nsec);
        for (int i = 0; i < k; i++) {
            x = x * 1103515245u + 12345u;
            /* clustered: within 1/8 of the region, so the "most differ" rule stays out */
            uint32_t s = (uint32_t)((base + (x >> 16) % (nsec / 8 + 1)) % nsec);
            uint32_t at = (uint32_t)((x >> 4) % SECTOR);
            if ((size_t)s * SECTOR + at >= len)
                at = 0;
            pair_change(&p, s, at);
            changed[s] = true;
        }
        struct mem m = {0};
        struct esp_diff_result r;
        plan(&p, &m, NULL, 0, &r, 0);
        size_t n_changed = 0;
        for (size_t s = 0; s < nsec; s++)
            n_changed += changed[s];
        if (r.verdict == ESP_DIFF_SECTORS) {
            bool *got = calloc(nsec, 1);
            assert_non_null(got);
            uint32_t prev_end = 0;
            for (size_t i = 0; i < r.n_runs; i++) {
                assert_int_equal(r.runs[i].off % SECTOR, 0);
                assert_true(i == 0 || r.runs[i].off > prev_end); /* ascending, merged */
                prev_end = r.runs[i].off + r.runs[i].len;
                assert_true(prev_end <= len);
                for (uint32_t o = r.runs[i].off; o < prev_end; o += SECTOR)
                    got[o / SECTOR] = true;
            }
            assert_memory_equal(got, changed, nsec);
            free(got);
        } else {
            /* Only when every sector of a small region changed. */
            assert_int_equal(r.verdict, ESP_DIFF_FULL);
            assert_true(n_changed * 4 > nsec * 3 || n_changed == nsec);
        }
        assert_true(m.calls <= ESP_DIFF_MAX_MD5);
        esp_diff_result_free(&r);
        free(changed);
        pair_free(&p);
    }
}

static void test_bad_args(void **state)
{
    (void)state;
    uint8_t b[4] = {0};
    struct esp_diff_result r;
    struct esp_error err;
    assert_int_equal(esp_diff_plan(b, 0, NULL, 0, mem_md5, NULL, &r, &err), -EINVAL);
    assert_int_equal(r.verdict, ESP_DIFF_FULL);
    assert_string_equal(esp_diff_verdict_to_string(ESP_DIFF_SECTORS), "sectors");
    esp_diff_result_free(NULL);
}

/* ==== part 2: the engine against a board whose stub is running ====================== */

#define BOARD_FLASH (4u * MIB)

struct board {
    struct transport t;
    const struct esp_chip_desc *chip;
    bool secinfo;      /* answers GET_SECURITY_INFO (S2 and later) */
    uint8_t crypt_cnt; /* FLASH_CRYPT_CNT in it */
    uint8_t *flash;
    struct slip_decoder dec;
    uint8_t *out;
    size_t out_len, out_cap, out_pos;
    /* write state */
    uint32_t w_off, w_pos, w_size;
    bool defl;
    z_stream zs;
    bool zs_init;
    /* faults */
    bool md5_wrong;
    int lose_blocks; /* the next N data blocks are acked but not programmed */
    /* what happened */
    unsigned n_md5, n_data;
    unsigned n_begin;
    uint32_t begin_off[64], begin_size[64];
    unsigned md5_after_last_begin; /* MD5 requests since the last *_BEGIN */
    uint32_t last_md5_off, last_md5_len;
    char log[16384];
};

static void out_frame(struct board *b, const uint8_t *d, size_t n)
{
    size_t need = slip_encoded_max(n);
    if (b->out_len + need > b->out_cap) {
        b->out_cap = (b->out_len + need) * 2;
        b->out = realloc(b->out, b->out_cap);
        assert_non_null(b->out);
    }
    b->out_len += slip_encode(d, n, b->out + b->out_len);
}

/* Stub reply: two status bytes, the first the stub's error code. */
static void reply(struct board *b, uint8_t op, uint32_t value, const uint8_t *data, size_t dlen,
                  uint8_t code)
{
    uint8_t buf[8 + 32 + 2];
    assert_true(dlen <= 32);
    size_t size = dlen + 2;
    buf[0] = 1;
    buf[1] = op;
    buf[2] = (uint8_t)size;
    buf[3] = 0;
    esp_put_u32(buf + 4, value);
    if (dlen)
        memcpy(buf + 8, data, dlen);
    buf[8 + dlen] = code;
    buf[9 + dlen] = 0;
    out_frame(b, buf, 8 + size);
}

/* As the stub: data past the size announced in *_BEGIN (padding) is not written. */
static void program(struct board *b, const uint8_t *d, size_t n)
{
    if (n > b->w_size - b->w_pos)
        n = b->w_size - b->w_pos;
    assert_true((uint64_t)b->w_off + b->w_pos + n <= BOARD_FLASH);
    if (b->lose_blocks <= 0)
        memcpy(b->flash + b->w_off + b->w_pos, d, n);
    b->w_pos += (uint32_t)n;
}

static void board_handle(struct board *b, const uint8_t *p, size_t n)
{
    assert_true(n >= 8);
    uint8_t op = p[1];
    const uint8_t *a = p + 8;
    size_t alen = n - 8;
    switch (op) {
    case ESP_OP_SYNC: /* a running stub answers with value 0 */
        reply(b, op, 0, NULL, 0, 0);
        return;
    case ESP_OP_READ_REG: {
        uint32_t addr = esp_get_u32(a), v = 0;
        if (addr == ESP_CHIP_DETECT_MAGIC_REG)
            v = b->chip->magic[0];
        else if (addr == b->chip->spi.w0)
            v = 0x1640EF; /* Winbond 4 MB */
        reply(b, op, v, NULL, 0, 0);
        return;
    }
    case ESP_OP_GET_SECURITY_INFO:
        if (b->secinfo) {
            uint8_t d[20] = {0};
            d[4] = b->crypt_cnt;
            esp_put_u32(d + 12, (uint32_t)b->chip->image_chip_id);
            reply(b, op, 0, d, 20, 0);
        } else {
            reply(b, op, 0, NULL, 0, 0xC3);
        }
        return;
    case ESP_OP_FLASH_BEGIN:
    case ESP_OP_FLASH_DEFL_BEGIN: {
        uint32_t size = esp_get_u32(a), off = esp_get_u32(a + 12);
        assert_true(b->n_begin < 64);
        b->begin_off[b->n_begin] = off;
        b->begin_size[b->n_begin++] = size;
        b->md5_after_last_begin = 0;
        /* The stub erases the sectors it is about to write (lazily; at once here). */
        uint32_t from = off / SECTOR * SECTOR, to = (off + size + SECTOR - 1) / SECTOR * SECTOR;
        assert_true(to <= BOARD_FLASH);
        memset(b->flash + from, 0xFF, to - from);
        b->w_off = off;
        b->w_pos = 0;
        b->w_size = size;
        b->defl = op == ESP_OP_FLASH_DEFL_BEGIN;
        if (b->zs_init)
            inflateEnd(&b->zs);
        memset(&b->zs, 0, sizeof(b->zs));
        assert_int_equal(inflateInit(&b->zs), Z_OK);
        b->zs_init = true;
        reply(b, op, 0, NULL, 0, 0);
        return;
    }
    case ESP_OP_FLASH_DATA:
    case ESP_OP_FLASH_DEFL_DATA: {
        uint32_t len = esp_get_u32(a);
        assert_int_equal(len, alen - 16);
        b->n_data++;
        if (op == ESP_OP_FLASH_DATA) {
            program(b, a + 16, len);
        } else {
            uint8_t tmp[65536];
            b->zs.next_in = (Bytef *)(uintptr_t)(a + 16);
            b->zs.avail_in = len;
            int zr;
            do {
                b->zs.next_out = tmp;
                b->zs.avail_out = sizeof(tmp);
                zr = inflate(&b->zs, Z_NO_FLUSH);
                program(b, tmp, sizeof(tmp) - b->zs.avail_out);
            } while (zr == Z_OK && b->zs.avail_out == 0);
        }
        if (b->lose_blocks > 0)
            b->lose_blocks--;
        reply(b, op, 0, NULL, 0, 0);
        return;
    }
    case ESP_OP_SPI_FLASH_MD5: {
        uint32_t off = esp_get_u32(a), len = esp_get_u32(a + 4);
        assert_true((uint64_t)off + len <= BOARD_FLASH);
        uint8_t md[16];
        md5_of(b->flash + off, len, md);
        if (b->md5_wrong)
            md[0] ^= 0x55;
        b->n_md5++;
        b->md5_after_last_begin++;
        b->last_md5_off = off;
        b->last_md5_len = len;
        reply(b, op, 0, md, 16, 0);
        return;
    }
    default: /* SPI_ATTACH, SPI_SET_PARAMS, WRITE_REG, *_END */
        reply(b, op, 0, NULL, 0, 0);
        return;
    }
}

static struct board *B(struct transport *t)
{
    return (struct board *)t->priv;
}

static int bd_write(struct transport *t, const uint8_t *buf, size_t len, int timeout_ms)
{
    (void)timeout_ms;
    struct board *b = B(t);
    size_t pos = 0;
    while (pos < len) {
        size_t used = 0;
        enum slip_result r = slip_decoder_feed(&b->dec, buf + pos, len - pos, &used);
        pos += used;
        if (r == SLIP_FRAME)
            board_handle(b, b->dec.frame, b->dec.frame_len);
    }
    return (int)len;
}

static int bd_read(struct transport *t, uint8_t *buf, size_t cap, int timeout_ms)
{
    (void)timeout_ms;
    struct board *b = B(t);
    size_t n = b->out_len - b->out_pos;
    if (n == 0)
        return 0; /* nothing queued: a timeout costs no wall time */
    if (n > cap)
        n = cap;
    memcpy(buf, b->out + b->out_pos, n);
    b->out_pos += n;
    return (int)n;
}

static int bd_set_baud(struct transport *t, uint32_t baud)
{
    (void)t;
    (void)baud;
    return 0;
}

static int bd_set_lines(struct transport *t, int dtr, int rts)
{
    (void)t;
    (void)dtr;
    (void)rts;
    return -ENOTSUP;
}

static int bd_flush(struct transport *t)
{
    B(t)->out_pos = B(t)->out_len;
    return 0;
}

static int bd_drain(struct transport *t)
{
    (void)t;
    return 0;
}

static int bd_reopen(struct transport *t, int timeout_ms)
{
    (void)t;
    (void)timeout_ms;
    return -ENOTSUP;
}

static void bd_close(struct transport *t)
{
    (void)t;
}

static const struct transport_ops board_ops = {
    .write = bd_write,
    .read = bd_read,
    .set_baud = bd_set_baud,
    .set_lines = bd_set_lines,
    .flush_input = bd_flush,
    .drain = bd_drain,
    .reopen = bd_reopen,
    .close = bd_close,
};

static struct board *board_new(enum esp_chip chip)
{
    struct board *b = calloc(1, sizeof(*b));
    assert_non_null(b);
    b->t.ops = &board_ops;
    b->t.kind = TRANSPORT_TERMIOS;
    b->t.caps = TRANSPORT_CAP_BAUD;
    b->t.baud = 115200;
    b->t.cancel_fd = -1;
    b->t.priv = b;
    snprintf(b->t.uri, sizeof(b->t.uri), "board:");
    b->chip = esp_chip_get(chip);
    b->flash = malloc(BOARD_FLASH);
    assert_non_null(b->flash);
    memset(b->flash, 0xFF, BOARD_FLASH);
    assert_int_equal(slip_decoder_init(&b->dec, 0x5000), 0);
    return b;
}

static void board_free(struct board *b)
{
    if (b->zs_init)
        inflateEnd(&b->zs);
    slip_decoder_free(&b->dec);
    free(b->out);
    free(b->flash);
    free(b);
}

/* Clears the counters before the next esp_loader_flash. */
static void board_mark(struct board *b)
{
    b->n_md5 = b->n_data = b->n_begin = 0;
    b->md5_after_last_begin = 0;
    b->log[0] = '\0';
}

static void log_cb(void *ctx, enum esp_log_level level, const char *msg)
{
    struct board *b = ctx;
    (void)level;
    size_t n = strlen(b->log);
    snprintf(b->log + n, sizeof(b->log) - n, "%s\n", msg);
}

/* Connected to the board's running stub, flash attached. */
static struct esp_loader *connect_stub(struct board *b)
{
    struct esp_loader_config cfg;
    esp_loader_config_init(&cfg);
    cfg.before = ESP_BEFORE_NO_RESET; /* SYNC only: the stub's zero values say it runs */
    cfg.log = log_cb;
    cfg.log_ctx = b;
    struct esp_loader *l = esp_loader_new(&b->t, &cfg);
    assert_non_null(l);
    struct esp_error err;
    assert_int_equal(esp_loader_connect(l, &err), 0);
    assert_true(esp_loader_info(l)->stub_running);
    assert_int_equal(esp_loader_start(l, &err), 0);
    return l;
}

#define APP_OFF 0x10000u

static int flash_app(struct esp_loader *l, struct board *b, const uint8_t *d, size_t n, bool diff,
                     bool compress, struct esp_error *err)
{
    struct esp_region reg = {.offset = APP_OFF, .data = d, .len = n, .name = "app"};
    struct esp_flash_opts opts;
    esp_flash_opts_init(&opts);
    assert_true(opts.diff); /* on by default */
    opts.diff = diff;
    opts.compress = compress;
    board_mark(b);
    return esp_loader_flash(l, &reg, 1, &opts, err);
}

static void engine_reflash(enum esp_chip chip, bool compress)
{
    struct board *b = board_new(chip);
    struct esp_loader *l = connect_stub(b);
    size_t n = 300000; /* not a multiple of 4 KiB: the last sector is partial */
    uint8_t *d = malloc(n);
    assert_non_null(d);
    fill_pattern(d, n, 21);
    struct esp_error err;

    /* A fresh board: one sector's MD5, then the whole region written and verified. */
    assert_int_equal(flash_app(l, b, d, n, true, compress, &err), 0);
    assert_int_equal(b->n_begin, 1);
    assert_int_equal(b->begin_off[0], APP_OFF);
    assert_int_equal(b->begin_size[0], n);
    assert_int_equal(b->n_md5, 2); /* the probe, the verify */
    assert_int_equal(esp_loader_stats(l)->skipped_bytes, 0);
    assert_memory_equal(b->flash + APP_OFF, d, n);

    /* The same again: nothing written, verified by the whole-region MD5. */
    assert_int_equal(flash_app(l, b, d, n, true, compress, &err), 0);
    assert_int_equal(b->n_begin, 0);
    assert_int_equal(b->n_data, 0);
    assert_int_equal(esp_loader_stats(l)->skipped_bytes, n);
    assert_non_null(strstr(b->log, "already on flash"));

    /* One byte changed inside sector 37: exactly that sector written, then the whole
     * region's MD5 as the last request. */
    d[37 * SECTOR + 1234] ^= 0x01;
    assert_int_equal(flash_app(l, b, d, n, true, compress, &err), 0);
    assert_int_equal(b->n_begin, 1);
    assert_int_equal(b->begin_off[0], APP_OFF + 37 * SECTOR);
    assert_int_equal(b->begin_size[0], SECTOR);
    assert_int_equal(b->md5_after_last_begin, 1);
    assert_int_equal(b->last_md5_off, APP_OFF);
    assert_int_equal(b->last_md5_len, n);
    assert_int_equal(esp_loader_stats(l)->skipped_bytes, n + n - SECTOR);
    assert_memory_equal(b->flash + APP_OFF, d, n);

    /* The partial last sector. */
    d[n - 1] ^= 0x80;
    assert_int_equal(flash_app(l, b, d, n, true, compress, &err), 0);
    assert_int_equal(b->n_begin, 1);
    assert_int_equal(b->begin_off[0], APP_OFF + (uint32_t)(n / SECTOR * SECTOR));
    assert_int_equal(b->begin_size[0], n % SECTOR);
    assert_memory_equal(b->flash + APP_OFF, d, n);

    /* Most of it changed: the whole region in one write. */
    fill_pattern(d, n, 22);
    assert_int_equal(flash_app(l, b, d, n, true, compress, &err), 0);
    assert_int_equal(b->n_begin, 1);
    assert_int_equal(b->begin_off[0], APP_OFF);
    assert_int_equal(b->begin_size[0], n);
    assert_non_null(strstr(b->log, "another firmware"));
    assert_memory_equal(b->flash + APP_OFF, d, n);

    /* diff off: the same image is written whole, no MD5 before the write. */
    assert_int_equal(flash_app(l, b, d, n, false, compress, &err), 0);
    assert_int_equal(b->n_begin, 1);
    assert_int_equal(b->begin_size[0], n);
    assert_int_equal(b->n_md5, 1); /* the verify only */
    assert_int_equal(b->md5_after_last_begin, 1);

    free(d);
    esp_loader_free(l);
    board_free(b);
}

static void test_engine_esp32(void **state)
{
    (void)state;
    engine_reflash(ESP_CHIP_ESP32, true);
}

static void test_engine_esp32_raw(void **state)
{
    (void)state;
    engine_reflash(ESP_CHIP_ESP32, false);
}

static void test_engine_esp8266(void **state)
{
    (void)state;
    engine_reflash(ESP_CHIP_ESP8266, true);
}

/* The changed sectors are written but do not verify (the board lost the block):
 * the whole region is written again and verifies. */
static void test_engine_verify_fallback(void **state)
{
    (void)state;
    struct board *b = board_new(ESP_CHIP_ESP32);
    struct esp_loader *l = connect_stub(b);
    size_t n = 64 * SECTOR;
    uint8_t *d = malloc(n);
    assert_non_null(d);
    fill_pattern(d, n, 31);
    memcpy(b->flash + APP_OFF, d, n);
    d[5 * SECTOR] ^= 0xFF;
    b->lose_blocks = 1;
    struct esp_error err;
    assert_int_equal(flash_app(l, b, d, n, true, true, &err), 0);
    assert_int_equal(b->n_begin, 2);
    assert_int_equal(b->begin_off[0], APP_OFF + 5 * SECTOR);
    assert_int_equal(b->begin_size[0], SECTOR);
    assert_int_equal(b->begin_off[1], APP_OFF);
    assert_int_equal(b->begin_size[1], n);
    assert_non_null(strstr(b->log, "writing all of it"));
    assert_int_equal(esp_loader_stats(l)->skipped_bytes, 0);
    assert_memory_equal(b->flash + APP_OFF, d, n);

    /* A board whose MD5s are all wrong: the whole region, then a verify error. */
    b->md5_wrong = true;
    d[9 * SECTOR] ^= 0xFF;
    assert_int_equal(flash_app(l, b, d, n, true, true, &err), -EBADMSG);
    assert_int_equal(err.stage, ESP_STAGE_VERIFY);
    assert_int_equal(b->n_begin, 1);
    assert_int_equal(b->begin_size[0], n);
    free(d);
    esp_loader_free(l);
    board_free(b);
}

/* Flash encryption on (security info, odd FLASH_CRYPT_CNT): the chip would hash
 * ciphertext, so no comparison; erase_all: the flash is blank anyway. */
static void test_engine_no_diff_cases(void **state)
{
    (void)state;
    struct board *b = board_new(ESP_CHIP_ESP32C3);
    b->secinfo = true;
    b->crypt_cnt = 1;
    struct esp_loader *l = connect_stub(b);
    assert_true(esp_loader_info(l)->flash_encryption);
    size_t n = 16 * SECTOR;
    uint8_t *d = malloc(n);
    assert_non_null(d);
    fill_pattern(d, n, 41);
    memcpy(b->flash + APP_OFF, d, n);
    struct esp_error err;
    assert_int_equal(flash_app(l, b, d, n, true, true, &err), 0);
    assert_int_equal(b->n_begin, 1); /* written although the same */
    assert_int_equal(b->md5_after_last_begin, b->n_md5);
    esp_loader_free(l);
    board_free(b);

    b = board_new(ESP_CHIP_ESP32);
    l = connect_stub(b);
    memcpy(b->flash + APP_OFF, d, n);
    struct esp_region reg = {.offset = APP_OFF, .data = d, .len = n, .name = "app"};
    struct esp_flash_opts opts;
    esp_flash_opts_init(&opts);
    opts.erase_all = true;
    board_mark(b);
    assert_int_equal(esp_loader_flash(l, &reg, 1, &opts, &err), 0);
    assert_int_equal(b->n_begin, 1);
    assert_int_equal(b->md5_after_last_begin, b->n_md5);

    /* A region off a sector boundary is written whole (with its warning). */
    struct esp_region odd = {.offset = APP_OFF + 0x100, .data = d, .len = 2 * SECTOR};
    memcpy(b->flash + APP_OFF + 0x100, d, 2 * SECTOR);
    esp_flash_opts_init(&opts);
    board_mark(b);
    assert_int_equal(esp_loader_flash(l, &odd, 1, &opts, &err), 0);
    assert_int_equal(b->n_begin, 1);
    assert_int_equal(b->md5_after_last_begin, b->n_md5);
    free(d);
    esp_loader_free(l);
    board_free(b);
}

/* The caller's flash MD5 (the daemon's skip_if_same compare read it) saves the
 * whole-region request. */
static void test_engine_md5_hint(void **state)
{
    (void)state;
    struct board *b = board_new(ESP_CHIP_ESP32);
    struct esp_loader *l = connect_stub(b);
    size_t n = 128 * SECTOR;
    uint8_t *d = malloc(n);
    assert_non_null(d);
    fill_pattern(d, n, 51);
    memcpy(b->flash + APP_OFF, d, n);
    d[100 * SECTOR + 5] ^= 1;
    struct esp_error err;
    uint8_t hint[16];
    assert_int_equal(esp_loader_flash_md5(l, APP_OFF, (uint32_t)n, hint, &err), 0);
    struct esp_region reg = {
        .offset = APP_OFF, .data = d, .len = n, .name = "app", .flash_md5 = hint};
    struct esp_flash_opts opts;
    esp_flash_opts_init(&opts);
    board_mark(b);
    assert_int_equal(esp_loader_flash(l, &reg, 1, &opts, &err), 0);
    assert_int_equal(b->n_begin, 1);
    assert_int_equal(b->begin_off[0], APP_OFF + 100 * SECTOR);
    /* No probe and no whole-region request: the four samples, 7 levels of at most
     * two, then the verify. */
    assert_true(b->n_md5 <= 4 + 2 * 7 + 1);
    assert_int_equal(b->last_md5_len, n);
    assert_memory_equal(b->flash + APP_OFF, d, n);
    free(d);
    esp_loader_free(l);
    board_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same),
        cmocka_unit_test(test_blank),
        cmocka_unit_test(test_one_sector),
        cmocka_unit_test(test_adjacent_merged),
        cmocka_unit_test(test_rebuild_pattern),
        cmocka_unit_test(test_other_firmware),
        cmocka_unit_test(test_most_differ),
        cmocka_unit_test(test_every_sector_differs),
        cmocka_unit_test(test_budget),
        cmocka_unit_test(test_md5_error),
        cmocka_unit_test(test_random_sets),
        cmocka_unit_test(test_bad_args),
        cmocka_unit_test(test_engine_esp32),
        cmocka_unit_test(test_engine_esp32_raw),
        cmocka_unit_test(test_engine_esp8266),
        cmocka_unit_test(test_engine_verify_fallback),
        cmocka_unit_test(test_engine_no_diff_cases),
        cmocka_unit_test(test_engine_md5_hint),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
