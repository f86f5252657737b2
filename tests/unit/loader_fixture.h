/*
 * loader_fixture: the scripted fake board the test_esp_loader*.c tests share
 * (included after <cmocka.h>; static functions, one copy per test).
 *
 * The fake is a struct transport with its own ops table. It decodes what the
 * engine writes, records every command (opcode, body) and answers the way the
 * ESP8266 ROM, an ESP32-family ROM or the flasher stub would (status-byte
 * layout, "OHAI", MD5 as hex or raw), over a small flash model. Knobs inject
 * the faults under test: silence, boot log, junk frames, a lost data block, a
 * device error on a block, a wrong MD5. Reads never block: when nothing is
 * queued a read returns 0 at once, so device timeouts cost no wall time.
 * make_stub_dir/remove_stub_dir: the group setup, a temp dir with a tiny ESP32 stub.
 */
#ifndef LOADER_FIXTURE_H
#define LOADER_FIXTURE_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <zlib.h>

#include "esp_chip.h"
#include "esp_cmd.h"
#include "esp_loader.h"
#include "slip.h"
#include "transport.h"
#define FLASH_SIZE (4u * 1024 * 1024)
#define MAX_RECS 4096

enum fake_kind { FAKE_ROM_8266, FAKE_ROM_ESP32 };

struct rec {
    uint8_t op;
    uint32_t checksum;
    size_t len;
    uint8_t *body;
    uint32_t baud; /* the host's rate when the frame went out */
    bool to_stub;  /* the stub (not the ROM) received it */
};

struct fake {
    struct transport t;
    enum fake_kind kind;
    bool stub;      /* stub answers (uploaded, or "already running") */
    bool has_lines; /* modem lines available */

    /* Device -> host. */
    uint8_t *out;
    size_t out_len, out_cap, out_pos;

    /* Host -> device. */
    struct slip_decoder dec;
    struct rec recs[MAX_RECS];
    size_t nrec;

    /* Lines. */
    int dtr, rts;
    char line_log[512];

    /* Identity. */
    uint32_t magic;
    bool secinfo;          /* GET_SECURITY_INFO supported */
    uint32_t secinfo_chip; /* chip id in it */
    bool secinfo_wrong_op; /* unsupported reply echoes another opcode */
    struct {
        uint32_t addr, value;
    } regs[16];
    size_t nregs;

    /* Connect behaviour. */
    bool sync_silent;
    const char *boot_log;    /* emitted when EN is released */
    const uint8_t *pre_sync; /* raw bytes before the first SYNC's replies */
    size_t pre_sync_len;
    bool pre_sync_done;

    /* Flash model. */
    uint8_t *flash;
    uint32_t w_off, w_size, w_block;
    bool w_defl;
    z_stream zs;
    bool zs_init;
    uint32_t w_pos;

    /* Stub behaviour. */
    bool legacy_stub;  /* esptool 4.x stub: a 20-byte FLASH_(DEFL_)BEGIN gets status 01 00 */
    bool stub_no_ohai; /* MEM_END answered, the stub never says OHAI (the ROM is gone) */

    /* Faults. */
    int lose_data_seq; /* this DATA seq is lost once (no effect, no reply) */
    bool lost_once;
    int fail_data_seq; /* this DATA seq fails with fail_code */
    uint8_t fail_code;
    bool md5_wrong;
    uint32_t noisy_above; /* data frames (MEM/FLASH) sent above this rate arrive corrupt */
    bool read_lost_once;  /* the next READ_FLASH command is lost (nothing happens) */
    int read_reply_fault; /* 0 none, 1 READ_FLASH reply dropped, 2 garbled */
    bool rd_active;       /* streaming: 4-byte frames are acks */
    uint32_t rd_off, rd_len;

    /* Log captured from the engine. */
    char log[8192];
};

/* ---- device -> host ---------------------------------------------------------- */

