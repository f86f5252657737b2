/*
 * line_fetch.c: the HTTP/1.1 GET a station fetches a firmware file from another
 * station of the line with (line_fetch.h). The other end is our own REST API
 * (web/api_blobs.c); the socket timeouts bound every wait of the worker thread.
 */
#include "line_fetch.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

/* The header line [line, line + ll) is name ':' ...: the value after the colon. */
static const char *header_value(const char *line, size_t ll, const char *name)
{
    size_t nl = strlen(name);
    if (ll <= nl || strncasecmp(line, name, nl) != 0 || line[nl] != ':')
        return NULL;
    return line + nl + 1;
}

int line_fetch_parse_head(const char *head, size_t len, int *status, int64_t *content_length)
{
    *status = 0;
    *content_length = -1;
    /* "HTTP/1.x NNN" then a reason phrase or the line's end; NNN is 100 to 599 */
    if (len < 12 || memcmp(head, "HTTP/1.", 7) != 0 || !isdigit((unsigned char)head[7]) ||
        head[8] != ' ' || head[9] < '1' || head[9] > '5' || !isdigit((unsigned char)head[10]) ||
        !isdigit((unsigned char)head[11]) ||
        (len > 12 && head[12] != ' ' && head[12] != '\r' && head[12] != '\n'))
        return -EPROTO;
    *status = (head[9] - '0') * 100 + (head[10] - '0') * 10 + (head[11] - '0');
    const char *p = memchr(head, '\n', len), *end = head + len;
    while (p && p + 1 < end) {
        const char *line = p + 1, *v;
        p = memchr(line, '\n', (size_t)(end - line));
        size_t ll = (size_t)((p ? p : end) - line);
        const char *ve = line + ll;
        if (header_value(line, ll, "transfer-encoding"))
            return -ENOTSUP; /* a chunked (or otherwise coded) body: not read here */
        if (!(v = header_value(line, ll, "content-length")))
            continue;
        while (v < ve && (*v == ' ' || *v == '\t'))
            v++;
        int64_t x = 0;
        bool any = false;
        while (v < ve && isdigit((unsigned char)*v) && x < INT64_MAX / 10 - 10) {
            x = x * 10 + (*v++ - '0');
            any = true;
        }
        while (v < ve && (*v == ' ' || *v == '\t' || *v == '\r'))
            v++;
        /* two different lengths: which body is meant is anyone's guess (RFC 9112 6.3) */
        if (!any || v != ve || (*content_length >= 0 && *content_length != x))
            return -EPROTO;
        *content_length = x;
    }
    return 0;
}

int line_fetch_parse_url(const char *url, char *host, size_t hn, char *port, size_t pn,
                         char *prefix, size_t xn)
{
    if (strncmp(url, "http://", 7) != 0)
        return -EPROTONOSUPPORT;
    const char *h = url + 7, *slash = strchr(h, '/');
    size_t hl = slash ? (size_t)(slash - h) : strlen(h);
    if (hl == 0 || hl >= hn)
        return -EINVAL;
    char hp[300];
    snprintf(hp, sizeof(hp), "%.*s", (int)hl, h);
    char *colon = hp[0] == '[' ? strstr(hp, "]:") : strrchr(hp, ':');
    if (hp[0] == '[') {
        char *rb = strchr(hp, ']');
        if (!rb || (rb[1] != '\0' && rb[1] != ':'))
            return -EINVAL;
        *rb = '\0';
        snprintf(host, hn, "%s", hp + 1);
        snprintf(port, pn, "%s", colon ? colon + 2 : "80");
    } else {
        if (colon)
            *colon = '\0';
        snprintf(host, hn, "%s", hp);
        snprintf(port, pn, "%s", colon ? colon + 1 : "80");
    }
    size_t dl = strspn(port, "0123456789");
    if (!host[0] || dl == 0 || dl > 5 || port[dl] != '\0' || atoi(port) > 65535)
        return -EINVAL; /* "http://:80", "http://[]", "http://h:", "http://h:x" */
    snprintf(prefix, xn, "%s", slash ? slash : "");
    size_t pl = strlen(prefix);
    while (pl > 0 && prefix[pl - 1] == '/')
        prefix[--pl] = '\0';
    return 0;
}

static int connect_to(const char *host, const char *port)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
    int rc = getaddrinfo(host, port, &hints, &ai);
    if (rc != 0)
        return -EHOSTUNREACH;
    int fd = -1, err = -ECONNREFUSED;
    for (struct addrinfo *a = ai; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol);
        if (fd < 0) {
            err = -errno;
            continue;
        }
        if (connect(fd, a->ai_addr, a->ai_addrlen) < 0 && errno != EINPROGRESS) {
            err = -errno;
            close(fd);
            fd = -1;
            continue;
        }
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        int so = 0;
        socklen_t sl = sizeof(so);
        int pr = poll(&p, 1, LINE_FETCH_CONNECT_MS);
        if (pr <= 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &so, &sl) < 0 || so != 0) {
            err = pr == 0 ? -ETIMEDOUT : so ? -so : -errno;
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(ai);
    if (fd < 0)
        return err;
    int fl = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    struct timeval tv = {.tv_sec = LINE_FETCH_IO_S};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    return fd;
}

