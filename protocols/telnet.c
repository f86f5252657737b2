/*
 * telnet: the byte-level Telnet parser, option negotiation (RFC 1143 Q method
 * without the queue bit: a second request while one is pending is refused with
 * -EBUSY) and the RFC 2217 COM-PORT-OPTION frames. See telnet.h for the
 * invariants; nothing here does I/O.
 */
#include "telnet.h"

#include <errno.h>
#include <string.h>

enum parse_state {
    ST_DATA = 0,
    ST_IAC,     /* after IAC */
    ST_OPT,     /* after IAC WILL/WONT/DO/DONT: the option byte */
    ST_SB_OPT,  /* after IAC SB: the option byte */
    ST_SB_DATA, /* inside a subnegotiation */
    ST_SB_IAC,  /* IAC inside a subnegotiation */
};

const char *telnet_q_to_string(enum telnet_q q)
{
    switch (q) {
    case TELNET_Q_NO:
        return "no";
    case TELNET_Q_YES:
        return "yes";
    case TELNET_Q_WANTNO:
        return "wantno";
    case TELNET_Q_WANTYES:
        return "wantyes";
    }
    return "unknown";
}

void telnet_init(struct telnet *tn)
{
    memset(tn, 0, sizeof(*tn));
}

static void bit_set(uint8_t *set, uint8_t opt, bool on)
{
    if (on)
        set[opt / 8] |= (uint8_t)(1u << (opt % 8));
    else
        set[opt / 8] &= (uint8_t) ~(1u << (opt % 8));
}

static bool bit_get(const uint8_t *set, uint8_t opt)
{
    return (set[opt / 8] >> (opt % 8)) & 1u;
}

void telnet_accept(struct telnet *tn, uint8_t opt, bool us, bool him)
{
    bit_set(tn->accept_us, opt, us);
    bit_set(tn->accept_him, opt, him);
}

/* Queues IAC cmd opt. Returns 0 or -ENOSPC (counted in out_dropped). */
static int send_cmd(struct telnet *tn, uint8_t cmd, uint8_t opt)
{
    if (tn->out_len + 3 > sizeof(tn->out)) {
        tn->out_dropped++;
        return -ENOSPC;
    }
    tn->out[tn->out_len++] = TELNET_IAC;
    tn->out[tn->out_len++] = cmd;
    tn->out[tn->out_len++] = opt;
    return 0;
}

int telnet_request(struct telnet *tn, uint8_t opt, bool us, bool enable)
{
    uint8_t *q = us ? &tn->us[opt] : &tn->him[opt];
    uint8_t yes = us ? TELNET_WILL : TELNET_DO, no = us ? TELNET_WONT : TELNET_DONT;
    if (*q == TELNET_Q_WANTNO || *q == TELNET_Q_WANTYES)
        return -EBUSY;
    if (enable && *q == TELNET_Q_NO) {
        int rc = send_cmd(tn, yes, opt);
        if (rc == 0)
            *q = TELNET_Q_WANTYES;
        return rc;
    }
    if (!enable && *q == TELNET_Q_YES) {
        int rc = send_cmd(tn, no, opt);
        if (rc == 0)
            *q = TELNET_Q_WANTNO;
        return rc;
    }
    return 0;
}

/*
 * The peer said WILL/WONT (about itself: our `him` state) or DO/DONT (about
 * us). RFC 1143 section 7, without the queue bit.
 */
static void negotiate(struct telnet *tn, uint8_t cmd, uint8_t opt)
{
    bool about_us = cmd == TELNET_DO || cmd == TELNET_DONT;
    bool enable = cmd == TELNET_WILL || cmd == TELNET_DO;
    uint8_t *q = about_us ? &tn->us[opt] : &tn->him[opt];
    bool accept = bit_get(about_us ? tn->accept_us : tn->accept_him, opt);
    uint8_t yes = about_us ? TELNET_WILL : TELNET_DO, no = about_us ? TELNET_WONT : TELNET_DONT;

    if (enable) {
        switch (*q) {
        case TELNET_Q_NO:
            if (accept) {
                if (send_cmd(tn, yes, opt) == 0)
                    *q = TELNET_Q_YES;
            } else {
                (void)send_cmd(tn, no, opt);
            }
            break;
        case TELNET_Q_YES:
            break; /* already on: no reply, or we would loop */
        case TELNET_Q_WANTNO:
            *q = TELNET_Q_NO; /* the peer answered our "off" with "on": an error, stay off */
            break;
        case TELNET_Q_WANTYES:
            *q = TELNET_Q_YES;
            break;
        }
    } else {
        switch (*q) {
        case TELNET_Q_NO:
            break;
        case TELNET_Q_YES:
            if (send_cmd(tn, no, opt) == 0)
                *q = TELNET_Q_NO;
            break;
        case TELNET_Q_WANTNO:
        case TELNET_Q_WANTYES: /* refused */
            *q = TELNET_Q_NO;
            break;
        }
    }
}

