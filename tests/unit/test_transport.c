/*
 * test_transport: the transport backends over real ptys, real sockets and real
 * error paths. No mocks: every test drives the kernel objects the station uses.
 *
 * Ptys come from posix_openpt() (the same pair openpty() returns; <pty.h> would
 * pull in <termios.h>, which conflicts with <asm/termbits.h> used here to read
 * arbitrary rates back). TCGETS2 on the master reports the slave's settings.
 */
#include <asm/termbits.h>

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "transport.h"

/* ---- helpers ------------------------------------------------------------- */

struct pty {
    int master;
    char slave[64];
};

static void pty_open(struct pty *p)
{
    p->master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    assert_true(p->master >= 0);
    assert_int_equal(grantpt(p->master), 0);
    assert_int_equal(unlockpt(p->master), 0);
    assert_int_equal(ptsname_r(p->master, p->slave, sizeof(p->slave)), 0);
}

static void pty_close(struct pty *p)
{
    if (p->master >= 0)
        close(p->master);
    p->master = -1;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Reads exactly n bytes from a plain fd, failing the test after 5 s. */
static void fd_read_exact(int fd, uint8_t *buf, size_t n)
{
    size_t got = 0;
    int64_t deadline = now_ms() + 5000;
    while (got < n) {
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        int left = (int)(deadline - now_ms());
        assert_true(left > 0);
        assert_true(poll(&pf, 1, left) > 0);
        ssize_t r = read(fd, buf + got, n - got);
        assert_true(r > 0);
        got += (size_t)r;
    }
}

static void fd_write_all(int fd, const uint8_t *buf, size_t n)
{
    size_t done = 0;
    while (done < n) {
        ssize_t w = write(fd, buf + done, n - done);
        assert_true(w > 0);
        done += (size_t)w;
    }
}

static void tr_read_exact(struct transport *t, uint8_t *buf, size_t n)
{
    size_t got = 0;
    int64_t deadline = now_ms() + 5000;
    while (got < n) {
        assert_true(now_ms() < deadline);
        int r = transport_read(t, buf + got, n - got, 500);
        assert_true(r >= 0);
        got += (size_t)r;
    }
}

static uint32_t slave_ospeed(int master)
{
    struct termios2 tio;
    assert_int_equal(ioctl(master, TCGETS2, &tio), 0);
    assert_int_equal(tio.c_ispeed, tio.c_ospeed);
    return tio.c_ospeed;
}

static struct transport *open_ok(const char *uri, uint32_t baud)
{
    struct transport *t = NULL;
    struct esp_error err;
    esp_error_clear(&err);
    int rc = transport_open(uri, baud, &t, &err);
    if (rc != 0)
        fail_msg("transport_open(%s) = %d: %s (%s)", uri, rc, err.message, err.advice);
    assert_non_null(t);
    return t;
}

/* Opens a URI that must fail; returns the code and leaves the detail in *err. */
static int open_fail(const char *uri, struct esp_error *err)
{
    struct transport *t = (struct transport *)(uintptr_t)1;
    esp_error_clear(err);
    int rc = transport_open(uri, 115200, &t, err);
    assert_true(rc < 0);
    assert_null(t);
    assert_int_equal(err->code, rc);
    assert_int_equal(err->stage, ESP_STAGE_OPEN);
    assert_true(err->message[0] != '\0');
    return rc;
}

/* ---- pty / termios ------------------------------------------------------- */

static void test_kind_names(void **state)
{
    (void)state;
    assert_string_equal(transport_kind_to_string(TRANSPORT_SERIAL), "serial");
    assert_string_equal(transport_kind_to_string(TRANSPORT_TERMIOS), "termios");
    assert_string_equal(transport_kind_to_string(TRANSPORT_TCP), "tcp");
    assert_string_equal(transport_kind_to_string(TRANSPORT_RFC2217), "rfc2217");
}

static void test_pty_roundtrip_raw(void **state)
{
    (void)state;
    struct pty p;
    pty_open(&p);
    struct transport *t = open_ok(p.slave, 115200);

    assert_int_equal(t->kind, TRANSPORT_TERMIOS);
    assert_true(t->caps & TRANSPORT_CAP_BAUD);
    assert_true(t->caps & TRANSPORT_CAP_REOPEN);
    assert_false(t->caps & TRANSPORT_CAP_MODEM_LINES);
    assert_int_equal(t->cancel_fd, -1);
    assert_int_equal(t->baud, 115200);
    assert_int_equal(slave_ospeed(p.master), 115200);

    /* Bytes a cooked tty would eat or translate: CR, LF, ^C, ^S/^Q, DEL, ^D, SLIP END. */
    const uint8_t wire[] = {'h', '\r', '\n', 0x03, 0x13, 0x11, 0x7f, 0x04, 0x00, 0xc0, 0xdb, 0xff};
    uint8_t buf[64];

    assert_int_equal(transport_write(t, wire, sizeof(wire), 1000), (int)sizeof(wire));
    fd_read_exact(p.master, buf, sizeof(wire));
    assert_memory_equal(buf, wire, sizeof(wire));

    fd_write_all(p.master, wire, sizeof(wire));
    tr_read_exact(t, buf, sizeof(wire));
    assert_memory_equal(buf, wire, sizeof(wire));

    /* No echo: nothing came back on the master. */
    struct pollfd pf = {.fd = p.master, .events = POLLIN};
    assert_int_equal(poll(&pf, 1, 50), 0);

    assert_int_equal(t->bytes_written, sizeof(wire));
    assert_int_equal(t->bytes_read, sizeof(wire));

    /* Timeout with nothing pending: 0, also for a zero timeout. */
    assert_int_equal(transport_read(t, buf, sizeof(buf), 30), 0);
    assert_int_equal(transport_read(t, buf, sizeof(buf), 0), 0);

    /* A pty has no modem lines and no side channel. */
    assert_int_equal(transport_set_lines(t, 1, 1), -ENOTSUP);
    assert_int_equal(transport_set_lines(t, 0, -1), -ENOTSUP);

    transport_close(t);
    pty_close(&p);
}

static void test_pty_prefix_and_rates(void **state)
{
    (void)state;
    struct pty p;
    pty_open(&p);
    char uri[96];
    snprintf(uri, sizeof(uri), "pty:%s", p.slave);
    struct transport *t = open_ok(uri, 74880);
    assert_string_equal(t->uri, uri);
    assert_int_equal(slave_ospeed(p.master), 74880);

    static const uint32_t rates[] = {921600, 74880, 1500000, 2000000, 115200, 460800, 250000};
    for (size_t i = 0; i < sizeof(rates) / sizeof(rates[0]); i++) {
        assert_int_equal(transport_set_baud(t, rates[i]), 0);
        assert_int_equal(t->baud, rates[i]);
        assert_int_equal(slave_ospeed(p.master), rates[i]);
    }

    /* Raw 8N1 without flow control survives the rate changes. */
    struct termios2 tio;
    assert_int_equal(ioctl(p.master, TCGETS2, &tio), 0);
    assert_int_equal(tio.c_cflag & CSIZE, CS8);
    assert_false(tio.c_cflag & (PARENB | CSTOPB | CRTSCTS));
    assert_false(tio.c_lflag & (ICANON | ECHO | ISIG));
    assert_false(tio.c_iflag & (IXON | IXOFF | ICRNL));
    assert_false(tio.c_oflag & OPOST);

    assert_int_equal(transport_set_baud(t, 0), -EINVAL);
    transport_close(t);
    pty_close(&p);
}

struct canceller {
    int fd;
    int delay_ms;
};

static void *cancel_later(void *arg)
{
    struct canceller *c = arg;
    sleep_ms(c->delay_ms);
    uint8_t one = 1;
    if (write(c->fd, &one, 1) != 1)
        abort();
    return NULL;
}

static void test_cancel_fd(void **state)
{
    (void)state;
    struct pty p;
    pty_open(&p);
    struct transport *t = open_ok(p.slave, 115200);
    int pipefd[2];
    assert_int_equal(pipe(pipefd), 0);
    t->cancel_fd = pipefd[0];

    /* A read that would wait 60 s returns -ECANCELED once the pipe turns readable. */
    struct canceller c = {.fd = pipefd[1], .delay_ms = 50};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, cancel_later, &c), 0);
    uint8_t buf[16];
    int64_t t0 = now_ms();
    assert_int_equal(transport_read(t, buf, sizeof(buf), 60000), -ECANCELED);
    assert_true(now_ms() - t0 < 30000);
    pthread_join(th, NULL);

    /* Cancel wins even when data is waiting, and writes honour it too. */
    fd_write_all(p.master, (const uint8_t *)"x", 1);
    sleep_ms(20);
    assert_int_equal(transport_read(t, buf, sizeof(buf), 100), -ECANCELED);
    assert_int_equal(transport_write(t, (const uint8_t *)"y", 1, 100), -ECANCELED);

    /* Cancellation is not sticky: drain the pipe and I/O works again. */
    assert_int_equal(read(pipefd[0], buf, 1), 1);
    tr_read_exact(t, buf, 1);
    assert_int_equal(buf[0], 'x');

    transport_close(t);
    close(pipefd[0]);
    close(pipefd[1]);
    pty_close(&p);
}

