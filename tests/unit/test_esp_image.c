/*
 * test_esp_image: image parser on images built here (header, extended header,
 * segments, checksum, SHA-256), on corrupted variants of them, header patching
 * with SHA recompute (verified by re-parsing), and the chip/revision check.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "esp_chip.h"
#include "esp_cmd.h"
#include "esp_error.h"
#include "esp_image.h"

struct img_spec {
    bool esp8266;
    uint8_t mode, size_code, freq_code;
    uint16_t chip_id;
    uint8_t min_rev;
    uint16_t min_rev_full, max_rev_full;
    uint8_t hash;
    unsigned n_segments;
    uint32_t seg_len[16];
    size_t trailer; /* extra bytes after the image (merged binary) */
};

static size_t build_image(const struct img_spec *sp, uint8_t *out, size_t cap)
{
    size_t p = 0;
    assert_true(cap > 64);
    out[p++] = 0xE9;
    out[p++] = (uint8_t)sp->n_segments;
    out[p++] = sp->mode;
    out[p++] = (uint8_t)(sp->size_code << 4 | sp->freq_code);
    esp_put_u32(out + p, 0x40080000u + 0x404);
    p += 4;
    if (!sp->esp8266) {
        uint8_t *x = out + p;
        memset(x, 0, 16);
        x[0] = 0xEE;
        x[4] = (uint8_t)sp->chip_id;
        x[5] = (uint8_t)(sp->chip_id >> 8);
        x[6] = sp->min_rev;
        x[7] = (uint8_t)sp->min_rev_full;
        x[8] = (uint8_t)(sp->min_rev_full >> 8);
        x[9] = (uint8_t)sp->max_rev_full;
        x[10] = (uint8_t)(sp->max_rev_full >> 8);
        x[15] = sp->hash;
        p += 16;
    }
    uint8_t cks = 0xEF;
    for (unsigned s = 0; s < sp->n_segments; s++) {
        assert_true(p + 8 + sp->seg_len[s] < cap);
        esp_put_u32(out + p, 0x3FFB0000u + 0x1000 * s);
        esp_put_u32(out + p + 4, sp->seg_len[s]);
        p += 8;
        for (uint32_t i = 0; i < sp->seg_len[s]; i++) {
            out[p] = (uint8_t)(i * 31 + s * 7 + 1);
            cks ^= out[p];
            p++;
        }
    }
    while (p % 16 != 15)
        out[p++] = 0;
    out[p++] = cks;
    if (sp->hash == 1) {
        unsigned int n = 0;
        assert_int_equal(EVP_Digest(out, p, out + p, &n, EVP_sha256(), NULL), 1);
        p += 32;
    }
    for (size_t i = 0; i < sp->trailer; i++)
        out[p++] = (uint8_t)(0xA0 + i);
    return p;
}

static const struct img_spec esp32_img = {
    .mode = 2,
    .size_code = 2,
    .freq_code = 0xF,
    .chip_id = 0,
    .max_rev_full = 0xFFFF,
    .hash = 1,
    .n_segments = 3,
    .seg_len = {32, 100, 4},
};

static void test_parse_valid_esp32(void **state)
{
    (void)state;
    uint8_t buf[2048];
    size_t len = build_image(&esp32_img, buf, sizeof(buf));
    struct esp_image_info info;
    struct esp_error err;
    esp_error_clear(&err);
    assert_int_equal(esp_image_parse(buf, len, false, &info, &err), 0);
    assert_int_equal(err.code, 0);
    assert_int_equal(info.segment_count, 3);
    assert_int_equal(info.flash_mode, 2);
    assert_int_equal(info.flash_size_code, 2);
    assert_int_equal(info.flash_freq_code, 0xF);
    assert_int_equal(info.entry, 0x40080404);
    assert_true(info.has_extended_header);
    assert_int_equal(info.wp_pin, 0xEE);
    assert_int_equal(info.chip_id, 0);
    assert_int_equal(info.max_rev_full, 0xFFFF);
    assert_true(info.hash_appended);
    assert_true(info.sha256_valid);
    assert_int_equal(info.segments[0].file_offset, 24 + 8);
    assert_int_equal(info.segments[0].length, 32);
    assert_int_equal(info.segments[1].file_offset, 24 + 8 + 32 + 8);
    assert_int_equal(info.segments[1].load_addr, 0x3FFB1000);
    assert_int_equal(info.segments[2].length, 4);
    assert_int_equal(info.data_length % 16, 0);
    assert_int_equal(info.data_length + 32, len);
    assert_int_equal(info.image_length, len);
    assert_int_equal(info.checksum_stored, info.checksum_computed);
    assert_int_equal(info.checksum_stored, buf[info.data_length - 1]);
}

