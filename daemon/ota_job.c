/*
 * ota_job.c: push jobs (ArduinoOTA / web form / raw TCP-OTA) on worker
 * threads, for the OTA manager (ota.h). Bulk updates are in ota_bulk.c.
 *
 * A push worker owns a copy of its parameters and a reference to the image;
 * it reports progress, log lines and its end as heap messages written (as a
 * pointer) into the OTA manager's pipe, read on the loop thread; ownership
 * of a message moves with the pointer. The DONE message is allocated before
 * the thread starts, so the end can always be reported. Cancel is an eventfd
 * the protocol functions poll.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "board_addr.h"
#include "fdbudget.h"
#include "log.h"
#include "loop.h"
#include "ota_espota.h"
#include "ota_image.h"
#include "ota_priv.h"
#include "ota_tcp.h"
#include "ota_webform.h"
#include "station.h"

enum push_method { PUSH_ESPOTA = 0, PUSH_WEBFORM, PUSH_TCP };

static const char *method_name(enum push_method m)
{
    return m == PUSH_WEBFORM ? "webform" : m == PUSH_TCP ? "tcp" : "espota";
}

struct ota_push {
    struct ota *o;
    int64_t id;
    int64_t bulk_id;
    char mac[RECORDS_MAC_LEN];
    char ip[RECORDS_IP_LEN];
    enum push_method method;
    enum ota_chip chip;
    int port;
    int local_port;
    char password[129];
    char user[65]; /* webform Basic-auth user */
    bool fs;       /* the filesystem image (espota cmd 100, web-form field "filesystem") */
    struct ota_fw *fw;
    int cancel_fd;
    int msg_fd; /* the pipe's write end */
    pthread_t thread;
    bool started;
    struct ota_msg *done;
    int64_t last_progress_ms;
    uint64_t last_done; /* worker: the latest progress value (also when throttled) */
    struct ota_push *next;
};

enum ota_msg_kind { MSG_PROGRESS = 0, MSG_LOG, MSG_DONE };

struct ota_msg {
    enum ota_msg_kind kind;
    struct ota_push *push;
    uint64_t done, total;
    char text[400];
    int rc;
    struct ota_error err;
    double seconds;
};

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void post(struct ota_push *p, struct ota_msg *m)
{
    m->push = p;
    ssize_t w = write(p->msg_fd, &m, sizeof(m));
    if (w != (ssize_t)sizeof(m) && m->kind != MSG_DONE)
        free(m);
}

static void worker_log(void *ctx, enum ota_log_level level, const char *line)
{
    struct ota_push *p = ctx;
    if (level == OTA_LOG_DEBUG)
        return;
    struct ota_msg *m = calloc(1, sizeof(*m));
    if (!m)
        return;
    m->kind = MSG_LOG;
    m->rc = level == OTA_LOG_WARN ? 1 : 0;
    snprintf(m->text, sizeof(m->text), "%s", line);
    post(p, m);
}

static void worker_progress(void *ctx, uint64_t done, uint64_t total)
{
    struct ota_push *p = ctx;
    int64_t now = mono_ms();
    p->last_done = done;
    if (done < total && now - p->last_progress_ms < 250)
        return;
    p->last_progress_ms = now;
    struct ota_msg *m = calloc(1, sizeof(*m));
    if (!m)
        return;
    m->kind = MSG_PROGRESS;
    m->done = done;
    m->total = total;
    post(p, m);
}

/* The bytes a push sends: the set's app or its filesystem image. */
static const uint8_t *push_data(const struct ota_push *p, size_t *len)
{
    *len = p->fs ? p->fw->fs_size : p->fw->size;
    return p->fs ? p->fw->fs_data : p->fw->data;
}

static const char *image_name(const struct ota_push *p)
{
    return p->fs ? "filesystem" : "app";
}

