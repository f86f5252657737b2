/*
 * mdns: ArduinoOTA discovery through avahi-browse (see mdns.h).
 */
#include "mdns.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "loop.h"
#include "ota_priv.h"
#include "records.h"
#include "station.h"

extern char **environ;

#define MDNS_TIMEOUT_MS 15000
#define MDNS_MAX_OUTPUT (1024 * 1024)
#define MDNS_FIRST_RUN_MS 1000

/* ---- parser --------------------------------------------------------------------------- */

/* Splits off the next ';'-separated field of [*p, end) into out (escapes undone:
 * "\DDD" decimal, "\X" = X). Returns false when the field does not fit. */
static bool next_field(const char **p, const char *end, char *out, size_t outlen, bool *last)
{
    size_t n = 0;
    const char *s = *p;
    bool ok = true;
    while (s < end && *s != ';') {
        unsigned char ch = (unsigned char)*s;
        if (ch == '\\' && s + 1 < end) {
            if (s + 3 < end && isdigit((unsigned char)s[1]) && isdigit((unsigned char)s[2]) &&
                isdigit((unsigned char)s[3])) {
                int v = (s[1] - '0') * 100 + (s[2] - '0') * 10 + (s[3] - '0');
                if (v > 255)
                    ok = false;
                ch = (unsigned char)v;
                s += 4;
            } else {
                ch = (unsigned char)s[1];
                s += 2;
            }
        } else {
            s++;
        }
        if (ch == '\0' || n + 1 >= outlen)
            ok = false;
        else
            out[n++] = (char)ch;
    }
    out[n] = '\0';
    *last = s >= end;
    *p = s < end ? s + 1 : s;
    return ok;
}

/* The next TXT string of [*p, end): avahi-browse prints each one in double
 * quotes with '"' and '\\' backslash-escaped and bytes outside printable ASCII
 * as "\DDD" (decimal); ';' is not escaped. Unescaped into out (truncated to
 * outlen - 1; *nul set when it held a NUL byte). Returns false when no string
 * is left. */
static bool next_txt(const char **p, const char *end, char *out, size_t outlen, bool *nul)
{
    const char *s = *p;
    while (s < end && *s != '"')
        s++;
    if (s >= end) {
        *p = s;
        return false;
    }
    s++;
    size_t n = 0;
    *nul = false;
    while (s < end && *s != '"') {
        unsigned char ch = (unsigned char)*s;
        if (ch == '\\' && s + 1 < end) {
            if (s + 3 < end && isdigit((unsigned char)s[1]) && isdigit((unsigned char)s[2]) &&
                isdigit((unsigned char)s[3])) {
                int v = (s[1] - '0') * 100 + (s[2] - '0') * 10 + (s[3] - '0');
                ch = (unsigned char)(v > 255 ? 0 : v);
                s += 4;
            } else {
                ch = (unsigned char)s[1];
                s += 2;
            }
        } else {
            s++;
        }
        if (ch == '\0')
            *nul = true;
        else if (n + 1 < outlen)
            out[n++] = (char)ch;
    }
    out[n] = '\0';
    *p = s < end ? s + 1 : s;
    return true;
}

/* TXT part: "k=v" "k=v" ... (avahi quotes and escapes each string). board= is
 * kept without one pair of surrounding quotes (the ESP8266 core advertises
 * board="ESP8266_GENERIC" with them); a string holding a NUL is ignored. */
static void parse_txt(const char *s, const char *end, struct mdns_record *out)
{
    char txt[MDNS_BOARD_LEN + 16];
    bool nul = false;
    while (next_txt(&s, end, txt, sizeof(txt), &nul)) {
        if (nul)
            continue;
        if (strncmp(txt, "board=", 6) == 0) {
            const char *v = txt + 6;
            size_t vl = strlen(v);
            if (vl >= 2 && v[0] == '"' && v[vl - 1] == '"') {
                v++;
                vl -= 2;
            }
            if (vl >= sizeof(out->board))
                vl = sizeof(out->board) - 1;
            memcpy(out->board, v, vl);
            out->board[vl] = '\0';
        } else if (strncmp(txt, "auth_upload=", 12) == 0) {
            out->auth_upload = strcmp(txt + 12, "yes") == 0 ? 1 : 0;
        }
    }
}

