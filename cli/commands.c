/*
 * commands: one function per espstation command.
 *
 * Every command follows the same shape: validate arguments and load files
 * (no port touched yet), open the port, connect, do the work, reset per
 * --after, then report exactly one result through conclude(), which also
 * frees the session. On failure the board is left as it is (no reset), so a
 * half-written or unverified image is never booted by us.
 */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "esp_image.h"

#define SECTOR 4096u

#ifndef ESPSTATION_VERSION
#define ESPSTATION_VERSION "unknown"
#endif

struct cmd {
    const struct cli_options *opt;
    struct cli_output *out;
    struct cli_session s;
    struct esp_error err;
    json_object *res;              /* result fields collected so far (owned) */
    int exit_override;             /* 0: derive the exit code from err */
    struct cli_from_settings from; /* flash --from: the build's flash settings */
};

static int usage_fail(struct cmd *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int usage_fail(struct cmd *c, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    c->exit_override = CLI_EXIT_USAGE;
    return esp_error_set(&c->err, -EINVAL, ESP_STAGE_NONE,
                         "espstation --help lists the commands and their arguments", "%s", msg);
}

static const struct esp_chip_info *chip_info(const struct cmd *c)
{
    return c->s.l ? esp_loader_info(c->s.l) : NULL;
}

/* Adds chip identity to the result (once: before the reset changes stub/baud). */
static void capture_identity(struct cmd *c)
{
    const struct esp_chip_info *ci = chip_info(c);
    if (!ci || !ci->chip || json_object_object_get_ex(c->res, "chip", NULL))
        return;
    cli_json_add_identity(c->res, ci);
}

static void add_stats(struct cmd *c)
{
    if (!c->s.l)
        return;
    const struct esp_loader_stats *st = esp_loader_stats(c->s.l);
    json_object_object_add(c->res, "retries", json_object_new_int64(st->block_retries));
    json_object_object_add(c->res, "sync_tries", json_object_new_int64(st->sync_tries));
}

static int conclude(struct cmd *c, int r)
{
    int rc = CLI_EXIT_OK;
    add_stats(c);
    if (r >= 0) {
        cli_emit_success(c->out, c->res);
    } else {
        if (c->err.code == 0)
            esp_error_set(&c->err, r, ESP_STAGE_NONE, NULL, "%s", esp_errno_to_string(r));
        if (c->err.code != -ECANCELED && cli_signals_pending(c->s.cancel_fd))
            esp_error_set(&c->err, -ECANCELED, c->err.stage, NULL, "interrupted by a signal");
        if (c->err.code == -ECANCELED && !c->err.advice[0])
            snprintf(c->err.advice, sizeof(c->err.advice), "%s",
                     c->err.stage == ESP_STAGE_WRITE || c->err.stage == ESP_STAGE_ERASE
                         ? "the operation was stopped part-way: run it again (the flash may "
                           "be partly written)"
                         : "the operation was stopped: run it again");
        capture_identity(c);
        rc = c->exit_override ? c->exit_override : cli_exit_code(&c->err);
        cli_emit_failure(c->out, c->res, &c->err, rc);
    }
    c->res = NULL;
    cli_session_close(&c->s);
    return rc;
}

/* Open, connect, identify (and start: stub, baud, flash attach). */
static int connect_board(struct cmd *c, bool start, uint32_t flash_size)
{
    if (cli_signals_pending(c->s.cancel_fd))
        return esp_error_set(&c->err, -ECANCELED, ESP_STAGE_NONE, NULL, "interrupted by a signal");
    int r = cli_session_open(&c->s, flash_size, &c->err);
    if (r < 0)
        return r;
    r = cli_session_connect(&c->s, start, &c->err);
    if (r >= 0)
        capture_identity(c);
    return r;
}

static double kbit_per_s(uint64_t bytes, double seconds)
{
    return seconds > 0.0005 ? (double)bytes * 8.0 / 1000.0 / seconds : 0.0;
}

/* ---- files and regions -------------------------------------------------- */

/* Parses OFFSET FILE pairs and loads the files. *files is set even on failure. */
static int load_pairs(struct cmd *c, struct cli_file **files, size_t *n)
{
    size_t count = (size_t)c->opt->nargs / 2;
    *files = calloc(count, sizeof(**files));
    *n = *files ? count : 0;
    if (!*files)
        return esp_error_set(&c->err, -ENOMEM, ESP_STAGE_PREPARE, NULL, "out of memory");
    for (size_t i = 0; i < count; i++) {
        struct cli_file *f = &(*files)[i];
        const char *off = c->opt->args[2 * i];
        f->path = c->opt->args[2 * i + 1];
        if (cli_parse_u32(off, &f->offset) != 0)
            return usage_fail(c, "bad offset '%s' (decimal or 0x-hex)", off);
    }
    for (size_t i = 0; i < count; i++) {
        struct cli_file *f = &(*files)[i];
        int r = cli_file_load(f, &c->err);
        if (r < 0)
            return r;
        if ((uint64_t)f->offset + f->len > UINT32_MAX)
            return esp_error_set(
                &c->err, -EINVAL, ESP_STAGE_PREPARE, "check the offset given for this file",
                "'%s' (%zu bytes) at 0x%" PRIx32 " goes past 4 GB", f->path, f->len, f->offset);
        cli_logf(c->out, ESP_LOG_DEBUG, "loaded '%s': %zu bytes for 0x%08" PRIx32, f->path, f->len,
                 f->offset);
    }
    return 0;
}

static struct esp_region *make_regions(const struct cli_file *files, size_t n)
{
    struct esp_region *regions = calloc(n ? n : 1, sizeof(*regions));
    if (!regions)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        regions[i].offset = files[i].offset;
        regions[i].data = files[i].data;
        regions[i].len = files[i].len;
        regions[i].zdata = files[i].zdata;
        regions[i].zlen = files[i].zlen;
        regions[i].name = files[i].path;
    }
    return regions;
}

