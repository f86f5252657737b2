/*
 * ota_espota: ArduinoOTA push client state machine (PROTOCOL-OTA.md §1).
 *
 * Owns: the invitation/auth datagrams byte for byte, the TCP listener the
 * device connects back to, streaming, ack/verdict parsing and the mapping of
 * every known failure (§8) to -errno + message + advice.
 * Invariants: step() never blocks; every socket is non-blocking; device
 * input is parsed, never asserted; deadlines are per stage; the listener is
 * bound to the address that routes to the board, because the device dials
 * the invitation's source address. Transfer: progress and liveness come from
 * the bytes the device's TCP took (sent - SIOCOUTQ, the send buffer kept
 * small) and from its counts; the outcome only from its verdict text.
 */
#include "ota_espota.h"

#include "ota_image.h"
#include "ota_net.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <linux/sockios.h>

#include <openssl/evp.h>

static const char *const state_names[OTA_ESPOTA_STATE_COUNT] = {
    [OTA_ESPOTA_IDLE] = "idle",
    [OTA_ESPOTA_INVITING] = "inviting",
    [OTA_ESPOTA_AUTHENTICATING] = "authenticating",
    [OTA_ESPOTA_ACCEPTING] = "accepting",
    [OTA_ESPOTA_SENDING] = "sending",
    [OTA_ESPOTA_WAITING_RESULT] = "waiting-result",
    [OTA_ESPOTA_DONE] = "done",
    [OTA_ESPOTA_FAILED] = "failed",
};

const char *ota_espota_state_to_string(enum ota_espota_state state)
{
    if ((unsigned)state >= OTA_ESPOTA_STATE_COUNT)
        return "unknown";
    return state_names[state];
}

static const char *const reply_names[OTA_ESPOTA_REPLY_COUNT] = {
    [OTA_ESPOTA_REPLY_UNKNOWN] = "unknown", [OTA_ESPOTA_REPLY_OK] = "ok",
    [OTA_ESPOTA_REPLY_AUTH] = "auth",       [OTA_ESPOTA_REPLY_AUTH_FAILED] = "auth-failed",
    [OTA_ESPOTA_REPLY_ERR] = "err",
};

const char *ota_espota_reply_kind_to_string(enum ota_espota_reply_kind kind)
{
    if ((unsigned)kind >= OTA_ESPOTA_REPLY_COUNT)
        return "unknown";
    return reply_names[kind];
}

/* ---- parsers ---------------------------------------------------------------------- */

static void printable_copy(char *dst, size_t cap, const uint8_t *src, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len && n + 1 < cap; i++)
        dst[n++] = (src[i] >= 0x20 && src[i] < 0x7F) ? (char)src[i] : ' ';
    while (n > 0 && dst[n - 1] == ' ')
        n--;
    dst[n] = '\0';
}

static int error_code_of(const char *text)
{
    const char *p = strstr(text, "ERROR[");
    if (!p)
        return -1;
    p += 6;
    int v = 0, digits = 0;
    while (isdigit((unsigned char)*p) && digits < 6) {
        v = v * 10 + (*p++ - '0');
        digits++;
    }
    return (digits > 0 && *p == ']') ? v : -1;
}

void ota_espota_parse_reply(const uint8_t *buf, size_t len, struct ota_espota_reply *out)
{
    memset(out, 0, sizeof(*out));
    out->device_code = -1;
    /* Trim surrounding whitespace (the device sends no newline, but be lenient). */
    while (len > 0 && isspace(buf[len - 1]))
        len--;
    while (len > 0 && isspace(buf[0])) {
        buf++;
        len--;
    }
    if (len == 2 && memcmp(buf, "OK", 2) == 0) {
        out->kind = OTA_ESPOTA_REPLY_OK;
    } else if (len > 5 && memcmp(buf, "AUTH ", 5) == 0) {
        size_t n = len - 5;
        if (n != 32 && n != 64)
            return;
        for (size_t i = 0; i < n; i++) {
            if (!isxdigit(buf[5 + i]))
                return;
            out->nonce[i] = (char)buf[5 + i];
        }
        out->nonce[n] = '\0';
        out->nonce_len = n;
        out->kind = OTA_ESPOTA_REPLY_AUTH;
    } else if (len == 21 && memcmp(buf, "Authentication Failed", 21) == 0) {
        out->kind = OTA_ESPOTA_REPLY_AUTH_FAILED;
    } else if (len >= 3 && memcmp(buf, "ERR", 3) == 0) {
        size_t skip = 3;
        if (skip < len && buf[skip] == ':')
            skip++;
        while (skip < len && buf[skip] == ' ')
            skip++;
        printable_copy(out->text, sizeof(out->text), buf + skip, len - skip);
        out->device_code = error_code_of(out->text);
        out->kind = OTA_ESPOTA_REPLY_ERR;
    }
}

void ota_espota_acks_init(struct ota_espota_acks *a)
{
    memset(a, 0, sizeof(*a));
}

static uint64_t digits_value(const uint8_t *d, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = v > (UINT64_MAX - d[i]) / 10 ? UINT64_MAX : v * 10 + d[i];
    return v;
}

/* Commits all but the last keep pending digits as one count; the sum stays <= bound. */
static void pending_commit(struct ota_espota_acks *a, int keep, uint64_t bound)
{
    int done = a->pending_len - keep;
    uint64_t v = digits_value(a->pending, done);
    a->acked = v > bound - a->acked ? bound : a->acked + v;
    memmove(a->pending, a->pending + done, (size_t)keep);
    memmove(a->pending_bound, a->pending_bound + done, (size_t)keep * sizeof(a->pending_bound[0]));
    a->pending_len = keep;
}