int mdns_parse_line(const char *line, size_t len, struct mdns_record *out)
{
    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
        len--;
    memset(out, 0, sizeof(*out));
    out->auth_upload = -1;
    if (len == 0 || line[0] == '+' || line[0] == '-')
        return 0;
    if (line[0] != '=' || len < 2 || line[1] != ';')
        return -EINVAL;
    const char *p = line + 2, *end = line + len;
    char proto[16], type[64], domain[MDNS_NAME_LEN], port[16];
    bool last = false;
    if (!next_field(&p, end, out->iface, sizeof(out->iface), &last) || last ||
        !next_field(&p, end, proto, sizeof(proto), &last) || last ||
        !next_field(&p, end, out->name, sizeof(out->name), &last) || last ||
        !next_field(&p, end, type, sizeof(type), &last) || last ||
        !next_field(&p, end, domain, sizeof(domain), &last) || last ||
        !next_field(&p, end, out->host, sizeof(out->host), &last) || last ||
        !next_field(&p, end, out->address, sizeof(out->address), &last) || last ||
        !next_field(&p, end, port, sizeof(port), &last))
        return -EINVAL;
    if (strcmp(proto, "IPv4") == 0)
        out->ipv6 = false;
    else if (strcmp(proto, "IPv6") == 0)
        out->ipv6 = true;
    else
        return -EINVAL;
    if (!out->name[0] || !out->host[0] || !out->address[0] || !port[0])
        return -EINVAL;
    char *e = NULL;
    errno = 0;
    long v = strtol(port, &e, 10);
    if (errno || !e || *e || v < 0 || v > 65535 || !isdigit((unsigned char)port[0]))
        return -EINVAL;
    out->port = (int)v;
    for (const char *a = out->address; *a; a++)
        if (!isxdigit((unsigned char)*a) && *a != '.' && *a != ':' && *a != '%')
            return -EINVAL;
    if (!last)
        parse_txt(p, end, out);
    return 1;
}

/* ---- hostname -> MAC ------------------------------------------------------------------ */

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)tolower((unsigned char)c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

int mdns_mac_tail(const char *hostname, uint8_t tail[6])
{
    if (!hostname)
        return 0;
    size_t n = strcspn(hostname, ".");
    size_t skip, want;
    if (n >= 8 && strncasecmp(hostname, "esp8266-", 8) == 0) {
        skip = 8;
        want = 3;
    } else if (n >= 6 && strncasecmp(hostname, "esp32-", 6) == 0) {
        skip = 6;
        want = 6;
    } else {
        return 0;
    }
    if (n - skip != want * 2)
        return 0;
    for (size_t i = 0; i < want; i++) {
        int hi = hexval(hostname[skip + 2 * i]), lo = hexval(hostname[skip + 2 * i + 1]);
        if (hi < 0 || lo < 0)
            return 0;
        tail[i] = (uint8_t)(hi << 4 | lo);
    }
    return (int)want;
}

static bool parse_mac(const char *s, uint8_t mac[6])
{
    for (int i = 0; i < 6; i++) {
        int hi = hexval(s[0]), lo = hi >= 0 ? hexval(s[1]) : -1;
        if (hi < 0 || lo < 0)
            return false;
        mac[i] = (uint8_t)(hi << 4 | lo);
        s += 2;
        if (i < 5) {
            if (*s != ':' && *s != '-')
                return false;
            s++;
        }
    }
    return *s == '\0';
}

int mdns_match(const uint8_t *tail, int n_tail, const char *const *macs, size_t n_macs)
{
    if (n_tail < 1 || n_tail > 6)
        return -1;
    int found = -1;
    for (size_t i = 0; i < n_macs; i++) {
        uint8_t m[6];
        if (!macs[i] || !parse_mac(macs[i], m))
            continue;
        if (memcmp(m + 6 - n_tail, tail, (size_t)n_tail) != 0)
            continue;
        if (found >= 0)
            return -2;
        found = (int)i;
    }
    return found;
}

/* ---- runner --------------------------------------------------------------------------- */

struct mdns {
    struct ota *o;
    struct loop *loop;
    char path[4096];
    struct loop_timer *period;
    struct loop_timer *poll;
    pid_t pid;
    int fd;
    bool eof;
    int64_t started;
    char *buf;
    size_t len;
    int last_status; /* -1 none yet, else the exit status of the previous run */
};

static bool find_on_path(const char *prog, char *out, size_t outlen)
{
    const char *path = getenv("PATH");
    if (!path || !*path)
        path = "/usr/local/bin:/usr/bin:/bin";
    while (*path) {
        size_t n = strcspn(path, ":");
        if (n > 0 && n + strlen(prog) + 2 <= outlen) {
            snprintf(out, outlen, "%.*s/%s", (int)n, path, prog);
            if (access(out, X_OK) == 0)
                return true;
        }
        path += n;
        if (*path == ':')
            path++;
    }
    return false;
}

struct board_list {
    char (*macs)[RECORDS_MAC_LEN];
    size_t n, cap;
};

static int collect_board(const struct records_board *b, void *ctx)
{
    struct board_list *l = ctx;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        void *p = realloc(l->macs, cap * sizeof(*l->macs));
        if (!p)
            return -1;
        l->macs = p;
        l->cap = cap;
    }
    snprintf(l->macs[l->n++], RECORDS_MAC_LEN, "%s", b->mac);
    return 0;
}

