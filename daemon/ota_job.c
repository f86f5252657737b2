/*
 * ota_job.c: push jobs (ArduinoOTA / web form / raw TCP-OTA) on worker
 * threads, and bulk updates, for the OTA manager (ota.h).
 *
 * A push worker owns a copy of its parameters and a reference to the image;
 * it reports progress, log lines and its end as heap messages written (as a
 * pointer) into the OTA manager's pipe, read on the loop thread; ownership
 * of a message moves with the pointer. The DONE message is allocated before
 * the thread starts, so the end can always be reported. Cancel is an eventfd
 * the protocol functions poll.
 *
 * A bulk update lives in memory on the loop thread (its per-board pushes are
 * recorded as jobs; its progress goes to the event stream as "bulk.*"
 * events). It starts at most `concurrency` boards at a time, retries a failed
 * board up to `retries` times, skips boards already running the target, and
 * stops starting new boards once the failed boards exceed
 * max_failure_rate × selected boards (that many failures already guarantee
 * the run's failure rate passes the threshold). A "pull" bulk pins each
 * board's target and waits (timeout_s) for the board to check in with the
 * target's version.
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

#include "log.h"
#include "loop.h"
#include "ota_espota.h"
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

static void *worker(void *arg)
{
    struct ota_push *p = arg;
    struct ota_msg *m = p->done;
    struct ota_error err;
    ota_error_clear(&err);
    int64_t t0 = mono_ms();
    int rc;
    switch (p->method) {
    case PUSH_WEBFORM: {
        struct ota_webform_config c = {.host = p->ip,
                                       .port = (uint16_t)p->port,
                                       .user = p->password[0] ? "admin" : NULL,
                                       .password = p->password[0] ? p->password : NULL,
                                       .log = worker_log,
                                       .log_ctx = p};
        rc = ota_webform_push(&c, p->fw->data, p->fw->size, worker_progress, p, p->cancel_fd, &err);
        break;
    }
    case PUSH_TCP: {
        struct ota_tcp_config c;
        memset(&c, 0, sizeof(c));
        c.host = p->ip;
        c.port = (uint16_t)p->port;
        c.log = worker_log;
        c.log_ctx = p;
        enum ota_tcp_slot slot;
        rc = ota_tcp_push(&c, p->fw->data, p->fw->size, p->fw->data2, p->fw->size2, &slot,
                          worker_progress, p, p->cancel_fd, &err);
        break;
    }
    default: {
        struct ota_espota_config c;
        memset(&c, 0, sizeof(c));
        c.chip = p->chip;
        c.device_ip = p->ip;
        c.device_port = (uint16_t)p->port;
        c.local_port = (uint16_t)p->local_port;
        c.command = OTA_ESPOTA_CMD_FLASH;
        c.password = p->password[0] ? p->password : NULL;
        c.log = worker_log;
        c.log_ctx = p;
        rc = ota_espota_push(&c, p->fw->data, p->fw->size, worker_progress, p, p->cancel_fd, &err);
        break;
    }
    }
    m->rc = rc;
    m->err = err;
    m->seconds = (double)(mono_ms() - t0) / 1000.0;
    m->done = rc == 0 ? p->fw->size : p->last_done;
    post(p, m);
    return NULL;
}

/* ---- bulk state ------------------------------------------------------------------------- */

enum bulk_board_state { BB_PENDING = 0, BB_RUNNING, BB_PASSED, BB_FAILED, BB_SKIPPED };

static const char *bb_name(enum bulk_board_state s)
{
    static const char *const n[] = {"pending", "running", "passed", "failed", "skipped"};
    return n[s];
}

struct bulk_board {
    char mac[RECORDS_MAC_LEN];
    enum bulk_board_state state;
    int attempts;
    int64_t job_id;
    int64_t deadline_ms; /* pull */
    char error[256];
};

