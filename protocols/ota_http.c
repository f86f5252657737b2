/*
 * ota_http: request-head parser, pull decision table and response-head
 * serializer for HTTP pull (PROTOCOL-OTA.md §2, §6).
 *
 * Owns: the byte layout of every response the station sends to an updater.
 * Invariants: the parser never reads past len, never trusts a length or
 * value from the device (every field is bounds- and syntax-checked), and
 * leaves malformed x- values unset instead of failing the request; the
 * serializer emits HTTP/1.0, "Content-Length: <n>" with exactly one space,
 * lowercase x-MD5, no Transfer-Encoding, no Content-Encoding.
 */
#include "ota_http.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static const char *const client_names[OTA_HTTP_CLIENT_COUNT] = {
    [OTA_HTTP_CLIENT_OTHER] = "other",
    [OTA_HTTP_CLIENT_ESP8266] = "esp8266-http-update",
    [OTA_HTTP_CLIENT_ESP32] = "esp32-http-update",
};

const char *ota_http_client_to_string(enum ota_http_client client)
{
    if ((unsigned)client >= OTA_HTTP_CLIENT_COUNT)
        return "unknown";
    return client_names[client];
}

static const char *const mode_names[OTA_HTTP_MODE_COUNT] = {
    [OTA_HTTP_MODE_NONE] = "none",     [OTA_HTTP_MODE_SKETCH] = "sketch",
    [OTA_HTTP_MODE_SPIFFS] = "spiffs", [OTA_HTTP_MODE_VERSION] = "version",
    [OTA_HTTP_MODE_OTHER] = "other",
};

const char *ota_http_mode_to_string(enum ota_http_mode mode)
{
    if ((unsigned)mode >= OTA_HTTP_MODE_COUNT)
        return "unknown";
    return mode_names[mode];
}

static const char *const action_names[OTA_HTTP_ACTION_COUNT] = {
    [OTA_HTTP_SERVE] = "serve",
    [OTA_HTTP_NOT_MODIFIED] = "not-modified",
    [OTA_HTTP_VERSION] = "version",
    [OTA_HTTP_FORBIDDEN] = "forbidden",
    [OTA_HTTP_NOT_FOUND] = "not-found",
    [OTA_HTTP_BAD_REQUEST] = "bad-request",
    [OTA_HTTP_METHOD_NOT_ALLOWED] = "method-not-allowed",
};

const char *ota_http_action_to_string(enum ota_http_action action)
{
    if ((unsigned)action >= OTA_HTTP_ACTION_COUNT)
        return "unknown";
    return action_names[action];
}

/* ---- parsing ---------------------------------------------------------------- */

static bool is_tchar(unsigned char c)
{
    return isalnum(c) || (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* Copies v[0..n) into dst (cap) if it fits and is printable; else leaves dst empty. */
static bool copy_value(char *dst, size_t cap, const char *v, size_t n)
{
    dst[0] = '\0';
    if (n >= cap)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)v[i] < 0x20 || (unsigned char)v[i] == 0x7F)
            return false;
    memcpy(dst, v, n);
    dst[n] = '\0';
    return true;
}

