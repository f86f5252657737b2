/*
 * esp_netdev: the network persona of a virtual ESP8266/ESP32 board, playing
 * the device side of every OTA mechanism in PROTOCOL-OTA.md:
 *   - ArduinoOTA (§1): UDP invitation listener, MD5 or PBKDF2 auth,
 *     connect-back from its own address, glued decimal acks, OK/error verdict;
 *   - HTTPUpdateServer (§3): GET/POST /update, strict multipart parser,
 *     Basic auth, 200 with "Update Success! Rebooting..." / "Update error: ...";
 *   - raw TCP-OTA (§5): OTA / GetNextFlash / FirmwareLength / Ready / result;
 *   - HTTP pull check-in (§2): the exact request of its chip's updater,
 *     applies a 200 answer, reports the new version at the next check-in.
 * Single-threaded and blocking per session, like the real firmware loop.
 *
 * Usage: esp_netdev --chip esp8266|esp32 --mac MAC --bind 127.0.0.x --dir DIR
 *   [--version V] [--password PW] [--auth md5|pbkdf2] [--ota-port N]
 *   [--http-port N] [--web-user U] [--tcp-ota] [--tcp-ota-port N]
 *   [--checkin URL --interval MS|once] [--checkin-auth USER:PASS] [--free-space N] [--fault F]
 *   [--sketch-md5 HEX --sketch-size N] [--flash FILE --flash-offset N]
 *   [--fs-offset N] [--fs-size N] [--want-fs] [--user2-offset N] [--running-slot 1|2]
 *   [--rcvbuf BYTES] [--erase-ms MS] [--drain-ms MS]
 *   [--ca FILE | --fingerprint SHA1HEX] [--tls-ip-san] [--tls-max 1.2|1.3]
 * F: no-answer | wrong-password | no-space | stall:BYTES | glued-ok |
 *    error-line | no-connect-back. Ports default to 0 (ephemeral; real
 * devices use 8266/3232, 80, 65056). Writes DIR/ready ("udp=P http=P
 * tcpota=P") once listening, DIR/netdev.log, DIR/ota-<n>.bin per received
 * image, DIR/version (current version). Exits on SIGTERM/SIGINT. SIGUSR1
 * makes it check in at once (benchmarks start many pulls at the same time).
 * --interval once: a sketch that calls the updater only in setup(): one
 * check-in at boot, and one more after an applied pull (the updater reboots).
 * --checkin-auth USER:PASS: the sketch called the updater's
 * setAuthorization(user, password) (ESP8266httpUpdate, ESP32 HTTPUpdate): every
 * check-in carries "Authorization: Basic base64(USER:PASS)", as HTTPClient sends
 * it. Default: none (the updaters send no credentials unless told to).
 * An https:// check-in URL: the sketch gave the updater a WiFiClientSecure with
 * the CA (--ca FILE: ESP32 setCACert, ESP8266 setTrustAnchors) or, on ESP8266, the
 * server certificate's SHA-1 fingerprint (--fingerprint: setFingerprint); the same
 * request then goes over TLS 1.2 (see checkin_tls_open for what is checked).
 * --flash FILE/--flash-offset N (used by esp_sim's network persona): every
 * applied application image is also written into FILE at offset N (the
 * virtual board's flash), so a later serial read sees it. --sketch-md5/-size
 * describe the running image (default: derived from the version).
 * Filesystem images (espota cmd 100, web-form field "filesystem", a pull in
 * mode spiffs) are kept as DIR/fs-<n>.bin and DIR/fs.bin (the latest), and
 * with --flash and --fs-offset N also written into FILE at N, so a test can
 * compare them byte for byte. --fs-size N: the filesystem partition's size
 * (a larger FS image is refused like the real Updater; default: no limit).
 * Pending filesystem request: while DIR/want-fs exists (--want-fs creates it;
 * a test may create or remove it at any time) every check-in round first
 * checks in with x-…-mode: spiffs (ESP8266httpUpdate::updateFS /
 * HTTPUpdate::updateSpiffs), then as usual with mode sketch.
 * Raw TCP-OTA (NONOS dual images): --running-slot says which half runs (default
 * user1), GetNextFlash answers the other; an accepted image is written into
 * FILE at --flash-offset (user1) or --user2-offset (user2), and DIR/slot gets
 * the half now running ("1"/"2"), which esp_sim boots after a reset.
 * Web form: the Basic-auth user seen is logged ("web: Basic auth as user U",
 * or "web: 401 (credentials; got user U)").
 * Version of an applied image: the printable text after "ESPSIM_VERSION=" or
 * "ESPVER:" in the image, else the ESP32 app description, else "md5:<8 hex>".
 *
 * ArduinoOTA transfer speed (the device is often slower than the network):
 * --rcvbuf BYTES: the receive window of the connect-back socket (SO_RCVBUF
 * and TCP_WINDOW_CLAMP, set before connect); default the lwIP TCP_WND,
 * 5840 (ESP8266 core: 4 x MSS) or 5744 (ESP-IDF default); 0: the kernel's.
 * --erase-ms MS: the time a 4 KiB sector erase takes before the Updater
 * writes a full sector buffer (default 45, a typical SPI NOR tSE; datasheets
 * allow up to 400); 0: instant. --drain-ms MS (ESP8266): Update.write(client)
 * keeps reading while data comes within MS (default 1000, the Stream
 * timeout) and only then returns; its count is written after it returns, so
 * a station that keeps the socket fed gets one count for the whole image.
 * 0: the call returns as soon as nothing is waiting. An ESP32 writes a count
 * after every read of at most 1460 bytes. The functional tests choose
 * --erase-ms 0 (ota_netdev_lib.sh, ota_daemon_lib.sh); esp_sim passes its
 * flash model's sector erase time (0 at --link-speed 0).
 * The HTTP pull takes its image at the same pace: the check-in socket gets the
 * same window and the body goes through the same sector buffer (--erase-ms per
 * 4 KiB); "pull: received N bytes in T ms" in the log is the time from the
 * response head to the last sector written.
 *
 * Deliberate differences from real firmware: the success tail pauses are
 * 250 ms (not ~1 s), and the web form refuses a request without a file part
 * instead of "succeeding" with nothing written.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <zlib.h>

#define MAX_IMAGE (16u * 1024u * 1024u)
#define TCP_OTA_FIRMWARE_SIZE 503808u

enum chip { CHIP_ESP8266, CHIP_ESP32 };
enum fault {
    FAULT_NONE,
    FAULT_NO_ANSWER,
    FAULT_WRONG_PASSWORD,
    FAULT_NO_SPACE,
    FAULT_STALL,
    FAULT_GLUED_OK,
    FAULT_ERROR_LINE,
    FAULT_NO_CONNECT_BACK
};

struct netdev {
    enum chip chip;
    char mac[18];
    char bind_ip[INET_ADDRSTRLEN];
    char dir[PATH_MAX];
    char version[64];
    char password[64];
    bool pbkdf2;
    int ota_port, http_port, tcpota_port; /* -1 disabled */
    char web_user[32];
    enum fault fault;
    uint64_t stall_bytes;
    char checkin_host[64];
    int checkin_port;
    char checkin_path[256];
    bool checkin_tls;       /* an https:// URL */
    char ca_file[PATH_MAX]; /* --ca: setCACert / setTrustAnchors */
    uint8_t pin_sha1[20];   /* --fingerprint: ESP8266 setFingerprint */
    bool pin;
    bool tls_ip_san; /* --tls-ip-san: an IP host matches iPAddress SANs */
    bool tls13;      /* --tls-max 1.3 */
    int interval_ms;
    bool checkin_once;      /* --interval once: one check-in at boot, none after */
    char checkin_auth[200]; /* --checkin-auth "Authorization" value ("Basic ..."), "" none */
    uint64_t free_space, chip_size;
    char flash_path[PATH_MAX];
    uint64_t flash_offset;
    uint64_t user2_offset; /* TCP-OTA: flash address of user2 (0: at flash_offset) */
    bool fs_offset_given;
    uint64_t fs_offset;
    uint64_t fs_size; /* 0: no limit */
    int rcvbuf;       /* ArduinoOTA connect-back receive window; 0: the kernel's; -1: per chip */
    int erase_ms;     /* per 4 KiB sector erase */
    int drain_ms;     /* ESP8266 Update.write(client): returns after this long without data */

    int udp_fd, http_fd, tcpota_fd;
    int images;
    int running_slot; /* TCP-OTA: 1 or 2 */
    char sketch_md5[33];
    uint64_t sketch_size;
    unsigned nonce_counter;
    FILE *log;
    /* ArduinoOTA state */
    bool waitauth;
    int cmd;
    unsigned port;
    uint64_t size;
    char md5[33];
    char nonce[65];
    struct sockaddr_in inv_src;
};

static volatile sig_atomic_t stop_flag;
static volatile sig_atomic_t checkin_now;

static void on_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
}

