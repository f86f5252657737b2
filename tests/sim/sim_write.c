/*
 * sim_write: the flash write operation opened by FLASH_BEGIN or
 * FLASH_DEFL_BEGIN, shared by the ROM and stub personas: data-block parsing
 * and checks, the stub's lazy erase (touched 4 KiB sectors, or 64 KiB blocks
 * when aligned and the rest of the announced size covers a whole block),
 * streaming zlib inflate, the write-error fault and address limits.
 * Personas decide what an error code looks like and when the host hears it.
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
    w->last_seq = -1;
    if (compressed) {
        memset(&w->zs, 0, sizeof(w->zs));
        if (inflateInit(&w->zs) != Z_OK)
            return -1;
        w->inflate_init = true;
    }
    return 0;
}

static int64_t lazy_erase(struct sim *s, uint64_t end)
{
    struct sim_write_op *w = &s->wr;
    uint64_t op_end = (uint64_t)w->offset + w->total;
    int64_t t = 0;
    while (w->erased_to < end && w->erased_to < s->flash.size) {
        uint32_t a = w->erased_to;
        if (a % BLOCK == 0 && op_end >= (uint64_t)a + BLOCK) {
            t += sim_flash_erase(&s->flash, a, BLOCK, true);
            w->erased_to = a + BLOCK;
        } else {
            t += sim_flash_erase(&s->flash, a, SECTOR, false);
            w->erased_to = a + SECTOR;
        }
        if (w->erased_to == 0) /* wrapped at 4 GiB */
            break;
    }
    return t;
}

enum sim_werr sim_write_bytes(struct sim *s, uint32_t addr, const uint8_t *data, size_t n,
                              bool lazy, int64_t *cost)
{
    if (n == 0)
        return SIM_W_OK;
    if ((uint64_t)addr + n > sim_flash_limit(s))
        return SIM_W_BOUNDS;
    if (sim_fault_write_error(&s->faults, addr, (uint32_t)n)) {
        sim_log("fault write-error fired (0x%08x+0x%zx)", addr, n);
        return SIM_W_FAULT;
    }
    if (lazy)
        *cost += lazy_erase(s, (uint64_t)addr + n);
    *cost += sim_flash_program(&s->flash, addr, data, n);
    return SIM_W_OK;
}

enum sim_werr sim_write_inflate(struct sim *s, const uint8_t *in, size_t n, bool lazy,
                                int64_t *cost)
{
    struct sim_write_op *w = &s->wr;
    uint8_t out[32768];
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
        w->zs.next_out = out;
        w->zs.avail_out = sizeof(out);
        int rc = inflate(&w->zs, Z_NO_FLUSH);
        size_t got = sizeof(out) - w->zs.avail_out;
        if (rc == Z_DATA_ERROR) {
            bool adler = w->zs.msg && strstr(w->zs.msg, "incorrect data check");
            sim_log("inflate error: %s", w->zs.msg ? w->zs.msg : "?");
            return adler ? SIM_W_ADLER : SIM_W_INFLATE;
        }
        if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR)
            return SIM_W_INFLATE;
        if (got > 0) {
            if ((uint64_t)w->pos + got > w->total)
                return SIM_W_TOO_MUCH;
            enum sim_werr e = sim_write_bytes(s, w->offset + w->pos, out, got, lazy, cost);
            if (e != SIM_W_OK)
                return e;
            w->pos += (uint32_t)got;
        }
        if (rc == Z_STREAM_END)
            w->inflate_done = true;
        if (w->zs.avail_in == 0 && w->zs.avail_out != 0)
            return SIM_W_OK;
        if (rc == Z_BUF_ERROR && got == 0)
            return SIM_W_OK;
    }
}
