/*
 * records_journal_state: the journal's state file (records_journal.h has the
 * format). It lets a station start while its database is unreachable: it says
 * which database this data directory last worked with (its identity, address
 * and schema version), as which station, and which job ids are reserved for
 * this station and not yet used. A damaged file is never half-trusted: it is
 * refused whole (CRC), and the station then needs the database to start.
 */
#include "records_journal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define RJ_STATE_MAX (1024 * 1024) /* a larger file is not a state file */

struct sbuf {
    char *p;
    size_t len, cap;
    bool oom;
};

static void put(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(struct sbuf *b, const char *fmt, ...)
{
    va_list ap;
    int n;
    if (b->oom)
        return;
    for (;;) {
        va_start(ap, fmt);
        n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n >= 0 && (size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        char *q = n < 0 ? NULL : realloc(b->p, b->cap * 2 + (size_t)n);
        if (!q) {
            b->oom = true;
            return;
        }
        b->p = q;
        b->cap = b->cap * 2 + (size_t)n;
    }
}

static bool one_line(const char *v)
{
    return !strpbrk(v, "\n\r");
}

int rj_state_write(const char *path, const struct rj_state *s, char *msg, size_t msg_size)
{
    struct sbuf b = {.p = malloc(4096), .cap = 4096};
    char tmp[PATH_MAX];
    int fd, ret = 0;
    if (!b.p) {
        snprintf(msg, msg_size, "out of memory");
        return -ENOMEM;
    }
    if (!one_line(s->station) || !one_line(s->dsn) || !one_line(s->identity)) {
        free(b.p);
        snprintf(msg, msg_size, "a state field holds a line break");
        return -EINVAL;
    }
    put(&b, "%sstation %s\ndsn %s\ndatabase %s\nschema %d\nids", RJ_STATE_HEADER, s->station,
        s->dsn, s->identity, s->schema);
    /* Runs of consecutive ids as a-b (nextval hands them out mostly in order). */
    for (int i = 0; i < s->n_ids;) {
        int j = i;
        while (j + 1 < s->n_ids && s->ids[j + 1] == s->ids[j] + 1)
            j++;
        put(&b, " %" PRId64 "-%" PRId64, s->ids[i], s->ids[j]);
        i = j + 1;
    }
    put(&b, "\n");
    if (!b.oom)
        put(&b, "crc %08" PRIx32 "\n", rj_crc32(b.p, b.len));
    if (b.oom) {
        free(b.p);
        snprintf(msg, msg_size, "out of memory");
        return -ENOMEM;
    }
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        ret = -errno;
    } else {
        size_t off = 0;
        while (off < b.len && ret == 0) {
            ssize_t w = write(fd, b.p + off, b.len - off);
            if (w < 0 && errno != EINTR)
                ret = -errno;
            else if (w > 0)
                off += (size_t)w;
        }
        if (ret == 0 && fsync(fd) < 0)
            ret = -errno;
        close(fd);
        if (ret == 0 && rename(tmp, path) < 0)
            ret = -errno;
        if (ret < 0)
            unlink(tmp);
    }
    free(b.p);
    if (ret == 0) { /* the rename itself durable */
        char dir[PATH_MAX];
        snprintf(dir, sizeof(dir), "%s", path);
        char *slash = strrchr(dir, '/');
        if (slash)
            *(slash == dir ? slash + 1 : slash) = '\0';
        else
            snprintf(dir, sizeof(dir), ".");
        int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            if (fsync(dfd) < 0) {
            }
            close(dfd);
        }
        return 0;
    }
    snprintf(msg, msg_size, "cannot write %s: %s", path, strerror(-ret));
    return ret;
}

static int bad(char *msg, size_t n, const char *path, const char *why)
{
    snprintf(msg, n, "%s is damaged or not a records state file (%s)", path, why);
    return -EBADMSG;
}

