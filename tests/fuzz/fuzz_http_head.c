/*
 * fuzz_http_head: the REST listener's head scanner (web/http_head.c, http_head_end) on
 * whatever a client sends before its head is complete, as the listener sees it: the
 * same stream peeked again each time more of it arrived.
 *
 * Input: byte 0 seeds the growth steps, the rest is the stream. Aborts if the scanner
 * breaks an invariant: a head longer than the bytes it was given, a head that does not
 * end in LF LF or LF CR LF, a line count above the LFs seen, a head found in a prefix
 * that a longer prefix of the same stream no longer finds (or finds with another
 * length), or a line count that goes down as the stream grows.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "web_priv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond)
{
    if (!cond)
        abort();
}

static size_t count_lf(const char *buf, size_t n)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        c += buf[i] == '\n';
    return c;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned seed = data[0];
    const char *buf = (const char *)data + 1;
    size_t n = size - 1;
    size_t found = 0, prev_lines = 0;
    for (size_t have = 0;;) {
        size_t lines = 0;
        size_t end = http_head_end(buf, have, &lines);
        check(end <= have);
        check(lines <= count_lf(buf, have));
        if (found) {
            check(end == found); /* a head, once complete, stays the same head */
        } else if (end) {
            check(end >= 2 && buf[end - 1] == '\n');
            check(buf[end - 2] == '\n' ||
                  (end >= 3 && buf[end - 2] == '\r' && buf[end - 3] == '\n'));
            found = end;
        }
        if (!found) {
            check(lines >= prev_lines);
            prev_lines = lines;
        }
        if (have == n)
            break;
        seed = seed * 1103515245u + 12345u;
        size_t step = 1 + (seed >> 16) % 97;
        have = have + step > n ? n : have + step;
    }
    return 0;
}
