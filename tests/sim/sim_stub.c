/*
 * sim_stub: the flasher-stub persona, active after MEM_END + OHAI.
 *
 * Differences from the ROM (PROTOCOL-ROM.md 6.3): 2 status bytes with the
 * stub code in the first (0xC0..0xC9, 0xFF), value 0, 16 KiB blocks, erase as
 * it goes, and data blocks answered before they are written. Facts from the real
 * stubs (esptool's flasher_stub/stub_flasher.c: "ACK DATA commands immediately,
 * then process them a few lines down, allowing next command to buffer";
 * esp-flasher-stub v0.2.0: "Flash data after successful response is sent",
 * "double buffering for data reception"; esptool's write loop: "Stub ACKs when
 * block is received, then writes to flash while receiving the block after it"):
 *  - the UART receives into one buffer while the main loop works on the other, so
 *    a data block is answered when the main loop takes it, then its flash work
 *    (sim_write.c: erase, inflate, program) runs while the next block arrives; a
 *    block that arrives while the previous one's work still runs waits for it
 *    (stub_cpu_until). --stub-pipeline off: work first, answer after.
 *  - erase ahead (sim_write.c), --stub-erase-ahead off to drop it.
 *  - commands that read or erase the flash (MD5, READ_FLASH, ERASE_*, FLASH_BEGIN's
 *    unlock) wait for the flash chip to be idle; FLASH_END does not touch the flash
 *    and is answered when the main loop is free.
 *  - a write that fails in a block's work is reported later: the current stub
 *    (esp-flasher-stub: "Any error from post-process carries over to the next
 *    command") answers the NEXT command, whatever it is, with 0xC4 and skips it,
 *    once; the legacy stub (--stub-gen legacy, esptool's fs.last_error) answers
 *    every later data block (unwritten) and FLASH_END with 0xC4 until the next
 *    FLASH_BEGIN.
 * READ_FLASH streams raw frames with the host's byte-count acks as flow control,
 * then the MD5.
 */
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

#include "sim.h"

#define S_BAD_LEN 0xC0
#define S_BAD_CKSUM 0xC1
#define S_BAD_BLOCKSIZE 0xC2
#define S_INVALID_CMD 0xC3
#define S_SPI_FAIL 0xC4
#define S_NOT_FLASH_MODE 0xC6
#define S_INFLATE 0xC7
#define S_TOO_MUCH 0xC9
#define MAX_BLOCK 0x4000u
/* SPI_FLASH_MD5 reads the range from flash and hashes it on the chip: assumed about
 * 10 MiB/s (a 40 MHz DIO read and a software MD5), not measured on a board; scaled
 * by --link-speed like every flash timing (0 = instant). */
#define MD5_NS_PER_MB (100 * SIM_NS_PER_MS)

static void reply(struct sim *s, uint8_t op, uint8_t code)
{
    sim_reply(s, op, 0, NULL, 0, code, 0);
}

/* When the main loop takes a command that arrived now (after the previous block's work). */
static int64_t stub_free_at(const struct sim *s)
{
    int64_t now = sim_now();
    return s->stub_cpu_until > now ? s->stub_cpu_until : now;
}

/* Defer the staged reply until the stub is free and the flash idle, plus extra work on
 * the flash (erase, MD5 read). */
static void after_idle(struct sim *s, int64_t extra, enum sim_post post, uint32_t arg)
{
    int64_t now = sim_now();
    int64_t t = stub_free_at(s);
    if (s->flash.busy_until > t)
        t = s->flash.busy_until;
    t += extra;
    if (extra > 0)
        s->flash.busy_until = t;
    s->stub_cpu_until = t;
    sim_defer(s, t > now ? t : 0, post, arg);
}

/* Defer the staged reply until the stub's main loop is free (flash not waited for). */
static void after_stub(struct sim *s, enum sim_post post, uint32_t arg)
{
    int64_t now = sim_now(), t = stub_free_at(s);
    sim_defer(s, t > now ? t : 0, post, arg);
}

static struct sim_wtime stub_wtime(const struct sim *s, int64_t t)
{
    struct sim_wtime wt = {
        .stub = true, .erase_ahead = !s->stub_no_erase_ahead, .margin = s->stub_legacy, .t = t};
    return wt;
}

