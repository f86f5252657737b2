/*
 * ota_bulk.c: bulk updates for the OTA manager (ota.h): "update these boards
 * (by group, profile, chip or list) to firmware X".
 *
 * A bulk update runs on the loop thread (its per-board pushes are recorded as
 * jobs; its progress goes to the event stream as "bulk.*" events). It starts
 * at most `concurrency` boards at a time, retries a failed board up to
 * `retries` times, skips boards already running the target, and stops
 * starting new boards once the failed boards exceed max_failure_rate ×
 * selected boards (that many failures already guarantee the run's failure
 * rate passes the threshold). A "pull" bulk pins each board's target and
 * waits (timeout_s) for the board to check in with the target's version.
 *
 * Persistence: every bulk is stored in the records (records_bulk_*), and every
 * change of a bulk or one of its boards is written when it happens, so the
 * REST answers (ota_bulk_json, ota_bulk_list_json) are read from the store and
 * a restart loses nothing. The in-memory struct ota_bulk is the working copy
 * of a bulk this process runs (or ran). At start-up (the first sweep tick, or
 * the first bulk call, whichever comes first) the store's "running" bulks are
 * resumed: a push board left "running" goes back to "pending" (its job was
 * marked interrupted by the records' start-up recovery; the interrupted
 * attempt still counts against `retries`, but the board always gets one more
 * attempt) unless its job had passed; a pull board left "running" keeps
 * waiting with a fresh deadline; a "bulk.resumed" event is posted. While the
 * daemon stops (SIGTERM), pushes cancelled under a bulk return their boards to
 * "pending" and nothing new starts: the bulk stays "running" in the store and
 * resumes at the next start.
 *
 * Passwords: the password given for a bulk is kept in memory only, never
 * written to the store; a resumed push bulk uses the profile's ota_password
 * (logged when the bulk had its own).
 *
 * A line of stations (one shared store): a bulk is run by one station, its owner,
 * under a lease (records_blobs.h: bulks.owner, lease_until) that the owner renews
 * every lease/3 while the bulk runs. Resuming at start-up takes only the bulks this
 * station can claim (its own, ownerless, or with the lease run out); the others run
 * elsewhere. Every lease/3 the station also looks for running bulks whose lease ran
 * out (their owner died or lost the database) and takes them over -- one conditional
 * UPDATE, so one station wins -- resuming them as after a restart: a push board left
 * "running" by the dead owner is passed if its job passed, else pending again (the
 * attempt counts against `retries`, the board always gets one more). An owner whose
 * renewal finds the bulk taken over stops running it (a push in flight ends
 * unrecorded in the bulk). The owner starts no board unless its lease surely still
 * runs (the last renewal that succeeded was sent less than a lease ago): a failed
 * renewal or a stalled loop stops new pushes at once, so only a push already in flight
 * can meet the new owner's retry of its board (docs/OPERATIONS.md, "Bulk updates across
 * the line"). A pull board's update is also noticed from the shared
 * board record, since the board may check in at any station of the line. A push
 * whose set is still being fetched from the line (line_fw.h) waits, pending.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <json-c/json.h>

#include "fdbudget.h"
#include "log.h"
#include "loop.h"
#include "ota_priv.h"
#include "records_blobs.h"
#include "station.h"

/* Bulks listed by GET /api/v1/bulk (newest first). */
#define BULK_LIST_MAX 1000

/* ---- bulk state ------------------------------------------------------------------------- */

enum bulk_board_state { BB_PENDING = 0, BB_RUNNING, BB_PASSED, BB_FAILED, BB_SKIPPED };

static const char *const bb_names[] = {"pending", "running", "passed", "failed", "skipped"};

static const char *bb_name(enum bulk_board_state s)
{
    return bb_names[s];
}

static enum bulk_board_state bb_from(const char *s)
{
    for (int i = 0; i < 5; i++)
        if (strcmp(s, bb_names[i]) == 0)
            return (enum bulk_board_state)i;
    return BB_FAILED;
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
    int64_t id; /* the records' bulk id */
    char firmware[RECORDS_FIRMWARE_LEN];
    char version[RECORDS_NAME_LEN];
    char method[16];
    char password[129]; /* memory only */
    char user[65];      /* webform Basic user, "" = config ota.webform_user (stored) */
    bool filesystem;    /* push the filesystem image (stored) */
    int port;
    int concurrency, retries, timeout_s;
    double max_failure_rate;
    struct bulk_board *boards;
    size_t n;
    char state[16]; /* running, passed, failed, stopped, cancelled */
    char reason[256];
    bool cancelled;
    int64_t fw_wait_until; /* the set is being fetched from the line: no start before */
    /* loop_now_ms() until which this station's lease surely runs (the time the last claim
     * or renewal that succeeded was sent + the lease); 0 after a renewal failed. No board
     * starts past it: another station may have taken the bulk over. */
    int64_t lease_ok_until;
    bool lease_lost_logged; /* "no new board starts" logged since the lease was last good */
    bool renew_failing;     /* "cannot renew" logged since the last good renewal */
    bool pumping;           /* bulk_pump is on the stack (done -> pump recursion) */
    bool end_reported;      /* "bulk.finished" posted */
    struct ota_bulk *next;
};

