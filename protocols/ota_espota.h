/*
 * ota_espota: the ArduinoOTA push client, station side (PROTOCOL-OTA.md §1).
 *
 *   station                                  device
 *   UDP "<cmd> <P> <size> <md5>\n"   ->      UDP 8266 (ESP8266) / 3232 (ESP32)
 *                                    <-      "OK" | "AUTH <nonce>" | "ERR: ..."
 *   UDP "200 <cnonce> <response>\n"  ->      (only after AUTH)
 *                                    <-      "OK" | "Authentication Failed"
 *   TCP listen on P                  <-      connect from the device
 *   image bytes                      ->
 *                                    <-      glued decimal acks, then "OK" or an error text
 *
 * Auth scheme by the AUTH reply: 32-hex nonce (37-byte reply) = legacy MD5
 * digest; 64-hex nonce (69 bytes) = ESP32 core >= 3.3.1 PBKDF2-HMAC-SHA256,
 * where H = SHA-256(password) is tried first and, on "Authentication
 * Failed", MD5(password) after a fresh invitation (ota_espota_hash AUTO).
 *
 * Design: a step-able state machine. The caller polls the fds it reports
 * (ota_espota_poll_fds), then calls ota_espota_step; steps never block. The
 * blocking wrapper ota_espota_push does exactly that with a cancel fd, so a
 * daemon worker thread can run it. One instance = one session = one UDP
 * socket + one TCP listener; no globals. The image buffer is borrowed and
 * must outlive the instance.
 *
 * Counts ("acks"): the device writes a decimal count, with no separator,
 * each time its write call returns: an ESP32 after every read (<= 1460), an
 * ESP8266 when Update.write(client) returns, which it does only when the
 * stream runs dry or the image is complete, so a healthy push may get a
 * single count for the whole image ("300032"). Glued counts of any size
 * cannot be split exactly ("300032" may be 3000 + 32), so they are a hint and
 * a sign of life, never the outcome:
 *  - progress is the bytes that left the station's send queue (sent minus
 *    SIOCOUTQ: the device's TCP took them), never more than the image and
 *    never going back; the transfer socket's send buffer is kept small
 *    (sndbuf) so this tracks the device, not the kernel;
 *  - "stalled" is declared only when neither the counts nor those bytes
 *    moved for stall_timeout_ms;
 *  - success is the device's text "OK" (also glued to the last count,
 *    "392OK"), failure its error text (or a timeout / lost connection).
 * Count digits are split greedily under a bound, the bytes the device's TCP
 * had taken when they arrived: a count grows while the sum stays within the
 * bound its first digit came with (the device writes a count whole, after its
 * TCP took the bytes counted, so a small count followed later by a whole-rest
 * count, "1460" then "298572", is not read as 146029 + 8572), another digit
 * starts a new count, and a '0' that can do neither (a count never starts
 * with 0) takes the shortest tail of the growing count that still fits. The
 * sum never exceeds the bound, and any chunking of the stream gives the same
 * split for the same bound.
 */
#ifndef OTA_ESPOTA_H
#define OTA_ESPOTA_H

#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ota_common.h"

#define OTA_ESPOTA_PORT_ESP8266 8266
#define OTA_ESPOTA_PORT_ESP32 3232
#define OTA_ESPOTA_CMD_FLASH 0  /* U_FLASH: application */
#define OTA_ESPOTA_CMD_FS 100   /* U_FS / U_SPIFFS: filesystem image */
#define OTA_ESPOTA_CMD_AUTH 200 /* U_AUTH: the auth answer */
#define OTA_ESPOTA_PBKDF2_ROUNDS 10000
#define OTA_ESPOTA_COUNT_DIGITS 20 /* digits of the largest count held (UINT64_MAX) */
#define OTA_ESPOTA_SNDBUF 16384    /* default SO_SNDBUF of the transfer socket */

/* Which stored secret H to assume for the PBKDF2 scheme. */
enum ota_espota_hash {
    OTA_ESPOTA_HASH_AUTO = 0, /* SHA-256(pw), then MD5(pw) after "Authentication Failed" */
    OTA_ESPOTA_HASH_SHA256,
    OTA_ESPOTA_HASH_MD5,
};