static void on_usr1(int sig)
{
    (void)sig;
    checkin_now = 1;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void logf_(struct netdev *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void logf_(struct netdev *d, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(d->log, "[%" PRId64 "] ", now_ms());
    vfprintf(d->log, fmt, ap);
    fputc('\n', d->log);
    fflush(d->log);
    va_end(ap);
}

static void hex(const unsigned char *b, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", b[i]);
    out[2 * n] = '\0';
}

static void digest_hex(const EVP_MD *md, const void *data, size_t len, char *out)
{
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_Digest(data, len, d, &n, md, NULL);
    hex(d, n, out);
}

/* ---- applying an image ---------------------------------------------------------- */

static void image_version(const uint8_t *img, size_t len, char *out, size_t cap)
{
    const uint8_t *p = NULL;
    for (size_t i = 0; i + 7 <= len; i++) {
        if (memcmp(img + i, "ESPVER:", 7) == 0) {
            p = img + i + 7;
            break;
        }
        if (i + 15 <= len && memcmp(img + i, "ESPSIM_VERSION=", 15) == 0) {
            p = img + i + 15;
            break;
        }
    }
    if (p) {
        size_t n = 0;
        while (p + n < img + len && n + 1 < cap && n < 32 && p[n] > 0x20 && p[n] < 0x7F)
            n++;
        memcpy(out, p, n);
        out[n] = '\0';
        return;
    }
    if (len >= 48 + 32 && img[0] == 0xE9 && img[32] == 0x32 && img[33] == 0x54 && img[34] == 0xCD &&
        img[35] == 0xAB) {
        snprintf(out, cap, "%.32s", (const char *)img + 48);
        return;
    }
    char md5[33];
    digest_hex(EVP_md5(), img, len, md5);
    snprintf(out, cap, "md5:%.8s", md5);
}

static void write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return;
    fwrite(data, 1, len, f);
    fclose(f);
}

static void save_version(struct netdev *d)
{
    char path[PATH_MAX + 16];
    snprintf(path, sizeof(path), "%s/version", d->dir);
    char line[80];
    int n = snprintf(line, sizeof(line), "%s\n", d->version);
    write_file(path, line, (size_t)n);
}

static void apply_image(struct netdev *d, const char *how, bool fs, const uint8_t *img, size_t len)
{
    char path[PATH_MAX + 32];
    d->images++;
    snprintf(path, sizeof(path), "%s/%s-%d.bin", d->dir, fs ? "fs" : "ota", d->images);
    write_file(path, img, len);
    if (fs) {
        char latest[PATH_MAX + 16];
        snprintf(latest, sizeof(latest), "%s/fs.bin", d->dir);
        write_file(latest, img, len);
        logf_(d, "%s: filesystem image %zu bytes stored as %s", how, len, path);
        if (d->flash_path[0] && d->fs_offset_given) {
            int ffd = open(d->flash_path, O_WRONLY | O_CLOEXEC);
            ssize_t w = ffd >= 0 ? pwrite(ffd, img, len, (off_t)d->fs_offset) : -1;
            if (w != (ssize_t)len)
                logf_(d, "%s: cannot write the filesystem image into %s: %s", how, d->flash_path,
                      strerror(errno));
            else
                logf_(d, "%s: wrote the filesystem image (%zu bytes) into %s at 0x%" PRIx64, how,
                      len, d->flash_path, d->fs_offset);
            if (ffd >= 0)
                close(ffd);
        }
        return;
    }
    image_version(img, len, d->version, sizeof(d->version));
    if (len > 2 && img[0] == 0x1F && img[1] == 0x8B) {
        /* eboot inflates a gzip image while copying it: the version is inside */
        uLongf cap = 16u * 1024u * 1024u;
        uint8_t *plain = malloc(cap);
        z_stream zs;
        memset(&zs, 0, sizeof(zs));
        if (plain && inflateInit2(&zs, 16 + MAX_WBITS) == Z_OK) {
            zs.next_in = (Bytef *)(uintptr_t)img;
            zs.avail_in = (uInt)len;
            zs.next_out = plain;
            zs.avail_out = (uInt)cap;
            if (inflate(&zs, Z_FINISH) == Z_STREAM_END) {
                image_version(plain, cap - zs.avail_out, d->version, sizeof(d->version));
                logf_(d, "%s: gzip image inflates to %lu bytes", how, cap - zs.avail_out);
            }
            inflateEnd(&zs);
        }
        free(plain);
    }
    /* The sketch MD5 is over the flash contents: an ESP8266 rewrites the flash-mode byte. */
    uint8_t *copy = malloc(len);
    if (copy) {
        memcpy(copy, img, len);
        if (d->chip == CHIP_ESP8266 && len > 2 && copy[0] == 0xE9)
            copy[2] = 0x02; /* running in DIO */
        digest_hex(EVP_md5(), copy, len, d->sketch_md5);
        free(copy);
    }
    d->sketch_size = len;
    if (d->flash_path[0]) {
        int ffd = open(d->flash_path, O_WRONLY | O_CLOEXEC);
        ssize_t w = ffd >= 0 ? pwrite(ffd, img, len, (off_t)d->flash_offset) : -1;
        if (w != (ssize_t)len)
            logf_(d, "%s: cannot write the image into %s: %s", how, d->flash_path, strerror(errno));
        else
            logf_(d, "%s: wrote %zu bytes into %s at 0x%" PRIx64, how, len, d->flash_path,
                  d->flash_offset);
        if (ffd >= 0)
            close(ffd);
    }
    save_version(d);
    logf_(d, "%s: applied %zu bytes as %s, version now %s", how, len, path, d->version);
}

/* ---- sockets ------------------------------------------------------------------------- */

static int listen_on(struct netdev *d, int type, int port)
{
    int fd = socket(AF_INET, type | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, d->bind_ip, &a.sin_addr);
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        (type == SOCK_STREAM && listen(fd, 4) != 0)) {
        close(fd);
        return -1;
    }
    return fd;
}

static int bound_port(int fd)
{
    struct sockaddr_in a;
    socklen_t l = sizeof(a);
    if (fd < 0 || getsockname(fd, (struct sockaddr *)&a, &l) != 0)
        return -1;
    return ntohs(a.sin_port);
}

static int wait_fd(int fd, short ev, int timeout_ms)
{
    struct pollfd p = {.fd = fd, .events = ev};
    int n;
    do
        n = poll(&p, 1, timeout_ms);
    while (n < 0 && errno == EINTR && !stop_flag);
    return n > 0 ? p.revents : 0;
}

/* The HTTPS check-in's TLS session (checkin_tls_open): one at a time, the model being
 * single-threaded and every session blocking. send_all, recv_exact and recv_head read
 * and write through it for its socket, so the check-in and pull code stays the same. */
static SSL *tls_ssl;
static int tls_fd = -1;

/* Data to read on fd within timeout_ms (TLS may hold decrypted bytes already). */
static bool rd_ready(int fd, int timeout_ms)
{
    if (fd == tls_fd && SSL_pending(tls_ssl) > 0)
        return true;
    return wait_fd(fd, POLLIN, timeout_ms) != 0;
}

static ssize_t rd(int fd, void *buf, size_t len)
{
    if (fd != tls_fd)
        return recv(fd, buf, len, 0);
    int r = SSL_read(tls_ssl, buf, len > INT_MAX ? INT_MAX : (int)len);
    return r > 0 ? r : SSL_get_error(tls_ssl, r) == SSL_ERROR_ZERO_RETURN ? 0 : -1;
}

static int send_all(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = fd == tls_fd ? SSL_write(tls_ssl, p, len > INT_MAX ? INT_MAX : (int)len)
                                 : send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int send_str(int fd, const char *s)
{
    return send_all(fd, s, strlen(s));
}

/* Reads exactly len bytes, each wait at most timeout_ms. */
static int recv_exact(int fd, uint8_t *buf, size_t len, int timeout_ms)
{
    size_t got = 0;
    while (got < len) {
        if (!rd_ready(fd, timeout_ms))
            return -1;
        ssize_t n = rd(fd, buf + got, len - got);
        if (n <= 0)
            return -1;
        got += (size_t)n;
    }
    return 0;
}

/* Reads a line (CRLF or LF) into buf; -1 on timeout/EOF/overflow. */
static int recv_line(int fd, char *buf, size_t cap, int timeout_ms)
{
    size_t n = 0;
    for (;;) {
        if (!wait_fd(fd, POLLIN, timeout_ms))
            return -1;
        char c;
        if (recv(fd, &c, 1, 0) != 1)
            return -1;
        if (c == '\n')
            break;
        if (n + 1 >= cap)
            return -1;
        buf[n++] = c;
    }
    if (n > 0 && buf[n - 1] == '\r')
        n--;
    buf[n] = '\0';
    return (int)n;
}

/* Reads an HTTP head (until CRLFCRLF) into buf; returns its length or -1. */
static int recv_head(int fd, char *buf, size_t cap, int timeout_ms)
{
    size_t n = 0;
    while (n + 1 < cap) {
        if (!rd_ready(fd, timeout_ms))
            return -1;
        ssize_t r = rd(fd, buf + n, 1);
        if (r != 1)
            return -1;
        n++;
        buf[n] = '\0';
        if (n >= 4 && memcmp(buf + n - 4, "\r\n\r\n", 4) == 0)
            return (int)n;
    }
    return -1;
}

static const char *header_value(const char *head, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name);
    for (const char *l = strstr(head, "\r\n"); l; l = strstr(l + 2, "\r\n")) {
        const char *s = l + 2;
        if (strncasecmp(s, name, nl) == 0 && s[nl] == ':') {
            s += nl + 1;
            while (*s == ' ')
                s++;
            size_t n = strcspn(s, "\r");
            if (n >= cap)
                n = cap - 1;
            memcpy(out, s, n);
            out[n] = '\0';
            return out;
        }
    }
    return NULL;
}