static void *worker(void *arg)
{
    struct ota_push *p = arg;
    struct ota_msg *m = p->done;
    struct ota_error err;
    ota_error_clear(&err);
    int64_t t0 = mono_ms();
    int rc;
    size_t len;
    const uint8_t *data = push_data(p, &len);
    switch (p->method) {
    case PUSH_WEBFORM: {
        /* Basic auth is sent only when both are set (HTTPUpdateServer without credentials
         * takes anything). */
        struct ota_webform_config c = {.host = p->ip,
                                       .port = (uint16_t)p->port,
                                       .user = p->password[0] ? p->user : NULL,
                                       .password = p->password[0] ? p->password : NULL,
                                       .filesystem = p->fs,
                                       .filename = p->fs ? "filesystem.bin" : NULL,
                                       .log = worker_log,
                                       .log_ctx = p};
        rc = ota_webform_push(&c, data, len, worker_progress, p, p->cancel_fd, &err);
        break;
    }
    case PUSH_TCP: {
        struct ota_tcp_config c;
        memset(&c, 0, sizeof(c));
        c.host = p->ip;
        c.port = (uint16_t)p->port;
        c.log = worker_log;
        c.log_ctx = p;
        /* The device names the half it is not running (GetNextFlash): user1 is the set's
         * "slot": "user1" region (data), user2 its "user2" region (data2). */
        enum ota_tcp_slot slot = OTA_TCP_SLOT_NONE;
        rc = ota_tcp_push(&c, p->fw->data, p->fw->size, p->fw->data2, p->fw->size2, &slot,
                          worker_progress, p, p->cancel_fd, &err);
        if (slot == OTA_TCP_SLOT_USER2)
            len = p->fw->size2;
        if (slot != OTA_TCP_SLOT_NONE) {
            char line[160];
            snprintf(line, sizeof(line), "the device asked for %s: sent %s's %s (%zu bytes)",
                     ota_tcp_slot_to_string(slot), p->fw->ref, ota_tcp_slot_to_string(slot), len);
            worker_log(p, OTA_LOG_INFO, line);
        }
        break;
    }
    default: {
        struct ota_espota_config c;
        memset(&c, 0, sizeof(c));
        c.chip = p->chip;
        c.device_ip = p->ip;
        c.device_port = (uint16_t)p->port;
        c.local_port = (uint16_t)p->local_port;
        c.command = p->fs ? OTA_ESPOTA_CMD_FS : OTA_ESPOTA_CMD_FLASH;
        c.password = p->password[0] ? p->password : NULL;
        c.log = worker_log;
        c.log_ctx = p;
        rc = ota_espota_push(&c, data, len, worker_progress, p, p->cancel_fd, &err);
        break;
    }
    }
    m->rc = rc;
    m->err = err;
    m->seconds = (double)(mono_ms() - t0) / 1000.0;
    m->done = rc == 0 ? len : p->last_done;
    post(p, m);
    return NULL;
}

/* ---- push jobs (loop side) -------------------------------------------------------------- */

static void push_unlink(struct ota *o, struct ota_push *p)
{
    for (struct ota_push **pp = &o->pushes; *pp; pp = &(*pp)->next)
        if (*pp == p) {
            *pp = p->next;
            o->n_pushes--;
            return;
        }
}

static void push_free(struct ota_push *p)
{
    if (p->started)
        pthread_join(p->thread, NULL);
    if (p->cancel_fd >= 0)
        close(p->cancel_fd);
    ota_fw_unref(p->fw);
    free(p->done);
    free(p);
}

/*
 * An ESP8266 refuses an app image whose header declares more flash than its chip has: the
 * core's Updater checks it in Update.end() for ArduinoOTA and the web form, after the whole
 * image came over (ERROR[9], ota_image.h), and ESP8266httpUpdate before the body (-107). When
 * the station knows the chip's size (the flash ID read at a serial flash, else the size the
 * board's updater reported at its last check-in), such a push is refused before anything is
 * sent: writes the message to msg and returns true. Raw TCP-OTA (NONOS) images are not
 * checked against the chip by their device.
 */
static bool flash_too_small(struct ota *o, const struct records_board *b, const struct ota_fw *fw,
                            bool fs, enum push_method method, char *msg, size_t cap)
{
    if (fs || method == PUSH_TCP || ota_chip_of(b->chip) != OTA_CHIP_ESP8266)
        return false;
    uint64_t header = ota_image_esp8266_flash_size(fw->data, fw->size);
    const char *from = "its flash ID, read at a serial flash";
    int64_t chip = b->flash_size;
    struct records_board_ota bo;
    if (chip <= 0 && records_board_ota_get(station_records(o->st), b->mac, &bo, NULL) == 0) {
        chip = bo.chip_size;
        from = "its updater's last check-in";
    }
    if (!header || chip <= 0 || header <= (uint64_t)chip)
        return false;
    char what[160];
    ota_image_flash_mismatch_text(header, (uint64_t)chip, what, sizeof(what));
    snprintf(msg, cap,
             "%s (%s): the board's updater would refuse it (ESP8266 'new Flash config wrong', "
             "ERROR[9]) after taking it all; not sent",
             what, from);
    return true;
}

