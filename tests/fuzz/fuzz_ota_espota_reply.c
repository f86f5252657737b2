/*
 * fuzz_ota_espota_reply: the espota UDP reply parser, the TCP count/verdict
 * stream parser fed in arbitrary chunks, and the device error classifier.
 * Input: byte 0 seeds the chunk sizes and the mode, bytes 1..2 the bound
 * (bytes the device's TCP took; shifted left 8 when bit 7 of byte 0 is set, so
 * whole-image counts like 300032 fit), the rest is the device's stream (also
 * parsed as one datagram). Bit 6 of byte 0: the bound grows chunk by chunk up
 * to its value, as in a transfer. Aborts if the counted sum exceeds the bound
 * or goes back, depends on how the stream was chunked (fixed bound), or texts
 * overflow.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ota_espota.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond)
{
    if (!cond)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    unsigned seed = data[0];
    uint64_t bound = (uint64_t)data[1] << 8 | data[2];
    if (seed & 0x80)
        bound <<= 8;
    bool growing = (seed & 0x40) != 0;
    const uint8_t *in = data + 3;
    size_t len = size - 3;

    struct ota_espota_reply r;
    ota_espota_parse_reply(in, len, &r);
    check(strlen(r.text) < sizeof(r.text));
    if (r.kind == OTA_ESPOTA_REPLY_AUTH)
        check(r.nonce_len == 32 || r.nonce_len == 64);
    int code;
    const char *advice = NULL;
    int rc = ota_espota_classify_error(r.text, &code, &advice);
    check(rc < 0 && advice != NULL);

    struct ota_espota_acks a;
    ota_espota_acks_init(&a);
    size_t pos = 0;
    unsigned x = seed;
    enum ota_espota_verdict v = OTA_ESPOTA_VERDICT_NONE;
    uint64_t now_bound = growing ? bound / 8 : bound;
    while (pos < len && v == OTA_ESPOTA_VERDICT_NONE) {
        x = x * 1103515245u + 12345u;
        size_t chunk = 1 + (x >> 16) % 37;
        if (chunk > len - pos)
            chunk = len - pos;
        if (growing && now_bound < bound)
            now_bound += (bound - now_bound) / 4 + 1;
        uint64_t before = a.acked;
        v = ota_espota_acks_feed(&a, in + pos, chunk, now_bound);
        check(a.acked >= before);
        check(a.acked <= now_bound);
        check(ota_espota_acks_estimate(&a, now_bound) <= now_bound);
        check(a.pending_len <= OTA_ESPOTA_COUNT_DIGITS);
        check(a.text_len < sizeof(a.text));
        pos += chunk;
    }
    if (!growing) {
        /* The same bytes in one piece give the same split and verdict. */
        struct ota_espota_acks whole;
        ota_espota_acks_init(&whole);
        enum ota_espota_verdict wv = ota_espota_acks_feed(&whole, in, pos, bound);
        check(wv == v);
        check(whole.acked == a.acked);
        check(ota_espota_acks_estimate(&whole, UINT64_MAX) ==
              ota_espota_acks_estimate(&a, UINT64_MAX));
    }
    v = ota_espota_acks_finish(&a);
    if (v == OTA_ESPOTA_VERDICT_ERROR) {
        rc = ota_espota_classify_error(a.text, &code, &advice);
        check(rc < 0);
    }
    return 0;
}
