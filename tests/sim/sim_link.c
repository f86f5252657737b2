/*
 * sim_link: the serial wire between host and board.
 *
 * Owns the pty (or the TCP client socket) and models the UART line in both
 * directions. Every byte takes 10 bit times at the board's baud divided by
 * the link-speed factor F (F = 0: no pacing). Host->board bytes are read from
 * the fd as soon as the kernel has them, then become "arrived" only when
 * their wire time has elapsed; board->host bytes are queued as chunks (one
 * chunk = one SLIP frame or one piece of boot text) and written to the fd
 * only when their wire time has elapsed. Time is kept as a deadline clock
 * (completion time of the last byte), so pacing does not drift and the loop
 * only wakes at frame ends.
 * Wrong baud: when the host's baud (read from the pty termios) differs from
 * the baud a byte is sent at by more than 3 %, the byte the other side sees
 * is garbage: outgoing bytes are replaced by random ones, incoming bytes are
 * flagged so the board can drop the frame (or auto-baud on a SYNC).
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <termios.h>
#include <unistd.h>

#include "sim.h"

#define RX_CAP 65536
#define OUT_CAP (256 * 1024)
#define TX_WAKE_BYTES 512
#define RX_WAKE_BYTES 1024
#define TX_QUEUE_MAX (4u << 20)

static int link_alloc(struct sim_link *l, double speed)
{
    l->speed = speed;
    l->rx_cap = RX_CAP;
    l->rx = malloc(RX_CAP);
    l->rx_garbled = malloc(RX_CAP);
    l->rx_baud = malloc(RX_CAP * sizeof(uint32_t));
    l->out_cap = OUT_CAP;
    l->out = malloc(OUT_CAP);
    l->rng = 0x9E3779B9u;
    if (!l->rx || !l->rx_garbled || !l->rx_baud || !l->out)
        return -1;
    return 0;
}

int sim_link_open_pty(struct sim_link *l, double speed)
{
    l->master_fd = l->slave_fd = l->listen_fd = -1;
    if (link_alloc(l, speed) != 0)
        return -1;
    return sim_link_pty_new(l);
}

/* USB re-enumeration: the port goes away with everything in flight. */
void sim_link_pty_drop(struct sim_link *l)
{
    sim_link_drop_tx(l);
    sim_link_drop_rx(l);
    l->out_len = 0;
    if (l->master_fd >= 0)
        close(l->master_fd);
    if (l->slave_fd >= 0)
        close(l->slave_fd);
    l->master_fd = l->slave_fd = -1;
    l->slave_path[0] = '\0';
}

