/*
 * test_esp_loader: the serial flashing engine against a scripted fake board.
 *
 * The fake is a struct transport with its own ops table. It decodes what the
 * engine writes, records every command (opcode, body) and answers the way the
 * ESP8266 ROM, an ESP32-family ROM or the flasher stub would (status-byte
 * layout, "OHAI", MD5 as hex or raw), over a small flash model. Knobs inject
 * the faults under test: silence, boot log, junk frames, a lost data block, a
 * device error on a block, a wrong MD5. Reads never block: when nothing is
 * queued a read returns 0 at once, so device timeouts cost no wall time.
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
    /* A flash chip that answers RDID: Winbond 4 MB. */
    const struct esp_chip_desc *c =
        esp_chip_get(kind == FAKE_ROM_8266 ? ESP_CHIP_ESP8266 : ESP_CHIP_ESP32);
    set_reg(f, c->spi.w0, 0x1640EF);
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

static void fill_pattern(uint8_t *d, size_t n, uint32_t seed)
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

/* ---- connect and detect -------------------------------------------------------- */

static void test_connect_esp32_rom(void **state)
{
    (void)state;
    struct fake *f = fake_new(FAKE_ROM_ESP32, 0x00F01D83);
    struct esp_loader *l = loader_for(f, NULL);
    struct esp_error err;
    assert_int_equal(esp_loader_connect(l, &err), 0);
    const struct esp_chip_info *info = esp_loader_info(l);
    assert_non_null(info->chip);
    assert_int_equal(info->chip->chip, ESP_CHIP_ESP32);
    assert_int_equal(info->magic, 0x00F01D83);
    assert_false(info->stub_running);
    assert_int_equal(esp_loader_stats(l)->sync_tries, 1);

    /* First command is SYNC with the canonical body. */
    assert_int_equal(f->recs[0].op, ESP_OP_SYNC);
    assert_int_equal(f->recs[0].len, ESP_SYNC_BODY_LEN);
    assert_memory_equal(f->recs[0].body, esp_sync_body, ESP_SYNC_BODY_LEN);
    /* Attempt 1 is UnixTight: (0,0) (1,1) (0,1) (1,0) (0,0) then a DTR-only write. */
    assert_string_equal(f->line_log, "00 11 01 10 00 0- ");
    /* The ROM said "unsupported" to GET_SECURITY_INFO: not an error, magic decided. */
    assert_int_equal(count_op(f, ESP_OP_GET_SECURITY_INFO), 1);
    assert_int_equal(err.code, 0);
    esp_loader_free(l);
    fake_free(f);
}

static void test_connect_with_junk(void **state)
{
    (void)state;
    struct fake *f = fake_new(FAKE_ROM_ESP32, 0x00F01D83);
    /* Two bytes of boot log, then a frame that is no response, then the replies. */
    static const uint8_t junk[] = {'e', 't', 0xC0, 0x55, 0x66, 0x77, 0xC0};
    f->pre_sync = junk;
    f->pre_sync_len = sizeof(junk);
    f->secinfo_wrong_op = true; /* "unsupported" reply that echoes another opcode */
    struct esp_loader *l = loader_for(f, NULL);
    struct esp_error err;
    assert_int_equal(esp_loader_connect(l, &err), 0);
    assert_int_equal(esp_loader_info(l)->chip->chip, ESP_CHIP_ESP32);
    assert_true(esp_loader_stats(l)->frames_dropped >= 1);
    esp_loader_free(l);
    fake_free(f);
}

static void test_detect_esp8266_magic(void **state)
{
    (void)state;
    struct fake *f = fake_new(FAKE_ROM_8266, 0xFFF0C101);
    struct esp_loader *l = loader_for(f, NULL);
    struct esp_error err;
    assert_int_equal(esp_loader_connect(l, &err), 0);
    assert_int_equal(esp_loader_info(l)->chip->chip, ESP_CHIP_ESP8266);
    /* 2 status bytes in SYNC replies: ESP8266 ROM, never asked for security info. */
    assert_int_equal(count_op(f, ESP_OP_GET_SECURITY_INFO), 0);
    assert_int_equal(count_op(f, ESP_OP_READ_REG), 1);
    esp_loader_free(l);
    fake_free(f);
}

static void test_detect_c3_security_info(void **state)
{
    (void)state;
    struct fake *f = fake_new(FAKE_ROM_ESP32, 0xDEADBEEF);
    f->secinfo = true;
    f->secinfo_chip = 5;
    struct esp_loader *l = loader_for(f, NULL);
    struct esp_error err;
    assert_int_equal(esp_loader_connect(l, &err), 0);
    const struct esp_chip_info *info = esp_loader_info(l);
    assert_int_equal(info->chip->chip, ESP_CHIP_ESP32C3);
    assert_true(info->security_info_valid);
    assert_false(info->secure_download_mode);
    /* The magic register was not needed. */
    assert_int_equal(count_op(f, ESP_OP_READ_REG), 0);
    esp_loader_free(l);
    fake_free(f);
}

static void test_unknown_magic(void **state)
{
    (void)state;
    struct fake *f = fake_new(FAKE_ROM_ESP32, 0x12345678);
    struct esp_loader *l = loader_for(f, NULL);
    struct esp_error err;
    assert_int_equal(esp_loader_connect(l, &err), -ENOTSUP);
    assert_int_equal(err.stage, ESP_STAGE_DETECT);
    assert_non_null(strstr(err.message, "0x12345678"));
    esp_loader_free(l);
    fake_free(f);
}

static void test_stub_already_running(void **state)
{
    (void)state;
    struct fake *f = fake_new(FAKE_ROM_ESP32, 0x00F01D83);
    f->stub = true; /* SYNC values 0 */
    struct esp_loader *l = loader_for(f, stub_dir);
    struct esp_error err;
    assert_int_equal(esp_loader_connect(l, &err), 0);
    assert_true(esp_loader_info(l)->stub_running);
    assert_int_equal(esp_loader_start(l, &err), 0);
    assert_int_equal(count_op(f, ESP_OP_MEM_BEGIN), 0);
    /* Stub attach: 4-byte SPI_ATTACH. */
    const struct rec *r = find_op(f, ESP_OP_SPI_ATTACH, 0);
    assert_non_null(r);
    assert_int_equal(r->len, 4);
    esp_loader_free(l);
    fake_free(f);
}

static void test_diag_no_serial_data(void **state)
{
    (void)state;
    struct fake *f = fake_new(FAKE_ROM_ESP32, 0x00F01D83);
    f->sync_silent = true;
    struct esp_loader *l = loader_for(f, NULL);
    struct esp_error err;
    assert_int_equal(esp_loader_connect(l, &err), -ETIMEDOUT);
    assert_int_equal(err.stage, ESP_STAGE_SYNC);
    assert_string_equal(err.message, "no serial data received");
    assert_non_null(strstr(err.advice, "auto-reset"));
    assert_int_equal(esp_loader_stats(l)->sync_tries, 2);
    esp_loader_free(l);
    fake_free(f);
}

