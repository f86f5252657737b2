/*
 * test_telnet: the Telnet / RFC 2217 layer (protocols/telnet.c) and the
 * rfc2217:// transport against a scripted server.
 *
 * Parser: IAC escaping both ways (also split across feeds), CR NUL outside
 * BINARY, option negotiation without loops (the server's opening as ser2net
 * 4.3 sends it, both sides asking at once, refusals, unknown options, ECHO
 * refused), subnegotiations split byte by byte, server answers (code + 100)
 * with their values, malformed and oversized subnegotiations, the reply-buffer
 * bound. Frames: exact bytes of SET-BAUDRATE / SET-CONTROL / PURGE-DATA, IAC
 * doubled inside values.
 *
 * Transport: a server thread on 127.0.0.1 that decodes the client's stream
 * with its own small decoder (not the code under test), records every
 * COM-PORT-OPTION command, answers like ser2net in front of a pty (no answer
 * to DTR/RTS changes, the rate in force for SET-BAUDRATE) and echoes data.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "telnet.h"
#include "transport.h"

#define IAC TELNET_IAC
#define WILL TELNET_WILL
#define WONT TELNET_WONT
#define DO TELNET_DO
#define DONT TELNET_DONT
#define SB TELNET_SB
#define SE TELNET_SE
#define CPO TELNET_OPT_COM_PORT

/* A client as transport_rfc2217.c sets it up: BINARY and SGA both ways, COM-PORT-OPTION. */
static void client_init(struct telnet *tn)
{
    telnet_init(tn);
    telnet_accept(tn, TELNET_OPT_BINARY, true, true);
    telnet_accept(tn, TELNET_OPT_SGA, true, true);
    telnet_accept(tn, CPO, true, true);
}

/* Feeds in one byte at a time (the hardest split), collecting data. */
static size_t feed_bytewise(struct telnet *tn, const uint8_t *in, size_t n, uint8_t *data)
{
    size_t nd = 0;
    for (size_t i = 0; i < n; i++)
        nd += telnet_rx(tn, in + i, 1, data + nd);
    return nd;
}

static void expect_out(struct telnet *tn, const uint8_t *want, size_t len)
{
    if (tn->out_len != len || memcmp(tn->out, want, len) != 0) {
        char got[256] = "";
        for (size_t i = 0; i < tn->out_len && i < 60; i++)
            snprintf(got + strlen(got), sizeof(got) - strlen(got), "%u ", tn->out[i]);
        fail_msg("replies: got [%s] (%zu bytes), want %zu bytes", got, tn->out_len, len);
    }
    tn->out_len = 0;
}

/* ---- data and escaping ---------------------------------------------------- */

static void test_plain_data_and_iac_unescape(void **state)
{
    (void)state;
    struct telnet tn;
    client_init(&tn);
    const uint8_t in[] = {'a', IAC, IAC, 'b', 0, IAC, IAC, IAC, IAC, 'c'};
    const uint8_t want[] = {'a', 0xFF, 'b', 0, 0xFF, 0xFF, 'c'};
    uint8_t data[sizeof(in)];
    assert_int_equal(telnet_rx(&tn, in, sizeof(in), data), sizeof(want));
    assert_memory_equal(data, want, sizeof(want));
    assert_int_equal(tn.out_len, 0);

    /* The same, split at every byte: an IAC at the end of one read pairs with the next. */
    client_init(&tn);
    memset(data, 0, sizeof(data));
    assert_int_equal(feed_bytewise(&tn, in, sizeof(in), data), sizeof(want));
    assert_memory_equal(data, want, sizeof(want));
}

static void test_escape_for_sending(void **state)
{
    (void)state;
    struct telnet tn;
    client_init(&tn);
    tn.us[TELNET_OPT_BINARY] = TELNET_Q_YES;
    const uint8_t in[] = {0xC0, IAC, '\r', 0, IAC, '\n'};
    uint8_t out[32];
    size_t used = 0;
    size_t n = telnet_escape(&tn, in, sizeof(in), out, sizeof(out), &used);
    const uint8_t bin[] = {0xC0, IAC, IAC, '\r', 0, IAC, IAC, '\n'};
    assert_int_equal(n, sizeof(bin));
    assert_int_equal(used, sizeof(in));
    assert_memory_equal(out, bin, sizeof(bin));

    /* Not transmitting BINARY: a CR goes as CR NUL (RFC 854). */
    tn.us[TELNET_OPT_BINARY] = TELNET_Q_NO;
    n = telnet_escape(&tn, in, sizeof(in), out, sizeof(out), &used);
    const uint8_t nvt[] = {0xC0, IAC, IAC, '\r', 0, 0, IAC, IAC, '\n'};
    assert_int_equal(n, sizeof(nvt));
    assert_memory_equal(out, nvt, sizeof(nvt));

    /* A byte is never split from its escape: with room for 2, 0xC0 goes, IAC waits. */
    tn.us[TELNET_OPT_BINARY] = TELNET_Q_YES;
    n = telnet_escape(&tn, in, sizeof(in), out, 2, &used);
    assert_int_equal(n, 1);
    assert_int_equal(used, 1);
    n = telnet_escape(&tn, in + 1, 1, out, 1, &used);
    assert_int_equal(n, 0);
    assert_int_equal(used, 0);
}

