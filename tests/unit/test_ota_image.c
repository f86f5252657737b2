/*
 * test_ota_image: ESP8266 signed framing (payload ‖ RSA-2048 PKCS#1 v1.5
 * SHA-256 signature ‖ u32 LE length) with keys generated here — valid,
 * tampered payload, wrong key, unsigned, require_signed — and gzip images
 * (detection, integrity, refused for ESP32).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <zlib.h>

#include "ota_image.h"

struct keys {
    EVP_PKEY *k1, *k2;
    char *pem1, *pem2;
};

static EVP_PKEY *gen(void)
{
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_id(EVP_PKEY_RSA, NULL);
    EVP_PKEY *k = NULL;
    assert_non_null(c);
    assert_int_equal(EVP_PKEY_keygen_init(c), 1);
    assert_int_equal(EVP_PKEY_CTX_set_rsa_keygen_bits(c, 2048), 1);
    assert_int_equal(EVP_PKEY_keygen(c, &k), 1);
    EVP_PKEY_CTX_free(c);
    return k;
}

static char *pub_pem(EVP_PKEY *k)
{
    BIO *b = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_PUBKEY(b, k), 1);
    char *data;
    long n = BIO_get_mem_data(b, &data);
    char *s = malloc((size_t)n + 1);
    memcpy(s, data, (size_t)n);
    s[n] = '\0';
    BIO_free(b);
    return s;
}

static int setup(void **state)
{
    struct keys *k = calloc(1, sizeof(*k));
    k->k1 = gen();
    k->k2 = gen();
    k->pem1 = pub_pem(k->k1);
    k->pem2 = pub_pem(k->k2);
    *state = k;
    return 0;
}

static int teardown(void **state)
{
    struct keys *k = *state;
    EVP_PKEY_free(k->k1);
    EVP_PKEY_free(k->k2);
    free(k->pem1);
    free(k->pem2);
    free(k);
    return 0;
}

/* payload ‖ sig ‖ u32 LE sig length; returns malloc'd image. */
static uint8_t *sign(EVP_PKEY *key, const uint8_t *payload, size_t len, size_t *out_len)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    size_t sl = 0;
    assert_int_equal(EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, key), 1);
    assert_int_equal(EVP_DigestSign(ctx, NULL, &sl, payload, len), 1);
    uint8_t *img = malloc(len + sl + 4);
    memcpy(img, payload, len);
    assert_int_equal(EVP_DigestSign(ctx, img + len, &sl, payload, len), 1);
    assert_int_equal(sl, 256);
    img[len + sl] = (uint8_t)sl;
    img[len + sl + 1] = (uint8_t)(sl >> 8);
    img[len + sl + 2] = 0;
    img[len + sl + 3] = 0;
    EVP_MD_CTX_free(ctx);
    *out_len = len + sl + 4;
    return img;
}

static uint8_t payload[4096];

static void make_payload(void)
{
    for (size_t i = 0; i < sizeof(payload); i++)
        payload[i] = (uint8_t)(i * 7 + 3);
    payload[0] = 0xE9;
}

static void test_signed_valid(void **state)
{
    struct keys *k = *state;
    make_payload();
    size_t len;
    uint8_t *img = sign(k->k1, payload, sizeof(payload), &len);
    struct ota_error err;
    ota_error_clear(&err);
    assert_int_equal(ota_image_verify(img, len, k->pem1, &err), 0);
    struct ota_image_info info;
    assert_int_equal(ota_image_inspect(img, len, k->pem1, &info, &err), 0);
    assert_int_equal(info.sig, OTA_SIG_VALID);
    assert_int_equal(info.sig_len, 256);
    assert_int_equal(info.payload_len, sizeof(payload));
    assert_int_equal(info.kind, OTA_IMAGE_ESP);
    struct ota_image_policy pol = {.require_signed = true, .pem_pubkey = k->pem1};
    assert_int_equal(ota_image_check(img, len, &pol, &info, &err), 0);
    /* Without a key: recognised as signed but not verified. */
    assert_int_equal(ota_image_inspect(img, len, NULL, &info, &err), 0);
    assert_int_equal(info.sig, OTA_SIG_UNVERIFIED);
    free(img);
}

