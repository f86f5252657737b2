/*
 * transport_rfc2217: a board behind a serial server that speaks the Telnet
 * COM-PORT-OPTION (RFC 2217), e.g. ser2net with `accepter: telnet(rfc2217),tcp,PORT`.
 * Unlike raw tcp:// the station then controls the server's serial port: the
 * baud (SET-BAUDRATE), 8N1 without flow control, DTR/RTS (SET-CONTROL, so the
 * auto-reset circuit works) and purging the server's receive buffer.
 *
 * URI: rfc2217://host:port (host a name, IPv4 or [IPv6]); connecting is
 * transport_tcp.c's (5 s budget, TCP_NODELAY, keepalive).
 *
 * Open: we ask WILL COM-PORT-OPTION, WILL/DO BINARY (so 0xFF is the only byte
 * that needs escaping and CR travels unchanged) and WILL/DO SUPPRESS-GO-AHEAD,
 * refuse everything else (ECHO above all), and wait up to 3 s for the server's
 * DO COM-PORT-OPTION. A server that refuses it, or says nothing (a raw TCP
 * port), fails the open with advice. Then 8 data bits, no parity, 1 stop bit
 * and no flow control are requested; transport_open sets the baud afterwards.
 *
 * Acknowledgements (the server answers each command with code + 100 and the
 * value in force): set_baud waits for SET-BAUDRATE's answer (3 s) and fails
 * with -EINVAL when the server runs another rate, -ETIMEDOUT when it never
 * answers. set_lines does not wait: a server whose port has no modem lines (a
 * pty behind ser2net) sends no answer at all, and the reset sequences need
 * their timing, not a round trip per edge. flush_input sends PURGE-DATA(1)
 * and discards everything up to its answer, so bytes already in flight from
 * the server are dropped too; a server that does not answer within 1 s is not
 * waited for again.
 *
 * Data received while waiting for an answer is kept (up to PEND_MAX, the rest
 * is dropped and counted) and handed out by the next read. Server
 * notifications (NOTIFY-LINESTATE/MODEMSTATE, FLOWCONTROL-SUSPEND/RESUME) are
 * recorded in the parser state and otherwise ignored; TCP flow control
 * already paces us. End of stream or a reset connection means the board is
 * gone: -ENODEV from then on.
 */
#include "telnet.h"
#include "transport_priv.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NEGOTIATE_TIMEOUT_MS 3000
#define BAUD_ACK_TIMEOUT_MS 3000
#define PURGE_ACK_TIMEOUT_MS 1000
#define CONTROL_WRITE_TIMEOUT_MS 2000
/* Raw bytes fed to the parser at once: leaves room for its replies (telnet.h). */
#define RAW_CHUNK 2048
#define PEND_MAX (64 * 1024)
#define TX_CHUNK 8192
/* flush_input reads away at most this much, so a flood cannot pin us. */
#define DISCARD_LIMIT (1024 * 1024)

struct rfc_priv {
    struct tp_fd io; /* first: tp_sock_close/tp_sock_drain read it */
    struct telnet tn;
    bool purge_answers; /* the server answered PURGE-DATA so far: wait for it */
    uint64_t pend_dropped;
    size_t pend_off, pend_len;
    uint8_t pend[PEND_MAX]; /* data that arrived while waiting for an answer */
    uint8_t raw[RAW_CHUNK];
    uint8_t data[RAW_CHUNK];
    uint8_t tx[TX_CHUNK];
};

static struct rfc_priv *priv_of(struct transport *t)
{
    return t->priv;
}

/* Sends bytes that are not data (negotiation, COM-PORT-OPTION frames) as they are. */
static int send_raw(struct transport *t, const uint8_t *buf, size_t len)
{
    if (len == 0)
        return 0;
    int rc = tp_fd_write(&priv_of(t)->io, t->cancel_fd, buf, len, CONTROL_WRITE_TIMEOUT_MS);
    return rc < 0 ? rc : 0;
}

/* Sends the parser's queued replies and requests. */
static int send_replies(struct transport *t)
{
    struct telnet *tn = &priv_of(t)->tn;
    int rc = send_raw(t, tn->out, tn->out_len);
    tn->out_len = 0;
    return rc;
}

