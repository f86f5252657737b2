/*
 * esp_flash: writing, verifying, erasing and reading SPI flash through the
 * ROM loader or the flasher stub (PROTOCOL-ROM.md §5, §2.1).
 *
 * Owns: the safety checks before writing, the per-region write pipeline
 * (pad to 4 with 0xFF, optional bootloader header patch, ROM sector
 * alignment, raw or zlib-compressed transfer with per-block retry), the write
 * barrier, MD5 verification, erase and read.
 * Invariants:
 *   - the bytes verified are exactly the bytes written (padding included);
 *   - a retried block keeps its sequence number; a device-reported error is
 *     never retried, it fails at once with the flash address;
 *   - FLASH_END / FLASH_DEFL_END is never sent to a ROM (it would leave the
 *     loader); on the stub, END(1) is sent after EACH region as a barrier (the
 *     stub only answers once the last block is on flash), so the MD5 that
 *     follows sees the finished region;
 *   - a caller's precompressed zdata is used only when the bytes to write equal
 *     the region's data (no padding, patch or alignment added);
 *   - a region re-flashed by its changed sectors only (opts.diff, esp_diff.h) is
 *     always verified as a whole afterwards; whatever goes wrong short of a lost
 *     port or a cancel, the whole region is written as without the diff.
 */
#include "esp_loader_priv.h"

#include "esp_diff.h"
#include "esp_image.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <zlib.h>

#define MB (1024u * 1024u)

static size_t round_up(size_t v, size_t to)
{
    return (v + to - 1) / to * to;
}

static void region_name(const struct esp_region *r, size_t i, char *out, size_t cap)
{
    if (r->name && *r->name)
        snprintf(out, cap, "'%s' at 0x%X", r->name, r->offset);
    else
        snprintf(out, cap, "#%zu at 0x%X", i + 1, r->offset);
}

static void md5_buf(const uint8_t *data, size_t len, uint8_t out[16])
{
    unsigned int n = 16;
    static const uint8_t empty[1];
    EVP_Digest(len ? data : empty, len, out, &n, EVP_md5(), NULL);
}

static void md5_ff(size_t len, uint8_t out[16])
{
    uint8_t ff[4096];
    memset(ff, 0xFF, sizeof(ff));
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned int n = 16;
    if (!ctx) {
        memset(out, 0, 16);
        return;
    }
    EVP_DigestInit_ex(ctx, EVP_md5(), NULL);
    while (len) {
        size_t k = len < sizeof(ff) ? len : sizeof(ff);
        EVP_DigestUpdate(ctx, ff, k);
        len -= k;
    }
    EVP_DigestFinal_ex(ctx, out, &n);
    EVP_MD_CTX_free(ctx);
}

static void hex16(const uint8_t md5[16], char out[33])
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < 16; i++) {
        out[2 * i] = digits[md5[i] >> 4];
        out[2 * i + 1] = digits[md5[i] & 15];
    }
    out[32] = '\0';
}