static void test_diag_wrong_boot_mode(void **state)
{
    (void)state;
    struct fake *f = fake_new(FAKE_ROM_ESP32, 0x00F01D83);
    f->sync_silent = true;
    f->boot_log = "ets Jun  8 2016 00:22:57\r\n\r\nrst:0x1 (POWERON_RESET),boot:0x13 "
                  "(SPI_FAST_FLASH_BOOT)\r\nconfigsip: 0, SPIWP:0xee\r\n";
    struct esp_loader *l = loader_for(f, NULL);
    struct esp_error err;
    assert_int_equal(esp_loader_connect(l, &err), -ETIMEDOUT);
    assert_non_null(strstr(err.message, "wrong boot mode detected (0x13)"));
    assert_non_null(strstr(err.advice, "GPIO0"));
    esp_loader_free(l);
    fake_free(f);
}

static void test_diag_banner_no_answer(void **state)
{
    (void)state;
    struct fake *f = fake_new(FAKE_ROM_ESP32, 0x00F01D83);
    f->sync_silent = true;
    f->boot_log = "rst:0x1 (POWERON_RESET),boot:0x3 (DOWNLOAD_BOOT(UART0/UART1/SDIO_REI_REO_V2))"
                  "\r\nwaiting for download\r\n";
    struct esp_loader *l = loader_for(f, NULL);
    struct esp_error err;
    assert_int_equal(esp_loader_connect(l, &err), -ETIMEDOUT);
    assert_non_null(strstr(err.message, "download banner but does not answer"));
    assert_non_null(strstr(err.advice, "TX->RX"));
    esp_loader_free(l);
    fake_free(f);
}

static void test_no_modem_lines(void **state)
{
    (void)state;
    struct fake *f = fake_new(FAKE_ROM_ESP32, 0x00F01D83);
    f->has_lines = false;
    f->t.caps = TRANSPORT_CAP_BAUD;
    struct esp_loader *l = loader_for(f, NULL);
    struct esp_error err;
    assert_int_equal(esp_loader_connect(l, &err), 0);
    assert_non_null(strstr(f->log, "no modem lines"));
    /* Hard reset is impossible: a warning, not an error. */
    assert_int_equal(esp_loader_reset(l, ESP_AFTER_HARD_RESET, &err), 0);
    assert_non_null(strstr(f->log, "power-cycle"));
    esp_loader_free(l);
    fake_free(f);
}

static void test_hard_reset_lines(void **state)
{
    (void)state;
    struct fake *f = fake_new(FAKE_ROM_ESP32, 0x00F01D83);
    struct esp_loader *l = loader_for(f, NULL);
    struct esp_error err;
    assert_int_equal(esp_loader_connect(l, &err), 0);
    f->line_log[0] = '\0';
    assert_int_equal(esp_loader_reset(l, ESP_AFTER_HARD_RESET, &err), 0);
    /* RTS pulse, DTR rewritten (deasserted) after every RTS change. */
    assert_string_equal(f->line_log, "-1 0- -0 0- ");
    esp_loader_free(l);
    fake_free(f);
}

static void test_identify_esp32(void **state)
{
    (void)state;
    struct fake *f = fake_new(FAKE_ROM_ESP32, 0x00F01D83);
    set_reg(f, 0x3FF5A004, 0x287AD884);
    set_reg(f, 0x3FF5A008, 0x003E246F);
    struct esp_loader *l = loader_for(f, NULL);
    struct esp_error err;
    assert_int_equal(esp_loader_connect(l, &err), 0);
    assert_int_equal(esp_loader_identify(l, &err), 0);
    const struct esp_chip_info *info = esp_loader_info(l);
    assert_true(info->mac_valid);
    static const uint8_t mac[6] = {0x24, 0x6f, 0x28, 0x7a, 0xd8, 0x84};
    assert_memory_equal(info->mac, mac, 6);
    esp_loader_free(l);
    fake_free(f);
}

static void test_usb_jtag_connect(void **state)
{
    (void)state;
    struct fake *f = fake_new(FAKE_ROM_ESP32, 0x1B31506F);
    f->secinfo = true;
    f->secinfo_chip = 5; /* ESP32-C3 */
    f->t.usb_vid = 0x303A;
    f->t.usb_pid = 0x1001;
    struct esp_loader *l = loader_for(f, NULL);
    struct esp_error err;
    assert_int_equal(esp_loader_connect(l, &err), 0);
    assert_true(esp_loader_info(l)->usb_jtag);
    /* USBJTAGSerialReset only, with DTR rewritten after every RTS write. */
    assert_string_equal(f->line_log, "-0 0- 0- 1- -0 1- -1 1- 0- -1 0- 0- -0 0- ");
    /* RTC watchdog: unlock with the key, CONFIG0 <- 0, lock again. */
    const struct esp_chip_desc *c3 = esp_chip_get(ESP_CHIP_ESP32C3);
    const struct rec *r = find_op(f, ESP_OP_WRITE_REG, 0);
    assert_non_null(r);
    assert_int_equal(esp_get_u32(r->body), c3->rtc_wdt_wprotect);
    assert_int_equal(esp_get_u32(r->body + 4), 0x50D83AA1u);
    r = find_op(f, ESP_OP_WRITE_REG, 1);
    assert_int_equal(esp_get_u32(r->body), c3->rtc_wdt_config0);
    assert_int_equal(esp_get_u32(r->body + 4), 0);
    bool swd_feed = false;
    for (size_t i = 0; i < f->nrec; i++)
        if (f->recs[i].op == ESP_OP_WRITE_REG && esp_get_u32(f->recs[i].body) == c3->swd_conf)
            swd_feed = (esp_get_u32(f->recs[i].body + 4) >> c3->swd_auto_feed_bit) & 1;
    assert_true(swd_feed);
    esp_loader_free(l);
    fake_free(f);
}

static void test_no_reset_no_sync_stub(void **state)
{
    (void)state;
    struct fake *f = fake_new(FAKE_ROM_ESP32, 0x00F01D83);
    f->stub = true; /* replies carry 2 status bytes */
    struct esp_loader_config cfg;
    esp_loader_config_init(&cfg);
    cfg.before = ESP_BEFORE_NO_RESET_NO_SYNC;
    struct esp_loader *l = esp_loader_new(&f->t, &cfg);
    struct esp_error err;
    assert_int_equal(esp_loader_connect(l, &err), 0);
    assert_int_equal(count_op(f, ESP_OP_SYNC), 0);
    assert_string_equal(f->line_log, "");
    assert_int_equal(esp_loader_info(l)->chip->chip, ESP_CHIP_ESP32);
    assert_true(esp_loader_info(l)->stub_running);
    esp_loader_free(l);
    fake_free(f);
}

/* ---- writing ------------------------------------------------------------------------ */