static void pend_put(struct rfc_priv *p, const uint8_t *d, size_t n)
{
    if (p->pend_off > 0 && p->pend_off == p->pend_len)
        p->pend_off = p->pend_len = 0;
    size_t room = sizeof(p->pend) - p->pend_len;
    if (n > room && p->pend_off > 0) {
        memmove(p->pend, p->pend + p->pend_off, p->pend_len - p->pend_off);
        p->pend_len -= p->pend_off;
        p->pend_off = 0;
        room = sizeof(p->pend) - p->pend_len;
    }
    size_t take = n < room ? n : room;
    memcpy(p->pend + p->pend_len, d, take);
    p->pend_len += take;
    p->pend_dropped += n - take;
}

/*
 * Reads one chunk (waiting up to timeout_ms), runs it through the parser and
 * sends what the parser has to answer. Data goes to p->data; *ndata says how
 * much. Returns >0 (raw bytes read), 0 on timeout, -ENODEV, -ECANCELED, -EIO.
 */
static int pump(struct transport *t, size_t cap, int timeout_ms, size_t *ndata)
{
    struct rfc_priv *p = priv_of(t);
    *ndata = 0;
    if (cap > sizeof(p->raw))
        cap = sizeof(p->raw);
    int n = tp_fd_read(&p->io, t->cancel_fd, p->raw, cap, timeout_ms);
    if (n <= 0)
        return n;
    *ndata = telnet_rx(&p->tn, p->raw, (size_t)n, p->data);
    int rc = send_replies(t);
    return rc < 0 ? rc : n;
}

static int64_t left_ms(int64_t deadline)
{
    int64_t left = deadline - tp_now_ms();
    return left > 0 ? left : 0;
}

/*
 * Waits until the server has answered command cmd once more than `seen`
 * (keep_data: the data meanwhile goes to pend; else it is thrown away).
 * Returns 0, -ETIMEDOUT, or the pump's error.
 */
static int wait_answer(struct transport *t, unsigned cmd, unsigned seen, int timeout_ms,
                       bool keep_data)
{
    struct rfc_priv *p = priv_of(t);
    int64_t deadline = tp_now_ms() + timeout_ms;
    while (p->tn.cpo.answers[cmd] == seen) {
        int64_t left = left_ms(deadline);
        if (left == 0)
            return -ETIMEDOUT;
        size_t nd = 0;
        int rc = pump(t, sizeof(p->raw), (int)left, &nd);
        if (rc < 0)
            return rc;
        if (keep_data)
            pend_put(p, p->data, nd);
    }
    return 0;
}

static int rfc_write(struct transport *t, const uint8_t *buf, size_t len, int timeout_ms)
{
    struct rfc_priv *p = priv_of(t);
    if (p->io.gone || p->io.fd < 0)
        return -ENODEV;
    int64_t deadline = timeout_ms < 0 ? -1 : tp_now_ms() + timeout_ms;
    size_t done = 0;
    while (done < len) {
        size_t used = 0;
        size_t n = telnet_escape(&p->tn, buf + done, len - done, p->tx, sizeof(p->tx), &used);
        int tmo = deadline < 0 ? -1 : (int)left_ms(deadline);
        if (deadline >= 0 && tmo == 0)
            return -ETIMEDOUT;
        int rc = tp_fd_write(&p->io, t->cancel_fd, p->tx, n, tmo);
        if (rc < 0)
            return rc;
        done += used;
    }
    return (int)len;
}

static int rfc_read(struct transport *t, uint8_t *buf, size_t cap, int timeout_ms)
{
    struct rfc_priv *p = priv_of(t);
    if (cap == 0)
        return 0;
    if (p->pend_off < p->pend_len) {
        size_t n = p->pend_len - p->pend_off;
        if (n > cap)
            n = cap;
        memcpy(buf, p->pend + p->pend_off, n);
        p->pend_off += n;
        return (int)n;
    }
    int64_t deadline = timeout_ms < 0 ? -1 : tp_now_ms() + timeout_ms;
    for (;;) {
        int tmo = deadline < 0 ? -1 : (int)left_ms(deadline);
        size_t nd = 0;
        /* At most cap raw bytes: the data in them fits in buf. */
        int rc = pump(t, cap, tmo, &nd);
        if (rc <= 0)
            return rc;
        if (nd > 0) {
            memcpy(buf, p->data, nd);
            return (int)nd;
        }
        if (deadline >= 0 && left_ms(deadline) == 0)
            return 0; /* only telnet commands arrived */
    }
}