/* ---- ArduinoOTA ------------------------------------------------------------------------ */

static const char *skip_sp(const char *p)
{
    while (*p == ' ')
        p++;
    return p;
}

static const char *parse_num(const char *p, uint64_t *v)
{
    *v = 0;
    p = skip_sp(p);
    while (isdigit((unsigned char)*p) && *v < UINT64_MAX / 10)
        *v = *v * 10 + (uint64_t)(*p++ - '0');
    return p;
}

static void udp_reply(struct netdev *d, const struct sockaddr_in *to, const char *msg)
{
    sendto(d->udp_fd, msg, strlen(msg), 0, (const struct sockaddr *)to, sizeof(*to));
    logf_(d, "ota: udp reply '%s'", msg);
}

static bool auth_ok(struct netdev *d, const char *cnonce, const char *response)
{
    char h[65], expect[65], msg[256];
    if (!d->pbkdf2) {
        digest_hex(EVP_md5(), d->password, strlen(d->password), h);
        snprintf(msg, sizeof(msg), "%s:%s:%s", h, d->nonce, cnonce);
        digest_hex(EVP_md5(), msg, strlen(msg), expect);
    } else {
        digest_hex(EVP_sha256(), d->password, strlen(d->password), h);
        char salt[160];
        snprintf(salt, sizeof(salt), "%s:%s", d->nonce, cnonce);
        unsigned char dk[32];
        char dkh[65];
        PKCS5_PBKDF2_HMAC(h, (int)strlen(h), (unsigned char *)salt, (int)strlen(salt), 10000,
                          EVP_sha256(), 32, dk);
        hex(dk, 32, dkh);
        snprintf(msg, sizeof(msg), "%s:%s:%s", dkh, d->nonce, cnonce);
        digest_hex(EVP_sha256(), msg, strlen(msg), expect);
    }
    return d->fault != FAULT_WRONG_PASSWORD && strcmp(expect, response) == 0;
}

/*
 * The connect-back transfer. Real-device facts it models, each with its knob:
 *  - lwIP advertises a small receive window (TCP_WND 5840 in the ESP8266 core's lwIP, 5744 in
 *    ESP-IDF): --rcvbuf.
 *  - Both Updaters collect a 4 KiB sector in RAM, then erase that sector and write it; a sector
 *    erase takes 40-400 ms on real chips and the device reads nothing meanwhile: --erase-ms.
 *  - ESP8266 (ArduinoOTA::_runUpdate): Update.write(client) keeps reading while the stream gives
 *    data (Updater::writeStream), writing flash as it goes, and returns only at the end of the
 *    image or after a read found nothing; only then is its count printed (decimal, no separator).
 *    A station that keeps the socket fed gets one count for the whole image: --drain-ms.
 *  - ESP32: one client.read of at most 1460 bytes, Update.write(buf), its count printed; after
 *    1 s without data the last count again, up to 3 times, then "Receive Failed".
 */
static void sector_done(struct netdev *d, size_t *sector, bool last)
{
    while (*sector >= 4096 || (last && *sector > 0)) {
        if (d->erase_ms > 0)
            sleep_ms(d->erase_ms); /* erase before the write, like _writeBuffer */
        *sector = *sector >= 4096 ? *sector - 4096 : 0;
    }
}

static void ota_receive(struct netdev *d, const struct sockaddr_in *back)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in me = {.sin_family = AF_INET};
    inet_pton(AF_INET, d->bind_ip, &me.sin_addr);
    struct sockaddr_in to = *back;
    to.sin_port = htons((uint16_t)d->port);
    char ip[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &to.sin_addr, ip, sizeof(ip));
    if (fd >= 0 && d->rcvbuf > 0) {
        /* Before connect: the window is announced in the SYN. */
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &d->rcvbuf, sizeof(d->rcvbuf));
        setsockopt(fd, IPPROTO_TCP, TCP_WINDOW_CLAMP, &d->rcvbuf, sizeof(d->rcvbuf));
    }
    if (fd < 0 || bind(fd, (struct sockaddr *)&me, sizeof(me)) != 0 ||
        connect(fd, (struct sockaddr *)&to, sizeof(to)) != 0) {
        logf_(d, "ota: Connect Failed to %s:%u (%s)", ip, d->port, strerror(errno));
        if (fd >= 0)
            close(fd);
        return;
    }
    logf_(d,
          "ota: connected back to %s:%u, receiving %" PRIu64
          " bytes (window %d, erase %d ms/sector, drain %d ms)",
          ip, d->port, d->size, d->rcvbuf, d->erase_ms, d->drain_ms);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    bool esp32 = d->chip == CHIP_ESP32;
    uint8_t *img = malloc(d->size ? d->size : 1);
    uint64_t got = 0;
    size_t sector = 0; /* bytes in the Updater's sector buffer */
    char ack[32];
    int retries = 0;
    bool failed = false;
    uint64_t last_count = 0;
    while (img && got < d->size && !stop_flag) {
        if (d->fault == FAULT_STALL && got >= d->stall_bytes) {
            logf_(d, "ota: stalling at %" PRIu64 " bytes", got);
            int64_t end = now_ms() + 60000;
            while (!stop_flag && now_ms() < end) {
                int ev = wait_fd(fd, POLLRDHUP, 200);
                if (ev & (POLLRDHUP | POLLHUP | POLLERR))
                    break;
            }
            logf_(d, "ota: station closed the stalled transfer");
            failed = true;
            break;
        }
        int wait = esp32 ? 1000 : 60000;
        if (!wait_fd(fd, POLLIN, wait)) {
            if (esp32 && retries < 3) {
                retries++;
                snprintf(ack, sizeof(ack), "%" PRIu64, last_count);
                send_str(fd, ack);
                continue;
            }
            logf_(d, "ota: Receive Failed at %" PRIu64 " bytes", got);
            send_str(fd, esp32 ? "Receive Failed" : "ERROR[6]: Stream Read Timeout\n");
            failed = true;
            break;
        }
        /* One Update.write: ESP32 one read; ESP8266 reads (into the sector buffer's room) until
         * the stream stays quiet for drain_ms, the image is complete or (fault) the stall point. */
        uint64_t count = 0;
        bool lost = false;
        do {
            size_t want = esp32 ? 1460 : 4096 - sector;
            if (want > d->size - got)
                want = (size_t)(d->size - got);
            if (d->fault == FAULT_STALL && got + want > d->stall_bytes)
                want = (size_t)(d->stall_bytes - got);
            if (want == 0)
                break;
            ssize_t n = recv(fd, img + got, want, 0);
            if (n <= 0) {
                lost = true;
                break;
            }
            got += (uint64_t)n;
            count += (uint64_t)n;
            sector += (size_t)n;
            sector_done(d, &sector, got == d->size);
        } while (!esp32 && got < d->size && !stop_flag && wait_fd(fd, POLLIN, d->drain_ms));
        if (lost) {
            logf_(d, "ota: connection lost at %" PRIu64 " bytes", got);
            failed = true;
            break;
        }
        if (count == 0)
            continue;
        retries = 0;
        last_count = count;
        if (d->fault == FAULT_GLUED_OK && got == d->size)
            break; /* the last count goes out glued to OK */
        if (!esp32)
            logf_(d, "ota: Update.write returned %" PRIu64 " (%" PRIu64 " of %" PRIu64 ")", count,
                  got, d->size);
        snprintf(ack, sizeof(ack), "%" PRIu64, count);
        send_str(fd, ack);
    }
    if (!failed && img && got == d->size) {
        char md5[33];
        digest_hex(EVP_md5(), img, got, md5);
        bool md5_ok =
            d->chip == CHIP_ESP32 ? strcmp(md5, d->md5) == 0 : strcasecmp(md5, d->md5) == 0;
        if (d->fault == FAULT_ERROR_LINE || !md5_ok) {
            logf_(d, "ota: MD5 check failed (got %s, want %s)", md5, d->md5);
            send_str(fd, d->chip == CHIP_ESP32 ? "MD5 Check Failed" : "ERROR[7]: MD5 Failed\n");
        } else {
            if (d->chip == CHIP_ESP8266)
                sleep_ms(250);
            /* Written to "flash" before the verdict, like Update.end() on the device. */
            apply_image(d, "ota", d->cmd == 100, img, got);
            if (d->fault == FAULT_GLUED_OK) {
                snprintf(ack, sizeof(ack), "%" PRIu64 "OK", last_count);
                send_str(fd, ack);
            } else {
                send_str(fd, "OK");
            }
            sleep_ms(d->chip == CHIP_ESP8266 ? 250 : 100);
        }
    }
    free(img);
    close(fd);
}