static void pending_push(struct ota_espota_acks *a, uint8_t d, uint64_t bound)
{
    a->pending_bound[a->pending_len] = bound;
    a->pending[a->pending_len++] = d;
}

/* Room for a count whose first digit came with bound b, after `before` counted bytes. */
static uint64_t room_of(uint64_t b, uint64_t before)
{
    return b > before ? b - before : 0;
}

/* One more digit of the count stream (see the header for the rules). A count is written
 * whole once the device's TCP took the bytes it counts, so it fits the bound its first digit
 * came with; digits that came later (under a larger bound) do not make it larger. */
static void ack_digit(struct ota_espota_acks *a, uint8_t d, uint64_t bound)
{
    int n = a->pending_len;
    uint64_t p = digits_value(a->pending, n);
    uint64_t room = n > 0 ? room_of(a->pending_bound[0], a->acked) : 0;
    if (n > 0 && n < OTA_ESPOTA_COUNT_DIGITS && room >= d && p <= (room - d) / 10) {
        pending_push(a, d, bound); /* the count grows */
        return;
    }
    if (d != 0) {
        pending_commit(a, 0, bound); /* a new count starts */
        pending_push(a, d, bound);
        return;
    }
    /* A '0' cannot start a count: it ends one that began inside the pending digits. Take the
     * shortest such tail that starts non-zero and, with the head committed, still fits. */
    for (int k = 1; k < n; k++) {
        const uint8_t *tail = a->pending + n - k;
        uint64_t head = digits_value(a->pending, n - k);
        uint64_t t = digits_value(tail, k);
        uint64_t troom = room_of(a->pending_bound[n - k], a->acked);
        if (tail[0] != 0 && head <= room && head <= troom && t <= (troom - head) / 10) {
            pending_commit(a, k, bound);
            pending_push(a, 0, bound);
            return;
        }
    }
    /* Not the shape of any count stream within the bound: the digit means nothing. */
}

static void text_done(struct ota_espota_acks *a)
{
    if (a->text_len >= 2 && memcmp(a->text, "OK", 2) == 0)
        a->verdict = OTA_ESPOTA_VERDICT_OK;
    else
        a->verdict = OTA_ESPOTA_VERDICT_ERROR;
}

enum ota_espota_verdict ota_espota_acks_feed(struct ota_espota_acks *a, const uint8_t *buf,
                                             size_t len, uint64_t bound)
{
    if (bound < a->acked)
        bound = a->acked; /* the bound never decreases; tolerate a caller that lets it */
    for (size_t i = 0; i < len && a->verdict == OTA_ESPOTA_VERDICT_NONE; i++) {
        uint8_t c = buf[i];
        a->ack_bytes++;
        if (!a->in_text) {
            if (c >= '0' && c <= '9') {
                ack_digit(a, (uint8_t)(c - '0'), bound);
                continue;
            }
            pending_commit(a, 0, bound);
            if (isspace(c))
                continue; /* tolerated between counts and before the verdict */
            a->in_text = true;
        }
        if (c == '\n' || c == '\r') {
            if (a->text_len > 0)
                text_done(a);
            continue;
        }
        if (a->text_len + 1 < sizeof(a->text))
            a->text[a->text_len++] = (c >= 0x20 && c < 0x7F) ? (char)c : '?';
        a->text[a->text_len] = '\0';
        if (a->text_len == 2 && memcmp(a->text, "OK", 2) == 0)
            a->verdict = OTA_ESPOTA_VERDICT_OK;
        else if (a->text_len + 1 >= sizeof(a->text))
            text_done(a);
    }
    return a->verdict;
}

enum ota_espota_verdict ota_espota_acks_finish(struct ota_espota_acks *a)
{
    if (a->verdict == OTA_ESPOTA_VERDICT_NONE && a->text_len > 0)
        text_done(a);
    return a->verdict;
}

uint64_t ota_espota_acks_estimate(const struct ota_espota_acks *a, uint64_t bound)
{
    uint64_t p = digits_value(a->pending, a->pending_len);
    uint64_t v = p > UINT64_MAX - a->acked ? UINT64_MAX : a->acked + p;
    return v > bound ? bound : v;
}

int ota_espota_classify_error(const char *text, int *device_code, const char **advice)
{
    int code = error_code_of(text);
    if (device_code)
        *device_code = code;
    const char *adv;
    int rc;
    if (code == 9 || strcasestr(text, "new flash config")) {
        /* Updater::_verifyEnd: the image header's flash size is larger than the chip's */
        rc = -EINVAL;
        adv = OTA_ADVICE_FLASH_SIZE;
    } else if (code == 8 || strcasestr(text, "flash config wrong")) {
        /* Update.begin: the running sketch was built for another flash size than the chip */
        rc = -EIO;
        adv = "the running firmware was built for another flash size than the board's chip "
              "(the board names both): flash it over serial once with an image built for "
              "the real flash size";
    } else if (code == 4 || strcasestr(text, "space")) {
        rc = -ENOSPC;
        adv = "the image does not fit the board's OTA area: use a smaller image or a flash "
              "layout/partition scheme with a larger OTA partition";
    } else if (code == 11 || strcasestr(text, "bootstrap")) {
        rc = -EIO;
        adv = "the ESP8266 is still in serial-download boot mode after flashing: power-cycle "
              "or press RST once, then retry";
    } else if (code == 12 || strcasestr(text, "signature")) {
        rc = -EBADMSG;
        adv = "the board expects an image signed with its key: sign the image with the "
              "matching private key (or use the legacy format for core <= 2.5.2)";
    } else if (code == 7 || strcasestr(text, "md5")) {
        rc = -EBADMSG;
        adv = "the image arrived corrupted (MD5 mismatch): retry; check Wi-Fi signal quality";
    } else if (code == 10 || strcasestr(text, "magic")) {
        rc = -EINVAL;
        adv = "the board rejected the image header: send the application .bin built for "
              "this chip (not a merged/factory image)";
    } else if (code == 6 || strcasestr(text, "receive") || strcasestr(text, "timeout")) {
        rc = -EIO;
        adv = "the board gave up waiting for data: keep the stream going (ESP32 aborts after "
              "~4 s of silence); check Wi-Fi signal and the station's load";
    } else {
        rc = -EIO;
        adv = "the board reported an update error: see its text; retry, and check the image "
              "is meant for this board";
    }
    if (advice)
        *advice = adv;
    return rc;
}