/* A server answer: code + 100 with the value in force. */
static void com_port_answer(struct telnet *tn, const uint8_t *v, size_t len)
{
    struct rfc2217_state *c = &tn->cpo;
    if (len < 1 || v[0] < RFC2217_SERVER_OFFSET || v[0] >= RFC2217_SERVER_OFFSET + RFC2217_NCMDS) {
        c->malformed++;
        return;
    }
    unsigned cmd = v[0] - RFC2217_SERVER_OFFSET;
    const uint8_t *val = v + 1;
    size_t vlen = len - 1;
    size_t want;
    switch (cmd) {
    case RFC2217_SIGNATURE:
        want = vlen; /* free text */
        break;
    case RFC2217_SET_BAUDRATE:
        want = 4;
        break;
    case RFC2217_FLOWCONTROL_SUSPEND:
    case RFC2217_FLOWCONTROL_RESUME:
        want = 0;
        break;
    default:
        want = 1;
        break;
    }
    if (vlen != want) {
        c->malformed++;
        return;
    }
    switch (cmd) {
    case RFC2217_SET_BAUDRATE:
        c->baud = (uint32_t)val[0] << 24 | (uint32_t)val[1] << 16 | (uint32_t)val[2] << 8 | val[3];
        break;
    case RFC2217_SET_DATASIZE:
        c->datasize = val[0];
        break;
    case RFC2217_SET_PARITY:
        c->parity = val[0];
        break;
    case RFC2217_SET_STOPSIZE:
        c->stopsize = val[0];
        break;
    case RFC2217_SET_CONTROL:
        c->control = val[0];
        break;
    case RFC2217_NOTIFY_LINESTATE:
        c->linestate = val[0];
        break;
    case RFC2217_NOTIFY_MODEMSTATE:
        c->modemstate = val[0];
        break;
    case RFC2217_FLOWCONTROL_SUSPEND:
        c->suspended = true;
        break;
    case RFC2217_FLOWCONTROL_RESUME:
        c->suspended = false;
        break;
    case RFC2217_PURGE_DATA:
        c->purge = val[0];
        break;
    default:
        break; /* SIGNATURE, the mask echoes: nothing to keep */
    }
    c->answers[cmd]++;
}

static void subnegotiation_end(struct telnet *tn)
{
    if (tn->sb_overflow) {
        tn->sb_malformed++;
        return;
    }
    if (tn->sb_opt == TELNET_OPT_COM_PORT)
        com_port_answer(tn, tn->sb, tn->sb_len);
    else
        tn->sb_ignored++;
}

static void sb_append(struct telnet *tn, uint8_t b)
{
    if (tn->sb_len < sizeof(tn->sb))
        tn->sb[tn->sb_len++] = b;
    else
        tn->sb_overflow = true;
}

/* One data byte from the peer: drops the NUL of CR NUL unless it sends BINARY. */
static size_t data_byte(struct telnet *tn, uint8_t b, uint8_t *out)
{
    bool binary = tn->him[TELNET_OPT_BINARY] == TELNET_Q_YES;
    bool drop = !binary && tn->cr && b == 0;
    tn->cr = !binary && b == '\r';
    if (drop)
        return 0;
    *out = b;
    return 1;
}