static void ota_udp(struct netdev *d)
{
    char buf[512];
    struct sockaddr_in src;
    socklen_t sl = sizeof(src);
    ssize_t n = recvfrom(d->udp_fd, buf, sizeof(buf) - 1, 0, (struct sockaddr *)&src, &sl);
    if (n <= 0)
        return;
    buf[n] = '\0';
    if (d->fault == FAULT_NO_ANSWER) {
        logf_(d, "ota: ignoring datagram (fault no-answer)");
        return;
    }
    if (d->waitauth) {
        d->waitauth = false;
        uint64_t cmd;
        const char *p = parse_num(buf, &cmd);
        if (cmd != 200) {
            logf_(d, "ota: datagram in WAITAUTH is not an auth answer: back to idle");
            return;
        }
        p = skip_sp(p);
        char cnonce[80] = "", resp[80] = "";
        size_t cl = strcspn(p, " \n");
        if (cl < sizeof(cnonce))
            memcpy(cnonce, p, cl), cnonce[cl] = '\0';
        p = skip_sp(p + cl);
        size_t rl = strcspn(p, " \r\n");
        if (rl < sizeof(resp))
            memcpy(resp, p, rl), resp[rl] = '\0';
        size_t want = d->pbkdf2 ? 64 : 32;
        if (strlen(cnonce) != want || strlen(resp) != want) {
            logf_(d, "ota: auth answer with wrong lengths: back to idle");
            return;
        }
        if (!auth_ok(d, cnonce, resp)) {
            udp_reply(d, &src, "Authentication Failed");
            logf_(d, "ota: authentication failed");
            return;
        }
        logf_(d, "ota: authenticated");
        /* ESP32 answers to/connects to the auth packet's source; ESP8266 the invitation's. */
        if (d->chip == CHIP_ESP32)
            d->inv_src = src;
    } else {
        uint64_t cmd, port, size;
        const char *p = parse_num(buf, &cmd);
        if (cmd != 0 && cmd != 100)
            return;
        p = parse_num(p, &port);
        p = parse_num(p, &size);
        if (*p)
            p++; /* exactly one character between size and md5 */
        char md5[33];
        size_t ml = strcspn(p, "\n");
        while (ml > 0 && isspace((unsigned char)p[ml - 1]))
            ml--;
        while (ml > 0 && isspace((unsigned char)*p))
            p++, ml--;
        if (ml != 32) {
            logf_(d, "ota: invitation md5 is not 32 chars: dropped");
            return;
        }
        memcpy(md5, p, 32);
        md5[32] = '\0';
        d->cmd = (int)cmd;
        d->port = (unsigned)port;
        d->size = size;
        memcpy(d->md5, md5, sizeof(d->md5));
        d->inv_src = src;
        logf_(d, "ota: invitation cmd=%d port=%u size=%" PRIu64 " md5=%s", d->cmd, d->port, d->size,
              d->md5);
        if (d->password[0]) {
            char seed[64], nonce[65];
            snprintf(seed, sizeof(seed), "%" PRId64 ":%u", now_ms() * 1000, d->nonce_counter++);
            digest_hex(d->pbkdf2 ? EVP_sha256() : EVP_md5(), seed, strlen(seed), nonce);
            snprintf(d->nonce, sizeof(d->nonce), "%s", nonce);
            char reply[80];
            snprintf(reply, sizeof(reply), "AUTH %s", d->nonce);
            udp_reply(d, &src, reply);
            d->waitauth = true;
            return;
        }
    }
    /* U_FS checks against the filesystem partition, U_FLASH against the free sketch space. */
    uint64_t room = d->cmd == 100 ? (d->fs_size ? d->fs_size : UINT64_MAX) : d->free_space;
    bool fits = d->fault != FAULT_NO_SPACE && d->size <= room && d->size > 0;
    if (d->chip == CHIP_ESP8266) {
        if (!fits) {
            udp_reply(d, &d->inv_src, "ERR: ERROR[4]: Not Enough Space");
            return;
        }
        udp_reply(d, &d->inv_src, "OK");
    } else {
        udp_reply(d, &d->inv_src, "OK");
        if (!fits) {
            logf_(d, "ota: Update.begin failed: not enough space (no connect-back)");
            return;
        }
    }
    if (d->fault == FAULT_NO_CONNECT_BACK) {
        logf_(d, "ota: not connecting back (fault no-connect-back)");
        return;
    }
    ota_receive(d, &d->inv_src);
}

/* ---- HTTPUpdateServer ------------------------------------------------------------------- */

static void http_answer(int fd, int status, const char *extra, const char *body)
{
    char head[512];
    const char *phrase = status == 200 ? "OK" : status == 401 ? "Unauthorized" : "Not Found";
    snprintf(head, sizeof(head),
             "HTTP/1.1 %d %s\r\nContent-Type: text/html\r\nContent-Length: %zu\r\n%s"
             "Connection: close\r\n\r\n",
             status, phrase, strlen(body), extra ? extra : "");
    send_str(fd, head);
    send_str(fd, body);
}

static bool basic_ok(struct netdev *d, const char *head)
{
    if (!d->password[0])
        return true;
    char v[256];
    if (!header_value(head, "Authorization", v, sizeof(v)) || strncmp(v, "Basic ", 6) != 0)
        return false;
    char cred[160];
    unsigned char b64[240];
    int n = snprintf(cred, sizeof(cred), "%s:%s", d->web_user, d->password);
    EVP_EncodeBlock(b64, (unsigned char *)cred, n);
    /* What the station sent, for the log: the user part of the decoded credentials. */
    unsigned char got[200] = "";
    size_t vl = strlen(v + 6);
    if (vl < 240 && vl % 4 == 0) {
        int gl = EVP_DecodeBlock(got, (const unsigned char *)v + 6, (int)vl);
        got[gl > 0 ? gl : 0] = '\0';
        char *colon = strchr((char *)got, ':');
        if (colon)
            *colon = '\0';
    }
    bool ok = strcmp(v + 6, (char *)b64) == 0;
    if (ok)
        logf_(d, "web: Basic auth as user %s", (char *)got);
    else
        logf_(d, "web: 401 (credentials; got user %s)", (char *)got);
    return ok;
}

