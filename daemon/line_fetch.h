/*
 * line_fetch: the small HTTP/1.1 client a station of the line fetches a firmware file
 * with from another station (GET <address>/api/v1/blobs/<sha256>, served by
 * web/api_blobs.c). Blocking, for a worker thread (line_fw.c): one request per
 * connection (Connection: close), the body length from Content-Length; every wait is
 * bounded (connect LINE_FETCH_CONNECT_MS, each send/recv LINE_FETCH_IO_S).
 *
 * The answer is input from the network: the head is at most LINE_FETCH_HEAD_MAX bytes,
 * the body must be exactly the size the line's manifest gives, and anything else is
 * an error naming the address. Thread-safe (no shared state).
 */
#ifndef ESPSTATION_LINE_FETCH_H
#define ESPSTATION_LINE_FETCH_H

#include <stddef.h>
#include <stdint.h>

#define LINE_FETCH_CONNECT_MS 5000
#define LINE_FETCH_IO_S 20
#define LINE_FETCH_HEAD_MAX 16384

/* Parses an HTTP/1.x response head (len bytes up to and including the blank line):
 * the status (100 to 599) and Content-Length (-1 when absent). 0; -EPROTO for a
 * malformed status line or Content-Length, or two different Content-Lengths;
 * -ENOTSUP for a Transfer-Encoding (a chunked body is not read by this client:
 * the station's own API never sends one). */
int line_fetch_parse_head(const char *head, size_t len, int *status, int64_t *content_length);

/* "http://host[:port][/prefix]" (host may be "[v6]") -> host, port ("80" by default),
 * prefix ("" or "/x", no trailing '/'). 0, -EPROTONOSUPPORT (not http://) or -EINVAL
 * (no host, a port that is not 1 to 5 digits up to 65535). */
int line_fetch_parse_url(const char *url, char *host, size_t hn, char *port, size_t pn,
                         char *prefix, size_t xn);

/*
 * Reads the answer to a request already sent on fd (a connected stream socket): the
 * head, then exactly expect (>= 0) body bytes into *out (malloc'd, the caller frees).
 * 0; or -EPROTO (no or a malformed head, closed early), -ENOTSUP (a Transfer-Encoding),
 * -ETIMEDOUT, -ENOENT (404),
 * -EACCES (401, 403), -EIO (another status, a broken transfer), -EBADMSG (a body of
 * another length), -ENOMEM, with err saying what, after "<what>: " or "<what> ".
 */
int line_fetch_read_answer(int fd, const char *what, int64_t expect, uint8_t **out, char *err,
                           size_t errlen);

/* GET <address>/api/v1/blobs/<sha> (with "Authorization: Bearer <token>" when token is
 * not NULL): its expect bytes into *out (malloc'd). 0, or -errno with err. */
int line_fetch_blob(const char *address, const char *sha, const char *token, int64_t expect,
                    uint8_t **out, char *err, size_t errlen);

#endif
