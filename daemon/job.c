/*
 * job: the worker thread of one flash job (see job.h).
 *
 * The worker keeps its own view of the stage for messages; the engine's
 * esp_error carries the precise stage of a failure. Progress messages are
 * throttled to about five a second per job, phase changes are sent at once.
 */
#include "job.h"

#include <errno.h>
#include <poll.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "esp_image.h"
#include "loop.h"

#define PROGRESS_EVERY_MS 200

/* ---- firmware references --------------------------------------------------- */

struct job_firmware *job_firmware_new(struct catalog_set *set)
{
    struct job_firmware *fw = calloc(1, sizeof(*fw));
    if (!fw) {
        catalog_free_set(set);
        return NULL;
    }
    atomic_init(&fw->refs, 1);
    fw->set = set;
    snprintf(fw->ref, sizeof(fw->ref), "%s@%s", set->name, set->version);
    /* The board record's md5: the app region's (the file as stored), else the
     * last region's: what a technician compares with `md5sum app.bin`. */
    size_t pick = set->n_regions ? set->n_regions - 1 : 0;
    for (size_t i = 0; i < set->n_regions; i++)
        if (set->regions[i].kind == CATALOG_KIND_APP)
            pick = i;
    if (set->n_regions)
        snprintf(fw->md5, sizeof(fw->md5), "%s", set->regions[pick].md5);
    return fw;
}

struct job_firmware *job_firmware_ref(struct job_firmware *fw)
{
    if (fw)
        atomic_fetch_add(&fw->refs, 1);
    return fw;
}

void job_firmware_unref(struct job_firmware *fw)
{
    if (fw && atomic_fetch_sub(&fw->refs, 1) == 1) {
        catalog_free_set(fw->set);
        free(fw);
    }
}

const char *job_msg_kind_to_string(enum job_msg_kind k)
{
    switch (k) {
    case JOB_MSG_LOG:
        return "log";
    case JOB_MSG_PHASE:
        return "phase";
    case JOB_MSG_PROGRESS:
        return "progress";
    case JOB_MSG_IDENTIFIED:
        return "identified";
    case JOB_MSG_FLASH_INFO:
        return "flash_info";
    case JOB_MSG_CAPTURE:
        return "capture";
    case JOB_MSG_DONE:
        return "done";
    }
    return "unknown";
}

void job_msg_free(struct job_msg *m)
{
    free(m);
}

/* ---- expected MD5 -------------------------------------------------------------- */

int job_region_md5(const struct esp_chip_desc *chip, bool secure, const struct esp_region *r,
                   const struct esp_flash_opts *opts, uint8_t md5[16], uint32_t *len4)
{
    size_t n = (r->len + 3) / 4 * 4;
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf)
        return -ENOMEM;
    if (r->len)
        memcpy(buf, r->data, r->len);
    memset(buf + r->len, 0xFF, n - r->len);
    if (chip && r->offset == chip->bootloader_offset && r->len && r->data[0] == ESP_IMAGE_MAGIC &&
        (opts->flash_mode != -1 || opts->flash_size_code != -1 || opts->flash_freq_code != -1) &&
        !secure)
        esp_image_patch_header(buf, n, chip->chip == ESP_CHIP_ESP8266, opts->flash_mode,
                               opts->flash_size_code, opts->flash_freq_code);
    unsigned int mlen = 16;
    int ok = EVP_Digest(buf, n, md5, &mlen, EVP_md5(), NULL);
    free(buf);
    *len4 = (uint32_t)n;
    return ok == 1 ? 0 : -ENOMEM;
}

/* ---- lifecycle -------------------------------------------------------------------- */

struct job *job_new(const struct job_params *p, struct loop *loop, int64_t id)
{
    struct job *j = calloc(1, sizeof(*j));
    if (!j)
        return NULL;
    j->params = *p;
    j->id = id;
    j->loop = loop;
    j->cancel_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (j->cancel_fd < 0) {
        int e = errno; /* EMFILE is not ENOMEM: the caller reports which */
        free(j);
        errno = e;
        return NULL;
    }
    j->done_msg = calloc(1, sizeof(*j->done_msg));
    if (!j->done_msg) {
        close(j->cancel_fd);
        free(j);
        errno = ENOMEM;
        return NULL;
    }
    pthread_mutex_init(&j->mu, NULL);
    pthread_cond_init(&j->cv, NULL);
    j->phase = BOARD_QUEUED;
    return j;
}

static void *job_main(void *arg);

int job_start(struct job *j)
{
    int rc = pthread_create(&j->thread, NULL, job_main, j);
    if (rc != 0)
        return -rc;
    j->started = true;
    return 0;
}

void job_cancel(struct job *j)
{
    uint64_t one = 1;
    if (write(j->cancel_fd, &one, sizeof(one)) < 0) {
        /* counter saturated: a cancel is already pending */
    }
    pthread_mutex_lock(&j->mu);
    j->cancelled = true;
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
}

void job_port_back(struct job *j, const char *uri)
{
    pthread_mutex_lock(&j->mu);
    snprintf(j->back_uri, sizeof(j->back_uri), "%s", uri);
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
}