static void out_raw(struct fake *f, const uint8_t *b, size_t n)
{
    if (f->out_len + n > f->out_cap) {
        f->out_cap = (f->out_len + n) * 2 + 256;
        f->out = realloc(f->out, f->out_cap);
        assert_non_null(f->out);
    }
    memcpy(f->out + f->out_len, b, n);
    f->out_len += n;
}

static void out_frame(struct fake *f, const uint8_t *b, size_t n)
{
    uint8_t *enc = malloc(slip_encoded_max(n));
    assert_non_null(enc);
    size_t e = slip_encode(b, n, enc);
    out_raw(f, enc, e);
    free(enc);
}

/* Reply with data and status; failure code per responder layout. */
static void reply(struct fake *f, uint8_t op, uint32_t value, const uint8_t *data, size_t dlen,
                  bool fail, uint8_t code)
{
    uint8_t buf[8 + 64 + 4];
    size_t st = (!f->stub && f->kind == FAKE_ROM_ESP32) ? 4 : 2;
    assert_true(dlen <= 64);
    size_t size = dlen + st;
    buf[0] = 0x01;
    buf[1] = op;
    buf[2] = (uint8_t)size;
    buf[3] = (uint8_t)(size >> 8);
    esp_put_u32(buf + 4, value);
    if (dlen)
        memcpy(buf + 8, data, dlen);
    memset(buf + 8 + dlen, 0, st);
    if (fail) {
        if (f->stub) {
            buf[8 + dlen] = code;
        } else {
            buf[8 + dlen] = 1;
            buf[8 + dlen + 1] = code;
        }
    }
    out_frame(f, buf, 8 + size);
}

static void ok(struct fake *f, uint8_t op)
{
    reply(f, op, 0, NULL, 0, false, 0);
}

/* ---- the device model ------------------------------------------------------- */

static uint32_t reg_value(struct fake *f, uint32_t addr)
{
    if (addr == ESP_CHIP_DETECT_MAGIC_REG)
        return f->magic;
    for (size_t i = 0; i < f->nregs; i++)
        if (f->regs[i].addr == addr)
            return f->regs[i].value;
    return 0;
}

static void set_reg(struct fake *f, uint32_t addr, uint32_t value)
{
    assert_true(f->nregs < 16);
    f->regs[f->nregs].addr = addr;
    f->regs[f->nregs].value = value;
    f->nregs++;
}

static void flash_put(struct fake *f, uint32_t addr, const uint8_t *d, size_t n)
{
    assert_true((uint64_t)addr + n <= FLASH_SIZE);
    memcpy(f->flash + addr, d, n);
}

static void handle_data(struct fake *f, uint8_t op, const uint8_t *b, size_t n)
{
    assert_true(n >= 16);
    uint32_t len = esp_get_u32(b), seq = esp_get_u32(b + 4);
    assert_int_equal(len, n - 16);
    if ((int)seq == f->lose_data_seq && !f->lost_once) {
        f->lost_once = true;
        return; /* lost on the wire: nothing happens, no reply */
    }
    if ((int)seq == f->fail_data_seq) {
        reply(f, op, 0, NULL, 0, true, f->fail_code);
        return;
    }
    if (op == ESP_OP_FLASH_DATA) {
        flash_put(f, f->w_off + seq * f->w_block, b + 16, len);
    } else {
        uint8_t tmp[65536];
        f->zs.next_in = (Bytef *)(uintptr_t)(b + 16);
        f->zs.avail_in = len;
        int zr;
        do {
            f->zs.next_out = tmp;
            f->zs.avail_out = sizeof(tmp);
            zr = inflate(&f->zs, Z_NO_FLUSH);
            size_t got = sizeof(tmp) - f->zs.avail_out;
            flash_put(f, f->w_off + f->w_pos, tmp, got);
            f->w_pos += (uint32_t)got;
        } while (zr == Z_OK && f->zs.avail_out == 0);
    }
    ok(f, op);
}

