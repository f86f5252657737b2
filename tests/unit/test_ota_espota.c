/*
 * test_ota_espota: espota wire pieces — UDP reply parsing, glued ack/verdict
 * parsing (acks "14601460", "392OK", split "O"/"K", error lines), device error
 * classification, and both auth schemes against values computed here
 * independently with OpenSSL plus the PROTOCOL-OTA.md §1.2 PBKDF2 vector.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "ota_espota.h"

static void hexs(const unsigned char *b, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", b[i]);
}

static void md(const EVP_MD *m, const char *s, char *out)
{
    unsigned char d[64];
    unsigned int n = 0;
    EVP_Digest(s, strlen(s), d, &n, m, NULL);
    hexs(d, n, out);
}

static void test_reply_parse(void **state)
{
    (void)state;
    struct ota_espota_reply r;
    ota_espota_parse_reply((const uint8_t *)"OK", 2, &r);
    assert_int_equal(r.kind, OTA_ESPOTA_REPLY_OK);
    const char auth32[] = "AUTH 0123456789abcdef0123456789abcdef";
    assert_int_equal(strlen(auth32), 37);
    ota_espota_parse_reply((const uint8_t *)auth32, 37, &r);
    assert_int_equal(r.kind, OTA_ESPOTA_REPLY_AUTH);
    assert_int_equal(r.nonce_len, 32);
    assert_string_equal(r.nonce, "0123456789abcdef0123456789abcdef");
    char auth64[70] = "AUTH ";
    memset(auth64 + 5, 'a', 64);
    ota_espota_parse_reply((const uint8_t *)auth64, 69, &r);
    assert_int_equal(r.kind, OTA_ESPOTA_REPLY_AUTH);
    assert_int_equal(r.nonce_len, 64);
    ota_espota_parse_reply((const uint8_t *)"AUTH abc", 8, &r);
    assert_int_equal(r.kind, OTA_ESPOTA_REPLY_UNKNOWN);
    ota_espota_parse_reply((const uint8_t *)"Authentication Failed", 21, &r);
    assert_int_equal(r.kind, OTA_ESPOTA_REPLY_AUTH_FAILED);
    const char err[] = "ERR: ERROR[4]: Not Enough Space";
    ota_espota_parse_reply((const uint8_t *)err, strlen(err), &r);
    assert_int_equal(r.kind, OTA_ESPOTA_REPLY_ERR);
    assert_int_equal(r.device_code, 4);
    assert_string_equal(r.text, "ERROR[4]: Not Enough Space");
    ota_espota_parse_reply((const uint8_t *)"\x01\xff", 2, &r);
    assert_int_equal(r.kind, OTA_ESPOTA_REPLY_UNKNOWN);
}

static void test_acks_glued(void **state)
{
    (void)state;
    struct ota_espota_acks a;
    ota_espota_acks_init(&a);
    /* Two 1460-byte acks glued, then more data. */
    assert_int_equal(ota_espota_acks_feed(&a, (const uint8_t *)"14601460", 8),
                     OTA_ESPOTA_VERDICT_NONE);
    assert_int_equal(ota_espota_acks_estimate(&a, 2920), 2920);
    assert_int_equal(a.acked, 1460); /* the second count may still grow */
    /* "392OK": the last count glued to OK. */
    assert_int_equal(ota_espota_acks_feed(&a, (const uint8_t *)"392OK", 5), OTA_ESPOTA_VERDICT_OK);
    assert_int_equal(ota_espota_acks_estimate(&a, 3312), 3312);

    /* A short ack glued to a full one: "596" + "4096" is not 5964 + 96
     * (a count never starts with 0), and the split holds across reads. */
    ota_espota_acks_init(&a);
    ota_espota_acks_feed(&a, (const uint8_t *)"40964096596", 11);
    ota_espota_acks_feed(&a, (const uint8_t *)"4096", 4);
    assert_int_equal(ota_espota_acks_estimate(&a, 1 << 20), 2 * 4096 + 596 + 4096);
    /* Partial reads of a stalled ESP8266: 4096 x 4, then 1000 + 2616 + 1000. */
    ota_espota_acks_init(&a);
    ota_espota_acks_feed(&a, (const uint8_t *)"409640964096409610002616", 24);
    ota_espota_acks_feed(&a, (const uint8_t *)"1000", 4);
    assert_int_equal(ota_espota_acks_estimate(&a, 300004), 4 * 4096 + 1000 + 2616 + 1000);
    /* ESP32 lock-step 1460s over many reads, then the verdict glued. */
    ota_espota_acks_init(&a);
    for (int i = 0; i < 200; i++)
        ota_espota_acks_feed(&a, (const uint8_t *)"1460", 4);
    assert_int_equal(ota_espota_acks_estimate(&a, 1 << 20), 200 * 1460);
    assert_int_equal(ota_espota_acks_feed(&a, (const uint8_t *)"1460OK", 6), OTA_ESPOTA_VERDICT_OK);
    assert_int_equal(ota_espota_acks_estimate(&a, 1 << 20), 201 * 1460);
    /* Five full acks are not 409 + 6409 + 6409 + 6409 + 6, nor "1" + "1000"
     * 1100 + a lost 0. */
    ota_espota_acks_init(&a);
    ota_espota_acks_feed(&a, (const uint8_t *)"40964096409640964096", 20);
    assert_int_equal(ota_espota_acks_estimate(&a, 1 << 20), 5 * 4096);
    ota_espota_acks_init(&a);
    ota_espota_acks_feed(&a, (const uint8_t *)"110002", 6);
    assert_int_equal(ota_espota_acks_estimate(&a, 1 << 20), 1 + 1000 + 2);
    /* Counts separated by white space. */
    ota_espota_acks_init(&a);
    ota_espota_acks_feed(&a, (const uint8_t *)"100 200\n300", 11);
    assert_int_equal(ota_espota_acks_estimate(&a, 1000), 600);

    /* "O" and "K" in separate reads. */
    ota_espota_acks_init(&a);
    assert_int_equal(ota_espota_acks_feed(&a, (const uint8_t *)"100O", 4), OTA_ESPOTA_VERDICT_NONE);
    assert_int_equal(ota_espota_acks_feed(&a, (const uint8_t *)"K", 1), OTA_ESPOTA_VERDICT_OK);

    /* Never over the bytes sent, whatever the device writes. */
    ota_espota_acks_init(&a);
    ota_espota_acks_feed(&a, (const uint8_t *)"999999999999999999999", 21);
    assert_true(ota_espota_acks_estimate(&a, 50) <= 50);

    /* ESP8266 error line on TCP. */
    ota_espota_acks_init(&a);
    const char e[] = "4096ERROR[7]: MD5 Failed\n";
    assert_int_equal(ota_espota_acks_feed(&a, (const uint8_t *)e, strlen(e)),
                     OTA_ESPOTA_VERDICT_ERROR);
    assert_string_equal(a.text, "ERROR[7]: MD5 Failed");
    /* ESP32 error text without newline: complete at end of stream. */
    ota_espota_acks_init(&a);
    const char f[] = "1460Receive Failed";
    assert_int_equal(ota_espota_acks_feed(&a, (const uint8_t *)f, strlen(f)),
                     OTA_ESPOTA_VERDICT_NONE);
    assert_int_equal(ota_espota_acks_finish(&a), OTA_ESPOTA_VERDICT_ERROR);
    assert_string_equal(a.text, "Receive Failed");
}

