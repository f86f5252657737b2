/*
 * log: see log.h. The only mutable state is the mode and level, written once
 * by log_init() before any thread starts and read-only afterwards.
 */
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static bool log_journal = true;
static enum log_level log_max = LOG_LEVEL_INFO;

const char *log_level_to_string(enum log_level level)
{
    switch (level) {
    case LOG_LEVEL_ERROR:
        return "error";
    case LOG_LEVEL_WARN:
        return "warn";
    case LOG_LEVEL_NOTICE:
        return "notice";
    case LOG_LEVEL_INFO:
        return "info";
    case LOG_LEVEL_DEBUG:
        return "debug";
    }
    return "unknown";
}

int log_level_from_string(const char *s)
{
    static const enum log_level all[] = {LOG_LEVEL_ERROR, LOG_LEVEL_WARN, LOG_LEVEL_NOTICE,
                                         LOG_LEVEL_INFO, LOG_LEVEL_DEBUG};
    for (size_t i = 0; s && i < sizeof(all) / sizeof(all[0]); i++)
        if (strcmp(s, log_level_to_string(all[i])) == 0)
            return (int)all[i];
    return -EINVAL;
}

void log_init(enum log_mode mode, enum log_level max_level)
{
    if (mode == LOG_MODE_AUTO) {
        const char *js = getenv("JOURNAL_STREAM");
        log_journal = (js && *js) || isatty(STDERR_FILENO) != 1;
    } else {
        log_journal = mode == LOG_MODE_JOURNAL;
    }
    log_max = max_level;
}

bool log_enabled(enum log_level level)
{
    return level <= log_max;
}

char *log_scope(char *buf, size_t len, const char *slot, const char *mac)
{
    bool hs = slot && *slot, hm = mac && *mac;
    if (hs && hm)
        snprintf(buf, len, "slot %s %s", slot, mac);
    else if (hs)
        snprintf(buf, len, "slot %s", slot);
    else
        snprintf(buf, len, "%s", hm ? mac : "");
    return buf;
}

/* Length of the valid UTF-8 sequence starting at p (2..4), 1 for ASCII or an invalid byte. */
static size_t log_utf8_len(const unsigned char *p)
{
    size_t n = (p[0] & 0xE0) == 0xC0   ? 2
               : (p[0] & 0xF0) == 0xE0 ? 3
               : (p[0] & 0xF8) == 0xF0 ? 4
                                       : 1;
    if (n == 2 && p[0] < 0xC2)
        return 1;
    for (size_t i = 1; i < n; i++)
        if ((p[i] & 0xC0) != 0x80)
            return 1;
    return n;
}

size_t log_format(char *buf, size_t len, bool journal, int64_t now_ms, enum log_level level,
                  const char *scope, const char *msg)
{
    if (len == 0)
        return 0;
    int n;
    if (journal) {
        n = snprintf(buf, len, "<%d>", (int)level);
    } else {
        time_t secs = (time_t)(now_ms / 1000);
        struct tm tm;
        gmtime_r(&secs, &tm);
        char ts[32];
        strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
        n = snprintf(buf, len, "%s.%03dZ %s ", ts, (int)(now_ms % 1000),
                     log_level_to_string(level));
    }
    size_t pos = n < 0 ? 0 : (size_t)n;
    if (pos >= len)
        pos = len - 1;
    if (scope && *scope) {
        n = snprintf(buf + pos, len - pos, "[%s] ", scope);
        pos += n < 0 ? 0 : (size_t)n;
        if (pos >= len)
            pos = len - 1;
    }
    /* The message, one line: control characters (a device's CR/LF, tabs) become spaces and
     * bytes that are not valid UTF-8 (a boot banner at the wrong baud) become '?', so the
     * journal and every JSON consumer get clean text. */
    const unsigned char *p = (const unsigned char *)(msg ? msg : "");
    while (*p && pos + 2 < len) {
        size_t seq = log_utf8_len(p);
        if (seq > 1 && pos + seq + 1 < len) {
            memcpy(buf + pos, p, seq);
            pos += seq;
            p += seq;
            continue;
        }
        buf[pos++] = (*p < 0x20 || *p == 0x7f) ? ' ' : (*p >= 0x80 ? '?' : (char)*p);
        p++;
    }
    while (pos > 0 && buf[pos - 1] == ' ')
        pos--;
    buf[pos++] = '\n';
    buf[pos] = '\0';
    return pos;
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void log_vboard(enum log_level level, const char *slot, const char *mac, const char *fmt,
                va_list ap)
{
    if (!log_enabled(level))
        return;
    char msg[1024], scope[160], line[1300];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    log_scope(scope, sizeof(scope), slot, mac);
    size_t n = log_format(line, sizeof(line), log_journal, wall_ms(), level, scope, msg);
    const char *p = line;
    while (n > 0) {
        ssize_t w = write(STDERR_FILENO, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break; /* nowhere to report a broken stderr */
        p += w;
        n -= (size_t)w;
    }
}

void log_board(enum log_level level, const char *slot, const char *mac, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vboard(level, slot, mac, fmt, ap);
    va_end(ap);
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vboard(level, NULL, NULL, fmt, ap);
    va_end(ap);
}