struct ota_espota_config {
    enum ota_chip chip;    /* picks the default device port */
    const char *device_ip; /* IPv4 literal of the board */
    uint16_t device_port;  /* 0: 8266 (ESP8266) / 3232 (ESP32) */
    const char *local_ip;  /* bind address; NULL: the local address that routes to the board */
    uint16_t local_port;   /* TCP listen port; 0: ephemeral (production: a fixed, firewall-
                              opened port) */
    int command;           /* OTA_ESPOTA_CMD_FLASH or OTA_ESPOTA_CMD_FS */
    const char *password;  /* NULL or "": no auth */
    enum ota_espota_hash pbkdf2_hash;
    const char *filename;  /* used for the cnonce like espota; NULL: "firmware.bin" */
    int invite_attempts;   /* 0: 5 */
    int invite_timeout_ms; /* wait per invitation; 0: 2500 */
    int auth_timeout_ms;   /* wait for the auth verdict (PBKDF2 is slow on the device); 0: 10000 */
    int accept_timeout_ms; /* wait for the connect-back; 0: 10000 */
    int stall_timeout_ms;  /* neither counts nor delivered bytes moved; 0: 10000 */
    int result_timeout_ms; /* wait for OK once the device's TCP took the last byte; 0: 60000 */
    size_t chunk_size;     /* bytes per send; 0: 1460 */
    int sndbuf;            /* SO_SNDBUF of the transfer socket (the kernel doubles it);
                              0: OTA_ESPOTA_SNDBUF */
    ota_log_fn log;
    void *log_ctx;
};

enum ota_espota_state {
    OTA_ESPOTA_IDLE = 0,
    OTA_ESPOTA_INVITING,
    OTA_ESPOTA_AUTHENTICATING,
    OTA_ESPOTA_ACCEPTING,
    OTA_ESPOTA_SENDING,        /* the device's TCP has not taken every byte yet */
    OTA_ESPOTA_WAITING_RESULT, /* it has; waiting for "OK" or an error text */
    OTA_ESPOTA_DONE,
    OTA_ESPOTA_FAILED,
    OTA_ESPOTA_STATE_COUNT
};

const char *ota_espota_state_to_string(enum ota_espota_state state);

/* ---- parsers (pure; fuzzed) ---------------------------------------------------- */

enum ota_espota_reply_kind {
    OTA_ESPOTA_REPLY_UNKNOWN = 0,
    OTA_ESPOTA_REPLY_OK,          /* "OK" */
    OTA_ESPOTA_REPLY_AUTH,        /* "AUTH <32|64 hex>" */
    OTA_ESPOTA_REPLY_AUTH_FAILED, /* "Authentication Failed" */
    OTA_ESPOTA_REPLY_ERR,         /* "ERR: <text>" (ESP8266 Update.begin failure) */
    OTA_ESPOTA_REPLY_COUNT
};

const char *ota_espota_reply_kind_to_string(enum ota_espota_reply_kind kind);

struct ota_espota_reply {
    enum ota_espota_reply_kind kind;
    char nonce[65];   /* AUTH: the nonce */
    size_t nonce_len; /* 32 (MD5 scheme) or 64 (PBKDF2 scheme) */
    int device_code;  /* ERR: n of "ERROR[n]", else -1 */
    char text[128];   /* ERR: the text after "ERR: " (printable) */
};

/* Parses one UDP reply datagram. Never fails; unknown content gives REPLY_UNKNOWN. */
void ota_espota_parse_reply(const uint8_t *buf, size_t len, struct ota_espota_reply *out);

enum ota_espota_verdict {
    OTA_ESPOTA_VERDICT_NONE = 0, /* only acks so far */
    OTA_ESPOTA_VERDICT_OK,
    OTA_ESPOTA_VERDICT_ERROR, /* text complete (newline or full); see acks->text */
};

struct ota_espota_acks {
    uint64_t acked;                                  /* counts read as complete, summed; <= bound */
    uint8_t pending[OTA_ESPOTA_COUNT_DIGITS];        /* digits of the count still growing */
    uint64_t pending_bound[OTA_ESPOTA_COUNT_DIGITS]; /* the bound when each digit came */
    int pending_len;
    uint64_t ack_bytes; /* bytes of ack stream seen (liveness) */
    bool in_text;       /* a non-digit was seen: the rest is the verdict text */
    enum ota_espota_verdict verdict;
    char text[128];
    size_t text_len;
};

void ota_espota_acks_init(struct ota_espota_acks *a);