static void web_session(struct netdev *d, int fd)
{
    char head[8192];
    if (recv_head(fd, head, sizeof(head), 5000) < 0)
        return;
    char method[8] = "", path[128] = "";
    sscanf(head, "%7s %127s", method, path);
    if (strcmp(path, "/update") != 0) {
        http_answer(fd, 404, NULL, "Not found");
        return;
    }
    if (strcmp(method, "GET") == 0) {
        http_answer(fd, 200, NULL,
                    "<html><body><form method='POST' action='' enctype='multipart/form-data'>"
                    "<input type='file' accept='.bin,.bin.gz' name='firmware'>"
                    "<input type='submit' value='Update Firmware'></form></body></html>");
        return;
    }
    char v[256];
    uint64_t clen = 0;
    if (header_value(head, "Content-Length", v, sizeof(v)))
        clen = strtoull(v, NULL, 10);
    uint8_t *body = clen && clen <= MAX_IMAGE ? malloc(clen) : NULL;
    if (!body || recv_exact(fd, body, clen, 5000) < 0) {
        logf_(d, "web: body not received (%" PRIu64 " bytes announced)", clen);
        free(body);
        return;
    }
    if (!basic_ok(d, head)) {
        http_answer(fd, 401, "WWW-Authenticate: Basic realm=\"Login Required\"\r\n", "");
        free(body);
        return;
    }
    char err[128] = "";
    const char *ct = header_value(head, "Content-Type", v, sizeof(v));
    char boundary[80] = "";
    if (!ct || strncmp(ct, "multipart/form-data", 19) != 0 || !strchr(ct, '=')) {
        snprintf(err, sizeof(err), "no multipart body");
    } else {
        snprintf(boundary, sizeof(boundary), "--%s", strchr(ct, '=') + 1);
    }
    size_t bl = strlen(boundary);
    const uint8_t *data = NULL;
    size_t dlen = 0;
    bool fs = false;
    if (!err[0]) {
        /* Strict part parser: "--B\r\n", Content-Disposition with name then filename, an
         * optional Content-Type line, blank line, data up to "\r\n--B". */
        const char *b = (const char *)body;
        const char *end = b + clen;
        char name[64] = "", fname[128] = "";
        const char *p = b;
        if ((size_t)(end - p) < bl + 2 || memcmp(p, boundary, bl) != 0 ||
            memcmp(p + bl, "\r\n", 2) != 0) {
            snprintf(err, sizeof(err), "bad multipart start");
        } else {
            p += bl + 2;
            const char *eol = memmem(p, (size_t)(end - p), "\r\n", 2);
            char line[300];
            size_t ll = eol ? (size_t)(eol - p) : 0;
            if (!eol || ll >= sizeof(line)) {
                snprintf(err, sizeof(err), "bad part header");
            } else {
                memcpy(line, p, ll);
                line[ll] = '\0';
                if (sscanf(line,
                           "Content-Disposition: form-data; name=\"%63[^\"]\"; "
                           "filename=\"%127[^\"]\"",
                           name, fname) != 2)
                    snprintf(err, sizeof(err), "part is not a file upload: '%.60s'", line);
                p = eol + 2;
                eol = memmem(p, (size_t)(end - p), "\r\n", 2);
                if (!err[0] && eol && strncasecmp(p, "Content-Type:", 13) == 0) {
                    p = eol + 2;
                    eol = memmem(p, (size_t)(end - p), "\r\n", 2);
                }
                if (!err[0] && eol != p)
                    snprintf(err, sizeof(err), "unexpected part header");
                if (!err[0]) {
                    p += 2;
                    char term[96];
                    snprintf(term, sizeof(term), "\r\n%s", boundary);
                    const char *q = memmem(p, (size_t)(end - p), term, strlen(term));
                    if (!q) {
                        snprintf(err, sizeof(err), "no closing boundary");
                    } else {
                        data = (const uint8_t *)p;
                        dlen = (size_t)(q - p);
                        fs = strcmp(name, "filesystem") == 0;
                        logf_(d, "web: part name=%s filename=%s %zu bytes", name, fname, dlen);
                    }
                }
            }
        }
    }
    if (!err[0] && (d->fault == FAULT_NO_SPACE || dlen > d->free_space))
        snprintf(err, sizeof(err), "%sNot Enough Space",
                 d->chip == CHIP_ESP8266 ? "ERROR[4]: " : "");
    if (!err[0] && !fs && dlen > 0 && data[0] != 0xE9 &&
        !(d->chip == CHIP_ESP8266 && data[0] == 0x1F))
        snprintf(err, sizeof(err), "%s",
                 d->chip == CHIP_ESP8266 ? "ERROR[10]: Magic byte is wrong, not 0xE9"
                                         : "Wrong Magic Byte");
    if (!err[0] && d->fault == FAULT_ERROR_LINE)
        snprintf(err, sizeof(err), "%sFlash Write Failed",
                 d->chip == CHIP_ESP8266 ? "ERROR[1]: " : "");
    if (err[0]) {
        char page[256];
        snprintf(page, sizeof(page), "Update error: %s", err);
        logf_(d, "web: %s", page);
        http_answer(fd, 200, NULL, page);
    } else {
        apply_image(d, "web", fs, data, dlen);
        http_answer(fd, 200, NULL,
                    "<META http-equiv=\"refresh\" content=\"15;URL=/\">Update Success! "
                    "Rebooting...");
        sleep_ms(100);
    }
    free(body);
}

/* ---- raw TCP-OTA ---------------------------------------------------------------------- */

static void tcpota_session(struct netdev *d, int fd)
{
    char line[32];
    if (recv_line(fd, line, sizeof(line), 5000) < 0)
        return;
    if (strcmp(line, "OTA") != 0) {
        send_str(fd, "ERR: Invalid protocol\r\n");
        return;
    }
    uint64_t len = 0;
    for (;;) {
        if (recv_line(fd, line, sizeof(line), 5000) < 0)
            return;
        if (strcmp(line, "GetNextFlash") == 0) {
            send_str(fd, d->running_slot == 1 ? "user2.bin\r\n" : "user1.bin\r\n");
            continue;
        }
        if (strncmp(line, "FirmwareLength:", 15) == 0) {
            bool digits = false, bad = false;
            for (const char *p = line + 15; *p; p++) {
                if (isdigit((unsigned char)*p)) {
                    len = len * 10 + (uint64_t)(*p - '0');
                    digits = true;
                } else if (*p != ' ' && *p != ',') {
                    bad = true;
                }
            }
            if (!digits || bad || len == 0) {
                send_str(fd, "ERR: Invalid firmware length\r\n");
                return;
            }
            if (len > TCP_OTA_FIRMWARE_SIZE) {
                send_str(fd, "ERR: Firmware length is too big\r\n");
                return;
            }
            send_str(fd, "Ready\r\n");
            break;
        }
        send_str(fd, "ERR: Unexpected header.\r\n");
        return;
    }
    uint8_t *img = malloc(len);
    if (!img || recv_exact(fd, img, len, 5000) < 0) {
        logf_(d, "tcpota: image not received");
        free(img);
        return;
    }
    const char *e = NULL;
    if (len < 12 || img[0] != 0xEA || img[1] != 0x04)
        e = "ERR: IROM magic missing.\r\n";
    else if (img[2] > 3 || (img[3] >> 4) > 6)
        e = "ERR: Flash header invalid.\r\n";
    else if ((img[6] | img[7] << 8) != 0x4010)
        e = "ERR: Invalid entry address.\r\n";
    else if (img[8] | img[9] | img[10] | img[11])
        e = "ERR: Invalid start offset.\r\n";
    else if (d->fault == FAULT_ERROR_LINE)
        e = "ERR: Flash failed.\r\n";
    if (e) {
        logf_(d, "tcpota: %.*s", (int)strlen(e) - 2, e);
        send_str(fd, e);
    } else {
        int slot = d->running_slot == 1 ? 2 : 1;
        d->running_slot = slot;
        logf_(d, "tcpota: wrote user%d.bin (%" PRIu64 " bytes), running user%d", slot, len, slot);
        uint64_t user1_offset = d->flash_offset;
        if (slot == 2 && d->user2_offset)
            d->flash_offset = d->user2_offset;
        apply_image(d, "tcpota", false, img, len);
        d->flash_offset = user1_offset;
        char sp[PATH_MAX + 16];
        snprintf(sp, sizeof(sp), "%s/slot", d->dir);
        write_file(sp, slot == 2 ? "2\n" : "1\n", 2);
        send_str(fd, "Flash upgrade success. Rebooting in 2s.\r\n");
    }
    free(img);
}

/* ---- HTTP pull check-in -------------------------------------------------------------- */

static bool want_fs(const struct netdev *d)
{
    char path[PATH_MAX + 16];
    snprintf(path, sizeof(path), "%s/want-fs", d->dir);
    return access(path, F_OK) == 0;
}

/*
 * The body of a pull (200): HTTPUpdate / ESP8266httpUpdate hand the socket to
 * Update.writeStream(), which fills the Updater's 4 KiB sector buffer and then erases and
 * writes the sector while reading nothing (--erase-ms each, as in the push), behind the same
 * lwIP receive window (--rcvbuf, set on the check-in socket before connect). 0, or -1 when
 * the stream ends or stays quiet for timeout_ms.
 */
static int pull_body(struct netdev *d, int fd, uint8_t *img, size_t len, int timeout_ms)
{
    size_t got = 0, sector = 0;
    while (got < len) {
        size_t want = 4096 - sector;
        if (want > len - got)
            want = len - got;
        if (recv_exact(fd, img + got, want, timeout_ms) < 0)
            return -1;
        got += want;
        sector += want;
        sector_done(d, &sector, got == len);
    }
    return 0;
}

/*
 * HTTPS check-in (an https:// URL). ESP32 HTTPUpdate over a WiFiClientSecure given
 * setCACert(), and ESP8266httpUpdate over a BearSSL::WiFiClientSecure given
 * setTrustAnchors(), verify the server's chain against that CA and the URL's host against
 * the certificate's names (--ca FILE). Mbed TLS 2.x (arduino-esp32 2.x, ESP-IDF 4.x) does
 * the name check of x509_crt_verify_name(): with a subjectAltName extension, the host
 * against every entry's bytes (case-insensitive, "*." one label), the CN never; an
 * iPAddress entry holds 4 raw bytes, so a URL with an IP address matches only a DNS entry
 * spelling it (Mbed-TLS issue #5082). --tls-ip-san: the host matches iPAddress entries
 * instead, as in Mbed TLS 3.5+ (arduino-esp32 3.x). --fingerprint HEX: ESP8266
 * setFingerprint(): only the SHA-1 of the server's certificate is compared (no chain, no
 * name, no dates). The cores speak TLS 1.2 (--tls-max 1.3 allows 1.3) and send the host as
 * SNI, an IP address too. A failed handshake is the updater's "connection refused" (-1).
 */
static bool name_matches(const char *host, const unsigned char *name, size_t nlen)
{
    size_t hl = strlen(host);
    if (nlen == hl && strncasecmp(host, (const char *)name, hl) == 0)
        return true;
    if (nlen > 2 && name[0] == '*' && name[1] == '.') {
        const char *dot = strchr(host, '.');
        return dot && strlen(dot) == nlen - 1 &&
               strncasecmp(dot, (const char *)name + 1, nlen - 1) == 0;
    }
    return false;
}

