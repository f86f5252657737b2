/*
 * sim_rom: the ROM serial-loader persona, ESP8266 and ESP32-family, with the
 * real differences (PROTOCOL-ROM.md 2, 5): status bytes [status, error]
 * (+2 reserved on ESP32+), stale header values, 8 SYNC replies, the ESP8266
 * erase bug, the ESP32+ 2 MB limit before SPI_SET_PARAMS, synchronous erase
 * in FLASH_BEGIN and program-before-reply in FLASH_DATA, ASCII MD5, and
 * MEM_END starting the uploaded stub (reply, then OHAI).
 * Also holds helpers both personas use (checksum, MD5, RAM model).
 */
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

#define E_INVALID 0x01
#define E_UNSUPPORTED 0x05
#define E_EXEC 0x06
#define E_CHECKSUM 0x07
#define E_WRITE 0x08
#define E_READ 0x09
#define E_DEFLATE 0x0B
#define E_ADLER 0x0C
#define E_RAM_SIZE 0x0E
#define SYNC_VALUE 0x20120707u
#define MAX_RAM_SEG (1u << 20)
#define MD5_NS_PER_MB (100 * SIM_NS_PER_MS)

/* ---- shared helpers ----------------------------------------------------- */

uint8_t sim_checksum(const uint8_t *data, size_t len)
{
    uint8_t c = 0xEF;
    for (size_t i = 0; i < len; i++)
        c ^= data[i];
    return c;
}

bool sim_md5(const uint8_t *data, size_t len, uint8_t out[16])
{
    unsigned int n = 0;
    return EVP_Digest(data, len, out, &n, EVP_md5(), NULL) == 1 && n == 16;
}

int sim_mem_begin(struct sim *s, uint32_t size, uint32_t block_size, uint32_t addr)
{
    if (size > MAX_RAM_SEG)
        return -1;
    for (size_t i = 0; i < s->n_mem; i++) {
        if (s->mem[i].addr == addr) { /* re-upload of the same segment */
            free(s->mem[i].data);
            s->mem[i] = s->mem[--s->n_mem];
            break;
        }
    }
    if (s->n_mem >= SIM_MAX_MEM_SEGS)
        return -1;
    uint8_t *d = calloc(1, size ? size : 1);
    if (!d)
        return -1;
    struct sim_mem_seg *seg = &s->mem[s->n_mem++];
    seg->addr = addr;
    seg->size = size;
    seg->block_size = block_size;
    seg->data = d;
    s->mem_cur = seg;
    s->mem_last_seq = -1;
    return 0;
}

int sim_mem_data(struct sim *s, uint32_t seq, const uint8_t *data, size_t len)
{
    struct sim_mem_seg *seg = s->mem_cur;
    if (!seg)
        return -1;
    uint64_t off = (uint64_t)seq * seg->block_size;
    if (off + len > seg->size)
        return -1;
    memcpy(seg->data + off, data, len);
    return 0;
}

bool sim_mem_contains(const struct sim *s, uint32_t addr)
{
    for (size_t i = 0; i < s->n_mem; i++)
        if (addr >= s->mem[i].addr && (uint64_t)addr < (uint64_t)s->mem[i].addr + s->mem[i].size)
            return true;
    return false;
}

/* ---- ROM replies --------------------------------------------------------- */

static void ok(struct sim *s, uint8_t op)
{
    sim_reply(s, op, s->last_value, NULL, 0, 0, 0);
}

static void fail(struct sim *s, uint8_t op, uint8_t err)
{
    sim_reply(s, op, s->last_value, NULL, 0, 1, err);
}

/* An opcode this ROM does not know: status 1, error 0x05, rom_unsup_replies times,
 * echoing the opcode or not (--rom-unsupported; PROTOCOL-ROM.md §1.4: "possibly
 * several times and not necessarily echoing the opcode"). */
static void unsupported(struct sim *s, uint8_t op)
{
    uint8_t rop = s->rom_unsup_op >= 0 ? (uint8_t)s->rom_unsup_op : op;
    unsigned n = s->rom_unsup_replies ? s->rom_unsup_replies : 1;
    if (n > 1 || rop != op)
        sim_log("rom: %s unsupported, %u replies with opcode 0x%02x", sim_op_name(op), n, rop);
    for (unsigned i = 0; i < n; i++)
        sim_reply(s, rop, s->last_value, NULL, 0, 1, E_UNSUPPORTED);
}