/* Waits (at most ms) for job_port_back(); copies the uri to out, "" if none came. */
static void wait_port_back(struct job *j, int ms, char *out, size_t cap)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&j->mu);
    while (!j->back_uri[0] && !j->cancelled) {
        if (pthread_cond_timedwait(&j->cv, &j->mu, &until) != 0)
            break;
    }
    snprintf(out, cap, "%s", j->back_uri);
    j->back_uri[0] = '\0';
    pthread_mutex_unlock(&j->mu);
}

void job_plan_free_extra(struct job_plan *p)
{
    for (size_t i = 0; i < p->n_extra; i++)
        free(p->extra[i].data);
    p->n_extra = 0;
}

void job_reply(struct job *j, struct job_plan *plan)
{
    pthread_mutex_lock(&j->mu);
    j->plan = *plan;
    plan->fw = NULL;
    plan->n_extra = 0; /* the data moved with it */
    j->have_plan = true;
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
}

void job_free(struct job *j)
{
    if (!j)
        return;
    if (j->started)
        pthread_join(j->thread, NULL);
    job_firmware_unref(j->plan.fw);
    job_plan_free_extra(&j->plan);
    free(j->done_msg);
    close(j->cancel_fd);
    pthread_cond_destroy(&j->cv);
    pthread_mutex_destroy(&j->mu);
    free(j);
}

/* ---- worker ------------------------------------------------------------------------ */

struct worker {
    struct job *j;
    struct transport *t;
    struct esp_loader *l;
    enum board_phase phase;
    char stage[RECORDS_STATE_LEN];
    int64_t last_progress_ms;
    int64_t write_t0_ms;     /* first write progress */
    int64_t write_ms;        /* time spent writing + verifying */
    uint64_t bytes_total;    /* sum of region sizes */
    uint64_t bytes_before;   /* finished regions */
    unsigned regions_before; /* how many regions bytes_before holds */
    struct job_plan extra;   /* the plan's per-board regions (extra[] only), freed at the end */
    char boot_pattern[512];  /* the plan's, else params.boot_pattern */
    char note[256];          /* what the phase waits for from the technician ("" none) */
    enum esp_after after;    /* params.after, or the set's esptool_args.after (follow_set) */
};

static int64_t mono_ms(void)
{
    return loop_now_ms();
}

static struct job_msg *msg_new(struct worker *w, enum job_msg_kind kind)
{
    struct job_msg *m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    m->kind = kind;
    m->job = w->j;
    m->phase = w->phase;
    snprintf(m->stage, sizeof(m->stage), "%s", w->stage);
    snprintf(m->note, sizeof(m->note), "%s", w->note);
    return m;
}

static void post(struct worker *w, struct job_msg *m)
{
    if (m && loop_post(w->j->loop, m) < 0)
        free(m);
}

static void wlog(struct worker *w, enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void wlog(struct worker *w, enum log_level level, const char *fmt, ...)
{
    struct job_msg *m = msg_new(w, JOB_MSG_LOG);
    if (!m)
        return;
    m->level = level;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m->text, sizeof(m->text), fmt, ap);
    va_end(ap);
    post(w, m);
}

/* A phase, with what it waits for from the technician (note, "" none: shown on the slot). */
static void set_phase_note(struct worker *w, enum board_phase phase, const char *stage,
                           const char *note)
{
    if (w->phase == phase && strcmp(w->stage, stage) == 0 && strcmp(w->note, note) == 0)
        return;
    w->phase = phase;
    snprintf(w->stage, sizeof(w->stage), "%s", stage);
    snprintf(w->note, sizeof(w->note), "%s", note);
    post(w, msg_new(w, JOB_MSG_PHASE));
}

static void set_phase(struct worker *w, enum board_phase phase, const char *stage)
{
    set_phase_note(w, phase, stage, "");
}

static void engine_log(void *ctx, enum esp_log_level level, const char *msg)
{
    static const enum log_level map[] = {
        [ESP_LOG_ERROR] = LOG_LEVEL_ERROR,
        [ESP_LOG_WARN] = LOG_LEVEL_WARN,
        [ESP_LOG_INFO] = LOG_LEVEL_INFO,
        [ESP_LOG_DEBUG] = LOG_LEVEL_DEBUG,
    };
    struct worker *w = ctx;
    /* The engine's errors are reported with the job's result; keep them as warnings here
     * so a failure is logged once, where the station decides about it. */
    enum log_level lv = (unsigned)level <= ESP_LOG_DEBUG ? map[level] : LOG_LEVEL_DEBUG;
    if (lv == LOG_LEVEL_ERROR)
        lv = LOG_LEVEL_WARN;
    if (lv == LOG_LEVEL_DEBUG)
        return; /* per-frame chatter stays out of the job log */
    wlog(w, lv, "%s", msg);
}