static void add_regions_json(struct cmd *c, const struct cli_file *files, size_t n,
                             const bool *verified)
{
    if (!files || n == 0 || !files[n - 1].data)
        return; /* files not (all) loaded: nothing to report */
    json_object *arr = json_object_new_array();
    char hex[33];
    for (size_t i = 0; i < n; i++) {
        json_object *o = json_object_new_object();
        json_object_object_add(o, "offset", json_object_new_int64(files[i].offset));
        json_object_object_add(o, "size", json_object_new_int64((int64_t)files[i].len));
        json_object_object_add(o, "file", json_object_new_string(files[i].path));
        if (files[i].data) {
            cli_hex(files[i].md5, 16, hex);
            json_object_object_add(o, "md5", json_object_new_string(hex));
        }
        json_object_object_add(o, "verified", json_object_new_boolean(verified && verified[i]));
        json_object_array_add(arr, o);
    }
    json_object_object_add(c->res, "regions", arr);
}

/* ---- flash -------------------------------------------------------------- */

/* Bytes of an explicit --flash-size (0 for keep/detect/absent). */
static uint32_t explicit_flash_size(const struct cli_options *opt)
{
    uint32_t bytes = 0;
    bool keep = false;
    if (!opt->flash_size || strcmp(opt->flash_size, "detect") == 0)
        return 0;
    if (esp_parse_flash_size(opt->flash_size, &bytes, &keep) < 0 || keep)
        return 0;
    return bytes;
}

/* Turns --flash-mode/size/freq into header codes for the connected chip. */
static int flash_codes(struct cmd *c, struct esp_flash_opts *fo)
{
    const struct cli_options *opt = c->opt;
    const struct esp_chip_info *ci = chip_info(c);
    const struct esp_chip_desc *chip = ci->chip;
    bool keep = false;
    /* --flash-* given win over what a build (--from) names. */
    const char *mode = opt->flash_mode ? opt->flash_mode : c->from.mode[0] ? c->from.mode : NULL;
    const char *size = opt->flash_size ? opt->flash_size : c->from.size[0] ? c->from.size : NULL;
    const char *freq = opt->flash_freq ? opt->flash_freq : c->from.freq[0] ? c->from.freq : NULL;
    if (mode)
        fo->flash_mode = esp_parse_flash_mode(mode, &keep);
    if (size) {
        uint32_t bytes = 0;
        if (strcmp(size, "detect") != 0 && (esp_parse_flash_size(size, &bytes, &keep) < 0 || keep))
            bytes = 0;
        if (strcmp(size, "detect") == 0) {
            bytes = ci->flash_size;
            if (!bytes)
                cli_logf(c->out, ESP_LOG_WARN,
                         "flash size could not be detected: keeping the size in the image header");
        }
        if (bytes) {
            int code = esp_chip_flash_size_code(chip, bytes);
            char sz[32];
            if (code < 0)
                return esp_error_set(&c->err, -EINVAL, ESP_STAGE_PREPARE,
                                     "choose a flash size this chip supports, or keep",
                                     "flash size %s cannot be encoded for %s",
                                     cli_size_str(bytes, sz, sizeof(sz)), chip->name);
            fo->flash_size_code = code;
        }
    }
    if (freq) {
        unsigned mhz = 0;
        esp_parse_flash_freq(freq, &mhz, &keep);
        int code = esp_chip_flash_freq_code(chip, mhz);
        if (code < 0)
            return esp_error_set(&c->err, -EINVAL, ESP_STAGE_PREPARE,
                                 "choose a flash frequency this chip supports, or keep",
                                 "flash frequency %u MHz is not supported by %s", mhz, chip->name);
        fo->flash_freq_code = code;
    }
    return 0;
}