int line_fetch_read_answer(int fd, const char *what, int64_t expect, uint8_t **out, char *err,
                           size_t errlen)
{
    char *head = malloc(LINE_FETCH_HEAD_MAX);
    uint8_t *body = NULL;
    size_t hl = 0, got = 0;
    char *end = NULL;
    int rc = -EPROTO;
    while (head && hl < LINE_FETCH_HEAD_MAX - 1) {
        ssize_t r = recv(fd, head + hl, LINE_FETCH_HEAD_MAX - 1 - hl, 0);
        if (r <= 0) {
            snprintf(err, errlen, "%s: %s", what,
                     r == 0 ? "connection closed before the answer"
                     : (errno == EAGAIN || errno == EWOULDBLOCK) ? "no answer (timed out)"
                                                                 : strerror(errno));
            rc = r == 0 ? -EPROTO : -ETIMEDOUT;
            goto out;
        }
        hl += (size_t)r;
        head[hl] = '\0';
        if ((end = strstr(head, "\r\n\r\n")))
            break;
    }
    if (!end) {
        snprintf(err, errlen, "%s: no HTTP answer", what);
        goto out;
    }
    int status;
    int64_t clen;
    size_t head_len = (size_t)(end + 4 - head);
    rc = line_fetch_parse_head(head, head_len, &status, &clen);
    if (rc < 0) {
        snprintf(err, errlen, "%s: %s", what,
                 rc == -ENOTSUP ? "answered with a Transfer-Encoding (chunked?): this client reads "
                                  "a body of a Content-Length only"
                                : "not an HTTP answer (or two different Content-Lengths)");
        goto out;
    }
    if (status != 200) {
        snprintf(err, errlen, "%s answered %d", what, status);
        rc = status == 404 ? -ENOENT : status == 401 || status == 403 ? -EACCES : -EIO;
        goto out;
    }
    if (clen != expect) {
        snprintf(err, errlen, "%s sent %lld bytes, the manifest says %lld", what, (long long)clen,
                 (long long)expect);
        rc = -EBADMSG;
        goto out;
    }
    body = malloc((size_t)expect + 1);
    if (!body) {
        rc = -ENOMEM;
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    got = hl - head_len;
    if (got > (size_t)expect)
        got = (size_t)expect;
    memcpy(body, head + head_len, got);
    while (got < (size_t)expect) {
        ssize_t r = recv(fd, body + got, (size_t)expect - got, 0);
        if (r <= 0) {
            snprintf(err, errlen, "%s: the transfer broke after %zu of %lld bytes", what, got,
                     (long long)expect);
            rc = -EIO;
            goto out;
        }
        got += (size_t)r;
    }
    *out = body;
    body = NULL;
    rc = 0;
out:
    free(body);
    free(head);
    return rc;
}

int line_fetch_blob(const char *address, const char *sha, const char *token, int64_t expect,
                    uint8_t **out, char *err, size_t errlen)
{
    char host[256], port[16], prefix[256];
    int rc = line_fetch_parse_url(address, host, sizeof(host), port, sizeof(port), prefix,
                                  sizeof(prefix));
    if (rc < 0) {
        snprintf(err, errlen, "address %s is not an http:// URL", address);
        return rc;
    }
    int fd = connect_to(host, port);
    if (fd < 0) {
        snprintf(err, errlen, "cannot connect to %s: %s", address, strerror(-fd));
        return fd;
    }
    char req[1024];
    bool v6 = strchr(host, ':') != NULL;
    int n =
        snprintf(req, sizeof(req),
                 "GET %s/api/v1/blobs/%s HTTP/1.1\r\nHost: %s%s%s:%s\r\n%s%s%s"
                 "Connection: close\r\nAccept: application/octet-stream\r\n\r\n",
                 prefix, sha, v6 ? "[" : "", host, v6 ? "]" : "", port,
                 token ? "Authorization: Bearer " : "", token ? token : "", token ? "\r\n" : "");
    if (n < 0 || (size_t)n >= sizeof(req) || send(fd, req, (size_t)n, MSG_NOSIGNAL) != n) {
        snprintf(err, errlen, "cannot send the request to %s", address);
        close(fd);
        return -EIO;
    }
    rc = line_fetch_read_answer(fd, address, expect, out, err, errlen);
    close(fd);
    return rc;
}