static void test_rom_write_esp8266(void **state)
{
    (void)state;
    struct fake *f = fake_new(FAKE_ROM_8266, 0xFFF0C101);
    struct esp_loader *l = loader_for(f, NULL);
    struct esp_error err;
    assert_int_equal(esp_loader_connect(l, &err), 0);
    assert_int_equal(esp_loader_start(l, &err), 0);
    assert_non_null(strstr(f->log, "flashing through the ROM loader"));
    /* ESP8266 ROM attach: FLASH_BEGIN(0,0,0x400,0); no SPI_SET_PARAMS. */
    const struct rec *r = find_op(f, ESP_OP_FLASH_BEGIN, 0);
    assert_non_null(r);
    assert_int_equal(r->len, 16);
    assert_int_equal(esp_get_u32(r->body + 8), 0x400);
    assert_int_equal(count_op(f, ESP_OP_SPI_SET_PARAMS), 0);
    assert_int_equal(esp_loader_info(l)->flash_size, FLASH_SIZE);

    size_t len = 0x16000 - 10; /* pads to 4, last block padded to 0x400 */
    uint8_t *d = malloc(len);
    fill_pattern(d, len, 1);
    struct esp_region reg = {.offset = 0x3000, .data = d, .len = len, .name = "app"};
    struct esp_flash_opts opts;
    esp_flash_opts_init(&opts); /* compress requested: impossible on the ESP8266 ROM */
    size_t before = f->nrec;
    assert_int_equal(esp_loader_flash(l, &reg, 1, &opts, &err), 0);

    r = find_op(f, ESP_OP_FLASH_BEGIN, 1);
    assert_non_null(r);
    assert_int_equal(r->len, 16); /* 4 words on the ESP8266 ROM */
    uint32_t size4 = (uint32_t)((len + 3) & ~(size_t)3);
    assert_int_equal(esp_get_u32(r->body), esp8266_rom_erase_size(0x3000, size4));
    assert_int_equal(esp_get_u32(r->body), 0xB000); /* the worked example of §5.3 */
    assert_int_equal(esp_get_u32(r->body + 4), 88);
    assert_int_equal(esp_get_u32(r->body + 8), 0x400);
    assert_int_equal(esp_get_u32(r->body + 12), 0x3000);

    size_t blocks = 0;
    for (size_t i = before; i < f->nrec; i++) {
        if (f->recs[i].op != ESP_OP_FLASH_DATA)
            continue;
        const struct rec *b = &f->recs[i];
        assert_int_equal(b->len, 16 + 0x400);
        assert_int_equal(esp_get_u32(b->body), 0x400);
        assert_int_equal(esp_get_u32(b->body + 4), blocks);
        assert_int_equal(b->checksum, esp_checksum(b->body + 16, 0x400));
        blocks++;
    }
    assert_int_equal(blocks, 88);
    const struct rec *last = find_op(f, ESP_OP_FLASH_DATA, 87);
    size_t tail = len - 87 * 0x400;
    for (size_t i = tail; i < 0x400; i++)
        assert_int_equal(last->body[16 + i], 0xFF);
    assert_int_equal(count_op(f, ESP_OP_FLASH_END), 0);
    assert_int_equal(count_op(f, ESP_OP_SPI_FLASH_MD5), 0);
    assert_non_null(strstr(f->log, "cannot verify on the ESP8266 ROM without the stub"));
    assert_memory_equal(f->flash + 0x3000, d, len);

    /* One sector at the end of a 64 KiB block cannot be erased alone: warned. */
    assert_null(strstr(f->log, "also erases"));
    struct esp_region last_sector = {.offset = 0xF000, .data = d, .len = 0x1000, .name = "x"};
    assert_int_equal(esp_loader_flash(l, &last_sector, 1, &opts, &err), 0);
    assert_non_null(strstr(f->log, "ESP8266 ROM also erases 0x10000..0x10FFF; use the stub"));

    /* The ESP8266 ROM can neither read flash nor erase the whole chip. */
    uint8_t buf[16];
    assert_int_equal(esp_loader_read_flash(l, 0, sizeof(buf), buf, &err), -ENOTSUP);
    assert_non_null(strstr(err.message, "needs the flasher stub"));
    assert_int_equal(esp_loader_erase_all(l, &err), -ENOTSUP);
    free(d);
    esp_loader_free(l);
    fake_free(f);
}

/* ---- ESP8266 ROM erase bug: order, split, warnings, erase --region ----------------- */

struct progress_log {
    unsigned first_write_index[8]; /* region_index of each region's first WRITE event */
    uint32_t first_write_addr[8];
    size_t n;
};

static void progress_cb(void *ctx, const struct esp_progress *p)
{
    struct progress_log *pl = ctx;
    if (p->stage != ESP_STAGE_WRITE || p->done != 0 || pl->n >= 8)
        return;
    pl->first_write_index[pl->n] = p->region_index;
    pl->first_write_addr[pl->n] = p->address;
    pl->n++;
}

/* An ESP8266 on its ROM, flash prefilled with a pattern so stray erases show. */
static struct esp_loader *rom8266_loader(struct fake *f, struct progress_log *pl,
                                         bool allow_overerase)
{
    struct esp_loader_config cfg;
    esp_loader_config_init(&cfg);
    cfg.connect_attempts = 1;
    cfg.sync_tries = 2;
    cfg.log = log_cb;
    cfg.log_ctx = f;
    cfg.progress = pl ? progress_cb : NULL;
    cfg.progress_ctx = pl;
    cfg.allow_rom_overerase = allow_overerase;
    struct esp_loader *l = esp_loader_new(&f->t, &cfg);
    assert_non_null(l);
    struct esp_error err;
    assert_int_equal(esp_loader_connect(l, &err), 0);
    assert_int_equal(esp_loader_start(l, &err), 0);
    fill_pattern(f->flash, FLASH_SIZE, 99);
    return l;
}

/* FLASH_BEGIN offsets sent from record `from` on. */
static size_t begin_offsets(const struct fake *f, size_t from, uint32_t *out, size_t cap)
{
    size_t n = 0;
    for (size_t i = from; i < f->nrec && n < cap; i++)
        if (f->recs[i].op == ESP_OP_FLASH_BEGIN)
            out[n++] = esp_get_u32(f->recs[i].body + 12);
    return n;
}

static void test_rom8266_ascending_order(void **state)
{
    (void)state;
    struct fake *f = fake_new(FAKE_ROM_8266, 0xFFF0C101);
    struct progress_log pl = {0};
    struct esp_loader *l = rom8266_loader(f, &pl, false);
    uint8_t *copy = malloc(FLASH_SIZE);
    assert_non_null(copy);
    memcpy(copy, f->flash, FLASH_SIZE);

    /* NVS (2 sectors at 0x9000) given before the 3 KiB partition table at 0x8000:
     * the table's FLASH_BEGIN also erases 0x9000, so it must be written first. */
    uint8_t nvs[0x2000], pt[0xC00];
    fill_pattern(nvs, sizeof(nvs), 7);
    fill_pattern(pt, sizeof(pt), 8);
    struct esp_region regs[2] = {
        {.offset = 0x9000, .data = nvs, .len = sizeof(nvs), .name = "nvs"},
        {.offset = 0x8000, .data = pt, .len = sizeof(pt), .name = "pt"},
    };
    struct esp_flash_opts opts;
    esp_flash_opts_init(&opts);
    struct esp_error err;
    size_t before = f->nrec;
    assert_int_equal(esp_loader_flash(l, regs, 2, &opts, &err), 0);

    uint32_t offs[8];
    assert_int_equal(begin_offsets(f, before, offs, 8), 2);
    assert_int_equal(offs[0], 0x8000);
    assert_int_equal(offs[1], 0x9000);
    /* Progress names the caller's regions: index 1 (pt) is written first. */
    assert_int_equal(pl.n, 2);
    assert_int_equal(pl.first_write_index[0], 1);
    assert_int_equal(pl.first_write_addr[0], 0x8000);
    assert_int_equal(pl.first_write_index[1], 0);
    assert_int_equal(pl.first_write_addr[1], 0x9000);

    assert_memory_equal(f->flash + 0x8000, pt, sizeof(pt));
    assert_memory_equal(f->flash + 0x9000, nvs, sizeof(nvs));
    for (uint32_t a = 0x8C00; a < 0x9000; a++)
        assert_int_equal(f->flash[a], 0xFF); /* rest of the table's sector */
    assert_memory_equal(f->flash, copy, 0x8000);
    assert_memory_equal(f->flash + 0xB000, copy + 0xB000, FLASH_SIZE - 0xB000);
    /* The extra sector belongs to nvs, rewritten afterwards: nothing to warn about. */
    assert_null(strstr(f->log, "also erases"));

    /* Alone, the table costs 0x9000..0x9FFF: warned, with the range. */
    assert_int_equal(esp_loader_flash(l, &regs[1], 1, &opts, &err), 0);
    assert_non_null(strstr(f->log, "ESP8266 ROM also erases 0x9000..0x9FFF; use the stub to "
                                   "avoid it"));
    free(copy);
    esp_loader_free(l);
    fake_free(f);
}