static void defer_for(struct sim *s, int64_t cost, enum sim_post post, uint32_t arg)
{
    sim_defer(s, cost > 0 ? sim_now() + cost : 0, post, arg);
}

/* Whether the SPI controller reaches the flash. The ESP8266 ROM attaches it with
 * FLASH_BEGIN, the stubs attach it from the eFuse pins when they start; an ESP32-family
 * ROM only after SPI_ATTACH named the pins the flash is on (PROTOCOL-ROM.md §5.1: the
 * ESP32 ROM does not attach in-package flash by itself; esptool and esp-serial-flasher
 * send SPI_ATTACH to every ESP32-family ROM before any flash command). */
bool sim_rom_flash_reachable(const struct sim *s)
{
    if (s->faults.flash_dead || s->flash_sleeping) /* flash-dead / deep power-down */
        return false;
    if (s->state != SIM_ST_ROM || !s->chip->rom_full || s->rom_attach_lenient)
        return true;
    return s->spi_attached;
}

/* The ESP32 ROM's SPI_ATTACH word for the pins in eFuse: 0 for the default pins, else
 * hd<<24 | cs<<18 | d<<12 | q<<6 | clk (PROTOCOL-ROM.md §2.1). */
static uint32_t efuse_pins_config(const struct sim *s)
{
    const uint8_t *p = s->spi_pads;
    if (!(p[0] | p[1] | p[2] | p[3] | p[4]))
        return 0;
    return (uint32_t)p[4] << 24 | (uint32_t)p[3] << 18 | (uint32_t)p[2] << 12 |
           (uint32_t)p[1] << 6 | p[0];
}

static bool rom_needs_attach(struct sim *s, uint8_t op)
{
    if (sim_rom_flash_reachable(s))
        return false;
    sim_log("rom: %s before SPI_ATTACH reached the flash: failed", sim_op_name(op));
    fail(s, op, E_EXEC);
    return true;
}

/* ESP8266 ROM erase bug: E sectors from sector s with head = 16 - s%16 left in
 * the 64 KiB block erases 2E sectors if E <= head, else E + head. */
static uint32_t esp8266_erased_sectors(uint32_t offset, uint32_t erase_size)
{
    uint32_t e = (uint32_t)(((uint64_t)erase_size + 0xFFF) / 0x1000);
    uint32_t head = 16 - (offset / 0x1000) % 16;
    return e <= head ? 2 * e : e + head;
}

static void rom_flash_begin(struct sim *s, uint8_t op, const uint8_t *b, size_t len)
{
    bool compressed = op == 0x10;
    if (compressed && !s->chip->rom_full) {
        unsupported(s, op);
        return;
    }
    if (!(len == 16 || (len == 20 && s->chip->begin_5words))) {
        fail(s, op, E_INVALID);
        return;
    }
    if (len == 20 && sim_u32(b + 16) != 0) {
        sim_log("FLASH_BEGIN: encrypted writes are not modelled");
        fail(s, op, E_INVALID);
        return;
    }
    uint32_t size = sim_u32(b), nblocks = sim_u32(b + 4), bsize = sim_u32(b + 8);
    uint32_t offset = sim_u32(b + 12);
    if (size != 0 && rom_needs_attach(s, op))
        return;
    if (offset >= 0x1000000u) {
        /* The ROMs address flash with 24 bits: 16 MB and above wraps to 0 (§5.9). */
        sim_log("rom: 24-bit flash address 0x%x wraps to 0x%x", offset, offset & 0xFFFFFFu);
        offset &= 0xFFFFFFu;
    }
    uint64_t erase_start = offset & ~0xFFFu, erase_len;
    if (s->chip->chip == SIM_ESP8266) {
        erase_len = (uint64_t)esp8266_erased_sectors(offset, size) * 0x1000;
        if (size == 0)
            erase_len = 0;
        sim_log("esp8266 rom erase: asked 0x%x at 0x%x, erases 0x%llx", size, offset,
                (unsigned long long)erase_len);
    } else {
        erase_len = (((uint64_t)offset + size + 0xFFF) & ~0xFFFull) - erase_start;
        if (size == 0)
            erase_len = 0;
    }
    if ((uint64_t)offset + size > sim_flash_limit(s)) {
        sim_log("FLASH_BEGIN beyond 0x%x", sim_flash_limit(s));
        fail(s, op, E_EXEC);
        return;
    }
    if (erase_start + erase_len > s->flash.size)
        erase_len = s->flash.size - erase_start;
    /* The ROM erases the whole area before it answers (esptool's flash_begin gives the
     * ROM an erase-sized timeout: "ROM performs the erase up front"). */
    int64_t cost = sim_flash_erase(&s->flash, (uint32_t)erase_start, (uint32_t)erase_len, true);
    if (sim_write_begin(s, compressed, size, nblocks, bsize, offset) != 0) {
        fail(s, op, E_DEFLATE);
        return;
    }
    ok(s, op);
    defer_for(s, cost, SIM_POST_NONE, 0);
}

