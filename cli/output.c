/*
 * output: everything the user sees.
 *
 * Text mode: results on stdout; progress, log lines and errors on stderr.
 * Progress is a redrawn bar when stderr is a terminal, otherwise one line at
 * the start and one at the end of each region. JSON mode (--json): stdout
 * carries JSON Lines only (progress, log and exactly one result event);
 * nothing but sanitizer noise may reach stdout in any other form.
 * Invariant: a tty bar line left open is closed (newline) before any other
 * stderr output, so log lines never land in the middle of a bar.
 */
#include "cli.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define BAR_WIDTH 30
#define EMIT_INTERVAL 0.1 /* seconds between progress updates (JSON and tty redraws) */

double cli_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void cli_output_init(struct cli_output *o, const struct cli_options *opt, const char *command)
{
    memset(o, 0, sizeof(*o));
    o->json = opt->json;
    o->quiet = opt->quiet;
    o->verbose = opt->verbose;
    o->tty = isatty(STDERR_FILENO) == 1;
    o->command = command ? command : "none";
}

static void json_print(json_object *obj)
{
    fputs(json_object_to_json_string_ext(obj,
                                         JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE),
          stdout);
    fputc('\n', stdout);
    fflush(stdout);
}

void cli_json_add_double(json_object *obj, const char *key, double v, int decimals)
{
    char buf[64];
    if (!isfinite(v))
        v = 0;
    snprintf(buf, sizeof(buf), "%.*f", decimals, v);
    json_object_object_add(obj, key, json_object_new_double_s(v, buf));
}

void cli_progress_break(struct cli_output *o)
{
    if (o->bar_open) {
        fputc('\n', stderr);
        o->bar_open = false;
    }
}

/* ---- log ---------------------------------------------------------------- */

static const char *level_name(enum esp_log_level level)
{
    switch (level) {
    case ESP_LOG_ERROR:
        return "error";
    case ESP_LOG_WARN:
        return "warning";
    case ESP_LOG_INFO:
        return "info";
    case ESP_LOG_DEBUG:
        return "debug";
    }
    return "info";
}

static bool log_shown(const struct cli_output *o, enum esp_log_level level)
{
    if (level == ESP_LOG_DEBUG)
        return o->verbose;
    if (level == ESP_LOG_INFO)
        return !o->quiet;
    return true;
}

/* The engine's stub-fallback warning is a note for the user, not a problem. */
static bool is_stub_note(const char *msg)
{
    return strncmp(msg, "no flasher stub", 15) == 0;
}

/*
 * The engine says "no flasher stub for ESP32 in DIR: flashing through the ROM
 * loader (slower: ...)"; users and scripts get one stable wording:
 * "no flasher stub found in DIR: using the ROM loader only (slower: ...)".
 */
static const char *stub_note_text(const struct cli_output *o, const char *msg, char *buf,
                                  size_t size)
{
    if (strncmp(msg, "no flasher stub for ", 20) != 0)
        return msg;
    const char *slower = strstr(msg, "(slower: ");
    const char *dir = o->stub_dir && *o->stub_dir ? o->stub_dir : "(no stub directory)";
    snprintf(buf, size, "no flasher stub found in %s: using the ROM loader only %s", dir,
             slower ? slower : "(slower)");
    return buf;
}

static void log_emit(struct cli_output *o, enum esp_log_level level, const char *msg)
{
    if (o->json) {
        json_object *ev = json_object_new_object();
        json_object_object_add(ev, "event", json_object_new_string("log"));
        json_object_object_add(ev, "level", json_object_new_string(level_name(level)));
        json_object_object_add(ev, "message", json_object_new_string(msg));
        json_print(ev);
        json_object_put(ev);
        return;
    }
    cli_progress_break(o);
    const char *prefix = "";
    if (level == ESP_LOG_ERROR)
        prefix = "error: ";
    else if (level == ESP_LOG_WARN)
        prefix = is_stub_note(msg) ? "note: " : "warning: ";
    else if (level == ESP_LOG_DEBUG)
        prefix = "debug: ";
    fprintf(stderr, "%s%s\n", prefix, msg);
    fflush(stderr);
}

void cli_log_cb(void *ctx, enum esp_log_level level, const char *msg)
{
    struct cli_output *o = ctx;
    if (!msg || !log_shown(o, level))
        return;
    char buf[768];
    if (level == ESP_LOG_WARN && is_stub_note(msg)) {
        if (o->stub_note_shown)
            return; /* once per run */
        o->stub_note_shown = true;
        msg = stub_note_text(o, msg, buf, sizeof(buf));
    }
    log_emit(o, level, msg);
}