static void bulk_pump(struct ota *o, struct ota_bulk *b);
static void bulks_resume(struct ota *o);

/* How long a bulk's lease runs (ms): 15 s; ESPSTATION_BULK_LEASE_MS (tests) overrides. */
static int64_t bulk_lease_ms(void)
{
    const char *e = getenv("ESPSTATION_BULK_LEASE_MS");
    long long v = e && *e ? atoll(e) : 0;
    return v >= 100 && v <= 3600000 ? (int64_t)v : 15000;
}

/* Boards may start: this station's lease of the bulk surely still runs. */
static bool bulk_lease_ok(struct ota_bulk *b)
{
    if (loop_now_ms() < b->lease_ok_until) {
        b->lease_lost_logged = false;
        return true;
    }
    if (!b->lease_lost_logged)
        log_msg(LOG_LEVEL_WARN,
                "bulk %lld: %s: no new board starts until it is renewed (another station may "
                "take the bulk over)",
                (long long)b->id,
                b->lease_ok_until ? "its lease ran out before it was renewed"
                                  : "its lease could not be taken or renewed");
    b->lease_lost_logged = true;
    return false;
}

static struct ota_bulk *bulk_find(struct ota *o, int64_t id)
{
    for (struct ota_bulk *b = o->bulks; b; b = b->next)
        if (b->id == id)
            return b;
    return NULL;
}

/* The daemon is stopping: pushes are being cancelled, nothing new starts. */
static bool bulk_stopping(struct ota *o)
{
    return o->stopping || station_stopping(o->st);
}

/* ---- persistence ------------------------------------------------------------------------ */

static void bulk_save_board(struct ota *o, struct ota_bulk *b, const struct bulk_board *bb)
{
    struct records_bulk_board rb;
    struct records_error re;
    memset(&rb, 0, sizeof(rb));
    snprintf(rb.mac, sizeof(rb.mac), "%s", bb->mac);
    snprintf(rb.state, sizeof(rb.state), "%s", bb_name(bb->state));
    rb.attempts = bb->attempts;
    rb.job_id = bb->job_id;
    snprintf(rb.error, sizeof(rb.error), "%s", bb->error);
    if (records_bulk_board_put(station_records(o->st), b->id, &rb, &re) < 0)
        log_msg(LOG_LEVEL_WARN, "bulk %lld: cannot record board %s: %s", (long long)b->id, bb->mac,
                re.message);
}

static void bulk_save_state(struct ota *o, struct ota_bulk *b)
{
    struct records_error re;
    if (records_bulk_set_state(station_records(o->st), b->id, b->state, b->reason, &re) < 0)
        log_msg(LOG_LEVEL_WARN, "bulk %lld: cannot record its state %s: %s", (long long)b->id,
                b->state, re.message);
}

/* ---- running a bulk --------------------------------------------------------------------- */

/* "bulk.board": one board of the bulk ended (passed, failed, or skipped at the start because
 * it already runs the release); the event stream and /metrics count boards by it. */
static void bulk_board_event(struct ota *o, const struct ota_bulk *b, const struct bulk_board *bb)
{
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
}