static const char *default_advice(int rc)
{
    switch (rc) {
    case -ECANCELED:
        return "the push was cancelled; start it again when wanted";
    default:
        return "check that the board is on the network and runs its OTA service, then retry";
    }
}

/* The ota.push.finished event (the event stream and /metrics count pushes by it): posted
 * for every push that got a job record, also one that failed before its worker ran. */
static void post_finished(struct ota *o, const struct ota_push *p,
                          const struct records_job_result *res)
{
    json_object *j = json_object_new_object();
    json_object_object_add(j, "method", json_object_new_string(method_name(p->method)));
    json_object_object_add(j, "firmware", json_object_new_string(p->fw->ref));
    json_object_object_add(j, "image", json_object_new_string(image_name(p)));
    json_object_object_add(j, "state",
                           json_object_new_string(records_job_state_to_string(res->state)));
    json_object_object_add(j, "bytes", json_object_new_int64(res->bytes)); /* /metrics */
    if (res->error_message)
        json_object_object_add(j, "error", json_object_new_string(res->error_message));
    station_post_event(o->st, "ota.push.finished", NULL, p->mac, p->id,
                       json_object_to_json_string_ext(j, JSON_C_TO_STRING_PLAIN));
    json_object_put(j);
}

static void push_finished(struct ota *o, struct ota_push *p, struct ota_msg *m)
{
    struct records *rec = station_records(o->st);
    struct records_job_result res;
    records_job_result_init(&res);
    char msg[RECORDS_TEXT_LEN];
    res.seconds = m->seconds;
    res.bytes = (int64_t)m->done; /* failed: the last progress value */
    size_t len;
    push_data(p, &len);
    if (m->rc == 0) {
        res.state = RECORDS_JOB_PASSED;
        res.bytes = (int64_t)(p->method == PUSH_TCP ? m->done : len); /* tcp: the half sent */
        struct records_board b;
        records_board_init(&b);
        snprintf(b.mac, sizeof(b.mac), "%s", p->mac);
        if (!p->fs) { /* a filesystem image leaves the app (and its version) as it was */
            snprintf(b.current_firmware, sizeof(b.current_firmware), "%s", p->fw->ref);
            snprintf(b.running_version, sizeof(b.running_version), "%s", p->fw->version);
        }
        snprintf(b.online_state, sizeof(b.online_state), "online");
        records_board_upsert(rec, &b, NULL);
        ota_slot_online(o, p->mac); /* an accepted push proves the board is on the network */
        log_board(LOG_LEVEL_INFO, NULL, p->mac, "%s push of %s's %s image to %s: OK (%.1f s)",
                  method_name(p->method), p->fw->ref, image_name(p), p->ip, m->seconds);
    } else {
        res.state = m->rc == -ECANCELED ? RECORDS_JOB_CANCELLED : RECORDS_JOB_FAILED;
        res.result_code = m->rc;
        res.error_stage = ota_stage_to_string(m->err.stage);
        if (m->err.message[0])
            snprintf(msg, sizeof(msg), "%s%s%s%s", m->err.message,
                     m->err.device_text[0] ? " (device: " : "", m->err.device_text,
                     m->err.device_text[0] ? ")" : "");
        else
            snprintf(msg, sizeof(msg), "%s push failed: %s", method_name(p->method),
                     strerror(-m->rc));
        res.error_message = msg;
        res.error_advice = m->err.advice[0] ? m->err.advice : default_advice(m->rc);
        res.device_error = m->err.has_device_code ? m->err.device_code : -1;
        log_board(LOG_LEVEL_WARN, NULL, p->mac, "%s push of %s's %s image to %s failed: %s",
                  method_name(p->method), p->fw->ref, image_name(p), p->ip, msg);
    }
    records_job_finish(rec, p->id, &res, NULL);
    post_finished(o, p, &res);
    int64_t bulk_id = p->bulk_id;
    char mac[RECORDS_MAC_LEN], why[256];
    snprintf(mac, sizeof(mac), "%s", p->mac);
    snprintf(why, sizeof(why), "%s", res.error_message ? res.error_message : "");
    bool ok = m->rc == 0;
    push_unlink(o, p);
    push_free(p); /* frees m (p->done) */
    if (bulk_id)
        ota_bulk_on_push_done(o, bulk_id, mac, ok, why);
    ota_bulk_on_push_room(o); /* a bulk may be waiting for a place among the pushes */
}

