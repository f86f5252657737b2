/*
 * ota_http: station side of HTTP pull (PROTOCOL-OTA.md §2, §6). The device is
 * the HTTP client; the daemon owns the socket and the HTTP server. This module
 *   1. parses a request head (request line + headers, size-limited,
 *      case-insensitive names) into struct ota_http_request with the
 *      ESP8266httpUpdate / ESP32 HTTPUpdate fields;
 *   2. decides the answer (ota_http_decide for updater clients,
 *      ota_http_decide_plain for SDK clients doing a plain GET);
 *   3. serializes the response head (HTTP/1.0, exact Content-Length with one
 *      space, lowercase x-MD5, application/octet-stream, Connection: close,
 *      never chunked or content-encoded).
 * The body (the image bytes) is the caller's to send after the head; for
 * every response the caller closes the connection after the body.
 *
 * "Already up to date" is decided by the x-…-version header or by the
 * station's own record of what it served — never by x-…-sketch-md5, which is
 * not the file's MD5 (§2.1, issue esp8266/Arduino#2228). The sketch MD5 is
 * only used to notice that a served image did not take (the device still
 * reports the sketch it reported when the image was served).
 */
#ifndef OTA_HTTP_H
#define OTA_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ota_common.h"

#define OTA_HTTP_MAX_HEAD 8192 /* request heads longer than this are refused */
#define OTA_HTTP_MAX_HEADERS 64

enum ota_http_client {
    OTA_HTTP_CLIENT_OTHER = 0, /* anything else (browser, curl, SDK example) */
    OTA_HTTP_CLIENT_ESP8266,   /* User-Agent ESP8266-http-Update */
    OTA_HTTP_CLIENT_ESP32,     /* User-Agent ESP32-http-Update */
    OTA_HTTP_CLIENT_COUNT
};

const char *ota_http_client_to_string(enum ota_http_client client);

enum ota_http_mode {
    OTA_HTTP_MODE_NONE = 0, /* no x-…-mode header */
    OTA_HTTP_MODE_SKETCH,
    OTA_HTTP_MODE_SPIFFS,
    OTA_HTTP_MODE_VERSION, /* ESP8266 getAvailableVersion */
    OTA_HTTP_MODE_OTHER,
    OTA_HTTP_MODE_COUNT
};

const char *ota_http_mode_to_string(enum ota_http_mode mode);

struct ota_http_request {
    char method[8];  /* "GET", "HEAD", ... */
    char uri[256];   /* request target as sent */
    int http_minor;  /* 0 for HTTP/1.0, 1 for HTTP/1.1 */
    size_t head_len; /* bytes of the head including the empty line */

    enum ota_http_client client; /* from User-Agent */
    char user_agent[96];
    char host[128];
    bool connection_close;
    bool has_authorization;
    /* "Authorization: Basic ..." that decoded to user:password (HTTPUpdate /
     * ESP8266httpUpdate setAuthorization): user and password as sent. */
    bool has_basic_auth;
    char auth_user[65];
    char auth_password[129];
    bool has_range;
    bool has_content_length;
    uint64_t content_length;

    /* x-ESP8266-* / x-ESP32-* (the prefix must match the chip of the User-Agent
     * when that is an updater; otherwise either prefix is accepted). */
    bool has_chip_id;
    uint32_t chip_id; /* ESP8266 only, decimal */
    bool has_sta_mac;
    uint8_t sta_mac[6];
    bool has_ap_mac;
    uint8_t ap_mac[6];
    bool has_free_space;
    uint64_t free_space;
    bool has_sketch_size;
    uint64_t sketch_size;
    char sketch_md5[33];    /* "" when absent or malformed */
    char sketch_sha256[65]; /* ESP32, uppercase as sent; "" when absent */
    bool has_chip_size;
    uint64_t chip_size;
    char sdk_version[64];
    enum ota_http_mode mode;
    char version[64];          /* "" when absent (the device omits an empty version) */
    enum ota_chip header_chip; /* which prefix the x- headers used (valid if any seen) */
    bool has_esp_headers;
};

/*
 * Parses the head at buf[0..len). Returns the head length (> 0) when the head
 * is complete, 0 when more bytes are needed (len < OTA_HTTP_MAX_HEAD), or
 * -EMSGSIZE (head too large / too many headers) or -EPROTO (malformed request
 * line or header, bad version) with *err filled. Lines may end in CRLF or LF.
 * Malformed values of the x- headers are not fatal: the field stays unset.
 */
int ota_http_parse_request(const char *buf, size_t len, struct ota_http_request *req,
                           struct ota_error *err);

/* "AA:BB:CC:DD:EE:FF" (either case) -> 6 bytes. 0 or -EINVAL. */
int ota_http_parse_mac(const char *s, uint8_t mac[6]);