/* The esptool 4.x generation of the legacy stub (--stub-gen legacy) takes only the
 * four words of FLASH_BEGIN / FLASH_DEFL_BEGIN and answers a 20-byte body (the
 * encrypt word) with status 01 00, as seen on ESP32/C3 boards running those stubs
 * (PROTOCOL-ROM.md §2.1). Newer stubs take 16 or 20 bytes. */
#define S_LEGACY_REFUSED 0x01

static void stub_begin(struct sim *s, uint8_t op, const uint8_t *b, size_t len)
{
    if (s->stub_legacy && len == 20) {
        sim_log("legacy stub: %s with 5 words refused (01 00)", sim_op_name(op));
        reply(s, op, S_LEGACY_REFUSED);
        return;
    }
    if (len != 16 && len != 20) {
        reply(s, op, S_BAD_LEN);
        return;
    }
    uint32_t size = sim_u32(b), nblocks = sim_u32(b + 4), bsize = sim_u32(b + 8);
    uint32_t offset = sim_u32(b + 12);
    if (bsize > MAX_BLOCK) {
        reply(s, op, S_BAD_BLOCKSIZE);
        return;
    }
    if (len == 20 && sim_u32(b + 16) != 0)
        sim_log("%s: encrypt flag set (not modelled, writing plain)", sim_op_name(op));
    if (!sim_flash_in_bounds(&s->flash, offset, size)) {
        reply(s, op, S_SPI_FAIL);
        return;
    }
    s->stub_error_pending = false; /* the legacy stub's last_error is reset here */
    if (sim_write_begin(s, op == 0x10, size, nblocks, bsize, offset) != 0) {
        reply(s, op, S_INFLATE);
        return;
    }
    s->wr.staged_out = true;
    reply(s, op, 0);
    after_idle(s, 0, SIM_POST_NONE, 0); /* SPIUnlock waits for the flash */
    /* esp-flasher-stub starts the first erase without waiting ("Start async erase while
     * waiting for new data"); the legacy stub's FLASH_BEGIN erases nothing. */
    if (!s->stub_legacy) {
        int64_t now = sim_now();
        struct sim_wtime wt = stub_wtime(s, s->stub_cpu_until > now ? s->stub_cpu_until : now);
        sim_write_erase_ahead(s, &wt);
        s->wr.st_ahead += wt.ahead;
    }
}

static void log_block(struct sim *s, uint8_t op, uint32_t seq, const struct sim_wtime *wt,
                      int64_t took, int64_t waited)
{
    char w[64] = "";
    if (waited > 0)
        snprintf(w, sizeof(w), " (arrived during the previous block's work, waited %.1f ms)",
                 (double)waited / SIM_NS_PER_MS);
    sim_log("stub %s seq=%u: %s%s: %u erase%s ahead, %u needed, %llu bytes programmed, "
            "%.1f ms",
            sim_op_name(op), seq,
            s->stub_sync_writes ? "flash work, then the reply" : "reply, then the flash work", w,
            wt->ahead, wt->ahead == 1 ? "" : "s", wt->needed, (unsigned long long)wt->programmed,
            (double)took / SIM_NS_PER_MS);
}

