/*
 * telnet: the Telnet layer a serial-server client needs, as pure bytes-in /
 * bytes-out code (no I/O, no clock, no allocation), so it can be unit-tested
 * and fuzzed alone. transport_rfc2217.c drives it over a TCP socket.
 *
 * What it covers:
 *  - RFC 854: IAC (255) commands in the data stream, IAC IAC = data byte 255;
 *    "CR NUL" means a bare CR unless the sender transmits BINARY (RFC 856).
 *  - RFC 855 subnegotiation IAC SB <option> ... IAC SE, IAC IAC inside it.
 *  - Option negotiation (WILL/WONT/DO/DONT) with RFC 1143's Q method, so two
 *    sides that both ask at once never loop: a reply is sent only when the
 *    option's state changes. Which options we agree to is the caller's list
 *    (telnet_accept); everything else is refused (WONT/DONT), ECHO included,
 *    so the server never echoes our data back into the stream.
 *  - RFC 2217 COM-PORT-OPTION (44): the client frames (SET-BAUDRATE with a
 *    4-byte network-order value, SET-DATASIZE, SET-PARITY, SET-STOPSIZE,
 *    SET-CONTROL, PURGE-DATA) and the server's answers (the same code + 100,
 *    carrying the value now in force), which update struct rfc2217_state.
 *
 * Invariants:
 *  - telnet_rx writes at most n data bytes for n input bytes, and queues at
 *    most n + 2 reply bytes (a 3-byte reply only answers a 3-byte command, of
 *    which at most 2 bytes came in an earlier feed), so a caller that empties
 *    tn->out before each feed of at most TELNET_OUT_MAX - 2 bytes never loses
 *    a reply (out_dropped counts the ones that did not fit).
 *  - A subnegotiation longer than TELNET_SB_MAX is delivered as malformed
 *    (dropped and counted), never overflows.
 *  - Server answers of the wrong length, or for unknown codes, are counted in
 *    rfc2217_state.malformed and change nothing.
 */
#ifndef TELNET_H
#define TELNET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* RFC 854 command codes (each follows IAC). */
#define TELNET_SE 240
#define TELNET_NOP 241
#define TELNET_DM 242
#define TELNET_BRK 243
#define TELNET_IP 244
#define TELNET_AO 245
#define TELNET_AYT 246
#define TELNET_EC 247
#define TELNET_EL 248
#define TELNET_GA 249
#define TELNET_SB 250
#define TELNET_WILL 251
#define TELNET_WONT 252
#define TELNET_DO 253
#define TELNET_DONT 254
#define TELNET_IAC 255

/* Options. */
#define TELNET_OPT_BINARY 0    /* RFC 856 */
#define TELNET_OPT_ECHO 1      /* RFC 857 */
#define TELNET_OPT_SGA 3       /* RFC 858, suppress go-ahead */
#define TELNET_OPT_COM_PORT 44 /* RFC 2217 */

/* RFC 2217 client-to-server command codes; the server answers with code + 100. */
enum rfc2217_cmd {
    RFC2217_SIGNATURE = 0,
    RFC2217_SET_BAUDRATE = 1, /* 4 bytes, network order; 0 = ask */
    RFC2217_SET_DATASIZE = 2, /* 5..8; 0 = ask */
    RFC2217_SET_PARITY = 3,   /* 1 none, 2 odd, 3 even, 4 mark, 5 space; 0 = ask */
    RFC2217_SET_STOPSIZE = 4, /* 1 one, 2 two, 3 one and a half; 0 = ask */
    RFC2217_SET_CONTROL = 5,  /* RFC2217_CONTROL_* */
    RFC2217_NOTIFY_LINESTATE = 6,
    RFC2217_NOTIFY_MODEMSTATE = 7,
    RFC2217_FLOWCONTROL_SUSPEND = 8,
    RFC2217_FLOWCONTROL_RESUME = 9,
    RFC2217_SET_LINESTATE_MASK = 10,
    RFC2217_SET_MODEMSTATE_MASK = 11,
    RFC2217_PURGE_DATA = 12, /* 1 server's receive buffer, 2 transmit, 3 both */
};
#define RFC2217_NCMDS 13
#define RFC2217_SERVER_OFFSET 100