static bool parse_u64(const char *v, size_t n, uint64_t *out)
{
    if (n == 0 || n > 20)
        return false;
    uint64_t x = 0;
    for (size_t i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9')
            return false;
        unsigned d = (unsigned)(v[i] - '0');
        if (x > (UINT64_MAX - d) / 10)
            return false;
        x = x * 10 + d;
    }
    *out = x;
    return true;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int ota_http_parse_mac(const char *s, uint8_t mac[6])
{
    if (!s || strlen(s) != 17)
        return -EINVAL;
    for (int i = 0; i < 6; i++) {
        int hi = hexval(s[3 * i]), lo = hexval(s[3 * i + 1]);
        if (hi < 0 || lo < 0 || (i < 5 && s[3 * i + 2] != ':'))
            return -EINVAL;
        mac[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

static bool name_is(const char *name, size_t n, const char *want)
{
    return strlen(want) == n && strncasecmp(name, want, n) == 0;
}

static bool token_list_has(const char *v, size_t n, const char *tok)
{
    size_t tl = strlen(tok);
    size_t i = 0;
    while (i < n) {
        while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        size_t s = i;
        while (i < n && v[i] != ',' && v[i] != ' ' && v[i] != '\t')
            i++;
        if (i - s == tl && strncasecmp(v + s, tok, tl) == 0)
            return true;
    }
    return false;
}

static void esp_header(struct ota_http_request *req, enum ota_chip chip, const char *name,
                       size_t nl, const char *v, size_t vl)
{
    char tmp[20];
    req->has_esp_headers = true;
    req->header_chip = chip;
    if (name_is(name, nl, "chip-id")) {
        uint64_t x;
        if (parse_u64(v, vl, &x) && x <= UINT32_MAX) {
            req->has_chip_id = true;
            req->chip_id = (uint32_t)x;
        }
    } else if (name_is(name, nl, "sta-mac")) {
        req->has_sta_mac =
            copy_value(tmp, sizeof(tmp), v, vl) && ota_http_parse_mac(tmp, req->sta_mac) == 0;
    } else if (name_is(name, nl, "ap-mac")) {
        req->has_ap_mac =
            copy_value(tmp, sizeof(tmp), v, vl) && ota_http_parse_mac(tmp, req->ap_mac) == 0;
    } else if (name_is(name, nl, "free-space")) {
        req->has_free_space = parse_u64(v, vl, &req->free_space);
    } else if (name_is(name, nl, "sketch-size")) {
        req->has_sketch_size = parse_u64(v, vl, &req->sketch_size);
    } else if (name_is(name, nl, "chip-size")) {
        req->has_chip_size = parse_u64(v, vl, &req->chip_size);
    } else if (name_is(name, nl, "sketch-md5")) {
        if (!copy_value(req->sketch_md5, sizeof(req->sketch_md5), v, vl) ||
            !ota_is_hex(req->sketch_md5, 32))
            req->sketch_md5[0] = '\0';
    } else if (name_is(name, nl, "sketch-sha256")) {
        if (!copy_value(req->sketch_sha256, sizeof(req->sketch_sha256), v, vl) ||
            !ota_is_hex(req->sketch_sha256, 64))
            req->sketch_sha256[0] = '\0';
    } else if (name_is(name, nl, "sdk-version")) {
        copy_value(req->sdk_version, sizeof(req->sdk_version), v, vl);
    } else if (name_is(name, nl, "mode")) {
        if (vl == 6 && strncmp(v, "sketch", 6) == 0)
            req->mode = OTA_HTTP_MODE_SKETCH;
        else if (vl == 6 && strncmp(v, "spiffs", 6) == 0)
            req->mode = OTA_HTTP_MODE_SPIFFS;
        else if (vl == 7 && strncmp(v, "version", 7) == 0)
            req->mode = OTA_HTTP_MODE_VERSION;
        else
            req->mode = OTA_HTTP_MODE_OTHER;
    } else if (name_is(name, nl, "version")) {
        copy_value(req->version, sizeof(req->version), v, vl);
    }
}

static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    return c == '+' ? 62 : c == '/' ? 63 : -1;
}

/* Canonical base64 (RFC 4648, padded) of at most cap - 1 bytes into out (NUL-terminated):
 * the decoded length, or -1. */
static int b64_decode(const char *s, size_t n, char *out, size_t cap)
{
    if (n == 0 || n % 4 != 0 || n / 4 * 3 >= cap)
        return -1;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 4) {
        int v[4];
        bool last = i + 4 == n;
        for (int k = 0; k < 4; k++) {
            v[k] = s[i + k] == '=' && last && k >= 2 ? -2 : b64_value((unsigned char)s[i + k]);
            if (v[k] == -1)
                return -1;
        }
        if (v[2] == -2 && v[3] != -2) /* "x=y" */
            return -1;
        uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 |
                     (uint32_t)(v[2] < 0 ? 0 : v[2]) << 6 | (uint32_t)(v[3] < 0 ? 0 : v[3]);
        out[o++] = (char)(w >> 16);
        if (v[2] >= 0)
            out[o++] = (char)(w >> 8);
        if (v[3] >= 0)
            out[o++] = (char)w;
    }
    out[o] = '\0';
    return (int)o;
}

/* "Basic <base64(user:password)>" (RFC 7617; HTTPClient::setAuthorization(user, password)
 * as ESP8266httpUpdate and ESP32 HTTPUpdate send it): user before the first ':', no control
 * characters, no NUL. Anything else leaves has_basic_auth false. */
static void basic_auth(struct ota_http_request *req, const char *v, size_t vl)
{
    char dec[sizeof(req->auth_user) + sizeof(req->auth_password)];
    if (vl < 7 || strncasecmp(v, "Basic ", 6) != 0)
        return;
    size_t i = 6;
    while (i < vl && v[i] == ' ')
        i++;
    int n = b64_decode(v + i, vl - i, dec, sizeof(dec));
    if (n <= 0)
        return;
    char *colon = memchr(dec, ':', (size_t)n);
    if (!colon || colon == dec || (size_t)(colon - dec) >= sizeof(req->auth_user) ||
        (size_t)(dec + n - colon - 1) >= sizeof(req->auth_password))
        return;
    for (int k = 0; k < n; k++)
        if ((unsigned char)dec[k] < 0x20 || dec[k] == 0x7F)
            return;
    memcpy(req->auth_user, dec, (size_t)(colon - dec));
    req->auth_user[colon - dec] = '\0';
    memcpy(req->auth_password, colon + 1, (size_t)(dec + n - colon - 1));
    req->auth_password[dec + n - colon - 1] = '\0';
    req->has_basic_auth = true;
}

static int header(struct ota_http_request *req, const char *name, size_t nl, const char *v,
                  size_t vl, struct ota_error *err)
{
    if (name_is(name, nl, "user-agent")) {
        copy_value(req->user_agent, sizeof(req->user_agent), v, vl);
        if (strcmp(req->user_agent, "ESP8266-http-Update") == 0)
            req->client = OTA_HTTP_CLIENT_ESP8266;
        else if (strcmp(req->user_agent, "ESP32-http-Update") == 0)
            req->client = OTA_HTTP_CLIENT_ESP32;
        else
            req->client = OTA_HTTP_CLIENT_OTHER;
    } else if (name_is(name, nl, "host")) {
        copy_value(req->host, sizeof(req->host), v, vl);
    } else if (name_is(name, nl, "connection")) {
        req->connection_close = token_list_has(v, vl, "close");
    } else if (name_is(name, nl, "authorization")) {
        req->has_authorization = true;
        req->has_basic_auth = false;
        req->auth_user[0] = req->auth_password[0] = '\0';
        basic_auth(req, v, vl);
    } else if (name_is(name, nl, "range")) {
        req->has_range = true;
    } else if (name_is(name, nl, "content-length")) {
        if (!parse_u64(v, vl, &req->content_length))
            return ota_error_set(err, -EPROTO, OTA_STAGE_REQUEST, NULL,
                                 "malformed Content-Length in the request");
        req->has_content_length = true;
    } else if (nl > 9 && strncasecmp(name, "x-ESP8266-", 10) == 0 && nl > 10) {
        esp_header(req, OTA_CHIP_ESP8266, name + 10, nl - 10, v, vl);
    } else if (nl > 8 && strncasecmp(name, "x-ESP32-", 8) == 0) {
        esp_header(req, OTA_CHIP_ESP32, name + 8, nl - 8, v, vl);
    }
    return 0;
}

static int request_line(struct ota_http_request *req, const char *l, size_t n,
                        struct ota_error *err)
{
    const char *sp1 = memchr(l, ' ', n);
    if (!sp1 || sp1 == l || (size_t)(sp1 - l) >= sizeof(req->method))
        goto bad;
    for (const char *p = l; p < sp1; p++)
        if (!is_tchar((unsigned char)*p))
            goto bad;
    memcpy(req->method, l, (size_t)(sp1 - l));
    req->method[sp1 - l] = '\0';
    const char *u = sp1 + 1;
    const char *end = l + n;
    const char *sp2 = memchr(u, ' ', (size_t)(end - u));
    if (!sp2 || sp2 == u || (size_t)(sp2 - u) >= sizeof(req->uri))
        goto bad;
    for (const char *p = u; p < sp2; p++)
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7F)
            goto bad;
    memcpy(req->uri, u, (size_t)(sp2 - u));
    req->uri[sp2 - u] = '\0';
    const char *ver = sp2 + 1;
    if (end - ver != 8 || strncmp(ver, "HTTP/1.", 7) != 0 || (ver[7] != '0' && ver[7] != '1'))
        goto bad;
    req->http_minor = ver[7] - '0';
    return 0;
bad:
    return ota_error_set(err, -EPROTO, OTA_STAGE_REQUEST,
                         "only HTTP/1.0 and HTTP/1.1 GET requests are served here",
                         "malformed HTTP request line");
}

int ota_http_parse_request(const char *buf, size_t len, struct ota_http_request *req,
                           struct ota_error *err)
{
    memset(req, 0, sizeof(*req));
    size_t pos = 0;
    /* Tolerate empty lines before the request line (RFC 9112 §2.2). */
    while (pos < len && pos < 8 && (buf[pos] == '\r' || buf[pos] == '\n'))
        pos++;
    size_t start = pos;
    /* Find the end of the head before looking at anything else. */
    size_t head_end = 0;
    size_t scan = len < OTA_HTTP_MAX_HEAD ? len : OTA_HTTP_MAX_HEAD;
    for (size_t i = start; i < scan; i++) {
        if (buf[i] == '\0')
            return ota_error_set(err, -EPROTO, OTA_STAGE_REQUEST, NULL,
                                 "NUL byte in the HTTP request head");
        if (buf[i] != '\n')
            continue;
        if (i + 1 < scan && buf[i + 1] == '\n') {
            head_end = i + 2;
            break;
        }
        if (i + 2 < scan && buf[i + 1] == '\r' && buf[i + 2] == '\n') {
            head_end = i + 3;
            break;
        }
    }
    if (head_end == 0) {
        if (len >= OTA_HTTP_MAX_HEAD)
            return ota_error_set(err, -EMSGSIZE, OTA_STAGE_REQUEST, NULL,
                                 "HTTP request head larger than %d bytes", OTA_HTTP_MAX_HEAD);
        return 0;
    }
    int nheaders = 0;
    bool first = true;
    while (pos < head_end) {
        const char *l = buf + pos;
        const char *nl = memchr(l, '\n', head_end - pos);
        size_t n = (size_t)(nl - l);
        pos += n + 1;
        if (n > 0 && l[n - 1] == '\r')
            n--;
        if (n == 0)
            break; /* the empty line */
        for (size_t i = 0; i < n; i++)
            if (l[i] == '\r')
                return ota_error_set(err, -EPROTO, OTA_STAGE_REQUEST, NULL,
                                     "bare CR in the HTTP request head");
        if (first) {
            int rc = request_line(req, l, n, err);
            if (rc < 0)
                return rc;
            first = false;
            continue;
        }
        if (++nheaders > OTA_HTTP_MAX_HEADERS)
            return ota_error_set(err, -EMSGSIZE, OTA_STAGE_REQUEST, NULL,
                                 "more than %d request headers", OTA_HTTP_MAX_HEADERS);
        const char *colon = memchr(l, ':', n);
        if (!colon || colon == l)
            return ota_error_set(err, -EPROTO, OTA_STAGE_REQUEST, NULL,
                                 "malformed HTTP header line");
        size_t nlen = (size_t)(colon - l);
        for (size_t i = 0; i < nlen; i++)
            if (!is_tchar((unsigned char)l[i]))
                return ota_error_set(err, -EPROTO, OTA_STAGE_REQUEST, NULL,
                                     "malformed HTTP header name");
        const char *v = colon + 1;
        const char *ve = l + n;
        while (v < ve && (*v == ' ' || *v == '\t'))
            v++;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
            ve--;
        int rc = header(req, l, nlen, v, (size_t)(ve - v), err);
        if (rc < 0)
            return rc;
    }
    if (first)
        return ota_error_set(err, -EPROTO, OTA_STAGE_REQUEST, NULL, "empty HTTP request");
    req->head_len = head_end;
    return (int)head_end;
}

/* ---- decisions ---------------------------------------------------------------- */

static void decide(struct ota_http_decision *d, enum ota_http_action a, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void decide(struct ota_http_decision *d, enum ota_http_action a, const char *fmt, ...)
{
    static const int codes[OTA_HTTP_ACTION_COUNT] = {
        [OTA_HTTP_SERVE] = 200,
        [OTA_HTTP_NOT_MODIFIED] = 304,
        [OTA_HTTP_VERSION] = 200,
        [OTA_HTTP_FORBIDDEN] = 403,
        [OTA_HTTP_NOT_FOUND] = 404,
        [OTA_HTTP_BAD_REQUEST] = 400,
        [OTA_HTTP_METHOD_NOT_ALLOWED] = 405,
    };
    d->action = a;
    d->status = codes[a];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->reason, sizeof(d->reason), fmt, ap);
    va_end(ap);
}

static bool nonempty(const char *s)
{
    return s && s[0];
}

static bool md5_eq(const char *a, const char *b)
{
    return nonempty(a) && nonempty(b) && strcasecmp(a, b) == 0;
}

/* The board's reported sketch MD5 is img's; on an ESP8266 also with the flash-mode byte the
 * Updater rewrote in flash (img->mode_md5). */
static bool sketch_is_image(const char *sketch_md5, const struct ota_http_image *img, bool esp8266)
{
    if (!nonempty(sketch_md5))
        return false;
    if (md5_eq(sketch_md5, img->md5))
        return true;
    for (int m = 0; esp8266 && img->mode_md5 && m < 4; m++)
        if (md5_eq(sketch_md5, img->mode_md5[m]))
            return true;
    return false;
}

void ota_http_decide(const struct ota_http_request *req, const struct ota_http_board *board,
                     const struct ota_http_policy *policy, struct ota_http_decision *out)
{
    memset(out, 0, sizeof(*out));
    out->style = OTA_HTTP_STYLE_UPDATER;
    if (strcmp(req->method, "GET") != 0) {
        decide(out, OTA_HTTP_METHOD_NOT_ALLOWED, "method %s not allowed", req->method);
        return;
    }
    bool updater = req->client != OTA_HTTP_CLIENT_OTHER && req->has_sta_mac;
    bool prefix_ok =
        !req->has_esp_headers || req->client == OTA_HTTP_CLIENT_OTHER ||
        (req->client == OTA_HTTP_CLIENT_ESP8266) == (req->header_chip == OTA_CHIP_ESP8266);
    if (policy->strict && (!updater || !prefix_ok)) {
        decide(out, OTA_HTTP_FORBIDDEN, "not an ESP updater request (User-Agent '%s'%s)",
               req->user_agent,
               !req->has_sta_mac ? ", no x-*-STA-MAC header"
                                 : ", header prefix does not match chip");
        return;
    }
    if (!req->has_sta_mac) {
        decide(out, OTA_HTTP_BAD_REQUEST, "no x-ESP8266-STA-MAC / x-ESP32-STA-MAC header");
        return;
    }
    if (!board || !board->known) {
        if (policy->unknown == OTA_HTTP_UNKNOWN_REFUSE) {
            decide(out, OTA_HTTP_NOT_FOUND, "unknown board (MAC not enrolled)");
            return;
        }
        out->enrol = true;
    }
    if (req->mode == OTA_HTTP_MODE_OTHER) {
        decide(out, OTA_HTTP_BAD_REQUEST, "unknown update mode");
        return;
    }
    bool fs = req->mode == OTA_HTTP_MODE_SPIFFS;
    const struct ota_http_image *img = board ? (fs ? board->fs_target : board->target) : NULL;
    if (!img) {
        decide(out, OTA_HTTP_NOT_MODIFIED, "no target %s for this board",
               fs ? "filesystem image" : "firmware");
        return;
    }
    bool esp32 = req->client == OTA_HTTP_CLIENT_ESP32 ||
                 (req->client == OTA_HTTP_CLIENT_OTHER && req->has_esp_headers &&
                  req->header_chip == OTA_CHIP_ESP32);
    if (req->mode == OTA_HTTP_MODE_VERSION) {
        if (!nonempty(img->version)) {
            decide(out, OTA_HTTP_NOT_MODIFIED, "target firmware has no version string");
            return;
        }
        out->image = img;
        decide(out, OTA_HTTP_VERSION, "available version %s", img->version);
        return;
    }
    if (img->gzip && esp32) {
        out->problem = true;
        decide(out, OTA_HTTP_NOT_MODIFIED,
               "target is a gzip image, which ESP32 boards cannot take: not served");
        return;
    }
    bool esp8266 = !esp32 && (req->client == OTA_HTTP_CLIENT_ESP8266 ||
                              (req->has_esp_headers && req->header_chip == OTA_CHIP_ESP8266));
    bool served_this = board && md5_eq(board->served_md5, img->md5);
    /* The board still reports the sketch it ran when the image was served: it did not take. */
    bool did_not_take = served_this && md5_eq(board->served_from_sketch_md5, req->sketch_md5);
    /* Its sketch MD5 is the target's: it runs the target (flashed over serial, pushed, or
     * served before), whatever version it reports or when it sends none (the updaters send
     * x-…-version only when the sketch passed one). Serving it again would reboot it into
     * the same sketch, and "did not take" would then serve it at every check-in. */
    bool runs_target = !fs && sketch_is_image(req->sketch_md5, img, esp8266);
    if (nonempty(req->version) && nonempty(img->version)) {
        if (strcmp(req->version, img->version) == 0) {
            decide(out, OTA_HTTP_NOT_MODIFIED, "board runs target version %s", img->version);
            return;
        }
        if (runs_target) {
            out->problem = true;
            decide(out, OTA_HTTP_NOT_MODIFIED,
                   "the board runs the target image (its sketch MD5 is the image's) but "
                   "reports version '%s', not '%s': check the catalog's version string",
                   req->version, img->version);
            return;
        }
        if (served_this && !did_not_take) {
            out->problem = true;
            decide(out, OTA_HTTP_NOT_MODIFIED,
                   "target was served and the board's sketch changed, but it reports version "
                   "'%s', not '%s': check the catalog's version string",
                   req->version, img->version);
            return;
        }
    } else if (runs_target) {
        decide(out, OTA_HTTP_NOT_MODIFIED,
               "board runs the target image (its sketch MD5 is the image's, no version to "
               "compare)");
        return;
    } else if (served_this && !did_not_take) {
        decide(out, OTA_HTTP_NOT_MODIFIED, "station already served this image (md5 %s)", img->md5);
        return;
    }
    if (!fs && req->has_free_space && img->size > req->free_space) {
        out->problem = true;
        decide(out, OTA_HTTP_NOT_MODIFIED,
               "image (%" PRIu64 " bytes) does not fit the board's free space (%" PRIu64
               " bytes): not served",
               img->size, req->free_space);
        return;
    }
    /* ESP8266httpUpdate peeks the image header and refuses one whose flash size is larger
     * than the chip's real size (-107, HTTP_UE_BIN_FOR_WRONG_FLASH) before writing anything:
     * served, it would be refused at every check-in. */
    if (!fs && esp8266 && img->header_flash && req->has_chip_size &&
        img->header_flash > req->chip_size) {
        out->problem = true;
        decide(out, OTA_HTTP_NOT_MODIFIED,
               "image header declares a %" PRIu64 " KB flash, the board's chip has %" PRIu64
               " KB: the updater would refuse it (-107): build it for this flash size; not "
               "served",
               img->header_flash / 1024, req->chip_size / 1024);
        return;
    }
    out->image = img;
    out->record_served = true;
    if (did_not_take)
        decide(out, OTA_HTTP_SERVE,
               "serving %s again: the board still runs the sketch it had when it was served",
               nonempty(img->version) ? img->version : img->md5);
    else
        decide(out, OTA_HTTP_SERVE, "serving %s (board reports '%s')",
               nonempty(img->version) ? img->version : img->md5, req->version);
}

enum ota_http_userbin ota_http_userbin_from_uri(const char *uri)
{
    if (!uri)
        return OTA_HTTP_USERBIN_NONE;
    size_t n = strcspn(uri, "?#");
    const char *seg = uri;
    for (size_t i = 0; i < n; i++)
        if (uri[i] == '/')
            seg = uri + i + 1;
    size_t sl = (size_t)(uri + n - seg);
    if (sl == 9 && strncmp(seg, "user1.bin", 9) == 0)
        return OTA_HTTP_USERBIN_USER1;
    if (sl == 9 && strncmp(seg, "user2.bin", 9) == 0)
        return OTA_HTTP_USERBIN_USER2;
    return OTA_HTTP_USERBIN_NONE;
}

void ota_http_decide_plain(const struct ota_http_request *req, const struct ota_http_image *image,
                           struct ota_http_decision *out)
{
    memset(out, 0, sizeof(*out));
    out->style = OTA_HTTP_STYLE_SDK;
    if (strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0) {
        decide(out, OTA_HTTP_METHOD_NOT_ALLOWED, "method %s not allowed", req->method);
        return;
    }
    if (!image) {
        decide(out, OTA_HTTP_NOT_FOUND, "no firmware file at %s", req->uri);
        return;
    }
    out->image = image;
    out->record_served = strcmp(req->method, "GET") == 0;
    decide(out, OTA_HTTP_SERVE, "serving %s (%" PRIu64 " bytes) to a plain GET", req->uri,
           image->size);
}

/* ---- serializer ---------------------------------------------------------------- */

struct out {
    char *buf;
    size_t cap, len;
    bool overflow;
};

static void put(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(struct out *o, const char *fmt, ...)
{
    if (o->overflow)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(o->buf + o->len, o->cap - o->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= o->cap - o->len) {
        o->overflow = true;
        return;
    }
    o->len += (size_t)n;
}

static bool header_safe(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s == 0x7F)
            return false;
    return true;
}

int ota_http_format_response(const struct ota_http_decision *d, char *buf, size_t cap)
{
    static const char *const phrases[] = {
        [OTA_HTTP_SERVE] = "OK",
        [OTA_HTTP_NOT_MODIFIED] = "Not Modified",
        [OTA_HTTP_VERSION] = "OK",
        [OTA_HTTP_FORBIDDEN] = "Forbidden",
        [OTA_HTTP_NOT_FOUND] = "Not Found",
        [OTA_HTTP_BAD_REQUEST] = "Bad Request",
        [OTA_HTTP_METHOD_NOT_ALLOWED] = "Method Not Allowed",
    };
    if (!buf || cap == 0 || (unsigned)d->action >= OTA_HTTP_ACTION_COUNT)
        return -EINVAL;
    struct out o = {.buf = buf, .cap = cap};
    buf[0] = '\0';
    put(&o, "HTTP/1.0 %d %s\r\n", d->status, phrases[d->action]);
    char md5[33] = "";
    if (d->image && ota_is_hex(d->image->md5, 32)) {
        for (int i = 0; i < 32; i++)
            md5[i] = (char)tolower((unsigned char)d->image->md5[i]);
        md5[32] = '\0';
    }
    switch (d->action) {
    case OTA_HTTP_SERVE:
        if (!d->image)
            return -EINVAL;
        put(&o, "Content-Type: application/octet-stream\r\n");
        put(&o, "Content-Length: %" PRIu64 "\r\n", d->image->size);
        if (d->style == OTA_HTTP_STYLE_UPDATER && md5[0])
            put(&o, "x-MD5: %s\r\n", md5);
        put(&o, "Connection: close\r\n\r\n");
        break;
    case OTA_HTTP_VERSION:
        if (!d->image || !nonempty(d->image->version) || !header_safe(d->image->version))
            return -EINVAL;
        put(&o, "Content-Type: text/plain\r\nContent-Length: 0\r\n");
        put(&o, "x-version: %s\r\n", d->image->version);
        if (md5[0])
            put(&o, "x-MD5: %s\r\n", md5);
        put(&o, "Connection: close\r\n\r\n");
        break;
    case OTA_HTTP_NOT_MODIFIED:
        put(&o, "Connection: close\r\n\r\n");
        break;
    default: {
        /* Short text body: the reason, made printable. */
        char body[sizeof(d->reason) + 1];
        size_t n = 0;
        for (const char *p = d->reason; *p && n + 2 < sizeof(body); p++)
            body[n++] = ((unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7F) ? *p : '?';
        body[n++] = '\n';
        body[n] = '\0';
        put(&o, "Content-Type: text/plain\r\nContent-Length: %zu\r\n", n);
        put(&o, "Connection: close\r\n\r\n%s", body);
        break;
    }
    }
    if (o.overflow)
        return -ENOSPC;
    return (int)o.len;
}