static void stub_data(struct sim *s, uint8_t op, const uint8_t *b, size_t len, uint32_t ck)
{
    bool compressed = op == 0x11;
    struct sim_data d;
    if (len > MAX_BLOCK + 16) {
        reply(s, op, S_BAD_LEN);
        return;
    }
    enum sim_data_check dc = sim_data_parse(b, len, ck, &d);
    if (dc != SIM_D_OK) {
        reply(s, op, dc == SIM_D_CKSUM ? S_BAD_CKSUM : S_BAD_LEN);
        return;
    }
    if (!s->wr.active || s->wr.compressed != compressed) {
        reply(s, op, S_NOT_FLASH_MODE);
        return;
    }
    /* The main loop takes the block once the previous block's work is done. */
    int64_t now = sim_now();
    int64_t start = s->stub_cpu_until > now ? s->stub_cpu_until : now;
    if ((int64_t)d.seq == s->wr.last_seq) {
        sim_log("duplicate %s seq=%u: re-ack", sim_op_name(op), d.seq);
        reply(s, op, 0);
        sim_defer(s, start > now ? start : 0, SIM_POST_NONE, 0);
        return;
    }
    struct sim_wtime wt = stub_wtime(s, start);
    enum sim_werr e;
    if (compressed) {
        e = sim_write_inflate(s, d.payload, d.plen, &wt);
    } else {
        uint32_t left = s->wr.total - s->wr.pos;
        size_t n = d.plen < left ? d.plen : left; /* padding past the size is not written */
        if (left == 0) {
            e = SIM_W_TOO_MUCH;
        } else {
            e = sim_write_bytes(s, s->wr.offset + s->wr.pos, d.payload, n, &wt);
            if (e == SIM_W_OK)
                s->wr.pos += (uint32_t)n;
        }
    }
    uint8_t code = 0;
    switch (e) {
    case SIM_W_OK:
        break;
    case SIM_W_FAULT: /* found out in the block's work, after its reply */
        if (s->stub_sync_writes)
            code = S_SPI_FAIL;
        else
            s->stub_error_pending = true;
        break;
    case SIM_W_BOUNDS:
        code = S_SPI_FAIL;
        break;
    case SIM_W_TOO_MUCH:
        code = S_TOO_MUCH;
        break;
    case SIM_W_INFLATE:
    case SIM_W_ADLER:
        code = S_INFLATE;
        break;
    }
    if (code == 0)
        s->wr.last_seq = d.seq;
    struct sim_write_op *w = &s->wr;
    w->st_blocks++;
    w->st_ahead += wt.ahead;
    w->st_needed += wt.needed;
    if (start > now) {
        w->st_arrived_busy++;
        w->st_waited += start - now;
    }
    log_block(s, op, d.seq, &wt, wt.t - start, start - now);
    reply(s, op, code);
    s->stub_cpu_until = wt.t;
    int64_t at = s->stub_sync_writes ? wt.t : start;
    sim_defer(s, at > now ? at : 0, SIM_POST_NONE, 0);
}

static void stub_end(struct sim *s, uint8_t op, const uint8_t *b, size_t len)
{
    if (len != 4) {
        reply(s, op, S_BAD_LEN);
        return;
    }
    uint32_t flag = sim_u32(b);
    struct sim_write_op *w = &s->wr;
    if (w->active && w->st_blocks > 0)
        sim_log("stub write done: %u blocks, %u arrived during the previous block's flash work "
                "(waited %.1f ms), %u erases ahead, %u needed, flash busy %.1f ms",
                w->st_blocks, w->st_arrived_busy, (double)w->st_waited / SIM_NS_PER_MS, w->st_ahead,
                w->st_needed, (double)w->st_flash / SIM_NS_PER_MS);
    sim_write_op_end(s);
    reply(s, op, 0);
    after_stub(s, flag ? SIM_POST_NONE : SIM_POST_REBOOT, 0);
}

static void stub_md5(struct sim *s, uint8_t op, const uint8_t *b, size_t len)
{
    if (len != 16) {
        reply(s, op, S_BAD_LEN);
        return;
    }
    uint32_t addr = sim_u32(b), size = sim_u32(b + 4);
    if (!sim_flash_in_bounds(&s->flash, addr, size)) {
        reply(s, op, S_SPI_FAIL);
        return;
    }
    uint8_t dig[16];
    sim_md5(s->flash.mem + addr, size, dig);
    if (s->faults.md5_mismatch) {
        sim_log("fault md5-mismatch fired");
        dig[0] ^= 0x5A;
    }
    sim_reply(s, op, 0, dig, 16, 0, 0);
    after_idle(s, sim_flash_scaled(&s->flash, (int64_t)size * MD5_NS_PER_MB / 0x100000),
               SIM_POST_NONE, 0);
}

static void stub_erase(struct sim *s, uint8_t op, const uint8_t *b, size_t len)
{
    uint32_t addr = 0, size = s->flash.size;
    if (op == 0xD1) {
        if (len != 8) {
            reply(s, op, S_BAD_LEN);
            return;
        }
        addr = sim_u32(b);
        size = sim_u32(b + 4);
        if (addr % 0x1000 || size % 0x1000 || !sim_flash_in_bounds(&s->flash, addr, size)) {
            reply(s, op, S_SPI_FAIL);
            return;
        }
    }
    int64_t cost = sim_flash_erase(&s->flash, addr, size, true);
    sim_log("erase 0x%x+0x%x", addr, size);
    reply(s, op, 0);
    after_idle(s, cost, SIM_POST_NONE, 0);
}