/* Applies mode/size/freq to an image at the bootloader offset, as it will be written,
 * so the MD5 we report is the MD5 of what lands in flash. */
static void patch_bootloader(struct cmd *c, struct cli_file *files, size_t n,
                             const struct esp_flash_opts *fo)
{
    const struct esp_chip_desc *chip = chip_info(c)->chip;
    if (fo->flash_mode < 0 && fo->flash_size_code < 0 && fo->flash_freq_code < 0)
        return;
    for (size_t i = 0; i < n; i++) {
        struct cli_file *f = &files[i];
        if (f->offset != chip->bootloader_offset)
            continue;
        int r = esp_image_patch_header(f->data, f->len, chip->chip == ESP_CHIP_ESP8266,
                                       fo->flash_mode, fo->flash_size_code, fo->flash_freq_code);
        if (r > 0) {
            cli_md5(f->data, f->len, f->md5);
            cli_logf(c->out, ESP_LOG_INFO,
                     "Set flash mode/size/frequency in the image header of '%s' at 0x%" PRIx32,
                     f->path, f->offset);
        } else if (r < 0) {
            cli_logf(c->out, ESP_LOG_WARN,
                     "'%s' at the bootloader offset 0x%" PRIx32
                     " is not a valid image: header left unchanged",
                     f->path, f->offset);
        }
    }
}

/* True when one of the images is refused by the chip id / revision check that
 * --force skips (the engine refused the job for that reason). */
static bool image_check_refuses(const struct cmd *c, const struct cli_file *files, size_t n)
{
    const struct esp_chip_info *ci = chip_info(c);
    if (!ci || !ci->chip)
        return false;
    bool esp8266 = ci->chip->chip == ESP_CHIP_ESP8266;
    for (size_t i = 0; i < n; i++) {
        if (files[i].len == 0 || files[i].data[0] != 0xE9)
            continue;
        struct esp_image_info img;
        struct esp_error ierr;
        esp_error_clear(&ierr);
        if (esp_image_parse(files[i].data, files[i].len, esp8266, &img, &ierr) < 0)
            continue;
        if (esp_image_check_chip(&img, ci->chip, ci->revision, &ierr) < 0)
            return true;
    }
    return false;
}

/* Tells the technician about the override on a chip id / revision refusal. */
static void advise_force(struct esp_error *err)
{
    static const char force[] = "or use --force to write it anyway";
    char advice[sizeof(err->advice)];
    int k = err->advice[0] ? snprintf(advice, sizeof(advice), "%s (%s)", err->advice, force)
                           : snprintf(advice, sizeof(advice), "%s", force + 3);
    if (k > 0 && (size_t)k < sizeof(advice))
        memcpy(err->advice, advice, (size_t)k + 1);
}