static void test_escape_roundtrip_random(void **state)
{
    (void)state;
    enum { LEN = 20000 };
    static uint8_t in[LEN], esc[2 * LEN], back[2 * LEN];
    unsigned x = 12345;
    for (size_t i = 0; i < LEN; i++) {
        x = x * 1103515245u + 12345u;
        /* a third of the bytes 0xFF, some CR and NUL */
        unsigned r = (x >> 16) % 9;
        in[i] = r < 3 ? 0xFF : r == 3 ? '\r' : r == 4 ? 0 : (uint8_t)(x >> 8);
    }
    for (int binary = 0; binary <= 1; binary++) {
        struct telnet tx, rx;
        client_init(&tx);
        client_init(&rx);
        tx.us[TELNET_OPT_BINARY] = binary ? TELNET_Q_YES : TELNET_Q_NO;
        rx.him[TELNET_OPT_BINARY] = binary ? TELNET_Q_YES : TELNET_Q_NO;
        size_t used = 0;
        size_t n = telnet_escape(&tx, in, LEN, esc, sizeof(esc), &used);
        assert_int_equal(used, LEN);
        /* Odd chunk sizes: escapes and CR NUL pairs land on every boundary. */
        size_t pos = 0, nd = 0, chunk = 1;
        while (pos < n) {
            size_t c = chunk < n - pos ? chunk : n - pos;
            nd += telnet_rx(&rx, esc + pos, c, back + nd);
            pos += c;
            chunk = chunk % 13 + 1;
        }
        assert_int_equal(nd, LEN);
        assert_memory_equal(back, in, LEN);
        assert_int_equal(rx.out_len, 0);
    }
}

static void test_cr_nul_outside_binary(void **state)
{
    (void)state;
    struct telnet tn;
    client_init(&tn);
    const uint8_t in[] = {'a', '\r', 0, 'b', '\r', '\n', 0, '\r', IAC, TELNET_NOP, 0};
    uint8_t data[sizeof(in)];
    size_t nd = telnet_rx(&tn, in, sizeof(in), data);
    /* CR NUL is a bare CR; a NUL after anything else is data; a command between CR and
     * NUL does not separate them. */
    const uint8_t want[] = {'a', '\r', 'b', '\r', '\n', 0, '\r'};
    assert_int_equal(nd, sizeof(want));
    assert_memory_equal(data, want, sizeof(want));

    /* With the server transmitting BINARY the NUL is data. */
    client_init(&tn);
    tn.him[TELNET_OPT_BINARY] = TELNET_Q_YES;
    const uint8_t bin[] = {'\r', 0};
    assert_int_equal(telnet_rx(&tn, bin, sizeof(bin), data), 2);
    assert_int_equal(data[1], 0);
}

static void test_other_commands_skipped(void **state)
{
    (void)state;
    struct telnet tn;
    client_init(&tn);
    const uint8_t in[] = {'x', IAC, TELNET_NOP, 'y',        IAC, TELNET_GA, IAC, TELNET_DM, 'z',
                          IAC, SE,  IAC,        TELNET_AYT, 7,   IAC,       12,  'w'};
    uint8_t data[sizeof(in)];
    size_t nd = telnet_rx(&tn, in, sizeof(in), data);
    assert_int_equal(nd, 5);
    assert_memory_equal(data, "xyz\aw", 5);
    assert_int_equal(tn.commands, 6);
    assert_int_equal(tn.out_len, 0);
}

/* ---- negotiation ------------------------------------------------------------ */

