/*
 * esp_image: parser, validator and header patcher for ESP images (magic 0xE9).
 *
 * Owns: the image layout of PROTOCOL-ROM.md §7 (8-byte header, 16-byte
 * extended header on the ESP32 family, segments, XOR checksum padded to a
 * 16-byte boundary, optional SHA-256 of everything before it).
 * Invariant: the input is untrusted file data; every offset is checked
 * against the buffer length before use and nothing is asserted. SHA-256
 * comes from libcrypto.
 */
#include "esp_image.h"

#include <errno.h>
#include <string.h>

#include <openssl/evp.h>

#include "esp_cmd.h"

#define HEADER_LEN 8
#define EXT_HEADER_LEN 16
#define SHA256_LEN 32
#define MAX_SEGMENT_LEN (16u * 1024 * 1024)

static const char advice_file[] =
    "check that the file is a complete firmware image (.bin) built for this chip";

static int sha256(const uint8_t *buf, size_t len, uint8_t out[SHA256_LEN])
{
    unsigned int n = 0;
    if (EVP_Digest(buf, len, out, &n, EVP_sha256(), NULL) != 1 || n != SHA256_LEN)
        return -ENOMEM;
    return 0;
}

static uint16_t get_u16(const uint8_t *p)
{
    return esp_get_u16(p);
}

int esp_image_parse(const uint8_t *buf, size_t len, bool esp8266, struct esp_image_info *info,
                    struct esp_error *err)
{
    struct esp_image_info tmp;
    if (!info)
        info = &tmp;
    memset(info, 0, sizeof(*info));
    info->max_rev_full = 0xFFFF;

    if (!buf || len < HEADER_LEN)
        return esp_error_set(err, -EINVAL, ESP_STAGE_PREPARE, advice_file,
                             "image too short: %zu bytes, the header alone is 8", buf ? len : 0);
    if (buf[0] != ESP_IMAGE_MAGIC)
        return esp_error_set(err, -EINVAL, ESP_STAGE_PREPARE, advice_file,
                             "not an ESP image: first byte is 0x%02x, expected 0xe9", buf[0]);

    info->segment_count = buf[1];
    info->flash_mode = buf[2];
    info->flash_size_code = buf[3] >> 4;
    info->flash_freq_code = buf[3] & 0x0F;
    info->entry = esp_get_u32(buf + 4);

    if (info->segment_count == 0 || info->segment_count > ESP_IMAGE_MAX_SEGMENTS)
        return esp_error_set(err, -EINVAL, ESP_STAGE_PREPARE, advice_file,
                             "image header claims %u segments (valid: 1 to %d)",
                             info->segment_count, ESP_IMAGE_MAX_SEGMENTS);

    size_t pos = HEADER_LEN;
    if (!esp8266) {
        if (len < HEADER_LEN + EXT_HEADER_LEN)
            return esp_error_set(err, -EINVAL, ESP_STAGE_PREPARE, advice_file,
                                 "image truncated in the extended header: %zu bytes", len);
        const uint8_t *x = buf + HEADER_LEN;
        info->has_extended_header = true;
        info->wp_pin = x[0];
        info->chip_id = get_u16(x + 4);
        info->min_rev = x[6];
        info->min_rev_full = get_u16(x + 7);
        info->max_rev_full = get_u16(x + 9);
        if (x[15] > 1)
            return esp_error_set(err, -EINVAL, ESP_STAGE_PREPARE, advice_file,
                                 "bad extended header: hash_appended byte is 0x%02x (must be 0 "
                                 "or 1); is this an ESP8266 image?",
                                 x[15]);
        info->hash_appended = x[15] == 1;
        pos += EXT_HEADER_LEN;
    }