static void test_master_close_is_enodev(void **state)
{
    (void)state;
    struct pty p;
    pty_open(&p);
    struct transport *t = open_ok(p.slave, 115200);
    uint8_t buf[8];

    pty_close(&p);
    assert_int_equal(transport_read(t, buf, sizeof(buf), 1000), -ENODEV);
    /* Sticky: every later call says the same. */
    assert_int_equal(transport_read(t, buf, sizeof(buf), 0), -ENODEV);
    assert_int_equal(transport_write(t, buf, 1, 100), -ENODEV);
    assert_int_equal(transport_set_baud(t, 115200), -ENODEV);
    assert_int_equal(transport_set_lines(t, 1, 1), -ENODEV);
    assert_int_equal(transport_flush_input(t), -ENODEV);
    assert_int_equal(transport_drain(t), -ENODEV);
    transport_close(t);
}

struct drainer {
    int fd;
    uint8_t *buf;
    size_t len;
    bool ok;
};

/* Reads d->len bytes from the pty master (for at most 10 s). */
static void *drain_thread(void *arg)
{
    struct drainer *d = arg;
    size_t n = 0;
    int64_t deadline = now_ms() + 10000;
    while (n < d->len && now_ms() < deadline) {
        struct pollfd pf = {.fd = d->fd, .events = POLLIN};
        if (poll(&pf, 1, 100) <= 0)
            continue;
        ssize_t r = read(d->fd, d->buf + n, d->len - n);
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    d->ok = n == d->len;
    return NULL;
}

static void test_write_timeout_and_large_write(void **state)
{
    (void)state;
    struct pty p;
    pty_open(&p);
    struct transport *t = open_ok(p.slave, 115200);
    size_t big = 256 * 1024;
    uint8_t *data = malloc(big);
    uint8_t *back = malloc(big);
    assert_non_null(data);
    assert_non_null(back);
    for (size_t i = 0; i < big; i++)
        data[i] = (uint8_t)(i * 7 + (i >> 8));

    /* Nobody reads the master: the pty buffer fills and the write times out. */
    assert_int_equal(transport_write(t, data, big, 200), -ETIMEDOUT);
    pty_close(&p);
    transport_close(t);

    /* With a reader the same write goes through whole and intact. */
    pty_open(&p);
    t = open_ok(p.slave, 115200);
    struct drainer d = {.fd = p.master, .buf = back, .len = big};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, drain_thread, &d), 0);
    assert_int_equal(transport_write(t, data, big, 10000), (int)big);
    pthread_join(th, NULL);
    assert_true(d.ok);
    assert_memory_equal(back, data, big);
    assert_int_equal(t->bytes_written, big);

    transport_close(t);
    pty_close(&p);
    free(data);
    free(back);
}