/* The firmware the station wants a board to run. */
struct ota_http_image {
    const char *version; /* version string the firmware reports (may be NULL/"") */
    const char *md5;     /* lowercase hex MD5 of the file served (32 chars) */
    uint64_t size;       /* exact file size */
    bool gzip;           /* ESP8266 gzip image (ESP32 clients must not get it) */
    /* ESP8266 0xE9 image: the flash size its header declares (ota_image_esp8266_flash_size),
     * 0 unknown; an ESP8266 whose x-ESP8266-chip-size is smaller refuses it (-107). */
    uint64_t header_flash;
    /* NULL, or the MD5s of the image with its flash-mode byte set to 0..3
     * (ota_image_mode_md5): an ESP8266 running it reports one of them as its sketch MD5. */
    const char (*mode_md5)[33];
};

/* What the station knows about the requesting board (all optional). */
struct ota_http_board {
    bool known;                             /* MAC found in the records */
    const struct ota_http_image *target;    /* NULL: no target firmware */
    const struct ota_http_image *fs_target; /* for x-…-mode: spiffs; NULL: none */
    const char *served_md5;             /* MD5 of the last image served with a full 200, or NULL */
    const char *served_version;         /* its version, or NULL */
    const char *served_from_sketch_md5; /* sketch MD5 the board reported when it was served */
};

enum ota_http_unknown_policy {
    OTA_HTTP_UNKNOWN_REFUSE = 0, /* unknown MAC: 404 */
    OTA_HTTP_UNKNOWN_ENROL,      /* unknown MAC: enrol and answer as for a known board */
};

struct ota_http_policy {
    bool strict; /* 403 unless the request comes from the ESP updater (UA + STA MAC) */
    enum ota_http_unknown_policy unknown;
};

enum ota_http_action {
    OTA_HTTP_SERVE = 0,          /* 200 + image body */
    OTA_HTTP_NOT_MODIFIED,       /* 304 */
    OTA_HTTP_VERSION,            /* 200 + x-version, no body */
    OTA_HTTP_FORBIDDEN,          /* 403 */
    OTA_HTTP_NOT_FOUND,          /* 404 */
    OTA_HTTP_BAD_REQUEST,        /* 400 */
    OTA_HTTP_METHOD_NOT_ALLOWED, /* 405 */
    OTA_HTTP_ACTION_COUNT
};

const char *ota_http_action_to_string(enum ota_http_action action);

enum ota_http_style {
    OTA_HTTP_STYLE_UPDATER = 0, /* ESP8266httpUpdate / ESP32 HTTPUpdate */
    OTA_HTTP_STYLE_SDK,         /* plain GET from SDK example code: no x- headers */
};

struct ota_http_decision {
    enum ota_http_action action;
    int status; /* HTTP status code */
    enum ota_http_style style;
    const struct ota_http_image *image; /* SERVE / VERSION: what to send (points into input) */
    bool enrol;         /* unknown MAC and policy ENROL: the caller creates the record */
    bool record_served; /* SERVE: on a fully sent body, record image as served */
    bool problem;       /* the station should flag the board (e.g. image too large) */
    char reason[160];   /* one line for the log / record */
};

/*
 * Decides the answer to an updater request (already parsed). board may be
 * NULL for an unknown MAC. Never fails: a request the station cannot use gets
 * 400/403/404 with a reason.
 */
void ota_http_decide(const struct ota_http_request *req, const struct ota_http_board *board,
                     const struct ota_http_policy *policy, struct ota_http_decision *out);

/* user1/user2 file name in a request URI (NONOS system_upgrade_start clients). */
enum ota_http_userbin {
    OTA_HTTP_USERBIN_NONE = 0,
    OTA_HTTP_USERBIN_USER1,
    OTA_HTTP_USERBIN_USER2,
};

/* Looks at the last path segment of uri (query ignored): "user1.bin" / "user2.bin". */
enum ota_http_userbin ota_http_userbin_from_uri(const char *uri);

/*
 * Plain GET of a firmware file by SDK example code (§6). image is the file
 * the caller resolved from the URI (for NONOS user1/user2 layouts: the half
 * named by ota_http_userbin_from_uri, which is the slot the device is NOT
 * running; for the RTOS 1 MB example: the whole app1‖app2 file); NULL → 404.
 * Answers HEAD/GET only.
 */
void ota_http_decide_plain(const struct ota_http_request *req, const struct ota_http_image *image,
                           struct ota_http_decision *out);

/*
 * Writes the response head for a decision into buf (NUL-terminated). For
 * statuses without an image (304/403/404/400/405) the short text body is
 * included and Content-Length covers it (304: none). Returns the number of
 * bytes to send (head, plus that text body), or -ENOSPC if cap is too small.
 * After a SERVE head the caller sends exactly image->size bytes, then closes.
 */
int ota_http_format_response(const struct ota_http_decision *d, char *buf, size_t cap);

#endif