static void handle_output(struct mdns *m)
{
    struct board_list bl = {0};
    records_board_list(station_records(m->o->st), NULL, collect_board, &bl, NULL);
    const char **macs = calloc(bl.n ? bl.n : 1, sizeof(*macs));
    if (!macs) {
        free(bl.macs);
        return;
    }
    for (size_t i = 0; i < bl.n; i++)
        macs[i] = bl.macs[i];
    size_t off = 0;
    while (off < m->len) {
        const char *line = m->buf + off;
        const char *nl = memchr(line, '\n', m->len - off);
        size_t ll = nl ? (size_t)(nl - line) : m->len - off;
        off += ll + 1;
        struct mdns_record r;
        if (mdns_parse_line(line, ll, &r) != 1 || r.ipv6)
            continue;
        uint8_t tail[6];
        int nt = mdns_mac_tail(r.host, tail);
        if (nt == 0)
            nt = mdns_mac_tail(r.name, tail);
        if (nt == 0)
            continue;
        int idx = mdns_match(tail, nt, macs, bl.n);
        if (idx == -2) {
            log_msg(LOG_LEVEL_INFO, "mDNS: %s at %s matches several boards, ignored", r.host,
                    r.address);
            continue;
        }
        if (idx < 0)
            continue;
        ota_seen_mdns(m->o, macs[idx], r.address, r.port, r.auth_upload);
    }
    free(macs);
    free(bl.macs);
}

static void close_pipe(struct mdns *m)
{
    if (m->fd >= 0) {
        loop_del_fd(m->loop, m->fd);
        close(m->fd);
        m->fd = -1;
    }
}

static void finish(struct mdns *m, int status)
{
    loop_timer_disarm(m->poll);
    close_pipe(m);
    m->pid = -1;
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (code == 0)
        handle_output(m);
    if (code != m->last_status) {
        if (code != 0)
            log_msg(LOG_LEVEL_INFO,
                    "mDNS discovery: avahi-browse failed (status %d; is avahi-daemon running?), "
                    "retrying every interval",
                    code);
        else if (m->last_status > 0)
            log_msg(LOG_LEVEL_INFO, "mDNS discovery: avahi-browse works again");
        m->last_status = code;
    }
    free(m->buf);
    m->buf = NULL;
    m->len = 0;
}

static void on_poll(void *ctx)
{
    struct mdns *m = ctx;
    if (m->pid <= 0)
        return;
    int status = 0;
    pid_t r = waitpid(m->pid, &status, WNOHANG);
    if (r == m->pid) {
        if (m->fd >= 0 && !m->eof) {
            /* drain what is left */
            char tmp[4096];
            ssize_t n;
            while ((n = read(m->fd, tmp, sizeof(tmp))) > 0 &&
                   m->len + (size_t)n <= MDNS_MAX_OUTPUT) {
                char *b = realloc(m->buf, m->len + (size_t)n);
                if (!b)
                    break;
                memcpy(b + m->len, tmp, (size_t)n);
                m->buf = b;
                m->len += (size_t)n;
            }
        }
        finish(m, status);
        return;
    }
    if (r < 0) {
        finish(m, 127 << 8);
        return;
    }
    if (loop_now_ms() - m->started > MDNS_TIMEOUT_MS) {
        kill(m->pid, SIGKILL);
        if (waitpid(m->pid, &status, 0) == m->pid) {
            free(m->buf);
            m->buf = NULL;
            m->len = 0;
            finish(m, 124 << 8); /* timeout: output discarded */
        }
    }
}

