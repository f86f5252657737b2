/*
 * session: the signal pipe, the port and the loader context of one run.
 *
 * SIGINT/SIGTERM write one byte to a pipe whose read end is the transport's
 * cancel_fd, so a blocked engine call returns -ECANCELED promptly; the
 * handlers are one-shot (SA_RESETHAND), so a second Ctrl-C kills at once.
 * The write end of that pipe is the program's only global: a signal handler
 * has nowhere else to find it.
 * A session owns its transport and loader; cli_session_close() frees both
 * on every path.
 */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "esp_stub.h"

static int sig_pipe_wr = -1;

struct cli_signals {
    struct sigaction old_int;
    struct sigaction old_term;
    struct sigaction old_pipe;
};

static void on_signal(int sig)
{
    (void)sig;
    int saved = errno;
    if (sig_pipe_wr >= 0) {
        if (write(sig_pipe_wr, "!", 1) < 0) {
            /* pipe full: a cancel is already pending */
        }
    }
    errno = saved;
}

int cli_signals_install(struct cli_signals **saved)
{
    *saved = NULL;
    struct cli_signals *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    int fds[2];
    if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) {
        int e = errno;
        free(s);
        return -e;
    }
    sig_pipe_wr = fds[1];

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESETHAND | SA_RESTART;
    sigaction(SIGINT, &sa, &s->old_int);
    sigaction(SIGTERM, &sa, &s->old_term);

    /* A closed stdout pipe or TCP peer must give EPIPE, not kill us silently. */
    struct sigaction ign;
    memset(&ign, 0, sizeof(ign));
    ign.sa_handler = SIG_IGN;
    sigemptyset(&ign.sa_mask);
    sigaction(SIGPIPE, &ign, &s->old_pipe);

    *saved = s;
    return fds[0];
}

void cli_signals_restore(struct cli_signals *saved, int read_fd)
{
    if (saved) {
        sigaction(SIGINT, &saved->old_int, NULL);
        sigaction(SIGTERM, &saved->old_term, NULL);
        sigaction(SIGPIPE, &saved->old_pipe, NULL);
        free(saved);
    }
    if (sig_pipe_wr >= 0) {
        close(sig_pipe_wr);
        sig_pipe_wr = -1;
    }
    if (read_fd >= 0)
        close(read_fd);
}

bool cli_signals_pending(int read_fd)
{
    if (read_fd < 0)
        return false;
    struct pollfd pfd = {.fd = read_fd, .events = POLLIN};
    return poll(&pfd, 1, 0) > 0 && (pfd.revents & POLLIN);
}

/* ---- manual boot -------------------------------------------------------- */

/* Waits for Enter on the terminal, or a signal. */
static int wait_for_enter(int cancel_fd)
{
    for (;;) {
        struct pollfd pfd[2] = {{.fd = STDIN_FILENO, .events = POLLIN},
                                {.fd = cancel_fd, .events = POLLIN}};
        int n = poll(pfd, cancel_fd >= 0 ? 2 : 1, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (cancel_fd >= 0 && (pfd[1].revents & POLLIN))
            return -ECANCELED;
        if (pfd[0].revents & (POLLIN | POLLHUP | POLLERR)) {
            char c;
            ssize_t r = read(STDIN_FILENO, &c, 1);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0)
                return -ECANCELED; /* EOF: nobody will press Enter */
            if (c == '\n' || c == '\r')
                return 0;
        }
    }
}

static int manual_boot_cb(void *ctx)
{
    struct cli_session *s = ctx;
    if (s->opt->json || isatty(STDIN_FILENO) != 1 || isatty(STDERR_FILENO) != 1) {
        s->manual_refused = true;
        return -ENOTTY;
    }
    cli_progress_break(s->out);
    fprintf(stderr, "Hold BOOT, tap EN (RESET), release BOOT, then press Enter\n");
    fflush(stderr);
    return wait_for_enter(s->cancel_fd);
}

/* ---- session ------------------------------------------------------------ */

void cli_session_init(struct cli_session *s, const struct cli_options *opt, struct cli_output *out,
                      int cancel_fd)
{
    memset(s, 0, sizeof(*s));
    s->opt = opt;
    s->out = out;
    s->cancel_fd = cancel_fd;
    snprintf(s->stub_dir, sizeof(s->stub_dir), "%s", opt->stub_dir ? opt->stub_dir : "");
    out->stub_dir = s->stub_dir;
}

