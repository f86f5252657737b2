/*
 * ota_tls: TLS (OpenSSL's libssl) for the station's servers.
 *
 *  - tls_load_pair(): a certificate and key file pair read and checked the way a
 *    server would use it: both readable, a PEM certificate (then any intermediate CA
 *    certificates) in one, an unencrypted PEM private key in the other, and the key
 *    the certificate's. Every refusal is one line naming the config key, the file
 *    and what to do. The REST API (web/http.c, libmicrohttpd with GnuTLS) checks its
 *    pair with it and hands the bytes to libmicrohttpd; the OTA endpoint builds its
 *    context from it.
 *  - The OTA endpoint's server context (ota_tls_new) and its per-connection layer:
 *    non-blocking handshake, recv and send that say which readiness (EPOLLIN or
 *    EPOLLOUT) they wait for, so the single-threaded endpoint never blocks on a
 *    client that stalls mid-handshake.
 *
 * Invariants:
 *  - TLS 1.2 and 1.3 only (the ESP32 and ESP8266 cores' TLS stacks speak 1.2), no
 *    renegotiation, no TLS 1.3 session tickets (nothing is written after the
 *    handshake that the client did not ask for).
 *  - A connection holds its own reference to the context it was accepted with: a
 *    reload (ota_tls_free of the old context) never pulls it from under a transfer.
 */
#ifndef ESPSTATION_OTA_TLS_H
#define ESPSTATION_OTA_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

/* The files of a pair, read and checked: cert_pem and key_pem are their bytes
 * (NUL-terminated, malloc'd); info is one line for the log (subject, validity, SHA-1
 * fingerprint); warn, when not empty, is a warning for the log (an expired
 * certificate, a key file other users can read). */
struct tls_pair {
    char *cert_pem;
    char *key_pem;
    char info[400];
    char warn[400];
    char sha1[60];       /* "AA:BB:...": ESP8266 WiFiClientSecure::setFingerprint */
    char subject[160];   /* "/CN=..." of the server certificate */
    char until[64];      /* its not-after, as text ("Jun  1 12:00:00 2026 GMT") */
    int64_t not_after_s; /* its not-after, seconds since the epoch (/metrics) */
};

/* What a pair's file was when it was read (device, inode, size, modification time;
 * stat() follows a symlink, so a certbot-style live/ link moved to a new archive/ file
 * counts as a change): a reload with the same paths and stamps has nothing to do. */
struct tls_file_id {
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
};
void tls_file_id_of(const char *path, struct tls_file_id *id); /* zeroes when absent */
bool tls_file_id_eq(const struct tls_file_id *a, const struct tls_file_id *b);

/* Reads and checks cert and key (paths from the config key what, e.g. "ota.tls"). 0, or
 * -errno / -EINVAL with one line in err naming the file and what to do; *out is then
 * empty. */
int tls_load_pair(const char *what, const char *cert, const char *key, struct tls_pair *out,
                  char *err, size_t errlen);
void tls_pair_free(struct tls_pair *p);

struct ota_tls;
struct ota_tls_conn;

/* A server context from the pair's files (tls_load_pair, then libssl). 0 or -errno with
 * err; *out holds the pair's info line for the log (ota_tls_info). */
int ota_tls_new(const char *what, const char *cert, const char *key, struct ota_tls **out,
                char *err, size_t errlen);
void ota_tls_free(struct ota_tls *t);
const char *ota_tls_info(const struct ota_tls *t);
/* t was made from these paths and neither file changed since (device, inode, size,
 * modification time): a reload has nothing to do. */
bool ota_tls_unchanged(const struct ota_tls *t, const char *cert, const char *key);
const char *ota_tls_warning(const struct ota_tls *t); /* "" when none */
/* The certificate's subject, not-after (text, and seconds since the epoch; 0 for NULL). */
const char *ota_tls_subject(const struct ota_tls *t);
const char *ota_tls_until(const struct ota_tls *t);
int64_t ota_tls_not_after(const struct ota_tls *t);

/* A TLS layer over an accepted, non-blocking socket (not owned: the caller closes
 * it). NULL when out of memory. */
struct ota_tls_conn *ota_tls_conn_new(struct ota_tls *t, int fd);
void ota_tls_conn_free(struct ota_tls_conn *tc);
bool ota_tls_conn_ready(const struct ota_tls_conn *tc); /* the handshake is done */

/* The handshake's next step: 1 done, 0 wait for *events (EPOLLIN or EPOLLOUT), -1
 * failed with one line in why (what the client did, in the operator's words). */
int ota_tls_handshake(struct ota_tls_conn *tc, uint32_t *events, char *why, size_t whylen);

/* recv() and send() over the connection: > 0 bytes; 0 the client ended the stream
 * (recv); -1 with errno EAGAIN (wait for *events, then call again with the same
 * arguments) or ECONNRESET (a TLS error or a reset). */
ssize_t ota_tls_recv(struct ota_tls_conn *tc, void *buf, size_t len, uint32_t *events);
ssize_t ota_tls_send(struct ota_tls_conn *tc, const void *buf, size_t len, uint32_t *events);

/* Sends the close_notify alert once, without waiting (best effort). Not after a
 * served image: the body is delimited by Content-Length, and an alert the board
 * never reads makes lwIP reset the connection instead of closing it. */
void ota_tls_close_notify(struct ota_tls_conn *tc);

/* A failed handshake from ip: counted; logged as a warning at once and then at most
 * once a minute with the count since (a board without the CA, an http:// URL, a
 * scanner). */
void ota_tls_note_failure(struct ota_tls *t, const char *ip, const char *why);

#endif
