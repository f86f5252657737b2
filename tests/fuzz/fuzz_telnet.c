/*
 * fuzz_telnet: the Telnet / RFC 2217 parser (protocols/telnet.c) on whatever a
 * serial server could send, fed in arbitrary chunks, plus round trips.
 *
 * Input: byte 0 seeds the chunk sizes, byte 1 picks the options' starting
 * states, the rest is the stream. Aborts if the parser breaks an invariant:
 * more data out than in, a reply lost although the buffer was emptied before
 * each feed of at most TELNET_OUT_MAX - 2 bytes, a subnegotiation buffer
 * overrun, an escape/parse round trip that does not give the input back, or a
 * COM-PORT-OPTION answer framed by rfc2217_frame that does not parse.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "telnet.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond)
{
    if (!cond)
        abort();
}

static void client(struct telnet *tn, uint8_t flags)
{
    telnet_init(tn);
    telnet_accept(tn, TELNET_OPT_BINARY, true, true);
    telnet_accept(tn, TELNET_OPT_SGA, true, true);
    telnet_accept(tn, TELNET_OPT_COM_PORT, true, true);
    if (flags & 1)
        (void)telnet_request(tn, TELNET_OPT_COM_PORT, true, true);
    if (flags & 2)
        (void)telnet_request(tn, TELNET_OPT_BINARY, false, true);
    if (flags & 4)
        tn->him[TELNET_OPT_BINARY] = TELNET_Q_YES;
    if (flags & 8)
        tn->us[TELNET_OPT_BINARY] = TELNET_Q_YES;
    tn->out_len = 0;
}

static void parse_stream(const uint8_t *in, size_t len, uint8_t seed, uint8_t flags)
{
    static struct telnet tn;
    static uint8_t out[TELNET_OUT_MAX];
    client(&tn, flags);
    size_t pos = 0, total = 0;
    unsigned x = seed;
    while (pos < len) {
        x = x * 1103515245u + 12345u;
        size_t chunk = 1 + (x >> 16) % (TELNET_OUT_MAX - 2);
        if (seed & 1)
            chunk = 1 + chunk % 7; /* small pieces: every split point */
        if (chunk > len - pos)
            chunk = len - pos;
        size_t nd = telnet_rx(&tn, in + pos, chunk, out);
        check(nd <= chunk);
        check(tn.out_len <= chunk + 2 && tn.out_len % 3 == 0);
        check(tn.out_dropped == 0);
        check(tn.sb_len <= TELNET_SB_MAX);
        for (size_t i = 0; i < tn.out_len; i += 3)
            check(tn.out[i] == TELNET_IAC && tn.out[i + 1] >= TELNET_WILL);
        tn.out_len = 0; /* "sent" */
        total += nd;
        pos += chunk;
    }
    check(total <= len);
    for (size_t i = 0; i < 256; i++)
        check(tn.us[i] <= TELNET_Q_WANTYES && tn.him[i] <= TELNET_Q_WANTYES);
}

/* Escaped by one side and parsed by the other, the input comes back whole. */
static void roundtrip(const uint8_t *in, size_t len, uint8_t flags)
{
    static struct telnet tx, rx;
    client(&tx, 0);
    client(&rx, 0);
    bool binary = flags & 16;
    tx.us[TELNET_OPT_BINARY] = binary ? TELNET_Q_YES : TELNET_Q_NO;
    rx.him[TELNET_OPT_BINARY] = binary ? TELNET_Q_YES : TELNET_Q_NO;
    uint8_t *esc = malloc(2 * len + 1), *back = malloc(2 * len + 1);
    if (!esc || !back) {
        free(esc);
        free(back);
        return;
    }
    size_t used = 0, n = telnet_escape(&tx, in, len, esc, 2 * len, &used);
    check(used == len && n <= 2 * len);
    size_t nd = telnet_rx(&rx, esc, n, back);
    check(nd == len && memcmp(back, in, len) == 0);
    check(rx.out_len == 0 && rx.commands == 0);
    free(esc);
    free(back);
}

/* A server answer built from input bytes parses as one, or is counted as malformed. */
static void answer_frame(const uint8_t *in, size_t len)
{
    if (len < 1)
        return;
    static struct telnet tn;
    client(&tn, 0);
    uint8_t code = RFC2217_SERVER_OFFSET + in[0] % RFC2217_NCMDS;
    size_t vlen = len - 1 > 8 ? 8 : len - 1;
    uint8_t frame[32], sink[32];
    size_t n = rfc2217_frame(frame, sizeof(frame), code, in + 1, vlen);
    check(n >= 6 && n <= 6 + 2 * vlen);
    check(telnet_rx(&tn, frame, n, sink) == 0);
    unsigned cmd = code - RFC2217_SERVER_OFFSET;
    check(tn.cpo.answers[cmd] + tn.cpo.malformed == 1);
    if (cmd == RFC2217_SET_BAUDRATE && vlen == 4)
        check(tn.cpo.baud ==
              ((uint32_t)in[1] << 24 | (uint32_t)in[2] << 16 | (uint32_t)in[3] << 8 | in[4]));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    uint8_t seed = data[0], flags = data[1];
    const uint8_t *in = data + 2;
    size_t len = size - 2;
    parse_stream(in, len, seed, flags);
    roundtrip(in, len, flags);
    answer_frame(in, len);
    return 0;
}