static void test_classify(void **state)
{
    (void)state;
    int code;
    const char *adv;
    assert_int_equal(ota_espota_classify_error("ERROR[4]: Not Enough Space", &code, &adv), -ENOSPC);
    assert_int_equal(code, 4);
    assert_non_null(adv);
    assert_int_equal(ota_espota_classify_error("MD5 Check Failed", &code, &adv), -EBADMSG);
    assert_int_equal(code, -1);
    assert_int_equal(
        ota_espota_classify_error("ERROR[12]: Signature verification failed", &code, &adv),
        -EBADMSG);
    assert_int_equal(
        ota_espota_classify_error("ERROR[11]: Invalid bootstrapping state", &code, &adv), -EIO);
    assert_non_null(strstr(adv, "power-cycle"));
    assert_int_equal(ota_espota_classify_error("Wrong Magic Byte", &code, &adv), -EINVAL);
}

static void test_auth_md5(void **state)
{
    (void)state;
    const char *nonce = "0123456789abcdef0123456789abcdef";
    const char *cnonce = "fedcba9876543210fedcba9876543210";
    char h[33], expect[33], got[33], msg[200];
    md(EVP_md5(), "secret", h);
    snprintf(msg, sizeof(msg), "%s:%s:%s", h, nonce, cnonce);
    md(EVP_md5(), msg, expect);
    char secret[33];
    assert_int_equal(ota_espota_secret_md5("secret", secret), 0);
    assert_string_equal(secret, h);
    assert_string_equal(secret, "5ebe2294ecd0e0f08eab7690d2a6ee69");
    assert_int_equal(ota_espota_auth_response(secret, nonce, cnonce, got, sizeof(got)), 0);
    assert_string_equal(got, expect);

    /* espota's cnonce: MD5 of filename‖size‖md5‖ip. */
    char cn[33], cn_expect[33];
    md(EVP_md5(), "fw.bin123400112233445566778899aabbccddeeff192.168.1.5", cn_expect);
    assert_int_equal(ota_espota_cnonce(32, "fw.bin", 1234, "00112233445566778899aabbccddeeff",
                                       "192.168.1.5", cn, sizeof(cn)),
                     0);
    assert_string_equal(cn, cn_expect);
}