/* The ROM loader has no chip erase (exit 9): say how to get one, or what to do instead. */
static void advise_chip_erase(struct cmd *c, bool flash_cmd)
{
    const struct esp_chip_info *ci = chip_info(c);
    /* A stub that was found but did not start left the ROM loader (fallback): pointing at
     * the stub directory would send the technician to the wrong place. */
    const char *how = c->opt->no_stub ? "drop --no-stub"
                      : ci && ci->stub_fallback
                          ? "the flasher stub did not start (the board was reset into the ROM "
                            "loader): retry and check the power supply"
                          : "make the flasher stub available (--stub-dir, $ESPSTATION_STUB_DIR; "
                            "not in secure download mode)";
    if (flash_cmd) {
        snprintf(c->err.advice, sizeof(c->err.advice), "%s, or flash without --erase-all", how);
        return;
    }
    char size[24] = "SIZE";
    if (ci && ci->flash_size)
        snprintf(size, sizeof(size), "0x%" PRIx32, ci->flash_size);
    snprintf(c->err.advice, sizeof(c->err.advice),
             "%s, or erase through the ROM loader (slower): espstation erase --region 0 %s", how,
             size);
}

/* --zopfli: each file's wire stream made once here (the engine uses it where it sends the
 * file's bytes as they are: a length that is a multiple of 4, no sector alignment). */
static int zopfli_files(struct cmd *c, struct cli_file *files, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct cli_file *f = &files[i];
        if (f->len % 4) {
            cli_logf(c->out, ESP_LOG_INFO,
                     "'%s': length not a multiple of 4, sent with zlib -9 (no --zopfli)", f->path);
            continue;
        }
        double t0 = cli_now();
        bool zopfli = false;
        int r = cli_file_zopfli(f, &zopfli, &c->err);
        if (r < 0)
            return r;
        cli_logf(c->out, ESP_LOG_INFO, "Compressed '%s' with %s: %zu -> %zu bytes in %.1f s",
                 f->path, zopfli ? "zopfli" : "zlib -9 (zopfli gains nothing here)", f->len,
                 f->zlen, cli_now() - t0);
    }
    return 0;
}

