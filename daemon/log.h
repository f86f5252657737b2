/*
 * log: the daemon's one logging module. One line per event on stderr.
 *
 * Form: under systemd (JOURNAL_STREAM set, or stderr is not a terminal) each
 * line starts with a syslog priority prefix "<N>" that journald turns into the
 * entry's priority; on a terminal it starts with an ISO-8601 UTC timestamp and
 * the level name. Board-scoped lines carry "[slot A3 24:6f:28:7a:d8:84]".
 *
 *   <6>[slot A3 24:6f:28:7a:d8:84] sync ok after 2 tries
 *   2024-05-01T12:34:56.789Z info [slot A3 24:6f:28:7a:d8:84] sync ok after 2 tries
 *
 * Threads: safe from any thread; every line is formatted in a local buffer and
 * written with one write(2), so lines never interleave. The mode and level are
 * set once by log_init() before threads start.
 * Rule: a failure is logged once, where it is decided what to do about it.
 */
#ifndef ESPSTATION_LOG_H
#define ESPSTATION_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Values are syslog priorities (the "<N>" prefix). */
enum log_level {
    LOG_LEVEL_ERROR = 3,
    LOG_LEVEL_WARN = 4,
    LOG_LEVEL_NOTICE = 5,
    LOG_LEVEL_INFO = 6,
    LOG_LEVEL_DEBUG = 7,
};

const char *log_level_to_string(enum log_level level);
/* "error", "warn", "notice", "info", "debug"; -EINVAL for anything else. */
int log_level_from_string(const char *s);

enum log_mode {
    LOG_MODE_AUTO = 0, /* journal if JOURNAL_STREAM is set or stderr is not a tty */
    LOG_MODE_JOURNAL,  /* "<N>" prefix */
    LOG_MODE_TERMINAL, /* timestamp + level name */
};

/* Sets the mode and the most verbose level written (default LOG_LEVEL_INFO). */
void log_init(enum log_mode mode, enum log_level max_level);
bool log_enabled(enum log_level level);

/* "slot A3 24:6f:28:7a:d8:84", "slot A3", "24:6f:28:7a:d8:84" or "" into buf. Returns buf. */
char *log_scope(char *buf, size_t len, const char *slot, const char *mac);

/*
 * Formats one line (with '\n') into buf: prefix per mode (journal: "<N>";
 * terminal: the time now_ms as ISO-8601 UTC and the level), "[scope] " when
 * scope is not empty, then msg with control characters replaced by spaces.
 * Truncates to len. Returns the length written.
 */
size_t log_format(char *buf, size_t len, bool journal, int64_t now_ms, enum log_level level,
                  const char *scope, const char *msg);

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void log_board(enum log_level level, const char *slot, const char *mac, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void log_vboard(enum log_level level, const char *slot, const char *mac, const char *fmt,
                va_list ap) __attribute__((format(printf, 4, 0)));

#endif