void ota_jobs_on_msg(void *ctx, int fd, uint32_t events)
{
    (void)events;
    struct ota *o = ctx;
    struct records *rec = station_records(o->st);
    for (int i = 0; i < 256; i++) {
        struct ota_msg *m;
        ssize_t r = read(fd, &m, sizeof(m));
        if (r != (ssize_t)sizeof(m))
            return;
        struct ota_push *p = m->push;
        switch (m->kind) {
        case MSG_PROGRESS:
            records_job_progress(rec, p->id, "transfer", (int64_t)m->done, -1, NULL);
            free(m);
            break;
        case MSG_LOG:
            records_job_log(rec, p->id, m->rc ? "warn" : "info", m->text, NULL);
            free(m);
            break;
        case MSG_DONE:
            push_finished(o, p, m);
            break;
        }
    }
}

void ota_jobs_init(struct ota *o)
{
    (void)o;
}

int ota_push(struct ota *o, const struct ota_push_request *r, int64_t *job_id, char *err,
             size_t errlen)
{
    struct records *rec = station_records(o->st);
    struct records_board b;
    if (!r->mac || records_board_get(rec, r->mac, &b, NULL) < 0) {
        ota_errf(err, errlen, "no board %s in the records", r->mac ? r->mac : "");
        return -ENOENT;
    }
    enum push_method method = PUSH_ESPOTA;
    if (r->method && strcmp(r->method, "webform") == 0)
        method = PUSH_WEBFORM;
    else if (r->method && strcmp(r->method, "tcp") == 0)
        method = PUSH_TCP;
    else if (r->method && strcmp(r->method, "espota") != 0) {
        ota_errf(err, errlen, "method must be \"espota\", \"webform\" or \"tcp\" (got \"%s\")",
                 r->method);
        return -EINVAL;
    }
    if (r->filesystem && method == PUSH_TCP) {
        ota_errf(err, errlen,
                 "image \"filesystem\": raw TCP-OTA has no filesystem mode (it flashes user1/user2 "
                 "apps only); push the filesystem image with \"espota\" or \"webform\"");
        return -EINVAL;
    }
    const struct config *cfg = station_config(o->st);
    const char *user = r->user ? r->user : cfg->ota.webform_user;
    if (!user)
        user = "admin";
    if (!*user || strlen(user) > 64 || strchr(user, ':')) {
        ota_errf(err, errlen,
                 "user: 1 to 64 characters without ':' or control characters (HTTP Basic "
                 "authentication cannot carry them)");
        return -EINVAL;
    }
    for (const char *u = user; *u; u++)
        if ((unsigned char)*u < 0x20 || *u == 0x7F) {
            ota_errf(err, errlen, "user: must not contain control characters");
            return -EINVAL;
        }
    for (struct ota_push *q = o->pushes; q; q = q->next)
        if (strcmp(q->mac, b.mac) == 0) {
            ota_errf(err, errlen, "a push to %s is already running (job %lld)", b.mac,
                     (long long)q->id);
            return -EBUSY;
        }
    /* The open-file budget keeps descriptors for FD_BUDGET_PUSHES pushes beside the serial
     * jobs (fdbudget.h): one more would run on the descriptors a board plugged now needs
     * while clients hold the servers' caps. A bulk waits for a place (ota_bulk.c). */
    if (o->n_pushes >= FD_BUDGET_PUSHES) {
        ota_errf(err, errlen,
                 "%d pushes are running, as many as the station keeps open files for (see the "
                 "'open files' line at start); start this one when one of them has ended",
                 o->n_pushes);
        return -ENOSPC;
    }
    char ref[RECORDS_FIRMWARE_LEN];
    if (r->firmware && *r->firmware)
        snprintf(ref, sizeof(ref), "%s", r->firmware);
    else
        ota_target_of(o, &b, ref, sizeof(ref), NULL);
    if (!ref[0]) {
        ota_errf(err, errlen, "no firmware given and board %s has no target", b.mac);
        return -EINVAL;
    }
    struct ota_fw *fw = NULL;
    int rc = ota_fw_get(o, ref, &fw, err, errlen);
    if (rc < 0)
        return rc;
    if (r->filesystem) {
        char ferr[400] = "";
        if ((rc = ota_fw_fs_policy(o, fw, ferr, sizeof(ferr))) < 0) {
            ota_errf(err, errlen, "image \"filesystem\": %s", ferr);
            ota_fw_unref(fw);
            return rc == -ENOENT ? -EINVAL : rc;
        }
    } else if ((rc = ota_fw_policy(o, fw, err, errlen)) < 0) {
        ota_fw_unref(fw);
        return rc;
    }
    if (method == PUSH_TCP && !fw->data2) {
        ota_errf(err, errlen,
                 "raw TCP-OTA needs a firmware set with two app regions (an ESP8266 NONOS "
                 "dual-image set: \"slot\": \"user1\" at 0x1000 and \"slot\": \"user2\"): "
                 "%s has one",
                 fw->ref);
        ota_fw_unref(fw);
        return -EINVAL;
    }
    /* Images and passwords go only to a confirmed address (board_addr.h). */
    if ((rc = board_addr_push_check(&b, err, errlen)) < 0) {
        ota_fw_unref(fw);
        return rc;
    }
    const struct config_profile *prof = config_profile(station_config(o->st), NULL);
    struct ota_push *p = calloc(1, sizeof(*p));
    struct ota_msg *done = calloc(1, sizeof(*done));
    if (!p || !done) {
        free(p);
        free(done);
        ota_fw_unref(fw);
        ota_errf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    p->o = o;
    p->fw = fw;
    p->done = done;
    done->kind = MSG_DONE;
    p->method = method;
    p->fs = r->filesystem;
    snprintf(p->user, sizeof(p->user), "%s", user);
    p->bulk_id = r->bulk_id;
    p->chip = ota_chip_of(b.chip);
    p->port = r->port;
    int base = cfg->ota.espota_port;
    if (base > 0) {
        /* Concurrent pushes need distinct connect-back ports: the lowest of base, base+1, ...
         * that no running push uses. */
        for (int k = 0; k < 4096 && !p->local_port; k++) {
            bool used = false;
            for (struct ota_push *q = o->pushes; q && !used; q = q->next)
                used = q->local_port == base + k;
            if (!used && base + k <= 65535)
                p->local_port = base + k;
        }
    }
    snprintf(p->mac, sizeof(p->mac), "%s", b.mac);
    snprintf(p->ip, sizeof(p->ip), "%s", b.ip);
    const char *pw = r->password ? r->password : prof ? prof->ota_password : NULL;
    snprintf(p->password, sizeof(p->password), "%s", pw ? pw : "");
    p->msg_fd = o->msg_pipe[1];
    p->cancel_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    struct records_job_new jn = {.kind = p->fs ? "ota-push-fs" : "ota-push",
                                 .board_mac = b.mac,
                                 .firmware = fw->ref,
                                 .stage = "invite"};
    struct records_error re;
    if (p->cancel_fd < 0 || records_job_begin(rec, &jn, &p->id, &re) < 0) {
        ota_errf(err, errlen, "cannot record the job: %s",
                 p->cancel_fd < 0 ? strerror(errno) : re.message);
        p->id = 0;
        push_free(p);
        return -EIO;
    }
    char line[400];
    if (!r->no_flash_size_check && flash_too_small(o, &b, fw, p->fs, method, line, sizeof(line))) {
        struct records_job_result res;
        records_job_result_init(&res);
        res.state = RECORDS_JOB_FAILED;
        res.result_code = -EINVAL;
        res.error_stage = "prepare";
        res.bytes = 0;
        res.error_message = line;
        res.error_advice = OTA_ADVICE_FLASH_SIZE;
        records_job_finish(rec, p->id, &res, NULL);
        post_finished(o, p, &res);
        log_board(LOG_LEVEL_WARN, NULL, b.mac, "%s push of %s's %s image to %s refused: %s",
                  method_name(method), fw->ref, image_name(p), b.ip, line);
        ota_errf(err, errlen, "firmware %s: %s; %s (job %lld)", fw->ref, line,
                 OTA_ADVICE_FLASH_SIZE, (long long)p->id);
        *job_id = p->id;
        push_free(p);
        return -EINVAL;
    }
    size_t len;
    push_data(p, &len);
    snprintf(line, sizeof(line), "%s push of %s's %s image (%zu bytes, md5 %s) to %s%s%s%s",
             method_name(method), fw->ref, image_name(p), len, p->fs ? fw->fs_md5 : fw->md5, b.ip,
             p->password[0] ? " with password" : "",
             method == PUSH_WEBFORM && p->password[0] ? " as user " : "",
             method == PUSH_WEBFORM && p->password[0] ? p->user : "");
    records_job_log(rec, p->id, "info", line, NULL);
    if (b.ip_claim[0]) {
        snprintf(line, sizeof(line),
                 "%s (%s) claimed this board; the push goes to its confirmed address %s (%s)",
                 b.ip_claim, b.ip_claim_source, b.ip, b.ip_source);
        records_job_log(rec, p->id, "warn", line, NULL);
    }
    p->next = o->pushes;
    o->pushes = p;
    o->n_pushes++;
    int prc = pthread_create(&p->thread, NULL, worker, p);
    if (prc != 0) {
        push_unlink(o, p);
        struct records_job_result res;
        records_job_result_init(&res);
        res.state = RECORDS_JOB_FAILED;
        res.result_code = -prc; /* the true errno (EAGAIN: threads or memory) */
        res.error_stage = "invite";
        res.bytes = 0;
        res.error_message = "cannot start a worker thread";
        records_job_finish(rec, p->id, &res, NULL);
        post_finished(o, p, &res);
        log_board(LOG_LEVEL_WARN, NULL, b.mac, "%s push of %s's %s image to %s failed: %s",
                  method_name(method), fw->ref, image_name(p), b.ip, res.error_message);
        push_free(p);
        ota_errf(err, errlen, "cannot start a worker thread");
        return -EIO;
    }
    p->started = true;
    *job_id = p->id;
    json_object *j = json_object_new_object();
    json_object_object_add(j, "method", json_object_new_string(method_name(method)));
    json_object_object_add(j, "firmware", json_object_new_string(fw->ref));
    json_object_object_add(j, "image", json_object_new_string(image_name(p)));
    station_post_event(o->st, "ota.push.started", NULL, b.mac, p->id,
                       json_object_to_json_string_ext(j, JSON_C_TO_STRING_PLAIN));
    json_object_put(j);
    log_board(LOG_LEVEL_INFO, NULL, b.mac, "%s", line);
    return 0;
}

int ota_cancel_push(struct ota *o, int64_t job_id)
{
    for (struct ota_push *p = o->pushes; p; p = p->next)
        if (p->id == job_id) {
            uint64_t one = 1;
            (void)!write(p->cancel_fd, &one, sizeof(one));
            return 0;
        }
    return -ENOENT;
}

bool ota_busy(const struct ota *o)
{
    return o && o->pushes;
}

void ota_cancel_all(struct ota *o)
{
    if (!o)
        return;
    for (struct ota_push *p = o->pushes; p; p = p->next) {
        uint64_t one = 1;
        (void)!write(p->cancel_fd, &one, sizeof(one));
    }
}

void ota_jobs_free(struct ota *o)
{
    ota_cancel_all(o);
    /* Workers end soon after a cancel; their DONE messages are read here. */
    while (o->pushes && o->msg_pipe[0] >= 0) {
        struct ota_msg *m;
        struct pollfd pfd = {.fd = o->msg_pipe[0], .events = POLLIN};
        if (poll(&pfd, 1, 30000) <= 0)
            break;
        ssize_t r = read(o->msg_pipe[0], &m, sizeof(m));
        if (r != (ssize_t)sizeof(m))
            continue;
        if (m->kind == MSG_DONE)
            push_finished(o, m->push, m);
        else
            free(m);
    }
    ota_bulks_free(o);
}