int cli_session_open(struct cli_session *s, uint32_t flash_size, struct esp_error *err)
{
    const struct cli_options *opt = s->opt;
    cli_logf(s->out, ESP_LOG_DEBUG, "opening %s at %u baud", opt->port,
             (unsigned)opt->initial_baud);
    int r = transport_open(opt->port, opt->initial_baud, &s->t, err);
    if (r < 0) {
        s->t = NULL;
        if (err->code == 0)
            esp_error_set(err, r, ESP_STAGE_OPEN,
                          "is the board plugged in? is another program using the port?",
                          "cannot open %s: %s", opt->port, esp_errno_to_string(r));
        if (r != -ECANCELED)
            err->stage = ESP_STAGE_OPEN;
        return r;
    }
    s->t->cancel_fd = s->cancel_fd;

    struct esp_loader_config cfg;
    esp_loader_config_init(&cfg);
    cfg.before = opt->before;
    cfg.no_lines = opt->before == ESP_BEFORE_MANUAL ? ESP_NO_LINES_MANUAL : ESP_NO_LINES_NO_RESET;
    if (opt->connect_attempts >= 0)
        cfg.connect_attempts = opt->connect_attempts;
    if (opt->timeout_scale > 0)
        cfg.timeout_scale = opt->timeout_scale;
    cfg.initial_baud = opt->initial_baud;
    cfg.baud = opt->baud;
    cfg.use_stub = !opt->no_stub;
    cfg.stub_dir = s->stub_dir[0] ? s->stub_dir : NULL;
    cfg.flash_size = flash_size;
    cfg.log = cli_log_cb;
    cfg.log_ctx = s->out;
    cfg.progress = cli_progress_cb;
    cfg.progress_ctx = s->out;
    cfg.manual_boot = manual_boot_cb;
    cfg.manual_boot_ctx = s;
    s->l = esp_loader_new(s->t, &cfg);
    if (!s->l)
        return esp_error_set(err, -ENOMEM, ESP_STAGE_OPEN, NULL, "out of memory");
    return 0;
}

/* The engine warns when it falls back to the ROM; say it ourselves if it did not. */
static void note_missing_stub(struct cli_session *s)
{
    const struct esp_chip_info *ci = esp_loader_info(s->l);
    if (s->opt->no_stub || ci->stub_running || !ci->chip || !ci->chip->stub_supported ||
        s->out->stub_note_shown)
        return;
    struct esp_stub *stub = NULL;
    struct esp_error serr;
    esp_error_clear(&serr);
    int r = esp_stub_load(s->stub_dir[0] ? s->stub_dir : NULL, ci->chip, &stub, &serr);
    esp_stub_free(stub);
    if (r != -ENOENT)
        return;
    cli_logf(s->out, ESP_LOG_WARN,
             "no flasher stub found in %s: using the ROM loader only (slower: 1 KiB blocks, "
             "no chip erase; fetch the stubs with scripts/fetch-stubs.sh or pass --stub-dir)",
             s->stub_dir[0] ? s->stub_dir : "(no --stub-dir set)");
}

int cli_session_connect(struct cli_session *s, bool start, struct esp_error *err)
{
    int r = esp_loader_connect(s->l, err);
    if (r < 0) {
        if (s->manual_refused)
            esp_error_set(err, -ENOTTY, ESP_STAGE_RESET,
                          "run the command on a terminal without --json, or put the board into "
                          "download mode yourself and use --before no-reset",
                          "manual boot needs someone to press Enter on a terminal%s",
                          s->opt->json ? " (not possible with --json)" : "");
        return s->manual_refused ? err->code : r;
    }
    r = esp_loader_identify(s->l, err);
    if (r < 0)
        return r;
    if (start) {
        r = esp_loader_start(s->l, err);
        if (r < 0 && err->stage == ESP_STAGE_STUB && r != -ENODEV && r != -ECANCELED &&
            err->advice[0] && !s->opt->no_stub) {
            /* the stub did not start and no reset could bring the ROM back: say how */
            size_t n = strlen(err->advice);
            snprintf(err->advice + n, sizeof(err->advice) - n, " (--no-stub)");
        }
        if (r < 0)
            return r;
        note_missing_stub(s);
    }
    return 0;
}

int cli_session_finish(struct cli_session *s, struct esp_error *err)
{
    cli_logf(s->out, ESP_LOG_DEBUG, "leaving the loader: %s", esp_after_to_string(s->opt->after));
    return esp_loader_reset(s->l, s->opt->after, err);
}

void cli_session_close(struct cli_session *s)
{
    esp_loader_free(s->l);
    s->l = NULL;
    transport_close(s->t);
    s->t = NULL;
}