void cli_logf(struct cli_output *o, enum esp_log_level level, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    cli_log_cb(o, level, buf);
}

/* ---- progress ----------------------------------------------------------- */

static const char *stage_verb(enum esp_stage stage, bool done)
{
    switch (stage) {
    case ESP_STAGE_WRITE:
        return done ? "Wrote" : "Writing";
    case ESP_STAGE_VERIFY:
        return done ? "Verified" : "Verifying";
    case ESP_STAGE_READ:
        return done ? "Read" : "Reading";
    case ESP_STAGE_ERASE:
        return done ? "Erased" : "Erasing";
    case ESP_STAGE_STUB:
        return done ? "Uploaded stub" : "Uploading stub";
    default:
        return esp_stage_to_string(stage);
    }
}

static void progress_json(const struct esp_progress *p, double percent, double kbps)
{
    json_object *ev = json_object_new_object();
    json_object_object_add(ev, "event", json_object_new_string("progress"));
    json_object_object_add(ev, "stage", json_object_new_string(esp_stage_to_string(p->stage)));
    json_object_object_add(ev, "region", json_object_new_int64(p->region_index));
    json_object_object_add(ev, "regions", json_object_new_int64(p->region_count));
    json_object_object_add(ev, "address", json_object_new_int64(p->address));
    json_object_object_add(ev, "done", json_object_new_int64((int64_t)p->done));
    json_object_object_add(ev, "total", json_object_new_int64((int64_t)p->total));
    cli_json_add_double(ev, "percent", percent, 1);
    cli_json_add_double(ev, "kbps", kbps, 1);
    json_print(ev);
    json_object_put(ev);
}