struct ota_bulk {
    int64_t id;
    char firmware[RECORDS_FIRMWARE_LEN];
    char version[RECORDS_NAME_LEN];
    char method[16];
    char password[129];
    int port;
    int concurrency, retries, timeout_s;
    double max_failure_rate;
    struct bulk_board *boards;
    size_t n;
    char state[16]; /* running, passed, failed, stopped, cancelled */
    char reason[256];
    int64_t created;
    bool cancelled;
    bool pumping;      /* bulk_pump is on the stack (done -> pump recursion) */
    bool end_reported; /* "bulk.finished" posted */
    struct ota_bulk *next;
};

static void bulk_pump(struct ota *o, struct ota_bulk *b);

static struct ota_bulk *bulk_find(struct ota *o, int64_t id)
{
    for (struct ota_bulk *b = o->bulks; b; b = b->next)
        if (b->id == id)
            return b;
    return NULL;
}

static void bulk_board_done(struct ota *o, struct ota_bulk *b, struct bulk_board *bb, bool ok,
                            const char *why)
{
    if (bb->state != BB_RUNNING)
        return;
    if (ok) {
        bb->state = BB_PASSED;
        bb->error[0] = '\0';
    } else if (bb->attempts <= b->retries && strcmp(b->state, "running") == 0) {
        bb->state = BB_PENDING; /* retry */
        snprintf(bb->error, sizeof(bb->error), "%s", why ? why : "failed");
    } else {
        bb->state = BB_FAILED;
        snprintf(bb->error, sizeof(bb->error), "%s", why ? why : "failed");
    }
    char data[512];
    json_object *j = json_object_new_object();
    json_object_object_add(j, "bulk_id", json_object_new_int64(b->id));
    json_object_object_add(j, "state", json_object_new_string(bb_name(bb->state)));
    json_object_object_add(j, "attempts", json_object_new_int(bb->attempts));
    if (bb->error[0])
        json_object_object_add(j, "error", json_object_new_string(bb->error));
    snprintf(data, sizeof(data), "%s", json_object_to_json_string_ext(j, JSON_C_TO_STRING_PLAIN));
    json_object_put(j);
    station_post_event(o->st, "bulk.board", NULL, bb->mac, bb->job_id, data);
    bulk_pump(o, b);
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

static const char *default_advice(int rc)
{
    switch (rc) {
    case -ECANCELED:
        return "the push was cancelled; start it again when wanted";
    default:
        return "check that the board is on the network and runs its OTA service, then retry";
    }
}

static void push_finished(struct ota *o, struct ota_push *p, struct ota_msg *m)
{
    struct records *rec = station_records(o->st);
    struct records_job_result res;
    records_job_result_init(&res);
    char msg[RECORDS_TEXT_LEN];
    res.seconds = m->seconds;
    res.bytes = (int64_t)m->done; /* failed: the last progress value */
    if (m->rc == 0) {
        res.state = RECORDS_JOB_PASSED;
        res.bytes = (int64_t)p->fw->size;
        struct records_board b;
        records_board_init(&b);
        snprintf(b.mac, sizeof(b.mac), "%s", p->mac);
        snprintf(b.current_firmware, sizeof(b.current_firmware), "%s", p->fw->ref);
        snprintf(b.running_version, sizeof(b.running_version), "%s", p->fw->version);
        snprintf(b.online_state, sizeof(b.online_state), "online");
        records_board_upsert(rec, &b, NULL);
        ota_slot_online(o, p->mac); /* an accepted push proves the board is on the network */
        log_board(LOG_LEVEL_INFO, NULL, p->mac, "%s push of %s to %s: OK (%.1f s)",
                  method_name(p->method), p->fw->ref, p->ip, m->seconds);
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
        log_board(LOG_LEVEL_WARN, NULL, p->mac, "%s push of %s to %s failed: %s",
                  method_name(p->method), p->fw->ref, p->ip, msg);
    }
    records_job_finish(rec, p->id, &res, NULL);
    json_object *j = json_object_new_object();
    json_object_object_add(j, "method", json_object_new_string(method_name(p->method)));
    json_object_object_add(j, "firmware", json_object_new_string(p->fw->ref));
    json_object_object_add(j, "state",
                           json_object_new_string(records_job_state_to_string(res.state)));
    if (res.error_message)
        json_object_object_add(j, "error", json_object_new_string(res.error_message));
    station_post_event(o->st, "ota.push.finished", NULL, p->mac, p->id,
                       json_object_to_json_string_ext(j, JSON_C_TO_STRING_PLAIN));
    json_object_put(j);
    int64_t bulk_id = p->bulk_id;
    char mac[RECORDS_MAC_LEN], why[256];
    snprintf(mac, sizeof(mac), "%s", p->mac);
    snprintf(why, sizeof(why), "%s", res.error_message ? res.error_message : "");
    bool ok = m->rc == 0;
    push_unlink(o, p);
    push_free(p); /* frees m (p->done) */
    struct ota_bulk *b = bulk_id ? bulk_find(o, bulk_id) : NULL;
    if (b)
        for (size_t i = 0; i < b->n; i++)
            if (strcmp(b->boards[i].mac, mac) == 0)
                bulk_board_done(o, b, &b->boards[i], ok, why);
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
    if (!b.ip[0]) {
        ota_errf(err, errlen,
                 "no IP address known for %s: the board has not checked in and its boot check "
                 "captured none (add an \"ip\" capture to the profile's boot_check)",
                 b.mac);
        return -EINVAL;
    }
    for (struct ota_push *q = o->pushes; q; q = q->next)
        if (strcmp(q->mac, b.mac) == 0) {
            ota_errf(err, errlen, "a push to %s is already running (job %lld)", b.mac,
                     (long long)q->id);
            return -EBUSY;
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
    if ((rc = ota_fw_policy(o, fw, err, errlen)) < 0) {
        ota_fw_unref(fw);
        return rc;
    }
    if (method == PUSH_TCP && !fw->data2) {
        ota_errf(err, errlen,
                 "raw TCP-OTA needs a firmware set with two app regions (user1 and user2 images, "
                 "in that order): %s has one",
                 fw->ref);
        ota_fw_unref(fw);
        return -EINVAL;
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
    p->bulk_id = r->bulk_id;
    p->chip = ota_chip_of(b.chip);
    p->port = r->port;
    int base = station_config(o->st)->ota.espota_port;
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
    struct records_job_new jn = {
        .kind = "ota-push", .board_mac = b.mac, .firmware = fw->ref, .stage = "invite"};
    struct records_error re;
    if (p->cancel_fd < 0 || records_job_begin(rec, &jn, &p->id, &re) < 0) {
        ota_errf(err, errlen, "cannot record the job: %s",
                 p->cancel_fd < 0 ? strerror(errno) : re.message);
        p->id = 0;
        push_free(p);
        return -EIO;
    }
    char line[300];
    snprintf(line, sizeof(line), "%s push of %s (%zu bytes, md5 %s) to %s%s", method_name(method),
             fw->ref, fw->size, fw->md5, b.ip, p->password[0] ? " with password" : "");
    records_job_log(rec, p->id, "info", line, NULL);
    p->next = o->pushes;
    o->pushes = p;
    o->n_pushes++;
    if (pthread_create(&p->thread, NULL, worker, p) != 0) {
        push_unlink(o, p);
        struct records_job_result res;
        records_job_result_init(&res);
        res.result_code = -EAGAIN;
        res.error_message = "cannot start a worker thread";
        records_job_finish(rec, p->id, &res, NULL);
        push_free(p);
        ota_errf(err, errlen, "cannot start a worker thread");
        return -EIO;
    }
    p->started = true;
    *job_id = p->id;
    json_object *j = json_object_new_object();
    json_object_object_add(j, "method", json_object_new_string(method_name(method)));
    json_object_object_add(j, "firmware", json_object_new_string(fw->ref));
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
    while (o->bulks) {
        struct ota_bulk *b = o->bulks;
        o->bulks = b->next;
        free(b->boards);
        free(b);
    }
}

/* ---- bulk updates ----------------------------------------------------------------------- */

static void bulk_counts(const struct ota_bulk *b, size_t c[5])
{
    memset(c, 0, 5 * sizeof(c[0]));
    for (size_t i = 0; i < b->n; i++)
        c[b->boards[i].state]++;
}

static void bulk_event(struct ota *o, struct ota_bulk *b, const char *kind)
{
    size_t c[5];
    bulk_counts(b, c);
    json_object *j = json_object_new_object();
    json_object_object_add(j, "bulk_id", json_object_new_int64(b->id));
    json_object_object_add(j, "state", json_object_new_string(b->state));
    json_object_object_add(j, "firmware", json_object_new_string(b->firmware));
    json_object_object_add(j, "total", json_object_new_int64((int64_t)b->n));
    for (int i = 0; i < 5; i++)
        json_object_object_add(j, bb_name((enum bulk_board_state)i),
                               json_object_new_int64((int64_t)c[i]));
    if (b->reason[0])
        json_object_object_add(j, "reason", json_object_new_string(b->reason));
    station_post_event(o->st, kind, NULL, NULL, 0,
                       json_object_to_json_string_ext(j, JSON_C_TO_STRING_PLAIN));
    json_object_put(j);
}

static void bulk_start_board(struct ota *o, struct ota_bulk *b, struct bulk_board *bb)
{
    bb->attempts++;
    bb->state = BB_RUNNING;
    char err[300] = "";
    if (strcmp(b->method, "pull") == 0) {
        int rc = ota_set_target(o, bb->mac, b->firmware, err, sizeof(err));
        if (rc < 0) {
            bb->attempts = b->retries + 1; /* not retryable */
            bulk_board_done(o, b, bb, false, err);
            return;
        }
        bb->deadline_ms = loop_now_ms() + (int64_t)b->timeout_s * 1000;
        return;
    }
    struct ota_push_request r = {.mac = bb->mac,
                                 .method = b->method,
                                 .firmware = b->firmware,
                                 .password = b->password[0] ? b->password : NULL,
                                 .port = b->port,
                                 .bulk_id = b->id};
    int rc = ota_push(o, &r, &bb->job_id, err, sizeof(err));
    if (rc < 0) {
        if (rc != -EBUSY)
            bb->attempts = b->retries + 1;
        bulk_board_done(o, b, bb, false, err);
    }
}

static void bulk_pump(struct ota *o, struct ota_bulk *b)
{
    if (b->pumping)
        return; /* bulk_board_done -> bulk_pump recursion: the outer call continues */
    b->pumping = true;
    for (;;) {
        size_t c[5];
        bulk_counts(b, c);
        if (strcmp(b->state, "running") == 0) {
            if (b->cancelled) {
                snprintf(b->state, sizeof(b->state), "cancelled");
            } else if ((double)c[BB_FAILED] > b->max_failure_rate * (double)b->n) {
                snprintf(b->state, sizeof(b->state), "stopped");
                snprintf(b->reason, sizeof(b->reason),
                         "stopped: %zu of %zu boards failed, more than the allowed failure rate "
                         "%.0f%%",
                         c[BB_FAILED], b->n, b->max_failure_rate * 100.0);
                log_msg(LOG_LEVEL_WARN, "bulk %lld %s", (long long)b->id, b->reason);
                bulk_event(o, b, "bulk.stopped");
            }
        }
        if (strcmp(b->state, "running") != 0) {
            if (c[BB_RUNNING] == 0 && !b->end_reported) {
                b->end_reported = true;
                bulk_event(o, b, "bulk.finished");
            }
            break;
        }
        if (c[BB_PENDING] == 0) {
            if (c[BB_RUNNING] == 0) {
                snprintf(b->state, sizeof(b->state), c[BB_FAILED] ? "failed" : "passed");
                b->end_reported = true;
                bulk_event(o, b, "bulk.finished");
            }
            break;
        }
        if ((int)c[BB_RUNNING] >= b->concurrency)
            break;
        struct bulk_board *next = NULL;
        for (size_t i = 0; i < b->n && !next; i++)
            if (b->boards[i].state == BB_PENDING)
                next = &b->boards[i];
        bulk_start_board(o, b, next);
    }
    b->pumping = false;
}

void ota_bulk_on_checkin(struct ota *o, const char *mac, const char *version)
{
    for (struct ota_bulk *b = o->bulks; b; b = b->next) {
        if (strcmp(b->method, "pull") != 0)
            continue;
        for (size_t i = 0; i < b->n; i++) {
            struct bulk_board *bb = &b->boards[i];
            if (bb->state == BB_RUNNING && strcasecmp(bb->mac, mac) == 0 && version &&
                strcmp(version, b->version) == 0)
                bulk_board_done(o, b, bb, true, NULL);
        }
    }
}

void ota_bulk_on_pull_problem(struct ota *o, const char *mac, const char *why)
{
    for (struct ota_bulk *b = o->bulks; b; b = b->next) {
        if (strcmp(b->method, "pull") != 0)
            continue;
        for (size_t i = 0; i < b->n; i++) {
            struct bulk_board *bb = &b->boards[i];
            if (bb->state == BB_RUNNING && strcasecmp(bb->mac, mac) == 0)
                bulk_board_done(o, b, bb, false, why);
        }
    }
}

void ota_bulk_tick(struct ota *o)
{
    int64_t now = loop_now_ms();
    for (struct ota_bulk *b = o->bulks; b; b = b->next) {
        if (strcmp(b->method, "pull") != 0)
            continue;
        for (size_t i = 0; i < b->n; i++) {
            struct bulk_board *bb = &b->boards[i];
            if (bb->state == BB_RUNNING && bb->deadline_ms && now > bb->deadline_ms) {
                char why[200];
                snprintf(why, sizeof(why),
                         "the board did not report %s within %d s after its target was set "
                         "(is it checking in? see its OTA problem)",
                         b->version, b->timeout_s);
                bulk_board_done(o, b, bb, false, why);
            }
        }
    }
}

struct select_ctx {
    const struct ota_bulk_request *r;
    const struct config_profile *prof;
    char (*macs)[RECORDS_MAC_LEN];
    size_t n, cap;
};

static int select_cb(const struct records_board *b, void *ctx)
{
    struct select_ctx *s = ctx;
    const struct ota_bulk_request *r = s->r;
    if (r->chip && strcasecmp(b->chip, r->chip) != 0)
        return 0;
    if (r->group) {
        char tag[96];
        snprintf(tag, sizeof(tag), "group=%s", r->group);
        const char *p = strstr(b->notes, tag);
        size_t tl = strlen(tag);
        if (!p || (p[tl] && p[tl] != ' ' && p[tl] != ',' && p[tl] != ';'))
            return 0;
    }
    if (r->profile) {
        bool match = false;
        for (size_t i = 0; s->prof && i < s->prof->n_firmware && !match; i++) {
            size_t nl = strlen(s->prof->firmware[i].name);
            match = strncmp(b->current_firmware, s->prof->firmware[i].name, nl) == 0 &&
                    b->current_firmware[nl] == '@';
        }
        if (!match)
            return 0;
    }
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 32;
        void *nv = realloc(s->macs, cap * sizeof(*s->macs));
        if (!nv)
            return 1;
        s->macs = nv;
        s->cap = cap;
    }
    snprintf(s->macs[s->n++], RECORDS_MAC_LEN, "%s", b->mac);
    return 0;
}

int ota_bulk_start(struct ota *o, const struct ota_bulk_request *r, int64_t *bulk_id, char *err,
                   size_t errlen)
{
    int nsel = (r->group != NULL) + (r->profile != NULL) + (r->chip != NULL) + (r->macs != NULL);
    if (nsel != 1) {
        ota_errf(err, errlen, "select exactly one of group, profile, chip or macs");
        return -EINVAL;
    }
    if (!r->firmware) {
        ota_errf(err, errlen, "firmware (\"name@version\") is required");
        return -EINVAL;
    }
    const char *method = r->method ? r->method : "pull";
    if (strcmp(method, "pull") != 0 && strcmp(method, "espota") != 0 &&
        strcmp(method, "webform") != 0 && strcmp(method, "tcp") != 0) {
        ota_errf(err, errlen, "method must be pull, espota, webform or tcp (got \"%s\")", method);
        return -EINVAL;
    }
    struct ota_fw *fw = NULL;
    int rc = ota_fw_get(o, r->firmware, &fw, err, errlen);
    if (rc < 0)
        return rc;
    rc = ota_fw_policy(o, fw, err, errlen);
    if (rc < 0) {
        ota_fw_unref(fw);
        return rc;
    }
    struct records *rec = station_records(o->st);
    struct select_ctx sc = {.r = r};
    if (r->profile) {
        sc.prof = config_profile(station_config(o->st), r->profile);
        if (!sc.prof) {
            ota_fw_unref(fw);
            ota_errf(err, errlen, "no profile named \"%s\"", r->profile);
            return -ENOENT;
        }
    }
    if (r->macs) {
        sc.macs = calloc(r->n_macs ? r->n_macs : 1, sizeof(*sc.macs));
        for (size_t i = 0; sc.macs && i < r->n_macs; i++) {
            struct records_board b;
            if (records_board_get(rec, r->macs[i], &b, NULL) < 0) {
                free(sc.macs);
                ota_fw_unref(fw);
                ota_errf(err, errlen, "no board %s in the records", r->macs[i]);
                return -ENOENT;
            }
            snprintf(sc.macs[sc.n++], RECORDS_MAC_LEN, "%s", b.mac);
        }
    } else {
        records_board_list(rec, NULL, select_cb, &sc, NULL);
    }
    if (sc.n == 0) {
        free(sc.macs);
        ota_fw_unref(fw);
        ota_errf(err, errlen, "the selection matches no board");
        return -ENOENT;
    }
    struct ota_bulk *b = calloc(1, sizeof(*b));
    if (b)
        b->boards = calloc(sc.n, sizeof(*b->boards));
    if (!b || !b->boards) {
        free(b);
        free(sc.macs);
        ota_fw_unref(fw);
        return -ENOMEM;
    }
    b->id = o->next_bulk_id++;
    snprintf(b->firmware, sizeof(b->firmware), "%s", fw->ref);
    snprintf(b->version, sizeof(b->version), "%s", fw->version);
    snprintf(b->method, sizeof(b->method), "%s", method);
    snprintf(b->password, sizeof(b->password), "%s", r->password ? r->password : "");
    b->port = r->port;
    b->concurrency = r->concurrency > 0 ? r->concurrency : 4;
    b->retries = r->retries >= 0 ? r->retries : 1;
    b->timeout_s = r->timeout_s > 0 ? r->timeout_s : 300;
    b->max_failure_rate = r->max_failure_rate >= 0 ? r->max_failure_rate : 0.2;
    b->created = records_now_ms(rec);
    snprintf(b->state, sizeof(b->state), "running");
    b->n = sc.n;
    for (size_t i = 0; i < sc.n; i++) {
        struct bulk_board *bb = &b->boards[i];
        snprintf(bb->mac, sizeof(bb->mac), "%s", sc.macs[i]);
        struct records_board rb;
        if (records_board_get(rec, bb->mac, &rb, NULL) == 0 &&
            strcmp(rb.running_version, fw->version) == 0 &&
            (!rb.current_firmware[0] ||
             strncmp(rb.current_firmware, fw->name, strlen(fw->name)) == 0)) {
            bb->state = BB_SKIPPED;
            snprintf(bb->error, sizeof(bb->error), "already runs %s", fw->version);
        }
    }
    free(sc.macs);
    ota_fw_unref(fw);
    b->next = o->bulks;
    o->bulks = b;
    *bulk_id = b->id;
    log_msg(LOG_LEVEL_NOTICE,
            "bulk %lld: %s to %zu boards by %s (concurrency %d, retries %d, "
            "max failure rate %.2f)",
            (long long)b->id, b->firmware, b->n, b->method, b->concurrency, b->retries,
            b->max_failure_rate);
    bulk_event(o, b, "bulk.started");
    bulk_pump(o, b);
    return 0;
}

int ota_bulk_cancel(struct ota *o, int64_t bulk_id)
{
    struct ota_bulk *b = bulk_find(o, bulk_id);
    if (!b)
        return -ENOENT;
    b->cancelled = true;
    bulk_pump(o, b);
    return 0;
}

static json_object *bulk_to_json(const struct ota_bulk *b, bool boards)
{
    size_t c[5];
    bulk_counts(b, c);
    json_object *j = json_object_new_object();
    char t[RECORDS_TIME_LEN];
    json_object_object_add(j, "id", json_object_new_int64(b->id));
    json_object_object_add(j, "state", json_object_new_string(b->state));
    json_object_object_add(j, "firmware", json_object_new_string(b->firmware));
    json_object_object_add(j, "method", json_object_new_string(b->method));
    json_object_object_add(j, "concurrency", json_object_new_int(b->concurrency));
    json_object_object_add(j, "retries", json_object_new_int(b->retries));
    json_object_object_add(j, "max_failure_rate", json_object_new_double(b->max_failure_rate));
    json_object_object_add(j, "created",
                           json_object_new_string(records_format_time(b->created, t, sizeof(t))));
    json_object_object_add(j, "reason", b->reason[0] ? json_object_new_string(b->reason) : NULL);
    json_object *cnt = json_object_new_object();
    json_object_object_add(cnt, "total", json_object_new_int64((int64_t)b->n));
    for (int i = 0; i < 5; i++)
        json_object_object_add(cnt, bb_name((enum bulk_board_state)i),
                               json_object_new_int64((int64_t)c[i]));
    json_object_object_add(j, "counts", cnt);
    if (boards) {
        json_object *arr = json_object_new_array();
        for (size_t i = 0; i < b->n; i++) {
            const struct bulk_board *bb = &b->boards[i];
            json_object *e = json_object_new_object();
            json_object_object_add(e, "mac", json_object_new_string(bb->mac));
            json_object_object_add(e, "state", json_object_new_string(bb_name(bb->state)));
            json_object_object_add(e, "attempts", json_object_new_int(bb->attempts));
            json_object_object_add(e, "job_id",
                                   bb->job_id ? json_object_new_int64(bb->job_id) : NULL);
            json_object_object_add(e, "error",
                                   bb->error[0] ? json_object_new_string(bb->error) : NULL);
            json_object_array_add(arr, e);
        }
        json_object_object_add(j, "boards", arr);
    }
    return j;
}

char *ota_bulk_json(struct ota *o, int64_t bulk_id)
{
    struct ota_bulk *b = bulk_find(o, bulk_id);
    if (!b)
        return NULL;
    json_object *j = bulk_to_json(b, true);
    char *s = strdup(json_object_to_json_string_ext(j, JSON_C_TO_STRING_PLAIN));
    json_object_put(j);
    return s;
}

char *ota_bulk_list_json(struct ota *o)
{
    json_object *arr = json_object_new_array();
    for (struct ota_bulk *b = o->bulks; b; b = b->next)
        json_object_array_add(arr, bulk_to_json(b, false));
    json_object *j = json_object_new_object();
    json_object_object_add(j, "bulks", arr);
    char *s = strdup(json_object_to_json_string_ext(j, JSON_C_TO_STRING_PLAIN));
    json_object_put(j);
    return s;
}