static void test_signed_tampered_and_wrong_key(void **state)
{
    struct keys *k = *state;
    make_payload();
    size_t len;
    uint8_t *img = sign(k->k1, payload, sizeof(payload), &len);
    struct ota_error err;
    ota_error_clear(&err);
    assert_int_equal(ota_image_verify(img, len, k->pem2, &err), -EBADMSG);
    assert_true(strlen(err.advice) > 0);
    img[100] ^= 1;
    assert_int_equal(ota_image_verify(img, len, k->pem1, &err), -EBADMSG);
    struct ota_image_info info;
    assert_int_equal(ota_image_inspect(img, len, k->pem1, &info, &err), 0);
    assert_int_equal(info.sig, OTA_SIG_INVALID);
    struct ota_image_policy pol = {.require_signed = false, .pem_pubkey = k->pem1};
    assert_int_equal(ota_image_check(img, len, &pol, &info, &err), -EBADMSG);
    assert_int_equal(err.stage, OTA_STAGE_IMAGE);
    free(img);
}

static void test_unsigned(void **state)
{
    struct keys *k = *state;
    make_payload();
    struct ota_error err;
    ota_error_clear(&err);
    assert_int_equal(ota_image_verify(payload, sizeof(payload), k->pem1, &err), -ENOENT);
    struct ota_image_info info;
    struct ota_image_policy pol = {.require_signed = false, .pem_pubkey = k->pem1};
    assert_int_equal(ota_image_check(payload, sizeof(payload), &pol, &info, &err), 0);
    assert_int_equal(info.sig, OTA_SIG_UNSIGNED);
    pol.require_signed = true;
    assert_int_equal(ota_image_check(payload, sizeof(payload), &pol, &info, &err), -EPERM);
    assert_non_null(strstr(err.message, "unsigned"));
    assert_true(strlen(err.advice) > 0);
    /* require_signed without a key is a configuration error. */
    pol.pem_pubkey = NULL;
    assert_int_equal(ota_image_check(payload, sizeof(payload), &pol, &info, &err), -EINVAL);
    /* A garbage key. */
    assert_int_equal(ota_image_verify(payload, sizeof(payload), "not a key", &err), -EINVAL);
    /* Not an image. */
    const uint8_t html[] = "<html>";
    pol = (struct ota_image_policy){0};
    assert_int_equal(ota_image_check(html, 6, &pol, &info, &err), -EINVAL);
}

static size_t gzip_of(const uint8_t *in, size_t len, uint8_t *out, size_t cap)
{
    z_stream zs;
    memset(&zs, 0, sizeof(zs));
    assert_int_equal(deflateInit2(&zs, 9, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY), Z_OK);
    zs.next_in = (Bytef *)(uintptr_t)in;
    zs.avail_in = (uInt)len;
    zs.next_out = out;
    zs.avail_out = (uInt)cap;
    assert_int_equal(deflate(&zs, Z_FINISH), Z_STREAM_END);
    size_t n = zs.total_out;
    deflateEnd(&zs);
    return n;
}