static void stub_read_flash(struct sim *s, uint8_t op, const uint8_t *b, size_t len)
{
    if (len != 16) {
        reply(s, op, S_BAD_LEN);
        return;
    }
    uint32_t off = sim_u32(b), n = sim_u32(b + 4), pkt = sim_u32(b + 8), inflight = sim_u32(b + 12);
    if (pkt == 0 || pkt > 0x10000 || !sim_flash_in_bounds(&s->flash, off, n)) {
        reply(s, op, S_BAD_LEN);
        return;
    }
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx || EVP_DigestInit_ex(ctx, EVP_md5(), NULL) != 1) {
        EVP_MD_CTX_free(ctx);
        reply(s, op, S_SPI_FAIL);
        return;
    }
    s->rd.active = true;
    s->rd.offset = off;
    s->rd.length = n;
    s->rd.packet_size = pkt;
    s->rd.max_in_flight = inflight ? inflight : 1;
    s->rd.sent = s->rd.acked = 0;
    s->rd.md5 = ctx;
    sim_log("read flash 0x%x+0x%x packet %u in-flight %u", off, n, pkt, s->rd.max_in_flight);
    reply(s, op, 0);
    after_idle(s, 0, SIM_POST_READ_FLASH, 0);
}

static void read_finish(struct sim *s)
{
    uint8_t dig[16];
    unsigned int dl = 0;
    EVP_DigestFinal_ex(s->rd.md5, dig, &dl);
    EVP_MD_CTX_free(s->rd.md5);
    s->rd.md5 = NULL;
    s->rd.active = false;
    sim_send_raw_frame(s, dig, sizeof(dig));
    sim_log("read flash done");
}

void sim_stub_read_pump(struct sim *s)
{
    struct sim_read_op *r = &s->rd;
    if (!r->active || s->defer_at)
        return;
    bool staged = false;
    while (r->sent < r->length) {
        uint32_t unacked = r->sent - r->acked;
        uint32_t frames = (unacked + r->packet_size - 1) / r->packet_size;
        if (frames >= r->max_in_flight)
            break;
        uint32_t n = r->length - r->sent;
        if (n > r->packet_size)
            n = r->packet_size;
        const uint8_t *p = s->flash.mem + r->offset + r->sent;
        EVP_DigestUpdate(r->md5, p, n);
        sim_send_raw_frame(s, p, n);
        r->sent += n;
        staged = true;
    }
    if (r->length == 0 || (r->sent == r->length && r->acked >= r->length)) {
        read_finish(s);
        staged = true;
    }
    if (staged)
        sim_release(s);
}

void sim_stub_read_ack(struct sim *s, const uint8_t *frame, size_t len)
{
    if (len != 4) {
        sim_log("read flash: unexpected %zu-byte frame ignored", len);
        return;
    }
    uint32_t v = sim_u32(frame);
    if (v > s->rd.sent || v < s->rd.acked) {
        sim_log("read flash: bogus ack %u (sent %u)", v, s->rd.sent);
        return;
    }
    s->rd.acked = v;
    sim_stub_read_pump(s);
}