static int rfc_set_baud(struct transport *t, uint32_t baud)
{
    struct rfc_priv *p = priv_of(t);
    if (p->io.gone)
        return -ENODEV;
    uint8_t f[16];
    size_t n = rfc2217_frame_baud(f, sizeof(f), baud);
    unsigned seen = p->tn.cpo.answers[RFC2217_SET_BAUDRATE];
    int rc = send_raw(t, f, n);
    if (rc == 0)
        rc = wait_answer(t, RFC2217_SET_BAUDRATE, seen, BAUD_ACK_TIMEOUT_MS, true);
    if (rc < 0)
        return rc;
    /* The answer carries the rate in force: another one means the port refused ours. */
    return p->tn.cpo.baud == baud ? 0 : -EINVAL;
}

static int rfc_set_lines(struct transport *t, int dtr, int rts)
{
    struct rfc_priv *p = priv_of(t);
    if (p->io.gone)
        return -ENODEV;
    if (p->tn.us[TELNET_OPT_COM_PORT] != TELNET_Q_YES)
        return -ENOTSUP;
    uint8_t f[24];
    size_t n = 0;
    /* DTR first, as a serial library's setDTR() then setRTS() would. */
    if (dtr >= 0)
        n += rfc2217_frame_u8(f + n, sizeof(f) - n, RFC2217_SET_CONTROL,
                              dtr ? RFC2217_CONTROL_DTR_ON : RFC2217_CONTROL_DTR_OFF);
    if (rts >= 0)
        n += rfc2217_frame_u8(f + n, sizeof(f) - n, RFC2217_SET_CONTROL,
                              rts ? RFC2217_CONTROL_RTS_ON : RFC2217_CONTROL_RTS_OFF);
    return send_raw(t, f, n);
}

/* Parses and drops whatever is readable now (bounded). */
static int discard_available(struct transport *t)
{
    struct rfc_priv *p = priv_of(t);
    size_t total = 0;
    while (total < DISCARD_LIMIT) {
        size_t nd = 0;
        int rc = pump(t, sizeof(p->raw), 0, &nd);
        if (rc <= 0)
            return rc;
        total += (size_t)rc;
    }
    return 0;
}

static int rfc_flush_input(struct transport *t)
{
    struct rfc_priv *p = priv_of(t);
    if (p->io.gone || p->io.fd < 0)
        return -ENODEV;
    p->pend_off = p->pend_len = 0;
    if (p->purge_answers && p->tn.us[TELNET_OPT_COM_PORT] == TELNET_Q_YES) {
        uint8_t f[16];
        size_t n = rfc2217_frame_u8(f, sizeof(f), RFC2217_PURGE_DATA, RFC2217_PURGE_RX);
        unsigned seen = p->tn.cpo.answers[RFC2217_PURGE_DATA];
        int rc = send_raw(t, f, n);
        if (rc == 0)
            rc = wait_answer(t, RFC2217_PURGE_DATA, seen, PURGE_ACK_TIMEOUT_MS, false);
        if (rc == -ETIMEDOUT)
            p->purge_answers = false; /* a late answer is parsed like any other */
        else if (rc < 0)
            return rc;
    }
    return discard_available(t);
}

static const struct transport_ops rfc_ops = {
    .write = rfc_write,
    .read = rfc_read,
    .set_baud = rfc_set_baud,
    .set_lines = rfc_set_lines,
    .flush_input = rfc_flush_input,
    .drain = tp_sock_drain,
    .reopen = tp_sock_no_reopen,
    .close = tp_sock_close,
};