static void test_rom8266_split_at_block(void **state)
{
    (void)state;
    struct fake *f = fake_new(FAKE_ROM_8266, 0xFFF0C101);
    struct esp_loader *l = rom8266_loader(f, NULL, false);
    uint8_t *copy = malloc(FLASH_SIZE);
    assert_non_null(copy);
    memcpy(copy, f->flash, FLASH_SIZE);

    /* 15 sectors from 0x33000 (13 left in the block): one FLASH_BEGIN would erase
     * 16; 13 + 2 at the 0x40000 boundary is exact. */
    size_t len = 15 * 4096 - 100;
    assert_true(esp8266_rom_erased_sectors(0x33000, esp8266_rom_erase_size(0x33000, 15 * 4096)) >
                15);
    uint8_t *d = malloc(len);
    assert_non_null(d);
    fill_pattern(d, len, 3);
    struct esp_region reg = {.offset = 0x33000, .data = d, .len = len, .name = "app"};
    struct esp_flash_opts opts;
    esp_flash_opts_init(&opts);
    struct esp_error err;
    size_t before = f->nrec;
    assert_int_equal(esp_loader_flash(l, &reg, 1, &opts, &err), 0);
    uint32_t offs[8];
    assert_int_equal(begin_offsets(f, before, offs, 8), 2);
    assert_int_equal(offs[0], 0x33000);
    assert_int_equal(offs[1], 0x40000);
    const struct rec *b2 = find_op(f, ESP_OP_FLASH_BEGIN, 2);
    assert_int_equal(esp_get_u32(b2->body + 4), 8); /* blocks of the second part */
    assert_memory_equal(f->flash + 0x33000, d, len);
    assert_memory_equal(f->flash + 0x42000, copy + 0x42000, FLASH_SIZE - 0x42000);
    assert_memory_equal(f->flash, copy, 0x33000);
    assert_null(strstr(f->log, "also erases"));
    free(d);
    free(copy);
    esp_loader_free(l);
    fake_free(f);
}

static void test_rom8266_erase_region(void **state)
{
    (void)state;
    struct fake *f = fake_new(FAKE_ROM_8266, 0xFFF0C101);
    struct esp_loader *l = rom8266_loader(f, NULL, false);
    uint8_t *copy = malloc(FLASH_SIZE);
    assert_non_null(copy);
    memcpy(copy, f->flash, FLASH_SIZE);
    struct esp_error err;

    /* A lone sector cannot be erased exactly: refused before anything is sent. */
    size_t before = f->nrec;
    assert_int_equal(esp_loader_erase_region(l, 0x20000, 0x1000, &err), -EINVAL);
    assert_int_equal(err.stage, ESP_STAGE_PREPARE);
    assert_string_equal(err.message,
                        "the ESP8266 ROM cannot erase exactly 0x20000..0x20FFF (its erase bug "
                        "would also erase 0x21000..0x21FFF); use the flasher stub (omit "
                        "--no-stub) or erase an even number of sectors");
    assert_int_equal(f->nrec, before);
    assert_memory_equal(f->flash, copy, FLASH_SIZE);

    /* Even counts are exact. */
    assert_int_equal(esp_loader_erase_region(l, 0x30000, 0x2000, &err), 0);
    memset(copy + 0x30000, 0xFF, 0x2000);
    assert_memory_equal(f->flash, copy, FLASH_SIZE);

    /* Odd, across a 64 KiB boundary: split there, exact. */
    before = f->nrec;
    assert_int_equal(esp_loader_erase_region(l, 0x33000, 0xF000, &err), 0);
    uint32_t offs[8];
    assert_int_equal(begin_offsets(f, before, offs, 8), 2);
    assert_int_equal(offs[0], 0x33000);
    assert_int_equal(offs[1], 0x40000);
    memset(copy + 0x33000, 0xFF, 0xF000);
    assert_memory_equal(f->flash, copy, FLASH_SIZE);

    /* Odd within one block: impossible, refused. */
    assert_int_equal(esp_loader_erase_region(l, 0x50000, 0x3000, &err), -EINVAL);
    assert_non_null(strstr(err.message, "would also erase 0x53000..0x53FFF"));
    assert_memory_equal(f->flash, copy, FLASH_SIZE);
    esp_loader_free(l);

    /* A caller that accepts the extra sector gets it, with a warning. */
    l = rom8266_loader(f, NULL, true);
    memcpy(copy, f->flash, FLASH_SIZE);
    assert_int_equal(esp_loader_erase_region(l, 0x20000, 0x1000, &err), 0);
    assert_non_null(strstr(f->log, "ESP8266 ROM also erases 0x21000..0x21FFF"));
    memset(copy + 0x20000, 0xFF, 0x2000);
    assert_memory_equal(f->flash, copy, FLASH_SIZE);
    free(copy);
    esp_loader_free(l);
    fake_free(f);
}

/* A lost or garbled READ_FLASH reply: the first data frame stands for the OK; a
 * lost command: re-sync the stub and ask once more. */
static void test_read_flash_reply_lost(void **state)
{
    (void)state;
    struct fake *f = fake_new(FAKE_ROM_ESP32, 0x00F01D83);
    struct esp_loader *l = loader_for(f, stub_dir);
    struct esp_error err;
    assert_int_equal(esp_loader_connect(l, &err), 0);
    assert_int_equal(esp_loader_start(l, &err), 0);
    assert_true(esp_loader_info(l)->stub_running);
    fill_pattern(f->flash, FLASH_SIZE, 5);
    uint32_t len = 0x5000 + 123;
    uint8_t *buf = malloc(len);
    assert_non_null(buf);

    for (int fault = 0; fault <= 2; fault++) {
        memset(buf, 0, len);
        f->read_reply_fault = fault;
        assert_int_equal(esp_loader_read_flash(l, 0x10000, len, buf, &err), 0);
        assert_memory_equal(buf, f->flash + 0x10000, len);
    }
    assert_int_equal(count_op(f, ESP_OP_READ_FLASH), 3);

    size_t syncs = count_op(f, ESP_OP_SYNC);
    f->read_lost_once = true;
    memset(buf, 0, len);
    assert_int_equal(esp_loader_read_flash(l, 0x20000, len, buf, &err), 0);
    assert_memory_equal(buf, f->flash + 0x20000, len);
    assert_int_equal(count_op(f, ESP_OP_READ_FLASH), 5);
    assert_int_equal(count_op(f, ESP_OP_SYNC), syncs + 1);

    /* A stub that stays silent: the original timeout, after one re-sync try. */
    f->sync_silent = true;
    f->read_lost_once = true;
    assert_int_equal(esp_loader_read_flash(l, 0x20000, len, buf, &err), -ETIMEDOUT);
    assert_non_null(strstr(err.message, "READ_FLASH"));
    assert_int_equal(count_op(f, ESP_OP_READ_FLASH), 6);
    free(buf);
    esp_loader_free(l);
    fake_free(f);
}