    uint8_t cks = ESP_CHECKSUM_SEED;
    for (unsigned i = 0; i < info->segment_count; i++) {
        if (len - pos < 8)
            return esp_error_set(err, -EINVAL, ESP_STAGE_PREPARE, advice_file,
                                 "image truncated: header of segment %u at offset 0x%zx is past "
                                 "the end of the file (%zu bytes)",
                                 i, pos, len);
        struct esp_image_segment *s = &info->segments[i];
        s->load_addr = esp_get_u32(buf + pos);
        s->length = esp_get_u32(buf + pos + 4);
        s->file_offset = pos + 8;
        if (s->length >= MAX_SEGMENT_LEN || s->length > len - s->file_offset)
            return esp_error_set(err, -EINVAL, ESP_STAGE_PREPARE, advice_file,
                                 "segment %u at offset 0x%zx (load address 0x%08x) claims %u "
                                 "bytes but only %zu remain in the file",
                                 i, pos, s->load_addr, s->length, len - s->file_offset);
        /* Lengths should be multiples of 4; esptool only warns, so do we (silently). */
        cks ^= esp_checksum(buf + s->file_offset, s->length) ^ ESP_CHECKSUM_SEED;
        pos = s->file_offset + s->length;
    }

    /* Zero padding up to file_pos % 16 == 15, then the checksum byte. */
    size_t cks_pos = pos + (15 - pos % 16);
    info->checksum_computed = cks;
    if (cks_pos >= len)
        return esp_error_set(err, -EINVAL, ESP_STAGE_PREPARE, advice_file,
                             "image truncated: checksum byte at offset 0x%zx is past the end of "
                             "the file (%zu bytes)",
                             cks_pos, len);
    info->data_length = cks_pos + 1;
    info->checksum_stored = buf[cks_pos];
    info->image_length = info->data_length;

    if (info->hash_appended) {
        if (len - info->data_length < SHA256_LEN)
            return esp_error_set(err, -EINVAL, ESP_STAGE_PREPARE, advice_file,
                                 "image truncated: SHA-256 digest at offset 0x%zx needs 32 bytes, "
                                 "only %zu remain",
                                 info->data_length, len - info->data_length);
        info->image_length = info->data_length + SHA256_LEN;
        uint8_t digest[SHA256_LEN];
        if (sha256(buf, info->data_length, digest) < 0)
            return esp_error_set(err, -ENOMEM, ESP_STAGE_PREPARE, NULL,
                                 "SHA-256 computation failed");
        info->sha256_valid = memcmp(digest, buf + info->data_length, SHA256_LEN) == 0;
    }

    if (info->checksum_stored != info->checksum_computed)
        return esp_error_set(err, -EBADMSG, ESP_STAGE_PREPARE, advice_file,
                             "image checksum mismatch: stored 0x%02x at offset 0x%zx, computed "
                             "0x%02x (file corrupted)",
                             info->checksum_stored, cks_pos, info->checksum_computed);
    if (info->hash_appended && !info->sha256_valid)
        return esp_error_set(err, -EBADMSG, ESP_STAGE_PREPARE, advice_file,
                             "image SHA-256 mismatch: digest at offset 0x%zx does not match "
                             "bytes 0..0x%zx (file corrupted)",
                             info->data_length, info->data_length);
    return 0;
}