static void test_negotiation_ser2net_opening(void **state)
{
    (void)state;
    struct telnet tn;
    client_init(&tn);
    /* What ser2net 4.3.11's telnet(rfc2217) accepter sends on connect (captured). */
    const uint8_t opening[] = {IAC, WILL, 3,  IAC, DO,  3,    IAC, WILL, 1,  IAC, DONT,
                               1,   IAC,  DO, 0,   IAC, WILL, 0,   IAC,  DO, CPO};
    uint8_t data[sizeof(opening)];
    assert_int_equal(feed_bytewise(&tn, opening, sizeof(opening), data), 0);
    /* Agree to SGA and BINARY both ways and to COM-PORT-OPTION; refuse ECHO (the
     * server would send our bytes back); DONT ECHO about an option that is off: silence. */
    const uint8_t want[] = {IAC, DO,   3, IAC, WILL, 3, IAC, DONT, 1,
                            IAC, WILL, 0, IAC, DO,   0, IAC, WILL, CPO};
    expect_out(&tn, want, sizeof(want));
    assert_int_equal(tn.us[CPO], TELNET_Q_YES);
    assert_int_equal(tn.us[TELNET_OPT_BINARY], TELNET_Q_YES);
    assert_int_equal(tn.him[TELNET_OPT_BINARY], TELNET_Q_YES);
    assert_int_equal(tn.him[TELNET_OPT_ECHO], TELNET_Q_NO);
    assert_string_equal(telnet_q_to_string(TELNET_Q_YES), "yes");

    /* The server repeating itself gets no answer for what is on (no negotiation loop);
     * the offer of ECHO is refused again, which a server in state NO ignores. */
    assert_int_equal(telnet_rx(&tn, opening, sizeof(opening), data), 0);
    const uint8_t again[] = {IAC, DONT, 1};
    expect_out(&tn, again, sizeof(again));
}

static void test_negotiation_both_ask(void **state)
{
    (void)state;
    struct telnet tn;
    client_init(&tn);
    assert_int_equal(telnet_request(&tn, CPO, true, true), 0);
    assert_int_equal(telnet_request(&tn, TELNET_OPT_BINARY, true, true), 0);
    assert_int_equal(telnet_request(&tn, TELNET_OPT_BINARY, false, true), 0);
    const uint8_t req[] = {IAC, WILL, CPO, IAC, WILL, 0, IAC, DO, 0};
    expect_out(&tn, req, sizeof(req));
    assert_int_equal(tn.us[CPO], TELNET_Q_WANTYES);
    /* Pending: a second request is refused, not sent. */
    assert_int_equal(telnet_request(&tn, CPO, true, false), -EBUSY);
    assert_int_equal(tn.out_len, 0);

    /* The server asked at the same time: its DO/WILL answer ours, nothing is sent back. */
    const uint8_t server[] = {IAC, DO, 0, IAC, WILL, 0, IAC, DO, CPO};
    uint8_t data[sizeof(server)];
    assert_int_equal(telnet_rx(&tn, server, sizeof(server), data), 0);
    assert_int_equal(tn.out_len, 0);
    assert_int_equal(tn.us[CPO], TELNET_Q_YES);
    assert_int_equal(tn.us[0], TELNET_Q_YES);
    assert_int_equal(tn.him[0], TELNET_Q_YES);
    /* Asking for what is already on sends nothing. */
    assert_int_equal(telnet_request(&tn, CPO, true, true), 0);
    assert_int_equal(tn.out_len, 0);

    /* Turning BINARY off: WONT, and the server's DONT completes it silently. */
    assert_int_equal(telnet_request(&tn, 0, true, false), 0);
    const uint8_t off[] = {IAC, WONT, 0};
    expect_out(&tn, off, sizeof(off));
    const uint8_t ack[] = {IAC, DONT, 0};
    assert_int_equal(telnet_rx(&tn, ack, sizeof(ack), data), 0);
    assert_int_equal(tn.us[0], TELNET_Q_NO);
    assert_int_equal(tn.out_len, 0);
}

static void test_negotiation_refusals(void **state)
{
    (void)state;
    struct telnet tn;
    client_init(&tn);
    assert_int_equal(telnet_request(&tn, CPO, true, true), 0);
    tn.out_len = 0;
    /* A plain telnet server: refuses COM-PORT-OPTION, asks for terminal type (24),
     * offers ECHO and status (5). */
    const uint8_t in[] = {IAC, DONT, CPO, IAC, DO, 24, IAC, WILL, 1, IAC, WILL, 5};
    uint8_t data[sizeof(in)];
    assert_int_equal(telnet_rx(&tn, in, sizeof(in), data), 0);
    assert_int_equal(tn.us[CPO], TELNET_Q_NO);
    const uint8_t want[] = {IAC, WONT, 24, IAC, DONT, 1, IAC, DONT, 5};
    expect_out(&tn, want, sizeof(want));

    /* The server takes back an option that was on: we confirm, once. */
    tn.him[TELNET_OPT_BINARY] = TELNET_Q_YES;
    const uint8_t wont[] = {IAC, WONT, 0, IAC, WONT, 0};
    assert_int_equal(telnet_rx(&tn, wont, sizeof(wont), data), 0);
    const uint8_t dont[] = {IAC, DONT, 0};
    expect_out(&tn, dont, sizeof(dont));
    assert_int_equal(tn.him[TELNET_OPT_BINARY], TELNET_Q_NO);

    /* Answering our "off" with "on" is an error: the option stays off, no reply. */
    tn.us[TELNET_OPT_SGA] = TELNET_Q_WANTNO;
    const uint8_t bad[] = {IAC, DO, 3};
    assert_int_equal(telnet_rx(&tn, bad, sizeof(bad), data), 0);
    assert_int_equal(tn.us[TELNET_OPT_SGA], TELNET_Q_NO);
    assert_int_equal(tn.out_len, 0);
}