static void test_stub_defl_write(void **state)
{
    (void)state;
    struct fake *f = fake_new(FAKE_ROM_ESP32, 0x00F01D83);
    struct esp_loader *l = loader_for(f, stub_dir);
    struct esp_error err;
    assert_int_equal(esp_loader_connect(l, &err), 0);
    assert_int_equal(esp_loader_start(l, &err), 0);
    assert_true(esp_loader_info(l)->stub_running);
    /* Stub upload: text in 0x1800 blocks, then data, then MEM_END(0, entry). */
    assert_int_equal(count_op(f, ESP_OP_MEM_BEGIN), 2);
    assert_int_equal(count_op(f, ESP_OP_MEM_DATA), 3);
    const struct rec *r = find_op(f, ESP_OP_MEM_BEGIN, 0);
    assert_int_equal(esp_get_u32(r->body), 0x2400);
    assert_int_equal(esp_get_u32(r->body + 4), 2);
    assert_int_equal(esp_get_u32(r->body + 8), 0x1800);
    r = find_op(f, ESP_OP_MEM_END, 0);
    assert_int_equal(esp_get_u32(r->body), 0);
    assert_int_equal(esp_get_u32(r->body + 4), 1074266116u);

    size_t len = 100000; /* incompressible: several 16 KiB chunks */
    uint8_t *d = malloc(len);
    fill_pattern(d, len, 7);
    struct esp_region reg = {.offset = 0x10000, .data = d, .len = len, .name = "app"};
    struct esp_flash_opts opts;
    esp_flash_opts_init(&opts);
    assert_int_equal(esp_loader_flash(l, &reg, 1, &opts, &err), 0);

    r = find_op(f, ESP_OP_FLASH_DEFL_BEGIN, 0);
    assert_non_null(r);
    assert_int_equal(r->len, 16); /* 4 words to any stub */
    assert_int_equal(esp_get_u32(r->body), len);
    assert_int_equal(esp_get_u32(r->body + 8), 0x4000);
    assert_int_equal(esp_get_u32(r->body + 12), 0x10000);
    size_t chunks = count_op(f, ESP_OP_FLASH_DEFL_DATA);
    assert_true(chunks >= 6);
    assert_int_equal(esp_get_u32(r->body + 4), chunks);
    size_t last_data = 0, end_at = 0, md5_at = 0;
    for (size_t i = 0; i < f->nrec; i++) {
        if (f->recs[i].op == ESP_OP_FLASH_DEFL_DATA) {
            assert_true(f->recs[i].len - 16 <= 0x4000);
            last_data = i;
        } else if (f->recs[i].op == ESP_OP_FLASH_DEFL_END) {
            end_at = i;
            assert_int_equal(esp_get_u32(f->recs[i].body), 1); /* barrier, stay in stub */
        } else if (f->recs[i].op == ESP_OP_SPI_FLASH_MD5) {
            md5_at = i;
        }
    }
    assert_true(end_at > last_data);
    assert_true(md5_at > end_at);
    assert_int_equal(esp_get_u32(f->recs[md5_at].body + 4), len);
    assert_memory_equal(f->flash + 0x10000, d, len);

    /* A different verify through the API, and a mismatch. */
    assert_int_equal(esp_loader_verify(l, &reg, 1, &err), 0);
    f->md5_wrong = true;
    assert_int_equal(esp_loader_verify(l, &reg, 1, &err), -EBADMSG);
    assert_int_equal(err.stage, ESP_STAGE_VERIFY);
    free(d);
    esp_loader_free(l);
    fake_free(f);
}

/* Writes one small region through l; returns the first FLASH_(DEFL_)BEGIN's record. */
static const struct rec *write_small(struct fake *f, struct esp_loader *l, bool compress)
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

/* The encrypt word goes to the S2+ ROMs only: 4 words to the ESP32 ROM and to every
 * stub, so a legacy (esptool 4.x) stub that refuses 5 words with 01 00 flashes. */
static void test_begin_words(void **state)
{
    (void)state;
    /* ESP32 ROM: 4 words (its ROM refuses 5). */
    struct fake *f = fake_new(FAKE_ROM_ESP32, 0x00F01D83);
    struct esp_loader *l = loader_for(f, NULL);
    struct esp_error err;
    assert_int_equal(esp_loader_connect(l, &err), 0);
    assert_int_equal(esp_loader_start(l, &err), 0);
    assert_int_equal(write_small(f, l, true)->len, 16);
    esp_loader_free(l);
    fake_free(f);

    /* ESP32-C3 ROM (no C3 stub in the dir): 5 words, encrypt 0. */
    f = fake_new(FAKE_ROM_ESP32, 0xDEADBEEF);
    f->secinfo = true;
    f->secinfo_chip = 5;
    l = loader_for(f, stub_dir);
    assert_int_equal(esp_loader_connect(l, &err), 0);
    assert_int_equal(esp_loader_start(l, &err), 0);
    assert_false(esp_loader_info(l)->stub_running);
    const struct rec *r = write_small(f, l, true);
    assert_int_equal(r->len, 20);
    assert_int_equal(esp_get_u32(r->body + 16), 0);
    esp_loader_free(l);
    fake_free(f);

    /* Legacy stub on an ESP32: 4 words, compressed and raw, and the soft reset's
     * FLASH_BEGIN(0, 0) too. */
    for (int compress = 1; compress >= 0; compress--) {
        f = fake_new(FAKE_ROM_ESP32, 0x00F01D83);
        f->legacy_stub = true;
        l = loader_for(f, stub_dir);
        assert_int_equal(esp_loader_connect(l, &err), 0);
        assert_int_equal(esp_loader_start(l, &err), 0);
        assert_true(esp_loader_info(l)->stub_running);
        assert_int_equal(write_small(f, l, compress)->len, 16);
        size_t before = count_op(f, ESP_OP_FLASH_BEGIN);
        assert_int_equal(esp_loader_reset(l, ESP_AFTER_SOFT_RESET, &err), 0);
        if (count_op(f, ESP_OP_FLASH_BEGIN) > before)
            assert_int_equal(find_op(f, ESP_OP_FLASH_BEGIN, before)->len, 16);
        esp_loader_free(l);
        fake_free(f);
    }
}

/* A stub that never says OHAI: with modem lines the chip is reset into the ROM
 * loader and the write goes on there (flagged for the job record); without them
 * the start fails at stage stub with advice to flash without the stub. */