static void test_flush_and_drain(void **state)
{
    (void)state;
    struct pty p;
    pty_open(&p);
    struct transport *t = open_ok(p.slave, 115200);
    uint8_t buf[32];

    fd_write_all(p.master, (const uint8_t *)"stale boot log", 14);
    sleep_ms(100);
    assert_int_equal(transport_flush_input(t), 0);
    assert_int_equal(transport_read(t, buf, sizeof(buf), 50), 0);

    assert_int_equal(transport_write(t, (const uint8_t *)"abc", 3, 1000), 3);
    assert_int_equal(transport_drain(t), 0);
    fd_read_exact(p.master, buf, 3);
    assert_memory_equal(buf, "abc", 3);

    transport_close(t);
    pty_close(&p);
}

struct relinker {
    const char *target, *link;
    int delay_ms;
    int rc;
};

/* Plays a USB device re-enumerating: its node appears after a delay. */
static void *relink_later(void *arg)
{
    struct relinker *r = arg;
    sleep_ms(r->delay_ms);
    r->rc = symlink(r->target, r->link);
    return NULL;
}

static void test_reopen(void **state)
{
    (void)state;
    struct pty p;
    pty_open(&p);
    /* Through a symlink, as the virtual board publishes its port: /dev/pts/N numbers are
     * reused by other processes' ptys at once, a link we remove is gone for sure. */
    char dir[] = "/tmp/espstation-transport-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char link[PATH_MAX];
    snprintf(link, sizeof(link), "%s/ttyR0", dir);
    assert_int_equal(symlink(p.slave, link), 0);
    struct transport *t = open_ok(link, 115200);
    uint8_t buf[8];

    assert_int_equal(transport_set_baud(t, 921600), 0);
    /* Put the slave back to 9600 behind our back; reopen must restore 921600. */
    struct termios2 tio;
    assert_int_equal(ioctl(p.master, TCGETS2, &tio), 0);
    tio.c_cflag &= ~(tcflag_t)(CBAUD | (CBAUD << IBSHIFT));
    tio.c_cflag |= BOTHER | (BOTHER << IBSHIFT);
    tio.c_ispeed = tio.c_ospeed = 9600;
    assert_int_equal(ioctl(p.master, TCSETS2, &tio), 0);

    assert_int_equal(transport_reopen(t, 1000), 0);
    assert_int_equal(slave_ospeed(p.master), 921600);
    fd_write_all(p.master, (const uint8_t *)"k", 1);
    tr_read_exact(t, buf, 1);
    assert_int_equal(buf[0], 'k');

    /* The device is gone for good: reopen gives up after its timeout, the port stays gone. */
    pty_close(&p);
    unlink(link);
    int64_t t0 = now_ms();
    assert_int_equal(transport_reopen(t, 300), -ENODEV);
    assert_true(now_ms() - t0 >= 250);
    assert_int_equal(transport_read(t, buf, 1, 0), -ENODEV);
    assert_int_equal(transport_write(t, buf, 1, 0), -ENODEV);

    /* The device comes back under the same name while reopen polls for it. */
    pty_open(&p);
    struct relinker rl = {.target = p.slave, .link = link, .delay_ms = 250};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, relink_later, &rl), 0);
    assert_int_equal(transport_reopen(t, 5000), 0);
    pthread_join(th, NULL);
    assert_int_equal(rl.rc, 0);
    assert_int_equal(slave_ospeed(p.master), 921600);
    assert_int_equal(transport_write(t, (const uint8_t *)"b", 1, 1000), 1);
    fd_read_exact(p.master, buf, 1);
    assert_int_equal(buf[0], 'b');

    transport_close(t);
    unlink(link);
    rmdir(dir);
    pty_close(&p);
}