/* The value of "key value\n" at *p (advanced past the line), or NULL. */
static char *field(char **p, const char *key)
{
    size_t kl = strlen(key);
    char *nl = strchr(*p, '\n'), *v;
    if (!nl || strncmp(*p, key, kl) != 0 || ((*p)[kl] != ' ' && (*p)[kl] != '\n'))
        return NULL;
    *nl = '\0';
    v = *p + kl + ((*p)[kl] == ' ');
    *p = nl + 1;
    return v;
}

static bool copy(char *dst, const char *v)
{
    if (!v || strlen(v) >= RJ_STATE_TEXT)
        return false;
    memcpy(dst, v, strlen(v) + 1);
    return true;
}

static int parse_ids(char *v, struct rj_state *s)
{
    char *tok, *save = NULL;
    s->n_ids = 0;
    for (tok = strtok_r(v, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
        char *end;
        errno = 0;
        long long a = strtoll(tok, &end, 10), b;
        if (errno || end == tok || *end != '-' || a <= 0)
            return -EBADMSG;
        tok = end + 1;
        b = strtoll(tok, &end, 10);
        if (errno || end == tok || *end || b < a)
            return -EBADMSG;
        /* a..b inclusive, without i++ past b (b may be LLONG_MAX: found by
         * fuzz_records_journal_state) */
        for (long long i = a;; i++) {
            if (s->n_ids >= s->max_ids)
                return -EBADMSG;
            s->ids[s->n_ids++] = i;
            if (i == b)
                break;
        }
    }
    return 0;
}

int rj_state_read(const char *path, struct rj_state *s, char *msg, size_t msg_size)
{
    struct stat sb;
    char *buf, *p, *v, *crc_at, *end;
    int fd = open(path, O_RDONLY | O_CLOEXEC), ret;
    size_t hl = strlen(RJ_STATE_HEADER);
    if (fd < 0) {
        ret = -errno;
        snprintf(msg, msg_size, "cannot read %s: %s", path, strerror(errno));
        return ret;
    }
    if (fstat(fd, &sb) < 0 || sb.st_size > RJ_STATE_MAX) {
        close(fd);
        return bad(msg, msg_size, path, "too large");
    }
    if (!(buf = malloc((size_t)sb.st_size + 1))) {
        close(fd);
        snprintf(msg, msg_size, "out of memory");
        return -ENOMEM;
    }
    ssize_t got = pread(fd, buf, (size_t)sb.st_size, 0);
    close(fd);
    if (got != sb.st_size) {
        free(buf);
        snprintf(msg, msg_size, "cannot read %s", path);
        return -EIO;
    }
    buf[got] = '\0';
    ret = 0;
    if ((size_t)got < hl || memcmp(buf, RJ_STATE_HEADER, hl) != 0 || memchr(buf, '\0', (size_t)got))
        ret = bad(msg, msg_size, path, "no 'espstation-records-state 1' header");
    /* The CRC covers everything before its own line. */
    crc_at = ret ? NULL : strstr(buf, "\ncrc ");
    if (!ret && !crc_at)
        ret = bad(msg, msg_size, path, "no checksum: cut short");
    if (!ret) {
        uint32_t want = (uint32_t)strtoul(crc_at + 5, &end, 16);
        if (end != crc_at + 13 || strcmp(end, "\n") != 0)
            ret = bad(msg, msg_size, path, "checksum line malformed or text after it");
        else if (rj_crc32(buf, (size_t)(crc_at + 1 - buf)) != want)
            ret = bad(msg, msg_size, path, "checksum mismatch");
    }
    if (!ret) {
        crc_at[1] = '\0';
        p = buf + hl;
        if (!copy(s->station, field(&p, "station")) || !copy(s->dsn, field(&p, "dsn")) ||
            !copy(s->identity, field(&p, "database")) || !(v = field(&p, "schema")))
            ret = bad(msg, msg_size, path, "a field is missing");
        else {
            s->schema = (int)strtol(v, &end, 10);
            if (*end || s->schema <= 0)
                ret = bad(msg, msg_size, path, "bad schema version");
            else if (!(v = field(&p, "ids")) || parse_ids(v, s) < 0 || *p)
                ret = bad(msg, msg_size, path, "bad job id list");
        }
    }
    free(buf);
    return ret;
}
