/*
 * esp_netdev: the ArduinoOTA device side (PROTOCOL-OTA.md §1, espota): the UDP invitation,
 * MD5 or PBKDF2 auth, the connect-back transfer with its glued decimal acks, the verdict.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <netinet/tcp.h>

#include <openssl/evp.h>

#include "netdev.h"

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
    nd_logf(d, "ota: udp reply '%s'", msg);
}

static bool auth_ok(struct netdev *d, const char *cnonce, const char *response)
{
    char h[65], expect[65], msg[256];
    if (!d->pbkdf2) {
        nd_digest_hex(EVP_md5(), d->password, strlen(d->password), h);
        snprintf(msg, sizeof(msg), "%s:%s:%s", h, d->nonce, cnonce);
        nd_digest_hex(EVP_md5(), msg, strlen(msg), expect);
    } else {
        nd_digest_hex(d->pbkdf2_md5 ? EVP_md5() : EVP_sha256(), d->password, strlen(d->password),
                      h);
        char salt[160];
        snprintf(salt, sizeof(salt), "%s:%s", d->nonce, cnonce);
        unsigned char dk[32];
        char dkh[65];
        PKCS5_PBKDF2_HMAC(h, (int)strlen(h), (unsigned char *)salt, (int)strlen(salt), 10000,
                          EVP_sha256(), 32, dk);
        nd_hex(dk, 32, dkh);
        snprintf(msg, sizeof(msg), "%s:%s:%s", dkh, d->nonce, cnonce);
        nd_digest_hex(EVP_sha256(), msg, strlen(msg), expect);
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
        nd_logf(d, "ota: Connect Failed to %s:%u (%s)", ip, d->port, strerror(errno));
        if (fd >= 0)
            close(fd);
        return;
    }
    nd_logf(d,
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
    while (img && got < d->size && !nd_stop_flag) {
        if (d->fault == FAULT_STALL && got >= d->stall_bytes) {
            nd_logf(d, "ota: stalling at %" PRIu64 " bytes", got);
            int64_t end = nd_now_ms() + 60000;
            while (!nd_stop_flag && nd_now_ms() < end) {
                int ev = nd_wait_fd(fd, POLLRDHUP, 200);
                if (ev & (POLLRDHUP | POLLHUP | POLLERR))
                    break;
            }
            nd_logf(d, "ota: station closed the stalled transfer");
            failed = true;
            break;
        }
        int wait = esp32 ? 1000 : 60000;
        if (!nd_wait_fd(fd, POLLIN, wait)) {
            if (esp32 && retries < 3) {
                retries++;
                snprintf(ack, sizeof(ack), "%" PRIu64, last_count);
                nd_send_str(fd, ack);
                continue;
            }
            nd_logf(d, "ota: Receive Failed at %" PRIu64 " bytes", got);
            nd_send_str(fd, esp32 ? "Receive Failed" : "ERROR[6]: Stream Read Timeout\n");
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
            nd_sector_done(d, &sector, got == d->size);
        } while (!esp32 && got < d->size && !nd_stop_flag && nd_wait_fd(fd, POLLIN, d->drain_ms));
        if (lost) {
            nd_logf(d, "ota: connection lost at %" PRIu64 " bytes", got);
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
            nd_logf(d, "ota: Update.write returned %" PRIu64 " (%" PRIu64 " of %" PRIu64 ")", count,
                    got, d->size);
        snprintf(ack, sizeof(ack), "%" PRIu64, count);
        nd_send_str(fd, ack);
    }
    if (!failed && img && got == d->size) {
        char md5[33], refusal[96];
        nd_digest_hex(EVP_md5(), img, got, md5);
        bool md5_ok =
            d->chip == CHIP_ESP32 ? strcmp(md5, d->md5) == 0 : strcasecmp(md5, d->md5) == 0;
        if (d->fault == FAULT_NO_VERDICT) {
            /* Every byte taken and counted, then the board is gone before its verdict (reset
             * or power lost before client.print("OK")): the counts add up to the image, but
             * only the verdict says the update was applied. */
            nd_logf(d, "ota: closing after %" PRIu64 " bytes without a verdict", got);
        } else if (d->fault == FAULT_ERROR_LINE || !md5_ok) {
            nd_logf(d, "ota: MD5 check failed (got %s, want %s)", md5, d->md5);
            nd_send_str(fd, d->chip == CHIP_ESP32 ? "MD5 Check Failed" : "ERROR[7]: MD5 Failed\n");
        } else if (nd_esp8266_flash_refusal(d, d->cmd == 100, img, got, refusal,
                                            sizeof(refusal) - 1)) {
            /* Update.end() after the MD5 check: the header's flash size does not fit the chip
             * (netdev.h); the Updater's printError line instead of OK, nothing applied */
            nd_logf(d, "ota: %s (header %02x %02x %02x %02x)", refusal, img[0], img[1], img[2],
                    img[3]);
            strcat(refusal, "\n");
            nd_send_str(fd, refusal);
        } else {
            if (d->chip == CHIP_ESP8266)
                nd_sleep_ms(250);
            /* Written to "flash" before the verdict, like Update.end() on the device. */
            nd_apply_image(d, "ota", d->cmd == 100, img, got);
            if (d->fault == FAULT_GLUED_OK) {
                snprintf(ack, sizeof(ack), "%" PRIu64 "OK", last_count);
                nd_send_str(fd, ack);
            } else {
                nd_send_str(fd, "OK");
            }
            nd_sleep_ms(d->chip == CHIP_ESP8266 ? 250 : 100);
        }
    }
    free(img);
    close(fd);
}

