/*
 * cli: internal interface of the espstation command-line tool.
 *
 * Modules and what each owns:
 *   options.c   argv -> struct cli_options (no I/O except nothing; messages go to a buffer)
 *   output.c    everything the user sees: text on stdout/stderr, JSON Lines on stdout,
 *               progress bars, engine log lines, error reports, exit-code mapping
 *   files.c     number parsing, loading image files, MD5 of host data
 *   session.c   the signal pipe (the only global), opening the port, the loader
 *               context, connect/identify/start, manual boot prompt
 *   commands.c  one function per command
 *   from.c      flash --from: a build's output (protocols/buildsrc) as the files to flash
 *   main.c      glue
 *
 * Ownership: struct cli_options borrows argv strings. A struct cli_session owns
 * its transport and loader and frees them in cli_session_close().
 */
#ifndef CLI_H
#define CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <json-c/json.h>

#include "esp_error.h"
#include "esp_loader.h"

/* Exit codes (documented in docs/CLI.md and --help). */
enum cli_exit {
    CLI_EXIT_OK = 0,
    CLI_EXIT_USAGE = 1,
    CLI_EXIT_PORT = 2,
    CLI_EXIT_CONNECT = 3,
    CLI_EXIT_DEVICE = 4,
    CLI_EXIT_VERIFY = 5,
    CLI_EXIT_REFUSED = 6,
    CLI_EXIT_INTERRUPTED = 7,
    CLI_EXIT_REMOVED = 8,
    CLI_EXIT_UNSUPPORTED = 9, /* the loader in use cannot do it (e.g. chip erase without stub) */
};

/* ---- options.c ---------------------------------------------------------- */

/* Command-specific option bits, to refuse them on the wrong command. */
#define CLI_OPT_FLASH 0x1u /* --erase-all --no-compress --no-verify --no-diff --flash-* --force */
#define CLI_OPT_ERASE 0x2u /* --region */

struct cli_options {
    const char *command; /* NULL when none was given */
    const char *port;
    uint32_t baud;
    uint32_t initial_baud;
    enum esp_before before;
    enum esp_after after;
    bool no_stub;
    bool before_given, after_given; /* --before / --after on the command line (win over --from) */
    const char *stub_dir;
    int connect_attempts; /* -1: engine default */
    double timeout_scale; /* 0: engine default */
    bool json;
    bool quiet;
    bool verbose;

    /* flash */
    bool erase_all;
    bool no_compress;
    bool no_verify;
    bool no_diff; /* write every region whole (no re-flash of changed sectors only) */
    bool force;
    const char *flash_mode; /* NULL = keep */
    const char *flash_size;
    const char *flash_freq;
    bool zopfli;      /* compress with zopfli (zcompress_best) instead of zlib -9 */
    const char *from; /* --from PATH: a build's output instead of OFFSET FILE pairs */

    /* erase */
    bool region;

    unsigned cmd_opts_seen; /* CLI_OPT_* bits */

    char **args; /* positional arguments after the command (borrowed from argv) */
    int nargs;
};

enum cli_parse_result {
    CLI_PARSE_OK = 0,
    CLI_PARSE_HELP,    /* -h/--help or "help": print help, exit 0 */
    CLI_PARSE_VERSION, /* --version */
    CLI_PARSE_ERROR,   /* usage error, message in msg */
};

/* Parses argv (permuted in place by getopt_long). msg gets a one-line usage error. */
enum cli_parse_result cli_parse_options(int argc, char **argv, struct cli_options *opt, char *msg,
                                        size_t msg_size);

/* True if argv contains --json before any "--" (so early usage errors can be JSON). */
bool cli_argv_wants_json(int argc, char **argv);

void cli_print_help(FILE *f);

/* ---- files.c ------------------------------------------------------------ */

/* Parses "1234", "0x1000", optionally with a K/M suffix (x1024, x1024*1024). */
int cli_parse_u32(const char *s, uint32_t *out);

struct cli_file {
    uint32_t offset;
    const char *path; /* borrowed from argv */
    uint8_t *data;    /* owned */
    size_t len;
    uint8_t md5[16]; /* of data as it will be written */
    uint8_t *zdata;  /* owned: --zopfli's zlib stream of data, NULL = the engine's zlib -9 */
    size_t zlen;
};

/* Loads a whole file; empty or unreadable files are errors (stage PREPARE, -EINVAL/-errno). */
int cli_file_load(struct cli_file *f, struct esp_error *err);
void cli_files_free(struct cli_file *files, size_t n);

/* --zopfli: f->zdata = the smaller of zopfli's and zlib -9's stream of f->data
 * (zcompress_best); *zopfli tells which. Returns 0 or -ENOMEM (stage PREPARE). */
int cli_file_zopfli(struct cli_file *f, bool *zopfli, struct esp_error *err);

void cli_md5(const uint8_t *data, size_t len, uint8_t md5[16]);
void cli_hex(const uint8_t *bytes, size_t n, char *out); /* out has 2n+1 bytes */

/* ---- output.c ----------------------------------------------------------- */