static void test_reply_buffer_bound(void **state)
{
    (void)state;
    struct telnet tn;
    client_init(&tn);
    /* TELNET_OUT_MAX - 2 bytes of "IAC DO 24" (each refused: WONT 24, the option
     * stays off, so every one is answered) split so a command straddles the feeds. */
    enum { N = TELNET_OUT_MAX - 2 };
    static uint8_t in[N + 3], data[N + 3];
    for (size_t i = 0; i + 3 <= sizeof(in); i += 3) {
        in[i] = IAC;
        in[i + 1] = DO;
        in[i + 2] = 24;
    }
    /* 2 bytes now, then N bytes: the replies for them fit in an empty buffer. */
    assert_int_equal(telnet_rx(&tn, in, 2, data), 0);
    assert_int_equal(telnet_rx(&tn, in + 2, N, data), 1); /* its last byte is a lone NUL */
    assert_true(tn.out_len <= N + 2);
    assert_int_equal(tn.out_len % 3, 0);
    assert_int_equal(tn.out_dropped, 0);
    /* Not emptied before the next feed: the overflow is counted, never written past. */
    assert_int_equal(telnet_rx(&tn, in, sizeof(in) - 3, data), 0);
    assert_true(tn.out_dropped > 0);
    assert_true(tn.out_len <= TELNET_OUT_MAX);
}

/* ---- RFC 2217 frames and answers ---------------------------------------- */

static void test_frames(void **state)
{
    (void)state;
    uint8_t f[32];
    const uint8_t baud[] = {IAC, SB, 44, 1, 0x00, 0x0E, 0x10, 0x00, IAC, SE}; /* 921600 */
    assert_int_equal(rfc2217_frame_baud(f, sizeof(f), 921600), sizeof(baud));
    assert_memory_equal(f, baud, sizeof(baud));
    const uint8_t b255[] = {IAC, SB, 44, 1, 0x00, 0x01, IAC, IAC, IAC, IAC, IAC, SE};
    assert_int_equal(rfc2217_frame_baud(f, sizeof(f), 0x1FFFF), sizeof(b255));
    assert_memory_equal(f, b255, sizeof(b255));
    const uint8_t dtr[] = {IAC, SB, 44, 5, 8, IAC, SE};
    assert_int_equal(rfc2217_frame_u8(f, sizeof(f), RFC2217_SET_CONTROL, RFC2217_CONTROL_DTR_ON),
                     sizeof(dtr));
    assert_memory_equal(f, dtr, sizeof(dtr));
    const uint8_t rts_off[] = {IAC, SB, 44, 5, 12, IAC, SE};
    assert_int_equal(rfc2217_frame_u8(f, sizeof(f), RFC2217_SET_CONTROL, RFC2217_CONTROL_RTS_OFF),
                     sizeof(rts_off));
    assert_memory_equal(f, rts_off, sizeof(rts_off));
    const uint8_t purge[] = {IAC, SB, 44, 12, 1, IAC, SE};
    assert_int_equal(rfc2217_frame_u8(f, sizeof(f), RFC2217_PURGE_DATA, RFC2217_PURGE_RX),
                     sizeof(purge));
    assert_memory_equal(f, purge, sizeof(purge));
    /* The other values the transport uses, against the RFC's tables. */
    assert_int_equal(RFC2217_CONTROL_DTR_OFF, 9);
    assert_int_equal(RFC2217_CONTROL_RTS_ON, 11);
    assert_int_equal(RFC2217_CONTROL_NO_FLOW, 1);
    assert_int_equal(RFC2217_SET_DATASIZE, 2);
    assert_int_equal(RFC2217_SET_PARITY, 3);
    assert_int_equal(RFC2217_SET_STOPSIZE, 4);
    /* Too small a buffer: nothing written. */
    assert_int_equal(rfc2217_frame_baud(f, sizeof(baud) - 1, 921600), 0);
    assert_int_equal(rfc2217_frame_baud(f, sizeof(b255) - 1, 0x1FFFF), 0);
}