static void bulk_board_done(struct ota *o, struct ota_bulk *b, struct bulk_board *bb, bool ok,
                            const char *why)
{
    if (bb->state != BB_RUNNING)
        return;
    if (!ok && bulk_stopping(o) && strcmp(b->state, "running") == 0) {
        /* SIGTERM cancelled the push: the board is tried again when the bulk resumes. */
        bb->state = BB_PENDING;
        snprintf(bb->error, sizeof(bb->error),
                 "interrupted: espstationd stopped during attempt %d; the bulk resumes at the "
                 "next start",
                 bb->attempts);
        bulk_save_board(o, b, bb);
        return;
    }
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
    bulk_save_board(o, b, bb);
    bulk_board_event(o, b, bb);
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

void ota_bulk_on_push_room(struct ota *o)
{
    for (struct ota_bulk *b = o->bulks; b && o->n_pushes < FD_BUDGET_PUSHES; b = b->next)
        if (strcmp(b->state, "running") == 0 && strcmp(b->method, "pull") != 0)
            bulk_pump(o, b);
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

static void bulk_event(struct ota *o, struct ota_bulk *b, const char *kind, int requeued)
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
    if (requeued >= 0)
        json_object_object_add(j, "requeued", json_object_new_int(requeued));
    if (b->reason[0])
        json_object_object_add(j, "reason", json_object_new_string(b->reason));
    station_post_event(o->st, kind, NULL, NULL, 0,
                       json_object_to_json_string_ext(j, JSON_C_TO_STRING_PLAIN));
    json_object_put(j);
}

/* The bulk's set is on its way from another station of the line: the board stays
 * pending (the attempt not counted) and the bulk starts nothing for a while. */
static void bulk_wait_fw(struct ota_bulk *b, struct bulk_board *bb, const char *why)
{
    bb->attempts--;
    bb->state = BB_PENDING;
    if (!b->fw_wait_until)
        log_msg(LOG_LEVEL_NOTICE, "bulk %lld: %s; its boards wait", (long long)b->id, why);
    b->fw_wait_until = loop_now_ms() + 2000;
}

static void bulk_start_board(struct ota *o, struct ota_bulk *b, struct bulk_board *bb)
{
    bb->attempts++;
    bb->state = BB_RUNNING;
    char err[300] = "";
    if (strcmp(b->method, "pull") == 0) {
        int rc = ota_set_target(o, bb->mac, b->firmware, err, sizeof(err));
        if (rc == -EAGAIN) {
            bulk_wait_fw(b, bb, err);
            return;
        }
        if (rc < 0) {
            bb->attempts = b->retries + 1; /* not retryable */
            bulk_board_done(o, b, bb, false, err);
            return;
        }
        bb->deadline_ms = loop_now_ms() + (int64_t)b->timeout_s * 1000;
        bulk_save_board(o, b, bb);
        return;
    }
    struct ota_push_request r = {.mac = bb->mac,
                                 .method = b->method,
                                 .firmware = b->firmware,
                                 .password = b->password[0] ? b->password : NULL,
                                 .user = b->user[0] ? b->user : NULL,
                                 .filesystem = b->filesystem,
                                 .port = b->port,
                                 .bulk_id = b->id};
    int64_t job_id = 0;
    int rc = ota_push(o, &r, &job_id, err, sizeof(err));
    if (rc == -EAGAIN) {
        bulk_wait_fw(b, bb, err);
        return;
    }
    if (rc == -ENOSPC) { /* no place among the pushes: bulk_pump checks first, so rare */
        bb->attempts--;
        bb->state = BB_PENDING;
        return;
    }
    if (rc < 0) {
        if (rc != -EBUSY)
            bb->attempts = b->retries + 1;
        bulk_board_done(o, b, bb, false, err);
        return;
    }
    bb->job_id = job_id;
    bulk_save_board(o, b, bb);
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
                bulk_save_state(o, b);
            } else if ((double)c[BB_FAILED] > b->max_failure_rate * (double)b->n) {
                snprintf(b->state, sizeof(b->state), "stopped");
                snprintf(b->reason, sizeof(b->reason),
                         "stopped: %zu of %zu boards failed, more than the allowed failure rate "
                         "%.0f%%",
                         c[BB_FAILED], b->n, b->max_failure_rate * 100.0);
                log_msg(LOG_LEVEL_WARN, "bulk %lld %s", (long long)b->id, b->reason);
                bulk_save_state(o, b);
                bulk_event(o, b, "bulk.stopped", -1);
            }
        }
        if (strcmp(b->state, "running") != 0) {
            if (c[BB_RUNNING] == 0 && !b->end_reported) {
                b->end_reported = true;
                bulk_event(o, b, "bulk.finished", -1);
            }
            break;
        }
        if (c[BB_PENDING] == 0) {
            if (c[BB_RUNNING] == 0) {
                snprintf(b->state, sizeof(b->state), c[BB_FAILED] ? "failed" : "passed");
                b->end_reported = true;
                bulk_save_state(o, b);
                log_msg(LOG_LEVEL_NOTICE, "bulk %lld %s: %zu passed, %zu failed, %zu skipped",
                        (long long)b->id, b->state, c[BB_PASSED], c[BB_FAILED], c[BB_SKIPPED]);
                bulk_event(o, b, "bulk.finished", -1);
            }
            break;
        }
        if ((int)c[BB_RUNNING] >= b->concurrency || bulk_stopping(o) || !bulk_lease_ok(b))
            break;
        /* At most FD_BUDGET_PUSHES pushes at once, whatever the concurrency (the open-file
         * budget's room for them); ota_bulk_on_push_room continues when one ends. */
        if (strcmp(b->method, "pull") != 0 && o->n_pushes >= FD_BUDGET_PUSHES)
            break;
        if (b->fw_wait_until) {
            if (loop_now_ms() < b->fw_wait_until)
                break;
            b->fw_wait_until = 0;
        }
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