static void test_parse_valid_variants(void **state)
{
    (void)state;
    static const struct img_spec specs[] = {
        {.esp8266 = true, .n_segments = 1, .seg_len = {4}},
        {.esp8266 = true, .n_segments = 2, .seg_len = {1000, 7}, .trailer = 5},
        {.n_segments = 1, .seg_len = {0}, .max_rev_full = 0xFFFF},
        {.n_segments = 1, .seg_len = {3}, .chip_id = 9}, /* non-multiple of 4: accepted */
        {.n_segments = 16,
         .seg_len = {4, 8, 12, 16, 20, 24, 28, 32, 36, 40, 44, 48, 52, 56, 60, 64}},
        {.n_segments = 2, .seg_len = {24, 8}, .hash = 1, .trailer = 100},
        /* checksum lands exactly at a pos % 16 == 15 without padding */
        {.n_segments = 1, .seg_len = {7}},
    };
    for (size_t i = 0; i < sizeof(specs) / sizeof(specs[0]); i++) {
        uint8_t buf[4096];
        size_t len = build_image(&specs[i], buf, sizeof(buf));
        struct esp_image_info info;
        int rc = esp_image_parse(buf, len, specs[i].esp8266, &info, NULL);
        if (rc != 0)
            fail_msg("spec %zu: rc %d", i, rc);
        assert_int_equal(info.segment_count, specs[i].n_segments);
        assert_int_equal(info.has_extended_header, !specs[i].esp8266);
        assert_int_equal(info.image_length + specs[i].trailer, len);
        assert_int_equal(info.data_length % 16, 0);
        for (unsigned s = 0; s < specs[i].n_segments; s++)
            assert_int_equal(info.segments[s].length, specs[i].seg_len[s]);
    }
}

enum corruption {
    C_MAGIC,
    C_SEGCOUNT0,
    C_SEGCOUNT17,
    C_HASHBYTE2,
    C_TRUNC_SEGMENT,
    C_TRUNC_SEGHDR,
    C_TRUNC_CHECKSUM,
    C_TRUNC_DIGEST,
    C_HUGE_SEGMENT,
    C_BAD_CHECKSUM,
    C_DATA_BYTE,
    C_BAD_SHA,
    C_HEADER_ONLY,
    C_EXT_TRUNC,
};

static const struct {
    const char *name;
    enum corruption what;
    int rc;
} corruptions[] = {
    {"bad magic", C_MAGIC, -EINVAL},
    {"segment count 0", C_SEGCOUNT0, -EINVAL},
    {"segment count 17", C_SEGCOUNT17, -EINVAL},
    {"hash byte 2", C_HASHBYTE2, -EINVAL},
    {"truncated segment", C_TRUNC_SEGMENT, -EINVAL},
    {"truncated segment header", C_TRUNC_SEGHDR, -EINVAL},
    {"truncated before checksum", C_TRUNC_CHECKSUM, -EINVAL},
    {"truncated digest", C_TRUNC_DIGEST, -EINVAL},
    {"segment length 0xFFFFFFF0", C_HUGE_SEGMENT, -EINVAL},
    {"bad checksum byte", C_BAD_CHECKSUM, -EBADMSG},
    {"flipped data byte", C_DATA_BYTE, -EBADMSG},
    {"bad sha", C_BAD_SHA, -EBADMSG},
    {"header only", C_HEADER_ONLY, -EINVAL},
    {"extended header truncated", C_EXT_TRUNC, -EINVAL},
};