struct cli_output {
    bool json;
    bool quiet;
    bool verbose;
    bool tty; /* stderr is a terminal: draw progress bars */
    const char *command;
    const char *stub_dir; /* for the "no flasher stub" note */
    bool stub_note_shown; /* that note was printed */

    /* Progress state of the region being shown. */
    bool active;
    enum esp_stage stage;
    unsigned region;
    bool bar_open;    /* a tty bar line without its newline */
    bool region_done; /* end of this region already reported */
    double region_t0;
    double last_emit;

    /* Regions whose MD5 check the engine reported complete (set by the command). */
    bool *verified;
    size_t n_verified;

    /* Write-phase timing for the result (first and last WRITE progress). */
    bool write_seen;
    double write_t0;
    double write_t1;
};

void cli_output_init(struct cli_output *o, const struct cli_options *opt, const char *command);

/* Monotonic seconds. */
double cli_now(void);

/* esp_log_fn: engine log lines (and the tool's own). */
void cli_log_cb(void *ctx, enum esp_log_level level, const char *msg);
void cli_logf(struct cli_output *o, enum esp_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* esp_progress_fn. */
void cli_progress_cb(void *ctx, const struct esp_progress *p);

/* Ends an open progress line (before other output). */
void cli_progress_break(struct cli_output *o);

/* Maps an engine/tool error to the exit code table. */
int cli_exit_code(const struct esp_error *err);

/* Short code names for JSON ("timeout", "protocol", ...). */
const char *cli_errno_code(int code);

/* Final JSON result: adds event/ok/command (and on failure exit_code/error), prints it in
 * JSON mode, and frees result (NULL allowed: an empty one is made). In text mode a failure
 * is reported on stderr as "error: <stage>: <message>" + "  what to check: <advice>". */
void cli_emit_success(struct cli_output *o, json_object *result);
void cli_emit_failure(struct cli_output *o, json_object *result, const struct esp_error *err,
                      int exit_code);

/* Adds the identity fields of a connected chip to obj. */
void cli_json_add_identity(json_object *obj, const struct esp_chip_info *ci);
/* Adds a double rounded to decimals. */
void cli_json_add_double(json_object *obj, const char *key, double v, int decimals);

/* "v3.1" / "unknown" into buf. */
const char *cli_revision_str(int revision, char *buf, size_t size);
/* "4MB" / "512KB" into buf. */
const char *cli_size_str(uint32_t bytes, char *buf, size_t size);

/* ---- session.c ---------------------------------------------------------- */

struct cli_signals; /* saved dispositions, opaque */

/* Creates the signal pipe and installs SIGINT/SIGTERM handlers (and ignores SIGPIPE).
 * Returns the read end (to use as transport cancel_fd) or -errno. */
int cli_signals_install(struct cli_signals **saved);
void cli_signals_restore(struct cli_signals *saved, int read_fd);
/* True when a signal arrived (the pipe is readable). */
bool cli_signals_pending(int read_fd);

struct cli_session {
    const struct cli_options *opt;
    struct cli_output *out;
    int cancel_fd;
    struct transport *t;
    struct esp_loader *l;
    char stub_dir[512];
    bool manual_refused; /* manual boot asked for but impossible (no tty / JSON) */
};

void cli_session_init(struct cli_session *s, const struct cli_options *opt, struct cli_output *out,
                      int cancel_fd);
/* Opens the port and creates the loader. flash_size: bytes to configure (0 detect). */
int cli_session_open(struct cli_session *s, uint32_t flash_size, struct esp_error *err);
/* esp_loader_connect + identify (+ start when start is true). */
int cli_session_connect(struct cli_session *s, bool start, struct esp_error *err);
/* Resets per --after; logs what it does. */
int cli_session_finish(struct cli_session *s, struct esp_error *err);
void cli_session_close(struct cli_session *s);

/* ---- from.c ------------------------------------------------------------- */

struct buildsrc;

/* The flash settings a build names (strings as for --flash-*; "" = not named). */
struct cli_from_settings {
    char mode[8];
    char size[16];
    char freq[8];
};

/* Recognises and checks the build at path (no port touched; stage PREPARE errors). */
int cli_from_load(const char *path, struct buildsrc **src, struct esp_error *err);
void cli_from_free(struct buildsrc *src); /* NULL allowed */
/* Flash size to configure before connecting (0: unknown/detect). */
uint32_t cli_from_flash_size(const struct buildsrc *src);
/* What the build says about reset and stub (ESP-IDF extra_esptool_args before/after/stub)
 * into opt where the command line gave no --before/--after/--no-stub; logged. */
void cli_from_esptool_args(struct cli_output *out, const struct buildsrc *src,
                           struct cli_options *opt);
/* The set for the connected chip as files (data copied, paths borrowed from src), its
 * flash settings into fs, what was recognised logged and added to res as "source". */
int cli_from_files(struct cli_output *out, const struct buildsrc *src,
                   const struct esp_chip_desc *chip, json_object *res, struct cli_file **files,
                   size_t *n, struct cli_from_settings *fs, struct esp_error *err);

/* ---- commands.c --------------------------------------------------------- */

int cli_cmd_run(const struct cli_options *opt, int cancel_fd);

#endif