static void rom_flash_data(struct sim *s, uint8_t op, const uint8_t *b, size_t len, uint32_t ck)
{
    bool compressed = op == 0x11;
    if (compressed && !s->chip->rom_full) {
        unsupported(s, op);
        return;
    }
    struct sim_data d;
    enum sim_data_check dc = sim_data_parse(b, len, ck, &d);
    if (dc != SIM_D_OK) {
        fail(s, op, dc == SIM_D_CKSUM ? E_CHECKSUM : E_INVALID);
        return;
    }
    if (!s->wr.active || s->wr.compressed != compressed) {
        fail(s, op, E_EXEC);
        return;
    }
    if ((int64_t)d.seq == s->wr.last_seq) {
        sim_log("duplicate %s seq=%u: re-ack", sim_op_name(op), d.seq);
        ok(s, op);
        return;
    }
    /* The ROM writes the block before it answers (esptool: "ROM code writes block to
     * flash before ACKing"); FLASH_BEGIN erased the area up front. */
    struct sim_wtime wt = {.stub = false};
    enum sim_werr e;
    if (compressed) {
        e = sim_write_inflate(s, d.payload, d.plen, &wt);
    } else {
        uint64_t addr = (uint64_t)s->wr.offset + (uint64_t)d.seq * s->wr.block_size;
        e = addr > 0xFFFFFFFFu ? SIM_W_BOUNDS
                               : sim_write_bytes(s, (uint32_t)addr, d.payload, d.plen, &wt);
    }
    int64_t cost = wt.t;
    switch (e) {
    case SIM_W_OK:
        s->wr.last_seq = d.seq;
        ok(s, op);
        break;
    case SIM_W_FAULT:
        fail(s, op, E_WRITE);
        break;
    case SIM_W_BOUNDS:
        fail(s, op, E_EXEC);
        break;
    case SIM_W_TOO_MUCH:
    case SIM_W_INFLATE:
        fail(s, op, E_DEFLATE);
        break;
    case SIM_W_ADLER:
        fail(s, op, E_ADLER);
        break;
    }
    defer_for(s, cost, SIM_POST_NONE, 0);
}

static void rom_flash_end(struct sim *s, uint8_t op, const uint8_t *b, size_t len)
{
    if ((op == 0x12 && !s->chip->rom_full)) {
        unsupported(s, op);
        return;
    }
    if (len != 4) {
        fail(s, op, E_INVALID);
        return;
    }
    uint32_t flag = sim_u32(b);
    sim_write_op_end(s);
    ok(s, op);
    /* The ROM leaves the loader either way: 1 = jump to the app, 0 = reboot. */
    sim_defer(s, 0, flag ? SIM_POST_RUN_APP : SIM_POST_REBOOT, 0);
}