static void test_auth_pbkdf2(void **state)
{
    (void)state;
    char nonce[65], cnonce[65];
    for (int i = 0; i < 32; i++) {
        memcpy(nonce + 2 * i, "ab", 2);
        memcpy(cnonce + 2 * i, "cd", 2);
    }
    nonce[64] = cnonce[64] = '\0';
    char h[65];
    assert_int_equal(ota_espota_secret_sha256("a-real-password", h), 0);
    /* The vector of PROTOCOL-OTA.md §1.2 (prefix and suffix given there). */
    assert_memory_equal(h, "980061b5", 8);
    assert_memory_equal(h + 60, "2f9e", 4);
    /* Independent computation. */
    char salt[130], dk_hex[65], msg[200], expect[65], got[65];
    snprintf(salt, sizeof(salt), "%s:%s", nonce, cnonce);
    unsigned char dk[32];
    assert_int_equal(PKCS5_PBKDF2_HMAC(h, 64, (unsigned char *)salt, (int)strlen(salt), 10000,
                                       EVP_sha256(), 32, dk),
                     1);
    hexs(dk, 32, dk_hex);
    assert_memory_equal(dk_hex, "b7a2bf10", 8);
    assert_memory_equal(dk_hex + 60, "21d6", 4);
    snprintf(msg, sizeof(msg), "%s:%s:%s", dk_hex, nonce, cnonce);
    md(EVP_sha256(), msg, expect);
    assert_memory_equal(expect, "4d63ba8b", 8);
    assert_memory_equal(expect + 60, "1b93", 4);
    assert_int_equal(ota_espota_auth_response(h, nonce, cnonce, got, sizeof(got)), 0);
    assert_string_equal(got, expect);
    /* Bad nonce length. */
    assert_int_equal(ota_espota_auth_response(h, "abc", cnonce, got, sizeof(got)), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reply_parse), cmocka_unit_test(test_acks_glued),
        cmocka_unit_test(test_classify),    cmocka_unit_test(test_auth_md5),
        cmocka_unit_test(test_auth_pbkdf2),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