/* ---- auth ---------------------------------------------------------------------- */

int ota_espota_secret_md5(const char *password, char out[33])
{
    return ota_md5_hex(password, strlen(password), out);
}

int ota_espota_secret_sha256(const char *password, char out[65])
{
    return ota_sha256_hex(password, strlen(password), out);
}

int ota_espota_auth_response(const char *secret, const char *nonce, const char *cnonce, char *out,
                             size_t cap)
{
    size_t nl = strlen(nonce);
    char msg[64 + 1 + 64 + 1 + 64 + 1];
    if (nl == 32) {
        if (cap < 33 || strlen(secret) > 64 || strlen(cnonce) > 64)
            return -EINVAL;
        int n = snprintf(msg, sizeof(msg), "%s:%s:%s", secret, nonce, cnonce);
        return ota_md5_hex(msg, (size_t)n, out);
    }
    if (nl != 64 || cap < 65 || strlen(secret) > 64 || strlen(cnonce) > 64)
        return -EINVAL;
    char salt[64 + 1 + 64 + 1];
    int sl = snprintf(salt, sizeof(salt), "%s:%s", nonce, cnonce);
    unsigned char dk[32];
    if (PKCS5_PBKDF2_HMAC(secret, (int)strlen(secret), (const unsigned char *)salt, sl,
                          OTA_ESPOTA_PBKDF2_ROUNDS, EVP_sha256(), (int)sizeof(dk), dk) != 1)
        return -EIO;
    char dk_hex[65];
    ota_hex_lower(dk, sizeof(dk), dk_hex);
    int n = snprintf(msg, sizeof(msg), "%s:%s:%s", dk_hex, nonce, cnonce);
    return ota_sha256_hex(msg, (size_t)n, out);
}

int ota_espota_cnonce(size_t len, const char *filename, uint64_t size, const char *md5,
                      const char *ip, char *out, size_t cap)
{
    char buf[512];
    int n = snprintf(buf, sizeof(buf), "%s%" PRIu64 "%s%s", filename, size, md5, ip);
    if (n < 0 || (size_t)n >= sizeof(buf))
        return -EINVAL;
    if (len == 32 && cap >= 33)
        return ota_md5_hex(buf, (size_t)n, out);
    if (len == 64 && cap >= 65)
        return ota_sha256_hex(buf, (size_t)n, out);
    return -EINVAL;
}

/* ---- session ---------------------------------------------------------------------- */

struct ota_espota {
    struct ota_espota_config cfg;
    char device_ip[INET_ADDRSTRLEN];
    char local_ip[INET_ADDRSTRLEN];
    char password[128];
    char filename[128];
    const uint8_t *image;
    size_t len;
    char md5[33];

    enum ota_espota_state state;
    struct sockaddr_in dev;
    int udp_fd, listen_fd, tcp_fd;
    uint16_t listen_port;

    int invites_sent;
    int64_t deadline;      /* of the current stage */
    int64_t last_activity; /* transfer: the device's TCP took bytes, or a count byte came */
    int auth_round;        /* PBKDF2 AUTO: 0 = SHA-256 secret, 1 = MD5 secret */
    bool auth_retried;     /* one abandon + re-invite after an auth timeout */
    bool refused;          /* ICMP port unreachable seen */
    size_t nonce_len;      /* scheme of the last AUTH */

    uint64_t sent;      /* handed to the kernel */
    uint64_t delivered; /* taken by the device's TCP (sent - SIOCOUTQ), never decreasing */
    struct ota_espota_acks acks;
    struct ota_error err;
};

#define LOG(s, lvl, ...) ota_logf((s)->cfg.log, (s)->cfg.log_ctx, (lvl), __VA_ARGS__)

static int fail(struct ota_espota *s, struct ota_error *err, int code, enum ota_stage stage,
                const char *advice, const char *fmt, ...) __attribute__((format(printf, 6, 7)));

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

static void close_all(struct ota_espota *s)
{
    if (s->tcp_fd >= 0 && s->state == OTA_ESPOTA_FAILED) {
        /* Abort with RST: a FIN would queue behind unsent image bytes, and a stalled
         * ESP8266 only gives up when its TCP connection goes away. */
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        setsockopt(s->tcp_fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    }
    close_fd(&s->udp_fd);
    close_fd(&s->listen_fd);
    close_fd(&s->tcp_fd);
}

static int fail(struct ota_espota *s, struct ota_error *err, int code, enum ota_stage stage,
                const char *advice, const char *fmt, ...)
{
    /* Keep device details set just before (ota_error_set_device on s->err). */
    s->err.code = code;
    s->err.stage = stage;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->err.message, sizeof(s->err.message), fmt, ap);
    va_end(ap);
    snprintf(s->err.advice, sizeof(s->err.advice), "%s", advice ? advice : "");
    s->state = OTA_ESPOTA_FAILED;
    close_all(s);
    if (err)
        *err = s->err;
    return code;
}