static void rom_mem(struct sim *s, uint8_t op, const uint8_t *b, size_t len, uint32_t ck, bool stub)
{
    uint8_t e_inval = stub ? 0xC0 : E_INVALID;
    uint8_t e_ck = stub ? 0xC1 : E_CHECKSUM;
    uint8_t e_exec = stub ? 0xC4 : E_EXEC;
    uint32_t value = stub ? 0 : s->last_value;
#define MEM_FAIL(code) sim_reply(s, op, value, NULL, 0, stub ? (code) : 1, stub ? 0 : (code))
    if (op == 0x05) {
        if (len != 16) {
            MEM_FAIL(e_inval);
        } else if (sim_mem_begin(s, sim_u32(b), sim_u32(b + 8), sim_u32(b + 12)) != 0) {
            MEM_FAIL(stub ? 0xC0 : E_RAM_SIZE);
        } else {
            sim_reply(s, op, value, NULL, 0, 0, 0);
        }
        return;
    }
    if (op == 0x07) {
        struct sim_data d;
        enum sim_data_check dc = sim_data_parse(b, len, ck, &d);
        if (dc != SIM_D_OK) {
            MEM_FAIL(dc == SIM_D_CKSUM ? e_ck : e_inval);
        } else if (s->mem_cur && (int64_t)d.seq == s->mem_last_seq) {
            sim_log("duplicate MEM_DATA seq=%u: re-ack", d.seq);
            sim_reply(s, op, value, NULL, 0, 0, 0);
        } else if (sim_mem_data(s, d.seq, d.payload, d.plen) != 0) {
            MEM_FAIL(e_exec);
        } else {
            s->mem_last_seq = d.seq;
            sim_reply(s, op, value, NULL, 0, 0, 0);
        }
        return;
    }
    /* MEM_END */
    if (len != 8) {
        MEM_FAIL(e_inval);
        return;
    }
    uint32_t flag = sim_u32(b), entry = sim_u32(b + 4);
    if (flag != 0) {
        sim_reply(s, op, value, NULL, 0, 0, 0);
        return;
    }
    if (!sim_mem_contains(s, entry)) {
        sim_log("MEM_END: entry 0x%08x not in uploaded RAM", entry);
        sim_reply(s, op, value, NULL, 0, 0, 0);
        sim_defer(s, 0, SIM_POST_DEAD, 0);
        return;
    }
    if (!sim_stub_image_ok(s)) {
        MEM_FAIL(e_exec);
        return;
    }
    sim_reply(s, op, value, NULL, 0, 0, 0);
    if (s->faults.stub_no_ohai) {
        /* The jump happens, the stub never gets to its hello (a brown-out under the
         * stub's faster clock, a stub built for another revision): silent until reset. */
        sim_log("fault stub-no-ohai fired (stub started, never says OHAI)");
        sim_defer(s, 0, SIM_POST_DEAD, 0);
        return;
    }
    sim_defer(s, 0, SIM_POST_OHAI, 0);
#undef MEM_FAIL
}

void sim_rom_mem_command(struct sim *s, uint8_t op, const uint8_t *b, size_t len, uint32_t ck,
                         bool stub)
{
    rom_mem(s, op, b, len, ck, stub);
}

static void rom_md5(struct sim *s, uint8_t op, const uint8_t *b, size_t len)
{
    if (len != 16) {
        fail(s, op, E_INVALID);
        return;
    }
    if (rom_needs_attach(s, op))
        return;
    uint32_t addr = sim_u32(b), size = sim_u32(b + 4);
    if (!sim_flash_in_bounds(&s->flash, addr, size)) {
        fail(s, op, E_READ);
        return;
    }
    uint8_t dig[16];
    char hex[33];
    sim_md5(s->flash.mem + addr, size, dig);
    if (s->faults.md5_mismatch) {
        sim_log("fault md5-mismatch fired");
        dig[0] ^= 0x5A;
    }
    for (int i = 0; i < 16; i++)
        snprintf(hex + 2 * i, 3, "%02x", dig[i]);
    sim_reply(s, op, s->last_value, (const uint8_t *)hex, 32, 0, 0);
    defer_for(s, sim_flash_scaled(&s->flash, (int64_t)size * MD5_NS_PER_MB / 0x100000),
              SIM_POST_NONE, 0);
}

/* Secure Download Mode: the opcodes the ROM still runs (PROTOCOL-ROM.md §2, §4.3). */
static bool sdm_allowed(uint8_t op)
{
    switch (op) {
    case 0x02: /* FLASH_BEGIN */
    case 0x03: /* FLASH_DATA */
    case 0x04: /* FLASH_END */
    case 0x08: /* SYNC */
    case 0x0B: /* SPI_SET_PARAMS */
    case 0x0D: /* SPI_ATTACH */
    case 0x0F: /* CHANGE_BAUDRATE */
    case 0x14: /* GET_SECURITY_INFO */
        return true;
    default:
        return false;
    }
}