static int unhex(uint8_t c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static void report(struct esp_loader *l, enum esp_stage stage, size_t idx, size_t n, uint32_t addr,
                   uint64_t done, uint64_t total)
{
    if (!l->cfg.progress)
        return;
    struct esp_progress p = {
        .stage = stage,
        .region_index = (unsigned)idx,
        .region_count = (unsigned)n,
        .address = addr,
        .done = done > total ? total : done,
        .total = total,
        .wire_bytes = l->stats.wire_tx,
    };
    l->cfg.progress(l->cfg.progress_ctx, &p);
}

/* The 5th FLASH_BEGIN / FLASH_DEFL_BEGIN word (encrypted write) goes only to the ROM
 * of chips whose ROM takes it (S2 and later; not ESP8266, not ESP32), as esptool up
 * to 5.1 and esp-serial-flasher do. A stub always gets four words: the legacy stubs
 * of the esptool 4.x generation refuse a 20-byte body (status 01 00), and we never
 * write encrypted (PROTOCOL-ROM.md §2.1). */
size_t esp_ldr_begin_words(const struct esp_loader *l)
{
    const struct esp_chip_desc *c = l->info.chip;
    bool five = !l->stub && c && c->chip != ESP_CHIP_ESP8266 && c->chip != ESP_CHIP_ESP32;
    return five ? 5 : 4;
}

static size_t write_block_size(const struct esp_loader *l)
{
    if (!l->stub)
        return ESP_ROM_WRITE_SIZE;
    return esp_ldr_is_usb_otg(l) ? ESP_OTG_WRITE_SIZE : ESP_STUB_WRITE_SIZE;
}

static int ensure_attached(struct esp_loader *l, struct esp_error *err)
{
    if (l->attached)
        return 0;
    enum esp_stage saved = l->stage;
    int rc = esp_loader_attach_flash(l, err);
    l->stage = saved;
    return rc;
}

/* Attaches the flash before an MD5 read, except on the ESP8266 ROM and in
 * secure download mode, where the MD5 is asked for without an attach. */
static int attach_for_md5(struct esp_loader *l, struct esp_error *err)
{
    if (esp_ldr_is_8266_rom(l) || l->info.secure_download_mode)
        return 0;
    return ensure_attached(l, err);
}

/* The start of a public operation: clears err, enters stage, needs a connection. */
static int begin_op(struct esp_loader *l, enum esp_stage stage, struct esp_error *err)
{
    esp_error_clear(err);
    l->stage = stage;
    return esp_ldr_need_connected(l, err);
}

/* The stub's barrier after a region (see the top comment): END(1) with op
 * FLASH_END or FLASH_DEFL_END; a failure is reported at addr. */
static int stub_end_barrier(struct esp_loader *l, uint8_t op, int timeout_ms, uint32_t addr,
                            struct esp_error *err)
{
    uint32_t flag = 1;
    int rc = esp_ldr_cmd_words(l, op, &flag, 1, 0, timeout_ms, NULL, err);
    if (rc < 0)
        esp_error_set_address(err, addr);
    return rc;
}

/* ---- ESP8266 ROM erase planning ---------------------------------------------- */

#define SECTORS_PER_BLOCK 16u

/* Sectors the ESP8266 ROM really erases for a FLASH_BEGIN meant for the n sectors
 * from sector s, sending esptool's erase size (esp_chip.h models the bug). */
static uint32_t rom8266_erased(uint32_t s, uint32_t n)
{
    uint32_t off = s * ESP_SECTOR;
    uint64_t bytes = (uint64_t)n * ESP_SECTOR;
    uint32_t size = bytes > UINT32_MAX ? UINT32_MAX & ~(ESP_SECTOR - 1) : (uint32_t)bytes;
    return esp8266_rom_erased_sectors(off, esp8266_rom_erase_size(off, size));
}

/*
 * How to erase the n sectors from sector s through the ESP8266 ROM. Returns the
 * sector count of the first FLASH_BEGIN (n: one is enough); the rest, if any, is
 * a second FLASH_BEGIN at the following 64 KiB boundary. The first may erase a
 * sector of the second, which is harmless since the second is erased (and
 * written) after it. *over = sectors erased past s+n even so (0: exact).
 *
 * An odd count that fits in the rest of its 64 KiB block always takes one extra
 * sector; across a boundary, splitting there is exact when the part after the
 * boundary has an even count (or more than two blocks).
 */
static uint32_t rom8266_plan(uint32_t s, uint32_t n, uint32_t *over)
{
    uint32_t got = rom8266_erased(s, n);
    *over = got > n ? got - n : 0;
    if (*over == 0)
        return n;
    for (uint32_t k = SECTORS_PER_BLOCK - s % SECTORS_PER_BLOCK; k < n; k += SECTORS_PER_BLOCK) {
        if (rom8266_erased(s, k) <= n && rom8266_erased(s + k, n - k) == n - k) {
            *over = 0;
            return k;
        }
    }
    return n;
}

/* ---- safety checks ---------------------------------------------------------- */

int esp_loader_check_regions(struct esp_loader *l, const struct esp_region *regions, size_t n,
                             const struct esp_flash_opts *opts, struct esp_error *err)
{
    l->stage = ESP_STAGE_PREPARE;
    int rc = esp_ldr_need_connected(l, err);
    if (rc < 0)
        return rc;
    struct esp_flash_opts defaults;
    if (!opts) {
        esp_flash_opts_init(&defaults);
        opts = &defaults;
    }
    const struct esp_chip_desc *chip = l->info.chip;
    bool esp8266 = chip->chip == ESP_CHIP_ESP8266;
    char name[96], name2[96];

    if (n > 0 && !regions)
        return esp_error_set(err, -EINVAL, l->stage, NULL, "no regions given");
    for (size_t i = 0; i < n; i++) {
        const struct esp_region *r = &regions[i];
        region_name(r, i, name, sizeof(name));
        if (r->len == 0 || !r->data)
            return esp_error_set(err, -EINVAL, l->stage, "check the firmware files",
                                 "region %s is empty", name);
        uint64_t end = (uint64_t)r->offset + round_up(r->len, 4);
        if (l->info.flash_size && end > l->info.flash_size) {
            esp_error_set(err, -EINVAL, l->stage,
                          "check the region offsets and that the firmware is built for this "
                          "board's flash size",
                          "region %s (%zu bytes) ends at 0x%llX, beyond the %u KB flash", name,
                          r->len, (unsigned long long)end, l->info.flash_size / 1024);
            esp_error_set_address(err, r->offset);
            return -EINVAL;
        }
        if (end > ESP_ROM_ADDR_LIMIT && !(l->stub && chip->stub_32bit_addr)) {
            esp_error_set(err, -EINVAL, l->stage,
                          "flash above 16 MB needs the flasher stub on a chip with 32-bit "
                          "addressing",
                          "region %s reaches beyond 16 MB, which the %s cannot address", name,
                          l->stub ? "stub on this chip" : "ROM loader");
            esp_error_set_address(err, r->offset);
            return -EINVAL;
        }
        if (l->info.secure_download_mode && l->info.flash_encryption) {
            esp_error_set(err, -EINVAL, l->stage,
                          "flash encryption is on: plaintext written in secure download mode "
                          "would not boot",
                          "refusing to write region %s as plaintext", name);
            return -EINVAL;
        }
        bool at_boot = r->offset == chip->bootloader_offset;
        if (r->data[0] == 0xE9) {
            struct esp_image_info img;
            struct esp_error ierr;
            esp_error_clear(&ierr);
            rc = esp_image_parse(r->data, r->len, esp8266, &img, &ierr);
            if (rc == 0 && !opts->skip_image_check) {
                esp_error_clear(&ierr);
                rc = esp_image_check_chip(&img, chip, l->info.revision, &ierr);
                if (rc < 0) {
                    esp_error_set(err, -EINVAL, l->stage,
                                  ierr.advice[0] ? ierr.advice
                                                 : "choose firmware built for this chip",
                                  "region %s: %s", name, ierr.message);
                    esp_error_set_address(err, r->offset);
                    return -EINVAL;
                }
            } else if (rc < 0 && at_boot) {
                esp_ldr_log(l, ESP_LOG_WARN,
                            "region %s is at the bootloader offset but is not a valid image "
                            "(%s)",
                            name, ierr.message);
            }
        }
    }

    /* Flash is erased per 4 KiB sector: two regions in one sector destroy each other. */
    for (size_t i = 0; i < n; i++) {
        const struct esp_region *a = &regions[i];
        uint64_t a0 = a->offset, a1 = a0 + round_up(a->len, 4);
        for (size_t j = i + 1; j < n; j++) {
            const struct esp_region *b = &regions[j];
            uint64_t b0 = b->offset, b1 = b0 + round_up(b->len, 4);
            bool bytes = a0 < b1 && b0 < a1;
            bool sectors = a0 / ESP_SECTOR * ESP_SECTOR < round_up(b1, ESP_SECTOR) &&
                           b0 / ESP_SECTOR * ESP_SECTOR < round_up(a1, ESP_SECTOR);
            if (bytes || sectors) {
                region_name(a, i, name, sizeof(name));
                region_name(b, j, name2, sizeof(name2));
                esp_error_set(err, -EINVAL, l->stage, "check the region offsets",
                              bytes ? "regions %s and %s overlap"
                                    : "regions %s and %s share a 4 KiB flash sector (writing one "
                                      "erases the other)",
                              name, name2);
                esp_error_set_address(err, b->offset);
                return -EINVAL;
            }
        }
    }
    return 0;
}

/* ---- MD5 ------------------------------------------------------------------------ */

static int flash_md5(struct esp_loader *l, uint32_t addr, uint32_t len, uint8_t out[16],
                     struct esp_error *err)
{
    if (esp_ldr_is_8266_rom(l))
        return esp_error_set(err, -ENOTSUP, l->stage, "use the flasher stub to verify",
                             "cannot verify on the ESP8266 ROM without the stub");
    if (l->info.secure_download_mode)
        return esp_error_set(err, -ENOTSUP, l->stage, NULL,
                             "flash MD5 is not available in secure download mode");
    if (!l->stub && !l->info.chip->rom_has_md5)
        return esp_error_set(err, -ENOTSUP, l->stage, NULL, "the %s ROM cannot compute a flash MD5",
                             l->info.chip->name);
    size_t expect = l->stub ? 16 : 32;
    uint32_t w[4] = {addr, len, 0, 0};
    struct esp_response r;
    int rc = esp_ldr_cmd_words(l, ESP_OP_SPI_FLASH_MD5, w, 4, expect,
                               esp_ldr_tmo_per_mb(l, ESP_TMO_MD5_PER_MB, len), &r, err);
    if (rc < 0) {
        esp_error_set_address(err, addr);
        return rc;
    }
    if (l->stub) {
        memcpy(out, r.data, 16);
        return 0;
    }
    for (int i = 0; i < 16; i++) {
        int hi = unhex(r.data[2 * i]), lo = unhex(r.data[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return esp_error_set(err, -EPROTO, l->stage, "check the cable; retry",
                                 "SPI_FLASH_MD5 reply is not hexadecimal");
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

int esp_loader_flash_md5(struct esp_loader *l, uint32_t offset, uint32_t len, uint8_t md5[16],
                         struct esp_error *err)
{
    int rc = begin_op(l, ESP_STAGE_VERIFY, err);
    if (rc < 0 || (rc = attach_for_md5(l, err)) < 0)
        return rc;
    return flash_md5(l, offset, len, md5, err);
}

/* Compares flash [addr, addr+len) with buf; -EBADMSG with both digests. */
static int verify_bytes(struct esp_loader *l, const char *name, uint32_t addr, const uint8_t *buf,
                        size_t len, struct esp_error *err)
{
    uint8_t dev[16], want[16], ff[16];
    int rc = flash_md5(l, addr, (uint32_t)len, dev, err);
    if (rc < 0)
        return rc;
    md5_buf(buf, len, want);
    if (memcmp(dev, want, 16) == 0)
        return 0;
    char hd[33], hw[33];
    hex16(dev, hd);
    hex16(want, hw);
    md5_ff(len, ff);
    bool empty = memcmp(dev, ff, 16) == 0;
    esp_error_set(err, -EBADMSG, ESP_STAGE_VERIFY,
                  empty ? "nothing was written: the flash may be write-protected, or the chip "
                          "was reset during the write; check power and retry"
                        : "the data on flash differs: check power supply and the flash chip; "
                          "retry at a lower baud rate",
                  "verify failed for region %s: flash MD5 %s, expected %s%s", name, hd, hw,
                  empty ? " (written region is empty (all 0xFF))" : "");
    esp_error_set_address(err, addr);
    return -EBADMSG;
}

/* ---- writing ------------------------------------------------------------------- */

/* Sends one *_DATA block, retrying the same seq on timeout or garbled reply. */
static int send_block(struct esp_loader *l, uint8_t op, uint32_t seq, const uint8_t *data,
                      size_t len, int timeout_ms, uint32_t addr, struct esp_error *err)
{
    int rc = 0;
    for (int attempt = 0; attempt < l->cfg.write_block_attempts; attempt++) {
        rc = esp_ldr_cmd_data(l, op, seq, data, len, timeout_ms, err);
        if (rc == 0)
            return 0;
        if ((rc != -ETIMEDOUT && rc != -EPROTO) || attempt + 1 >= l->cfg.write_block_attempts)
            break;
        l->stats.block_retries++;
        esp_ldr_log(l, ESP_LOG_DEBUG, "%s block %u at 0x%X: %s, resending", esp_op_to_string(op),
                    seq, addr, esp_errno_to_string(rc));
        int frc = esp_ldr_flush_input(l);
        if (frc == -ENODEV || frc == -ECANCELED)
            return esp_ldr_io_error(l, frc, esp_op_to_string(op), err);
        esp_error_clear(err);
    }
    if (err && err->code == rc) {
        size_t ml = strlen(err->message);
        snprintf(err->message + ml, sizeof(err->message) - ml, " (block %u at 0x%X)", seq, addr);
    }
    esp_error_set_address(err, addr);
    return rc;
}

/* What one write pass sends. */
struct wjob {
    size_t idx, n;
    const char *name;
    uint32_t region_offset;
    uint64_t region_len; /* for progress */
    uint32_t addr;       /* write address (sector aligned on ROM) */
    const uint8_t *buf;  /* bytes to write */
    size_t len;
    size_t head;   /* 0xFF bytes prepended for alignment */
    uint64_t base; /* region bytes before buf (a run of changed sectors), for progress */
};

static void report_write(struct esp_loader *l, const struct wjob *j, uint64_t written)
{
    uint64_t done = j->base + (written > j->head ? written - j->head : 0);
    report(l, ESP_STAGE_WRITE, j->idx, j->n, j->region_offset, done, j->region_len);
}

/* One FLASH_BEGIN and its FLASH_DATA blocks for j->buf[from, from+len). */
static int write_raw_part(struct esp_loader *l, const struct wjob *j, size_t from, size_t len,
                          uint32_t erase, struct esp_error *err)
{
    size_t block = write_block_size(l);
    uint32_t addr = j->addr + (uint32_t)from;
    uint32_t nblocks = (uint32_t)((len + block - 1) / block);
    uint32_t w[5] = {erase, nblocks, (uint32_t)block, addr, 0};
    int tmo = l->stub ? esp_ldr_tmo(l, ESP_TMO_DEFAULT)
                      : esp_ldr_tmo_per_mb(l, ESP_TMO_ERASE_PER_MB, len);
    int rc = esp_ldr_cmd_words(l, ESP_OP_FLASH_BEGIN, w, esp_ldr_begin_words(l), 0, tmo, NULL, err);
    if (rc < 0) {
        esp_error_set_address(err, addr);
        return rc;
    }
    uint8_t *tmp = malloc(block);
    if (!tmp)
        return esp_error_set(err, -ENOMEM, l->stage, NULL, "out of memory");
    for (uint32_t seq = 0; seq < nblocks; seq++) {
        size_t off = (size_t)seq * block;
        size_t k = len - off < block ? len - off : block;
        memcpy(tmp, j->buf + from + off, k);
        memset(tmp + k, 0xFF, block - k);
        rc = send_block(l, ESP_OP_FLASH_DATA, seq, tmp, block, esp_ldr_tmo(l, ESP_TMO_DEFAULT),
                        addr + (uint32_t)off, err);
        if (rc < 0)
            break;
        report_write(l, j, from + off + k);
    }
    free(tmp);
    return rc;
}

static int write_raw(struct esp_loader *l, const struct wjob *j, struct esp_error *err)
{
    int rc;
    if (esp_ldr_is_8266_rom(l)) {
        /* j->addr is sector aligned on the ROM. Split where that makes the erase
         * exact; what still spills over was warned about by esp_loader_flash. */
        uint32_t s = j->addr / ESP_SECTOR;
        uint32_t n = (uint32_t)((j->len + ESP_SECTOR - 1) / ESP_SECTOR), over;
        uint32_t k = rom8266_plan(s, n, &over);
        size_t first = k < n ? (size_t)k * ESP_SECTOR : j->len;
        rc = write_raw_part(l, j, 0, first, esp8266_rom_erase_size(j->addr, (uint32_t)first), err);
        if (rc == 0 && first < j->len) {
            esp_ldr_log(l, ESP_LOG_DEBUG,
                        "ESP8266 ROM: region %s written as two parts (split at 0x%X) so the "
                        "erase is exact",
                        j->name, j->addr + (uint32_t)first);
            uint32_t addr2 = j->addr + (uint32_t)first;
            rc = write_raw_part(l, j, first, j->len - first,
                                esp8266_rom_erase_size(addr2, (uint32_t)(j->len - first)), err);
        }
    } else {
        rc = write_raw_part(l, j, 0, j->len, (uint32_t)j->len, err);
    }
    if (rc < 0)
        return rc;
    if (l->stub)
        rc = stub_end_barrier(l, ESP_OP_FLASH_END, esp_ldr_tmo(l, ESP_TMO_DEFAULT), j->addr, err);
    return rc;
}

/* Inflates the stream chunk by chunk to learn how many bytes each chunk yields. */
static int inflate_chunks(const uint8_t *z, size_t zlen, size_t chunk, size_t expect, uint32_t *out,
                          size_t nchunks)
{
    z_stream s;
    memset(&s, 0, sizeof(s));
    if (inflateInit(&s) != Z_OK)
        return -ENOMEM;
    uint8_t *scratch = malloc(65536);
    if (!scratch) {
        inflateEnd(&s);
        return -ENOMEM;
    }
    int rc = 0;
    bool ended = false;
    uint64_t total = 0;
    for (size_t k = 0; k < nchunks && rc == 0; k++) {
        size_t off = k * chunk;
        if (ended) {
            rc = -EINVAL; /* data after the end of the stream */
            break;
        }
        s.next_in = (Bytef *)(uintptr_t)(z + off);
        s.avail_in = (uInt)(zlen - off < chunk ? zlen - off : chunk);
        uint64_t produced = 0;
        for (;;) {
            s.next_out = scratch;
            s.avail_out = 65536;
            int zr = inflate(&s, Z_NO_FLUSH);
            produced += 65536 - s.avail_out;
            if (zr == Z_STREAM_END) {
                ended = true;
                if (s.avail_in)
                    rc = -EINVAL;
                break;
            }
            if (zr != Z_OK && zr != Z_BUF_ERROR) {
                rc = -EINVAL;
                break;
            }
            if (s.avail_in == 0 && s.avail_out != 0)
                break;
            if (zr == Z_BUF_ERROR && s.avail_in == 0)
                break;
        }
        out[k] = (uint32_t)produced;
        total += produced;
    }
    if (rc == 0 && (!ended || total != expect))
        rc = -EINVAL;
    free(scratch);
    inflateEnd(&s);
    return rc;
}

/* Stub: ACK-then-write, so chunk k's timeout covers chunk k-1's work (§3.5, §5.5). */
static int stub_chunk_timeout(const struct esp_loader *l, uint64_t prev_uncompressed)
{
    if (prev_uncompressed == 0)
        return esp_ldr_tmo(l, ESP_TMO_DEFAULT);
    uint64_t erase = ((prev_uncompressed + 32767) / 32768 + 1) * 65536;
    return esp_ldr_tmo_per_mb(l, ESP_TMO_ERASE_WRITE_PER_MB, prev_uncompressed + erase);
}

static int write_compressed(struct esp_loader *l, const struct wjob *j, const uint8_t *z,
                            size_t zlen, struct esp_error *err)
{
    size_t block = write_block_size(l);
    size_t nchunks = (zlen + block - 1) / block;
    uint32_t *outs = calloc(nchunks ? nchunks : 1, sizeof(*outs));
    if (!outs)
        return esp_error_set(err, -ENOMEM, l->stage, NULL, "out of memory");
    int rc = inflate_chunks(z, zlen, block, j->len, outs, nchunks);
    if (rc < 0) {
        free(outs);
        esp_error_set(err, rc, ESP_STAGE_PREPARE, "recompress the firmware (or drop zdata)",
                      "compressed data of region %s is not a zlib stream of its %zu bytes", j->name,
                      j->len);
        return rc;
    }

    uint32_t size = l->stub ? (uint32_t)j->len : (uint32_t)round_up(j->len, ESP_ROM_WRITE_SIZE);
    uint32_t w[5] = {size, (uint32_t)nchunks, (uint32_t)block, j->addr, 0};
    int tmo = l->stub ? esp_ldr_tmo(l, ESP_TMO_DEFAULT)
                      : esp_ldr_tmo_per_mb(l, ESP_TMO_ERASE_PER_MB, size);
    rc =
        esp_ldr_cmd_words(l, ESP_OP_FLASH_DEFL_BEGIN, w, esp_ldr_begin_words(l), 0, tmo, NULL, err);
    if (rc < 0) {
        free(outs);
        esp_error_set_address(err, j->addr);
        return rc;
    }
    uint64_t written = 0, prev = 0;
    for (size_t k = 0; k < nchunks; k++) {
        size_t off = k * block;
        size_t clen = zlen - off < block ? zlen - off : block;
        tmo = l->stub ? stub_chunk_timeout(l, prev)
                      : esp_ldr_tmo_per_mb(l, ESP_TMO_ERASE_WRITE_PER_MB, outs[k]);
        rc = send_block(l, ESP_OP_FLASH_DEFL_DATA, (uint32_t)k, z + off, clen, tmo,
                        j->addr + (uint32_t)written, err);
        if (rc == -EIO && l->stub && k > 0) {
            /* The stub writes a chunk while the next arrives: the failure belongs
             * to the previous chunk's data. */
            esp_error_set_address(err, j->addr + (uint32_t)(written - prev));
        }
        if (rc < 0)
            break;
        prev = outs[k];
        written += outs[k];
        report_write(l, j, written);
    }
    free(outs);
    if (rc < 0)
        return rc;
    if (l->stub)
        rc = stub_end_barrier(l, ESP_OP_FLASH_DEFL_END, stub_chunk_timeout(l, prev),
                              j->addr + (uint32_t)(written - prev), err);
    return rc;
}

/* ---- re-flash only what changed (esp_diff.h) ---------------------------------- */

struct diff_ctx {
    struct esp_loader *l;
    uint32_t addr; /* region start on flash */
};

static int diff_md5(void *ctx, uint32_t off, uint32_t len, uint8_t md5[16], struct esp_error *err)
{
    struct diff_ctx *d = ctx;
    return flash_md5(d->l, d->addr + off, len, md5, err);
}

/* The diff needs the stub's MD5 (the ESP8266 ROM has none, an ESP32-family ROM erases
 * each write up front and is slow at everything), plaintext on flash (with flash
 * encryption the chip hashes the ciphertext), a region on a sector boundary, and a
 * flash that was not just erased. */
static bool diff_applies(const struct esp_loader *l, const struct esp_flash_opts *opts,
                         const struct wjob *j)
{
    return opts->diff && l->stub && !opts->erase_all && !l->info.secure_download_mode &&
           !l->info.flash_encryption && j->head == 0 && j->addr % ESP_SECTOR == 0;
}

/* Region bytes (padding excluded) in no run: what the diff did not send. */
static uint64_t diff_skipped(const struct esp_diff_result *plan, const struct wjob *j)
{
    uint64_t region = j->region_len, in_runs = 0;
    for (size_t i = 0; i < plan->n_runs; i++) {
        uint64_t a = plan->runs[i].off, b = a + plan->runs[i].len;
        if (b > region)
            b = region;
        in_runs += b > a ? b - a : 0;
    }
    return region - in_runs;
}

/*
 * Writes only the sectors of j that differ from the flash, then verifies the whole
 * region by MD5. 1 done (written or already there, verified), 0 write the whole
 * region instead (the reason is logged), <0 an error that ends the job.
 */
static int write_changed(struct esp_loader *l, const struct wjob *j, const uint8_t *flash_md5_hint,
                         bool compress, struct esp_error *err)
{
    struct diff_ctx dc = {.l = l, .addr = j->addr};
    struct esp_diff_result plan;
    int64_t t0 = esp_ldr_now_ms();
    l->stage = ESP_STAGE_WRITE;
    int rc = esp_diff_plan(j->buf, j->len, flash_md5_hint, 0, diff_md5, &dc, &plan, err);
    if (rc == -ENODEV || rc == -ECANCELED)
        return rc;
    if (rc < 0) {
        esp_ldr_log(l, ESP_LOG_WARN, "region %s: comparing it with the flash failed (%s): %s",
                    j->name, err && err->message[0] ? err->message : esp_errno_to_string(rc),
                    "writing all of it");
        esp_error_clear(err);
        int frc = esp_ldr_flush_input(l); /* a late MD5 reply must not answer the write */
        if (frc == -ENODEV || frc == -ECANCELED)
            return esp_ldr_io_error(l, frc, "SPI_FLASH_MD5", err);
        return 0;
    }
    if (plan.verdict == ESP_DIFF_FULL) {
        esp_ldr_log(l, ESP_LOG_INFO, "region %s: %s (%u MD5 request%s): writing all of it", j->name,
                    plan.why, plan.md5_calls, plan.md5_calls == 1 ? "" : "s");
        return 0;
    }

    report(l, ESP_STAGE_WRITE, j->idx, j->n, j->region_offset, 0, j->region_len);
    uint64_t zbytes = 0;
    for (size_t i = 0; i < plan.n_runs; i++) {
        struct wjob rj = *j;
        rj.addr = j->addr + plan.runs[i].off;
        rj.buf = j->buf + plan.runs[i].off;
        rj.len = plan.runs[i].len;
        rj.base = plan.runs[i].off;
        if (compress) {
            uint8_t *z = NULL;
            size_t zlen = 0;
            rc = esp_region_compress(rj.buf, rj.len, &z, &zlen);
            if (rc < 0) {
                esp_diff_result_free(&plan);
                return esp_error_set(err, rc, l->stage, NULL, "cannot compress region %s", j->name);
            }
            rc = write_compressed(l, &rj, z, zlen, err);
            zbytes += zlen;
            free(z);
        } else {
            rc = write_raw(l, &rj, err);
        }
        if (rc < 0) {
            esp_diff_result_free(&plan);
            return rc;
        }
    }
    report(l, ESP_STAGE_WRITE, j->idx, j->n, j->region_offset, j->region_len, j->region_len);

    l->stage = ESP_STAGE_VERIFY;
    report(l, ESP_STAGE_VERIFY, j->idx, j->n, j->region_offset, 0, j->region_len);
    if (plan.verdict == ESP_DIFF_SECTORS) {
        rc = verify_bytes(l, j->name, j->addr, j->buf, j->len, err);
        if (rc == -ENODEV || rc == -ECANCELED) {
            esp_diff_result_free(&plan);
            return rc;
        }
        if (rc < 0) {
            esp_ldr_log(l, ESP_LOG_WARN,
                        "region %s: after writing the changed sectors: %s: writing all of it",
                        j->name, err && err->message[0] ? err->message : esp_errno_to_string(rc));
            esp_error_clear(err);
            esp_diff_result_free(&plan);
            return 0;
        }
    }
    report(l, ESP_STAGE_VERIFY, j->idx, j->n, j->region_offset, j->region_len, j->region_len);

    uint64_t skipped = diff_skipped(&plan, j);
    l->stats.skipped_bytes += skipped;
    long long ms = (long long)(esp_ldr_now_ms() - t0);
    if (plan.verdict == ESP_DIFF_SAME)
        esp_ldr_log(l, ESP_LOG_INFO,
                    "region %s is already on flash (MD5 match): nothing written, %llu bytes "
                    "skipped",
                    j->name, (unsigned long long)skipped);
    else
        esp_ldr_log(l, ESP_LOG_INFO,
                    "region %s: wrote only the %u changed sector%s (%llu bytes, %llu compressed, "
                    "%zu run%s) and verified the whole region in %lld ms; %llu bytes already on "
                    "flash skipped (%u MD5 requests)",
                    j->name, plan.sectors, plan.sectors == 1 ? "" : "s",
                    (unsigned long long)plan.diff_bytes, (unsigned long long)zbytes, plan.n_runs,
                    plan.n_runs == 1 ? "" : "s", ms, (unsigned long long)skipped, plan.md5_calls);
    esp_diff_result_free(&plan);
    return 1;
}

static int flash_one(struct esp_loader *l, const struct esp_region *r, size_t idx, size_t n,
                     const struct esp_flash_opts *opts, struct esp_error *err)
{
    const struct esp_chip_desc *chip = l->info.chip;
    char name[96];
    region_name(r, idx, name, sizeof(name));
    l->stage = ESP_STAGE_PREPARE;

    size_t len4 = round_up(r->len, 4);
    size_t head = 0;
    uint32_t addr = r->offset;
    if (!l->stub && (addr % ESP_SECTOR)) {
        head = addr % ESP_SECTOR; /* ROM writes start on a sector boundary */
        addr -= (uint32_t)head;
    } else if (l->stub && (addr % ESP_SECTOR)) {
        esp_ldr_log(l, ESP_LOG_WARN,
                    "region %s is not sector aligned: the rest of sector 0x%X is erased", name,
                    addr / ESP_SECTOR * ESP_SECTOR);
    }
    uint8_t *buf = malloc(head + len4);
    if (!buf)
        return esp_error_set(err, -ENOMEM, l->stage, NULL, "out of memory for region %s", name);
    memset(buf, 0xFF, head);
    memcpy(buf + head, r->data, r->len);
    memset(buf + head + r->len, 0xFF, len4 - r->len);

    bool patched = false;
    if (r->offset == chip->bootloader_offset && r->data[0] == 0xE9 &&
        (opts->flash_mode != -1 || opts->flash_size_code != -1 || opts->flash_freq_code != -1)) {
        if (l->info.secure_download_mode || l->info.secure_boot) {
            esp_ldr_log(l, ESP_LOG_WARN, "not changing flash parameters of %s: %s", name,
                        l->info.secure_boot ? "secure boot is on" : "secure download mode");
        } else {
            int prc = esp_image_patch_header(buf + head, len4, chip->chip == ESP_CHIP_ESP8266,
                                             opts->flash_mode, opts->flash_size_code,
                                             opts->flash_freq_code);
            if (prc > 0) {
                patched = true;
                esp_ldr_log(l, ESP_LOG_INFO, "flash parameters set in the header of %s", name);
            } else if (prc < 0) {
                esp_ldr_log(l, ESP_LOG_WARN,
                            "region %s does not parse as an image: flash parameters unchanged",
                            name);
            }
        }
    }

    struct wjob j = {
        .idx = idx,
        .n = n,
        .name = name,
        .region_offset = r->offset,
        .region_len = r->len,
        .addr = addr,
        .buf = buf,
        .len = head + len4,
        .head = head,
    };
    bool compress = opts->compress && !l->info.secure_download_mode &&
                    (l->stub || (chip->rom_has_compress && chip->chip != ESP_CHIP_ESP8266));
    int rc = 0;
    if (diff_applies(l, opts, &j)) {
        rc = write_changed(l, &j, r->flash_md5, compress, err);
        if (rc != 0) {
            free(buf);
            return rc < 0 ? rc : 0;
        }
        l->stage = ESP_STAGE_PREPARE;
    }
    uint8_t *z = NULL;
    size_t zlen = 0;
    const uint8_t *zuse = NULL;
    if (compress) {
        bool same = head == 0 && len4 == r->len && !patched;
        if (same && r->zdata && r->zlen) {
            zuse = r->zdata;
            zlen = r->zlen;
        } else {
            rc = esp_region_compress(j.buf, j.len, &z, &zlen);
            if (rc < 0) {
                free(buf);
                return esp_error_set(err, rc, l->stage, NULL, "cannot compress region %s", name);
            }
            zuse = z;
        }
    }

    l->stage = ESP_STAGE_WRITE;
    report(l, ESP_STAGE_WRITE, idx, n, r->offset, 0, r->len);
    int64_t t0 = esp_ldr_now_ms();
    if (compress)
        rc = write_compressed(l, &j, zuse, zlen, err);
    else
        rc = write_raw(l, &j, err);
    free(z);
    if (rc < 0) {
        free(buf);
        return rc;
    }
    report(l, ESP_STAGE_WRITE, idx, n, r->offset, r->len, r->len);
    int64_t ms = esp_ldr_now_ms() - t0;
    if (compress)
        esp_ldr_log(l, ESP_LOG_INFO, "wrote %zu bytes (%zu compressed) at 0x%08X in %lld ms", j.len,
                    zlen, addr, (long long)ms);
    else
        esp_ldr_log(l, ESP_LOG_INFO, "wrote %zu bytes at 0x%08X in %lld ms", j.len, addr,
                    (long long)ms);

    if (opts->verify) {
        l->stage = ESP_STAGE_VERIFY;
        if (esp_ldr_is_8266_rom(l) || l->info.secure_download_mode) {
            if (!l->warned_no_verify) {
                l->warned_no_verify = true;
                esp_ldr_log(l, ESP_LOG_WARN, "%s",
                            l->info.secure_download_mode
                                ? "cannot verify in secure download mode"
                                : "cannot verify on the ESP8266 ROM without the stub");
            }
        } else {
            report(l, ESP_STAGE_VERIFY, idx, n, r->offset, 0, r->len);
            rc = verify_bytes(l, name, addr, buf, j.len, err);
            if (rc < 0) {
                free(buf);
                return rc;
            }
            report(l, ESP_STAGE_VERIFY, idx, n, r->offset, r->len, r->len);
            esp_ldr_log(l, ESP_LOG_INFO, "verified region %s", name);
        }
    }
    free(buf);
    return 0;
}

/* Sector span [*s0, *s1) the ROM write of r erases at least (its start is moved
 * down to a sector boundary). */
static void rom_sectors(const struct esp_region *r, uint32_t *s0, uint32_t *s1)
{
    uint64_t end = (uint64_t)r->offset + round_up(r->len, 4);
    *s0 = r->offset / ESP_SECTOR;
    *s1 = (uint32_t)((end + ESP_SECTOR - 1) / ESP_SECTOR);
}

/* True when sector sec holds data of a region other than regions[skip]. */
static bool sector_in_other_region(const struct esp_region *regions, size_t n, size_t skip,
                                   uint32_t sec)
{
    for (size_t k = 0; k < n; k++) {
        uint32_t b0, b1;
        rom_sectors(&regions[k], &b0, &b1);
        if (k != skip && sec >= b0 && sec < b1)
            return true;
    }
    return false;
}

/* ESP8266 ROM: warns about every run of sectors the erase bug takes that no
 * region rewrites (regions are written in ascending order, so a sector taken
 * from a following region is written again afterwards). */
static void warn_rom8266_overerase(struct esp_loader *l, const struct esp_region *regions, size_t n)
{
    char name[96];
    for (size_t i = 0; i < n; i++) {
        uint32_t s0, s1, over;
        rom_sectors(&regions[i], &s0, &s1);
        rom8266_plan(s0, s1 - s0, &over);
        uint64_t end = (uint64_t)s1 + over;
        for (uint64_t sec = s1; sec < end; sec++) {
            if (sector_in_other_region(regions, n, i, (uint32_t)sec))
                continue;
            uint64_t last = sec;
            while (last + 1 < end && !sector_in_other_region(regions, n, i, (uint32_t)last + 1))
                last++;
            uint64_t from = sec * ESP_SECTOR, to = (last + 1) * ESP_SECTOR;
            region_name(&regions[i], i, name, sizeof(name));
            esp_ldr_log(l, ESP_LOG_WARN,
                        "writing region %s: ESP8266 ROM also erases 0x%llX..0x%llX; use the stub "
                        "to avoid it%s",
                        name, (unsigned long long)from, (unsigned long long)to - 1,
                        l->info.flash_size && to > l->info.flash_size
                            ? " (past the end of flash: may wrap to the start)"
                            : "");
            sec = last;
        }
    }
}

int esp_loader_flash(struct esp_loader *l, const struct esp_region *regions, size_t n,
                     const struct esp_flash_opts *opts, struct esp_error *err)
{
    int rc = begin_op(l, ESP_STAGE_PREPARE, err);
    if (rc < 0)
        return rc;
    struct esp_flash_opts defaults;
    if (!opts) {
        esp_flash_opts_init(&defaults);
        opts = &defaults;
    }
    rc = ensure_attached(l, err);
    if (rc < 0)
        return rc;
    rc = esp_loader_check_regions(l, regions, n, opts, err);
    if (rc < 0)
        return rc;
    if (opts->erase_all) {
        rc = esp_loader_erase_all(l, err);
        if (rc < 0)
            return rc;
    }
    /* The ESP8266 ROM's erase bug can take the sector after a region: write in
     * ascending order so a later region rewrites it. Results keep the caller's index. */
    size_t *order = malloc((n ? n : 1) * sizeof(*order));
    if (!order)
        return esp_error_set(err, -ENOMEM, l->stage, NULL, "out of memory");
    for (size_t i = 0; i < n; i++)
        order[i] = i;
    if (esp_ldr_is_8266_rom(l)) {
        for (size_t i = 1; i < n; i++) { /* insertion sort: stable, n is small */
            size_t v = order[i], k = i;
            for (; k > 0 && regions[order[k - 1]].offset > regions[v].offset; k--)
                order[k] = order[k - 1];
            order[k] = v;
        }
        warn_rom8266_overerase(l, regions, n);
    }
    for (size_t i = 0; i < n; i++) {
        rc = flash_one(l, &regions[order[i]], order[i], n, opts, err);
        if (rc < 0)
            break;
    }
    free(order);
    return rc < 0 ? rc : 0;
}

int esp_loader_verify(struct esp_loader *l, const struct esp_region *regions, size_t n,
                      struct esp_error *err)
{
    int rc = begin_op(l, ESP_STAGE_VERIFY, err);
    if (rc < 0 || (rc = attach_for_md5(l, err)) < 0)
        return rc;
    char name[96];
    for (size_t i = 0; i < n; i++) {
        const struct esp_region *r = &regions[i];
        region_name(r, i, name, sizeof(name));
        if (!r->data || !r->len)
            return esp_error_set(err, -EINVAL, l->stage, NULL, "region %s is empty", name);
        size_t len4 = round_up(r->len, 4);
        uint8_t *buf = malloc(len4);
        if (!buf)
            return esp_error_set(err, -ENOMEM, l->stage, NULL, "out of memory");
        memcpy(buf, r->data, r->len);
        memset(buf + r->len, 0xFF, len4 - r->len);
        report(l, ESP_STAGE_VERIFY, i, n, r->offset, 0, r->len);
        rc = verify_bytes(l, name, r->offset, buf, len4, err);
        free(buf);
        if (rc < 0)
            return rc;
        report(l, ESP_STAGE_VERIFY, i, n, r->offset, r->len, r->len);
    }
    return 0;
}

/* ---- erase ------------------------------------------------------------------ */

int esp_loader_erase_all(struct esp_loader *l, struct esp_error *err)
{
    if (err && err->code == 0)
        esp_error_clear(err);
    l->stage = ESP_STAGE_ERASE;
    int rc = esp_ldr_need_connected(l, err);
    if (rc < 0)
        return rc;
    if (!l->stub) {
        /* Not a device failure: the ROM loader has no chip-erase command (0xD0 is the stub's). */
        char advice[sizeof(err->advice)];
        if (l->info.flash_size)
            snprintf(advice, sizeof(advice),
                     "use the flasher stub (stub files for this chip), or erase the range "
                     "0x0+0x%X through the ROM loader (erase region, slower)",
                     l->info.flash_size);
        else
            snprintf(advice, sizeof(advice),
                     "use the flasher stub (stub files for this chip), or erase a range through "
                     "the ROM loader (erase region, slower)");
        return esp_error_set(err, -ENOTSUP, l->stage, advice,
                             "erasing the whole flash needs the flasher stub: the ROM loader "
                             "has no chip erase");
    }
    rc = ensure_attached(l, err);
    if (rc < 0)
        return rc;
    esp_ldr_log(l, ESP_LOG_INFO, "erasing the whole flash");
    rc = esp_ldr_cmd_words(l, ESP_OP_ERASE_FLASH, NULL, 0, 0, esp_ldr_tmo(l, ESP_TMO_CHIP_ERASE),
                           NULL, err);
    if (rc >= 0)
        esp_ldr_log(l, ESP_LOG_INFO, "flash erased");
    return rc;
}

int esp_loader_erase_region(struct esp_loader *l, uint32_t offset, uint32_t len,
                            struct esp_error *err)
{
    int rc = begin_op(l, ESP_STAGE_ERASE, err);
    if (rc < 0)
        return rc;
    if (offset % ESP_SECTOR || len % ESP_SECTOR || len == 0)
        return esp_error_set(err, -EINVAL, l->stage, NULL,
                             "erase region 0x%X+0x%X is not a non-empty multiple of 4096 bytes",
                             offset, len);
    if (l->info.flash_size && (uint64_t)offset + len > l->info.flash_size)
        return esp_error_set(err, -EINVAL, l->stage, NULL,
                             "erase region 0x%X+0x%X is beyond the %u KB flash", offset, len,
                             l->info.flash_size / 1024);
    /* The ESP8266 ROM's erase bug: split where that makes the erase exact, else
     * refuse before touching the board (erasing a sector nobody named loses data). */
    uint32_t first = len;
    if (esp_ldr_is_8266_rom(l)) {
        uint32_t s = offset / ESP_SECTOR, n = len / ESP_SECTOR, over;
        first = rom8266_plan(s, n, &over) * ESP_SECTOR;
        if (over) {
            uint64_t from = (uint64_t)offset + len, to = from + (uint64_t)over * ESP_SECTOR;
            const char *past = l->info.flash_size && to > l->info.flash_size
                                   ? " (past the end of flash: may wrap to the start)"
                                   : "";
            if (!l->cfg.allow_rom_overerase) {
                l->stage = ESP_STAGE_PREPARE;
                esp_error_set(err, -EINVAL, l->stage,
                              "the flasher stub erases exact ranges; through the ROM, erase an "
                              "even number of sectors",
                              "the ESP8266 ROM cannot erase exactly 0x%X..0x%llX (its erase bug "
                              "would also erase 0x%llX..0x%llX%s); use the flasher stub (omit "
                              "--no-stub) or erase an even number of sectors",
                              offset, (unsigned long long)from - 1, (unsigned long long)from,
                              (unsigned long long)to - 1, past);
                esp_error_set_address(err, offset);
                return -EINVAL;
            }
            esp_ldr_log(l, ESP_LOG_WARN,
                        "erasing 0x%X..0x%llX: ESP8266 ROM also erases 0x%llX..0x%llX; use the "
                        "stub to avoid it%s",
                        offset, (unsigned long long)from - 1, (unsigned long long)from,
                        (unsigned long long)to - 1, past);
        }
    }
    rc = ensure_attached(l, err);
    if (rc < 0)
        return rc;
    int tmo = esp_ldr_tmo_per_mb(l, ESP_TMO_ERASE_PER_MB, len);
    if (l->stub) {
        uint32_t w[2] = {offset, len};
        rc = esp_ldr_cmd_words(l, ESP_OP_ERASE_REGION, w, 2, 0, tmo, NULL, err);
    } else if (esp_ldr_is_8266_rom(l)) {
        /* A bare FLASH_BEGIN erases; one or two of them (see rom8266_plan). */
        uint64_t end = (uint64_t)offset + len;
        for (uint64_t at = offset, part = first; rc >= 0 && at < end; at += part, part = end - at) {
            uint32_t w[4] = {esp8266_rom_erase_size((uint32_t)at, (uint32_t)part),
                             (uint32_t)((part + ESP_ROM_WRITE_SIZE - 1) / ESP_ROM_WRITE_SIZE),
                             ESP_ROM_WRITE_SIZE, (uint32_t)at};
            rc = esp_ldr_cmd_words(l, ESP_OP_FLASH_BEGIN, w, 4, 0,
                                   esp_ldr_tmo_per_mb(l, ESP_TMO_ERASE_PER_MB, part), NULL, err);
            if (rc < 0)
                esp_error_set_address(err, (uint32_t)at);
        }
        if (rc < 0)
            return rc;
    } else {
        uint32_t size = l->info.flash_size ? l->info.flash_size : 16 * MB;
        rc = esp_ldr_spi_set_params(l, size, err);
        if (rc < 0)
            return rc;
        uint32_t w[5] = {len, (len + ESP_ROM_WRITE_SIZE - 1) / ESP_ROM_WRITE_SIZE,
                         ESP_ROM_WRITE_SIZE, offset, 0};
        rc = esp_ldr_cmd_words(l, ESP_OP_FLASH_BEGIN, w, esp_ldr_begin_words(l), 0, tmo, NULL, err);
    }
    if (rc < 0) {
        esp_error_set_address(err, offset);
        return rc;
    }
    esp_ldr_log(l, ESP_LOG_INFO, "erased 0x%X bytes at 0x%08X", len, offset);
    return 0;
}

/* ---- read --------------------------------------------------------------------- */

#define READ_PACKET 0x1000u
#define READ_IN_FLIGHT 64u

/*
 * Sends READ_FLASH and waits for its reply. Returns 0 after the reply, or 1 when
 * the reply was lost or garbled but the stub is already streaming: its first
 * data frame (packet size, no response header) stands for the OK and is left
 * in l->dec.frame. When nothing at all comes back, the input is drained, the
 * stub re-synced and READ_FLASH sent once more.
 */
static int read_flash_begin(struct esp_loader *l, uint32_t offset, uint32_t len,
                            struct esp_error *err)
{
    uint32_t w[4] = {offset, len, READ_PACKET, READ_IN_FLIGHT};
    size_t first = len < READ_PACKET ? len : READ_PACKET;
    for (int attempt = 0;; attempt++) {
        int plen = esp_cmd_build_words(ESP_OP_READ_FLASH, w, 4, l->pkt, ESP_PKT_MAX);
        if (plen < 0)
            return esp_error_set(err, plen, l->stage, NULL, "cannot build READ_FLASH request");
        int rc = esp_ldr_send_raw(l, l->pkt, (size_t)plen, err);
        if (rc < 0)
            return rc;
        struct esp_response r;
        rc = esp_ldr_recv_or_data(l, ESP_OP_READ_FLASH, 0, first, esp_ldr_tmo(l, ESP_TMO_DEFAULT),
                                  &r, err);
        if (rc == 1) {
            esp_ldr_log(l, ESP_LOG_DEBUG,
                        "READ_FLASH reply lost, but flash data is arriving: taken as the OK");
            return 1;
        }
        if (rc == 0 || (rc != -ETIMEDOUT && rc != -EPROTO) || attempt > 0)
            return rc;
        esp_ldr_log(l, ESP_LOG_DEBUG, "READ_FLASH: %s; re-syncing the stub and asking again",
                    esp_errno_to_string(rc));
        int src = esp_ldr_resync(l, 3);
        if (src == -ENODEV || src == -ECANCELED)
            return esp_ldr_io_error(l, src, "READ_FLASH", err);
        if (src <= 0)
            return rc; /* the stub does not answer: keep the original error */
        esp_error_clear(err);
    }
}

static int read_stub(struct esp_loader *l, uint32_t offset, uint32_t len, uint8_t *out,
                     struct esp_error *err)
{
    int rc = read_flash_begin(l, offset, len, err);
    if (rc < 0)
        return rc;
    bool pending = rc == 1; /* the first data frame is already decoded */
    uint32_t got = 0;
    uint8_t ack[4];
    uint32_t next_report = 0;
    while (got < len) {
        rc = pending ? 1 : esp_ldr_read_frame(l, esp_ldr_tmo(l, ESP_TMO_READ_FLASH_FRAME));
        pending = false;
        if (rc < 0)
            return esp_ldr_io_error(l, rc, "READ_FLASH", err);
        if (rc == 0) {
            esp_error_set(err, -ETIMEDOUT, l->stage,
                          "check the cable and the USB hub; try a lower baud rate",
                          "flash read stalled after %u of %u bytes", got, len);
            esp_error_set_address(err, offset + got);
            return -ETIMEDOUT;
        }
        size_t n = l->dec.frame_len;
        if (n == 0 || n > len - got) {
            esp_error_set(err, -EPROTO, l->stage, "retry at a lower baud rate",
                          "unexpected %zu-byte frame after %u of %u bytes of flash data", n, got,
                          len);
            esp_error_set_address(err, offset + got);
            return -EPROTO;
        }
        memcpy(out + got, l->dec.frame, n);
        got += (uint32_t)n;
        esp_put_u32(ack, got);
        rc = esp_ldr_send_raw(l, ack, sizeof(ack), err);
        if (rc < 0)
            return rc;
        if (got >= next_report || got == len) {
            report(l, ESP_STAGE_READ, 0, 1, offset, got, len);
            next_report = got + 0x10000;
        }
    }
    rc = esp_ldr_read_frame(l, esp_ldr_tmo(l, ESP_TMO_READ_FLASH_FRAME));
    if (rc < 0)
        return esp_ldr_io_error(l, rc, "READ_FLASH", err);
    if (rc == 0 || l->dec.frame_len != 16)
        return esp_error_set(err, rc == 0 ? -ETIMEDOUT : -EPROTO, l->stage,
                             "retry at a lower baud rate", "no MD5 digest after the flash data");
    uint8_t want[16];
    md5_buf(out, len, want);
    if (memcmp(want, l->dec.frame, 16) != 0) {
        char hd[33], hw[33];
        hex16(l->dec.frame, hd);
        hex16(want, hw);
        return esp_error_set(err, -EBADMSG, l->stage, "retry at a lower baud rate",
                             "flash data corrupted in transit: device MD5 %s, received %s", hd, hw);
    }
    return 0;
}

static int read_rom(struct esp_loader *l, uint32_t offset, uint32_t len, uint8_t *out,
                    struct esp_error *err)
{
    uint32_t got = 0, next_report = 0;
    while (got < len) {
        uint32_t w[2] = {offset + got, 64};
        struct esp_response r;
        int rc = esp_ldr_cmd_words(l, ESP_OP_READ_FLASH_SLOW, w, 2, 64,
                                   esp_ldr_tmo(l, ESP_TMO_DEFAULT), &r, err);
        if (rc < 0) {
            esp_error_set_address(err, offset + got);
            return rc;
        }
        uint32_t k = len - got < 64 ? len - got : 64;
        memcpy(out + got, r.data, k);
        got += k;
        if (got >= next_report || got == len) {
            report(l, ESP_STAGE_READ, 0, 1, offset, got, len);
            next_report = got + 0x4000;
        }
    }
    return 0;
}

int esp_loader_read_flash(struct esp_loader *l, uint32_t offset, uint32_t len, uint8_t *out,
                          struct esp_error *err)
{
    int rc = begin_op(l, ESP_STAGE_READ, err);
    if (rc < 0)
        return rc;
    if (len == 0)
        return 0;
    if (!out)
        return esp_error_set(err, -EINVAL, l->stage, NULL, "no output buffer");
    if (l->info.flash_size && (uint64_t)offset + len > l->info.flash_size)
        return esp_error_set(err, -EINVAL, l->stage, NULL,
                             "read 0x%X+0x%X is beyond the %u KB flash", offset, len,
                             l->info.flash_size / 1024);
    if (esp_ldr_is_8266_rom(l))
        return esp_error_set(err, -ENOTSUP, l->stage,
                             "enable the flasher stub (stub directory) to read flash",
                             "reading ESP8266 flash needs the flasher stub");
    if (l->info.secure_download_mode)
        return esp_error_set(err, -ENOTSUP, l->stage, NULL,
                             "flash cannot be read in secure download mode");
    if (!l->stub && !l->info.chip->rom_has_read_flash_slow)
        return esp_error_set(err, -ENOTSUP, l->stage, NULL,
                             "the %s ROM cannot read flash; use the flasher stub",
                             l->info.chip->name);
    rc = ensure_attached(l, err);
    if (rc < 0)
        return rc;
    report(l, ESP_STAGE_READ, 0, 1, offset, 0, len);
    return l->stub ? read_stub(l, offset, len, out, err) : read_rom(l, offset, len, out, err);
}