static void test_server_answers(void **state)
{
    (void)state;
    struct telnet tn;
    client_init(&tn);
    /* Answers as ser2net sent them (captured), with data between and around them. */
    const uint8_t in[] = {'<', IAC, SB, 44,  101, 0,   14, 16, 0,   IAC,  SE,  '|', IAC, SB,
                          44,  112, 1,  IAC, SE,  IAC, SB, 44, 102, 8,    IAC, SE,  IAC, SB,
                          44,  103, 1,  IAC, SE,  IAC, SB, 44, 104, 1,    IAC, SE,  IAC, SB,
                          44,  105, 1,  IAC, SE,  IAC, SB, 44, 107, 0x30, IAC, SE,  '>'};
    uint8_t data[sizeof(in)];
    assert_int_equal(feed_bytewise(&tn, in, sizeof(in), data), 3);
    assert_memory_equal(data, "<|>", 3);
    assert_int_equal(tn.cpo.baud, 921600);
    assert_int_equal(tn.cpo.answers[RFC2217_SET_BAUDRATE], 1);
    assert_int_equal(tn.cpo.purge, 1);
    assert_int_equal(tn.cpo.answers[RFC2217_PURGE_DATA], 1);
    assert_int_equal(tn.cpo.datasize, 8);
    assert_int_equal(tn.cpo.parity, 1);
    assert_int_equal(tn.cpo.stopsize, 1);
    assert_int_equal(tn.cpo.control, 1);
    assert_int_equal(tn.cpo.modemstate, 0x30);
    assert_int_equal(tn.cpo.malformed, 0);
    assert_int_equal(tn.out_len, 0);

    /* A rate whose bytes include 0xFF arrives doubled inside the subnegotiation. */
    const uint8_t odd[] = {IAC, SB, 44, 101, 0, 1, IAC, IAC, IAC, IAC, IAC, SE};
    assert_int_equal(telnet_rx(&tn, odd, sizeof(odd), data), 0);
    assert_int_equal(tn.cpo.baud, 0x1FFFF);
    assert_int_equal(tn.cpo.answers[RFC2217_SET_BAUDRATE], 2);

    /* Flow control notifications. */
    const uint8_t susp[] = {IAC, SB, 44, 108, IAC, SE};
    const uint8_t resume[] = {IAC, SB, 44, 109, IAC, SE};
    telnet_rx(&tn, susp, sizeof(susp), data);
    assert_true(tn.cpo.suspended);
    telnet_rx(&tn, resume, sizeof(resume), data);
    assert_false(tn.cpo.suspended);
    assert_int_equal(tn.cpo.malformed, 0);
}

static void test_malformed_subnegotiations(void **state)
{
    (void)state;
    struct telnet tn;
    client_init(&tn);
    uint8_t data[256];
    /* Wrong lengths and unknown codes: counted, nothing changes. */
    const uint8_t bad[] = {IAC, SB, 44, 101, 0,  14,  16,  IAC, SE, /* baud with 3 bytes */
                           IAC, SB, 44, 102, 8,  8,   IAC, SE,      /* datasize with 2 */
                           IAC, SB, 44, 99,  1,  IAC, SE,           /* below 100 */
                           IAC, SB, 44, 113, 1,  IAC, SE,           /* above 112 */
                           IAC, SB, 44, IAC, SE,                    /* empty */
                           IAC, SB, 44, 108, 1,  IAC, SE};          /* suspend with a value */
    assert_int_equal(telnet_rx(&tn, bad, sizeof(bad), data), 0);
    assert_int_equal(tn.cpo.malformed, 6);
    assert_int_equal(tn.cpo.baud, 0);
    assert_int_equal(tn.cpo.datasize, 0);
    assert_false(tn.cpo.suspended);
    for (size_t i = 0; i < RFC2217_NCMDS; i++)
        assert_int_equal(tn.cpo.answers[i], 0);

    /* Another option's subnegotiation (terminal type): ignored. */
    const uint8_t tt[] = {IAC, SB, 24, 1, IAC, SE, 'k'};
    assert_int_equal(telnet_rx(&tn, tt, sizeof(tt), data), 1);
    assert_int_equal(data[0], 'k');
    assert_int_equal(tn.sb_ignored, 1);

    /* Longer than TELNET_SB_MAX: dropped whole, the parser stays in step. */
    uint8_t lng[TELNET_SB_MAX + 20];
    size_t n = 0;
    lng[n++] = IAC;
    lng[n++] = SB;
    lng[n++] = 44;
    lng[n++] = 101;
    while (n < sizeof(lng) - 3)
        lng[n++] = 7;
    lng[n++] = IAC;
    lng[n++] = SE;
    lng[n++] = 'q';
    assert_int_equal(telnet_rx(&tn, lng, n, data), 1);
    assert_int_equal(data[0], 'q');
    assert_int_equal(tn.sb_malformed, 1);
    assert_int_equal(tn.cpo.answers[RFC2217_SET_BAUDRATE], 0);

    /* Never ended: IAC WILL inside drops the subnegotiation and is negotiated. */
    const uint8_t unended[] = {IAC, SB, 44, 101, 0, IAC, WILL, 24, 'r'};
    assert_int_equal(telnet_rx(&tn, unended, sizeof(unended), data), 1);
    assert_int_equal(data[0], 'r');
    assert_int_equal(tn.sb_malformed, 2);
    const uint8_t dont24[] = {IAC, DONT, 24};
    expect_out(&tn, dont24, sizeof(dont24));
    /* IAC IAC inside a value is one 0xFF byte of it. */
    const uint8_t ffval[] = {IAC, SB, 44, 102, IAC, IAC, IAC, SE};
    telnet_rx(&tn, ffval, sizeof(ffval), data);
    assert_int_equal(tn.cpo.datasize, 0xFF);
}

