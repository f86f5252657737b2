/*
 * station_records: the station's side of a records database that can go away
 * (a line's PostgreSQL restarted, or behind a network partition). The store
 * keeps the station's job, event and board writes in a local journal while the
 * database is unreachable (records_open_journaled); a loop timer here drives
 * its non-blocking reconnect and catch-up (records_tick) and tells the
 * technician when the database goes away, when it is back and when the journal
 * has been written. Loop thread only.
 */
#include "job.h"
#include "log.h"
#include "loop.h"
#include "records.h"
#include "station_priv.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>

#define ST_RECORDS_TICK_MS 200
/* Catch-up after a long outage (the journal more than 1000 writes behind): up to 150 ms of
 * each 200 ms tick instead of 50 ms. The loop still serves the API, udev and the workers'
 * messages between ticks (at most ~150 ms late); not while a job waits for its plan, which
 * the loop makes from the records (pool files, serials: the database itself). */
#define ST_RECORDS_LONG_REPLAY_MS 150

/* Whether a job waits on the loop for its plan (or will soon: it has not had it yet). */
static bool job_waits(const struct station *st)
{
    for (const struct job *j = st->jobs; j; j = j->next)
        if (!j->replied)
            return true;
    return false;
}

static void tick(void *ctx)
{
    struct station *st = ctx;
    struct records_journal_status js;
    struct records_error re;
    int rc = records_tick_budget(st->rec, job_waits(st) ? 0 : ST_RECORDS_LONG_REPLAY_MS, &re);
    /* -EIO is the outage itself (logged below, once); another error (the DSN
     * reaching another database) once per kind. */
    if (rc < 0 && rc != -EIO && rc != st->rec_tick_err)
        log_msg(LOG_LEVEL_ERROR, "%s", re.message);
    st->rec_tick_err = rc < 0 && rc != -EIO ? rc : 0;
    if (records_journal_status(st->rec, &js) < 0)
        return;
    if (st->rec_offline && !js.offline) {
        st->rec_offline = false;
        log_msg(LOG_LEVEL_NOTICE,
                "records: the start made offline is finished: the journal is written, %d jobs "
                "an earlier run left unfinished are marked interrupted (this run's jobs are "
                "not)",
                js.recovered_late);
    }
    if (!js.connected && !st->rec_down) {
        st->rec_down = true;
        log_msg(LOG_LEVEL_WARN,
                "%s: jobs go on; their records are kept in %s and written when it answers "
                "again (pool files and serial numbers cannot be allocated meanwhile)",
                js.unreachable, js.path);
    }
    if (js.connected && st->rec_down && js.pending == 0) {
        st->rec_down = false;
        log_msg(LOG_LEVEL_NOTICE,
                "records database reachable again: the journal is written (%" PRId64
                " writes journaled, %" PRId64 " written since start)",
                js.journaled, js.replayed);
    }
    if (js.dropped > st->rec_dropped) {
        st->rec_dropped = js.dropped;
        log_msg(LOG_LEVEL_WARN, "records: %s", js.last_error);
    }
}

int st_records_open(struct station *st, const char *journal, struct records_error *re)
{
    struct records_journal_status js;
    int rc = records_open_journaled(RECORDS_BACKEND_POSTGRESQL, st->cfg->records.dsn, st->name,
                                    journal, &st->rec, re);
    if (rc < 0 || records_journal_status(st->rec, &js) < 0)
        return rc;
    if (js.offline) {
        st->rec_offline = true;
        log_msg(LOG_LEVEL_WARN,
                "%s: starting offline (this data directory worked with this database as "
                "station \"%s\"): jobs go on with %" PRId64
                " reserved job ids, their records kept in %s; migrations, the journal and the "
                "crash recovery run when it answers",
                js.unreachable, st->name, js.reserved_ids, js.path);
    }
    if (js.replayed_at_open > 0)
        log_msg(LOG_LEVEL_NOTICE,
                "records: %" PRId64 " writes an earlier run left in the journal %s are written "
                "to the database",
                js.replayed_at_open, js.path);
    if (js.last_error[0])
        log_msg(LOG_LEVEL_WARN, "records: %s", js.last_error);
    return 0;
}

int st_records_watch(struct station *st)
{
    struct records_journal_status js;
    if (records_journal_status(st->rec, &js) < 0)
        return 0; /* SQLite: a local file, nothing to watch */
    st->rec_timer = loop_timer_new(st->loop, tick, st);
    if (!st->rec_timer)
        return -ENOMEM;
    return loop_timer_arm(st->rec_timer, ST_RECORDS_TICK_MS, ST_RECORDS_TICK_MS);
}

void st_records_unwatch(struct station *st)
{
    loop_timer_free(st->rec_timer);
    st->rec_timer = NULL;
}