static void progress_bar(struct cli_output *o, const struct esp_progress *p, double percent,
                         double kbps, double elapsed, bool last)
{
    char bar[BAR_WIDTH + 1];
    int fill = (int)(percent * BAR_WIDTH / 100.0);
    if (fill > BAR_WIDTH)
        fill = BAR_WIDTH;
    for (int i = 0; i < BAR_WIDTH; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[BAR_WIDTH] = '\0';
    unsigned secs = (unsigned)elapsed;
    fprintf(stderr, "\r%s 0x%08" PRIx32 " [%s] %3d%%  %.1f kbit/s  %02u:%02u",
            stage_verb(p->stage, false), p->address, bar, (int)percent, kbps, secs / 60, secs % 60);
    if (last) {
        fputc('\n', stderr);
        o->bar_open = false;
    } else {
        o->bar_open = true;
    }
    fflush(stderr);
}

static void progress_line(const struct esp_progress *p, double kbps, double elapsed, bool first,
                          bool last)
{
    if (first && !last)
        fprintf(stderr, "%s %" PRIu64 " bytes at 0x%08" PRIx32 " (region %u of %u)...\n",
                stage_verb(p->stage, false), p->total, p->address, p->region_index + 1,
                p->region_count);
    /* A finished verify is reported by the command with its MD5; its "rate" is only
     * the chip's hashing speed. */
    if (last && p->stage != ESP_STAGE_VERIFY)
        fprintf(stderr, "%s %" PRIu64 " bytes at 0x%08" PRIx32 " in %.1f s (%.1f kbit/s)\n",
                stage_verb(p->stage, true), p->done, p->address, elapsed, kbps);
    fflush(stderr);
}

void cli_progress_cb(void *ctx, const struct esp_progress *p)
{
    struct cli_output *o = ctx;
    double now = cli_now();
    bool first = !o->active || p->stage != o->stage || p->region_index != o->region;
    if (first) {
        cli_progress_break(o);
        o->active = true;
        o->stage = p->stage;
        o->region = p->region_index;
        o->region_done = false;
        o->region_t0 = now;
        o->last_emit = 0;
    }
    if (p->stage == ESP_STAGE_WRITE) {
        o->write_seen = true;
        o->write_t1 = now;
    }
    bool last = p->done >= p->total;
    /* The engine reports a finished verify region only after the MD5s matched. */
    if (last && p->stage == ESP_STAGE_VERIFY && o->verified && p->region_index < o->n_verified)
        o->verified[p->region_index] = true;
    if (o->region_done)
        return; /* repeated end-of-region report */
    if (last)
        o->region_done = true;
    if (!first && !last && now - o->last_emit < EMIT_INTERVAL)
        return;
    o->last_emit = now;

    double elapsed = now - o->region_t0;
    double kbps = elapsed > 0.0005 ? (double)p->done * 8.0 / 1000.0 / elapsed : 0.0;
    double percent = p->total ? (double)p->done * 100.0 / (double)p->total : 100.0;
    if (percent > 100.0)
        percent = 100.0;

    if (o->json)
        progress_json(p, percent, kbps);
    else if (o->quiet)
        return;
    else if (o->tty)
        progress_bar(o, p, percent, kbps, elapsed, last);
    else
        progress_line(p, kbps, elapsed, first, last);
}

/* ---- errors and results ------------------------------------------------- */

int cli_exit_code(const struct esp_error *err)
{
    int code = err->code;
    enum esp_stage st = err->stage;
    if (code == -ECANCELED)
        return CLI_EXIT_INTERRUPTED;
    if (st == ESP_STAGE_OPEN)
        return CLI_EXIT_PORT;
    if (code == -ENODEV)
        return CLI_EXIT_REMOVED;
    if (st == ESP_STAGE_RESET || st == ESP_STAGE_SYNC || st == ESP_STAGE_DETECT)
        return CLI_EXIT_CONNECT;
    if (st == ESP_STAGE_PREPARE)
        return CLI_EXIT_REFUSED;
    if (code == -EINVAL && (st == ESP_STAGE_NONE || st == ESP_STAGE_ERASE ||
                            st == ESP_STAGE_WRITE || st == ESP_STAGE_READ))
        return CLI_EXIT_REFUSED;
    if (code == -EBADMSG && st == ESP_STAGE_VERIFY)
        return CLI_EXIT_VERIFY;
    /* A refusal of what the loader in use cannot do (chip erase or MD5 through a ROM
     * without stub, a command the device calls unsupported), not a device failure. */
    if (code == -ENOTSUP && (st == ESP_STAGE_ERASE || st == ESP_STAGE_WRITE ||
                             st == ESP_STAGE_VERIFY || st == ESP_STAGE_READ))
        return CLI_EXIT_UNSUPPORTED;
    return CLI_EXIT_DEVICE;
}

const char *cli_errno_code(int code)
{
    switch (-code) {
    case ETIMEDOUT:
        return "timeout";
    case EPROTO:
        return "protocol";
    case EBADMSG:
        return "bad_checksum";
    case ENODEV:
        return "no_device";
    case ECANCELED:
        return "cancelled";
    case EINVAL:
        return "invalid";
    case ENOTSUP:
        return "not_supported";
    case EIO:
        return "io";
    case ENOMEM:
        return "no_memory";
    case ENOENT:
        return "not_found";
    case EACCES:
    case EPERM:
        return "permission_denied";
    case EBUSY:
        return "busy";
    case ENOTTY:
        return "no_terminal";
    case ENOMEDIUM: /* RDID read 0xFFFFFF or 0: a board fault (esp_loader_attach_flash) */
        return "flash_not_answering";
    default:
        return "error";
    }
}

static const char *device_text(const struct esp_error *err)
{
    if (!err->has_device_status)
        return NULL;
    if (err->status >= 0xC0)
        return esp_stub_error_to_string(err->status);
    return esp_rom_error_to_string(err->error);
}

static json_object *error_json(const struct esp_error *err)
{
    char buf[32];
    json_object *e = json_object_new_object();
    json_object_object_add(e, "code", json_object_new_string(cli_errno_code(err->code)));
    json_object_object_add(e, "errno", json_object_new_int(err->code));
    json_object_object_add(e, "stage", json_object_new_string(esp_stage_to_string(err->stage)));
    json_object_object_add(e, "message", json_object_new_string(err->message));
    json_object_object_add(e, "advice", json_object_new_string(err->advice));
    if (err->has_device_status) {
        if (err->op) {
            snprintf(buf, sizeof(buf), "0x%02x", err->op);
            json_object_object_add(e, "opcode", json_object_new_string(buf));
        }
        snprintf(buf, sizeof(buf), "0x%02x", err->status);
        json_object_object_add(e, "device_status", json_object_new_string(buf));
        snprintf(buf, sizeof(buf), "0x%02x", err->error);
        json_object_object_add(e, "device_error", json_object_new_string(buf));
        const char *txt = device_text(err);
        if (txt)
            json_object_object_add(e, "device_message", json_object_new_string(txt));
    }
    if (err->has_address) {
        snprintf(buf, sizeof(buf), "0x%" PRIx32, err->address);
        json_object_object_add(e, "address", json_object_new_string(buf));
    }
    return e;
}

static void error_text(const struct esp_error *err)
{
    const char *msg = err->message[0] ? err->message : esp_errno_to_string(err->code);
    if (err->stage != ESP_STAGE_NONE)
        fprintf(stderr, "error: %s: %s\n", esp_stage_to_string(err->stage), msg);
    else
        fprintf(stderr, "error: %s\n", msg);
    if (err->advice[0])
        fprintf(stderr, "  what to check: %s\n", err->advice);
    if (err->has_device_status) {
        const char *txt = device_text(err);
        fprintf(stderr, "  device reply: status 0x%02x, error 0x%02x%s%s%s\n", err->status,
                err->error, txt ? " (" : "", txt ? txt : "", txt ? ")" : "");
    }
    if (err->has_address)
        fprintf(stderr, "  flash address: 0x%08" PRIx32 "\n", err->address);
    fflush(stderr);
}

static json_object *result_head(struct cli_output *o, json_object *result, bool ok)
{
    json_object *r = json_object_new_object();
    json_object_object_add(r, "event", json_object_new_string("result"));
    json_object_object_add(r, "ok", json_object_new_boolean(ok));
    json_object_object_add(r, "command", json_object_new_string(o->command));
    if (result) {
        json_object_object_foreach(result, key, val)
        {
            json_object_object_add(r, key, json_object_get(val));
        }
        json_object_put(result);
    }
    return r;
}

void cli_emit_success(struct cli_output *o, json_object *result)
{
    cli_progress_break(o);
    json_object *r = result_head(o, result, true);
    json_object_object_add(r, "exit_code", json_object_new_int(0));
    if (o->json)
        json_print(r);
    json_object_put(r);
}

void cli_emit_failure(struct cli_output *o, json_object *result, const struct esp_error *err,
                      int exit_code)
{
    cli_progress_break(o);
    json_object *r = result_head(o, result, false);
    json_object_object_add(r, "exit_code", json_object_new_int(exit_code));
    json_object_object_add(r, "error", error_json(err));
    if (o->json)
        json_print(r);
    else
        error_text(err);
    json_object_put(r);
}

/* ---- identity ----------------------------------------------------------- */

const char *cli_revision_str(int revision, char *buf, size_t size)
{
    if (revision < 0)
        snprintf(buf, size, "unknown");
    else
        snprintf(buf, size, "v%d.%d", revision / 100, revision % 100);
    return buf;
}

const char *cli_size_str(uint32_t bytes, char *buf, size_t size)
{
    if (bytes && bytes % (1024u * 1024u) == 0)
        snprintf(buf, size, "%" PRIu32 "MB", bytes / (1024u * 1024u));
    else if (bytes && bytes % 1024u == 0)
        snprintf(buf, size, "%" PRIu32 "KB", bytes / 1024u);
    else
        snprintf(buf, size, "%" PRIu32 " bytes", bytes);
    return buf;
}

void cli_json_add_identity(json_object *obj, const struct esp_chip_info *ci)
{
    char buf[64];
    json_object_object_add(obj, "chip", ci->chip ? json_object_new_string(ci->chip->name) : NULL);
    json_object_object_add(
        obj, "revision",
        ci->revision >= 0 ? json_object_new_string(cli_revision_str(ci->revision, buf, sizeof(buf)))
                          : NULL);
    if (ci->mac_valid) {
        snprintf(buf, sizeof(buf), "%02x:%02x:%02x:%02x:%02x:%02x", ci->mac[0], ci->mac[1],
                 ci->mac[2], ci->mac[3], ci->mac[4], ci->mac[5]);
        json_object_object_add(obj, "mac", json_object_new_string(buf));
    } else {
        json_object_object_add(obj, "mac", NULL);
    }
    if (ci->flash_id) {
        snprintf(buf, sizeof(buf), "0x%06" PRIx32, ci->flash_id);
        json_object_object_add(obj, "flash_id", json_object_new_string(buf));
    } else {
        json_object_object_add(obj, "flash_id", NULL);
    }
    json_object_object_add(obj, "flash_size",
                           ci->flash_size ? json_object_new_int64(ci->flash_size) : NULL);
    json_object_object_add(obj, "crystal_mhz",
                           ci->xtal_mhz ? json_object_new_int((int)ci->xtal_mhz) : NULL);
    json_object_object_add(obj, "stub", json_object_new_boolean(ci->stub_running));
    json_object_object_add(obj, "baud", json_object_new_int64(ci->baud));
    json_object_object_add(obj, "usb_jtag", json_object_new_boolean(ci->usb_jtag));
}