int sim_link_pty_new(struct sim_link *l)
{
    l->master_fd = posix_openpt(O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
    if (l->master_fd < 0 || grantpt(l->master_fd) != 0 || unlockpt(l->master_fd) != 0)
        return -1;
    if (ptsname_r(l->master_fd, l->slave_path, sizeof(l->slave_path)) != 0)
        return -1;
    /* Our own slave fd: the master never sees HUP while no host has the port
     * open, and it is where the host's termios (baud) can be read. */
    l->slave_fd = open(l->slave_path, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
    if (l->slave_fd < 0)
        return -1;
    struct termios t;
    if (tcgetattr(l->slave_fd, &t) == 0) {
        cfmakeraw(&t);
        cfsetispeed(&t, B115200);
        cfsetospeed(&t, B115200);
        tcsetattr(l->slave_fd, TCSANOW, &t);
    }
    return 0;
}

int sim_link_open_master(struct sim_link *l, int master_fd, double speed)
{
    l->master_fd = l->slave_fd = l->listen_fd = -1;
    if (link_alloc(l, speed) != 0)
        return -1;
    /* A pty master created by someone else (a umockdev testbed): same as
     * sim_link_open_pty from here on, our own slave fd included. */
    int fl = fcntl(master_fd, F_GETFL);
    if (fl < 0 || fcntl(master_fd, F_SETFL, fl | O_NONBLOCK) != 0)
        return -1;
    fcntl(master_fd, F_SETFD, FD_CLOEXEC);
    l->master_fd = master_fd;
    if (ptsname_r(master_fd, l->slave_path, sizeof(l->slave_path)) != 0)
        return -1;
    l->slave_fd = open(l->slave_path, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
    if (l->slave_fd < 0)
        return -1;
    struct termios t;
    if (tcgetattr(l->slave_fd, &t) == 0) {
        cfmakeraw(&t);
        cfsetispeed(&t, B115200);
        cfsetospeed(&t, B115200);
        tcsetattr(l->slave_fd, TCSANOW, &t);
    }
    return 0;
}

int sim_link_open_tcp(struct sim_link *l, int port, int *actual_port, double speed)
{
    l->tcp = true;
    l->master_fd = l->slave_fd = -1;
    if (link_alloc(l, speed) != 0)
        return -1;
    l->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (l->listen_fd < 0)
        return -1;
    int one = 1;
    setsockopt(l->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)port);
    if (bind(l->listen_fd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(l->listen_fd, 4) != 0)
        return -1;
    socklen_t alen = sizeof(a);
    if (getsockname(l->listen_fd, (struct sockaddr *)&a, &alen) != 0)
        return -1;
    *actual_port = ntohs(a.sin_port);
    return 0;
}

void sim_link_tcp_accept(struct sim_link *l)
{
    if (l->master_fd >= 0)
        return;
    int fd = accept4(l->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
        return;
    l->master_fd = fd;
    l->out_len = 0;
    sim_log("tcp client connected");
}

void sim_link_drop_tx(struct sim_link *l)
{
    while (l->tx_head) {
        struct sim_chunk *c = l->tx_head;
        l->tx_head = c->next;
        free(c);
    }
    l->tx_tail = NULL;
    l->tx_queued = 0;
}

void sim_link_drop_rx(struct sim_link *l)
{
    l->rx_head = l->rx_arrived = l->rx_tail = 0;
}

void sim_link_close(struct sim_link *l)
{
    sim_link_drop_tx(l);
    if (l->master_fd >= 0)
        close(l->master_fd);
    if (l->slave_fd >= 0)
        close(l->slave_fd);
    if (l->listen_fd >= 0)
        close(l->listen_fd);
    l->master_fd = l->slave_fd = l->listen_fd = -1;
    free(l->rx);
    free(l->rx_garbled);
    free(l->rx_baud);
    free(l->out);
    l->rx = l->rx_garbled = l->out = NULL;
    l->rx_baud = NULL;
}

/*
 * The rate the line runs at: the host's termios rate, capped by --adapter-max.
 * A USB-serial bridge has a highest rate (datasheets: CH340 2 Mbaud, CP2102N
 * and FT232R 3 Mbaud). Asked for more, the host's tcsetattr still succeeds:
 * the Linux drivers clamp the rate or fall back to one the chip can make, so
 * the wire runs at another rate than the one the board's UART was switched to,
 * and every byte is garbage in both directions (the wrong-baud model above).
 * Modelled as the line running at the adapter's highest rate. Unlike the
 * noisy-above fault (a marginal cable: one bit in 211 host->board bytes), this
 * is total and both ways.
 */
uint32_t sim_link_host_baud(struct sim_link *l, uint32_t board_baud)
{
    if (l->tcp)
        return board_baud;
    uint32_t b = sim_baud_get(l->slave_fd);
    if (b == 0)
        b = board_baud;
    if (b != l->last_host_baud) {
        if (l->last_host_baud != 0)
            sim_log("host baud %u", b);
        l->last_host_baud = b;
    }
    if (l->adapter_max && b > l->adapter_max) {
        if (l->adapter_logged != b) {
            l->adapter_logged = b;
            sim_log("adapter limit: host asked for %u baud, the adapter runs at %u (bytes "
                    "garbled both ways)",
                    b, l->adapter_max);
        }
        return l->adapter_max;
    }
    return b;
}

static bool baud_mismatch(uint32_t host, uint32_t board)
{
    double d = (double)host - (double)board;
    if (d < 0)
        d = -d;
    return d > 0.03 * (double)board;
}

static double byte_ns(const struct sim_link *l, uint32_t baud)
{
    if (l->speed <= 0 || baud == 0)
        return 0;
    return 1e10 / (double)baud / l->speed;
}

struct sim_chunk *sim_chunk_new(const uint8_t *data, size_t len, uint32_t baud)
{
    struct sim_chunk *c = malloc(sizeof(*c) + len);
    if (!c)
        return NULL;
    c->next = NULL;
    c->baud = baud;
    c->len = len;
    c->pos = 0;
    if (len)
        memcpy(c->data, data, len);
    return c;
}

struct sim_chunk *sim_chunk_slip(const uint8_t *pkt, size_t len, uint32_t baud, bool corrupt)
{
    struct sim_chunk *c = malloc(sizeof(*c) + 2 * len + 4);
    if (!c)
        return NULL;
    c->next = NULL;
    c->baud = baud;
    c->pos = 0;
    size_t o = 0;
    c->data[o++] = 0xC0;
    for (size_t i = 0; i < len; i++) {
        if (corrupt && i == len / 2) {
            c->data[o++] = 0xDB; /* invalid escape: the frame cannot decode */
            c->data[o++] = 0x01;
        }
        if (pkt[i] == 0xC0) {
            c->data[o++] = 0xDB;
            c->data[o++] = 0xDC;
        } else if (pkt[i] == 0xDB) {
            c->data[o++] = 0xDB;
            c->data[o++] = 0xDD;
        } else {
            c->data[o++] = pkt[i];
        }
    }
    c->data[o++] = 0xC0;
    c->len = o;
    return c;
}

void sim_link_send_chunk(struct sim_link *l, struct sim_chunk *c)
{
    if (!c)
        return;
    c->next = NULL;
    /* Nobody has read for a long time (no host on the port): the oldest
     * output is lost, as it would be on a real UART. */
    while (l->tx_head && l->tx_queued + c->len > TX_QUEUE_MAX) {
        struct sim_chunk *old = l->tx_head;
        l->tx_head = old->next;
        if (!l->tx_head)
            l->tx_tail = NULL;
        l->tx_queued -= old->len;
        free(old);
    }
    l->tx_queued += c->len;
    if (!l->tx_head) {
        double now = (double)sim_now();
        if (l->tx_wire_ns < now)
            l->tx_wire_ns = now;
        l->tx_head = l->tx_tail = c;
    } else {
        l->tx_tail->next = c;
        l->tx_tail = c;
    }
}

void sim_link_send_raw(struct sim_link *l, const uint8_t *data, size_t len, uint32_t baud)
{
    sim_link_send_chunk(l, sim_chunk_new(data, len, baud));
}

bool sim_link_rx_has_room(const struct sim_link *l)
{
    return l->rx_tail < l->rx_cap || l->rx_head > 0;
}

int sim_link_read(struct sim_link *l, uint32_t board_baud)
{
    if (l->master_fd < 0)
        return 0;
    if (l->rx_tail == l->rx_cap && l->rx_head > 0) {
        size_t n = l->rx_tail - l->rx_head;
        memmove(l->rx, l->rx + l->rx_head, n);
        memmove(l->rx_garbled, l->rx_garbled + l->rx_head, n);
        memmove(l->rx_baud, l->rx_baud + l->rx_head, n * sizeof(uint32_t));
        l->rx_arrived -= l->rx_head;
        l->rx_tail = n;
        l->rx_head = 0;
    }
    size_t room = l->rx_cap - l->rx_tail;
    if (room == 0)
        return 0;
    ssize_t n = read(l->master_fd, l->rx + l->rx_tail, room);
    if (n == 0 && l->tcp) {
        sim_log("tcp client disconnected");
        close(l->master_fd);
        l->master_fd = -1;
        return 0;
    }
    if (n < 0) {
        if (errno == EAGAIN || errno == EINTR)
            return 0;
        if (l->tcp) {
            close(l->master_fd);
            l->master_fd = -1;
            return 0;
        }
        return errno == EIO ? 0 : -1;
    }
    if (n == 0)
        return 0;
    uint32_t host = sim_link_host_baud(l, board_baud);
    uint8_t g = baud_mismatch(host, board_baud) ? 1 : 0;
    memset(l->rx_garbled + l->rx_tail, g, (size_t)n);
    for (size_t i = 0; i < (size_t)n; i++)
        l->rx_baud[l->rx_tail + i] = host;
    if (l->rx_arrived == l->rx_tail) {
        double now = (double)sim_now();
        if (l->rx_wire_ns < now)
            l->rx_wire_ns = now;
    }
    l->rx_tail += (size_t)n;
    return (int)n;
}

static uint8_t rng_byte(struct sim_link *l)
{
    uint32_t x = l->rng;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    l->rng = x;
    return (uint8_t)x;
}

static void out_append(struct sim_link *l, const uint8_t *p, size_t n, bool garble)
{
    if (l->master_fd < 0)
        return; /* nobody listening: the bytes are lost */
    if (n > l->out_cap - l->out_len)
        n = l->out_cap - l->out_len; /* host not reading: overflow is lost */
    for (size_t i = 0; i < n; i++)
        l->out[l->out_len + i] = garble ? rng_byte(l) : p[i];
    l->out_len += n;
}

void sim_link_advance(struct sim_link *l, int64_t now_i, uint32_t board_baud)
{
    double now = (double)now_i;
    /* rx: mark bytes whose wire time has elapsed as arrived */
    if (l->rx_arrived < l->rx_tail) {
        double bn = byte_ns(l, board_baud);
        size_t pend = l->rx_tail - l->rx_arrived;
        if (bn <= 0) {
            l->rx_arrived = l->rx_tail;
        } else if (now > l->rx_wire_ns) {
            double k = (now - l->rx_wire_ns) / bn;
            size_t kk = k >= (double)pend ? pend : (size_t)k;
            l->rx_wire_ns += (double)kk * bn;
            l->rx_arrived += kk;
        }
    }
    /* tx: move bytes whose wire time has elapsed to the output buffer */
    uint32_t host = 0;
    while (l->tx_head) {
        struct sim_chunk *c = l->tx_head;
        double bn = byte_ns(l, c->baud);
        size_t rem = c->len - c->pos;
        size_t room = l->master_fd >= 0 ? l->out_cap - l->out_len : rem;
        size_t k;
        if (bn <= 0) {
            k = rem < room ? rem : room;
        } else if (now > l->tx_wire_ns) {
            double kd = (now - l->tx_wire_ns) / bn;
            k = kd >= (double)rem ? rem : (size_t)kd;
            if (k > room) {
                /* The host is not reading: hold the bytes back (flow control by
                 * the pty) and restart the wire clock when it drains. */
                k = room;
                l->tx_wire_ns = now;
            } else {
                l->tx_wire_ns += (double)k * bn;
            }
        } else {
            k = 0;
        }
        if (k > 0) {
            if (host == 0)
                host = sim_link_host_baud(l, board_baud);
            out_append(l, c->data + c->pos, k, baud_mismatch(host, c->baud));
            c->pos += k;
        }
        if (c->pos < c->len)
            break;
        l->tx_queued -= c->len;
        l->tx_head = c->next;
        if (!l->tx_head)
            l->tx_tail = NULL;
        free(c);
    }
}

int sim_link_flush(struct sim_link *l)
{
    if (l->master_fd < 0) {
        l->out_len = 0;
        return 0;
    }
    size_t off = 0;
    while (off < l->out_len) {
        ssize_t n = write(l->master_fd, l->out + off, l->out_len - off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                break;
            if (l->tcp) {
                close(l->master_fd);
                l->master_fd = -1;
                l->out_len = 0;
                return 0;
            }
            l->out_len = 0; /* EIO etc.: nobody can read it */
            return 0;
        }
        off += (size_t)n;
    }
    if (off > 0) {
        memmove(l->out, l->out + off, l->out_len - off);
        l->out_len -= off;
    }
    return 0;
}

int64_t sim_link_next_event(const struct sim_link *l, uint32_t board_baud)
{
    double t = 9e18;
    if (l->rx_arrived < l->rx_tail) {
        double bn = byte_ns(l, board_baud);
        if (bn <= 0)
            return 0;
        size_t j = l->rx_arrived;
        while (j + 1 < l->rx_tail && l->rx[j] != 0xC0 && j - l->rx_arrived < RX_WAKE_BYTES)
            j++;
        double tr = l->rx_wire_ns + (double)(j - l->rx_arrived + 1) * bn;
        if (tr < t)
            t = tr;
    }
    if (l->tx_head && !(l->master_fd >= 0 && l->out_len >= l->out_cap)) {
        const struct sim_chunk *c = l->tx_head;
        double bn = byte_ns(l, c->baud);
        if (bn <= 0)
            return 0;
        size_t rem = c->len - c->pos;
        if (rem > TX_WAKE_BYTES)
            rem = TX_WAKE_BYTES;
        double tt = l->tx_wire_ns + (double)rem * bn;
        if (tt < t)
            t = tt;
    }
    return t >= 9e18 ? INT64_MAX : (int64_t)t + 1;
}

bool sim_link_rx_pending(const struct sim_link *l)
{
    return l->rx_head < l->rx_arrived;
}

bool sim_link_rx_pop(struct sim_link *l, uint8_t *byte, bool *garbled, uint32_t *host_baud)
{
    if (l->rx_head >= l->rx_arrived)
        return false;
    *byte = l->rx[l->rx_head];
    *garbled = l->rx_garbled[l->rx_head] != 0;
    *host_baud = l->rx_baud[l->rx_head];
    l->rx_head++;
    if (l->rx_head == l->rx_tail)
        l->rx_head = l->rx_arrived = l->rx_tail = 0;
    return true;
}