struct ota_espota *ota_espota_new(const struct ota_espota_config *cfg, const uint8_t *image,
                                  size_t len, struct ota_error *err)
{
    if (!cfg || !image || len == 0) {
        ota_error_set(err, -EINVAL, OTA_STAGE_PREPARE, NULL, "no image to push");
        return NULL;
    }
    if (cfg->command != OTA_ESPOTA_CMD_FLASH && cfg->command != OTA_ESPOTA_CMD_FS) {
        ota_error_set(err, -EINVAL, OTA_STAGE_PREPARE, NULL,
                      "espota command must be 0 (flash) or 100 (filesystem)");
        return NULL;
    }
    if (len > UINT32_MAX) {
        ota_error_set(err, -EINVAL, OTA_STAGE_PREPARE, NULL, "image too large");
        return NULL;
    }
    struct ota_espota *s = calloc(1, sizeof(*s));
    if (!s) {
        ota_error_set(err, -ENOMEM, OTA_STAGE_PREPARE, NULL, "out of memory");
        return NULL;
    }
    s->cfg = *cfg;
    s->udp_fd = s->listen_fd = s->tcp_fd = -1;
    s->image = image;
    s->len = len;
    uint16_t port = cfg->device_port              ? cfg->device_port
                    : cfg->chip == OTA_CHIP_ESP32 ? OTA_ESPOTA_PORT_ESP32
                                                  : OTA_ESPOTA_PORT_ESP8266;
    if (ota_net_addr(cfg->device_ip, port, &s->dev) < 0) {
        ota_error_set(err, -EINVAL, OTA_STAGE_PREPARE, "give the board's IPv4 address",
                      "'%s' is not an IPv4 address", cfg->device_ip ? cfg->device_ip : "");
        free(s);
        return NULL;
    }
    snprintf(s->device_ip, sizeof(s->device_ip), "%s", cfg->device_ip);
    if ((cfg->password && strlen(cfg->password) >= sizeof(s->password)) ||
        (cfg->filename && strlen(cfg->filename) >= sizeof(s->filename))) {
        ota_error_set(err, -EINVAL, OTA_STAGE_PREPARE, NULL, "password or file name too long");
        free(s);
        return NULL;
    }
    snprintf(s->password, sizeof(s->password), "%s", cfg->password ? cfg->password : "");
    snprintf(s->filename, sizeof(s->filename), "%s",
             cfg->filename ? cfg->filename : "firmware.bin");
    s->cfg.password = NULL;
    s->cfg.filename = NULL;
    s->cfg.device_ip = NULL;
    if (!s->cfg.invite_attempts)
        s->cfg.invite_attempts = 5;
    if (!s->cfg.invite_timeout_ms)
        s->cfg.invite_timeout_ms = 2500;
    if (!s->cfg.auth_timeout_ms)
        s->cfg.auth_timeout_ms = 10000;
    if (!s->cfg.accept_timeout_ms)
        s->cfg.accept_timeout_ms = 10000;
    if (!s->cfg.stall_timeout_ms)
        s->cfg.stall_timeout_ms = 10000;
    if (!s->cfg.result_timeout_ms)
        s->cfg.result_timeout_ms = 60000;
    if (!s->cfg.chunk_size)
        s->cfg.chunk_size = 1460;
    if (s->cfg.sndbuf <= 0)
        s->cfg.sndbuf = OTA_ESPOTA_SNDBUF;
    if (ota_md5_hex(image, len, s->md5) < 0) {
        ota_error_set(err, -EIO, OTA_STAGE_PREPARE, NULL, "MD5 computation failed");
        free(s);
        return NULL;
    }
    ota_espota_acks_init(&s->acks);
    return s;
}

void ota_espota_free(struct ota_espota *s)
{
    if (!s)
        return;
    close_all(s);
    free(s);
}

static int send_invitation(struct ota_espota *s, struct ota_error *err)
{
    char msg[128];
    int n = snprintf(msg, sizeof(msg), "%d %u %zu %s\n", s->cfg.command, s->listen_port, s->len,
                     s->md5);
    if (send(s->udp_fd, msg, (size_t)n, MSG_NOSIGNAL) < 0 && errno != ECONNREFUSED &&
        errno != EAGAIN)
        return fail(s, err, -errno, OTA_STAGE_INVITE, "check the station's network link",
                    "cannot send the invitation to %s:%u: %s", s->device_ip, ntohs(s->dev.sin_port),
                    strerror(errno));
    s->invites_sent++;
    s->state = OTA_ESPOTA_INVITING;
    s->deadline = ota_now_ms() + s->cfg.invite_timeout_ms;
    LOG(s, OTA_LOG_DEBUG, "espota: invitation %d/%d to %s:%u: %.*s", s->invites_sent,
        s->cfg.invite_attempts, s->device_ip, ntohs(s->dev.sin_port), n - 1, msg);
    return 1;
}