static int cmd_flash(struct cmd *c)
{
    const struct cli_options *opt = c->opt, *orig_opt = c->opt;
    struct cli_file *files = NULL;
    size_t n = 0;
    struct esp_region *regions = NULL;
    bool *verified = NULL;
    struct buildsrc *src = NULL;

    int r = opt->from ? cli_from_load(opt->from, &src, &c->err) : load_pairs(c, &files, &n);
    /* The build's reset and stub choices (ESP-IDF extra_esptool_args) for this command. */
    struct cli_options from_opt;
    if (r >= 0 && src) {
        from_opt = *opt;
        cli_from_esptool_args(c->out, src, &from_opt);
        c->opt = c->s.opt = opt = &from_opt;
    }
    uint32_t cfg_size =
        opt->from && !opt->flash_size ? cli_from_flash_size(src) : explicit_flash_size(opt);
    if (r >= 0 && src) {
        /* Connected first: an ESP Web Tools manifest has one build per chip family. */
        r = connect_board(c, true, cfg_size);
        if (r >= 0)
            r = cli_from_files(c->out, src, chip_info(c)->chip, c->res, &files, &n, &c->from,
                               &c->err);
    }
    for (size_t i = 0; r >= 0 && i < n; i++) {
        uint32_t off = files[i].offset;
        if (off % SECTOR && !opt->force)
            r = esp_error_set(&c->err, -EINVAL, ESP_STAGE_PREPARE,
                              "flash is erased in 4 KiB sectors: use an offset that is a "
                              "multiple of 0x1000, or --force to write anyway",
                              "offset 0x%" PRIx32 " of '%s' is not sector-aligned: bytes "
                              "0x%" PRIx32 "..0x%" PRIx32 " would be erased too",
                              off, files[i].path, off - off % SECTOR, off - 1);
    }
    if (r >= 0 && !src)
        r = connect_board(c, true, cfg_size);

    struct esp_flash_opts fo;
    esp_flash_opts_init(&fo);
    fo.compress = !opt->no_compress;
    fo.verify = !opt->no_verify;
    fo.diff = !opt->no_diff;
    fo.erase_all = opt->erase_all;
    fo.skip_image_check = opt->force;
    if (r >= 0)
        r = flash_codes(c, &fo);
    if (r >= 0) {
        patch_bootloader(c, files, n, &fo);
        if (opt->zopfli)
            r = zopfli_files(c, files, n);
        regions = make_regions(files, n);
        verified = calloc(n ? n : 1, sizeof(*verified));
        if (!regions || !verified)
            r = esp_error_set(&c->err, -ENOMEM, ESP_STAGE_PREPARE, NULL, "out of memory");
    }

    uint64_t bytes = 0;
    for (size_t i = 0; i < n; i++)
        bytes += files[i].len;
    if (r >= 0) {
        uint64_t wire0 = esp_loader_stats(c->s.l)->wire_tx;
        uint64_t skipped0 = esp_loader_stats(c->s.l)->skipped_bytes;
        c->out->write_seen = false;
        c->out->verified = verified;
        c->out->n_verified = n;
        double t0 = cli_now();
        r = esp_loader_flash(c->s.l, regions, n, &fo, &c->err);
        if (r == -EINVAL && c->err.stage == ESP_STAGE_PREPARE && !opt->force &&
            image_check_refuses(c, files, n))
            advise_force(&c->err);
        if (r == -ENOTSUP && c->err.stage == ESP_STAGE_ERASE && fo.erase_all)
            advise_chip_erase(c, true);
        double t_end = cli_now();
        double secs = c->out->write_seen ? c->out->write_t1 - t0 : t_end - t0;
        uint64_t wire = esp_loader_stats(c->s.l)->wire_tx - wire0;
        uint64_t skipped = esp_loader_stats(c->s.l)->skipped_bytes - skipped0;
        json_object_object_add(c->res, "bytes", json_object_new_int64((int64_t)bytes));
        json_object_object_add(c->res, "wire_bytes", json_object_new_int64((int64_t)wire));
        json_object_object_add(c->res, "skipped_bytes", json_object_new_int64((int64_t)skipped));
        json_object_object_add(c->res, "diff", json_object_new_boolean(fo.diff));
        cli_json_add_double(c->res, "seconds", secs, 6);
        cli_json_add_double(c->res, "kbps", kbit_per_s(bytes, secs), 1);
        cli_json_add_double(c->res, "total_seconds", t_end - t0, 6);
        /* Same rule as the engine: compressed writes need the stub or a ROM that has them. */
        const struct esp_chip_info *ci = chip_info(c);
        bool compressed = fo.compress && !ci->secure_download_mode &&
                          (ci->stub_running || ci->chip->rom_has_compress);
        json_object_object_add(c->res, "compressed", json_object_new_boolean(compressed));
        json_object_object_add(c->res, "erase_all", json_object_new_boolean(fo.erase_all));
        c->out->verified = NULL;
        c->out->n_verified = 0;
        if (r >= 0) {
            char hex[33];
            for (size_t i = 0; i < n; i++) {
                cli_hex(files[i].md5, 16, hex);
                if (verified[i])
                    cli_logf(c->out, ESP_LOG_INFO, "Verified region at 0x%" PRIx32 " (MD5 %s)",
                             files[i].offset, hex);
            }
            char skip_note[96] = "";
            if (skipped)
                snprintf(skip_note, sizeof(skip_note),
                         "; %" PRIu64 " bytes already on flash, not sent", skipped);
            cli_logf(c->out, ESP_LOG_INFO,
                     "Flashed %" PRIu64 " bytes in %zu region%s in %.1f s (%.1f kbit/s effective, "
                     "%" PRIu64 " bytes on the wire%s)",
                     bytes, n, n == 1 ? "" : "s", secs, kbit_per_s(bytes, secs), wire, skip_note);
            if (ci->stub_fallback) {
                cli_logf(c->out, ESP_LOG_WARN, "%s", ESP_STUB_FALLBACK_WARNING);
                json_object *warn = json_object_new_array();
                json_object_array_add(warn, json_object_new_string(ESP_STUB_FALLBACK_WARNING));
                json_object_object_add(c->res, "warnings", warn);
            }
        }
    }
    add_regions_json(c, files, n, verified);
    if (r >= 0)
        r = cli_session_finish(&c->s, &c->err);

    free(verified);
    free(regions);
    cli_files_free(files, n);
    cli_from_free(src);
    c->opt = c->s.opt = orig_opt; /* from_opt ends here */
    return r;
}

/* ---- verify ------------------------------------------------------------- */