static void engine_progress(void *ctx, const struct esp_progress *p)
{
    struct worker *w = ctx;
    int64_t now = mono_ms();
    if (p->stage == ESP_STAGE_WRITE) {
        if (!w->write_t0_ms)
            w->write_t0_ms = now;
        set_phase(w, BOARD_FLASHING, "write");
    } else if (p->stage == ESP_STAGE_VERIFY) {
        set_phase(w, BOARD_VERIFYING, "verify");
    } else if (p->stage == ESP_STAGE_ERASE) {
        set_phase(w, BOARD_FLASHING, "erase");
    }
    bool region_end = p->stage == ESP_STAGE_WRITE && p->done == p->total;
    /* A region's end may be reported more than once (last block, then the
     * write barrier): count each region once. */
    if (region_end && p->region_index + 1 < p->region_count &&
        p->region_index >= w->regions_before) {
        w->bytes_before += p->total;
        w->regions_before = p->region_index + 1;
    }
    if (!region_end && now - w->last_progress_ms < PROGRESS_EVERY_MS)
        return;
    w->last_progress_ms = now;
    struct job_msg *m = msg_new(w, JOB_MSG_PROGRESS);
    if (!m)
        return;
    uint64_t done =
        p->stage == ESP_STAGE_WRITE
            ? (region_end && p->region_index + 1 < p->region_count ? w->bytes_before
                                                                   : w->bytes_before + p->done)
            : w->bytes_total;
    m->done = done < w->bytes_total || !w->bytes_total ? done : w->bytes_total;
    m->total = w->bytes_total;
    m->wire = p->wire_bytes;
    int64_t ms = w->write_t0_ms ? now - w->write_t0_ms : 0;
    m->kbps = ms > 0 ? (double)done * 8.0 / (double)ms : 0;
    post(w, m);
}

/* Waits for the loop's plan; -ECANCELED when cancelled first. */
static int wait_plan(struct job *j, struct job_plan *out)
{
    pthread_mutex_lock(&j->mu);
    while (!j->have_plan && !j->cancelled)
        pthread_cond_wait(&j->cv, &j->mu);
    int rc = j->cancelled ? -ECANCELED : 0;
    if (!rc) {
        *out = j->plan;
        j->plan.fw = NULL; /* the worker holds the reference now */
        j->plan.n_extra = 0;
    }
    pthread_mutex_unlock(&j->mu);
    return rc;
}

#define OPEN_SETTLE_MS 2000
#define OPEN_SETTLE_STEP_MS 10 /* udev usually settles a node within tens of ms */

static bool is_cancelled(struct job *j)
{
    pthread_mutex_lock(&j->mu);
    bool c = j->cancelled;
    pthread_mutex_unlock(&j->mu);
    return c;
}

static void post_info(struct worker *w, enum job_msg_kind kind)
{
    struct job_msg *m = msg_new(w, kind);
    if (!m)
        return;
    m->info = *esp_loader_info(w->l);
    post(w, m);
}

/* Compares every region's flash MD5 with what would be written. 1 all equal, 0 not, <0 error.
 * Each flash MD5 read is kept in got[i] and lent to regs[i].flash_md5, so the engine's
 * re-flash of changed sectors (opts->diff) does not ask for it again. */
static int compare_regions(struct worker *w, struct esp_region *regs, size_t n,
                           const struct esp_flash_opts *opts, uint8_t (*got)[16],
                           struct esp_error *err)
{
    const struct esp_chip_info *ci = esp_loader_info(w->l);
    bool secure = ci->secure_boot || ci->secure_download_mode;
    for (size_t i = 0; i < n; i++) {
        uint8_t want[16];
        uint32_t len4;
        int rc = job_region_md5(ci->chip, secure, &regs[i], opts, want, &len4);
        if (rc < 0)
            return esp_error_set(err, rc, ESP_STAGE_PREPARE, NULL, "out of memory");
        if (ci->flash_size && (uint64_t)regs[i].offset + len4 > ci->flash_size)
            return 0; /* let the engine's safety check report it */
        rc = esp_loader_flash_md5(w->l, regs[i].offset, len4, got[i], err);
        if (rc == -ENOTSUP) {
            esp_error_clear(err);
            wlog(w, LOG_LEVEL_INFO, "cannot read the flash MD5 here (ROM without stub): flashing");
            return 0;
        }
        if (rc < 0)
            return rc;
        regs[i].flash_md5 = got[i];
        if (memcmp(want, got[i], 16) != 0) {
            wlog(w, LOG_LEVEL_INFO, "region %s at 0x%X differs from the flash: flashing",
                 regs[i].name ? regs[i].name : "?", regs[i].offset);
            return 0;
        }
    }
    return 1;
}