static bool mbedtls2_name_ok(X509 *x, const char *host)
{
    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    bool ok = false;
    if (gens) {
        for (int i = 0; i < sk_GENERAL_NAME_num(gens) && !ok; i++) {
            const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
            const ASN1_STRING *s = g->type == GEN_DNS     ? g->d.dNSName
                                   : g->type == GEN_IPADD ? g->d.iPAddress
                                                          : NULL;
            ok = s && name_matches(host, ASN1_STRING_get0_data(s), (size_t)ASN1_STRING_length(s));
        }
        GENERAL_NAMES_free(gens);
        return ok;
    }
    X509_NAME *subj = X509_get_subject_name(x);
    for (int i = -1; (i = X509_NAME_get_index_by_NID(subj, NID_commonName, i)) >= 0 && !ok;) {
        const ASN1_STRING *cn = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, i));
        ok = name_matches(host, ASN1_STRING_get0_data(cn), (size_t)ASN1_STRING_length(cn));
    }
    return ok;
}

static int checkin_verify_cb(int ok, X509_STORE_CTX *xs)
{
    SSL *ssl = X509_STORE_CTX_get_ex_data(xs, SSL_get_ex_data_X509_STORE_CTX_idx());
    const struct netdev *d = SSL_get_app_data(ssl);
    int depth = X509_STORE_CTX_get_error_depth(xs);
    X509 *x = X509_STORE_CTX_get_current_cert(xs);
    if (d->pin) { /* setFingerprint: the leaf's SHA-1, nothing else */
        if (depth > 0)
            return 1;
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int n = 0;
        if (X509_digest(x, EVP_sha1(), md, &n) != 1 || n != 20 || memcmp(md, d->pin_sha1, 20)) {
            X509_STORE_CTX_set_error(xs, X509_V_ERR_CERT_REJECTED);
            return 0;
        }
        X509_STORE_CTX_set_error(xs, X509_V_OK);
        return 1;
    }
    if (!ok || depth > 0 || d->tls_ip_san)
        return ok;
    if (!mbedtls2_name_ok(x, d->checkin_host)) {
        X509_STORE_CTX_set_error(xs, X509_V_ERR_HOSTNAME_MISMATCH);
        return 0;
    }
    return 1;
}

/* The TLS session over the connected check-in socket, or -1 (logged). */
static int checkin_tls_open(struct netdev *d, int fd, const char *tag)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx)
        return -1;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_max_proto_version(ctx, d->tls13 ? TLS1_3_VERSION : TLS1_2_VERSION);
    if (!d->pin && SSL_CTX_load_verify_locations(ctx, d->ca_file, NULL) != 1) {
        logf_(d, "%s: cannot load the CA certificate %s", tag, d->ca_file);
        SSL_CTX_free(ctx);
        return -1;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, checkin_verify_cb);
    SSL *ssl = SSL_new(ctx);
    SSL_CTX_free(ctx); /* the session holds its own reference */
    if (!ssl)
        return -1;
    SSL_set_app_data(ssl, d);
    SSL_set_fd(ssl, fd);
    SSL_set_tlsext_host_name(ssl, d->checkin_host);
    struct in_addr ia;
    if (!d->pin && d->tls_ip_san) {
        if (inet_pton(AF_INET, d->checkin_host, &ia) == 1)
            X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), d->checkin_host);
        else
            X509_VERIFY_PARAM_set1_host(SSL_get0_param(ssl), d->checkin_host, 0);
    }
    struct timeval tv = {.tv_sec = 8}; /* HTTPClient's default timeout, for the blocking reads */
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    ERR_clear_error();
    if (SSL_connect(ssl) != 1) {
        long vr = SSL_get_verify_result(ssl);
        unsigned long e = ERR_peek_error();
        const char *why = vr != X509_V_OK ? X509_verify_cert_error_string(vr)
                          : e             ? ERR_reason_error_string(e)
                                          : "the server closed the connection";
        logf_(d, "%s: TLS handshake with %s:%d failed: %s (HTTP error -1: connection refused)", tag,
              d->checkin_host, d->checkin_port, why ? why : "?");
        SSL_free(ssl);
        ERR_clear_error();
        return -1;
    }
    logf_(d, "%s: TLS %s %s, server certificate %s", tag, SSL_get_version(ssl),
          SSL_get_cipher_name(ssl),
          d->pin ? "matches the pinned SHA-1 fingerprint" : "verified against the CA");
    tls_ssl = ssl;
    tls_fd = fd;
    return 0;
}

/* The end of the session: close_notify sent (not waited for); the caller closes fd. */
static void checkin_tls_close(void)
{
    if (!tls_ssl)
        return;
    ERR_clear_error();
    (void)SSL_shutdown(tls_ssl);
    SSL_free(tls_ssl);
    ERR_clear_error();
    tls_ssl = NULL;
    tls_fd = -1;
}

/* One check-in; fs: x-…-mode: spiffs (the filesystem image) instead of sketch. */
static void checkin(struct netdev *d, bool fs)
{
    const char *mode = fs ? "spiffs" : "sketch";
    const char *tag = fs ? "checkin-fs" : "checkin";
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((uint16_t)d->checkin_port)};
    inet_pton(AF_INET, d->checkin_host, &to.sin_addr);
    struct sockaddr_in me = {.sin_family = AF_INET};
    inet_pton(AF_INET, d->bind_ip, &me.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && d->rcvbuf > 0) { /* the lwIP window, announced in the SYN */
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &d->rcvbuf, sizeof(d->rcvbuf));
        setsockopt(fd, IPPROTO_TCP, TCP_WINDOW_CLAMP, &d->rcvbuf, sizeof(d->rcvbuf));
    }
    if (fd < 0 || bind(fd, (struct sockaddr *)&me, sizeof(me)) != 0 ||
        connect(fd, (struct sockaddr *)&to, sizeof(to)) != 0) {
        logf_(d, "%s: connect to %s:%d failed: %s", tag, d->checkin_host, d->checkin_port,
              strerror(errno));
        if (fd >= 0)
            close(fd);
        return;
    }
    if (d->checkin_tls && checkin_tls_open(d, fd, tag) < 0) {
        close(fd);
        return;
    }
    char host[96];
    if (d->checkin_port == (d->checkin_tls ? 443 : 80)) /* HTTPClient omits a default port */
        snprintf(host, sizeof(host), "%s", d->checkin_host);
    else
        snprintf(host, sizeof(host), "%s:%d", d->checkin_host, d->checkin_port);
    char ap[18];
    snprintf(ap, sizeof(ap), "%s", d->mac);
    ap[16] = ap[16] == 'F' ? '0' : (char)(ap[16] + 1); /* AP MAC differs from STA MAC */
    char req[2048];
    int n;
    if (d->chip == CHIP_ESP8266) {
        unsigned chip_id = (unsigned)strtoul(d->mac + 9, NULL, 16) & 0xFFFFFF;
        n = snprintf(req, sizeof(req),
                     "GET %s HTTP/1.0\r\nHost: %s\r\nUser-Agent: ESP8266-http-Update\r\n"
                     "Connection: close\r\n%s%s%sx-ESP8266-Chip-ID: %u\r\nx-ESP8266-STA-MAC: %s\r\n"
                     "x-ESP8266-AP-MAC: %s\r\nx-ESP8266-free-space: %" PRIu64 "\r\n"
                     "x-ESP8266-sketch-size: %" PRIu64 "\r\nx-ESP8266-sketch-md5: %s\r\n"
                     "x-ESP8266-chip-size: %" PRIu64 "\r\n"
                     "x-ESP8266-sdk-version: 2.2.2-dev(38a443e)\r\nx-ESP8266-mode: %s\r\n",
                     d->checkin_path, host, d->checkin_auth[0] ? "Authorization: " : "",
                     d->checkin_auth, d->checkin_auth[0] ? "\r\n" : "", chip_id, d->mac, ap,
                     d->free_space, d->sketch_size, d->sketch_md5, d->chip_size, mode);
        if (d->version[0])
            n +=
                snprintf(req + n, sizeof(req) - (size_t)n, "x-ESP8266-version: %s\r\n", d->version);
        n += snprintf(req + n, sizeof(req) - (size_t)n, "Content-Length: 0\r\n\r\n");
    } else {
        n = snprintf(req, sizeof(req),
                     "GET %s HTTP/1.0\r\nHost: %s\r\nUser-Agent: ESP32-http-Update\r\n"
                     "Connection: close\r\n%s%s%sCache-Control: no-cache\r\nx-ESP32-STA-MAC: %s\r\n"
                     "x-ESP32-AP-MAC: %s\r\nx-ESP32-free-space: %" PRIu64 "\r\n"
                     "x-ESP32-sketch-size: %" PRIu64 "\r\nx-ESP32-sketch-md5: %s\r\n"
                     "x-ESP32-chip-size: %" PRIu64 "\r\nx-ESP32-sdk-version: v4.4.7-dirty\r\n"
                     "x-ESP32-mode: %s\r\n",
                     d->checkin_path, host, d->checkin_auth[0] ? "Authorization: " : "",
                     d->checkin_auth, d->checkin_auth[0] ? "\r\n" : "", d->mac, ap, d->free_space,
                     d->sketch_size, d->sketch_md5, d->chip_size, mode);
        if (d->version[0])
            n += snprintf(req + n, sizeof(req) - (size_t)n, "x-ESP32-version: %s\r\n", d->version);
        n += snprintf(req + n, sizeof(req) - (size_t)n, "\r\n");
    }
    char head[4096];
    int status = 0;
    if (send_all(fd, req, (size_t)n) < 0 || recv_head(fd, head, sizeof(head), 8000) < 0 ||
        sscanf(head, "HTTP/1.%*d %d", &status) != 1) {
        logf_(d, "%s: no answer", tag);
        checkin_tls_close();
        close(fd);
        return;
    }
    logf_(d, "%s: status=%d version=%s", tag, status, d->version);
    if (status >= 400) {
        /* the station's one-line reason (text body) */
        char v[64], text[256] = "";
        uint64_t tl =
            header_value(head, "Content-Length", v, sizeof(v)) ? strtoull(v, NULL, 10) : 0;
        if (tl > 0 && tl < sizeof(text) && recv_exact(fd, (uint8_t *)text, tl, 2000) == 0) {
            text[tl] = '\0';
            text[strcspn(text, "\r\n")] = '\0';
            logf_(d, "%s: refused: %s", tag, text);
        }
    }
    if (status == 200) {
        char v[128], want_md5[64] = "";
        uint64_t clen = 0;
        bool has_len = header_value(head, "Content-Length", v, sizeof(v)) != NULL;
        if (has_len)
            clen = strtoull(v, NULL, 10);
        if (header_value(head, "x-MD5", v, sizeof(v)))
            snprintf(want_md5, sizeof(want_md5), "%.40s", v);
        if (header_value(head, "Transfer-Encoding", v, sizeof(v)) ||
            header_value(head, "Content-Encoding", v, sizeof(v))) {
            logf_(d, "%s: HTTP_UE_SERVER_FAULTY_... encoded body refused", tag);
        } else if (!has_len || clen == 0) {
            logf_(d, "%s: -101 Server Did Not Report Size", tag);
        } else if (fs ? d->fs_size && clen > d->fs_size : clen > d->free_space) {
            logf_(d, "%s: -100 Not Enough space", tag);
        } else if (want_md5[0] && strlen(want_md5) != 32) {
            logf_(d, "%s: -105 wrong x-MD5 length", tag);
        } else {
            uint8_t *img = malloc(clen);
            int64_t t0 = now_ms(); /* the head is in: the body starts */
            bool whole = img && pull_body(d, fd, img, clen, 8000) == 0;
            if (whole) /* head to last sector written (tests compare the station's figure) */
                logf_(d, "pull: received %" PRIu64 " bytes in %" PRId64 " ms", clen, now_ms() - t0);
            if (!whole) {
                logf_(d, "%s: body incomplete", tag);
            } else if (!fs && img[0] != 0xE9 && !(d->chip == CHIP_ESP8266 && img[0] == 0x1F)) {
                logf_(d, "%s: -106 Verify Bin Header Failed", tag);
            } else {
                char md5[33];
                digest_hex(EVP_md5(), img, clen, md5);
                bool ok = !want_md5[0] || (d->chip == CHIP_ESP32 ? strcmp(md5, want_md5) == 0
                                                                 : strcasecmp(md5, want_md5) == 0);
                if (!ok)
                    logf_(d, "%s: update error 7: MD5 mismatch (x-MD5 %s, body %s)", tag, want_md5,
                          md5);
                else
                    apply_image(d, "pull", fs, img, clen);
            }
            free(img);
        }
    }
    checkin_tls_close();
    close(fd);
}