static void handle(struct fake *f, const uint8_t *p, size_t n)
{
    assert_true(n >= 8);
    assert_int_equal(p[0], 0x00);
    uint8_t op = p[1];
    size_t blen = esp_get_u16(p + 2);
    assert_int_equal(blen, n - 8);
    const uint8_t *b = p + 8;

    assert_true(f->nrec < MAX_RECS);
    struct rec *r = &f->recs[f->nrec++];
    r->op = op;
    r->checksum = esp_get_u32(p + 4);
    r->len = blen;
    r->body = malloc(blen ? blen : 1);
    memcpy(r->body, b, blen);
    r->baud = f->t.baud;
    r->to_stub = f->stub;

    bool data_op = op == ESP_OP_MEM_DATA || op == ESP_OP_FLASH_DATA || op == ESP_OP_FLASH_DEFL_DATA;
    if (data_op && f->noisy_above && f->t.baud > f->noisy_above) {
        reply(f, op, 0, NULL, 0, true, f->stub ? 0xC1 : 0x07); /* checksum error */
        return;
    }

    switch (op) {
    case ESP_OP_SYNC:
        if (f->sync_silent)
            return;
        if (f->pre_sync && !f->pre_sync_done) {
            f->pre_sync_done = true;
            out_raw(f, f->pre_sync, f->pre_sync_len);
        }
        for (int i = 0; i < 8; i++)
            reply(f, op, f->stub ? 0 : 0x20120707, NULL, 0, false, 0);
        return;
    case ESP_OP_READ_REG:
        reply(f, op, reg_value(f, esp_get_u32(b)), NULL, 0, false, 0);
        return;
    case ESP_OP_GET_SECURITY_INFO:
        if (f->secinfo) {
            uint8_t d[20] = {0};
            esp_put_u32(d + 12, f->secinfo_chip);
            reply(f, op, 0, d, 20, false, 0);
        } else {
            reply(f, f->secinfo_wrong_op ? ESP_OP_READ_REG : op, 0, NULL, 0, true, 0x05);
        }
        return;
    case ESP_OP_CHANGE_BAUDRATE:
        /* The ESP8266 ROM has no CHANGE_BAUDRATE (PROTOCOL-ROM.md §2): 01 05. */
        if (f->kind == FAKE_ROM_8266 && !f->stub)
            reply(f, op, 0, NULL, 0, true, 0x05);
        else
            ok(f, op);
        return;
    case ESP_OP_MEM_END:
        ok(f, op);
        if (f->stub_no_ohai)
            return;
        out_frame(f, (const uint8_t *)"OHAI", 4);
        f->stub = true;
        return;
    case ESP_OP_FLASH_BEGIN:
    case ESP_OP_FLASH_DEFL_BEGIN:
        /* Argument counts as the real responders take them (PROTOCOL-ROM.md §2.1):
         * ESP8266/ESP32 ROM 4 words; S2+ ROM (the ones with security info) 4 or 5;
         * current stubs 4 or 5; the esptool 4.x legacy stub 4 only, 5 -> 01 00. */
        if (blen == 20 && ((f->stub && f->legacy_stub) || (!f->stub && !f->secinfo))) {
            reply(f, op, 0, NULL, 0, true, 0x01);
            return;
        }
        assert_true(blen == 16 || blen == 20);
        f->w_size = esp_get_u32(b);
        f->w_block = esp_get_u32(b + 8);
        f->w_off = esp_get_u32(b + 12);
        f->w_defl = op == ESP_OP_FLASH_DEFL_BEGIN;
        f->w_pos = 0;
        if (f->kind == FAKE_ROM_8266 && !f->stub && op == ESP_OP_FLASH_BEGIN) {
            /* The ROM erases at once, with its erase bug (esp_chip.h's model). */
            uint64_t from = f->w_off / 4096u * 4096u;
            uint64_t bytes = (uint64_t)esp8266_rom_erased_sectors(f->w_off, f->w_size) * 4096u;
            if (from < FLASH_SIZE) {
                if (from + bytes > FLASH_SIZE)
                    bytes = FLASH_SIZE - from;
                memset(f->flash + from, 0xFF, bytes);
            }
        }
        if (f->zs_init)
            inflateEnd(&f->zs);
        f->zs_init = false;
        if (f->w_defl) {
            memset(&f->zs, 0, sizeof(f->zs));
            assert_int_equal(inflateInit(&f->zs), Z_OK);
            f->zs_init = true;
        }
        ok(f, op);
        return;
    case ESP_OP_FLASH_DATA:
    case ESP_OP_FLASH_DEFL_DATA:
        handle_data(f, op, b, blen);
        return;
    case ESP_OP_SPI_FLASH_MD5: {
        uint32_t a = esp_get_u32(b), len = esp_get_u32(b + 4);
        uint8_t md[16];
        unsigned int ml = 16;
        assert_true((uint64_t)a + len <= FLASH_SIZE);
        EVP_Digest(f->flash + a, len, md, &ml, EVP_md5(), NULL);
        if (f->md5_wrong)
            md[0] ^= 0x55;
        if (f->stub) {
            reply(f, op, 0, md, 16, false, 0);
        } else {
            char hex[33];
            for (int i = 0; i < 16; i++)
                snprintf(hex + 2 * i, 3, "%02x", md[i]);
            reply(f, op, 0, (const uint8_t *)hex, 32, false, 0);
        }
        return;
    }
    case ESP_OP_READ_FLASH: {
        if (f->read_lost_once) {
            f->read_lost_once = false;
            return;
        }
        uint32_t a = esp_get_u32(b), len = esp_get_u32(b + 4), pkt = esp_get_u32(b + 8);
        assert_true((uint64_t)a + len <= FLASH_SIZE);
        if (f->read_reply_fault == 2) {
            static const uint8_t garbled[] = {0xC0, 0x01, 0xD2, 0x02, 0x00, 0xDB, 0x01, 0xC0};
            out_raw(f, garbled, sizeof(garbled));
        } else if (f->read_reply_fault == 0) {
            ok(f, op);
        }
        f->read_reply_fault = 0;
        /* All data at once (the fake ignores the in-flight window); MD5 after the last ack. */
        for (uint32_t off = 0; off < len; off += pkt)
            out_frame(f, f->flash + a + off, len - off < pkt ? len - off : pkt);
        f->rd_active = true;
        f->rd_off = a;
        f->rd_len = len;
        return;
    }
    case ESP_OP_ERASE_FLASH:
        memset(f->flash, 0xFF, FLASH_SIZE);
        ok(f, op);
        return;
    case ESP_OP_ERASE_REGION:
        memset(f->flash + esp_get_u32(b), 0xFF, esp_get_u32(b + 4));
        ok(f, op);
        return;
    default:
        ok(f, op);
        return;
    }
}

