/*
 * fuzz_ota_espota_reply: the espota UDP reply parser, the TCP ack/verdict
 * stream parser fed in arbitrary chunks, and the device error classifier.
 * Input: byte 0 seeds the chunk sizes, byte 1..2 the bytes "sent", the rest
 * is the device's stream (also parsed as one datagram). Aborts if the ack
 * estimate exceeds the bytes sent or what the digits can mean, depends on
 * how the stream was chunked, or texts overflow.
 */
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
    uint64_t sent = (uint64_t)data[1] << 8 | data[2];
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
    while (pos < len && v == OTA_ESPOTA_VERDICT_NONE) {
        x = x * 1103515245u + 12345u;
        size_t chunk = 1 + (x >> 16) % 37;
        if (chunk > len - pos)
            chunk = len - pos;
        v = ota_espota_acks_feed(&a, in + pos, chunk);
        check(ota_espota_acks_estimate(&a, sent) <= sent);
        /* every count has at least one digit and is at most OTA_ESPOTA_MAX_ACK */
        check(ota_espota_acks_estimate(&a, UINT64_MAX) <= a.ack_bytes * OTA_ESPOTA_MAX_ACK);
        check(a.text_len < sizeof(a.text));
        pos += chunk;
    }
    /* The same bytes in one piece give the same estimate and verdict. */
    struct ota_espota_acks whole;
    ota_espota_acks_init(&whole);
    enum ota_espota_verdict wv = ota_espota_acks_feed(&whole, in, pos);
    check(wv == v);
    check(ota_espota_acks_estimate(&whole, UINT64_MAX) == ota_espota_acks_estimate(&a, UINT64_MAX));
    v = ota_espota_acks_finish(&a);
    if (v == OTA_ESPOTA_VERDICT_ERROR) {
        rc = ota_espota_classify_error(a.text, &code, &advice);
        check(rc < 0);
    }
    return 0;
}