/* Boot check: watch console lines for the pattern. 0 matched, <0 with err. */
static int boot_check(struct worker *w, struct esp_error *err)
{
    const struct job_params *p = &w->j->params;
    regex_t re;
    int rrc = regcomp(&re, w->boot_pattern[0] ? w->boot_pattern : p->boot_pattern, REG_EXTENDED);
    if (rrc != 0)
        return esp_error_set(err, -EINVAL, ESP_STAGE_FINISH,
                             "fix boot_check.pattern in the profile",
                             "boot check pattern does not compile");
    transport_set_baud(w->t, p->boot_baud);
    char line[512];
    size_t len = 0;
    char last[512] = "";
    /* Bytes a text console does not send: many of them among the last ones read =
     * the console runs at another baud. */
    enum { TAIL = 128 };
    bool tail_odd[TAIL] = {false};
    size_t seen = 0, odd = 0;
    int64_t deadline = mono_ms() + p->boot_timeout_ms;
    int rc = -ETIMEDOUT;
    bool reopened = false;
    for (;;) {
        int64_t left = deadline - mono_ms();
        if (left <= 0)
            break;
        uint8_t buf[256];
        int n = transport_read(w->t, buf, sizeof(buf), (int)(left > 200 ? 200 : left));
        if (n == -ENODEV && (p->usb_jtag || esp_loader_info(w->l)->usb_jtag) && !reopened) {
            /* USB-Serial/JTAG re-enumerates on reset: follow it. */
            wlog(w, LOG_LEVEL_INFO, "port re-enumerating after reset: reopening");
            reopened = true;
            /* It comes back under another name (ttyACM0 -> ttyACM1): the
             * station hands the new uri over (job_port_back); a name that
             * stays (by-path link, pty) is simply reopened. */
            char back[256];
            wait_port_back(w->j, p->reenum_grace_ms, back, sizeof(back));
            if (back[0] && strcmp(back, w->t->uri) != 0) {
                wlog(w, LOG_LEVEL_INFO, "reopening the port as %s", back);
                n = transport_reopen_at(w->t, back, 1000);
            } else {
                n = transport_reopen(w->t, back[0] ? 1000 : 200);
            }
            if (n == 0) {
                transport_set_baud(w->t, p->boot_baud);
                continue;
            }
        }
        if (n < 0) {
            rc = n;
            break;
        }
        for (int i = 0; i < n; i++) {
            char c = (char)buf[i];
            bool o = buf[i] >= 0x7f || (buf[i] < 0x20 && c != '\n' && c != '\r' && c != '\t');
            odd += (size_t)o - (size_t)tail_odd[seen % TAIL];
            tail_odd[seen++ % TAIL] = o;
            if (c == '\n' || c == '\r' || len + 1 >= sizeof(line)) {
                line[len] = '\0';
                if (len == 0)
                    continue;
                len = 0;
                snprintf(last, sizeof(last), "%s", line);
                regmatch_t mt[JOB_MAX_CAPTURE + 1];
                if (regexec(&re, line, JOB_MAX_CAPTURE + 1, mt, 0) == 0) {
                    wlog(w, LOG_LEVEL_INFO, "boot check matched: %s", line);
                    for (size_t g = 0; g < p->n_capture && g < JOB_MAX_CAPTURE; g++) {
                        regmatch_t *m = &mt[g + 1];
                        if (m->rm_so < 0)
                            continue;
                        struct job_msg *cm = msg_new(w, JOB_MSG_CAPTURE);
                        if (!cm)
                            continue;
                        snprintf(cm->name, sizeof(cm->name), "%s", p->capture[g]);
                        snprintf(cm->value, sizeof(cm->value), "%.*s", (int)(m->rm_eo - m->rm_so),
                                 line + m->rm_so);
                        wlog(w, LOG_LEVEL_INFO, "boot check %s = %s", cm->name, cm->value);
                        post(w, cm);
                    }
                    regfree(&re);
                    return 0;
                }
                continue;
            }
            line[len++] = (unsigned char)c >= 0x20 && c != 0x7f ? c : ' ';
        }
    }
    regfree(&re);
    size_t tail = seen < TAIL ? seen : TAIL;
    if (rc == -ETIMEDOUT && tail >= 32 && odd * 4 >= tail)
        return esp_error_set(err, -ETIMEDOUT, ESP_STAGE_FINISH,
                             "set the profile's boot_check.baud to the rate the firmware prints "
                             "at (e.g. 74880 for ESP8266 boot ROM output, or the app's "
                             "Serial.begin rate)",
                             "boot check: pattern not seen within %d ms; console output looks "
                             "garbled at %u baud (%zu of the last %zu bytes are not text)",
                             p->boot_timeout_ms, p->boot_baud, odd, tail);
    if (rc == -ETIMEDOUT)
        return esp_error_set(
            err, -ETIMEDOUT, ESP_STAGE_FINISH,
            "check that the firmware prints the expected line at the console baud; "
            "check the power supply and the flash contents",
            "boot check: pattern not seen within %d ms%s%s", p->boot_timeout_ms,
            last[0] ? "; last console line: " : " (no console output)", last);
    return esp_error_set_if_unset(err, rc, ESP_STAGE_FINISH, NULL, "boot check: %s",
                                  esp_errno_to_string(rc));
}

static enum esp_after after_for(const struct worker *w)
{
    const struct esp_chip_info *ci = esp_loader_info(w->l);
    /* ESP8266: a real hard reset, always (its first OTA fails otherwise). */
    if (ci->chip && ci->chip->chip == ESP_CHIP_ESP8266)
        return ESP_AFTER_HARD_RESET;
    return w->after;
}