/* ---- transport ops ---------------------------------------------------------- */

static struct fake *F(struct transport *t)
{
    return (struct fake *)t->priv;
}

static int fk_write(struct transport *t, const uint8_t *buf, size_t len, int timeout_ms)
{
    (void)timeout_ms;
    struct fake *f = F(t);
    size_t pos = 0;
    while (pos < len) {
        size_t used = 0;
        enum slip_result r = slip_decoder_feed(&f->dec, buf + pos, len - pos, &used);
        pos += used;
        if (r != SLIP_FRAME)
            continue;
        if (f->rd_active && f->dec.frame_len == 4) {
            if (esp_get_u32(f->dec.frame) == f->rd_len) {
                uint8_t md[16];
                unsigned int ml = 16;
                EVP_Digest(f->flash + f->rd_off, f->rd_len, md, &ml, EVP_md5(), NULL);
                out_frame(f, md, 16);
                f->rd_active = false;
            }
            continue;
        }
        handle(f, f->dec.frame, f->dec.frame_len);
    }
    return (int)len;
}

static int fk_read(struct transport *t, uint8_t *buf, size_t cap, int timeout_ms)
{
    (void)timeout_ms;
    struct fake *f = F(t);
    size_t n = f->out_len - f->out_pos;
    if (n == 0)
        return 0;
    if (n > cap)
        n = cap;
    memcpy(buf, f->out + f->out_pos, n);
    f->out_pos += n;
    return (int)n;
}

