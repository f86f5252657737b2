/*
 * test_ota_espota: espota wire pieces — UDP reply parsing, glued count/verdict
 * parsing under the bytes-taken bound (a whole-image count "300032", ESP32
 * "14601460", "392OK", split "O"/"K", error lines), device error
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

#define FEED(a, str, bound) ota_espota_acks_feed((a), (const uint8_t *)(str), strlen(str), (bound))

static void test_acks_glued(void **state)
{
    (void)state;
    struct ota_espota_acks a;
    /* ESP8266: Update.write(client) returned once, for the whole image. The old splitter (counts
     * <= 8192) read this as 3000 + 32. */
    ota_espota_acks_init(&a);
    assert_int_equal(FEED(&a, "300032", 300032), OTA_ESPOTA_VERDICT_NONE);
    assert_int_equal(ota_espota_acks_estimate(&a, 300032), 300032);
    /* ... also when the digits arrive in two reads, and then "OK". */
    ota_espota_acks_init(&a);
    FEED(&a, "3000", 300032);
    FEED(&a, "32", 300032);
    assert_int_equal(FEED(&a, "OK", 300032), OTA_ESPOTA_VERDICT_OK);
    assert_int_equal(a.acked, 300032);
    /* The same count glued to OK. */
    ota_espota_acks_init(&a);
    assert_int_equal(FEED(&a, "300032OK", 300032), OTA_ESPOTA_VERDICT_OK);
    assert_int_equal(a.acked, 300032);
    /* A station-side pause: the ESP8266 wrote two counts. */
    ota_espota_acks_init(&a);
    FEED(&a, "123456", 123456 + 5840);
    FEED(&a, "176576", 300032);
    assert_int_equal(ota_espota_acks_estimate(&a, 300032), 300032);
    /* ... or one short count (the stream ran dry early), then the rest of the image as one
     * count glued to OK: the short count came when the device's TCP had taken only it and a
     * window, so its digits end there (greedy growth read 146029 + 8572, 40962 + 95936). */
    ota_espota_acks_init(&a);
    FEED(&a, "1460", 1460 + 5840);
    assert_int_equal(FEED(&a, "298572OK", 300032), OTA_ESPOTA_VERDICT_OK);
    assert_int_equal(a.acked, 300032);
    ota_espota_acks_init(&a);
    FEED(&a, "4096", 4096 + 5840);
    FEED(&a, "2959", 300032);
    assert_int_equal(FEED(&a, "36OK", 300032), OTA_ESPOTA_VERDICT_OK);
    assert_int_equal(a.acked, 300032);
    /* Three counts in three reads, the last the largest, then OK. */
    ota_espota_acks_init(&a);
    FEED(&a, "20000", 20000 + 5840);
    FEED(&a, "30000", 50000 + 5840);
    FEED(&a, "250032", 300032);
    assert_int_equal(FEED(&a, "OK", 300032), OTA_ESPOTA_VERDICT_OK);
    assert_int_equal(a.acked, 300032);
    /* The same digits in one read under one bound cannot be told apart from 2000030000 +
     * ...: never more than the bound, whatever the split. */
    ota_espota_acks_init(&a);
    FEED(&a, "2000030000250032OK", 300032);
    assert_true(a.acked <= 300032);

    /* ESP32: two 1460-byte counts glued, bound = what its TCP took (counts + a 5840 window). */
    ota_espota_acks_init(&a);
    assert_int_equal(FEED(&a, "14601460", 2920 + 5840), OTA_ESPOTA_VERDICT_NONE);
    assert_int_equal(ota_espota_acks_estimate(&a, 2920 + 5840), 2920);
    assert_int_equal(a.acked, 1460); /* the second count may still grow */
    /* "392OK": the last count glued to OK. */
    assert_int_equal(FEED(&a, "392OK", 3312), OTA_ESPOTA_VERDICT_OK);
    assert_int_equal(ota_espota_acks_estimate(&a, 3312), 3312);
    /* ESP32 lock-step 1460s over many reads, the bound a window ahead, then the verdict. */
    ota_espota_acks_init(&a);
    for (int i = 1; i <= 200; i++)
        FEED(&a, "1460", (uint64_t)i * 1460 + 5744);
    assert_int_equal(ota_espota_acks_estimate(&a, 1 << 20), 200 * 1460);
    assert_int_equal(FEED(&a, "1460OK", 201 * 1460), OTA_ESPOTA_VERDICT_OK);
    assert_int_equal(ota_espota_acks_estimate(&a, 1 << 20), 201 * 1460);
    /* Mixed sizes under a tight bound: 4096 + 4096 + 596 + 4096 (a count never starts with 0,
     * so "596" + "4096" is not 5964 + 096). */
    ota_espota_acks_init(&a);
    FEED(&a, "40964096596", 3 * 4096 + 596);
    FEED(&a, "4096", 3 * 4096 + 596);
    assert_int_equal(ota_espota_acks_estimate(&a, 1 << 20), 3 * 4096 + 596);
    /* A '0' that cannot grow the count takes a tail that fits: 1 + 1000 + 2. */
    ota_espota_acks_init(&a);
    FEED(&a, "110002", 1003);
    assert_int_equal(ota_espota_acks_estimate(&a, 1003), 1003);
    assert_int_equal(a.acked, 1001);
    /* Counts separated by white space. */
    ota_espota_acks_init(&a);
    FEED(&a, "100 200\n300", 1000);
    assert_int_equal(ota_espota_acks_estimate(&a, 1000), 600);

    /* "O" and "K" in separate reads. */
    ota_espota_acks_init(&a);
    assert_int_equal(FEED(&a, "100O", 100), OTA_ESPOTA_VERDICT_NONE);
    assert_int_equal(FEED(&a, "K", 100), OTA_ESPOTA_VERDICT_OK);

    /* Never over the bound, whatever the device writes (ESP32 re-sends its last count after
     * a quiet second; a broken device writes anything). */
    ota_espota_acks_init(&a);
    FEED(&a, "999999999999999999999999999999", 50);
    assert_true(a.acked <= 50);
    assert_true(ota_espota_acks_estimate(&a, 50) <= 50);
    ota_espota_acks_init(&a);
    FEED(&a, "14601460", 1460);
    assert_int_equal(ota_espota_acks_estimate(&a, 1460), 1460);
    FEED(&a, "123", 0); /* a bound below what was counted is taken as that */
    assert_true(a.acked <= 1460);
    ota_espota_acks_init(&a);
    FEED(&a, "5", 0);
    assert_int_equal(ota_espota_acks_estimate(&a, 0), 0);

    /* ESP8266 error line on TCP. */
    ota_espota_acks_init(&a);
    const char e[] = "4096ERROR[7]: MD5 Failed\n";
    assert_int_equal(FEED(&a, e, 4096), OTA_ESPOTA_VERDICT_ERROR);
    assert_string_equal(a.text, "ERROR[7]: MD5 Failed");
    /* ESP32 error text without newline: complete at end of stream. */
    ota_espota_acks_init(&a);
    const char f[] = "1460Receive Failed";
    assert_int_equal(FEED(&a, f, 1460), OTA_ESPOTA_VERDICT_NONE);
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
    /* Updater::_verifyEnd: header flash size > chip (ESP8266, every way in); the advice
     * says to build for the real flash size, not to retry */
    assert_int_equal(ota_espota_classify_error("ERROR[9]: new Flash config wrong, real size: "
                                               "1048576",
                                               &code, &adv),
                     -EINVAL);
    assert_int_equal(code, 9);
    assert_non_null(strstr(adv, "real flash size"));
    /* Update.begin: the running sketch's flash size is not the chip's */
    assert_int_equal(ota_espota_classify_error("ERROR[8]: Flash config wrong: real: 4194304, "
                                               "SDK: 1048576",
                                               &code, &adv),
                     -EIO);
    assert_int_equal(code, 8);
    assert_non_null(strstr(adv, "over serial"));
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