/* Option negotiation up to the server's DO COM-PORT-OPTION. 0 or -errno with err. */
static int negotiate(struct transport *t, const char *host, const char *port, struct esp_error *err)
{
    struct rfc_priv *p = priv_of(t);
    struct telnet *tn = &p->tn;
    static const uint8_t both[] = {TELNET_OPT_BINARY, TELNET_OPT_SGA};
    for (size_t i = 0; i < sizeof(both); i++) {
        telnet_accept(tn, both[i], true, true);
        (void)telnet_request(tn, both[i], true, true);
        (void)telnet_request(tn, both[i], false, true);
    }
    /* The server may offer WILL COM-PORT-OPTION too; harmless to agree. */
    telnet_accept(tn, TELNET_OPT_COM_PORT, true, true);
    (void)telnet_request(tn, TELNET_OPT_COM_PORT, true, true);
    int rc = send_replies(t);

    int64_t deadline = tp_now_ms() + NEGOTIATE_TIMEOUT_MS;
    while (rc >= 0 && tn->us[TELNET_OPT_COM_PORT] == TELNET_Q_WANTYES) {
        int64_t left = left_ms(deadline);
        if (left == 0)
            return esp_error_set(err, -EPROTO, ESP_STAGE_OPEN,
                                 "is it an RFC 2217 port (ser2net: accepter telnet(rfc2217),tcp,"
                                 "PORT)? for a raw TCP port write tcp://host:port",
                                 "the serial server at %s:%s did not negotiate RFC 2217 within "
                                 "%d s",
                                 host, port, NEGOTIATE_TIMEOUT_MS / 1000);
        size_t nd = 0;
        rc = pump(t, sizeof(p->raw), (int)left, &nd);
        pend_put(p, p->data, nd); /* a banner, or the board talking: the engine flushes it */
    }
    if (rc < 0)
        return esp_error_set(err, rc == -ENODEV ? -ECONNRESET : rc, ESP_STAGE_OPEN,
                             "check the serial server's log: another client may hold the port",
                             "the serial server at %s:%s closed the connection during telnet "
                             "negotiation",
                             host, port);
    if (tn->us[TELNET_OPT_COM_PORT] != TELNET_Q_YES)
        return esp_error_set(err, -EPROTONOSUPPORT, ESP_STAGE_OPEN,
                             "enable RFC 2217 on the server (ser2net: accepter "
                             "telnet(rfc2217),tcp,PORT), or write tcp://host:port for raw TCP",
                             "the serial server at %s:%s refused the COM-PORT-OPTION (RFC 2217)",
                             host, port);

    /* 8N1, no flow control; answers are parsed whenever they come. */
    uint8_t f[64];
    size_t n = 0;
    n += rfc2217_frame_u8(f + n, sizeof(f) - n, RFC2217_SET_DATASIZE, 8);
    n += rfc2217_frame_u8(f + n, sizeof(f) - n, RFC2217_SET_PARITY, RFC2217_PARITY_NONE);
    n += rfc2217_frame_u8(f + n, sizeof(f) - n, RFC2217_SET_STOPSIZE, RFC2217_STOPSIZE_1);
    n += rfc2217_frame_u8(f + n, sizeof(f) - n, RFC2217_SET_CONTROL, RFC2217_CONTROL_NO_FLOW);
    rc = send_raw(t, f, n);
    if (rc < 0)
        return esp_error_set(err, rc == -ENODEV ? -ECONNRESET : rc, ESP_STAGE_OPEN, NULL,
                             "the serial server at %s:%s closed the connection", host, port);
    return 0;
}

int tp_rfc2217_open(const char *uri, const char *hostport, struct transport **out,
                    struct esp_error *err)
{
    char host[192], port[8];
    int s = tp_tcp_connect(uri, hostport, "rfc2217", host, sizeof(host), port, sizeof(port), err);
    if (s < 0)
        return s;

    struct transport *t = tp_alloc(TRANSPORT_RFC2217, &rfc_ops, uri);
    struct rfc_priv *p = calloc(1, sizeof(*p));
    if (!t || !p) {
        free(t);
        free(p);
        close(s);
        return esp_error_set(err, -ENOMEM, ESP_STAGE_OPEN, NULL, "out of memory");
    }
    t->priv = p;
    p->io.fd = s;
    p->io.is_socket = true;
    p->purge_answers = true;
    telnet_init(&p->tn);
    t->caps = TRANSPORT_CAP_MODEM_LINES | TRANSPORT_CAP_BAUD;
    snprintf(t->description, sizeof(t->description), "RFC 2217 serial server %.96s:%s", host, port);

    int rc = negotiate(t, host, port, err);
    if (rc < 0) {
        tp_sock_close(t);
        return rc;
    }
    *out = t;
    return 0;
}