static int fk_set_baud(struct transport *t, uint32_t baud)
{
    (void)t;
    (void)baud;
    return 0;
}

static int fk_set_lines(struct transport *t, int dtr, int rts)
{
    struct fake *f = F(t);
    if (!f->has_lines)
        return -ENOTSUP;
    char ev[16];
    snprintf(ev, sizeof(ev), "%c%c ", dtr < 0 ? '-' : '0' + dtr, rts < 0 ? '-' : '0' + rts);
    strncat(f->line_log, ev, sizeof(f->line_log) - strlen(f->line_log) - 1);
    bool release = f->rts == 1 && rts == 0;
    if (dtr >= 0)
        f->dtr = dtr;
    if (rts >= 0)
        f->rts = rts;
    if (release && f->boot_log)
        out_raw(f, (const uint8_t *)f->boot_log, strlen(f->boot_log));
    return 0;
}

static int fk_flush(struct transport *t)
{
    struct fake *f = F(t);
    f->out_pos = f->out_len;
    return 0;
}

static int fk_drain(struct transport *t)
{
    (void)t;
    return 0;
}

static int fk_reopen(struct transport *t, int timeout_ms)
{
    (void)t;
    (void)timeout_ms;
    return -ENOTSUP;
}

static void fk_close(struct transport *t)
{
    (void)t;
}

static const struct transport_ops fake_ops = {
    .write = fk_write,
    .read = fk_read,
    .set_baud = fk_set_baud,
    .set_lines = fk_set_lines,
    .flush_input = fk_flush,
    .drain = fk_drain,
    .reopen = fk_reopen,
    .close = fk_close,
};

static struct fake *fake_new(enum fake_kind kind, uint32_t magic)
{
    struct fake *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    f->t.ops = &fake_ops;
    f->t.kind = TRANSPORT_TERMIOS;
    f->t.caps = TRANSPORT_CAP_MODEM_LINES | TRANSPORT_CAP_BAUD;
    f->t.baud = 115200;
    f->t.cancel_fd = -1;
    f->t.priv = f;
    snprintf(f->t.uri, sizeof(f->t.uri), "fake:");
    f->kind = kind;
    f->magic = magic;
    f->has_lines = true;
    f->lose_data_seq = -1;
    f->fail_data_seq = -1;
    f->flash = malloc(FLASH_SIZE);
    assert_non_null(f->flash);
    memset(f->flash, 0xFF, FLASH_SIZE);
    assert_int_equal(slip_decoder_init(&f->dec, 0x5000), 0);
    /* A flash chip that answers RDID: Winbond 4 MB, at every chip's SPI W0 (the chip a
     * FAKE_ROM_ESP32 turns out to be comes from its security info; an RDID of 0 would be
     * a flash that does not answer, refused by the attach). */
    if (kind == FAKE_ROM_8266) {
        set_reg(f, esp_chip_get(ESP_CHIP_ESP8266)->spi.w0, 0x1640EF);
    } else {
        for (int ch = ESP_CHIP_ESP32; ch < ESP_CHIP_COUNT; ch++) {
            const struct esp_chip_desc *c = esp_chip_get((enum esp_chip)ch);
            bool have = false;
            for (size_t i = 0; c && i < f->nregs; i++)
                have = have || f->regs[i].addr == c->spi.w0;
            if (c && c->spi.w0 && !have)
                set_reg(f, c->spi.w0, 0x1640EF);
        }
    }
    return f;
}

static void fake_free(struct fake *f)
{
    for (size_t i = 0; i < f->nrec; i++)
        free(f->recs[i].body);
    if (f->zs_init)
        inflateEnd(&f->zs);
    slip_decoder_free(&f->dec);
    free(f->out);
    free(f->flash);
    free(f);
}