static int cmd_verify(struct cmd *c)
{
    struct cli_file *files = NULL;
    size_t n = 0;
    struct esp_region *regions = NULL;
    bool *verified = NULL;

    int r = load_pairs(c, &files, &n);
    if (r >= 0)
        r = connect_board(c, true, 0);
    if (r >= 0) {
        regions = make_regions(files, n);
        verified = calloc(n ? n : 1, sizeof(*verified));
        if (!regions || !verified)
            r = esp_error_set(&c->err, -ENOMEM, ESP_STAGE_VERIFY, NULL, "out of memory");
    }
    /* Region by region, so every mismatch is reported, not just the first. */
    size_t mismatches = 0;
    for (size_t i = 0; r >= 0 && i < n; i++) {
        struct esp_error e;
        esp_error_clear(&e);
        char hex[33];
        cli_hex(files[i].md5, 16, hex);
        int v = esp_loader_verify(c->s.l, &regions[i], 1, &e);
        if (v >= 0) {
            verified[i] = true;
            cli_logf(c->out, ESP_LOG_INFO, "Verified region at 0x%" PRIx32 " (MD5 %s)",
                     files[i].offset, hex);
        } else if (v == -EBADMSG) {
            cli_logf(c->out, ESP_LOG_WARN, "flash at 0x%" PRIx32 " differs from '%s' (MD5 %s)",
                     files[i].offset, files[i].path, hex);
            if (mismatches++ == 0)
                c->err = e;
        } else {
            c->err = e;
            r = v;
        }
    }
    if (r >= 0 && mismatches) {
        r = -EBADMSG;
        if (c->err.stage != ESP_STAGE_VERIFY)
            c->err.stage = ESP_STAGE_VERIFY;
        if (mismatches > 1) {
            char first[sizeof(c->err.message)];
            snprintf(first, sizeof(first), "%s", c->err.message);
            snprintf(c->err.message, sizeof(c->err.message),
                     "%zu of %zu regions differ; first: %.180s", mismatches, n, first);
        }
    }
    add_regions_json(c, files, n, verified);
    if (r >= 0)
        r = cli_session_finish(&c->s, &c->err);
    free(verified);
    free(regions);
    cli_files_free(files, n);
    return r;
}

/* ---- erase -------------------------------------------------------------- */

static int cmd_erase(struct cmd *c)
{
    const struct cli_options *opt = c->opt;
    uint32_t offset = 0, size = 0;
    if (opt->region) {
        if (cli_parse_u32(opt->args[0], &offset) != 0)
            return usage_fail(c, "bad offset '%s' (decimal or 0x-hex)", opt->args[0]);
        if (cli_parse_u32(opt->args[1], &size) != 0 || size == 0)
            return usage_fail(c, "bad size '%s' (decimal or 0x-hex, not 0)", opt->args[1]);
        if (offset % SECTOR || size % SECTOR)
            return esp_error_set(&c->err, -EINVAL, ESP_STAGE_PREPARE,
                                 "flash is erased in 4096-byte sectors: use multiples of 0x1000",
                                 "erase region 0x%" PRIx32 " + 0x%" PRIx32 " is not sector-aligned",
                                 offset, size);
        if ((uint64_t)offset + size > UINT32_MAX)
            return usage_fail(c, "erase region goes past 4 GB");
    }
    int r = connect_board(c, true, 0);
    if (r < 0)
        return r;
    double t0 = cli_now();
    if (opt->region) {
        cli_logf(c->out, ESP_LOG_INFO, "Erasing 0x%" PRIx32 " bytes at 0x%08" PRIx32 "...", size,
                 offset);
        r = esp_loader_erase_region(c->s.l, offset, size, &c->err);
        json_object *reg = json_object_new_object();
        json_object_object_add(reg, "offset", json_object_new_int64(offset));
        json_object_object_add(reg, "size", json_object_new_int64(size));
        json_object_object_add(c->res, "region", reg);
    } else {
        cli_logf(c->out, ESP_LOG_INFO, "Erasing the whole flash (this may take a while)...");
        r = esp_loader_erase_all(c->s.l, &c->err);
        if (r == -ENOTSUP)
            advise_chip_erase(c, false);
    }
    double secs = cli_now() - t0;
    json_object_object_add(c->res, "erase_all", json_object_new_boolean(!opt->region));
    cli_json_add_double(c->res, "seconds", secs, 6);
    if (r < 0)
        return r;
    cli_logf(c->out, ESP_LOG_INFO, "Erased in %.1f s", secs);
    return cli_session_finish(&c->s, &c->err);
}

/* ---- read --------------------------------------------------------------- */

static int write_all(int fd, const uint8_t *buf, size_t len)
{
    while (len) {
        ssize_t w = write(fd, buf, len);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        buf += w;
        len -= (size_t)w;
    }
    return 0;
}