/* ---- the transport against a scripted server ------------------------------- */

enum fake_mode { FAKE_SER2NET, FAKE_REFUSE, FAKE_HANGUP };

struct fake {
    enum fake_mode mode;
    int ls;
    uint16_t port;
    pthread_t th;
    pthread_mutex_t mu;
    /* what the client sent: COM-PORT-OPTION commands (code, first value byte), the
     * rates asked for, the data (unescaped) */
    uint8_t cmd[64][2];
    size_t ncmd;
    uint32_t baud[16];
    size_t nbaud;
    size_t ndata;
    bool echo;
    /* server's decoder state (its own, independent of telnet.c) */
    int st;
    uint8_t sb[32];
    size_t sblen;
    int fd;
};

static void fake_send(struct fake *f, const uint8_t *b, size_t n)
{
    while (n > 0) {
        ssize_t w = send(f->fd, b, n, MSG_NOSIGNAL);
        if (w <= 0)
            return;
        b += w;
        n -= (size_t)w;
    }
}

/* A client command: record it and answer as ser2net does in front of a pty. */
static void fake_command(struct fake *f)
{
    if (f->sblen < 2 || f->sb[0] != CPO)
        return;
    uint8_t code = f->sb[1];
    pthread_mutex_lock(&f->mu);
    if (f->ncmd < 64) {
        f->cmd[f->ncmd][0] = code;
        f->cmd[f->ncmd][1] = f->sblen > 2 ? f->sb[2] : 0;
        f->ncmd++;
    }
    pthread_mutex_unlock(&f->mu);
    uint8_t a[16] = {IAC, SB, CPO, (uint8_t)(code + 100)};
    size_t n = 4;
    if (code == RFC2217_SET_BAUDRATE && f->sblen == 6) {
        uint32_t b = (uint32_t)f->sb[2] << 24 | (uint32_t)f->sb[3] << 16 | (uint32_t)f->sb[4] << 8 |
                     f->sb[5];
        pthread_mutex_lock(&f->mu);
        if (f->nbaud < 16)
            f->baud[f->nbaud++] = b;
        pthread_mutex_unlock(&f->mu);
        if (b == 1234)
            b = 115200; /* a rate the port cannot do: the answer says what is in force */
        for (int i = 3; i >= 0; i--) {
            a[n++] = (uint8_t)(b >> (8 * i));
            if (a[n - 1] == IAC)
                a[n++] = IAC;
        }
    } else if (code == RFC2217_SET_CONTROL && f->sblen == 3 && f->sb[2] >= 8) {
        return; /* DTR/RTS on a pty: ser2net's ioctl fails and it does not answer */
    } else {
        for (size_t i = 2; i < f->sblen; i++)
            a[n++] = f->sb[i];
    }
    a[n++] = IAC;
    a[n++] = SE;
    fake_send(f, a, n);
}

static void fake_data(struct fake *f, uint8_t b)
{
    pthread_mutex_lock(&f->mu);
    f->ndata++;
    bool echo = f->echo;
    pthread_mutex_unlock(&f->mu);
    if (echo) {
        uint8_t e[2] = {b, IAC};
        fake_send(f, e, b == IAC ? 2 : 1);
    }
}