static void on_read(void *ctx, int fd, uint32_t events)
{
    struct mdns *m = ctx;
    (void)events;
    char tmp[4096];
    for (;;) {
        ssize_t n = read(fd, tmp, sizeof(tmp));
        if (n > 0) {
            if (m->len + (size_t)n > MDNS_MAX_OUTPUT)
                continue; /* too much: drop the rest */
            char *b = realloc(m->buf, m->len + (size_t)n);
            if (!b)
                continue;
            memcpy(b + m->len, tmp, (size_t)n);
            m->buf = b;
            m->len += (size_t)n;
            continue;
        }
        if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
            m->eof = true;
            close_pipe(m);
            on_poll(m); /* reap at once when it already exited */
        }
        return;
    }
}

static void on_period(void *ctx)
{
    struct mdns *m = ctx;
    if (m->pid > 0 || m->o->stopping)
        return;
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0)
        return;
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&at);
    posix_spawn_file_actions_adddup2(&fa, p[1], 1);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setsigdefault(&at, &all);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    static char a_parsable[] = "--parsable", a_resolve[] = "--resolve",
                a_terminate[] = "--terminate", a_type[] = "_arduino._tcp";
    char *argv[] = {m->path, a_parsable, a_resolve, a_terminate, a_type, NULL};
    pid_t pid;
    int rc = posix_spawn(&pid, m->path, &fa, &at, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    close(p[1]);
    if (rc != 0) {
        close(p[0]);
        if (m->last_status != 127)
            log_msg(LOG_LEVEL_INFO, "mDNS discovery: cannot run %s: %s", m->path, strerror(rc));
        m->last_status = 127;
        return;
    }
    fcntl(p[0], F_SETFL, O_NONBLOCK);
    m->pid = pid;
    m->fd = p[0];
    m->eof = false;
    m->started = loop_now_ms();
    if (loop_add_fd(m->loop, m->fd, EPOLLIN, on_read, m) < 0) {
        close(m->fd);
        m->fd = -1;
        m->eof = true;
    }
    loop_timer_arm(m->poll, 250, 250);
}

struct mdns *mdns_start(struct ota *o, int interval_s)
{
    if (interval_s <= 0)
        return NULL;
    char path[4096];
    if (!find_on_path("avahi-browse", path, sizeof(path))) {
        log_msg(LOG_LEVEL_INFO, "mDNS discovery off: avahi-browse not found (install avahi-utils "
                                "and run avahi-daemon to find ArduinoOTA boards)");
        return NULL;
    }
    struct mdns *m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    m->o = o;
    m->loop = o->loop;
    m->pid = -1;
    m->fd = -1;
    m->last_status = -1;
    snprintf(m->path, sizeof(m->path), "%s", path);
    m->period = loop_timer_new(o->loop, on_period, m);
    m->poll = loop_timer_new(o->loop, on_poll, m);
    if (!m->period || !m->poll ||
        loop_timer_arm(m->period, MDNS_FIRST_RUN_MS, (int64_t)interval_s * 1000) < 0) {
        mdns_free(m);
        return NULL;
    }
    log_msg(LOG_LEVEL_INFO, "mDNS discovery of ArduinoOTA boards via %s every %d s", path,
            interval_s);
    return m;
}

void mdns_free(struct mdns *m)
{
    if (!m)
        return;
    close_pipe(m);
    if (m->pid > 0) {
        kill(m->pid, SIGKILL);
        waitpid(m->pid, NULL, 0);
    }
    loop_timer_free(m->period);
    loop_timer_free(m->poll);
    free(m->buf);
    free(m);
}