static void bulk_resume_one(struct ota *o, int64_t id);

struct lease_scan {
    struct ota *o;
    int64_t now;
    int64_t ids[16];
    int n;
};

static int lease_scan_cb(const struct records_bulk_lease *l, void *ctx)
{
    struct lease_scan *ls = ctx;
    if (!bulk_find(ls->o, l->id) && (!l->owner[0] || l->lease_until < ls->now) && ls->n < 16)
        ls->ids[ls->n++] = l->id;
    return 0;
}

/* Every lease/3: renews this station's leases (a bulk another station took over is let
 * go), and takes over running bulks whose lease ran out. */
static void bulk_leases(struct ota *o)
{
    static const char why_lost[] = "another station took it over (this station's lease ran "
                                   "out: was it cut off from the database?)";
    int64_t lease = bulk_lease_ms();
    struct records *rec = station_records(o->st);
    struct records_error re;
    struct ota_bulk **pp = &o->bulks;
    while (*pp) {
        struct ota_bulk *b = *pp;
        bool running = strcmp(b->state, "running") == 0;
        int64_t sent = loop_now_ms();
        int rc = running ? records_bulk_renew(rec, b->id, lease, &re) : 1;
        if (running && rc <= 0)
            b->lease_ok_until = 0; /* start nothing until a renewal succeeds */
        if (running && rc > 0) {
            bool was_ok = sent < b->lease_ok_until;
            b->lease_ok_until = sent + lease;
            if (!was_ok && b->lease_lost_logged) {
                log_msg(LOG_LEVEL_NOTICE, "bulk %lld: its lease is renewed: boards start again",
                        (long long)b->id);
                bulk_pump(o, b);
            }
        }
        if (rc == 0 && !b->pumping) {
            log_msg(LOG_LEVEL_WARN, "bulk %lld: %s; it stops here", (long long)b->id, why_lost);
            *pp = b->next;
            free(b->boards);
            free(b);
            continue;
        }
        if (rc < 0 && !b->renew_failing)
            log_msg(LOG_LEVEL_WARN, "bulk %lld: cannot renew its lease: %s", (long long)b->id,
                    re.message);
        b->renew_failing = rc < 0;
        pp = &b->next;
    }
    struct lease_scan ls = {.o = o, .now = records_now_ms(rec)};
    if (records_bulk_leases(rec, lease_scan_cb, &ls, &re) < 0) {
        /* once per outage, not every tick (the records layer says when it is back) */
        if (!o->bulk_leases_failing)
            log_msg(LOG_LEVEL_WARN,
                    "cannot read the bulk leases: %s; bulks of stations that stop are not "
                    "taken over until it can",
                    re.message);
        o->bulk_leases_failing = true;
        return;
    }
    if (o->bulk_leases_failing)
        log_msg(LOG_LEVEL_NOTICE, "bulk leases readable again");
    o->bulk_leases_failing = false;
    for (int i = 0; i < ls.n; i++)
        bulk_resume_one(o, ls.ids[i]);
}