void sim_rom_command(struct sim *s, uint8_t op, const uint8_t *b, size_t len, uint32_t ck)
{
    bool full = s->chip->rom_full;
    if (s->secure_download && !sdm_allowed(op)) {
        sim_log("secure download mode: %s refused", sim_op_name(op));
        unsupported(s, op);
        return;
    }
    switch (op) {
    case 0x08: /* SYNC */
        if (len != 36 || b[0] != 0x07 || b[1] != 0x07 || b[2] != 0x12 || b[3] != 0x20)
            return; /* not a sync pattern: the ROM stays quiet */
        for (int i = 0; i < 8; i++)
            sim_reply(s, op, SYNC_VALUE, NULL, 0, 0, 0);
        return;
    case 0x0A: /* READ_REG */
        if (len != 4) {
            fail(s, op, E_INVALID);
            return;
        }
        s->last_value = sim_regs_read(s, sim_u32(b));
        ok(s, op);
        return;
    case 0x09: /* WRITE_REG */
        if (len == 0 || len % 16) {
            fail(s, op, E_INVALID);
            return;
        }
        for (size_t i = 0; i < len; i += 16)
            sim_regs_write(s, sim_u32(b + i), sim_u32(b + i + 4), sim_u32(b + i + 8));
        ok(s, op);
        return;
    case 0x05:
    case 0x06:
    case 0x07:
        rom_mem(s, op, b, len, ck, false);
        return;
    case 0x02:
    case 0x10:
        rom_flash_begin(s, op, b, len);
        return;
    case 0x03:
    case 0x11:
        rom_flash_data(s, op, b, len, ck);
        return;
    case 0x04:
    case 0x12:
        rom_flash_end(s, op, b, len);
        return;
    default:
        break;
    }
    if (!full) {
        unsupported(s, op);
        return;
    }
    switch (op) {
    case 0x0B: /* SPI_SET_PARAMS */
        if (len != 24) {
            fail(s, op, E_INVALID);
            return;
        }
        s->spi_params_set = true;
        s->spi_total_size = sim_u32(b + 4);
        sim_log("spi params: total size 0x%x", s->spi_total_size);
        ok(s, op);
        return;
    case 0x0D: { /* SPI_ATTACH: the ROM takes 8 bytes */
        if (len != 8) {
            fail(s, op, E_INVALID);
            return;
        }
        /* ESP32: the word must name the eFuse pins (0 = the default pins); the later
         * ROMs take 0 as "the pins in eFuse" themselves. A wrong word is answered OK:
         * the ROM cannot know no flash is there. */
        uint32_t cfg = sim_u32(b), want = efuse_pins_config(s);
        s->spi_attached = cfg == want || (s->chip->chip != SIM_ESP32 && cfg == 0);
        if (!s->spi_attached)
            sim_log("rom: SPI_ATTACH 0x%08x, but the flash is on 0x%08x: not attached", cfg, want);
        ok(s, op);
        return;
    }
    case 0x0E: { /* READ_FLASH_SLOW */
        if (len != 8 || sim_u32(b + 4) > 64) {
            fail(s, op, E_INVALID);
            return;
        }
        if (rom_needs_attach(s, op))
            return;
        uint8_t buf[64];
        uint32_t a = sim_u32(b);
        memset(buf, 0xFF, sizeof(buf));
        for (uint32_t i = 0; i < 64; i++)
            if ((uint64_t)a + i < s->flash.size)
                buf[i] = s->flash.mem[a + i];
        sim_reply(s, op, s->last_value, buf, 64, 0, 0);
        return;
    }
    case 0x0F: { /* CHANGE_BAUDRATE: reply at the old rate, then switch */
        uint32_t nb = len == 8 ? sim_u32(b) : 0;
        if (nb < 300 || nb > 5000000) {
            fail(s, op, E_INVALID);
            return;
        }
        ok(s, op);
        sim_defer(s, 0, SIM_POST_BAUD, nb);
        return;
    }
    case 0x13:
        rom_md5(s, op, b, len);
        return;
    case 0x14: { /* GET_SECURITY_INFO */
        if (!s->chip->security_info) {
            unsupported(s, op);
            return;
        }
        uint8_t info[20];
        memset(info, 0, sizeof(info));
        if (s->secure_download)
            info[0] = 1u << 2; /* SECURE_DOWNLOAD_ENABLE */
        sim_put_u32(info + 12, (uint32_t)s->chip->chip_id);
        sim_put_u32(info + 16, s->chip->chip == SIM_ESP32C3 ? 3 : 0);
        sim_reply(s, op, s->last_value, info, sizeof(info), 0, 0);
        return;
    }
    default:
        unsupported(s, op);
        return;
    }
}