/* ---- main ------------------------------------------------------------------------------ */

static void usage(void)
{
    fprintf(stderr,
            "usage: esp_netdev --chip esp8266|esp32 --mac MAC --bind 127.0.0.x --dir DIR\n"
            "  [--version V] [--password PW] [--auth md5|pbkdf2] [--ota-port N]\n"
            "  [--http-port N] [--web-user U] [--tcp-ota] [--tcp-ota-port N]\n"
            "  [--checkin URL --interval MS|once] [--checkin-auth USER:PASS] [--free-space N]\n"
            "  [--sketch-md5 HEX --sketch-size N] [--flash FILE --flash-offset N]\n"
            "  [--fs-offset N] [--fs-size N] [--want-fs] [--user2-offset N] [--running-slot 1|2]\n"
            "  [--rcvbuf BYTES] [--erase-ms MS] [--drain-ms MS]\n"
            "  [--ca FILE | --fingerprint SHA1HEX] [--tls-ip-san] [--tls-max 1.2|1.3]\n"
            "  [--fault no-answer|wrong-password|no-space|stall:BYTES|glued-ok|error-line|"
            "no-connect-back]\n");
    exit(2);
}

static int parse_fault(struct netdev *d, const char *f)
{
    static const struct {
        const char *name;
        enum fault f;
    } tab[] = {{"no-answer", FAULT_NO_ANSWER},   {"wrong-password", FAULT_WRONG_PASSWORD},
               {"no-space", FAULT_NO_SPACE},     {"glued-ok", FAULT_GLUED_OK},
               {"error-line", FAULT_ERROR_LINE}, {"no-connect-back", FAULT_NO_CONNECT_BACK}};
    for (size_t i = 0; i < sizeof(tab) / sizeof(tab[0]); i++)
        if (strcmp(f, tab[i].name) == 0) {
            d->fault = tab[i].f;
            return 0;
        }
    if (strncmp(f, "stall:", 6) == 0) {
        d->fault = FAULT_STALL;
        d->stall_bytes = strtoull(f + 6, NULL, 10);
        return 0;
    }
    return -1;
}

/* 20 bytes of hex, pairs optionally separated by ':' or ' ' (as setFingerprint takes them). */
static int parse_sha1(const char *s, uint8_t out[20])
{
    size_t k = 0;
    for (const char *p = s; *p; p++) {
        if (*p == ':' || *p == ' ')
            continue;
        if (!isxdigit((unsigned char)*p) || k >= 40)
            return -1;
        unsigned v = isdigit((unsigned char)*p) ? (unsigned)(*p - '0')
                                                : (unsigned)(tolower((unsigned char)*p) - 'a' + 10);
        out[k / 2] = (uint8_t)(k % 2 ? (out[k / 2] | v) : (v << 4));
        k++;
    }
    return k == 40 ? 0 : -1;
}

static int parse_url(struct netdev *d, const char *url)
{
    d->checkin_tls = strncmp(url, "https://", 8) == 0;
    if (!d->checkin_tls && strncmp(url, "http://", 7) != 0)
        return -1;
    const char *h = url + (d->checkin_tls ? 8 : 7);
    const char *slash = strchr(h, '/');
    const char *colon = strchr(h, ':');
    size_t hl = (size_t)((colon && (!slash || colon < slash) ? colon
                          : slash                            ? slash
                                                             : h + strlen(h)) -
                         h);
    if (hl == 0 || hl >= sizeof(d->checkin_host))
        return -1;
    memcpy(d->checkin_host, h, hl);
    d->checkin_host[hl] = '\0';
    d->checkin_port = colon && (!slash || colon < slash) ? atoi(colon + 1)
                      : d->checkin_tls                   ? 443
                                                         : 80;
    snprintf(d->checkin_path, sizeof(d->checkin_path), "%s", slash ? slash : "/");
    return 0;
}

