/*
 * sim_write: the flash write operation opened by FLASH_BEGIN or
 * FLASH_DEFL_BEGIN, shared by the ROM and stub personas: data-block parsing
 * and checks, streaming zlib inflate, the write-error fault and address limits,
 * and the stub's flash work for one block on a virtual clock (struct sim_wtime).
 *
 * The stub's flash work is the one the real stubs do (esptool's
 * flasher_stub/stub_write_flash.c, esp-flasher-stub's src/command_handler.c, read
 * for facts only):
 *  - erase pointer: the range [offset rounded down, offset+size rounded up to
 *    4 KiB) is erased in order, a 64 KiB block erase where the pointer is 64 KiB
 *    aligned and at least 64 KiB are left, else a 4 KiB sector erase
 *    (start_next_erase / stub_lib_flash_start_next_erase);
 *  - before a write, erases up to the write's end are issued back to back, the stub
 *    waiting for each (the esptool stub erases through the sector that holds the
 *    write's end byte, one more when the end is sector aligned; esp-flasher-stub up
 *    to the end); then it waits until the flash is idle and programs, SPIWrite
 *    waiting for every page;
 *  - erase ahead: at each inflate step of a compressed block (and, esp-flasher-stub,
 *    at FLASH_BEGIN) one erase is started WITHOUT waiting if the flash is idle
 *    ("start an opportunistic erase: decompressing takes time"); it runs while the
 *    stub inflates or waits for the next block. Uncompressed blocks get no erase ahead;
 *  - inflated output collects in a 32 KiB buffer and is written when the buffer is
 *    full or the stream ends.
 * The flash content changes at once (tests may cmp flash.bin any time); only the
 * time is virtual. Personas decide what an error code looks like and when the host
 * hears it.
 */
#include <string.h>

#include "sim.h"

#define SECTOR 0x1000u
#define BLOCK 0x10000u
#define ROM_DEFAULT_SIZE 0x200000u

enum sim_data_check sim_data_parse(const uint8_t *body, size_t len, uint32_t cksum,
                                   struct sim_data *d)
{
    if (len < 16)
        return SIM_D_SHORT;
    d->dlen = sim_u32(body);
    d->seq = sim_u32(body + 4);
    d->payload = body + 16;
    d->plen = len - 16;
    if (d->dlen != d->plen)
        return SIM_D_LEN;
    if (sim_checksum(d->payload, d->plen) != (cksum & 0xFF))
        return SIM_D_CKSUM;
    return SIM_D_OK;
}

uint32_t sim_flash_limit(const struct sim *s)
{
    uint32_t size = s->flash.size;
    if (s->state == SIM_ST_ROM && s->chip->rom_full && !s->spi_params_set &&
        size > ROM_DEFAULT_SIZE)
        return ROM_DEFAULT_SIZE;
    return size;
}

int sim_write_begin(struct sim *s, bool compressed, uint32_t total, uint32_t nblocks,
                    uint32_t block_size, uint32_t offset)
{
    sim_write_op_end(s);
    struct sim_write_op *w = &s->wr;
    w->active = true;
    w->compressed = compressed;
    w->total = total;
    w->num_blocks = nblocks;
    w->block_size = block_size;
    w->offset = offset;
    w->erased_to = offset & ~(SECTOR - 1);
    uint64_t end = ((uint64_t)offset + total + SECTOR - 1) & ~(uint64_t)(SECTOR - 1);
    w->erase_end = end < s->flash.size ? (uint32_t)end : s->flash.size;
    w->last_seq = -1;
    if (compressed) {
        memset(&w->zs, 0, sizeof(w->zs));
        if (inflateInit(&w->zs) != Z_OK)
            return -1;
        w->inflate_init = true;
    }
    return 0;
}

/* Starts the erase of the next sector or 64 KiB block at time at (the flash must be
 * idle then); the flash is busy with it until at + its time. */
static void erase_next(struct sim *s, int64_t at)
{
    struct sim_write_op *w = &s->wr;
    uint32_t a = w->erased_to;
    bool block = a % BLOCK == 0 && (uint64_t)w->erase_end - a >= BLOCK;
    int64_t cost = sim_flash_erase(&s->flash, a, block ? BLOCK : SECTOR, block);
    w->erased_to = a + (block ? BLOCK : SECTOR);
    s->flash.busy_until = at + cost;
    w->st_flash += cost;
}

static bool erase_left(const struct sim *s)
{
    return s->wr.erased_to < s->wr.erase_end && s->wr.erased_to < s->flash.size;
}