static void test_stub_no_ohai(void **state)
{
    (void)state;
    struct fake *f = fake_new(FAKE_ROM_ESP32, 0x00F01D83);
    f->stub_no_ohai = true;
    struct esp_loader *l = loader_for(f, stub_dir);
    struct esp_error err;
    assert_int_equal(esp_loader_connect(l, &err), 0);
    size_t syncs = count_op(f, ESP_OP_SYNC);
    assert_int_equal(esp_loader_start(l, &err), 0);
    const struct esp_chip_info *ci = esp_loader_info(l);
    assert_false(ci->stub_running);
    assert_true(ci->stub_fallback);
    assert_true(count_op(f, ESP_OP_SYNC) > syncs); /* reset and SYNC again */
    assert_non_null(strstr(f->log, "did not start"));
    assert_int_equal(write_small(f, l, true)->len, 16); /* the ESP32 ROM */
    esp_loader_free(l);
    fake_free(f);

    f = fake_new(FAKE_ROM_ESP32, 0x00F01D83);
    f->stub_no_ohai = true;
    f->has_lines = false;
    f->t.caps = TRANSPORT_CAP_BAUD;
    l = loader_for(f, stub_dir);
    assert_int_equal(esp_loader_connect(l, &err), 0);
    assert_int_equal(esp_loader_start(l, &err), -ETIMEDOUT);
    assert_int_equal(err.stage, ESP_STAGE_STUB);
    assert_false(esp_loader_info(l)->stub_fallback);
    assert_non_null(strstr(err.advice, "no reset can bring back the ROM loader"));
    assert_non_null(strstr(err.advice, "DTR/RTS"));
    assert_non_null(strstr(err.advice, "flash without the stub"));
    esp_loader_free(l);
    fake_free(f);
}

static struct esp_loader *loader_at(struct fake *f, const char *dir, uint32_t baud)
{
    struct esp_loader_config cfg;
    esp_loader_config_init(&cfg);
    cfg.connect_attempts = 1;
    cfg.sync_tries = 2;
    cfg.stub_dir = dir;
    cfg.baud = baud;
    cfg.log = log_cb;
    cfg.log_ctx = f;
    struct esp_loader *l = esp_loader_new(&f->t, &cfg);
    assert_non_null(l);
    return l;
}

static size_t index_of(const struct fake *f, uint8_t op, size_t nth)
{
    const struct rec *r = find_op(f, op, nth);
    assert_non_null(r);
    return (size_t)(r - f->recs);
}

/* Issue 11: the ESP32 ROM takes CHANGE_BAUDRATE (old baud 0 for a ROM), so the rate goes
 * up before MEM_BEGIN and the whole stub travels at it; the stub is not asked again. The
 * ESP8266 ROM has no CHANGE_BAUDRATE: the stub goes up at 115200 and the running stub
 * changes the rate (old baud = the rate in force, which the legacy stub divides by). */
static void test_baud_before_stub(void **state)
{
    (void)state;
    struct fake *f = fake_new(FAKE_ROM_ESP32, 0x00F01D83);
    struct esp_loader *l = loader_at(f, stub_dir, 921600);
    struct esp_error err;
    assert_int_equal(esp_loader_connect(l, &err), 0);
    assert_int_equal(esp_loader_start(l, &err), 0);
    assert_true(esp_loader_info(l)->stub_running);
    assert_int_equal(esp_loader_info(l)->baud, 921600);
    assert_int_equal(count_op(f, ESP_OP_CHANGE_BAUDRATE), 1);
    const struct rec *cb = find_op(f, ESP_OP_CHANGE_BAUDRATE, 0);
    assert_false(cb->to_stub);
    assert_int_equal(cb->baud, 115200);
    assert_int_equal(esp_get_u32(cb->body), 921600);
    assert_int_equal(esp_get_u32(cb->body + 4), 0);
    assert_true(index_of(f, ESP_OP_CHANGE_BAUDRATE, 0) < index_of(f, ESP_OP_MEM_BEGIN, 0));
    size_t mem = 0;
    for (size_t i = 0; i < f->nrec; i++) {
        uint8_t op = f->recs[i].op;
        if (op == ESP_OP_MEM_BEGIN || op == ESP_OP_MEM_DATA || op == ESP_OP_MEM_END) {
            assert_int_equal(f->recs[i].baud, 921600);
            mem++;
        }
    }
    assert_int_equal(mem, 2 + 3 + 1);
    assert_int_equal(write_small(f, l, true)->baud, 921600);
    esp_loader_free(l);
    fake_free(f);

    /* ESP8266: a stub dir of its own with a tiny stub. */
    char dir[64];
    snprintf(dir, sizeof(dir), "/tmp/test_esp_loader8266.XXXXXX");
    assert_non_null(mkdtemp(dir));
    char path[128];
    snprintf(path, sizeof(path), "%s/esp8266.json", dir);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs("{\"entry\": 1074843652, \"text\": \"AAAAAAAA\", \"text_start\": 1074843648, "
          "\"data\": \"AQID\", \"data_start\": 1073643520}",
          fp);
    fclose(fp);
    f = fake_new(FAKE_ROM_8266, 0xFFF0C101);
    l = loader_at(f, dir, 921600);
    assert_int_equal(esp_loader_connect(l, &err), 0);
    assert_int_equal(esp_loader_start(l, &err), 0);
    unlink(path);
    rmdir(dir);
    assert_true(esp_loader_info(l)->stub_running);
    assert_int_equal(esp_loader_info(l)->baud, 921600);
    assert_int_equal(count_op(f, ESP_OP_CHANGE_BAUDRATE), 1);
    cb = find_op(f, ESP_OP_CHANGE_BAUDRATE, 0);
    assert_true(cb->to_stub);
    assert_int_equal(esp_get_u32(cb->body), 921600);
    assert_int_equal(esp_get_u32(cb->body + 4), 115200);
    assert_true(index_of(f, ESP_OP_CHANGE_BAUDRATE, 0) > index_of(f, ESP_OP_MEM_END, 0));
    assert_int_equal(find_op(f, ESP_OP_MEM_DATA, 0)->baud, 115200);
    esp_loader_free(l);
    fake_free(f);
}

/* A link that garbles frames above 115200: the stub upload at 921600 draws checksum
 * errors. That is the link at the new rate: the start fails at stage baud (the
 * daemon's back-off steps the slot down on it), not by falling back to the ROM
 * (its writes would be as garbled). A stub that goes up fine but does not start is
 * still the stub's fault: reset, ROM loader, the rate raised again. */