/*
 * Feeds TCP bytes from the device. bound: the bytes the device can have counted so far (the
 * station passes what its TCP has taken; never decreasing between calls). Returns the verdict so
 * far (NONE, OK, or ERROR once the error line is complete).
 */
enum ota_espota_verdict ota_espota_acks_feed(struct ota_espota_acks *a, const uint8_t *buf,
                                             size_t len, uint64_t bound);

/* End of stream: an unterminated error text becomes ERROR. Returns the verdict. */
enum ota_espota_verdict ota_espota_acks_finish(struct ota_espota_acks *a);

/* What the device's counts add up to, best reading (includes the growing count), <= bound. */
uint64_t ota_espota_acks_estimate(const struct ota_espota_acks *a, uint64_t bound);

/*
 * Maps a device error text (UDP "ERR: ..." or the TCP error line) to -errno
 * and advice: -ENOSPC not enough space, -EBADMSG MD5/signature, -EINVAL
 * wrong magic/header, -EIO anything else. *device_code gets n of ERROR[n] or -1.
 */
int ota_espota_classify_error(const char *text, int *device_code, const char **advice);

/* ---- auth (pure) ------------------------------------------------------------------ */

/* H for the legacy scheme: lowercase hex MD5 of the password. */
int ota_espota_secret_md5(const char *password, char out[33]);
/* H for the PBKDF2 scheme with SHA-256: lowercase hex SHA-256 of the password. */
int ota_espota_secret_sha256(const char *password, char out[65]);

/*
 * The response for a nonce: nonce_len 32 → MD5(H ":" nonce ":" cnonce);
 * nonce_len 64 → SHA-256(hex(PBKDF2-HMAC-SHA256(H, nonce ":" cnonce, 10000, 32))
 * ":" nonce ":" cnonce). out gets lowercase hex (33 or 65 bytes). 0 or -EINVAL/-EIO.
 */
int ota_espota_auth_response(const char *secret, const char *nonce, const char *cnonce, char *out,
                             size_t cap);

/* espota's cnonce: hex MD5 (len 32) or SHA-256 (len 64) of filename‖size‖md5‖ip. */
int ota_espota_cnonce(size_t len, const char *filename, uint64_t size, const char *md5,
                      const char *ip, char *out, size_t cap);

/* ---- session -------------------------------------------------------------------- */

struct ota_espota;

/* Validates cfg and computes the image MD5; NULL with *err on bad input. */
struct ota_espota *ota_espota_new(const struct ota_espota_config *cfg, const uint8_t *image,
                                  size_t len, struct ota_error *err);
void ota_espota_free(struct ota_espota *s);

/* Opens the UDP socket and TCP listener, sends the first invitation. */
int ota_espota_start(struct ota_espota *s, struct ota_error *err);

/*
 * Fills up to max pollfds (3 is always enough) and the poll timeout until the
 * next deadline. Returns the count. Pass the same array to poll, then call step.
 */
int ota_espota_poll_fds(const struct ota_espota *s, struct pollfd *fds, int max, int *timeout_ms);

/* Advances without blocking. 1 still running, 0 done (device said OK), < 0 failed (*err). */
int ota_espota_step(struct ota_espota *s, struct ota_error *err);

/* Aborts: closes sockets, state FAILED with -ECANCELED. */
void ota_espota_cancel(struct ota_espota *s, struct ota_error *err);

enum ota_espota_state ota_espota_get_state(const struct ota_espota *s);
uint16_t ota_espota_listen_port(const struct ota_espota *s);
/*
 * sent: bytes handed to the kernel; done: bytes the device's TCP took (sent minus SIOCOUTQ;
 * the whole image once the device said OK), never decreasing, <= total. Any pointer may be NULL.
 */
void ota_espota_get_progress(const struct ota_espota *s, uint64_t *sent, uint64_t *done,
                             uint64_t *total);

/*
 * Blocking push: start, poll/step until done, failure or cancel_fd readable
 * (-ECANCELED). progress (may be NULL) gets `done` of ota_espota_get_progress
 * each time it grows (never backwards, never past len).
 */
int ota_espota_push(const struct ota_espota_config *cfg, const uint8_t *image, size_t len,
                    ota_progress_fn progress, void *progress_ctx, int cancel_fd,
                    struct ota_error *err);

#endif