static void test_parse_corrupted(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(corruptions) / sizeof(corruptions[0]); i++) {
        uint8_t buf[2048];
        size_t len = build_image(&esp32_img, buf, sizeof(buf));
        struct esp_image_info info;
        assert_int_equal(esp_image_parse(buf, len, false, &info, NULL), 0);
        size_t seg1_hdr = info.segments[1].file_offset - 8;
        switch (corruptions[i].what) {
        case C_MAGIC:
            buf[0] = 0xE8;
            break;
        case C_SEGCOUNT0:
            buf[1] = 0;
            break;
        case C_SEGCOUNT17:
            buf[1] = 17;
            break;
        case C_HASHBYTE2:
            buf[23] = 2;
            break;
        case C_TRUNC_SEGMENT:
            len = info.segments[1].file_offset + 50;
            break;
        case C_TRUNC_SEGHDR:
            len = seg1_hdr + 5;
            break;
        case C_TRUNC_CHECKSUM:
            len = info.data_length - 1;
            break;
        case C_TRUNC_DIGEST:
            len = info.data_length + 31;
            break;
        case C_HUGE_SEGMENT:
            esp_put_u32(buf + seg1_hdr + 4, 0xFFFFFFF0u);
            break;
        case C_BAD_CHECKSUM:
            buf[info.data_length - 1] ^= 0x01;
            break;
        case C_DATA_BYTE:
            buf[info.segments[1].file_offset + 10] ^= 0x40;
            break;
        case C_BAD_SHA:
            buf[info.data_length + 5] ^= 0x80;
            break;
        case C_HEADER_ONLY:
            len = 7;
            break;
        case C_EXT_TRUNC:
            len = 20;
            break;
        }
        struct esp_error err;
        esp_error_clear(&err);
        int rc = esp_image_parse(buf, len, false, &info, &err);
        if (rc != corruptions[i].rc)
            fail_msg("%s: rc %d, want %d (%s)", corruptions[i].name, rc, corruptions[i].rc,
                     err.message);
        assert_int_equal(err.code, rc);
        assert_int_equal(err.stage, ESP_STAGE_PREPARE);
        assert_true(strlen(err.message) > 10);
        assert_true(strlen(err.advice) > 10);
    }
    /* Checksum mismatch still reports both values. */
    uint8_t buf[2048];
    size_t len = build_image(&esp32_img, buf, sizeof(buf));
    struct esp_image_info info;
    assert_int_equal(esp_image_parse(buf, len, false, &info, NULL), 0);
    uint8_t good = info.checksum_stored;
    buf[info.data_length - 1] ^= 0xFF;
    assert_int_equal(esp_image_parse(buf, len, false, &info, NULL), -EBADMSG);
    assert_int_equal(info.checksum_computed, good);
    assert_int_equal(info.checksum_stored, good ^ 0xFF);
    /* A bad SHA leaves sha256_valid false. */
    len = build_image(&esp32_img, buf, sizeof(buf));
    buf[len - 1] ^= 1;
    assert_int_equal(esp_image_parse(buf, len, false, &info, NULL), -EBADMSG);
    assert_true(info.hash_appended);
    assert_false(info.sha256_valid);
    assert_int_equal(esp_image_parse(NULL, 0, false, &info, NULL), -EINVAL);
}

static void test_esp8266_layout_mismatch(void **state)
{
    (void)state;
    /* An ESP32 image parsed with the ESP8266 layout reads the extended header as
     * a segment header and fails; an ESP8266 image parsed as ESP32 fails too. */
    uint8_t buf[2048];
    size_t len = build_image(&esp32_img, buf, sizeof(buf));
    assert_true(esp_image_parse(buf, len, true, NULL, NULL) < 0);
    struct img_spec s8266 = {.esp8266 = true, .n_segments = 1, .seg_len = {4}};
    len = build_image(&s8266, buf, sizeof(buf));
    assert_true(esp_image_parse(buf, len, false, NULL, NULL) < 0);
}