#define RFC2217_PARITY_NONE 1
#define RFC2217_STOPSIZE_1 1
#define RFC2217_CONTROL_NO_FLOW 1 /* outbound/both */
#define RFC2217_CONTROL_DTR_ON 8
#define RFC2217_CONTROL_DTR_OFF 9
#define RFC2217_CONTROL_RTS_ON 11
#define RFC2217_CONTROL_RTS_OFF 12
#define RFC2217_PURGE_RX 1 /* data the server received from the serial port */

/* RFC 1143 option state of one side. */
enum telnet_q {
    TELNET_Q_NO = 0,
    TELNET_Q_YES,
    TELNET_Q_WANTNO,
    TELNET_Q_WANTYES,
};
const char *telnet_q_to_string(enum telnet_q q);

/* What the server last told us about its port (its answers, code + 100). */
struct rfc2217_state {
    uint32_t baud;
    uint8_t datasize, parity, stopsize, control, purge;
    uint8_t linestate, modemstate;   /* last NOTIFY-* values */
    bool suspended;                  /* FLOWCONTROL-SUSPEND seen, no RESUME since */
    unsigned answers[RFC2217_NCMDS]; /* answers received per command (SET-BAUDRATE at [1]) */
    unsigned malformed;              /* answers of the wrong length or unknown code */
};

#define TELNET_SB_MAX 64
#define TELNET_OUT_MAX 4096

struct telnet {
    uint8_t us[256];                       /* enum telnet_q: options we perform (WILL side) */
    uint8_t him[256];                      /* enum telnet_q: options the peer performs (DO side) */
    uint8_t accept_us[32], accept_him[32]; /* bitsets: agree when asked */
    /* parser */
    uint8_t state;
    uint8_t cmd; /* WILL/WONT/DO/DONT awaiting its option */
    bool cr;     /* last data byte was CR (for CR NUL outside BINARY) */
    uint8_t sb_opt;
    uint8_t sb[TELNET_SB_MAX];
    size_t sb_len;
    bool sb_overflow;
    /* replies and requests to send, in order; the caller sends and clears them */
    uint8_t out[TELNET_OUT_MAX];
    size_t out_len;
    unsigned out_dropped;
    /* counters */
    unsigned commands;     /* other IAC commands seen (NOP, GA, DM, ...), ignored */
    unsigned sb_malformed; /* subnegotiations that were too long or not ended by IAC SE */
    unsigned sb_ignored;   /* well-formed subnegotiations of options we do not handle */
    struct rfc2217_state cpo;
};

/* Clears everything: all options off, nothing accepted. */
void telnet_init(struct telnet *tn);

/* Agree to opt when the peer asks: `us` for DO opt (we will), `him` for WILL opt. */
void telnet_accept(struct telnet *tn, uint8_t opt, bool us, bool him);

/* Asks for a change of opt on our side (us: WILL/WONT) or the peer's (DO/DONT),
 * queueing the request in tn->out. Returns 0 (sent, or already so), -EBUSY while
 * an earlier request for that side of opt is unanswered, -ENOSPC if out is full. */
int telnet_request(struct telnet *tn, uint8_t opt, bool us, bool enable);

/* Parses n received bytes: data bytes go to data (room for n), replies to
 * negotiation are queued in tn->out, RFC 2217 answers update tn->cpo.
 * Returns the number of data bytes. */
size_t telnet_rx(struct telnet *tn, const uint8_t *in, size_t n, uint8_t *data);

/* Escapes data for sending: IAC doubled, CR sent as CR NUL unless we transmit
 * BINARY. Writes at most cap bytes; *used tells how much of in went out (a
 * byte is never split from its escape). Returns the bytes written. */
size_t telnet_escape(const struct telnet *tn, const uint8_t *in, size_t n, uint8_t *out, size_t cap,
                     size_t *used);

/* IAC SB COM-PORT-OPTION cmd <value, IAC doubled> IAC SE into out. Returns its
 * length, or 0 when it does not fit in cap (at most 6 + 2 * vlen bytes). */
size_t rfc2217_frame(uint8_t *out, size_t cap, uint8_t cmd, const uint8_t *value, size_t vlen);
/* The same with a one-byte value, and SET-BAUDRATE's 4-byte network-order value. */
size_t rfc2217_frame_u8(uint8_t *out, size_t cap, uint8_t cmd, uint8_t value);
size_t rfc2217_frame_baud(uint8_t *out, size_t cap, uint32_t baud);

#endif