/*
 * The firmware set's esptool_args (a build's extra_esptool_args, docs/CONFIG.md), where the
 * profile (or the request) does not fix the same thing: ROM loader only, and how the board is
 * left. Said in the job's log.
 */
static void follow_set(struct worker *w, const struct job_firmware *fw)
{
    const struct job_params *p = &w->j->params;
    const struct catalog_esptool_args *ea = &fw->set->esptool_args;
    char said[160] = "";
    size_t n = 0;
    if (ea->has_stub && !p->stub_fixed && ea->stub != p->stub) {
        esp_loader_set_use_stub(w->l, ea->stub);
        n += (size_t)snprintf(said + n, sizeof(said) - n, "%s",
                              ea->stub ? "the flasher stub" : "ROM loader only (no stub)");
    }
    if (ea->has_after && !p->after_fixed && ea->after != w->after) {
        w->after = ea->after;
        snprintf(said + n, sizeof(said) - n, "%sleave %s", n ? ", " : "",
                 esp_after_to_string(ea->after));
    }
    if (said[0])
        wlog(w, LOG_LEVEL_INFO, "%s asks for %s (esptool_args of the build)", fw->ref, said);
}

/* esp_loader_start for a job: a stub that did not start where no reset could lead
 * back to the ROM loader gets the station's way of flashing without it in its advice. */
static int start_loader(struct worker *w, struct esp_error *err)
{
    int rc = esp_loader_start(w->l, err);
    if (rc < 0 && err->stage == ESP_STAGE_STUB && rc != -ENODEV && rc != -ECANCELED &&
        err->advice[0]) {
        size_t n = strlen(err->advice);
        snprintf(err->advice + n, sizeof(err->advice) - n,
                 " (set \"stub\": false in the profile for this board)");
    }
    return rc;
}

static int do_reset(struct worker *w, struct esp_error *err)
{
    set_phase(w, BOARD_RESETTING, "finish");
    enum esp_after a = after_for(w);
    int rc = esp_loader_reset(w->l, a, err);
    /* Without modem lines the engine already said it could not reset: say nothing else. */
    bool lines = w->t && (w->t->caps & TRANSPORT_CAP_MODEM_LINES);
    if (rc == 0 && (lines || a != ESP_AFTER_HARD_RESET))
        wlog(w, LOG_LEVEL_INFO, "left the loader: %s", esp_after_to_string(a));
    return rc;
}

/* The REST API's slot actions, after identify: info, reset, erase (see job_params.kind). */
static int run_action(struct worker *w, struct job_result *res)
{
    const struct job_params *p = &w->j->params;
    struct esp_error *err = &res->err;
    const struct esp_chip_info *ci = esp_loader_info(w->l);
    int rc;
    if (strcmp(p->kind, "info") == 0 || strcmp(p->kind, "erase") == 0) {
        set_phase(w, strcmp(p->kind, "erase") == 0 ? BOARD_FLASHING : BOARD_IDENTIFYING, "stub");
        rc = start_loader(w, err);
        if (rc < 0)
            return rc;
        post_info(w, JOB_MSG_FLASH_INFO);
        ci = esp_loader_info(w->l);
        wlog(w, LOG_LEVEL_INFO,
             "chip %s, MAC %02x:%02x:%02x:%02x:%02x:%02x, revision %d, crystal %u MHz, flash id "
             "0x%06X, flash size %u KiB%s%s",
             ci->chip ? ci->chip->name : "unknown", ci->mac[0], ci->mac[1], ci->mac[2], ci->mac[3],
             ci->mac[4], ci->mac[5], ci->revision, ci->xtal_mhz, (unsigned)ci->flash_id,
             (unsigned)(ci->flash_size / 1024), ci->secure_boot ? ", secure boot" : "",
             ci->secure_download_mode ? ", secure download mode" : "");
    }
    if (strcmp(p->kind, "erase") == 0) {
        set_phase(w, BOARD_FLASHING, "erase");
        int64_t t0 = mono_ms();
        if (p->erase_region)
            rc = esp_loader_erase_region(w->l, p->erase_offset, p->erase_size, err);
        else
            rc = esp_loader_erase_all(w->l, err);
        if (rc < 0)
            return rc;
        if (p->erase_region)
            wlog(w, LOG_LEVEL_INFO, "erased 0x%X..0x%X in %.1f s", p->erase_offset,
                 p->erase_offset + p->erase_size, (double)(mono_ms() - t0) / 1000.0);
        else
            wlog(w, LOG_LEVEL_INFO, "erased the whole flash in %.1f s",
                 (double)(mono_ms() - t0) / 1000.0);
    } else if (strcmp(p->kind, "info") != 0 && strcmp(p->kind, "reset") != 0) {
        return esp_error_set(err, -EINVAL, ESP_STAGE_IDENTIFY, NULL, "unknown job kind '%s'",
                             p->kind);
    }
    set_phase(w, BOARD_RESETTING, "finish");
    rc = esp_loader_reset(w->l, ESP_AFTER_HARD_RESET, err);
    if (rc < 0)
        return rc;
    wlog(w, LOG_LEVEL_INFO, "hard reset: the board runs its application");
    set_phase(w, BOARD_RESETTING, "done");
    res->state = RECORDS_JOB_PASSED;
    return 0;
}