int ota_espota_start(struct ota_espota *s, struct ota_error *err)
{
    struct sockaddr_in local;
    memset(&local, 0, sizeof(local));
    local.sin_family = AF_INET;
    if (s->cfg.local_ip) {
        if (ota_net_addr(s->cfg.local_ip, 0, &local) < 0)
            return fail(s, err, -EINVAL, OTA_STAGE_PREPARE, "give an IPv4 address of the station",
                        "local address '%s' is not an IPv4 address", s->cfg.local_ip);
    } else {
        int rc = ota_net_local_addr_for(&s->dev, &local.sin_addr);
        if (rc < 0)
            return fail(s, err, rc, OTA_STAGE_PREPARE,
                        "check the station's routes/interfaces to the boards' network",
                        "no route to %s: %s", s->device_ip, strerror(-rc));
    }
    inet_ntop(AF_INET, &local.sin_addr, s->local_ip, sizeof(s->local_ip));

    s->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s->listen_fd < 0)
        return fail(s, err, -errno, OTA_STAGE_PREPARE, NULL, "socket: %s", strerror(errno));
    int one = 1;
    setsockopt(s->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    local.sin_port = htons(s->cfg.local_port);
    if (bind(s->listen_fd, (struct sockaddr *)&local, sizeof(local)) != 0 ||
        listen(s->listen_fd, 4) != 0) {
        int e = errno;
        return fail(s, err, -e, OTA_STAGE_PREPARE,
                    e == EADDRINUSE ? "another push is using that port: give each concurrent "
                                      "push its own port, or wait"
                                    : "check the configured local address and port",
                    "cannot listen on %s:%u: %s", s->local_ip, s->cfg.local_port, strerror(e));
    }
    struct sockaddr_in bound;
    socklen_t bl = sizeof(bound);
    getsockname(s->listen_fd, (struct sockaddr *)&bound, &bl);
    s->listen_port = ntohs(bound.sin_port);

    s->udp_fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s->udp_fd < 0)
        return fail(s, err, -errno, OTA_STAGE_PREPARE, NULL, "socket: %s", strerror(errno));
    local.sin_port = 0;
    if (bind(s->udp_fd, (struct sockaddr *)&local, sizeof(local)) != 0 ||
        connect(s->udp_fd, (struct sockaddr *)&s->dev, sizeof(s->dev)) != 0)
        return fail(s, err, -errno, OTA_STAGE_PREPARE, NULL, "UDP socket to %s: %s", s->device_ip,
                    strerror(errno));
    LOG(s, OTA_LOG_INFO, "espota: push %zu bytes (md5 %s, cmd %d) to %s:%u, listening on %s:%u",
        s->len, s->md5, s->cfg.command, s->device_ip, ntohs(s->dev.sin_port), s->local_ip,
        s->listen_port);
    return send_invitation(s, err);
}

static int send_auth(struct ota_espota *s, const struct ota_espota_reply *r, struct ota_error *err)
{
    char secret[65], cnonce[65], resp[65];
    int rc;
    if (r->nonce_len == 32 || s->cfg.pbkdf2_hash == OTA_ESPOTA_HASH_MD5 ||
        (s->cfg.pbkdf2_hash == OTA_ESPOTA_HASH_AUTO && s->auth_round == 1))
        rc = ota_espota_secret_md5(s->password, secret);
    else
        rc = ota_espota_secret_sha256(s->password, secret);
    if (rc == 0)
        rc = ota_espota_cnonce(r->nonce_len, s->filename, s->len, s->md5, s->device_ip, cnonce,
                               sizeof(cnonce));
    if (rc == 0)
        rc = ota_espota_auth_response(secret, r->nonce, cnonce, resp, sizeof(resp));
    if (rc < 0)
        return fail(s, err, rc, OTA_STAGE_AUTH, NULL, "cannot compute the auth answer");
    char msg[160];
    int n = snprintf(msg, sizeof(msg), "%d %s %s\n", OTA_ESPOTA_CMD_AUTH, cnonce, resp);
    if (send(s->udp_fd, msg, (size_t)n, MSG_NOSIGNAL) < 0 && errno != EAGAIN)
        return fail(s, err, -errno, OTA_STAGE_AUTH, NULL, "cannot send the auth answer: %s",
                    strerror(errno));
    s->nonce_len = r->nonce_len;
    s->state = OTA_ESPOTA_AUTHENTICATING;
    s->deadline = ota_now_ms() + s->cfg.auth_timeout_ms;
    LOG(s, OTA_LOG_DEBUG, "espota: auth (%s scheme%s) sent",
        r->nonce_len == 32 ? "MD5" : "PBKDF2-SHA256",
        r->nonce_len == 64 ? (secret[32] ? ", H=SHA-256" : ", H=MD5") : "");
    return 1;
}

static int device_error(struct ota_espota *s, struct ota_error *err, enum ota_stage stage,
                        const char *text)
{
    int code = -1;
    const char *advice = NULL;
    int rc = ota_espota_classify_error(text, &code, &advice);
    ota_error_set_device(&s->err, code, text, strlen(text));
    if (rc == -ENOSPC)
        return fail(s, err, rc, stage, advice, "not enough space on %s for %zu bytes: %s",
                    s->device_ip, s->len, text);
    uint64_t header = ota_image_esp8266_flash_size(s->image, s->len);
    uint64_t real = ota_image_refusal_real_size(text);
    if (code == 9 && header && real) {
        char what[160];
        ota_image_flash_mismatch_text(header, real, what, sizeof(what));
        return fail(s, err, rc, stage, advice, "the board refused the image: %s", what);
    }
    return fail(s, err, rc, stage, advice, "the board reported an error: %s", text);
}