int esp_image_patch_header(uint8_t *buf, size_t len, bool esp8266, int mode, int size_code,
                           int freq_code)
{
    if (mode < -1 || mode > 3 || size_code < -1 || size_code > 15 || freq_code < -1 ||
        freq_code > 15)
        return -EINVAL;

    struct esp_image_info info;
    if (esp_image_parse(buf, len, esp8266, &info, NULL) != 0)
        return -EINVAL;

    uint8_t b2 = mode >= 0 ? (uint8_t)mode : buf[2];
    unsigned hi = size_code >= 0 ? (unsigned)size_code : (unsigned)(buf[3] >> 4);
    unsigned lo = freq_code >= 0 ? (unsigned)freq_code : (unsigned)(buf[3] & 0x0F);
    uint8_t b3 = (uint8_t)(hi << 4 | lo);
    if (b2 == buf[2] && b3 == buf[3])
        return 0;

    uint8_t digest[SHA256_LEN];
    if (!esp8266 && info.hash_appended) {
        /* Digest of the patched header + data, computed before touching buf. */
        uint8_t head[4] = {buf[0], buf[1], b2, b3};
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        unsigned int n = 0;
        int ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
                 EVP_DigestUpdate(ctx, head, sizeof(head)) == 1 &&
                 EVP_DigestUpdate(ctx, buf + 4, info.data_length - 4) == 1 &&
                 EVP_DigestFinal_ex(ctx, digest, &n) == 1 && n == SHA256_LEN;
        EVP_MD_CTX_free(ctx);
        if (!ok)
            return -ENOMEM;
    }

    buf[2] = b2;
    buf[3] = b3;
    if (!esp8266 && info.hash_appended)
        memcpy(buf + info.data_length, digest, SHA256_LEN);
    return 1;
}

static void rev_split(unsigned rev, unsigned *major, unsigned *minor)
{
    *major = rev / 100;
    *minor = rev % 100;
}

int esp_image_check_chip(const struct esp_image_info *info, const struct esp_chip_desc *chip,
                         int chip_revision, struct esp_error *err)
{
    if (!info || !chip)
        return esp_error_set(err, -EINVAL, ESP_STAGE_PREPARE, NULL,
                             "internal error: no image or chip to check");

    /* ESP8266 images carry no chip id or revision limits. */
    if (chip->chip == ESP_CHIP_ESP8266)
        return 0;

    if (!info->has_extended_header)
        return esp_error_set(err, -EINVAL, ESP_STAGE_PREPARE,
                             "use a firmware image built for this chip",
                             "image has no ESP32 extended header (ESP8266 layout) but the board "
                             "is an %s",
                             chip->name);

    if (chip->image_chip_id < 0 || info->chip_id != (unsigned)chip->image_chip_id) {
        const struct esp_chip_desc *img = esp_chip_by_image_id(info->chip_id);
        return esp_error_set(err, -EINVAL, ESP_STAGE_PREPARE,
                             "select the firmware built for this chip, or check the chip type",
                             "image is for %s (chip id %u) but the board is an %s",
                             img ? img->name : "an unknown chip", info->chip_id, chip->name);
    }

    if (chip_revision < 0)
        return 0;

    unsigned min = info->min_rev_full;
    /* Legacy byte: major revision, except on the C3 where it is the minor one. */
    unsigned legacy = chip->chip == ESP_CHIP_ESP32C3 ? info->min_rev : info->min_rev * 100u;
    if (legacy > min)
        min = legacy;
    unsigned max = info->max_rev_full;
    /* Images from before ESP-IDF v5.0 have zeros where min/max_rev_full are (esptool reads
     * max_rev_full 0 that way): only the legacy byte applies, and there is no maximum. */
    if (max == 0) {
        min = legacy;
        max = 0xFFFF;
    }
    unsigned rev = (unsigned)chip_revision;

    if (rev < min || (max != 0xFFFF && rev > max)) {
        unsigned rmaj, rmin, amaj, amin, bmaj, bmin;
        rev_split(rev, &rmaj, &rmin);
        rev_split(min, &amaj, &amin);
        rev_split(max, &bmaj, &bmin);
        const char *advice = "use a firmware image built for this chip revision";
        if (max == 0xFFFF)
            return esp_error_set(err, -EINVAL, ESP_STAGE_PREPARE, advice,
                                 "image needs %s revision v%u.%u or later but the board is "
                                 "revision v%u.%u",
                                 chip->name, amaj, amin, rmaj, rmin);
        return esp_error_set(err, -EINVAL, ESP_STAGE_PREPARE, advice,
                             "image needs %s revision v%u.%u to v%u.%u but the board is "
                             "revision v%u.%u",
                             chip->name, amaj, amin, bmaj, bmin, rmaj, rmin);
    }
    return 0;
}