static void test_patch_header(void **state)
{
    (void)state;
    struct img_spec sp = esp32_img;
    sp.trailer = 64;
    uint8_t buf[2048], orig[2048];
    size_t len = build_image(&sp, buf, sizeof(buf));
    memcpy(orig, buf, len);
    struct esp_image_info before, after;
    assert_int_equal(esp_image_parse(buf, len, false, &before, NULL), 0);

    assert_int_equal(esp_image_patch_header(buf, len, false, 3, 4, 0), 1);
    assert_int_equal(buf[2], 3);
    assert_int_equal(buf[3], 0x40);
    assert_int_equal(esp_image_parse(buf, len, false, &after, NULL), 0);
    assert_true(after.sha256_valid);
    assert_int_equal(after.flash_mode, 3);
    assert_int_equal(after.flash_size_code, 4);
    assert_int_equal(after.flash_freq_code, 0);
    /* Digest changed, checksum byte, data and trailer untouched. */
    assert_memory_not_equal(buf + before.data_length, orig + before.data_length, 32);
    assert_memory_equal(buf + 4, orig + 4, before.data_length - 4);
    assert_memory_equal(buf + before.image_length, orig + before.image_length, 64);

    /* Same values again: nothing to do. */
    assert_int_equal(esp_image_patch_header(buf, len, false, 3, 4, 0), 0);
    assert_int_equal(esp_image_patch_header(buf, len, false, -1, -1, -1), 0);

    /* Keep nibbles: only the size changes. */
    assert_int_equal(esp_image_patch_header(buf, len, false, -1, 2, -1), 1);
    assert_int_equal(buf[2], 3);
    assert_int_equal(buf[3], 0x20);
    assert_int_equal(esp_image_parse(buf, len, false, &after, NULL), 0);
    /* Only the frequency. */
    assert_int_equal(esp_image_patch_header(buf, len, false, -1, -1, 0xF), 1);
    assert_int_equal(buf[3], 0x2F);
    assert_int_equal(esp_image_parse(buf, len, false, &after, NULL), 0);
    /* Back to the original parameters gives back the original bytes. */
    assert_int_equal(esp_image_patch_header(buf, len, false, 2, 2, 0xF), 1);
    assert_memory_equal(buf, orig, len);

    /* Bad arguments. */
    assert_int_equal(esp_image_patch_header(buf, len, false, 4, -1, -1), -EINVAL);
    assert_int_equal(esp_image_patch_header(buf, len, false, -1, 16, -1), -EINVAL);
    assert_int_equal(esp_image_patch_header(buf, len, false, -1, -1, -2), -EINVAL);
    assert_memory_equal(buf, orig, len);
}

static void test_patch_refuses_invalid(void **state)
{
    (void)state;
    uint8_t buf[2048], copy[2048];
    size_t len = build_image(&esp32_img, buf, sizeof(buf));
    buf[len - 3] ^= 1; /* bad SHA */
    memcpy(copy, buf, len);
    assert_int_equal(esp_image_patch_header(buf, len, false, 0, 0, 0), -EINVAL);
    assert_memory_equal(buf, copy, len);
    buf[0] = 0;
    memcpy(copy, buf, len);
    assert_int_equal(esp_image_patch_header(buf, len, false, 0, 0, 0), -EINVAL);
    assert_memory_equal(buf, copy, len);
    assert_int_equal(esp_image_patch_header(buf, 4, false, 0, 0, 0), -EINVAL);
}

static void test_patch_no_hash_and_esp8266(void **state)
{
    (void)state;
    struct img_spec sp = esp32_img;
    sp.hash = 0;
    sp.trailer = 40;
    uint8_t buf[2048], orig[2048];
    size_t len = build_image(&sp, buf, sizeof(buf));
    memcpy(orig, buf, len);
    assert_int_equal(esp_image_patch_header(buf, len, false, 0, 3, 1), 1);
    assert_int_equal(buf[2], 0);
    assert_int_equal(buf[3], 0x31);
    assert_memory_equal(buf + 4, orig + 4, len - 4);
    assert_int_equal(esp_image_parse(buf, len, false, NULL, NULL), 0);

    struct img_spec s8 = {.esp8266 = true, .n_segments = 2, .seg_len = {12, 8}, .trailer = 40};
    len = build_image(&s8, buf, sizeof(buf));
    memcpy(orig, buf, len);
    assert_int_equal(esp_image_patch_header(buf, len, true, 2, 4, 0), 1);
    assert_int_equal(buf[2], 2);
    assert_int_equal(buf[3], 0x40);
    assert_memory_equal(buf + 4, orig + 4, len - 4);
    assert_int_equal(esp_image_parse(buf, len, true, NULL, NULL), 0);
}