static int run(struct worker *w, struct job_result *res)
{
    struct job *j = w->j;
    const struct job_params *p = &j->params;
    struct esp_error *err = &res->err;

    set_phase(w, BOARD_CONNECTING, "open");
    /* A freshly plugged port can be announced before udev has created its node or
     * applied its permissions: retry "does not exist"/"permission denied" for up to
     * OPEN_SETTLE_MS before calling it a failure. */
    int rc;
    for (int waited = 0;; waited += OPEN_SETTLE_STEP_MS) {
        esp_error_clear(err);
        rc = transport_open(p->uri, 115200, &w->t, err);
        if (rc >= 0 || (rc != -ENOENT && rc != -EACCES) || waited >= OPEN_SETTLE_MS ||
            is_cancelled(j))
            break;
        struct pollfd pfd = {.fd = j->cancel_fd, .events = POLLIN};
        poll(&pfd, 1, OPEN_SETTLE_STEP_MS);
    }
    if (rc < 0) {
        w->t = NULL;
        return esp_error_set_if_unset(err, rc, ESP_STAGE_OPEN,
                                      "is the board plugged in? is another program using the port?",
                                      "cannot open %s: %s", p->uri, esp_errno_to_string(rc));
    }
    w->t->cancel_fd = j->cancel_fd;

    w->after = p->after;
    struct esp_loader_config cfg;
    esp_loader_config_init(&cfg);
    cfg.baud = p->baud;
    cfg.use_stub = p->stub;
    cfg.stub_dir = p->stub_dir[0] ? p->stub_dir : NULL;
    if (p->usb_jtag) /* the bridge table's reset style for the port (bridges.h) */
        cfg.before = ESP_BEFORE_USB_RESET;
    if (p->connect_attempts > 0)
        cfg.connect_attempts = p->connect_attempts;
    if (p->before == ESP_BEFORE_USB_RESET) {
        cfg.before = ESP_BEFORE_USB_RESET;
    } else if (p->before == ESP_BEFORE_NO_RESET || p->before == ESP_BEFORE_NO_RESET_NO_SYNC) {
        /* The build's lines must not be toggled: somebody puts the board in its loader (hold
         * BOOT, tap EN). The job syncs without touching DTR/RTS until the board answers, the
         * job is cancelled or the board leaves (as on a port without lines). no-reset-no-sync
         * syncs too: a loader that already talks answers a SYNC. */
        cfg.before = ESP_BEFORE_NO_RESET;
        cfg.connect_attempts = 0;
    }
    cfg.log = engine_log;
    cfg.log_ctx = w;
    cfg.progress = engine_progress;
    cfg.progress_ctx = w;
    w->l = esp_loader_new(w->t, &cfg);
    if (!w->l)
        return esp_error_set(err, -ENOMEM, ESP_STAGE_OPEN, NULL, "out of memory");

    if (cfg.before == ESP_BEFORE_NO_RESET) {
        /* Said on the slot (API "notice") until the board answers: the operator must act. */
        char note[sizeof(w->note)];
        snprintf(note, sizeof(note),
                 "waiting for the board to be put in its loader by hand (hold BOOT, tap EN): %s "
                 "asks not to be reset (before %s)",
                 p->before_set, esp_before_to_string(p->before));
        set_phase_note(w, BOARD_CONNECTING, "sync", note);
        wlog(w, LOG_LEVEL_NOTICE,
             "%s asks not to be reset into its loader (esptool_args before %s): waiting for the "
             "board to be put in it by hand (hold BOOT, tap EN); DTR/RTS are left alone",
             p->before_set, esp_before_to_string(p->before));
    } else {
        set_phase(w, BOARD_CONNECTING, "sync");
    }
    rc = esp_loader_connect(w->l, err);
    if (rc < 0)
        return rc;
    set_phase(w, BOARD_IDENTIFYING, "identify");
    rc = esp_loader_identify(w->l, err);
    if (rc < 0)
        return rc;
    post_info(w, JOB_MSG_IDENTIFIED);

    struct job_plan plan;
    memset(&plan, 0, sizeof(plan));
    rc = wait_plan(j, &plan);
    if (rc < 0)
        return esp_error_set(err, rc, ESP_STAGE_IDENTIFY, NULL, "cancelled");
    memcpy(w->extra.extra, plan.extra, sizeof(plan.extra)); /* freed by job_main */
    w->extra.n_extra = plan.n_extra;
    plan.n_extra = 0;
    snprintf(w->boot_pattern, sizeof(w->boot_pattern), "%s", plan.boot_pattern);
    if (p->kind[0] && strcmp(p->kind, "flash") != 0) {
        job_firmware_unref(plan.fw);
        return run_action(w, res);
    }
    if (!plan.fw) {
        /* Nothing to write: leave the board running its application. */
        rc = do_reset(w, err);
        if (rc < 0)
            return rc;
        res->state = plan.nofw_state;
        esp_error_set(err, plan.prepare_failed,
                      plan.prepare_failed ? ESP_STAGE_PREPARE : ESP_STAGE_IDENTIFY,
                      plan.advice[0] ? plan.advice : NULL, "%s", plan.message);
        set_phase(w, plan.nofw_state == RECORDS_JOB_SKIPPED ? BOARD_SKIPPED : BOARD_RESETTING,
                  "identify");
        return 1;
    }
    struct job_firmware *fw = plan.fw;
    const struct catalog_set *set = fw->set;
    follow_set(w, fw);
    snprintf(res->firmware, sizeof(res->firmware), "%s", fw->ref);
    snprintf(res->md5, sizeof(res->md5), "%s", fw->md5);
    for (size_t i = 0; i < set->n_regions; i++) {
        /* gzip OTA images are for network OTA only (docs/OTA.md, catalog.h) */
        const struct catalog_region *gz = &set->regions[i];
        if (!gz->gzip)
            continue;
        rc = esp_error_set(err, -EINVAL, ESP_STAGE_PREPARE,
                           "flash a set with the uncompressed .bin over serial; keep the gzip "
                           "set for network OTA (ota_firmware)",
                           "%s: %s (0x%x) is a gzip-compressed OTA image, which the ROM "
                           "cannot boot: not flashed over serial",
                           fw->ref, gz->file, gz->offset);
        job_firmware_unref(fw);
        return rc;
    }

    set_phase(w, BOARD_FLASHING, "stub");
    rc = start_loader(w, err);
    if (rc < 0) {
        job_firmware_unref(fw);
        return rc;
    }
    post_info(w, JOB_MSG_FLASH_INFO);

    struct esp_region regs[CATALOG_MAX_REGIONS + JOB_MAX_EXTRA];
    uint8_t flash_md5[CATALOG_MAX_REGIONS + JOB_MAX_EXTRA][16]; /* compare_regions' reads */
    size_t n = set->n_regions < CATALOG_MAX_REGIONS ? set->n_regions : CATALOG_MAX_REGIONS;
    w->bytes_total = 0;
    for (size_t i = 0; i < n; i++) {
        const struct catalog_region *cr = &set->regions[i];
        regs[i] = (struct esp_region){.offset = cr->offset,
                                      .data = cr->data,
                                      .len = cr->size,
                                      .zdata = cr->zdata,
                                      .zlen = cr->zsize,
                                      .name = cr->file};
        w->bytes_total += cr->size;
    }
    for (size_t i = 0; i < w->extra.n_extra; i++) {
        /* this board's own data (profile per_board): compressed by the engine */
        const struct job_extra *x = &w->extra.extra[i];
        regs[n++] = (struct esp_region){
            .offset = x->offset, .data = x->data, .len = x->len, .name = x->name};
        w->bytes_total += x->len;
    }
    struct esp_flash_opts opts;
    esp_flash_opts_init(&opts);
    opts.compress = p->compress;
    opts.verify = p->verify;
    opts.erase_all = p->erase_all;
    opts.diff = p->diff;
    opts.flash_mode = set->flash_mode;
    opts.flash_size_code = set->flash_size_code;
    opts.flash_freq_code = set->flash_freq_code;

    if (p->skip_if_same && !p->erase_all) {
        set_phase(w, BOARD_FLASHING, "compare");
        rc = compare_regions(w, regs, n, &opts, flash_md5, err);
        if (rc < 0) {
            job_firmware_unref(fw);
            return rc;
        }
        if (rc == 1) {
            wlog(w, LOG_LEVEL_INFO, "flash already holds %s (every region's MD5 matches)", fw->ref);
            job_firmware_unref(fw);
            rc = do_reset(w, err);
            if (rc < 0)
                return rc;
            res->state = RECORDS_JOB_SKIPPED;
            esp_error_set(err, 0, ESP_STAGE_VERIFY, NULL, "already carries %s (MD5 match)",
                          res->firmware);
            set_phase(w, BOARD_SKIPPED, "compare");
            res->bytes = 0;
            res->skipped_bytes = (int64_t)w->bytes_total;
            return 1;
        }
    }

    set_phase(w, BOARD_FLASHING, p->erase_all ? "erase" : "write");
    int64_t t0 = mono_ms();
    rc = esp_loader_flash(w->l, regs, n, &opts, err);
    int64_t ms = mono_ms() - (w->write_t0_ms ? w->write_t0_ms : t0);
    job_firmware_unref(fw);
    if (rc < 0)
        return rc;
    res->bytes = (int64_t)w->bytes_total;
    res->skipped_bytes = (int64_t)esp_loader_stats(w->l)->skipped_bytes;
    res->kbps = ms > 0 ? (double)w->bytes_total * 8.0 / (double)ms : -1;
    wlog(w, LOG_LEVEL_INFO, "wrote %s: %llu bytes in %.1f s (%.0f kbit/s)", res->firmware,
         (unsigned long long)w->bytes_total, (double)ms / 1000.0, res->kbps);
    if (res->skipped_bytes > 0)
        wlog(w, LOG_LEVEL_INFO,
             "re-flashed only what changed: %lld of %llu bytes were already on the board and "
             "not sent",
             (long long)res->skipped_bytes, (unsigned long long)w->bytes_total);
    if (esp_loader_info(w->l)->stub_fallback) {
        /* A passed job that took the slow road says so in its record (log and event). */
        res->stub_fallback = true;
        wlog(w, LOG_LEVEL_WARN, "%s", ESP_STUB_FALLBACK_WARNING);
    }

    rc = do_reset(w, err);
    if (rc < 0)
        return rc;
    bool app_runs = after_for(w) == ESP_AFTER_HARD_RESET || after_for(w) == ESP_AFTER_SOFT_RESET;
    if (p->boot_check && !app_runs)
        wlog(w, LOG_LEVEL_WARN, "no boot check: the board was left in its loader (%s)",
             esp_after_to_string(after_for(w)));
    if (p->boot_check && app_runs) {
        set_phase(w, BOARD_BOOT_CHECK, "boot_check");
        rc = boot_check(w, err);
        if (rc < 0)
            return rc;
    }
    set_phase(w, BOARD_AWAITING_NETWORK, "done");
    res->state = RECORDS_JOB_PASSED;
    return 0;
}