static void test_baud_before_stub_garbled(void **state)
{
    (void)state;
    struct fake *f = fake_new(FAKE_ROM_ESP32, 0x00F01D83);
    f->noisy_above = 115200;
    struct esp_loader *l = loader_at(f, stub_dir, 921600);
    struct esp_error err;
    assert_int_equal(esp_loader_connect(l, &err), 0);
    size_t syncs = count_op(f, ESP_OP_SYNC);
    assert_int_equal(esp_loader_start(l, &err), -EPROTO);
    assert_int_equal(err.stage, ESP_STAGE_BAUD);
    assert_true(err.has_device_status);
    assert_int_equal(err.error, 0x07);
    assert_non_null(strstr(err.message, "uploading the stub at 921600 baud failed"));
    assert_non_null(strstr(err.advice, "lower baud rate"));
    assert_int_equal(count_op(f, ESP_OP_SYNC), syncs); /* no reset, no ROM fall back */
    assert_int_equal(count_op(f, ESP_OP_MEM_END), 0);
    assert_false(esp_loader_info(l)->stub_fallback);
    assert_int_equal(esp_loader_info(l)->baud, 921600); /* what the caller steps down from */
    esp_loader_free(l);
    fake_free(f);

    f = fake_new(FAKE_ROM_ESP32, 0x00F01D83);
    f->stub_no_ohai = true;
    l = loader_at(f, stub_dir, 921600);
    assert_int_equal(esp_loader_connect(l, &err), 0);
    syncs = count_op(f, ESP_OP_SYNC);
    assert_int_equal(esp_loader_start(l, &err), 0);
    assert_true(esp_loader_info(l)->stub_fallback);
    assert_true(count_op(f, ESP_OP_SYNC) > syncs);
    assert_int_equal(count_op(f, ESP_OP_CHANGE_BAUDRATE), 2); /* before the stub, after the reset */
    assert_int_equal(esp_loader_info(l)->baud, 921600);
    assert_int_equal(write_small(f, l, true)->baud, 921600);
    esp_loader_free(l);
    fake_free(f);
}

/* The ROM loader has no chip erase: refused as unsupported, with the ROM's way out. */
static void test_erase_all_needs_stub(void **state)
{
    (void)state;
    struct fake *f = fake_new(FAKE_ROM_ESP32, 0x00F01D83);
    struct esp_loader *l = loader_for(f, NULL);
    struct esp_error err;
    assert_int_equal(esp_loader_connect(l, &err), 0);
    assert_int_equal(esp_loader_start(l, &err), 0);
    assert_int_equal(esp_loader_erase_all(l, &err), -ENOTSUP);
    assert_int_equal(err.stage, ESP_STAGE_ERASE);
    assert_false(err.has_device_status);
    assert_non_null(strstr(err.advice, "0x0+0x400000"));
    assert_int_equal(count_op(f, ESP_OP_ERASE_FLASH), 0);
    esp_loader_free(l);
    fake_free(f);
}

static void test_md5_mismatch(void **state)
{
    (void)state;
    struct fake *f = fake_new(FAKE_ROM_ESP32, 0x00F01D83);
    f->md5_wrong = true;
    struct esp_loader *l = loader_for(f, NULL);
    struct esp_error err;
    assert_int_equal(esp_loader_connect(l, &err), 0);
    assert_int_equal(esp_loader_start(l, &err), 0);
    uint8_t d[0x800];
    fill_pattern(d, sizeof(d), 3);
    struct esp_region reg = {.offset = 0x8000, .data = d, .len = sizeof(d), .name = "pt"};
    struct esp_flash_opts opts;
    esp_flash_opts_init(&opts);
    assert_int_equal(esp_loader_flash(l, &reg, 1, &opts, &err), -EBADMSG);
    assert_int_equal(err.stage, ESP_STAGE_VERIFY);
    assert_true(err.has_address);
    assert_int_equal(err.address, 0x8000);
    /* Both digests are named. */
    uint8_t want[16];
    unsigned int ml = 16;
    EVP_Digest(d, sizeof(d), want, &ml, EVP_md5(), NULL);
    char hex[33];
    for (int i = 0; i < 16; i++)
        snprintf(hex + 2 * i, 3, "%02x", want[i]);
    assert_non_null(strstr(err.message, hex));
    hex[0] = "0123456789abcdef"[(want[0] ^ 0x55) >> 4];
    hex[1] = "0123456789abcdef"[(want[0] ^ 0x55) & 15];
    assert_non_null(strstr(err.message, hex));
    esp_loader_free(l);
    fake_free(f);
}

static void test_device_error_0x08(void **state)
{
    (void)state;
    struct fake *f = fake_new(FAKE_ROM_ESP32, 0x00F01D83);
    f->fail_data_seq = 2;
    f->fail_code = 0x08;
    struct esp_loader *l = loader_for(f, NULL);
    struct esp_error err;
    assert_int_equal(esp_loader_connect(l, &err), 0);
    assert_int_equal(esp_loader_start(l, &err), 0);
    uint8_t d[0x1000];
    fill_pattern(d, sizeof(d), 5);
    struct esp_region reg = {.offset = 0x20000, .data = d, .len = sizeof(d)};
    struct esp_flash_opts opts;
    esp_flash_opts_init(&opts);
    opts.compress = false;
    assert_int_equal(esp_loader_flash(l, &reg, 1, &opts, &err), -EIO);
    assert_int_equal(err.stage, ESP_STAGE_WRITE);
    assert_true(err.has_device_status);
    assert_int_equal(err.op, ESP_OP_FLASH_DATA);
    assert_int_equal(err.status, 0x01);
    assert_int_equal(err.error, 0x08);
    assert_true(err.has_address);
    assert_int_equal(err.address, 0x20000 + 2 * 0x400);
    assert_non_null(strstr(err.advice, "flash chip failed to program"));
    /* Failed at once: block 2 was sent once, block 3 never. */
    assert_int_equal(count_op(f, ESP_OP_FLASH_DATA), 3);
    assert_int_equal(esp_loader_stats(l)->block_retries, 0);
    esp_loader_free(l);
    fake_free(f);
}

static void test_block_retry_same_seq(void **state)
{
    (void)state;
    struct fake *f = fake_new(FAKE_ROM_ESP32, 0x00F01D83);
    f->lose_data_seq = 1;
    struct esp_loader *l = loader_for(f, NULL);
    struct esp_error err;
    assert_int_equal(esp_loader_connect(l, &err), 0);
    assert_int_equal(esp_loader_start(l, &err), 0);
    uint8_t d[0xC00];
    fill_pattern(d, sizeof(d), 9);
    struct esp_region reg = {.offset = 0x30000, .data = d, .len = sizeof(d)};
    struct esp_flash_opts opts;
    esp_flash_opts_init(&opts);
    opts.compress = false;
    assert_int_equal(esp_loader_flash(l, &reg, 1, &opts, &err), 0);
    assert_int_equal(esp_loader_stats(l)->block_retries, 1);
    assert_int_equal(count_op(f, ESP_OP_FLASH_DATA), 4);
    static const uint32_t seqs[] = {0, 1, 1, 2};
    for (size_t i = 0; i < 4; i++) {
        const struct rec *r = find_op(f, ESP_OP_FLASH_DATA, i);
        assert_int_equal(esp_get_u32(r->body + 4), seqs[i]);
    }
    assert_memory_equal(f->flash + 0x30000, d, sizeof(d));
    esp_loader_free(l);
    fake_free(f);
}