static void test_check_chip(void **state)
{
    (void)state;
    struct img_spec sp = esp32_img;
    sp.chip_id = 5; /* C3 */
    uint8_t buf[2048];
    size_t len = build_image(&sp, buf, sizeof(buf));
    struct esp_image_info info;
    assert_int_equal(esp_image_parse(buf, len, false, &info, NULL), 0);

    struct esp_error err;
    esp_error_clear(&err);
    assert_int_equal(esp_image_check_chip(&info, esp_chip_get(ESP_CHIP_ESP32C3), 4, &err), 0);
    assert_int_equal(err.code, 0);
    assert_int_equal(esp_image_check_chip(&info, esp_chip_get(ESP_CHIP_ESP32S3), 0, &err), -EINVAL);
    assert_string_equal(err.message,
                        "image is for ESP32-C3 (chip id 5) but the board is an ESP32-S3");
    assert_int_equal(err.stage, ESP_STAGE_PREPARE);
    assert_true(strlen(err.advice) > 0);

    /* Unknown chip id. */
    info.chip_id = 77;
    esp_error_clear(&err);
    assert_int_equal(esp_image_check_chip(&info, esp_chip_get(ESP_CHIP_ESP32), -1, &err), -EINVAL);
    assert_non_null(strstr(err.message, "chip id 77"));

    /* Revision ranges. */
    static const struct {
        uint8_t min_rev;
        uint16_t min_full, max_full;
        int chip_rev;
        int rc;
    } revs[] = {
        {0, 0, 0xFFFF, 0, 0},
        {0, 0, 0xFFFF, 301, 0},
        {0, 300, 0xFFFF, 100, -EINVAL},
        {0, 300, 0xFFFF, 300, 0},
        {0, 0, 199, 199, 0},
        {0, 0, 199, 200, -EINVAL},
        {0, 100, 199, 101, 0},
        {0, 300, 0xFFFF, -1, 0},
        {3, 0, 0xFFFF, 300, 0},
        {3, 0, 0xFFFF, 200, -EINVAL},
        /* max_rev_full 0: an image from before the fields (ESP-IDF < 5.0), no maximum */
        {0, 0, 0, 300, 0},
        {1, 0, 0, 300, 0},
        {1, 0, 0, 0, -EINVAL},
    };
    for (size_t i = 0; i < sizeof(revs) / sizeof(revs[0]); i++) {
        struct esp_image_info ri = info;
        ri.chip_id = 0;
        ri.min_rev = revs[i].min_rev;
        ri.min_rev_full = revs[i].min_full;
        ri.max_rev_full = revs[i].max_full;
        esp_error_clear(&err);
        int rc = esp_image_check_chip(&ri, esp_chip_get(ESP_CHIP_ESP32), revs[i].chip_rev, &err);
        if (rc != revs[i].rc)
            fail_msg("rev case %zu: rc %d (%s)", i, rc, err.message);
        if (rc)
            assert_non_null(strstr(err.message, "revision"));
    }
    /* Message names both ends of the range. */
    struct esp_image_info ri = info;
    ri.chip_id = 0;
    ri.min_rev_full = 100;
    ri.max_rev_full = 199;
    esp_error_clear(&err);
    esp_image_check_chip(&ri, esp_chip_get(ESP_CHIP_ESP32), 300, &err);
    assert_string_equal(err.message,
                        "image needs ESP32 revision v1.0 to v1.99 but the board is revision v3.0");

    /* C3: legacy min_rev is the minor revision. */
    ri.chip_id = 5;
    ri.min_rev = 3;
    ri.min_rev_full = 0;
    ri.max_rev_full = 0xFFFF;
    assert_int_equal(esp_image_check_chip(&ri, esp_chip_get(ESP_CHIP_ESP32C3), 3, NULL), 0);
    assert_int_equal(esp_image_check_chip(&ri, esp_chip_get(ESP_CHIP_ESP32C3), 2, NULL), -EINVAL);

    /* ESP8266 target: no chip id to check. */
    struct img_spec s8 = {.esp8266 = true, .n_segments = 1, .seg_len = {4}};
    len = build_image(&s8, buf, sizeof(buf));
    assert_int_equal(esp_image_parse(buf, len, true, &info, NULL), 0);
    assert_int_equal(esp_image_check_chip(&info, esp_chip_get(ESP_CHIP_ESP8266), -1, NULL), 0);
    /* ... but an ESP8266-layout image is refused on an ESP32. */
    esp_error_clear(&err);
    assert_int_equal(esp_image_check_chip(&info, esp_chip_get(ESP_CHIP_ESP32), -1, &err), -EINVAL);
    assert_true(strlen(err.message) > 0);
    assert_int_equal(esp_image_check_chip(NULL, esp_chip_get(ESP_CHIP_ESP32), -1, NULL), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_valid_esp32),
        cmocka_unit_test(test_parse_valid_variants),
        cmocka_unit_test(test_parse_corrupted),
        cmocka_unit_test(test_esp8266_layout_mismatch),
        cmocka_unit_test(test_patch_header),
        cmocka_unit_test(test_patch_refuses_invalid),
        cmocka_unit_test(test_patch_no_hash_and_esp8266),
        cmocka_unit_test(test_check_chip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