static void fake_feed(struct fake *f, const uint8_t *in, size_t n)
{
    enum { D, I, O, S, SI };
    for (size_t i = 0; i < n; i++) {
        uint8_t b = in[i];
        switch (f->st) {
        case D:
            if (b == IAC)
                f->st = I;
            else
                fake_data(f, b);
            break;
        case I:
            if (b == IAC) {
                fake_data(f, b);
                f->st = D;
            } else if (b >= WILL) {
                f->st = O;
            } else if (b == SB) {
                f->sblen = 0;
                f->st = S;
            } else {
                f->st = D;
            }
            break;
        case O:
            f->st = D; /* the client's negotiation: the opening already said it all */
            break;
        case S:
            if (b == IAC)
                f->st = SI;
            else if (f->sblen < sizeof(f->sb))
                f->sb[f->sblen++] = b;
            break;
        case SI:
            if (b == SE) {
                fake_command(f);
                f->st = D;
            } else {
                if (f->sblen < sizeof(f->sb))
                    f->sb[f->sblen++] = b;
                f->st = S;
            }
            break;
        }
    }
}

static void *fake_main(void *arg)
{
    struct fake *f = arg;
    f->fd = accept(f->ls, NULL, NULL);
    if (f->fd < 0)
        return NULL;
    if (f->mode == FAKE_HANGUP) {
        close(f->fd);
        return NULL;
    }
    static const uint8_t ser2net_opening[] = {IAC,  WILL, 3,    IAC,  DO,  3,   IAC,
                                              WILL, 1,    IAC,  DONT, 1,   IAC, DO,
                                              0,    IAC,  WILL, 0,    IAC, DO,  CPO};
    static const uint8_t refusing[] = {IAC, WILL, 3, IAC, DONT, CPO};
    if (f->mode == FAKE_REFUSE)
        fake_send(f, refusing, sizeof(refusing));
    else
        fake_send(f, ser2net_opening, sizeof(ser2net_opening));
    uint8_t buf[4096];
    for (;;) {
        ssize_t n = recv(f->fd, buf, sizeof(buf), 0);
        if (n <= 0)
            break;
        fake_feed(f, buf, (size_t)n);
    }
    close(f->fd);
    return NULL;
}

static void fake_start(struct fake *f, enum fake_mode mode)
{
    memset(f, 0, sizeof(*f));
    f->mode = mode;
    pthread_mutex_init(&f->mu, NULL);
    f->ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(f->ls >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(f->ls, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(f->ls, 1), 0);
    socklen_t sl = sizeof(sa);
    assert_int_equal(getsockname(f->ls, (struct sockaddr *)&sa, &sl), 0);
    f->port = ntohs(sa.sin_port);
    assert_int_equal(pthread_create(&f->th, NULL, fake_main, f), 0);
}

static void fake_stop(struct fake *f)
{
    pthread_join(f->th, NULL);
    close(f->ls);
    pthread_mutex_destroy(&f->mu);
}

static size_t fake_ncmd(struct fake *f)
{
    pthread_mutex_lock(&f->mu);
    size_t n = f->ncmd;
    pthread_mutex_unlock(&f->mu);
    return n;
}

/* Waits (up to 5 s) until the server has seen n commands. */
static void fake_wait_cmds(struct fake *f, size_t n)
{
    for (int i = 0; i < 500 && fake_ncmd(f) < n; i++)
        usleep(10000);
    assert_true(fake_ncmd(f) >= n);
}

static void read_exact(struct transport *t, uint8_t *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        int rc = transport_read(t, buf + got, n - got, 5000);
        if (rc <= 0)
            fail_msg("read returned %d after %zu of %zu bytes", rc, got, n);
        got += (size_t)rc;
    }
}