void sim_stub_command(struct sim *s, uint8_t op, const uint8_t *b, size_t len, uint32_t ck)
{
    if (s->stub_error_pending && !s->stub_legacy) {
        /* esp-flasher-stub: a block's write failed after its reply; the next command,
         * whatever it is, is answered with the error and not run, once. */
        s->stub_error_pending = false;
        sim_log("reporting background write error on %s", sim_op_name(op));
        reply(s, op, S_SPI_FAIL);
        after_stub(s, SIM_POST_NONE, 0);
        return;
    }
    if (s->stub_error_pending && (op == 0x03 || op == 0x11 || op == 0x04 || op == 0x12)) {
        /* legacy stub: fs.last_error answers every later data block (not written) and
         * FLASH_END, until the next FLASH_BEGIN. */
        sim_log("reporting background write error on %s (legacy: sticky)", sim_op_name(op));
        if (op == 0x04 || op == 0x12) {
            s->stub_error_pending = false;
            sim_write_op_end(s);
        }
        reply(s, op, S_SPI_FAIL);
        after_stub(s, SIM_POST_NONE, 0);
        return;
    }
    if ((s->faults.flash_dead || s->flash_sleeping) &&
        (op == 0x02 || op == 0x10 || op == 0x13 || op == 0xD0 || op == 0xD1 || op == 0xD2)) {
        /* The stubs' SPI flash routines fail on a flash that does not answer (simplified:
         * a real stub may wait out its busy-poll first); reported as SPI failure. */
        sim_log("%s (%s failed)",
                s->faults.flash_dead ? "fault flash-dead fired" : "flash in deep power-down",
                sim_op_name(op));
        reply(s, op, S_SPI_FAIL);
        return;
    }
    switch (op) {
    case 0x08: /* SYNC */
        for (int i = 0; i < 8; i++)
            reply(s, op, 0);
        return;
    case 0x0A:
        if (len != 4) {
            reply(s, op, S_BAD_LEN);
            return;
        }
        sim_reply(s, op, sim_regs_read(s, sim_u32(b)), NULL, 0, 0, 0);
        return;
    case 0x09:
        if (len == 0 || len % 16) {
            reply(s, op, S_BAD_LEN);
            return;
        }
        for (size_t i = 0; i < len; i += 16)
            sim_regs_write(s, sim_u32(b + i), sim_u32(b + i + 4), sim_u32(b + i + 8));
        reply(s, op, 0);
        return;
    case 0x05:
    case 0x06:
    case 0x07:
        sim_rom_mem_command(s, op, b, len, ck, true);
        return;
    case 0x02:
    case 0x10:
        stub_begin(s, op, b, len);
        return;
    case 0x03:
    case 0x11:
        stub_data(s, op, b, len, ck);
        return;
    case 0x04:
    case 0x12:
        stub_end(s, op, b, len);
        return;
    case 0x0B:
        if (len != 24) {
            reply(s, op, S_BAD_LEN);
            return;
        }
        s->spi_params_set = true;
        s->spi_total_size = sim_u32(b + 4);
        reply(s, op, 0);
        return;
    case 0x0D: /* SPI_ATTACH: the new stub takes 4 or 8 bytes, the legacy one only 4
                * (PROTOCOL-ROM.md §2; its refusal code is taken to be that of its
                * FLASH_BEGIN length check) */
        if (s->stub_legacy && len == 8) {
            sim_log("legacy stub: SPI_ATTACH with 8 bytes refused (01 00)");
            reply(s, op, S_LEGACY_REFUSED);
            return;
        }
        reply(s, op, (len == 4 || len == 8) ? 0 : S_BAD_LEN);
        return;
    case 0x0F: {
        uint32_t nb = len == 8 ? sim_u32(b) : 0, old = len == 8 ? sim_u32(b + 4) : 0;
        if (nb < 300 || nb > 5000000) {
            reply(s, op, S_BAD_LEN);
            return;
        }
        if (old != s->baud)
            sim_log("warning: CHANGE_BAUDRATE old=%u but the stub runs at %u", old, s->baud);
        reply(s, op, 0);
        sim_defer(s, 0, SIM_POST_BAUD, nb);
        return;
    }
    case 0x13:
        stub_md5(s, op, b, len);
        return;
    case 0xD0:
    case 0xD1:
        stub_erase(s, op, b, len);
        return;
    case 0xD2:
        stub_read_flash(s, op, b, len);
        return;
    case 0xD3: /* RUN_USER_CODE: no reply, the app boots */
        sim_defer(s, 0, SIM_POST_RUN_APP, 0);
        return;
    case 0x14: {
        if (!s->chip->security_info) {
            reply(s, op, S_INVALID_CMD);
            return;
        }
        uint8_t info[20];
        memset(info, 0, sizeof(info));
        sim_put_u32(info + 12, (uint32_t)s->chip->chip_id);
        sim_put_u32(info + 16, s->chip->chip == SIM_ESP32C3 ? 3 : 0);
        sim_reply(s, op, 0, info, sizeof(info), 0, 0);
        return;
    }
    default:
        reply(s, op, S_INVALID_CMD);
        return;
    }
}