/* ---- side channel -------------------------------------------------------- */

static int bind_dgram(const char *path)
{
    int s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(s >= 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    assert_true(strlen(path) < sizeof(sa.sun_path));
    strcpy(sa.sun_path, path);
    assert_int_equal(bind(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
    return s;
}

static void expect_datagram(int s, const char *want)
{
    char buf[128];
    struct pollfd pf = {.fd = s, .events = POLLIN};
    assert_int_equal(poll(&pf, 1, 2000), 1);
    ssize_t n = recv(s, buf, sizeof(buf) - 1, 0);
    assert_true(n >= 0);
    buf[n] = '\0';
    assert_string_equal(buf, want);
}

static void expect_no_datagram(int s)
{
    char buf[128];
    assert_int_equal(recv(s, buf, sizeof(buf), MSG_DONTWAIT), -1);
    assert_int_equal(errno, EAGAIN);
}

static void test_side_channel(void **state)
{
    (void)state;
    struct pty p;
    pty_open(&p);
    char dir[] = "/tmp/espstation-transport-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char link[PATH_MAX], sock[PATH_MAX];
    snprintf(link, sizeof(link), "%s/ttyV0", dir);
    snprintf(sock, sizeof(sock), "%s/ttyV0.modem", dir);
    assert_int_equal(symlink(p.slave, link), 0);
    int board = bind_dgram(sock);

    struct transport *t = open_ok(link, 115200);
    assert_int_equal(t->kind, TRANSPORT_TERMIOS);
    assert_true(t->caps & TRANSPORT_CAP_MODEM_LINES);
    assert_non_null(strstr(t->description, "side channel"));
    expect_datagram(board, "BAUD=115200\n");
    expect_no_datagram(board);

    assert_int_equal(transport_set_lines(t, 1, 1), 0);
    expect_datagram(board, "DTR=1 RTS=1\n");
    expect_no_datagram(board);
    assert_int_equal(transport_set_lines(t, 0, -1), 0);
    expect_datagram(board, "DTR=0 RTS=1\n");
    expect_no_datagram(board);
    assert_int_equal(transport_set_lines(t, -1, 0), 0);
    expect_datagram(board, "DTR=0 RTS=0\n");
    assert_int_equal(transport_set_lines(t, 1, -1), 0);
    expect_datagram(board, "DTR=1 RTS=0\n");
    assert_int_equal(transport_set_baud(t, 921600), 0);
    expect_datagram(board, "BAUD=921600\n");
    expect_no_datagram(board);
    assert_int_equal(slave_ospeed(p.master), 921600);

    /* Data still flows over the pty reached through the symlink. */
    uint8_t buf[4];
    assert_int_equal(transport_write(t, (const uint8_t *)"\xc0\x00", 2, 1000), 2);
    fd_read_exact(p.master, buf, 2);
    assert_memory_equal(buf, "\xc0\x00", 2);

    /* The reopen re-connects the side channel and announces the rate again. */
    assert_int_equal(transport_reopen(t, 1000), 0);
    expect_datagram(board, "BAUD=921600\n");
    assert_int_equal(transport_set_lines(t, -1, 1), 0);
    expect_datagram(board, "DTR=1 RTS=1\n");

    /* The virtual board goes away: the next line change reports the port gone. */
    close(board);
    assert_int_equal(transport_set_lines(t, 0, 0), -ENODEV);
    assert_int_equal(transport_read(t, buf, 1, 0), -ENODEV);

    transport_close(t);
    unlink(sock);
    unlink(link);
    rmdir(dir);
    pty_close(&p);
}

static void test_side_channel_stale_socket_file(void **state)
{
    (void)state;
    struct pty p;
    pty_open(&p);
    char dir[] = "/tmp/espstation-transport-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char link[PATH_MAX], sock[PATH_MAX];
    snprintf(link, sizeof(link), "%s/ttyV1", dir);
    snprintf(sock, sizeof(sock), "%s/ttyV1.modem", dir);
    assert_int_equal(symlink(p.slave, link), 0);
    close(bind_dgram(sock)); /* the file stays, nobody listens */

    struct transport *t = open_ok(link, 115200);
    assert_false(t->caps & TRANSPORT_CAP_MODEM_LINES);
    assert_int_equal(transport_set_lines(t, 1, 1), -ENOTSUP);
    transport_close(t);

    unlink(sock);
    unlink(link);
    rmdir(dir);
    pty_close(&p);
}

/* ---- fd:N ---------------------------------------------------------------- */

static void test_fd_uri_socketpair(void **state)
{
    (void)state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    char uri[32];
    snprintf(uri, sizeof(uri), "fd:%d", sv[0]);
    struct transport *t = open_ok(uri, 115200);
    assert_int_equal(t->kind, TRANSPORT_TERMIOS);
    assert_int_equal(t->caps, 0);
    assert_int_equal(t->baud, 115200); /* nominal */
    assert_int_equal(transport_set_baud(t, 921600), -ENOTSUP);
    assert_int_equal(t->baud, 115200);
    assert_int_equal(transport_set_lines(t, 1, 0), -ENOTSUP);
    assert_int_equal(transport_reopen(t, 100), -ENOTSUP);

    uint8_t buf[8];
    assert_int_equal(transport_write(t, (const uint8_t *)"ping", 4, 1000), 4);
    fd_read_exact(sv[1], buf, 4);
    assert_memory_equal(buf, "ping", 4);
    fd_write_all(sv[1], (const uint8_t *)"pong", 4);
    tr_read_exact(t, buf, 4);
    assert_memory_equal(buf, "pong", 4);

    fd_write_all(sv[1], (const uint8_t *)"junk", 4);
    sleep_ms(20);
    assert_int_equal(transport_flush_input(t), 0);
    assert_int_equal(transport_read(t, buf, sizeof(buf), 20), 0);

    close(sv[1]);
    assert_int_equal(transport_read(t, buf, sizeof(buf), 1000), -ENODEV);
    assert_int_equal(transport_write(t, buf, 1, 100), -ENODEV);

    /* The transport owned the descriptor and closed it. */
    transport_close(t);
    assert_int_equal(fcntl(sv[0], F_GETFD), -1);
    assert_int_equal(errno, EBADF);
}

static void test_fd_uri_tty(void **state)
{
    (void)state;
    struct pty p;
    pty_open(&p);
    int fd = open(p.slave, O_RDWR | O_NOCTTY | O_CLOEXEC);
    assert_true(fd >= 0);
    char uri[32];
    snprintf(uri, sizeof(uri), "fd:%d", fd);
    struct transport *t = open_ok(uri, 1500000);
    assert_true(t->caps & TRANSPORT_CAP_BAUD);
    assert_false(t->caps & TRANSPORT_CAP_REOPEN);
    assert_int_equal(slave_ospeed(p.master), 1500000);
    transport_close(t);
    pty_close(&p);
}

/* A port held by one transport cannot be opened by a second one (another
 * espstation, the daemon): flock() works between processes and for root. */
static void test_exclusive_open(void **state)
{
    (void)state;
    struct pty p;
    pty_open(&p);
    char dir[] = "/tmp/espstation-transport-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char link[PATH_MAX];
    snprintf(link, sizeof(link), "%s/tty", dir);
    assert_int_equal(symlink(p.slave, link), 0);

    struct transport *t = open_ok(p.slave, 115200);
    struct esp_error err;
    assert_int_equal(open_fail(p.slave, &err), -EBUSY);
    char want[160];
    snprintf(want, sizeof(want), "port %s is in use by another program", p.slave);
    assert_string_equal(err.message, want);
    assert_string_equal(err.advice,
                        "another espstation/espstationd or a serial monitor has it open; close it "
                        "first");
    /* The same tty under another name, or forced through libserialport. */
    assert_int_equal(open_fail(link, &err), -EBUSY);
    char uri[PATH_MAX + 16];
    snprintf(uri, sizeof(uri), "serial:%s", p.slave);
    assert_int_equal(open_fail(uri, &err), -EBUSY);
    /* An inherited descriptor of the same tty: refused, and left open for the caller. */
    int fd = open(p.slave, O_RDWR | O_NOCTTY | O_CLOEXEC);
    assert_true(fd >= 0);
    snprintf(uri, sizeof(uri), "fd:%d", fd);
    assert_int_equal(open_fail(uri, &err), -EBUSY);
    assert_true(fcntl(fd, F_GETFD) >= 0);
    close(fd);

    /* reopen() takes the lock again on its new descriptor. */
    assert_int_equal(transport_reopen(t, 1000), 0);
    assert_int_equal(open_fail(link, &err), -EBUSY);

    /* Closing releases it. */
    transport_close(t);
    t = open_ok(link, 115200);
    assert_int_equal(open_fail(p.slave, &err), -EBUSY);
    transport_close(t);

    unlink(link);
    rmdir(dir);
    pty_close(&p);
}

/* ---- serial (libserialport) ---------------------------------------------- */

static void test_serial_forced_on_pty_falls_back(void **state)
{
    (void)state;
    struct pty p;
    pty_open(&p);
    char uri[96];
    snprintf(uri, sizeof(uri), "serial:%s", p.slave);
    struct transport *t = open_ok(uri, 115200);
    assert_int_equal(t->kind, TRANSPORT_TERMIOS);
    assert_non_null(strstr(t->description, "termios fallback"));
    assert_int_equal(slave_ospeed(p.master), 115200);
    transport_close(t);
    pty_close(&p);
}

static void test_serial_missing_port(void **state)
{
    (void)state;
    struct stat st;
    if (stat("/dev/ttyUSB99", &st) == 0)
        skip();
    struct esp_error err;
    assert_int_equal(open_fail("/dev/ttyUSB99", &err), -ENOENT);
    assert_string_equal(err.message, "port /dev/ttyUSB99 does not exist");
    assert_non_null(strstr(err.advice, "plugged in"));

    assert_int_equal(open_fail("serial:/dev/ttyUSB99", &err), -ENOENT);
    assert_string_equal(err.message, "port /dev/ttyUSB99 does not exist");

    assert_int_equal(open_fail("pty:/dev/pts/999999", &err), -ENOENT);
    assert_non_null(strstr(err.message, "does not exist"));
}

/* ---- TCP ----------------------------------------------------------------- */

static int tcp_listener(uint16_t *port)
{
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(s >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(s, 4), 0);
    socklen_t sl = sizeof(sa);
    assert_int_equal(getsockname(s, (struct sockaddr *)&sa, &sl), 0);
    *port = ntohs(sa.sin_port);
    return s;
}

static void test_tcp_echo_and_peer_close(void **state)
{
    (void)state;
    uint16_t port;
    int ls = tcp_listener(&port);
    char uri[64];
    snprintf(uri, sizeof(uri), "tcp://127.0.0.1:%u", port);
    struct transport *t = open_ok(uri, 115200);
    int peer = accept(ls, NULL, NULL);
    assert_true(peer >= 0);

    assert_int_equal(t->kind, TRANSPORT_TCP);
    assert_false(t->caps & TRANSPORT_CAP_BAUD);
    assert_false(t->caps & TRANSPORT_CAP_MODEM_LINES);
    assert_false(t->caps & TRANSPORT_CAP_REOPEN);
    assert_int_equal(t->baud, 115200);
    assert_int_equal(transport_set_baud(t, 921600), -ENOTSUP);
    assert_int_equal(transport_set_lines(t, 1, 1), -ENOTSUP);
    assert_int_equal(transport_reopen(t, 100), -ENOTSUP);
    assert_int_equal(transport_drain(t), 0);

    const uint8_t frame[] = {0xc0, 0x00, 0x08, 0x24, 0x00, 0xdb, 0xdc, 0xc0};
    uint8_t buf[16];
    assert_int_equal(transport_write(t, frame, sizeof(frame), 1000), (int)sizeof(frame));
    fd_read_exact(peer, buf, sizeof(frame));
    assert_memory_equal(buf, frame, sizeof(frame));
    fd_write_all(peer, frame, sizeof(frame));
    tr_read_exact(t, buf, sizeof(frame));
    assert_memory_equal(buf, frame, sizeof(frame));
    assert_int_equal(transport_read(t, buf, sizeof(buf), 20), 0);

    /* Data sent just before the close is still delivered, then the port is gone. */
    fd_write_all(peer, (const uint8_t *)"z", 1);
    close(peer);
    tr_read_exact(t, buf, 1);
    assert_int_equal(buf[0], 'z');
    assert_int_equal(transport_read(t, buf, sizeof(buf), 1000), -ENODEV);
    assert_int_equal(transport_read(t, buf, sizeof(buf), 0), -ENODEV);
    assert_int_equal(transport_write(t, frame, sizeof(frame), 100), -ENODEV);
    assert_int_equal(transport_set_baud(t, 115200), -ENODEV);

    transport_close(t);
    close(ls);
}

static void test_tcp_refused(void **state)
{
    (void)state;
    uint16_t port;
    close(tcp_listener(&port)); /* a port that was just free: nobody listens now */
    char uri[64], want[96];
    snprintf(uri, sizeof(uri), "tcp://127.0.0.1:%u", port);
    snprintf(want, sizeof(want), "cannot reach the serial server at 127.0.0.1:%u", port);
    struct esp_error err;
    assert_int_equal(open_fail(uri, &err), -ECONNREFUSED);
    assert_non_null(strstr(err.message, want));
    assert_true(err.advice[0] != '\0');
}

/* ---- URI errors and NULL handling ----------------------------------------- */

struct bad_uri {
    const char *uri;
    int code;
    const char *in_message;
};

static void test_bad_uris(void **state)
{
    (void)state;
    static const struct bad_uri cases[] = {
        {"", -EINVAL, "no port given"},
        {"tcp://nohostport", -EINVAL, "not a valid TCP address"},
        {"tcp://:4000", -EINVAL, "not a valid TCP address"},
        {"tcp://host:", -EINVAL, "not a valid TCP address"},
        {"tcp://host:99999", -EINVAL, "not a valid TCP address"},
        {"tcp://host:40x", -EINVAL, "not a valid TCP address"},
        {"tcp://[::1:4000", -EINVAL, "not a valid TCP address"},
        {"fd:abc", -EINVAL, "not a valid fd: URI"},
        {"fd:", -EINVAL, "not a valid fd: URI"},
        {"fd:-1", -EINVAL, "not a valid fd: URI"},
        {"fd:3x", -EINVAL, "not a valid fd: URI"},
        {"fd:1000000", -EBADF, "file descriptor 1000000 is not open"},
        {"telnet://host:4000", -EINVAL, "unsupported port URI"},
        {"rfc2217://nohostport", -EINVAL, "not a valid TCP address"},
        {"pty:", -EINVAL, "names no path"},
        {"serial:", -EINVAL, "names no path"},
        {"/dev/null", -ENOTTY, "/dev/null is not a serial port"},
        {"pty:/tmp", -ENOTTY, "/tmp is not a serial port"},
        {"/nonexistent/espstation-port", -ENOENT,
         "port /nonexistent/espstation-port does not exist"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct esp_error err;
        int rc = open_fail(cases[i].uri, &err);
        if (rc != cases[i].code || !strstr(err.message, cases[i].in_message))
            fail_msg("%s: rc %d message \"%s\"", cases[i].uri, rc, err.message);
    }

    /* A NULL error struct is fine too. */
    struct transport *t = NULL;
    assert_int_equal(transport_open("fd:abc", 115200, &t, NULL), -EINVAL);
    assert_null(t);

    char longuri[400];
    memset(longuri, 'a', sizeof(longuri) - 1);
    longuri[0] = '/';
    longuri[sizeof(longuri) - 1] = '\0';
    struct esp_error err;
    assert_int_equal(open_fail(longuri, &err), -ENAMETOOLONG);
}

/* transport_uri_check: the form of a URI, nothing opened (POST /api/v1/ports uses it). */
static void test_uri_check(void **state)
{
    (void)state;
    static const struct bad_uri bad[] = {
        {"", -EINVAL, "no port given"},
        {"tcp://", -EINVAL, "not a valid TCP address"},
        {"tcp://nohostport", -EINVAL, "not a valid TCP address"},
        {"tcp://:4000", -EINVAL, "not a valid TCP address"},
        {"tcp://host:0", -EINVAL, "not a valid TCP address"},
        {"tcp://host:99999", -EINVAL, "not a valid TCP address"},
        {"socket://", -EINVAL, "not a valid TCP address"},
        {"fd:", -EINVAL, "not a valid fd: URI"},
        {"fd:-1", -EINVAL, "not a valid fd: URI"},
        {"fd:3x", -EINVAL, "not a valid fd: URI"},
        {"telnet://host:4000", -EINVAL, "unsupported port URI"},
        {"rfc2217://", -EINVAL, "not a valid TCP address"},
        {"rfc2217://host:0", -EINVAL, "not a valid TCP address"},
        {"pty:", -EINVAL, "names no path"},
        {"serial:", -EINVAL, "names no path"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct esp_error err;
        esp_error_clear(&err);
        int rc = transport_uri_check(bad[i].uri, &err);
        if (rc != bad[i].code || !strstr(err.message, bad[i].in_message) || !err.advice[0])
            fail_msg("%s: rc %d message \"%s\"", bad[i].uri, rc, err.message);
    }
    static const char *const good[] = {
        "tcp://h:1",     "tcp://[::1]:4000",    "socket://10.0.0.5:23", "fd:3",
        "pty:/tmp/x",    "serial:/dev/ttyUSB9", "/nonexistent",         "COM3",
        "rfc2217://h:1", "rfc2217://[::1]:4000"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        if (transport_uri_check(good[i], NULL) != 0)
            fail_msg("%s refused", good[i]);
    assert_int_equal(transport_uri_check(NULL, NULL), -EINVAL);
}

static void test_null_transport(void **state)
{
    (void)state;
    uint8_t b = 0;
    transport_close(NULL);
    assert_int_equal(transport_write(NULL, &b, 1, 0), -EINVAL);
    assert_int_equal(transport_read(NULL, &b, 1, 0), -EINVAL);
    assert_int_equal(transport_set_baud(NULL, 115200), -EINVAL);
    assert_int_equal(transport_set_lines(NULL, 1, 1), -EINVAL);
    assert_int_equal(transport_flush_input(NULL), -EINVAL);
    assert_int_equal(transport_drain(NULL), -EINVAL);
    assert_int_equal(transport_reopen(NULL, 0), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kind_names),
        cmocka_unit_test(test_pty_roundtrip_raw),
        cmocka_unit_test(test_pty_prefix_and_rates),
        cmocka_unit_test(test_cancel_fd),
        cmocka_unit_test(test_master_close_is_enodev),
        cmocka_unit_test(test_write_timeout_and_large_write),
        cmocka_unit_test(test_flush_and_drain),
        cmocka_unit_test(test_reopen),
        cmocka_unit_test(test_side_channel),
        cmocka_unit_test(test_side_channel_stale_socket_file),
        cmocka_unit_test(test_fd_uri_socketpair),
        cmocka_unit_test(test_fd_uri_tty),
        cmocka_unit_test(test_exclusive_open),
        cmocka_unit_test(test_serial_forced_on_pty_falls_back),
        cmocka_unit_test(test_serial_missing_port),
        cmocka_unit_test(test_tcp_echo_and_peer_close),
        cmocka_unit_test(test_tcp_refused),
        cmocka_unit_test(test_bad_uris),
        cmocka_unit_test(test_uri_check),
        cmocka_unit_test(test_null_transport),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