int main(int argc, char **argv)
{
    struct netdev d;
    memset(&d, 0, sizeof(d));
    d.udp_fd = d.http_fd = d.tcpota_fd = -1;
    d.ota_port = 0;
    d.http_port = -1;
    d.tcpota_port = -1;
    d.running_slot = 1;
    d.chip_size = 4u * 1024u * 1024u;
    d.rcvbuf = -1;
    d.erase_ms = 45;
    d.drain_ms = 1000;
    snprintf(d.version, sizeof(d.version), "1.0.0");
    snprintf(d.web_user, sizeof(d.web_user), "admin");
    bool have_chip = false, free_given = false, want_fs_arg = false;
    char given_md5[33] = "";
    uint64_t given_size = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool takes = true;
        if (strcmp(a, "--tcp-ota") == 0) {
            if (d.tcpota_port < 0)
                d.tcpota_port = 0;
            takes = false;
        } else if (strcmp(a, "--want-fs") == 0) {
            want_fs_arg = true;
            takes = false;
        } else if (strcmp(a, "--tls-ip-san") == 0) {
            d.tls_ip_san = true;
            takes = false;
        } else if (!v) {
            usage();
        } else if (strcmp(a, "--chip") == 0) {
            if (strcmp(v, "esp8266") == 0)
                d.chip = CHIP_ESP8266;
            else if (strcmp(v, "esp32") == 0)
                d.chip = CHIP_ESP32;
            else
                usage();
            have_chip = true;
        } else if (strcmp(a, "--mac") == 0) {
            snprintf(d.mac, sizeof(d.mac), "%s", v);
            for (char *p = d.mac; *p; p++)
                *p = (char)toupper((unsigned char)*p);
        } else if (strcmp(a, "--bind") == 0) {
            snprintf(d.bind_ip, sizeof(d.bind_ip), "%s", v);
        } else if (strcmp(a, "--dir") == 0) {
            snprintf(d.dir, sizeof(d.dir), "%s", v);
        } else if (strcmp(a, "--version") == 0) {
            snprintf(d.version, sizeof(d.version), "%s", v);
        } else if (strcmp(a, "--password") == 0) {
            snprintf(d.password, sizeof(d.password), "%s", v);
        } else if (strcmp(a, "--auth") == 0) {
            d.pbkdf2 = strcmp(v, "pbkdf2") == 0;
        } else if (strcmp(a, "--ota-port") == 0) {
            d.ota_port = atoi(v);
        } else if (strcmp(a, "--http-port") == 0) {
            d.http_port = atoi(v);
        } else if (strcmp(a, "--web-user") == 0) {
            snprintf(d.web_user, sizeof(d.web_user), "%s", v);
        } else if (strcmp(a, "--tcp-ota-port") == 0) {
            d.tcpota_port = atoi(v);
        } else if (strcmp(a, "--ca") == 0) {
            snprintf(d.ca_file, sizeof(d.ca_file), "%s", v);
        } else if (strcmp(a, "--fingerprint") == 0) {
            if (parse_sha1(v, d.pin_sha1) < 0)
                usage();
            d.pin = true;
        } else if (strcmp(a, "--tls-max") == 0) {
            d.tls13 = strcmp(v, "1.3") == 0;
            if (!d.tls13 && strcmp(v, "1.2") != 0)
                usage();
        } else if (strcmp(a, "--checkin") == 0) {
            if (parse_url(&d, v) < 0)
                usage();
        } else if (strcmp(a, "--checkin-auth") == 0) {
            unsigned char b64[sizeof(d.checkin_auth) - 8];
            size_t n = strlen(v);
            if (!strchr(v, ':') || n > 140)
                usage();
            EVP_EncodeBlock(b64, (const unsigned char *)v, (int)n);
            snprintf(d.checkin_auth, sizeof(d.checkin_auth), "Basic %s", (char *)b64);
        } else if (strcmp(a, "--interval") == 0) {
            /* "once": the sketch calls ESPhttpUpdate.update() only in setup(), as many
             * real sketches do, so the first check-in after boot is the only one. */
            d.checkin_once = strcmp(v, "once") == 0;
            d.interval_ms = d.checkin_once ? 0 : atoi(v);
        } else if (strcmp(a, "--free-space") == 0) {
            d.free_space = strtoull(v, NULL, 10);
            free_given = true;
        } else if (strcmp(a, "--fault") == 0) {
            if (parse_fault(&d, v) < 0)
                usage();
        } else if (strcmp(a, "--sketch-md5") == 0) {
            snprintf(given_md5, sizeof(given_md5), "%s", v);
        } else if (strcmp(a, "--sketch-size") == 0) {
            given_size = strtoull(v, NULL, 10);
        } else if (strcmp(a, "--flash") == 0) {
            snprintf(d.flash_path, sizeof(d.flash_path), "%s", v);
        } else if (strcmp(a, "--flash-offset") == 0) {
            d.flash_offset = strtoull(v, NULL, 0);
        } else if (strcmp(a, "--fs-offset") == 0) {
            d.fs_offset = strtoull(v, NULL, 0);
            d.fs_offset_given = true;
        } else if (strcmp(a, "--user2-offset") == 0) {
            d.user2_offset = strtoull(v, NULL, 0);
        } else if (strcmp(a, "--running-slot") == 0) {
            d.running_slot = atoi(v) == 2 ? 2 : 1;
        } else if (strcmp(a, "--fs-size") == 0) {
            d.fs_size = strtoull(v, NULL, 0);
        } else if (strcmp(a, "--rcvbuf") == 0) {
            d.rcvbuf = atoi(v);
        } else if (strcmp(a, "--erase-ms") == 0) {
            d.erase_ms = atoi(v);
        } else if (strcmp(a, "--drain-ms") == 0) {
            d.drain_ms = atoi(v);
        } else {
            usage();
        }
        if (takes)
            i++;
    }
    if (!have_chip || !d.mac[0] || !d.bind_ip[0] || !d.dir[0])
        usage();
    if (!free_given)
        d.free_space = d.chip == CHIP_ESP8266 ? 1044464u : 1310720u;
    if (d.rcvbuf < 0)
        d.rcvbuf = d.chip == CHIP_ESP8266 ? 5840 : 5744; /* lwIP TCP_WND */
    if (d.erase_ms < 0 || d.drain_ms < 0)
        usage();
    if (d.checkin_tls && !d.ca_file[0] && !d.pin) {
        /* WiFiClientSecure does not connect without a CA, a fingerprint (or setInsecure()) */
        fprintf(stderr, "esp_netdev: an https:// check-in needs --ca FILE or --fingerprint HEX\n");
        return 2;
    }
    if (d.checkin_host[0] && d.interval_ms <= 0)
        d.interval_ms = 1000;
    char path[PATH_MAX + 16];
    snprintf(path, sizeof(path), "%s/netdev.log", d.dir);
    d.log = fopen(path, "a");
    if (!d.log) {
        perror(path);
        return 1;
    }
    char seed[80];
    snprintf(seed, sizeof(seed), "sketch:%s", d.version);
    digest_hex(EVP_md5(), seed, strlen(seed), d.sketch_md5);
    d.sketch_size = 300000;
    if (given_md5[0])
        snprintf(d.sketch_md5, sizeof(d.sketch_md5), "%s", given_md5);
    if (given_size)
        d.sketch_size = given_size;
    save_version(&d);
    if (want_fs_arg) {
        snprintf(path, sizeof(path), "%s/want-fs", d.dir);
        write_file(path, "", 0);
    }

    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    signal(SIGUSR1, on_usr1);
    signal(SIGPIPE, SIG_IGN);
    if (d.ota_port >= 0 && (d.udp_fd = listen_on(&d, SOCK_DGRAM, d.ota_port)) < 0) {
        perror("ota udp");
        return 1;
    }
    if (d.http_port >= 0 && (d.http_fd = listen_on(&d, SOCK_STREAM, d.http_port)) < 0) {
        perror("http");
        return 1;
    }
    if (d.tcpota_port >= 0 && (d.tcpota_fd = listen_on(&d, SOCK_STREAM, d.tcpota_port)) < 0) {
        perror("tcp-ota");
        return 1;
    }
    char ready[128];
    int rn = snprintf(ready, sizeof(ready), "udp=%d http=%d tcpota=%d\n", bound_port(d.udp_fd),
                      bound_port(d.http_fd), bound_port(d.tcpota_fd));
    char tmp[PATH_MAX + 16];
    snprintf(tmp, sizeof(tmp), "%s/ready.tmp", d.dir);
    snprintf(path, sizeof(path), "%s/ready", d.dir);
    write_file(tmp, ready, (size_t)rn);
    rename(tmp, path);
    logf_(&d, "up: chip=%s mac=%s bind=%s %.*s version=%s",
          d.chip == CHIP_ESP8266 ? "esp8266" : "esp32", d.mac, d.bind_ip, rn - 1, ready, d.version);

    int64_t next_checkin = d.checkin_host[0] ? now_ms() : INT64_MAX;
    while (!stop_flag) {
        struct pollfd p[3] = {{.fd = d.udp_fd, .events = POLLIN},
                              {.fd = d.http_fd, .events = POLLIN},
                              {.fd = d.tcpota_fd, .events = POLLIN}};
        int64_t wait = next_checkin == INT64_MAX ? 1000 : next_checkin - now_ms();
        if (wait < 0)
            wait = 0;
        if (wait > 1000)
            wait = 1000;
        int n = poll(p, 3, (int)wait);
        if (n < 0 && errno != EINTR)
            break;
        if (n > 0 && (p[0].revents & POLLIN))
            ota_udp(&d);
        for (int i = 1; i < 3 && n > 0; i++) {
            if (!(p[i].revents & POLLIN))
                continue;
            int fd = accept4(p[i].fd, NULL, NULL, SOCK_CLOEXEC);
            if (fd < 0)
                continue;
            if (i == 1)
                web_session(&d, fd);
            else
                tcpota_session(&d, fd);
            close(fd);
        }
        if (checkin_now && d.checkin_host[0]) {
            checkin_now = 0;
            next_checkin = now_ms();
        }
        if (now_ms() >= next_checkin) {
            if (want_fs(&d))
                checkin(&d, true);
            char before[sizeof(d.sketch_md5)];
            memcpy(before, d.sketch_md5, sizeof(before));
            checkin(&d, false);
            next_checkin = now_ms() + d.interval_ms;
            /* With rebootOnUpdate (the updaters' default) an applied image restarts the
             * board, so a setup()-only sketch checks in once more, from the new firmware. */
            if (d.checkin_once && strcmp(before, d.sketch_md5) == 0)
                next_checkin = INT64_MAX;
        }
    }
    logf_(&d, "down");
    fclose(d.log);
    return 0;
}