/*
 * After a write, verify or read timed out (stage WRITE/VERIFY/READ: the board had answered
 * at this baud): did the link lose a frame, or did the board stop answering? A lossy
 * cable loses or garbles some frames, but the board still answers the next one; a hung or
 * browned-out chip (esp_sim --fault stall:N) answers nothing at all. A READ_REG (the
 * loader tries it write_block_attempts times) settles it: a reply of any kind, or a junk
 * frame, is a live board behind a bad link. Only that may lower the slot's baud.
 */
static bool board_stopped_answering(struct worker *w, const struct esp_error *e)
{
    if (!w->l || e->code != -ETIMEDOUT || is_cancelled(w->j))
        return false;
    if (e->stage != ESP_STAGE_WRITE && e->stage != ESP_STAGE_VERIFY && e->stage != ESP_STAGE_READ)
        return false;
    unsigned junk = esp_loader_stats(w->l)->frames_dropped;
    struct esp_error pe;
    esp_error_clear(&pe);
    uint32_t v;
    int rc = esp_loader_read_reg(w->l, ESP_CHIP_DETECT_MAGIC_REG, &v, &pe);
    bool silent = rc == -ETIMEDOUT && esp_loader_stats(w->l)->frames_dropped == junk;
    if (silent)
        wlog(w, LOG_LEVEL_WARN,
             "the board stopped answering during %s at %u baud (no reply to a probe either): "
             "a board fault (hung or browned-out chip), not the link; the slot keeps its baud",
             esp_stage_to_string(e->stage), (unsigned)esp_loader_info(w->l)->baud);
    return silent;
}

