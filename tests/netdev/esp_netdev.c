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
 * This file: the options, the main loop, and the board itself (log, applying an
 * image); the protocols are netdev_espota.c, netdev_webform.c, netdev_tcpota.c and
 * netdev_pull.c, sharing netdev.h and the socket I/O of netdev_io.c.
 *
 * Usage: esp_netdev --chip esp8266|esp32 --mac MAC --bind 127.0.0.x --dir DIR
 *   [--version V] [--password PW] [--auth md5|pbkdf2|pbkdf2-md5] [--ota-port N]
 *   [--http-port N] [--web-user U] [--tcp-ota] [--tcp-ota-port N]
 *   [--checkin URL --interval MS|once] [--checkin-auth USER:PASS] [--free-space N] [--fault F]
 *   [--sketch-md5 HEX --sketch-size N] [--flash FILE --flash-offset N]
 *   [--fs-offset N] [--fs-size N] [--want-fs] [--user2-offset N] [--running-slot 1|2]
 *   [--rcvbuf BYTES] [--erase-ms MS] [--drain-ms MS] [--chip-size N] [--no-current-version]
 *   [--ca FILE | --fingerprint SHA1HEX] [--tls-ip-san] [--tls-max 1.2|1.3]
 * F: no-answer | wrong-password | no-space | stall:BYTES | glued-ok |
 *    error-line | no-connect-back | no-verdict. Ports default to 0
 * (ephemeral; real devices use 8266/3232, 80, 65056). Writes DIR/ready ("udp=P http=P
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
 * --chip-size N: the real flash size (ESP.getFlashChipRealSize(), sent as x-…-chip-size;
 * default 4 MB). An ESP8266 pull refuses an 0xE9 image whose header declares a larger flash
 * (-107, see nd_checkin) before reading the body; ArduinoOTA and the web form take the
 * whole image and then refuse it in Update.end() (the Updater's own check, netdev.h) with
 * "ERROR[9]: new Flash config wrong, real size: N" (TCP line / page).
 * --no-current-version: the sketch calls the updater without a
 * current-version string (ESPhttpUpdate.update(client, url), the common form), so its
 * check-ins carry no x-…-version header (the updaters send it only when non-empty); the
 * board's own version is still tracked for DIR/version.
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

#include "netdev.h"

volatile sig_atomic_t nd_stop_flag;
static volatile sig_atomic_t checkin_now;

static void on_signal(int sig)
{
    (void)sig;
    nd_stop_flag = 1;
}

static void on_usr1(int sig)
{
    (void)sig;
    checkin_now = 1;
}

int64_t nd_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void nd_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

void nd_logf(struct netdev *d, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(d->log, "[%" PRId64 "] ", nd_now_ms());
    vfprintf(d->log, fmt, ap);
    fputc('\n', d->log);
    fflush(d->log);
    va_end(ap);
}

void nd_hex(const unsigned char *b, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", b[i]);
    out[2 * n] = '\0';
}

void nd_digest_hex(const EVP_MD *md, const void *data, size_t len, char *out)
{
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_Digest(data, len, d, &n, md, NULL);
    nd_hex(d, n, out);
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
    nd_digest_hex(EVP_md5(), img, len, md5);
    snprintf(out, cap, "md5:%.8s", md5);
}

void nd_write_file(const char *path, const void *data, size_t len)
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
    nd_write_file(path, line, (size_t)n);
}

uint64_t nd_esp8266_header_flash(const uint8_t *img, size_t len)
{
    static const uint64_t kb[16] = {512, 256, 1024, 2048, 4096, 0, 0, 0, 8192, 16384};
    if (!img || len < 4 || img[0] != 0xE9)
        return 0;
    return kb[img[3] >> 4] * 1024u;
}

bool nd_esp8266_flash_refusal(const struct netdev *d, bool fs, const uint8_t *img, size_t len,
                              char *out, size_t cap)
{
    if (fs || d->chip != CHIP_ESP8266 || nd_esp8266_header_flash(img, len) <= d->chip_size)
        return false;
    snprintf(out, cap, "ERROR[9]: new Flash config wrong, real size: %" PRIu64, d->chip_size);
    return true;
}

void nd_apply_image(struct netdev *d, const char *how, bool fs, const uint8_t *img, size_t len)
{
    char path[PATH_MAX + 32];
    d->images++;
    snprintf(path, sizeof(path), "%s/%s-%d.bin", d->dir, fs ? "fs" : "ota", d->images);
    nd_write_file(path, img, len);
    if (fs) {
        char latest[PATH_MAX + 16];
        snprintf(latest, sizeof(latest), "%s/fs.bin", d->dir);
        nd_write_file(latest, img, len);
        nd_logf(d, "%s: filesystem image %zu bytes stored as %s", how, len, path);
        if (d->flash_path[0] && d->fs_offset_given) {
            int ffd = open(d->flash_path, O_WRONLY | O_CLOEXEC);
            ssize_t w = ffd >= 0 ? pwrite(ffd, img, len, (off_t)d->fs_offset) : -1;
            if (w != (ssize_t)len)
                nd_logf(d, "%s: cannot write the filesystem image into %s: %s", how, d->flash_path,
                        strerror(errno));
            else
                nd_logf(d, "%s: wrote the filesystem image (%zu bytes) into %s at 0x%" PRIx64, how,
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
                nd_logf(d, "%s: gzip image inflates to %lu bytes", how, cap - zs.avail_out);
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
        nd_digest_hex(EVP_md5(), copy, len, d->sketch_md5);
        free(copy);
    }
    d->sketch_size = len;
    if (d->flash_path[0]) {
        int ffd = open(d->flash_path, O_WRONLY | O_CLOEXEC);
        ssize_t w = ffd >= 0 ? pwrite(ffd, img, len, (off_t)d->flash_offset) : -1;
        if (w != (ssize_t)len)
            nd_logf(d, "%s: cannot write the image into %s: %s", how, d->flash_path,
                    strerror(errno));
        else
            nd_logf(d, "%s: wrote %zu bytes into %s at 0x%" PRIx64, how, len, d->flash_path,
                    d->flash_offset);
        if (ffd >= 0)
            close(ffd);
    }
    save_version(d);
    nd_logf(d, "%s: applied %zu bytes as %s, version now %s", how, len, path, d->version);
}

/* The Updater's 4 KiB sector buffer (ArduinoOTA push and HTTP pull): each full sector,
 * and the last partial one, costs a sector erase of --erase-ms before it is written. */
void nd_sector_done(struct netdev *d, size_t *sector, bool last)
{
    while (*sector >= 4096 || (last && *sector > 0)) {
        if (d->erase_ms > 0)
            nd_sleep_ms(d->erase_ms); /* erase before the write, like _writeBuffer */
        *sector = *sector >= 4096 ? *sector - 4096 : 0;
    }
}

/* ---- main ------------------------------------------------------------------------------ */

static void usage(void)
{
    fprintf(stderr,
            "usage: esp_netdev --chip esp8266|esp32 --mac MAC --bind 127.0.0.x --dir DIR\n"
            "  [--version V] [--password PW] [--auth md5|pbkdf2|pbkdf2-md5] [--ota-port N]\n"
            "  [--http-port N] [--web-user U] [--tcp-ota] [--tcp-ota-port N]\n"
            "  [--checkin URL --interval MS|once] [--checkin-auth USER:PASS] [--free-space N]\n"
            "  [--sketch-md5 HEX --sketch-size N] [--flash FILE --flash-offset N]\n"
            "  [--fs-offset N] [--fs-size N] [--want-fs] [--user2-offset N] [--running-slot 1|2]\n"
            "  [--rcvbuf BYTES] [--erase-ms MS] [--drain-ms MS] [--chip-size N]\n"
            "  [--no-current-version]\n"
            "  [--ca FILE | --fingerprint SHA1HEX] [--tls-ip-san] [--tls-max 1.2|1.3]\n"
            "  [--fault no-answer|wrong-password|no-space|stall:BYTES|glued-ok|error-line|"
            "no-connect-back|no-verdict]\n");
    exit(2);
}

static int parse_fault(struct netdev *d, const char *f)
{
    static const struct {
        const char *name;
        enum fault f;
    } tab[] = {{"no-answer", FAULT_NO_ANSWER},   {"wrong-password", FAULT_WRONG_PASSWORD},
               {"no-space", FAULT_NO_SPACE},     {"glued-ok", FAULT_GLUED_OK},
               {"error-line", FAULT_ERROR_LINE}, {"no-connect-back", FAULT_NO_CONNECT_BACK},
               {"no-verdict", FAULT_NO_VERDICT}};
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
        } else if (strcmp(a, "--no-current-version") == 0) {
            d.no_current_version = true;
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
            /* pbkdf2-md5: ESP32 core >= 3.3.2 given setPasswordHash(<32-hex MD5>) keeps that
             * MD5 hex as the PBKDF2 secret H (PR #11905), not SHA-256(password) */
            d.pbkdf2_md5 = strcmp(v, "pbkdf2-md5") == 0;
            d.pbkdf2 = d.pbkdf2_md5 || strcmp(v, "pbkdf2") == 0;
            if (!d.pbkdf2 && strcmp(v, "md5") != 0)
                usage();
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
        } else if (strcmp(a, "--chip-size") == 0) {
            d.chip_size = strtoull(v, NULL, 0);
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
    nd_digest_hex(EVP_md5(), seed, strlen(seed), d.sketch_md5);
    d.sketch_size = 300000;
    if (given_md5[0])
        snprintf(d.sketch_md5, sizeof(d.sketch_md5), "%s", given_md5);
    if (given_size)
        d.sketch_size = given_size;
    save_version(&d);
    if (want_fs_arg) {
        snprintf(path, sizeof(path), "%s/want-fs", d.dir);
        nd_write_file(path, "", 0);
    }

    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    signal(SIGUSR1, on_usr1);
    signal(SIGPIPE, SIG_IGN);
    if (d.ota_port >= 0 && (d.udp_fd = nd_listen_on(&d, SOCK_DGRAM, d.ota_port)) < 0) {
        perror("ota udp");
        return 1;
    }
    if (d.http_port >= 0 && (d.http_fd = nd_listen_on(&d, SOCK_STREAM, d.http_port)) < 0) {
        perror("http");
        return 1;
    }
    if (d.tcpota_port >= 0 && (d.tcpota_fd = nd_listen_on(&d, SOCK_STREAM, d.tcpota_port)) < 0) {
        perror("tcp-ota");
        return 1;
    }
    char ready[128];
    int rn = snprintf(ready, sizeof(ready), "udp=%d http=%d tcpota=%d\n", nd_bound_port(d.udp_fd),
                      nd_bound_port(d.http_fd), nd_bound_port(d.tcpota_fd));
    char tmp[PATH_MAX + 16];
    snprintf(tmp, sizeof(tmp), "%s/ready.tmp", d.dir);
    snprintf(path, sizeof(path), "%s/ready", d.dir);
    nd_write_file(tmp, ready, (size_t)rn);
    rename(tmp, path);
    nd_logf(&d, "up: chip=%s mac=%s bind=%s %.*s version=%s",
            d.chip == CHIP_ESP8266 ? "esp8266" : "esp32", d.mac, d.bind_ip, rn - 1, ready,
            d.version);

    int64_t next_checkin = d.checkin_host[0] ? nd_now_ms() : INT64_MAX;
    while (!nd_stop_flag) {
        struct pollfd p[3] = {{.fd = d.udp_fd, .events = POLLIN},
                              {.fd = d.http_fd, .events = POLLIN},
                              {.fd = d.tcpota_fd, .events = POLLIN}};
        int64_t wait = next_checkin == INT64_MAX ? 1000 : next_checkin - nd_now_ms();
        if (wait < 0)
            wait = 0;
        if (wait > 1000)
            wait = 1000;
        int n = poll(p, 3, (int)wait);
        if (n < 0 && errno != EINTR)
            break;
        if (n > 0 && (p[0].revents & POLLIN))
            nd_ota_udp(&d);
        for (int i = 1; i < 3 && n > 0; i++) {
            if (!(p[i].revents & POLLIN))
                continue;
            int fd = accept4(p[i].fd, NULL, NULL, SOCK_CLOEXEC);
            if (fd < 0)
                continue;
            if (i == 1)
                nd_web_session(&d, fd);
            else
                nd_tcpota_session(&d, fd);
            close(fd);
        }
        if (checkin_now && d.checkin_host[0]) {
            checkin_now = 0;
            next_checkin = nd_now_ms();
        }
        if (nd_now_ms() >= next_checkin) {
            if (nd_want_fs(&d))
                nd_checkin(&d, true);
            char before[sizeof(d.sketch_md5)];
            memcpy(before, d.sketch_md5, sizeof(before));
            nd_checkin(&d, false);
            next_checkin = nd_now_ms() + d.interval_ms;
            /* With rebootOnUpdate (the updaters' default) an applied image restarts the
             * board, so a setup()-only sketch checks in once more, from the new firmware. */
            if (d.checkin_once && strcmp(before, d.sketch_md5) == 0)
                next_checkin = INT64_MAX;
        }
    }
    nd_logf(&d, "down");
    fclose(d.log);
    return 0;
}