/* The byte after IAC (outside a subnegotiation). */
static size_t after_iac(struct telnet *tn, uint8_t b, uint8_t *out)
{
    switch (b) {
    case TELNET_IAC:
        tn->state = ST_DATA;
        return data_byte(tn, TELNET_IAC, out);
    case TELNET_WILL:
    case TELNET_WONT:
    case TELNET_DO:
    case TELNET_DONT:
        tn->cmd = b;
        tn->state = ST_OPT;
        return 0;
    case TELNET_SB:
        tn->state = ST_SB_OPT;
        return 0;
    default:
        /* NOP, DM, GA, BRK, ... and stray SE or codes below 240: nothing to do. */
        tn->commands++;
        tn->state = ST_DATA;
        return 0;
    }
}

size_t telnet_rx(struct telnet *tn, const uint8_t *in, size_t n, uint8_t *data)
{
    size_t nd = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t b = in[i];
        switch (tn->state) {
        case ST_DATA:
            if (b == TELNET_IAC)
                tn->state = ST_IAC;
            else
                nd += data_byte(tn, b, data + nd);
            break;
        case ST_IAC:
            nd += after_iac(tn, b, data + nd);
            break;
        case ST_OPT:
            negotiate(tn, tn->cmd, b);
            tn->state = ST_DATA;
            break;
        case ST_SB_OPT:
            tn->sb_opt = b;
            tn->sb_len = 0;
            tn->sb_overflow = false;
            tn->state = ST_SB_DATA;
            break;
        case ST_SB_DATA:
            if (b == TELNET_IAC)
                tn->state = ST_SB_IAC;
            else
                sb_append(tn, b);
            break;
        case ST_SB_IAC:
            if (b == TELNET_SE) {
                subnegotiation_end(tn);
                tn->state = ST_DATA;
            } else if (b == TELNET_IAC) {
                sb_append(tn, TELNET_IAC);
                tn->state = ST_SB_DATA;
            } else {
                /* IAC <command> inside SB: the subnegotiation was never ended.
                 * Drop it and take the command as an ordinary one. */
                tn->sb_malformed++;
                nd += after_iac(tn, b, data + nd);
            }
            break;
        default:
            tn->state = ST_DATA;
            break;
        }
    }
    return nd;
}

size_t telnet_escape(const struct telnet *tn, const uint8_t *in, size_t n, uint8_t *out, size_t cap,
                     size_t *used)
{
    bool binary = tn->us[TELNET_OPT_BINARY] == TELNET_Q_YES;
    size_t o = 0, i = 0;
    for (; i < n; i++) {
        uint8_t b = in[i];
        size_t need = (b == TELNET_IAC || (!binary && b == '\r')) ? 2 : 1;
        if (o + need > cap)
            break;
        out[o++] = b;
        if (b == TELNET_IAC)
            out[o++] = TELNET_IAC;
        else if (need == 2)
            out[o++] = 0; /* CR NUL: a bare CR in NVT ASCII */
    }
    if (used)
        *used = i;
    return o;
}

size_t rfc2217_frame(uint8_t *out, size_t cap, uint8_t cmd, const uint8_t *value, size_t vlen)
{
    size_t need = 6;
    for (size_t i = 0; i < vlen; i++)
        need += value[i] == TELNET_IAC ? 2 : 1;
    if (need > cap)
        return 0;
    size_t o = 0;
    out[o++] = TELNET_IAC;
    out[o++] = TELNET_SB;
    out[o++] = TELNET_OPT_COM_PORT;
    out[o++] = cmd;
    for (size_t i = 0; i < vlen; i++) {
        out[o++] = value[i];
        if (value[i] == TELNET_IAC)
            out[o++] = TELNET_IAC;
    }
    out[o++] = TELNET_IAC;
    out[o++] = TELNET_SE;
    return o;
}

size_t rfc2217_frame_u8(uint8_t *out, size_t cap, uint8_t cmd, uint8_t value)
{
    return rfc2217_frame(out, cap, cmd, &value, 1);
}

size_t rfc2217_frame_baud(uint8_t *out, size_t cap, uint32_t baud)
{
    uint8_t v[4] = {(uint8_t)(baud >> 24), (uint8_t)(baud >> 16), (uint8_t)(baud >> 8),
                    (uint8_t)baud};
    return rfc2217_frame(out, cap, RFC2217_SET_BAUDRATE, v, sizeof(v));
}
