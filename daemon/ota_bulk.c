/*
 * ota_bulk.c: bulk updates for the OTA manager (ota.h): "update these boards
 * (by group, profile, chip or list) to firmware X".
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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <json-c/json.h>

#include "log.h"
#include "loop.h"
#include "ota_priv.h"
#include "station.h"

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

void ota_bulk_on_push_done(struct ota *o, int64_t bulk_id, const char *mac, bool ok,
                           const char *why)
{
    struct ota_bulk *b = bulk_find(o, bulk_id);
    if (b)
        for (size_t i = 0; i < b->n; i++)
            if (strcmp(b->boards[i].mac, mac) == 0)
                bulk_board_done(o, b, &b->boards[i], ok, why);
}

void ota_bulks_free(struct ota *o)
{
    while (o->bulks) {
        struct ota_bulk *b = o->bulks;
        o->bulks = b->next;
        free(b->boards);
        free(b);
    }
}

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