static int read_to_file(struct cmd *c, uint32_t offset, uint32_t size, const char *path, int fd)
{
    int r = connect_board(c, true, 0);
    if (r < 0)
        return r;
    uint8_t *buf = malloc(size);
    if (!buf)
        return esp_error_set(&c->err, -ENOMEM, ESP_STAGE_READ, NULL, "out of memory");
    double t0 = cli_now();
    r = esp_loader_read_flash(c->s.l, offset, size, buf, &c->err);
    double secs = cli_now() - t0;
    if (r >= 0) {
        if (ftruncate(fd, 0) != 0 || (r = write_all(fd, buf, size)) < 0 || fsync(fd) != 0) {
            int e = r < 0 ? -r : errno;
            r = esp_error_set(&c->err, -e, ESP_STAGE_READ, "check free disk space and permissions",
                              "cannot write '%s': %s", path, strerror(e));
        }
    }
    if (r >= 0) {
        uint8_t md5[16];
        char hex[33];
        cli_md5(buf, size, md5);
        cli_hex(md5, 16, hex);
        json_object_object_add(c->res, "offset", json_object_new_int64(offset));
        json_object_object_add(c->res, "size", json_object_new_int64(size));
        json_object_object_add(c->res, "file", json_object_new_string(path));
        json_object_object_add(c->res, "md5", json_object_new_string(hex));
        cli_json_add_double(c->res, "seconds", secs, 6);
        cli_json_add_double(c->res, "kbps", kbit_per_s(size, secs), 1);
        cli_logf(c->out, ESP_LOG_INFO,
                 "Read 0x%" PRIx32 " bytes at 0x%08" PRIx32 " into '%s' in %.1f s (MD5 %s)", size,
                 offset, path, secs, hex);
    }
    free(buf);
    if (r >= 0)
        r = cli_session_finish(&c->s, &c->err);
    return r;
}

static int cmd_read(struct cmd *c)
{
    const struct cli_options *opt = c->opt;
    uint32_t offset = 0, size = 0;
    const char *path = opt->args[2];
    if (cli_parse_u32(opt->args[0], &offset) != 0)
        return usage_fail(c, "bad offset '%s' (decimal or 0x-hex)", opt->args[0]);
    if (cli_parse_u32(opt->args[1], &size) != 0 || size == 0)
        return usage_fail(c, "bad size '%s' (decimal or 0x-hex, not 0)", opt->args[1]);
    if ((uint64_t)offset + size > UINT32_MAX)
        return usage_fail(c, "read region goes past 4 GB");

    /* Open the output first so a bad path fails before the board is touched; a file
     * we created is removed again if the read fails. An existing file is only
     * replaced once the data is in hand. */
    bool created = true;
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0 && errno == EEXIST) {
        created = false;
        fd = open(path, O_WRONLY | O_CLOEXEC);
    }
    if (fd < 0)
        return esp_error_set(&c->err, -errno, ESP_STAGE_PREPARE,
                             "check the output path and its permissions",
                             "cannot open '%s' for writing: %s", path, strerror(errno));
    int r = read_to_file(c, offset, size, path, fd);
    close(fd);
    if (r < 0 && created)
        unlink(path);
    return r;
}

/* ---- info, reset, version ----------------------------------------------- */