static void *job_main(void *arg)
{
    struct worker w;
    memset(&w, 0, sizeof(w));
    w.j = arg;
    w.phase = BOARD_QUEUED;
    struct job_msg *done = w.j->done_msg;
    w.j->done_msg = NULL;
    struct job_result res;
    memset(&res, 0, sizeof(res));
    res.bytes = -1;
    res.wire_bytes = -1;
    res.skipped_bytes = -1;
    res.kbps = -1;
    int rc = run(&w, &res);
    if (rc < 0) {
        bool cancelled = rc == -ECANCELED || is_cancelled(w.j);
        res.state = cancelled && rc != -ENODEV ? RECORDS_JOB_CANCELLED : RECORDS_JOB_FAILED;
        if (res.err.code == 0)
            esp_error_set(&res.err, rc, ESP_STAGE_NONE, NULL, "%s", esp_errno_to_string(rc));
        res.board_silent = board_stopped_answering(&w, &res.err);
    }
    if (w.l && esp_loader_info(w.l))
        res.link_baud = esp_loader_info(w.l)->baud;
    if (w.l)
        res.wire_bytes = (int64_t)esp_loader_stats(w.l)->wire_tx;
    else if (w.t)
        res.wire_bytes = (int64_t)w.t->bytes_written;
    snprintf(res.stage, sizeof(res.stage), "%s", w.stage);
    job_plan_free_extra(&w.extra);
    esp_loader_free(w.l);
    transport_close(w.t);
    done->kind = JOB_MSG_DONE;
    done->job = w.j;
    done->phase = w.phase;
    snprintf(done->stage, sizeof(done->stage), "%s", w.stage);
    done->result = res;
    /* Last touch of the job: after this the loop may join and free it. The
     * pipe only fails if the loop is gone, which it never is while jobs run. */
    if (loop_post(w.j->loop, done) < 0)
        abort();
    return NULL;
}
