/*
 * records_journal_fmt: the codec of the records journal's file format
 * (records_journal.h): one CRC-checked, escaped, tab-separated line per entry.
 * Pure functions over memory: the store (records_journal.c), the unit tests
 * and the fuzz target use them.
 */
#include "records_journal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- format ------------------------------------------------------------------------- */

static uint32_t crc32_of(const char *p, size_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= (unsigned char)p[i];
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
    }
    return ~c;
}

uint32_t rj_crc32(const char *p, size_t n)
{
    return crc32_of(p, n);
}

char *rj_encode(const struct rj_entry *e, size_t *len)
{
    size_t cap = 64;
    char *out, *o;
    if (e->nf < 0 || e->nf > RJ_MAX_FIELDS)
        return NULL;
    for (int i = 0; i < e->nf; i++)
        cap += 3 + (e->f[i] ? 2 * strlen(e->f[i]) : 2);
    if (!(out = malloc(cap + 9)))
        return NULL;
    o = out + 9; /* "crc32 " first */
    o += sprintf(o, "%c\t%" PRId64 "\t%" PRId64, e->op, e->seq, e->ts);
    for (int i = 0; i < e->nf; i++) {
        *o++ = '\t';
        if (!e->f[i]) {
            *o++ = '\\';
            *o++ = 'N';
            continue;
        }
        for (const char *p = e->f[i]; *p; p++) {
            char c = *p;
            if (c == '\\' || c == '\t' || c == '\n' || c == '\r') {
                *o++ = '\\';
                c = c == '\\' ? '\\' : c == '\t' ? 't' : c == '\n' ? 'n' : 'r';
            }
            *o++ = c;
        }
    }
    uint32_t crc = crc32_of(out + 9, (size_t)(o - out - 9));
    char head[10];
    snprintf(head, sizeof(head), "%08" PRIx32 " ", crc);
    memcpy(out, head, 9);
    *o++ = '\n';
    *len = (size_t)(o - out);
    return out;
}

/* Decodes one payload (NUL-terminated copy in buf, modified) into e. */
static const char *decode(char *buf, struct rj_entry *e)
{
    char *fields[RJ_MAX_FIELDS + 3], *p = buf, *end;
    int n = 0;
    for (;;) {
        if (n == RJ_MAX_FIELDS + 3)
            return "too many fields";
        fields[n++] = p;
        p = strchr(p, '\t');
        if (!p)
            break;
        *p++ = '\0';
    }
    if (n < 3 || strlen(fields[0]) != 1 || fields[0][0] < 'A' || fields[0][0] > 'Z')
        return "no entry kind";
    e->op = fields[0][0];
    errno = 0;
    e->seq = strtoll(fields[1], &end, 10);
    if (errno || !*fields[1] || *end || e->seq < 1)
        return "bad sequence number";
    e->ts = strtoll(fields[2], &end, 10);
    if (errno || !*fields[2] || *end || e->ts < 0)
        return "bad time";
    e->nf = n - 3;
    for (int i = 0; i < e->nf; i++) {
        char *s = fields[i + 3], *w = s;
        if (strcmp(s, "\\N") == 0) {
            e->f[i] = NULL;
            continue;
        }
        for (char *q = s; *q; q++) {
            if (*q != '\\') {
                *w++ = *q;
                continue;
            }
            q++;
            if (*q == '\\' || *q == 't' || *q == 'n' || *q == 'r')
                *w++ = *q == '\\' ? '\\' : *q == 't' ? '\t' : *q == 'n' ? '\n' : '\r';
            else
                return "bad escape";
        }
        *w = '\0';
        e->f[i] = s;
    }
    return NULL;
}

int rj_parse(const char *buf, size_t len, int partial_ok, rj_entry_cb cb, void *ctx, size_t *good,
             char *msg, size_t msg_size)
{
    size_t pos = 0;
    int n = 0;
    char *line = NULL;
    const char *why = NULL;
    if (msg_size)
        msg[0] = '\0';
    *good = 0;
    while (pos < len) {
        const char *nl = memchr(buf + pos, '\n', len - pos);
        size_t ll = nl ? (size_t)(nl - (buf + pos)) : len - pos;
        struct rj_entry e;
        char *endp;
        if (!nl) {
            if (partial_ok && ll < RJ_LINE_MAX)
                break;
            snprintf(msg, msg_size,
                     "truncated last entry at byte %zu (%zu bytes without a line end: the "
                     "write was cut short)",
                     pos, ll);
            free(line);
            return -EBADMSG;
        }
        if (ll < 10 || ll > RJ_LINE_MAX || buf[pos + 8] != ' ') {
            why = ll > RJ_LINE_MAX ? "line too long" : "no checksum";
            goto bad;
        }
        char hex[9];
        memcpy(hex, buf + pos, 8);
        hex[8] = '\0';
        uint32_t want = (uint32_t)strtoul(hex, &endp, 16);
        if (*endp || crc32_of(buf + pos + 9, ll - 9) != want) {
            why = "checksum mismatch";
            goto bad;
        }
        free(line);
        if (!(line = strndup(buf + pos + 9, ll - 9))) {
            snprintf(msg, msg_size, "out of memory");
            return -ENOMEM;
        }
        if (memchr(buf + pos + 9, '\0', ll - 9)) {
            why = "NUL byte in entry";
            goto bad;
        }
        if ((why = decode(line, &e)))
            goto bad;
        if (cb && cb(&e, ctx))
            break;
        n++;
        pos += ll + 1;
        *good = pos;
    }
    free(line);
    return n;
bad:
    free(line);
    snprintf(msg, msg_size, "corrupt entry at byte %zu: %s", pos, why);
    return -EBADMSG;
}