void sim_write_erase_ahead(struct sim *s, struct sim_wtime *wt)
{
    if (!wt->stub || !wt->erase_ahead || !erase_left(s) || s->flash.busy_until > wt->t)
        return;
    erase_next(s, wt->t);
    wt->ahead++;
}

/* Stub: erases what a write up to end needs, the CPU waiting for each erase. */
static void erase_for_write(struct sim *s, struct sim_wtime *wt, uint64_t end)
{
    if (wt->margin)
        end = (end / SECTOR + 1) * SECTOR;
    while (erase_left(s) && s->wr.erased_to < end) {
        if (s->flash.busy_until > wt->t)
            wt->t = s->flash.busy_until;
        erase_next(s, wt->t);
        wt->needed++;
    }
}

enum sim_werr sim_write_bytes(struct sim *s, uint32_t addr, const uint8_t *data, size_t n,
                              struct sim_wtime *wt)
{
    if (n == 0)
        return SIM_W_OK;
    if ((uint64_t)addr + n > sim_flash_limit(s))
        return SIM_W_BOUNDS;
    if (wt->stub) {
        erase_for_write(s, wt, (uint64_t)addr + n);
        if (s->flash.busy_until > wt->t) /* wait until the flash is idle */
            wt->t = s->flash.busy_until;
    }
    if (sim_fault_write_error(&s->faults, addr, (uint32_t)n)) {
        sim_log("fault write-error fired (0x%08x+0x%zx)", addr, n);
        return SIM_W_FAULT;
    }
    int64_t cost = sim_flash_program(&s->flash, addr, data, n);
    wt->t += cost;
    wt->programmed += n;
    if (wt->stub) {
        s->flash.busy_until = wt->t;
        s->wr.st_flash += cost;
    }
    return SIM_W_OK;
}

/* Stub: writes the 32 KiB output buffer. */
static enum sim_werr flush_out(struct sim *s, struct sim_wtime *wt)
{
    struct sim_write_op *w = &s->wr;
    if (w->olen == 0)
        return SIM_W_OK;
    enum sim_werr e = sim_write_bytes(s, w->offset + w->pos, w->obuf, w->olen, wt);
    if (e == SIM_W_OK)
        w->pos += w->olen;
    w->olen = 0;
    return e;
}

enum sim_werr sim_write_inflate(struct sim *s, const uint8_t *in, size_t n, struct sim_wtime *wt)
{
    struct sim_write_op *w = &s->wr;
    uint8_t direct[32768];
    bool staged = wt->stub && w->staged_out;
    if (!w->inflate_init)
        return SIM_W_INFLATE;
    w->zs.next_in = (Bytef *)(uintptr_t)in;
    w->zs.avail_in = (uInt)n;
    for (;;) {
        if (w->inflate_done) {
            if (w->zs.avail_in > 0)
                return SIM_W_TOO_MUCH; /* bytes after the end of the stream */
            return SIM_W_OK;
        }
        /* one inflate step: output until the buffer is full or the input is used up */
        if (w->zs.avail_in > 0)
            sim_write_erase_ahead(s, wt);
        uint8_t *out = staged ? w->obuf + w->olen : direct;
        size_t room = staged ? sizeof(w->obuf) - w->olen : sizeof(direct);
        w->zs.next_out = out;
        w->zs.avail_out = (uInt)room;
        int rc = inflate(&w->zs, Z_NO_FLUSH);
        size_t got = room - w->zs.avail_out;
        if (rc == Z_DATA_ERROR) {
            bool adler = w->zs.msg && strstr(w->zs.msg, "incorrect data check");
            sim_log("inflate error: %s", w->zs.msg ? w->zs.msg : "?");
            return adler ? SIM_W_ADLER : SIM_W_INFLATE;
        }
        if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR)
            return SIM_W_INFLATE;
        if (rc == Z_STREAM_END)
            w->inflate_done = true;
        if (got > 0) {
            if ((uint64_t)w->pos + (staged ? w->olen : 0) + got > w->total)
                return SIM_W_TOO_MUCH;
            if (staged) {
                w->olen += (uint32_t)got;
            } else {
                enum sim_werr e = sim_write_bytes(s, w->offset + w->pos, out, got, wt);
                if (e != SIM_W_OK)
                    return e;
                w->pos += (uint32_t)got;
            }
        }
        if (staged && (w->olen == sizeof(w->obuf) || w->inflate_done)) {
            enum sim_werr e = flush_out(s, wt);
            if (e != SIM_W_OK)
                return e;
        }
        if (w->zs.avail_in == 0 && w->zs.avail_out != 0)
            return SIM_W_OK;
        if (rc == Z_BUF_ERROR && got == 0)
            return SIM_W_OK;
    }
}