static void print_info(const struct esp_chip_info *ci)
{
    char buf[64];
    printf("Chip:               %s\n", ci->chip ? ci->chip->name : "unknown");
    printf("Revision:           %s\n", cli_revision_str(ci->revision, buf, sizeof(buf)));
    if (ci->mac_valid)
        printf("MAC:                %02x:%02x:%02x:%02x:%02x:%02x\n", ci->mac[0], ci->mac[1],
               ci->mac[2], ci->mac[3], ci->mac[4], ci->mac[5]);
    else
        printf("MAC:                unknown\n");
    if (ci->xtal_mhz)
        printf("Crystal:            %u MHz\n", ci->xtal_mhz);
    else
        printf("Crystal:            unknown\n");
    if (ci->flash_id)
        printf("Flash ID:           0x%06" PRIx32 " (manufacturer 0x%02" PRIx32
               ", device 0x%02" PRIx32 "%02" PRIx32 ")\n",
               ci->flash_id, ci->flash_id & 0xff, (ci->flash_id >> 8) & 0xff,
               (ci->flash_id >> 16) & 0xff);
    else
        printf("Flash ID:           unknown\n");
    printf("Flash size:         %s\n",
           ci->flash_size ? cli_size_str(ci->flash_size, buf, sizeof(buf)) : "unknown");
    if (ci->security_info_valid) {
        printf("Secure boot:        %s\n", ci->secure_boot ? "enabled" : "disabled");
        printf("Flash encryption:   %s\n", ci->flash_encryption ? "enabled" : "disabled");
        printf("Secure download:    %s\n", ci->secure_download_mode ? "enabled" : "disabled");
        printf("Security flags:     0x%08" PRIx32 "\n", ci->security_flags);
    } else {
        printf("Security info:      not available on this chip/loader\n");
    }
    if (ci->usb_jtag)
        printf("USB:                USB-Serial/JTAG\n");
    printf("Stub:               %s\n", ci->stub_running ? "yes" : "no");
    printf("Baud:               %" PRIu32 "\n", ci->baud);
    fflush(stdout);
}

static void add_security_json(struct cmd *c, const struct esp_chip_info *ci)
{
    json_object *sec = json_object_new_object();
    json_object_object_add(sec, "valid", json_object_new_boolean(ci->security_info_valid));
    json_object_object_add(sec, "secure_boot", json_object_new_boolean(ci->secure_boot));
    json_object_object_add(sec, "flash_encryption", json_object_new_boolean(ci->flash_encryption));
    json_object_object_add(sec, "secure_download_mode",
                           json_object_new_boolean(ci->secure_download_mode));
    json_object_object_add(
        sec, "flags", ci->security_info_valid ? json_object_new_int64(ci->security_flags) : NULL);
    json_object_object_add(sec, "flash_crypt_cnt",
                           ci->security_info_valid ? json_object_new_int(ci->flash_crypt_cnt)
                                                   : NULL);
    json_object_object_add(c->res, "security", sec);
}

static int cmd_info(struct cmd *c)
{
    int r = connect_board(c, true, 0);
    if (r < 0)
        return r;
    const struct esp_chip_info *ci = chip_info(c);
    add_security_json(c, ci);
    if (!c->out->json)
        print_info(ci);
    return cli_session_finish(&c->s, &c->err);
}

static int cmd_reset(struct cmd *c)
{
    int r;
    if (c->opt->before != ESP_BEFORE_NO_RESET_NO_SYNC)
        r = connect_board(c, false, 0);
    else /* nothing to talk to first: just pulse the reset as asked */
        r = cli_session_open(&c->s, 0, &c->err);
    if (r < 0)
        return r;
    return cli_session_finish(&c->s, &c->err);
}

static int cmd_version(struct cmd *c)
{
    json_object_object_add(c->res, "version", json_object_new_string(ESPSTATION_VERSION));
    if (!c->out->json)
        printf("espstation %s\n", ESPSTATION_VERSION);
    return 0;
}

int cli_cmd_run(const struct cli_options *opt, int cancel_fd)
{
    struct cli_output out;
    cli_output_init(&out, opt, opt->command);
    struct cmd c;
    memset(&c, 0, sizeof(c));
    c.opt = opt;
    c.out = &out;
    cli_session_init(&c.s, opt, &out, cancel_fd);
    esp_error_clear(&c.err);
    c.res = json_object_new_object();

    const char *cmd = opt->command;
    int r;
    if (strcmp(cmd, "info") == 0)
        r = cmd_info(&c);
    else if (strcmp(cmd, "flash") == 0)
        r = cmd_flash(&c);
    else if (strcmp(cmd, "verify") == 0)
        r = cmd_verify(&c);
    else if (strcmp(cmd, "erase") == 0)
        r = cmd_erase(&c);
    else if (strcmp(cmd, "read") == 0)
        r = cmd_read(&c);
    else if (strcmp(cmd, "reset") == 0)
        r = cmd_reset(&c);
    else if (strcmp(cmd, "version") == 0)
        r = cmd_version(&c);
    else
        r = usage_fail(&c, "unknown command '%s'", cmd);
    if (r >= 0 && strcmp(cmd, "reset") == 0)
        json_object_object_add(c.res, "after",
                               json_object_new_string(esp_after_to_string(opt->after)));
    return conclude(&c, r);
}