static int step_udp(struct ota_espota *s, struct ota_error *err)
{
    for (;;) {
        uint8_t buf[256];
        ssize_t n = recv(s->udp_fd, buf, sizeof(buf), 0);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 1;
            if (errno == ECONNREFUSED) {
                s->refused = true;
                continue;
            }
            if (errno == EINTR)
                continue;
            return fail(s, err, -errno, OTA_STAGE_INVITE, NULL, "UDP receive: %s", strerror(errno));
        }
        struct ota_espota_reply r;
        ota_espota_parse_reply(buf, (size_t)n, &r);
        LOG(s, OTA_LOG_DEBUG, "espota: UDP reply (%s) in state %s",
            ota_espota_reply_kind_to_string(r.kind), ota_espota_state_to_string(s->state));
        if (s->state != OTA_ESPOTA_INVITING && s->state != OTA_ESPOTA_AUTHENTICATING)
            continue; /* late duplicates after the handshake */
        switch (r.kind) {
        case OTA_ESPOTA_REPLY_OK:
            s->state = OTA_ESPOTA_ACCEPTING;
            s->deadline = ota_now_ms() + s->cfg.accept_timeout_ms;
            LOG(s, OTA_LOG_INFO, "espota: %s accepted; waiting for its connection to %s:%u",
                s->device_ip, s->local_ip, s->listen_port);
            return 1;
        case OTA_ESPOTA_REPLY_AUTH:
            if (s->state == OTA_ESPOTA_AUTHENTICATING)
                continue; /* answer to a duplicate invitation; ours is in flight */
            if (!s->password[0]) {
                /* Leave the device's WAITAUTH (no timeout there): a non-200 datagram resets it. */
                (void)send(s->udp_fd, "0\n", 2, MSG_NOSIGNAL);
                return fail(s, err, -EACCES, OTA_STAGE_AUTH,
                            "configure the board's OTA password (ArduinoOTA.setPassword in "
                            "the sketch) for this push",
                            "%s asks for an OTA password but none is configured", s->device_ip);
            }
            {
                int rc = send_auth(s, &r, err);
                if (rc < 0)
                    return rc;
            }
            continue;
        case OTA_ESPOTA_REPLY_AUTH_FAILED:
            if (s->state != OTA_ESPOTA_AUTHENTICATING)
                continue;
            if (s->nonce_len == 64 && s->cfg.pbkdf2_hash == OTA_ESPOTA_HASH_AUTO &&
                s->auth_round == 0) {
                /* ESP32 3.3.x devices may store an MD5 hash: re-invite, answer with H=MD5. */
                s->auth_round = 1;
                s->invites_sent = 0;
                LOG(s, OTA_LOG_INFO, "espota: SHA-256 secret refused, retrying with MD5 secret");
                int rc = send_invitation(s, err);
                if (rc < 0)
                    return rc;
                continue;
            }
            return fail(s, err, -EACCES, OTA_STAGE_AUTH,
                        "check the password set in the sketch (ArduinoOTA.setPassword / "
                        "setPasswordHash, lowercase hex); ESP32 core >= 3.3.1 uses SHA-256 auth",
                        "wrong OTA password: %s answered 'Authentication Failed'", s->device_ip);
        case OTA_ESPOTA_REPLY_ERR:
            return device_error(
                s, err, s->state == OTA_ESPOTA_AUTHENTICATING ? OTA_STAGE_AUTH : OTA_STAGE_INVITE,
                r.text);
        default:
            LOG(s, OTA_LOG_WARN, "espota: ignoring an unexpected %zd-byte UDP reply from %s", n,
                s->device_ip);
            continue;
        }
    }
}

static int step_handshake(struct ota_espota *s, struct ota_error *err)
{
    int rc = step_udp(s, err);
    if (rc <= 0 || (s->state != OTA_ESPOTA_INVITING && s->state != OTA_ESPOTA_AUTHENTICATING))
        return rc;
    if (ota_now_ms() < s->deadline)
        return 1;
    unsigned port = ntohs(s->dev.sin_port);
    if (s->state == OTA_ESPOTA_AUTHENTICATING) {
        if (!s->auth_retried) {
            /* The device sits in WAITAUTH without timeout: a datagram whose first number is not
             * 200 resets it (and is dropped when it is idle); then invite again. */
            s->auth_retried = true;
            (void)send(s->udp_fd, "0\n", 2, MSG_NOSIGNAL);
            s->invites_sent = 0;
            LOG(s, OTA_LOG_WARN, "espota: no answer to our authentication; re-inviting");
            return send_invitation(s, err);
        }
        return fail(s, err, -ETIMEDOUT, OTA_STAGE_AUTH,
                    "the board may be busy or the datagram was lost: retry the push",
                    "no answer to our authentication from %s:%u", s->device_ip, port);
    }
    if (s->invites_sent < s->cfg.invite_attempts)
        return send_invitation(s, err);
    if (s->refused)
        return fail(s, err, -ECONNREFUSED, OTA_STAGE_INVITE,
                    "nothing listens on that UDP port: is ArduinoOTA running (ArduinoOTA.begin) "
                    "and is the port right (8266 ESP8266, 3232 ESP32)?",
                    "no answer from %s:%u: port unreachable", s->device_ip, port);
    return fail(s, err, -ETIMEDOUT, OTA_STAGE_INVITE,
                "is the board on the network and running ArduinoOTA (the sketch's loop must "
                "call ArduinoOTA.handle())?",
                "no answer from %s:%u: is the board on the network and running ArduinoOTA?",
                s->device_ip, port);
}