static void test_transport_ser2net_like(void **state)
{
    (void)state;
    struct fake f;
    fake_start(&f, FAKE_SER2NET);
    char uri[64];
    snprintf(uri, sizeof(uri), "rfc2217://127.0.0.1:%u", f.port);
    struct transport *t = NULL;
    struct esp_error err;
    esp_error_clear(&err);
    int rc = transport_open(uri, 115200, &t, &err);
    if (rc != 0)
        fail_msg("open: %d %s", rc, err.message);
    assert_int_equal(t->kind, TRANSPORT_RFC2217);
    assert_true(t->caps & TRANSPORT_CAP_BAUD);
    assert_true(t->caps & TRANSPORT_CAP_MODEM_LINES);
    assert_false(t->caps & TRANSPORT_CAP_REOPEN);
    assert_int_equal(t->baud, 115200);
    assert_non_null(strstr(t->description, "RFC 2217 serial server 127.0.0.1:"));

    /* 8N1, no flow control, then the rate transport_open asked for (it waited for
     * the answer, so all five are there). */
    fake_wait_cmds(&f, 5);
    static const uint8_t opening[5][2] = {{2, 8}, {3, 1}, {4, 1}, {5, 1}, {1, 0}};
    assert_memory_equal(f.cmd, opening, sizeof(opening));
    assert_int_equal(f.baud[0], 115200);

    /* A rate the server takes, and one it answers with another rate. */
    assert_int_equal(transport_set_baud(t, 921600), 0);
    assert_int_equal(t->baud, 921600);
    assert_int_equal(transport_set_baud(t, 1234), -EINVAL);
    assert_int_equal(t->baud, 921600);
    assert_int_equal(f.baud[1], 921600);
    assert_int_equal(f.baud[2], 1234);

    /* DTR/RTS: sent at once, DTR first; no answer needed (a pty's server gives none). */
    size_t before = fake_ncmd(&f);
    assert_int_equal(transport_set_lines(t, 1, 0), 0);
    assert_int_equal(transport_set_lines(t, -1, 1), 0);
    assert_int_equal(transport_set_lines(t, 0, -1), 0);
    assert_int_equal(transport_set_lines(t, -1, -1), 0);
    fake_wait_cmds(&f, before + 4);
    static const uint8_t lines[4][2] = {{5, 8}, {5, 12}, {5, 11}, {5, 9}};
    assert_memory_equal(f.cmd[before], lines, sizeof(lines));
    assert_int_equal(transport_drain(t), 0);
    assert_int_equal(transport_reopen(t, 10), -ENOTSUP);

    /* Every byte value both ways: 0xFF escaped by us, unescaped by the server, echoed
     * escaped by it, unescaped by us. */
    pthread_mutex_lock(&f.mu);
    f.echo = true;
    pthread_mutex_unlock(&f.mu);
    uint8_t all[512], back[512];
    for (size_t i = 0; i < sizeof(all); i++)
        all[i] = (uint8_t)(i % 2 ? 0xFF : i / 2);
    assert_int_equal(transport_write(t, all, sizeof(all), 2000), (int)sizeof(all));
    read_exact(t, back, sizeof(back));
    assert_memory_equal(back, all, sizeof(all));
    assert_int_equal(f.ndata, sizeof(all));

    /* flush_input: PURGE-DATA(1) answered; what was echoed before it is gone. */
    assert_int_equal(transport_write(t, (const uint8_t *)"stale", 5, 2000), 5);
    before = fake_ncmd(&f);
    assert_int_equal(transport_flush_input(t), 0);
    assert_int_equal(fake_ncmd(&f), before + 1);
    assert_int_equal(f.cmd[before][0], RFC2217_PURGE_DATA);
    assert_int_equal(f.cmd[before][1], RFC2217_PURGE_RX);
    uint8_t b;
    assert_int_equal(transport_read(t, &b, 1, 100), 0);
    /* Data read while waiting for an answer is kept for the next read. */
    assert_int_equal(transport_write(t, (const uint8_t *)"kept", 4, 2000), 4);
    assert_int_equal(transport_set_baud(t, 460800), 0);
    read_exact(t, back, 4);
    assert_memory_equal(back, "kept", 4);

    transport_close(t);
    fake_stop(&f);
}

static void test_transport_refused(void **state)
{
    (void)state;
    struct fake f;
    fake_start(&f, FAKE_REFUSE);
    char uri[64];
    snprintf(uri, sizeof(uri), "rfc2217://127.0.0.1:%u", f.port);
    struct transport *t = NULL;
    struct esp_error err;
    esp_error_clear(&err);
    assert_int_equal(transport_open(uri, 115200, &t, &err), -EPROTONOSUPPORT);
    assert_null(t);
    assert_non_null(strstr(err.message, "refused the COM-PORT-OPTION"));
    assert_non_null(strstr(err.advice, "telnet(rfc2217)"));
    fake_stop(&f);

    fake_start(&f, FAKE_HANGUP);
    snprintf(uri, sizeof(uri), "rfc2217://127.0.0.1:%u", f.port);
    esp_error_clear(&err);
    int rc = transport_open(uri, 115200, &t, &err);
    assert_true(rc < 0);
    assert_null(t);
    assert_non_null(strstr(err.message, "closed the connection"));
    fake_stop(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_data_and_iac_unescape),
        cmocka_unit_test(test_escape_for_sending),
        cmocka_unit_test(test_escape_roundtrip_random),
        cmocka_unit_test(test_cr_nul_outside_binary),
        cmocka_unit_test(test_other_commands_skipped),
        cmocka_unit_test(test_negotiation_ser2net_opening),
        cmocka_unit_test(test_negotiation_both_ask),
        cmocka_unit_test(test_negotiation_refusals),
        cmocka_unit_test(test_reply_buffer_bound),
        cmocka_unit_test(test_frames),
        cmocka_unit_test(test_server_answers),
        cmocka_unit_test(test_malformed_subnegotiations),
        cmocka_unit_test(test_transport_ser2net_like),
        cmocka_unit_test(test_transport_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
