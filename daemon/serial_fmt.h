/*
 * serial_fmt: a profile's serial-number format ("serial": {"format": "ESP-%06u"}):
 * checking it, rendering a number with it, and putting a board's serial text into
 * a boot-check pattern ("{serial}"). Pure functions, no state.
 *
 * A format is printable ASCII, at most SERIAL_FMT_MAX - 1 characters, with exactly
 * one conversion: '%', optional flags from "-0#", an optional width (1..2 digits),
 * an optional precision ('.' and 1..2 digits), then one of u x X o. No other '%'
 * (not even "%%"), no length modifier: the number is always an unsigned 64-bit
 * value, so a format from the config can never read the wrong argument.
 */
#ifndef ESPSTATION_SERIAL_FMT_H
#define ESPSTATION_SERIAL_FMT_H

#include <stddef.h>
#include <stdint.h>

#define SERIAL_FMT_MAX 48  /* format, with its NUL */
#define SERIAL_TEXT_MAX 64 /* rendered text, with its NUL (records_serial) */
#define SERIAL_TOKEN "{serial}"

/* 0 when fmt is a valid format, else -EINVAL with why (a sentence, no key). */
int serial_fmt_check(const char *fmt, char *why, size_t whylen);

/* Renders number with fmt (checked here again) into out: 0, -EINVAL for a bad
 * format, -ENAMETOOLONG when the text needs out_len bytes or more. */
int serial_fmt_render(const char *fmt, uint64_t number, char *out, size_t out_len);

/* Copies pattern into out with every "{serial}" replaced by text, its regular
 * expression characters escaped (the serial matches itself literally): the
 * number of replacements, or -ENAMETOOLONG when out is too small. */
int serial_pattern_expand(const char *pattern, const char *text, char *out, size_t out_len);

#endif
