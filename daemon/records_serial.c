/*
 * records_serial: serial numbers per profile across a line of stations; see
 * records_serial.h.
 *
 * Why the retry is enough: on SQLite the transaction is BEGIN IMMEDIATE, so one
 * writer at a time and no race at all. On PostgreSQL (READ COMMITTED) two
 * stations can both read max = 41 and both insert 42; the second insert waits
 * for the first transaction, then fails with a unique violation (-EEXIST). Its
 * transaction is rolled back and the next attempt reads 42 as committed and
 * takes 43 -- or finds the board's own number, when the other station was
 * allocating for this same board. Every lost round is some other board's win,
 * so RECORDS_SERIAL_ATTEMPTS bounds a round of that many racing stations.
 */
#include "records_serial.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "records_priv.h"

static const char sql_of[] = "SELECT profile, number, text, mac, job_id, station, assigned_at "
                             "FROM serials WHERE profile = ?1 AND mac = ?2";
static const char sql_max[] = "SELECT max(number) FROM serials WHERE profile = ?1";
static const char sql_insert[] =
    "INSERT INTO serials (profile, number, text, mac, job_id, station, assigned_at) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";
static const char sql_of_board[] =
    "SELECT profile, number, text, mac, job_id, station, assigned_at FROM serials "
    "WHERE mac = ?1 ORDER BY assigned_at DESC, profile";
static const char sql_count[] = "SELECT count(*) FROM serials WHERE profile = ?1";

static int check_profile(const char *profile, struct records_error *err)
{
    if (!profile || !*profile)
        return rec_set_err(err, -EINVAL, "records: serial: profile name missing");
    return rec_check_text("serial profile", profile, RECORDS_SERIAL_PROFILE_LEN, err);
}

static void read_serial(struct rdb_stmt *st, void *out)
{
    struct records_serial *s = out;
    memset(s, 0, sizeof(*s));
    rec_col_text(st, 0, s->profile, sizeof(s->profile));
    s->number = rec_col_int(st, 1, -1);
    rec_col_text(st, 2, s->text, sizeof(s->text));
    rec_col_text(st, 3, s->mac, sizeof(s->mac));
    s->job_id = rec_col_int(st, 4, 0);
    rec_col_text(st, 5, s->station, sizeof(s->station));
    s->assigned_at = rec_col_int(st, 6, 0);
}

int records_serial_of(struct records *r, const char *profile, const char *mac,
                      struct records_serial *out, struct records_error *err)
{
    char norm[RECORDS_MAC_LEN];
    struct rdb_stmt *st;
    int ret;
    ENTER(r, err);
    if ((ret = check_profile(profile, err)) < 0 || (ret = rec_normalize_mac(mac, norm, err)) < 0)
        return ret;
    if ((ret = rec_prep(r, sql_of, NULL, &st, err)) < 0)
        return ret;
    rdb_bind_text(st, 1, profile);
    rdb_bind_text(st, 2, norm);
    return rec_get_one(r, st, read_serial, out, "cannot read the serial number", err,
                       "records: %s has no serial number of profile %s", norm, profile);
}

/* One attempt inside the caller's transaction: 1 the board's own, 0 inserted,
 * -EEXIST lost a race, other < 0 with err. */
static int assign_once(struct records *r, const char *profile, const char *norm, int64_t start,
                       const char *format, int64_t job_id, struct records_serial *s,
                       struct records_error *err)
{
    struct rdb_stmt *of, *mx, *ins;
    int ret, rc;
    if ((ret = rec_prep(r, sql_of, NULL, &of, err)) < 0 ||
        (ret = rec_prep(r, sql_max, NULL, &mx, err)) < 0 ||
        (ret = rec_prep(r, sql_insert, NULL, &ins, err)) < 0)
        return ret;
    rdb_bind_text(of, 1, profile);
    rdb_bind_text(of, 2, norm);
    rc = rdb_step(of);
    if (rc == RDB_ROW)
        read_serial(of, s);
    rec_stmt_done(of);
    if (rc == RDB_ROW)
        return 1;
    if (rc != RDB_DONE)
        return rec_db_err(r, err, rc, "cannot read the serial number");
    rdb_bind_text(mx, 1, profile);
    rc = rdb_step(mx);
    int64_t next = start;
    if (rc == RDB_ROW) {
        int64_t top = rec_col_int(mx, 0, -1); /* NULL: the profile's first number */
        if (top >= start)
            next = top + 1;
    }
    rec_stmt_done(mx);
    if (rc != RDB_ROW)
        return rec_db_err(r, err, rc, "cannot read the profile's serial numbers");
    if (next > RECORDS_SERIAL_MAX_NUMBER)
        return rec_set_err(err, -ERANGE,
                           "records: profile %s has used every serial number up to %lld", profile,
                           (long long)RECORDS_SERIAL_MAX_NUMBER);
    memset(s, 0, sizeof(*s));
    snprintf(s->profile, sizeof(s->profile), "%s", profile);
    snprintf(s->mac, sizeof(s->mac), "%s", norm);
    s->number = next;
    s->job_id = job_id > 0 ? job_id : 0;
    snprintf(s->station, sizeof(s->station), "%s", r->station);
    s->assigned_at = records_now_ms(r);
    rc = serial_fmt_render(format, (uint64_t)next, s->text, sizeof(s->text));
    if (rc < 0)
        return rec_set_err(err, -EINVAL, "records: serial number %lld does not fit format \"%s\"",
                           (long long)next, format);
    rdb_bind_text(ins, 1, profile);
    rdb_bind_int64(ins, 2, next);
    rdb_bind_text(ins, 3, s->text);
    rdb_bind_text(ins, 4, norm);
    rec_bind_opt_int(ins, 5, job_id > 0 ? job_id : -1);
    rec_bind_text(ins, 6, r->station);
    rdb_bind_int64(ins, 7, s->assigned_at);
    rc = rdb_step(ins);
    rec_stmt_done(ins);
    if (rc == -EEXIST)
        return -EEXIST;
    return rc == RDB_DONE ? 0 : rec_db_err(r, err, rc, "cannot record the serial number");
}