static void test_region_checks(void **state)
{
    (void)state;
    struct fake *f = fake_new(FAKE_ROM_ESP32, 0x00F01D83);
    struct esp_loader *l = loader_for(f, NULL);
    struct esp_error err;
    assert_int_equal(esp_loader_connect(l, &err), 0);
    assert_int_equal(esp_loader_start(l, &err), 0);
    static uint8_t d[0x2000];
    memset(d, 0x11, sizeof(d));
    struct esp_flash_opts opts;
    esp_flash_opts_init(&opts);

    struct esp_region overlap[2] = {
        {.offset = 0x10000, .data = d, .len = 0x2000, .name = "a"},
        {.offset = 0x11000, .data = d, .len = 0x1000, .name = "b"},
    };
    assert_int_equal(esp_loader_flash(l, overlap, 2, &opts, &err), -EINVAL);
    assert_int_equal(err.stage, ESP_STAGE_PREPARE);
    assert_non_null(strstr(err.message, "'a'"));
    assert_non_null(strstr(err.message, "'b'"));

    struct esp_region same_sector[2] = {
        {.offset = 0x10000, .data = d, .len = 0x100, .name = "a"},
        {.offset = 0x10800, .data = d, .len = 0x100, .name = "b"},
    };
    assert_int_equal(esp_loader_check_regions(l, same_sector, 2, &opts, &err), -EINVAL);
    assert_non_null(strstr(err.message, "sector"));

    struct esp_region too_big = {.offset = FLASH_SIZE - 0x1000, .data = d, .len = 0x2000};
    assert_int_equal(esp_loader_flash(l, &too_big, 1, &opts, &err), -EINVAL);
    assert_int_equal(err.stage, ESP_STAGE_PREPARE);
    assert_non_null(strstr(err.message, "beyond"));

    struct esp_region fine[2] = {
        {.offset = 0x10000, .data = d, .len = 0x1000},
        {.offset = 0x11000, .data = d, .len = 0x1000},
    };
    assert_int_equal(esp_loader_check_regions(l, fine, 2, &opts, &err), 0);
    assert_int_equal(count_op(f, ESP_OP_FLASH_DEFL_BEGIN) + count_op(f, ESP_OP_FLASH_BEGIN), 0);
    esp_loader_free(l);
    fake_free(f);
}

/* A minimal valid ESP32-family image (one segment) for chip_id. */
static size_t make_image(uint8_t *buf, size_t cap, uint16_t chip_id)
{
    memset(buf, 0, cap);
    buf[0] = 0xE9;
    buf[1] = 1;    /* segments */
    buf[2] = 2;    /* DIO */
    buf[3] = 0x20; /* 4 MB, 40 MHz */
    esp_put_u32(buf + 4, 0x40080400);
    buf[8] = 0xEE;
    buf[12] = (uint8_t)chip_id;
    buf[13] = (uint8_t)(chip_id >> 8);
    buf[17] = 0xFF; /* max_rev_full 0xFFFF */
    buf[18] = 0xFF;
    size_t p = 24;
    esp_put_u32(buf + p, 0x3FFB0000);
    esp_put_u32(buf + p + 4, 16);
    p += 8;
    uint8_t sum = 0xEF;
    for (int i = 0; i < 16; i++) {
        buf[p + i] = (uint8_t)(i * 3 + 1);
        sum ^= buf[p + i];
    }
    p += 16;
    while (p % 16 != 15)
        p++;
    buf[p++] = sum;
    assert_true(p <= cap);
    return p;
}

static void test_image_wrong_chip(void **state)
{
    (void)state;
    struct fake *f = fake_new(FAKE_ROM_ESP32, 0x00F01D83);
    struct esp_loader *l = loader_for(f, NULL);
    struct esp_error err;
    assert_int_equal(esp_loader_connect(l, &err), 0);
    assert_int_equal(esp_loader_start(l, &err), 0);
    uint8_t img[128];
    size_t n = make_image(img, sizeof(img), 5); /* built for ESP32-C3 */
    struct esp_region reg = {.offset = 0x1000, .data = img, .len = n, .name = "bootloader"};
    struct esp_flash_opts opts;
    esp_flash_opts_init(&opts);
    assert_int_equal(esp_loader_flash(l, &reg, 1, &opts, &err), -EINVAL);
    assert_int_equal(err.stage, ESP_STAGE_PREPARE);
    assert_non_null(strstr(err.message, "bootloader"));
    assert_int_equal(count_op(f, ESP_OP_FLASH_DEFL_BEGIN), 0);

    /* At another offset it is checked too; skip_image_check lets it through. */
    reg.offset = 0x10000;
    assert_int_equal(esp_loader_check_regions(l, &reg, 1, &opts, &err), -EINVAL);
    opts.skip_image_check = true;
    assert_int_equal(esp_loader_check_regions(l, &reg, 1, &opts, &err), 0);

    /* The right chip passes. */
    n = make_image(img, sizeof(img), 0);
    opts.skip_image_check = false;
    reg.offset = 0x1000;
    reg.len = n;
    assert_int_equal(esp_loader_check_regions(l, &reg, 1, &opts, &err), 0);
    esp_loader_free(l);
    fake_free(f);
}

static void test_names(void **state)
{
    (void)state;
    assert_int_equal(esp_before_from_string("no-reset"), ESP_BEFORE_NO_RESET);
    assert_int_equal(esp_before_from_string("default_reset"), ESP_BEFORE_DEFAULT_RESET);
    assert_int_equal(esp_before_from_string("bogus"), -EINVAL);
    assert_int_equal(esp_after_from_string("hard-reset"), ESP_AFTER_HARD_RESET);
    assert_int_equal(esp_after_from_string("no-reset-stub"), ESP_AFTER_NO_RESET_STUB);
    for (int i = 0; i <= ESP_BEFORE_MANUAL; i++)
        assert_int_equal(esp_before_from_string(esp_before_to_string((enum esp_before)i)), i);
    for (int i = 0; i <= ESP_AFTER_NO_RESET_STUB; i++)
        assert_int_equal(esp_after_from_string(esp_after_to_string((enum esp_after)i)), i);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_connect_esp32_rom),
        cmocka_unit_test(test_connect_with_junk),
        cmocka_unit_test(test_detect_esp8266_magic),
        cmocka_unit_test(test_detect_c3_security_info),
        cmocka_unit_test(test_unknown_magic),
        cmocka_unit_test(test_stub_already_running),
        cmocka_unit_test(test_diag_no_serial_data),
        cmocka_unit_test(test_diag_wrong_boot_mode),
        cmocka_unit_test(test_diag_banner_no_answer),
        cmocka_unit_test(test_no_modem_lines),
        cmocka_unit_test(test_hard_reset_lines),
        cmocka_unit_test(test_identify_esp32),
        cmocka_unit_test(test_usb_jtag_connect),
        cmocka_unit_test(test_no_reset_no_sync_stub),
        cmocka_unit_test(test_rom_write_esp8266),
        cmocka_unit_test(test_rom8266_ascending_order),
        cmocka_unit_test(test_rom8266_split_at_block),
        cmocka_unit_test(test_rom8266_erase_region),
        cmocka_unit_test(test_stub_defl_write),
        cmocka_unit_test(test_begin_words),
        cmocka_unit_test(test_stub_no_ohai),
        cmocka_unit_test(test_baud_before_stub),
        cmocka_unit_test(test_baud_before_stub_garbled),
        cmocka_unit_test(test_erase_all_needs_stub),
        cmocka_unit_test(test_read_flash_reply_lost),
        cmocka_unit_test(test_md5_mismatch),
        cmocka_unit_test(test_device_error_0x08),
        cmocka_unit_test(test_block_retry_same_seq),
        cmocka_unit_test(test_region_checks),
        cmocka_unit_test(test_image_wrong_chip),
    };
    return cmocka_run_group_tests(tests, make_stub_dir, remove_stub_dir);
}
