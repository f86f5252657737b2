/*
 * fuzz_line_fetch: the line's firmware fetch client (daemon/line_fetch.c) on what
 * another station -- or anything at its address -- answers. Input: one byte of flags,
 * then the bytes the "server" sends before closing the connection:
 *   - line_fetch_parse_head on the stream up to its first blank line;
 *   - line_fetch_read_answer over a socketpair, expecting the head's Content-Length
 *     (flags & 1) or (flags >> 1) bytes; flags & 0x80 appends 20 KiB of header lines
 *     (an oversized head);
 *   - line_fetch_parse_url on the stream as a C string.
 * Aborts if an answer is accepted whose body is not the bytes after the head, whose
 * head carries a Transfer-Encoding (the client reads no chunked body) or two
 * different Content-Lengths, or whose length is not the one expected.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "line_fetch.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond)
{
    if (!cond)
        abort();
}

/* The head's header lines named name (case-insensitive): how many, and whether their
 * values (digits only, as the client accepts them) differ. */
static int count_header(const char *head, size_t len, const char *name, int *values_differ)
{
    size_t nl = strlen(name);
    int n = 0;
    long long first = -1;
    *values_differ = 0;
    for (const char *p = head; p && p < head + len;) {
        const char *e = memchr(p, '\n', (size_t)(head + len - p));
        size_t ll = (size_t)((e ? e : head + len) - p);
        if (ll > nl && strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            long long v = strtoll(p + nl + 1, NULL, 10);
            if (n++ && v != first)
                *values_differ = 1;
            first = v;
        }
        p = e ? e + 1 : NULL;
    }
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t flags = data[0];
    data++;
    size--;

    /* the stream the server sends */
    size_t extra = (flags & 0x80) ? 20 * 1024 : 0;
    char *stream = malloc(size + extra + 1);
    check(stream != NULL);
    memcpy(stream, data, size);
    for (size_t i = 0; i < extra; i += 16)
        memcpy(stream + size + i, "X-Pad: aaaaaaa\r\n", 16);
    size_t slen = size + extra;
    stream[slen] = '\0';

    const char *blank = memmem(stream, slen, "\r\n\r\n", 4);
    size_t head_len = blank ? (size_t)(blank + 4 - stream) : 0;
    int status = -1;
    int64_t clen = -2;
    if (blank) {
        int rc = line_fetch_parse_head(stream, head_len, &status, &clen);
        check(rc == 0 || rc == -EPROTO || rc == -ENOTSUP);
        if (rc == 0)
            check(status >= 100 && status <= 999 && clen >= -1);
    }

    int64_t expect = (flags & 1) && clen >= 0 && clen <= 1 << 20 ? clen : (int64_t)(flags >> 1);
    int sv[2];
    if (slen <= 65536 && socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0) {
        int buf = 1 << 20;
        setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
        size_t off = 0;
        while (off < slen) {
            ssize_t w = send(sv[0], stream + off, slen - off, MSG_NOSIGNAL);
            check(w > 0);
            off += (size_t)w;
        }
        shutdown(sv[0], SHUT_WR);
        uint8_t *body = NULL;
        char err[300] = "";
        int rc = line_fetch_read_answer(sv[1], "http://peer", expect, &body, err, sizeof(err));
        if (rc == 0) {
            int differ;
            check(body != NULL && blank && head_len <= LINE_FETCH_HEAD_MAX - 1);
            check(status == 200 && clen == expect);
            check(slen - head_len >= (size_t)expect);
            check(memcmp(body, stream + head_len, (size_t)expect) == 0);
            check(count_header(stream, head_len, "transfer-encoding", &differ) == 0);
            check(count_header(stream, head_len, "content-length", &differ) >= 1 && !differ);
            free(body);
        } else {
            check(body == NULL && err[0] != '\0' && strlen(err) < sizeof(err));
        }
        close(sv[0]);
        close(sv[1]);
    }

    char host[256], port[16], prefix[256];
    if (line_fetch_parse_url(stream, host, sizeof(host), port, sizeof(port), prefix,
                             sizeof(prefix)) == 0) {
        check(host[0] != '\0' && strlen(host) < sizeof(host) && strlen(port) < sizeof(port));
        check(!prefix[0] || (prefix[0] == '/' && prefix[strlen(prefix) - 1] != '/'));
    }
    free(stream);
    return 0;
}