static int step_accept(struct ota_espota *s, struct ota_error *err)
{
    /* Drain late UDP replies so they do not pile up. */
    uint8_t junk[256];
    while (recv(s->udp_fd, junk, sizeof(junk), 0) > 0)
        ;
    for (;;) {
        struct sockaddr_in peer;
        socklen_t pl = sizeof(peer);
        int fd = accept4(s->listen_fd, (struct sockaddr *)&peer, &pl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                return fail(s, err, -errno, OTA_STAGE_ACCEPT, NULL, "accept: %s", strerror(errno));
            break;
        }
        if (peer.sin_addr.s_addr != s->dev.sin_addr.s_addr) {
            char ip[INET_ADDRSTRLEN];
            inet_ntop(AF_INET, &peer.sin_addr, ip, sizeof(ip));
            LOG(s, OTA_LOG_WARN, "espota: dropping a connection from %s (expected %s)", ip,
                s->device_ip);
            close(fd);
            continue;
        }
        s->tcp_fd = fd;
        close_fd(&s->listen_fd);
        /* A small send buffer: what left it is what the device took (a device may take only
         * 10-30 KB/s; an autotuned buffer would swallow the whole image at once). */
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &s->cfg.sndbuf, sizeof(s->cfg.sndbuf));
        s->state = OTA_ESPOTA_SENDING;
        s->last_activity = ota_now_ms();
        LOG(s, OTA_LOG_INFO, "espota: %s connected back; streaming", s->device_ip);
        return 1;
    }
    if (ota_now_ms() < s->deadline)
        return 1;
    char msg[200];
    snprintf(msg, sizeof(msg),
             "a firewall on the station is probably blocking inbound TCP to port %u: open it "
             "(use a fixed OTA port); an ESP32 also stays silent here when the image does not "
             "fit its OTA partition",
             s->listen_port);
    return fail(s, err, -ETIMEDOUT, OTA_STAGE_ACCEPT, msg,
                "the board accepted but never connected back to %s:%u: a firewall on the "
                "station is probably blocking inbound TCP",
                s->local_ip, s->listen_port);
}

/* Bytes the device's TCP took: sent minus what is still in our send queue. Never decreasing;
 * any growth counts as activity. Without SIOCOUTQ: sent (ahead by at most the send buffer). */
static void update_delivered(struct ota_espota *s, int64_t now)
{
    uint64_t d = s->sent;
    int outq = 0;
    if (s->tcp_fd >= 0 && ioctl(s->tcp_fd, SIOCOUTQ, &outq) == 0 && outq >= 0)
        d = (uint64_t)outq >= s->sent ? 0 : s->sent - (uint64_t)outq;
    if (d > s->delivered) {
        s->delivered = d;
        s->last_activity = now;
    }
}

/* Reads what the device sent; returns 1 running, 0 EOF, <0 failure. */
static int read_acks(struct ota_espota *s, struct ota_error *err)
{
    for (;;) {
        uint8_t buf[512];
        ssize_t n = recv(s->tcp_fd, buf, sizeof(buf), 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 1;
            if (errno == ECONNRESET)
                return 0;
            return fail(s, err, -errno, OTA_STAGE_TRANSFER, NULL, "receive: %s", strerror(errno));
        }
        if (n == 0)
            return 0;
        int64_t now = ota_now_ms();
        s->last_activity = now;
        /* The device counted only bytes its TCP had acknowledged before it wrote the count. */
        update_delivered(s, now);
        if (ota_espota_acks_feed(&s->acks, buf, (size_t)n, s->delivered) != OTA_ESPOTA_VERDICT_NONE)
            return 1;
    }
}

static int verdict(struct ota_espota *s, struct ota_error *err, bool eof)
{
    enum ota_espota_verdict v = eof ? ota_espota_acks_finish(&s->acks) : s->acks.verdict;
    if (v == OTA_ESPOTA_VERDICT_OK) {
        if (s->sent < s->len)
            return fail(s, err, -EPROTO, OTA_STAGE_TRANSFER, "retry the push",
                        "%s said OK after only %" PRIu64 " of %zu bytes", s->device_ip, s->sent,
                        s->len);
        s->state = OTA_ESPOTA_DONE;
        close_all(s);
        LOG(s, OTA_LOG_INFO, "espota: %s: OK (%zu bytes); the board reboots", s->device_ip, s->len);
        return 0;
    }
    if (v == OTA_ESPOTA_VERDICT_ERROR)
        return device_error(s, err, s->delivered < s->len ? OTA_STAGE_TRANSFER : OTA_STAGE_RESULT,
                            s->acks.text);
    if (!eof)
        return 1;
    if (s->delivered < s->len)
        return fail(s, err, -ECONNRESET, OTA_STAGE_TRANSFER,
                    "the board dropped the connection: check Wi-Fi signal and power, then retry",
                    "%s closed the connection after taking %" PRIu64 " of %zu bytes", s->device_ip,
                    s->delivered, s->len);
    return fail(s, err, -EIO, OTA_STAGE_RESULT,
                "the final OK can be lost before the reboot: check the version the board "
                "reports after it restarts before retrying",
                "%s closed the connection without a verdict (no OK)", s->device_ip);
}