void nd_ota_udp(struct netdev *d)
{
    char buf[512];
    struct sockaddr_in src;
    socklen_t sl = sizeof(src);
    ssize_t n = recvfrom(d->udp_fd, buf, sizeof(buf) - 1, 0, (struct sockaddr *)&src, &sl);
    if (n <= 0)
        return;
    buf[n] = '\0';
    if (d->fault == FAULT_NO_ANSWER) {
        nd_logf(d, "ota: ignoring datagram (fault no-answer)");
        return;
    }
    if (d->waitauth) {
        d->waitauth = false;
        uint64_t cmd;
        const char *p = parse_num(buf, &cmd);
        if (cmd != 200) {
            nd_logf(d, "ota: datagram in WAITAUTH is not an auth answer: back to idle");
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
            nd_logf(d, "ota: auth answer with wrong lengths: back to idle");
            return;
        }
        if (!auth_ok(d, cnonce, resp)) {
            udp_reply(d, &src, "Authentication Failed");
            nd_logf(d, "ota: authentication failed");
            return;
        }
        nd_logf(d, "ota: authenticated");
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
            nd_logf(d, "ota: invitation md5 is not 32 chars: dropped");
            return;
        }
        memcpy(md5, p, 32);
        md5[32] = '\0';
        d->cmd = (int)cmd;
        d->port = (unsigned)port;
        d->size = size;
        memcpy(d->md5, md5, sizeof(d->md5));
        d->inv_src = src;
        nd_logf(d, "ota: invitation cmd=%d port=%u size=%" PRIu64 " md5=%s", d->cmd, d->port,
                d->size, d->md5);
        if (d->password[0]) {
            char seed[64], nonce[65];
            snprintf(seed, sizeof(seed), "%" PRId64 ":%u", nd_now_ms() * 1000, d->nonce_counter++);
            nd_digest_hex(d->pbkdf2 ? EVP_sha256() : EVP_md5(), seed, strlen(seed), nonce);
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
            nd_logf(d, "ota: Update.begin failed: not enough space (no connect-back)");
            return;
        }
    }
    if (d->fault == FAULT_NO_CONNECT_BACK) {
        nd_logf(d, "ota: not connecting back (fault no-connect-back)");
        return;
    }
    ota_receive(d, &d->inv_src);
}