static size_t count_op(const struct fake *f, uint8_t op)
{
    size_t n = 0;
    for (size_t i = 0; i < f->nrec; i++)
        n += f->recs[i].op == op;
    return n;
}

static const struct rec *find_op(const struct fake *f, uint8_t op, size_t nth)
{
    for (size_t i = 0; i < f->nrec; i++)
        if (f->recs[i].op == op && nth-- == 0)
            return &f->recs[i];
    return NULL;
}

static void log_cb(void *ctx, enum esp_log_level level, const char *msg)
{
    struct fake *f = ctx;
    (void)level;
    strncat(f->log, msg, sizeof(f->log) - strlen(f->log) - 2);
    strcat(f->log, "\n");
}

static struct esp_loader *loader_for(struct fake *f, const char *stub_dir)
{
    struct esp_loader_config cfg;
    esp_loader_config_init(&cfg);
    cfg.connect_attempts = 1;
    cfg.sync_tries = 2;
    cfg.stub_dir = stub_dir;
    cfg.log = log_cb;
    cfg.log_ctx = f;
    struct esp_loader *l = esp_loader_new(&f->t, &cfg);
    assert_non_null(l);
    return l;
}

__attribute__((unused)) /* not every test file fills a pattern */
static void
fill_pattern(uint8_t *d, size_t n, uint32_t seed)
{
    uint32_t x = seed;
    for (size_t i = 0; i < n; i++) {
        x = x * 1103515245u + 12345u;
        d[i] = (uint8_t)(x >> 16);
    }
}

/* A temp dir with a tiny, well-formed ESP32 stub (two RAM blocks of text). */
static char stub_dir[64];

static int make_stub_dir(void **state)
{
    (void)state;
    snprintf(stub_dir, sizeof(stub_dir), "/tmp/test_esp_loader.XXXXXX");
    if (!mkdtemp(stub_dir))
        return -1;
    char path[128];
    snprintf(path, sizeof(path), "%s/esp32.json", stub_dir);
    FILE *fp = fopen(path, "w");
    if (!fp)
        return -1;
    fputs("{\"entry\": 1074266116, \"text\": \"", fp);
    for (int i = 0; i < 0x2400 / 3; i++)
        fputs("AAAA", fp); /* 0x2400 zero bytes */
    fputs("\", \"text_start\": 1074266112, \"data\": \"AQID\", \"data_start\": 1073414144, "
          "\"bss_start\": 1073414400}",
          fp);
    fclose(fp);
    return 0;
}

static int remove_stub_dir(void **state)
{
    (void)state;
    char path[128];
    snprintf(path, sizeof(path), "%s/esp32.json", stub_dir);
    unlink(path);
    rmdir(stub_dir);
    return 0;
}

/* Writes one small region through l; returns the first FLASH_(DEFL_)BEGIN's record. */
__attribute__((unused)) /* the write and stub tests */
static const struct rec *
write_small(struct fake *f, struct esp_loader *l, bool compress)
{
    uint8_t d[5000];
    fill_pattern(d, sizeof(d), 3);
    struct esp_region reg = {.offset = 0x20000, .data = d, .len = sizeof(d), .name = "app"};
    struct esp_flash_opts opts;
    esp_flash_opts_init(&opts);
    opts.compress = compress;
    struct esp_error err;
    size_t from = f->nrec;
    int rc = esp_loader_flash(l, &reg, 1, &opts, &err);
    if (rc < 0)
        print_message("flash: %s (%s)\n", err.message, err.advice);
    assert_int_equal(rc, 0);
    assert_memory_equal(f->flash + 0x20000, d, sizeof(d));
    uint8_t op = compress ? ESP_OP_FLASH_DEFL_BEGIN : ESP_OP_FLASH_BEGIN;
    for (size_t i = from; i < f->nrec; i++)
        if (f->recs[i].op == op)
            return &f->recs[i];
    fail_msg("no %s sent", compress ? "FLASH_DEFL_BEGIN" : "FLASH_BEGIN");
    return NULL;
}

#endif
