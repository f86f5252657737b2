/*
 * fuzz_records_journal: the records journal's parser (records_journal.h) on
 * whatever a damaged file could hold: a line cut short by a crash, flipped
 * bits, garbage after a power loss. Aborts if the parser breaks an invariant:
 * the good part it reports is longer than the input or does not end on a line
 * end, it delivers more entries than lines, a field is longer than a line,
 * an entry it accepts does not encode back to a line it parses to the
 * same entry, or a chunked parse (partial_ok) disagrees with the whole one.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "records_journal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond)
{
    if (!cond)
        abort();
}

struct ctx {
    int n;
    size_t lines;
};

static int same_cb(const struct rj_entry *e, void *arg)
{
    const struct rj_entry *want = arg;
    check(e->op == want->op && e->seq == want->seq && e->ts == want->ts && e->nf == want->nf);
    for (int i = 0; i < e->nf; i++) {
        check(!e->f[i] == !want->f[i]);
        check(!e->f[i] || strcmp(e->f[i], want->f[i]) == 0);
    }
    return 0;
}

static int entry_cb(const struct rj_entry *e, void *arg)
{
    struct ctx *c = arg;
    c->n++;
    check(e->nf >= 0 && e->nf <= RJ_MAX_FIELDS && e->seq >= 1 && e->ts >= 0);
    for (int i = 0; i < e->nf; i++)
        check(!e->f[i] || strlen(e->f[i]) < RJ_LINE_MAX);
    /* Round trip: its encoding parses to the same entry. */
    size_t len, good;
    char msg[160], *line = rj_encode(e, &len);
    check(line != NULL);
    check(rj_parse(line, len, 0, same_cb, (void *)e, &good, msg, sizeof(msg)) == 1);
    check(good == len);
    free(line);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    struct ctx c = {0, 0};
    size_t good = 0, good2 = 0;
    char msg[160];
    for (size_t i = 0; i < size; i++)
        c.lines += data[i] == '\n';
    int n = rj_parse(buf, size, 0, entry_cb, &c, &good, msg, sizeof(msg));
    check(n == -EBADMSG || n == c.n);
    check(n != -EBADMSG || msg[0]);
    check((size_t)c.n <= c.lines && good <= size);
    check(good == 0 || buf[good - 1] == '\n');
    check(n < 0 || good == size);
    /* In chunks: the same entries, stopping at a partial line without error. */
    struct ctx c2 = {0, 0};
    int n2 = rj_parse(buf, size, 1, NULL, &c2, &good2, msg, sizeof(msg));
    check(n2 == -EBADMSG || (size_t)n2 <= c.lines);
    if (n >= 0)
        check(n2 == n && good2 == good);
    return 0;
}