int records_serial_assign(struct records *r, const char *profile, const char *mac, int64_t start,
                          const char *format, int64_t job_id, int64_t *number, char *text,
                          struct records_error *err)
{
    char norm[RECORDS_MAC_LEN], why[160];
    struct records_serial s;
    int ret;
    ENTER(r, err);
    if (!number || !text)
        return rec_set_err(err, -EINVAL, "records: serial: no output");
    *number = -1;
    text[0] = '\0';
    if ((ret = check_profile(profile, err)) < 0 || (ret = rec_normalize_mac(mac, norm, err)) < 0)
        return ret;
    if (start < 0 || start > RECORDS_SERIAL_MAX_NUMBER)
        return rec_set_err(err, -EINVAL, "records: serial start %lld out of range 0..%lld",
                           (long long)start, (long long)RECORDS_SERIAL_MAX_NUMBER);
    if (serial_fmt_check(format, why, sizeof(why)) < 0)
        return rec_set_err(err, -EINVAL, "records: serial format \"%s\": %s",
                           format ? format : "(null)", why);
    for (int attempt = 0; attempt < RECORDS_SERIAL_ATTEMPTS; attempt++) {
        /* Durable like a pool file: a number given is never given again after a crash. */
        int rc = rdb_set_durable(r->db, true);
        if (rc >= 0)
            rc = rdb_begin(r->db);
        if (rc < 0) {
            ret = rec_db_err(r, err, rc, "cannot start the serial number's transaction");
            rdb_set_durable(r->db, false);
            return ret;
        }
        rc = assign_once(r, profile, norm, start, format, job_id, &s, err);
        if (rc >= 0) {
            int crc = rdb_commit(r->db);
            if (crc < 0) {
                /* PostgreSQL reports a deferred unique violation at commit too. */
                ret = crc == -EEXIST ? -EEXIST
                                     : rec_db_err(r, err, crc, "cannot commit the serial number");
                rdb_rollback(r->db);
                rdb_set_durable(r->db, false);
                if (ret == -EEXIST)
                    continue;
                return ret;
            }
            rdb_set_durable(r->db, false);
            *number = s.number;
            snprintf(text, RECORDS_SERIAL_TEXT_LEN, "%s", s.text);
            return rc;
        }
        rdb_rollback(r->db);
        rdb_set_durable(r->db, false);
        if (rc != -EEXIST)
            return rc; /* err set by assign_once */
        rec_clear_err(err);
    }
    return rec_set_err(err, -EAGAIN,
                       "records: serial number of profile %s for %s: other stations took the "
                       "next number %d times in a row",
                       profile, norm, RECORDS_SERIAL_ATTEMPTS);
}

int records_serials_of_board(struct records *r, const char *mac, records_serial_cb cb, void *ctx,
                             struct records_error *err)
{
    char norm[RECORDS_MAC_LEN];
    struct rdb_stmt *st;
    int rc, ret, n = 0;
    ENTER(r, err);
    if ((ret = rec_normalize_mac(mac, norm, err)) < 0)
        return ret;
    if ((ret = rec_prep(r, sql_of_board, NULL, &st, err)) < 0)
        return ret;
    rdb_bind_text(st, 1, norm);
    while (rec_next_row(r, st, &rc, &n)) {
        struct records_serial s;
        read_serial(st, &s);
        if (cb && cb(&s, ctx))
            break;
    }
    return rec_list_done(r, st, rc, n, "cannot list the board's serial numbers", err);
}

int records_serial_count(struct records *r, const char *profile, int64_t *n,
                         struct records_error *err)
{
    struct rdb_stmt *st;
    int ret;
    ENTER(r, err);
    *n = 0;
    if ((ret = check_profile(profile, err)) < 0)
        return ret;
    if ((ret = rec_prep(r, sql_count, NULL, &st, err)) < 0)
        return ret;
    rdb_bind_text(st, 1, profile);
    int rc = rdb_step(st);
    if (rc == RDB_ROW)
        *n = rdb_column_int64(st, 0);
    ret = rc == RDB_ROW ? 0 : rec_db_err(r, err, rc, "cannot count the serial numbers");
    rec_stmt_done(st);
    return ret;
}