static int step_transfer(struct ota_espota *s, struct ota_error *err)
{
    bool write_failed = false;
    while (s->sent < s->len) {
        size_t n = s->len - s->sent;
        if (n > s->cfg.chunk_size)
            n = s->cfg.chunk_size;
        ssize_t w = send(s->tcp_fd, s->image + s->sent, n, MSG_NOSIGNAL);
        if (w > 0) {
            s->sent += (uint64_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        write_failed = true; /* EPIPE/ECONNRESET: read what the device said, then decide */
        break;
    }
    int rc = read_acks(s, err);
    if (rc < 0)
        return rc;
    int64_t now = ota_now_ms();
    update_delivered(s, now);
    if (s->delivered == s->len && s->state == OTA_ESPOTA_SENDING) {
        s->state = OTA_ESPOTA_WAITING_RESULT;
        s->deadline = now + s->cfg.result_timeout_ms;
        LOG(s, OTA_LOG_DEBUG, "espota: the board took all %zu bytes; waiting for the verdict",
            s->len);
    }
    rc = verdict(s, err, rc == 0 || write_failed);
    if (rc <= 0)
        return rc;
    if (s->state == OTA_ESPOTA_SENDING && now - s->last_activity >= s->cfg.stall_timeout_ms)
        return fail(s, err, -ETIMEDOUT, OTA_STAGE_TRANSFER,
                    "the board stopped taking data: check Wi-Fi signal and power, then retry "
                    "(the station closed the connection, which is the only way an ESP8266 "
                    "aborts)",
                    "transfer to %s stalled: the board acknowledged about %" PRIu64
                    " of %zu bytes (its TCP took %" PRIu64 ", %" PRIu64
                    " sent) and nothing moved for %d ms",
                    s->device_ip, ota_espota_acks_estimate(&s->acks, s->delivered), s->len,
                    s->delivered, s->sent, s->cfg.stall_timeout_ms);
    if (s->state == OTA_ESPOTA_WAITING_RESULT && now >= s->deadline)
        return fail(s, err, -ETIMEDOUT, OTA_STAGE_RESULT,
                    "the board may still have applied the image: check the version it reports "
                    "after it restarts",
                    "no verdict from %s within %d ms after it took the last byte", s->device_ip,
                    s->cfg.result_timeout_ms);
    return 1;
}

int ota_espota_step(struct ota_espota *s, struct ota_error *err)
{
    switch (s->state) {
    case OTA_ESPOTA_IDLE:
        return ota_espota_start(s, err);
    case OTA_ESPOTA_INVITING:
    case OTA_ESPOTA_AUTHENTICATING:
        return step_handshake(s, err);
    case OTA_ESPOTA_ACCEPTING:
        return step_accept(s, err);
    case OTA_ESPOTA_SENDING:
    case OTA_ESPOTA_WAITING_RESULT:
        return step_transfer(s, err);
    case OTA_ESPOTA_DONE:
        return 0;
    default:
        if (err)
            *err = s->err;
        return s->err.code ? s->err.code : -EIO;
    }
}

int ota_espota_poll_fds(const struct ota_espota *s, struct pollfd *fds, int max, int *timeout_ms)
{
    int n = 0;
    int64_t deadline = s->deadline;
    switch (s->state) {
    case OTA_ESPOTA_INVITING:
    case OTA_ESPOTA_AUTHENTICATING:
        if (n < max)
            fds[n++] = (struct pollfd){.fd = s->udp_fd, .events = POLLIN};
        break;
    case OTA_ESPOTA_ACCEPTING:
        if (n < max)
            fds[n++] = (struct pollfd){.fd = s->listen_fd, .events = POLLIN};
        if (n < max)
            fds[n++] = (struct pollfd){.fd = s->udp_fd, .events = POLLIN};
        break;
    case OTA_ESPOTA_SENDING:
    case OTA_ESPOTA_WAITING_RESULT: {
        short ev = POLLIN;
        if (s->sent < s->len)
            ev |= POLLOUT;
        if (n < max)
            fds[n++] = (struct pollfd){.fd = s->tcp_fd, .events = ev};
        if (s->state == OTA_ESPOTA_SENDING)
            deadline = s->last_activity + s->cfg.stall_timeout_ms;
        break;
    }
    default:
        deadline = ota_now_ms();
        break;
    }
    if (timeout_ms) {
        int t = ota_ms_until(deadline);
        /* Wake at least every 500 ms: the send queue drains without an event once all is
         * queued (progress, stall bookkeeping). */
        *timeout_ms = t > 500 ? 500 : t;
    }
    return n;
}

void ota_espota_cancel(struct ota_espota *s, struct ota_error *err)
{
    if (s->state == OTA_ESPOTA_DONE || s->state == OTA_ESPOTA_FAILED)
        return;
    fail(s, err, -ECANCELED, OTA_STAGE_NONE, NULL, "push to %s canceled in state %s", s->device_ip,
         ota_espota_state_to_string(s->state));
}

enum ota_espota_state ota_espota_get_state(const struct ota_espota *s)
{
    return s->state;
}

uint16_t ota_espota_listen_port(const struct ota_espota *s)
{
    return s->listen_port;
}

void ota_espota_get_progress(const struct ota_espota *s, uint64_t *sent, uint64_t *done,
                             uint64_t *total)
{
    if (sent)
        *sent = s->sent;
    if (done)
        *done = s->state == OTA_ESPOTA_DONE ? s->len : s->delivered; /* delivered <= sent <= len */
    if (total)
        *total = s->len;
}

int ota_espota_push(const struct ota_espota_config *cfg, const uint8_t *image, size_t len,
                    ota_progress_fn progress, void *progress_ctx, int cancel_fd,
                    struct ota_error *err)
{
    ota_error_clear(err);
    struct ota_espota *s = ota_espota_new(cfg, image, len, err);
    if (!s)
        return err ? err->code : -EINVAL;
    int rc = ota_espota_start(s, err);
    uint64_t last = 0;
    bool reported = false;
    while (rc > 0) {
        struct pollfd fds[4];
        int timeout = 0;
        int n = ota_espota_poll_fds(s, fds, 3, &timeout);
        if (cancel_fd >= 0)
            fds[n++] = (struct pollfd){.fd = cancel_fd, .events = POLLIN};
        if (poll(fds, (nfds_t)n, timeout) < 0 && errno != EINTR) {
            rc = ota_error_set(err, -errno, OTA_STAGE_NONE, NULL, "poll: %s", strerror(errno));
            break;
        }
        if (cancel_fd >= 0 && (fds[n - 1].revents & (POLLIN | POLLHUP | POLLERR))) {
            ota_espota_cancel(s, err);
            rc = -ECANCELED;
            break;
        }
        rc = ota_espota_step(s, err);
        uint64_t done = 0;
        ota_espota_get_progress(s, NULL, &done, NULL);
        if (progress && (!reported || done > last)) {
            progress(progress_ctx, done, len);
            last = done;
            reported = true;
        }
    }
    ota_espota_free(s);
    return rc;
}