void ota_bulk_tick(struct ota *o)
{
    bulks_resume(o);
    int64_t now = loop_now_ms();
    if (now >= o->bulk_lease_next && !bulk_stopping(o)) {
        o->bulk_lease_next = now + bulk_lease_ms() / 3;
        bulk_leases(o);
    }
    for (struct ota_bulk *b = o->bulks; b; b = b->next) {
        if (b->fw_wait_until && now >= b->fw_wait_until && strcmp(b->state, "running") == 0)
            bulk_pump(o, b);
        if (strcmp(b->method, "pull") != 0)
            continue;
        for (size_t i = 0; i < b->n; i++) {
            struct bulk_board *bb = &b->boards[i];
            struct records_board rb;
            if (bb->state == BB_RUNNING &&
                records_board_get(station_records(o->st), bb->mac, &rb, NULL) == 0 &&
                strcmp(rb.running_version, b->version) == 0) {
                /* it checked in with the release, maybe at another station of the line */
                bulk_board_done(o, b, bb, true, NULL);
                continue;
            }
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

/* ---- resuming after a restart ----------------------------------------------------------- */

struct id_list {
    int64_t *v;
    size_t n, cap;
};

static int id_cb(const struct records_bulk *rb, void *ctx)
{
    struct id_list *l = ctx;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 8;
        void *nv = realloc(l->v, cap * sizeof(*l->v));
        if (!nv)
            return 1;
        l->v = nv;
        l->cap = cap;
    }
    l->v[l->n++] = rb->id;
    return 0;
}

struct load_ctx {
    struct ota_bulk *b;
    size_t cap;
    bool nomem;
};

static int load_board_cb(const struct records_bulk_board *rb, void *ctx)
{
    struct load_ctx *l = ctx;
    struct ota_bulk *b = l->b;
    if (b->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 32;
        void *nv = realloc(b->boards, cap * sizeof(*b->boards));
        if (!nv) {
            l->nomem = true;
            return 1;
        }
        b->boards = nv;
        l->cap = cap;
    }
    struct bulk_board *bb = &b->boards[b->n++];
    memset(bb, 0, sizeof(*bb));
    snprintf(bb->mac, sizeof(bb->mac), "%s", rb->mac);
    bb->state = bb_from(rb->state);
    bb->attempts = rb->attempts;
    bb->job_id = rb->job_id;
    snprintf(bb->error, sizeof(bb->error), "%s", rb->error);
    return 0;
}

static void bulk_resume_one(struct ota *o, int64_t id)
{
    struct records *rec = station_records(o->st);
    struct records_bulk rb;
    struct records_error re;
    struct records_bulk_lease prev;
    if (bulk_find(o, id))
        return;
    /* only the station that wins the claim runs it (its own, ownerless, or the lease ran out) */
    int64_t sent = loop_now_ms();
    int won = records_bulk_claim(rec, id, bulk_lease_ms(), &prev, &re);
    if (won < 0)
        log_msg(LOG_LEVEL_WARN, "bulk %lld: cannot claim it: %s", (long long)id, re.message);
    if (won <= 0 || records_bulk_get(rec, id, &rb, &re) < 0)
        return;
    const char *me = station_name(o->st);
    bool takeover = prev.owner[0] && strcmp(prev.owner, me) != 0;
    struct ota_bulk *b = calloc(1, sizeof(*b));
    struct load_ctx l = {.b = b};
    if (!b || records_bulk_boards(rec, id, load_board_cb, &l, &re) < 0 || l.nomem) {
        log_msg(LOG_LEVEL_ERROR, "bulk %lld: cannot resume it: %s", (long long)id,
                l.nomem || !b ? "out of memory" : re.message);
        if (b)
            free(b->boards);
        free(b);
        return;
    }
    b->id = rb.id;
    b->lease_ok_until = sent + bulk_lease_ms();
    snprintf(b->firmware, sizeof(b->firmware), "%s", rb.firmware);
    snprintf(b->version, sizeof(b->version), "%s", rb.version);
    snprintf(b->method, sizeof(b->method), "%s", rb.method);
    b->port = rb.port;
    snprintf(b->user, sizeof(b->user), "%s", rb.user);
    b->filesystem = rb.filesystem;
    b->concurrency = rb.concurrency > 0 ? rb.concurrency : 1;
    b->retries = rb.retries;
    b->timeout_s = rb.timeout_s > 0 ? rb.timeout_s : 300;
    b->max_failure_rate = rb.max_failure_rate;
    snprintf(b->state, sizeof(b->state), "running");
    snprintf(b->reason, sizeof(b->reason), "%s", rb.reason);
    bool pull = strcmp(b->method, "pull") == 0;
    int requeued = 0, waiting = 0;
    int64_t now = loop_now_ms();
    for (size_t i = 0; i < b->n; i++) {
        struct bulk_board *bb = &b->boards[i];
        if (bb->state != BB_RUNNING)
            continue;
        if (pull) {
            bb->deadline_ms = now + (int64_t)b->timeout_s * 1000; /* its target stays pinned */
            waiting++;
            continue;
        }
        struct records_job j;
        if (bb->job_id && records_job_get(rec, bb->job_id, &j, NULL) == 0 &&
            j.state == RECORDS_JOB_PASSED) {
            bb->state = BB_PASSED; /* passed before the stop, not yet noted in the bulk */
            bb->error[0] = '\0';
        } else {
            bb->state = BB_PENDING;
            if (takeover)
                snprintf(bb->error, sizeof(bb->error),
                         "interrupted: station %s stopped during attempt %d (job %lld)", prev.owner,
                         bb->attempts, (long long)bb->job_id);
            else
                snprintf(bb->error, sizeof(bb->error),
                         "interrupted: espstationd stopped during attempt %d (job %lld)",
                         bb->attempts, (long long)bb->job_id);
            requeued++;
        }
        bulk_save_board(o, b, bb);
    }
    b->next = o->bulks;
    o->bulks = b;
    size_t c[5];
    bulk_counts(b, c);
    char how[160];
    if (takeover)
        snprintf(how, sizeof(how), "taken over from station %s (its lease ran out)", prev.owner);
    else
        snprintf(how, sizeof(how), "resumed after a restart");
    log_msg(LOG_LEVEL_NOTICE,
            "bulk %lld %s: %s to %zu boards by %s (%d requeued, %d waiting "
            "for check-in, %zu pending, %zu passed, %zu failed)",
            (long long)b->id, how, b->firmware, b->n, b->method, requeued, waiting, c[BB_PENDING],
            c[BB_PASSED], c[BB_FAILED]);
    if (rb.password_given && !pull)
        log_msg(LOG_LEVEL_WARN,
                "bulk %lld: the password given with it is not stored; its resumed pushes use the "
                "profile's ota_password",
                (long long)b->id);
    bulk_event(o, b, takeover ? "bulk.taken_over" : "bulk.resumed", requeued);
    bulk_pump(o, b);
}

/* Loads and resumes the store's running bulks, once per process. */
static void bulks_resume(struct ota *o)
{
    if (o->bulks_resumed)
        return;
    o->bulks_resumed = true;
    struct id_list l = {0};
    struct records_error re;
    if (records_bulk_list(station_records(o->st), "running", 0, id_cb, &l, &re) < 0)
        log_msg(LOG_LEVEL_ERROR, "cannot read the running bulk updates: %s", re.message);
    for (size_t i = l.n; i-- > 0;) /* oldest first */
        bulk_resume_one(o, l.v[i]);
    free(l.v);
}

/* ---- starting a bulk -------------------------------------------------------------------- */

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

/* How the boards were chosen, as stored and shown ("select"). */
static void selection_text(const struct ota_bulk_request *r, char *buf, size_t len)
{
    json_object *j = json_object_new_object();
    if (r->group)
        json_object_object_add(j, "group", json_object_new_string(r->group));
    else if (r->profile)
        json_object_object_add(j, "profile", json_object_new_string(r->profile));
    else if (r->chip)
        json_object_object_add(j, "chip", json_object_new_string(r->chip));
    else
        json_object_object_add(j, "macs", json_object_new_int64((int64_t)r->n_macs));
    const char *t = json_object_to_json_string_ext(j, JSON_C_TO_STRING_PLAIN);
    if (strlen(t) < len)
        snprintf(buf, len, "%s", t);
    else
        buf[0] = '\0';
    json_object_put(j);
}

int ota_bulk_start(struct ota *o, const struct ota_bulk_request *r, int64_t *bulk_id, char *err,
                   size_t errlen)
{
    bulks_resume(o);
    int nsel = (r->group != NULL) + (r->profile != NULL) + (r->chip != NULL) + (r->macs != NULL);
    if (nsel != 1) {
        ota_errf(err, errlen, "select exactly one of group, profile, chip or macs");
        return -EINVAL;
    }
    if (r->group && !records_group_name_ok(r->group)) {
        ota_errf(err, errlen, "select.group: a group name is 1 to 64 of A-Z a-z 0-9 . _ -");
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
            bool dup = false;
            for (size_t k = 0; k < sc.n && !dup; k++)
                dup = strcmp(sc.macs[k], b.mac) == 0;
            if (!dup) /* a MAC listed twice is updated once */
                snprintf(sc.macs[sc.n++], RECORDS_MAC_LEN, "%s", b.mac);
        }
    } else {
        struct records_board_filter f = {.group = r->group};
        records_board_list(rec, &f, select_cb, &sc, NULL);
    }
    if (sc.n == 0) {
        free(sc.macs);
        ota_fw_unref(fw);
        if (r->group)
            ota_errf(err, errlen,
                     "the selection matches no board: no board is in group \"%s\" (set groups "
                     "with PUT /api/v1/boards/{mac})",
                     r->group);
        else
            ota_errf(err, errlen, "the selection matches no board");
        return -ENOENT;
    }
    struct ota_bulk *b = calloc(1, sizeof(*b));
    struct records_bulk_board *rbs = calloc(sc.n, sizeof(*rbs));
    if (b)
        b->boards = calloc(sc.n, sizeof(*b->boards));
    if (!b || !b->boards || !rbs) {
        if (b)
            free(b->boards);
        free(b);
        free(rbs);
        free(sc.macs);
        ota_fw_unref(fw);
        ota_errf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    snprintf(b->firmware, sizeof(b->firmware), "%s", fw->ref);
    snprintf(b->version, sizeof(b->version), "%s", fw->version);
    snprintf(b->method, sizeof(b->method), "%s", method);
    snprintf(b->password, sizeof(b->password), "%s", r->password ? r->password : "");
    snprintf(b->user, sizeof(b->user), "%s", r->user ? r->user : "");
    b->filesystem = r->filesystem;
    b->port = r->port;
    b->concurrency = r->concurrency > 0 ? r->concurrency : 4;
    b->retries = r->retries >= 0 ? r->retries : 1;
    b->timeout_s = r->timeout_s > 0 ? r->timeout_s : 300;
    b->max_failure_rate = r->max_failure_rate >= 0 ? r->max_failure_rate : 0.2;
    snprintf(b->state, sizeof(b->state), "running");
    b->n = sc.n;
    for (size_t i = 0; i < sc.n; i++) {
        struct bulk_board *bb = &b->boards[i];
        snprintf(bb->mac, sizeof(bb->mac), "%s", sc.macs[i]);
        struct records_board rb;
        /* a filesystem image leaves the app version as it is: nothing to skip by */
        if (!b->filesystem && records_board_get(rec, bb->mac, &rb, NULL) == 0 &&
            strcmp(rb.running_version, fw->version) == 0 &&
            (!rb.current_firmware[0] ||
             strncmp(rb.current_firmware, fw->name, strlen(fw->name)) == 0)) {
            bb->state = BB_SKIPPED;
            snprintf(bb->error, sizeof(bb->error), "already runs %s", fw->version);
        }
        snprintf(rbs[i].mac, sizeof(rbs[i].mac), "%s", bb->mac);
        snprintf(rbs[i].state, sizeof(rbs[i].state), "%s", bb_name(bb->state));
        snprintf(rbs[i].error, sizeof(rbs[i].error), "%s", bb->error);
    }
    free(sc.macs);
    ota_fw_unref(fw);

    struct records_bulk stored;
    memset(&stored, 0, sizeof(stored));
    snprintf(stored.firmware, sizeof(stored.firmware), "%s", b->firmware);
    snprintf(stored.version, sizeof(stored.version), "%s", b->version);
    snprintf(stored.method, sizeof(stored.method), "%s", b->method);
    selection_text(r, stored.selection, sizeof(stored.selection));
    stored.port = b->port;
    stored.concurrency = b->concurrency;
    stored.retries = b->retries;
    stored.timeout_s = b->timeout_s;
    stored.max_failure_rate = b->max_failure_rate;
    stored.password_given = b->password[0] != '\0';
    snprintf(stored.user, sizeof(stored.user), "%s", b->user);
    stored.filesystem = b->filesystem;
    struct records_error re;
    rc = records_bulk_create(rec, &stored, rbs, b->n, &re);
    free(rbs);
    if (rc < 0) {
        free(b->boards);
        free(b);
        ota_errf(err, errlen, "cannot record the bulk update: %s", re.message);
        return rc == -EINVAL ? -EIO : rc;
    }
    b->id = stored.id;
    b->next = o->bulks;
    o->bulks = b;
    *bulk_id = b->id;
    int64_t sent = loop_now_ms();
    int won = records_bulk_claim(rec, b->id, bulk_lease_ms(), NULL, &re);
    if (won > 0)
        b->lease_ok_until = sent + bulk_lease_ms();
    else /* no board starts here; another station runs it (or the next renewal tells) */
        log_msg(LOG_LEVEL_WARN, "bulk %lld: cannot take its lease: %s", (long long)b->id,
                won < 0 ? re.message : "another station claimed it first");
    log_msg(LOG_LEVEL_NOTICE,
            "bulk %lld: %s to %zu boards by %s (concurrency %d, retries %d, "
            "max failure rate %.2f)",
            (long long)b->id, b->firmware, b->n, b->method, b->concurrency, b->retries,
            b->max_failure_rate);
    bulk_event(o, b, "bulk.started", -1);
    for (size_t i = 0; i < b->n; i++)
        if (b->boards[i].state == BB_SKIPPED)
            bulk_board_event(o, b, &b->boards[i]);
    bulk_pump(o, b);
    return 0;
}

int ota_bulk_cancel(struct ota *o, int64_t bulk_id)
{
    bulks_resume(o);
    struct ota_bulk *b = bulk_find(o, bulk_id);
    if (!b) {
        /* a finished bulk of an earlier run: nothing left to stop */
        struct records_bulk rb;
        return records_bulk_get(station_records(o->st), bulk_id, &rb, NULL) < 0 ? -ENOENT : 0;
    }
    b->cancelled = true;
    bulk_pump(o, b);
    return 0;
}

/* ---- JSON (from the store) -------------------------------------------------------------- */

static json_object *bulk_to_json(const struct records_bulk *b)
{
    json_object *j = json_object_new_object();
    char t[RECORDS_TIME_LEN];
    json_object_object_add(j, "id", json_object_new_int64(b->id));
    json_object_object_add(j, "state", json_object_new_string(b->state));
    json_object_object_add(j, "firmware", json_object_new_string(b->firmware));
    json_object_object_add(j, "method", json_object_new_string(b->method));
    json_object_object_add(j, "image",
                           json_object_new_string(b->filesystem ? "filesystem" : "app"));
    json_object_object_add(j, "select", b->selection[0] ? json_tokener_parse(b->selection) : NULL);
    json_object_object_add(j, "concurrency", json_object_new_int(b->concurrency));
    json_object_object_add(j, "retries", json_object_new_int(b->retries));
    char rate[32];
    snprintf(rate, sizeof(rate), "%.4g", b->max_failure_rate); /* 0.2, not 0.20000000000000001 */
    json_object_object_add(j, "max_failure_rate",
                           json_object_new_double_s(b->max_failure_rate, rate));
    json_object_object_add(j, "timeout_s", json_object_new_int(b->timeout_s));
    json_object_object_add(
        j, "created", json_object_new_string(records_format_time(b->created_at, t, sizeof(t))));
    json_object_object_add(
        j, "ended",
        b->ended_at ? json_object_new_string(records_format_time(b->ended_at, t, sizeof(t)))
                    : NULL);
    json_object_object_add(j, "reason", b->reason[0] ? json_object_new_string(b->reason) : NULL);
    json_object *cnt = json_object_new_object();
    json_object_object_add(cnt, "total", json_object_new_int64(b->total));
    json_object_object_add(cnt, "pending", json_object_new_int64(b->pending));
    json_object_object_add(cnt, "running", json_object_new_int64(b->running));
    json_object_object_add(cnt, "passed", json_object_new_int64(b->passed));
    json_object_object_add(cnt, "failed", json_object_new_int64(b->failed));
    json_object_object_add(cnt, "skipped", json_object_new_int64(b->skipped));
    json_object_object_add(j, "counts", cnt);
    return j;
}

static int board_json_cb(const struct records_bulk_board *bb, void *ctx)
{
    json_object *arr = ctx;
    json_object *e = json_object_new_object();
    json_object_object_add(e, "mac", json_object_new_string(bb->mac));
    json_object_object_add(e, "state", json_object_new_string(bb->state));
    json_object_object_add(e, "attempts", json_object_new_int(bb->attempts));
    json_object_object_add(e, "job_id", bb->job_id ? json_object_new_int64(bb->job_id) : NULL);
    json_object_object_add(e, "error", bb->error[0] ? json_object_new_string(bb->error) : NULL);
    json_object_array_add(arr, e);
    return 0;
}

static char *json_take(json_object *j)
{
    char *s = strdup(json_object_to_json_string_ext(j, JSON_C_TO_STRING_PLAIN));
    json_object_put(j);
    return s;
}

char *ota_bulk_json(struct ota *o, int64_t bulk_id)
{
    bulks_resume(o);
    struct records *rec = station_records(o->st);
    struct records_bulk rb;
    struct records_error re;
    if (records_bulk_get(rec, bulk_id, &rb, &re) < 0) {
        if (re.code != -ENOENT)
            log_msg(LOG_LEVEL_WARN, "bulk %lld: %s", (long long)bulk_id, re.message);
        return NULL;
    }
    json_object *j = bulk_to_json(&rb);
    json_object *arr = json_object_new_array();
    if (records_bulk_boards(rec, bulk_id, board_json_cb, arr, &re) < 0)
        log_msg(LOG_LEVEL_WARN, "bulk %lld: %s", (long long)bulk_id, re.message);
    json_object_object_add(j, "boards", arr);
    return json_take(j);
}

static int list_cb(const struct records_bulk *rb, void *ctx)
{
    json_object_array_add((json_object *)ctx, bulk_to_json(rb));
    return 0;
}

char *ota_bulk_list_json(struct ota *o)
{
    bulks_resume(o);
    json_object *arr = json_object_new_array();
    struct records_error re;
    if (records_bulk_list(station_records(o->st), NULL, BULK_LIST_MAX, list_cb, arr, &re) < 0)
        log_msg(LOG_LEVEL_WARN, "cannot list bulk updates: %s", re.message);
    json_object *j = json_object_new_object();
    json_object_object_add(j, "bulks", arr);
    return json_take(j);
}