static void test_gzip(void **state)
{
    struct keys *k = *state;
    make_payload();
    static uint8_t gz[8192];
    size_t n = gzip_of(payload, sizeof(payload), gz, sizeof(gz));
    assert_true(ota_image_is_gzip(gz, n));
    assert_false(ota_image_is_gzip(payload, sizeof(payload)));
    struct ota_image_info info;
    struct ota_error err;
    ota_error_clear(&err);
    struct ota_image_policy pol = {.chip = OTA_CHIP_ESP8266};
    assert_int_equal(ota_image_check(gz, n, &pol, &info, &err), 0);
    assert_int_equal(info.kind, OTA_IMAGE_GZIP);
    assert_true(info.gzip_ok);
    assert_int_equal(info.gzip_isize, sizeof(payload));
    assert_int_equal(info.inflated_first, 0xE9);
    pol.chip = OTA_CHIP_ESP32;
    assert_int_equal(ota_image_check(gz, n, &pol, &info, &err), -ENOTSUP);
    /* Corrupt stream. */
    pol.chip = OTA_CHIP_ESP8266;
    gz[n / 2] ^= 0x55;
    assert_int_equal(ota_image_check(gz, n, &pol, &info, &err), -EBADMSG);
    gz[n / 2] ^= 0x55;
    /* Signed gzip: the signature covers the compressed payload. */
    size_t sl;
    uint8_t *img = sign(k->k1, gz, n, &sl);
    pol.require_signed = true;
    pol.pem_pubkey = k->pem1;
    assert_int_equal(ota_image_check(img, sl, &pol, &info, &err), 0);
    assert_int_equal(info.kind, OTA_IMAGE_GZIP);
    assert_int_equal(info.sig, OTA_SIG_VALID);
    free(img);
}

/* ESP8266 header facts: flash size by byte 3's high nibble (ESP.magicFlashChipSize), and the
 * MD5 of the image with each flash mode in byte 2 (mode 0 here is the file itself). */
static void test_esp8266_header(void **state)
{
    (void)state;
    uint8_t img[64];
    for (size_t i = 0; i < sizeof(img); i++)
        img[i] = (uint8_t)(i * 7 + 1);
    img[0] = 0xE9;
    img[2] = 0x00;
    static const struct {
        uint8_t b3;
        uint64_t size;
    } sizes[] = {
        {0x00, 512 * 1024},       {0x10, 256 * 1024}, {0x20, 1024 * 1024}, {0x30, 2 * 1024 * 1024},
        {0x40, 4 * 1024 * 1024},  {0x50, 0},          {0x60, 0},           {0x80, 8 * 1024 * 1024},
        {0x9F, 16 * 1024 * 1024}, {0xF0, 0}};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        img[3] = sizes[i].b3;
        assert_int_equal(ota_image_esp8266_flash_size(img, sizeof(img)), sizes[i].size);
    }
    assert_int_equal(ota_image_esp8266_flash_size(img, 3), 0);
    char m[4][33];
    assert_int_equal(ota_image_mode_md5(img, sizeof(img), m), 0);
    char md5[33];
    for (uint8_t mode = 0; mode < 4; mode++) {
        uint8_t copy[sizeof(img)];
        memcpy(copy, img, sizeof(img));
        copy[2] = mode;
        assert_int_equal(ota_md5_hex(copy, sizeof(copy), md5), 0);
        assert_string_equal(m[mode], md5);
    }
    assert_string_not_equal(m[0], m[2]);
    img[0] = 0x1F;
    assert_int_equal(ota_image_mode_md5(img, sizeof(img), m), -EINVAL);
    assert_int_equal(ota_image_esp8266_flash_size(img, sizeof(img)), 0);
}

/* The Updater's ERROR[9] text names the chip's real size; the station's message both. */
static void test_flash_refusal_text(void **state)
{
    (void)state;
    assert_int_equal(
        ota_image_refusal_real_size("ERROR[9]: new Flash config wrong, real size: 1048576"),
        1048576);
    assert_int_equal(ota_image_refusal_real_size("Update error: ERROR[9]: new Flash config "
                                                 "wrong, Real Size:  524288\n"),
                     524288);
    assert_int_equal(ota_image_refusal_real_size("ERROR[4]: Not Enough Space"), 0);
    assert_int_equal(ota_image_refusal_real_size(NULL), 0);
    char out[160];
    ota_image_flash_mismatch_text(4u << 20, 1u << 20, out, sizeof(out));
    assert_string_equal(out, "the image header declares a 4096 KB flash, the board's chip has "
                             "1024 KB");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_signed_valid),   cmocka_unit_test(test_signed_tampered_and_wrong_key),
        cmocka_unit_test(test_unsigned),       cmocka_unit_test(test_gzip),
        cmocka_unit_test(test_esp8266_header), cmocka_unit_test(test_flash_refusal_text),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
