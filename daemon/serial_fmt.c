/*
 * serial_fmt: see serial_fmt.h.
 */
#include "serial_fmt.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* The conversion of fmt: where it starts and ends (the conversion letter), or -EINVAL. */
static int find_conversion(const char *fmt, size_t *start, size_t *end, char *why, size_t whylen)
{
    size_t len = fmt ? strnlen(fmt, SERIAL_FMT_MAX) : 0;
    bool found = false;
    if (len == 0 || len >= SERIAL_FMT_MAX) {
        snprintf(why, whylen, "must be 1 to %d characters", SERIAL_FMT_MAX - 1);
        return -EINVAL;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)fmt[i];
        if (c < 0x20 || c > 0x7e) {
            snprintf(why, whylen, "printable ASCII only (byte 0x%02x at %zu)", c, i);
            return -EINVAL;
        }
        if (c != '%')
            continue;
        if (found) {
            snprintf(why, whylen,
                     "exactly one %% conversion (a second '%%' at %zu; no \"%%%%\" either)", i);
            return -EINVAL;
        }
        size_t j = i + 1, digits = 0;
        while (fmt[j] && strchr("-0#", fmt[j]))
            j++;
        while (fmt[j] >= '0' && fmt[j] <= '9' && digits < 3) {
            j++;
            digits++;
        }
        if (digits > 2) {
            snprintf(why, whylen, "width of at most 2 digits");
            return -EINVAL;
        }
        if (fmt[j] == '.') {
            j++;
            digits = 0;
            while (fmt[j] >= '0' && fmt[j] <= '9' && digits < 3) {
                j++;
                digits++;
            }
            if (digits == 0 || digits > 2) {
                snprintf(why, whylen, "precision of 1 or 2 digits after '.'");
                return -EINVAL;
            }
        }
        if (!fmt[j] || !strchr("uxXo", fmt[j])) {
            snprintf(why, whylen,
                     "the conversion at %zu must be %%u, %%x, %%X or %%o with optional flags "
                     "(-0#), width and precision, e.g. \"ESP-%%06u\"",
                     i);
            return -EINVAL;
        }
        found = true;
        *start = i;
        *end = j;
        i = j;
    }
    if (!found) {
        snprintf(why, whylen, "needs one %%u-family conversion for the number, e.g. \"ESP-%%06u\"");
        return -EINVAL;
    }
    return 0;
}

int serial_fmt_check(const char *fmt, char *why, size_t whylen)
{
    size_t s, e;
    char w[8];
    if (!why || !whylen) {
        why = w;
        whylen = sizeof(w);
    }
    why[0] = '\0';
    return find_conversion(fmt, &s, &e, why, whylen);
}

int serial_fmt_render(const char *fmt, uint64_t number, char *out, size_t out_len)
{
    size_t s, e;
    char why[8], conv[16], part[SERIAL_TEXT_MAX + 8];
    if (!out || !out_len)
        return -EINVAL;
    out[0] = '\0';
    if (find_conversion(fmt, &s, &e, why, sizeof(why)) < 0)
        return -EINVAL;
    /* The conversion with the length modifier of uint64_t: "%06" PRIu64 etc. */
    size_t cl = e - s; /* '%', flags, width, precision */
    if (cl + 4 > sizeof(conv))
        return -EINVAL;
    memcpy(conv, fmt + s, cl);
    const char *mod = fmt[e] == 'u'   ? PRIu64
                      : fmt[e] == 'x' ? PRIx64
                      : fmt[e] == 'X' ? PRIX64
                                      : PRIo64;
    snprintf(conv + cl, sizeof(conv) - cl, "%s", mod);
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
    int n = snprintf(part, sizeof(part), conv, number);
#pragma GCC diagnostic pop
    if (n < 0 || (size_t)n >= sizeof(part))
        return -ENAMETOOLONG;
    int total = snprintf(out, out_len, "%.*s%s%s", (int)s, fmt, part, fmt + e + 1);
    if (total < 0 || (size_t)total >= out_len) {
        out[0] = '\0';
        return -ENAMETOOLONG;
    }
    return 0;
}

int serial_pattern_expand(const char *pattern, const char *text, char *out, size_t out_len)
{
    static const char special[] = ".[]{}()\\*+?^$|";
    size_t o = 0, tl = strlen(SERIAL_TOKEN);
    int n = 0;
    if (!out || !out_len)
        return -ENAMETOOLONG;
    for (const char *p = pattern; *p;) {
        if (strncmp(p, SERIAL_TOKEN, tl) == 0) {
            for (const char *t = text; *t; t++) {
                if (strchr(special, *t)) {
                    if (o + 1 >= out_len)
                        goto too_long;
                    out[o++] = '\\';
                }
                if (o + 1 >= out_len)
                    goto too_long;
                out[o++] = *t;
            }
            p += tl;
            n++;
            continue;
        }
        if (o + 1 >= out_len)
            goto too_long;
        out[o++] = *p++;
    }
    out[o] = '\0';
    return n;
too_long:
    out[0] = '\0';
    return -ENAMETOOLONG;
}
