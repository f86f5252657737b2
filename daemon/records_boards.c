/*
 * records_boards: the boards a station has seen (see records.h): recording and
 * reading them, their address, target firmware, notes and groups, and the baud
 * limit the link of each slot they sit in has shown.
 */
#include "records.h"
#include "records_priv.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BOARD_COLS                                                                                 \
    "mac, chip, revision, flash_id, flash_size, crystal_mhz, first_seen, last_seen, slot, "        \
    "current_firmware, current_md5, ip, running_version, target_firmware, online_state, notes"
/* BOARD_COLS plus the board's groups, comma-separated (names never hold a comma), and its
 * address state (schema 6). AGG is the dialect's string aggregate. */
#define BOARD_SELECT(AGG)                                                                          \
    BOARD_COLS ", (SELECT " AGG "(name, ',') FROM board_groups g WHERE g.mac = boards.mac), "      \
               "ip_confirmed, ip_source, ip_changed_at, ip_claim, ip_claim_source, ip_claim_at"
#define BOARD_LIST(AGG)                                                                            \
    "SELECT " BOARD_SELECT(AGG) " FROM boards WHERE (chip = ?1 OR ?1 IS NULL) "                    \
                                "AND (current_firmware = ?2 OR ?2 IS NULL) "                       \
                                "AND (EXISTS (SELECT 1 FROM board_groups g "                       \
                                "WHERE g.mac = boards.mac AND g.name = ?5) OR ?5 IS NULL) "        \
                                "ORDER BY last_seen DESC, mac LIMIT ?3 OFFSET ?4"

/* ---- boards --------------------------------------------------------------- */

void records_board_init(struct records_board *b)
{
    if (!b)
        return;
    memset(b, 0, sizeof(*b));
    b->revision = -1;
    b->flash_id = -1;
    b->flash_size = -1;
    b->crystal_mhz = -1;
}

static int cmp_group(const void *x, const void *y)
{
    return strcmp((const char *)x, (const char *)y);
}

/* Column i: group names joined by ',' -> b->groups (sorted), b->n_groups. */
static void read_groups(struct rdb_stmt *st, int i, struct records_board *b)
{
    const char *p = rdb_column_text(st, i);
    b->n_groups = 0;
    while (p && *p && b->n_groups < RECORDS_GROUPS_MAX) {
        size_t len = strcspn(p, ",");
        if (len > 0 && len < RECORDS_GROUP_LEN) {
            memcpy(b->groups[b->n_groups], p, len);
            b->groups[b->n_groups][len] = '\0';
            b->n_groups++;
        }
        p += len;
        if (*p == ',')
            p++;
    }
    qsort(b->groups, (size_t)b->n_groups, sizeof(b->groups[0]), cmp_group);
}

static void read_board(struct rdb_stmt *st, void *out)
{
    struct records_board *b = out;
    records_board_init(b);
    rec_col_text(st, 0, b->mac, sizeof(b->mac));
    rec_col_text(st, 1, b->chip, sizeof(b->chip));
    b->revision = (int)rec_col_int(st, 2, -1);
    b->flash_id = rec_col_int(st, 3, -1);
    b->flash_size = rec_col_int(st, 4, -1);
    b->crystal_mhz = (int)rec_col_int(st, 5, -1);
    b->first_seen = rec_col_int(st, 6, 0);
    b->last_seen = rec_col_int(st, 7, 0);
    rec_col_text(st, 8, b->slot, sizeof(b->slot));
    rec_col_text(st, 9, b->current_firmware, sizeof(b->current_firmware));
    rec_col_text(st, 10, b->current_md5, sizeof(b->current_md5));
    rec_col_text(st, 11, b->ip, sizeof(b->ip));
    rec_col_text(st, 12, b->running_version, sizeof(b->running_version));
    rec_col_text(st, 13, b->target_firmware, sizeof(b->target_firmware));
    rec_col_text(st, 14, b->online_state, sizeof(b->online_state));
    rec_col_text(st, 15, b->notes, sizeof(b->notes));
    read_groups(st, 16, b);
    b->ip_confirmed = rec_col_int(st, 17, 0) != 0;
    rec_col_text(st, 18, b->ip_source, sizeof(b->ip_source));
    b->ip_changed_at = rec_col_int(st, 19, 0);
    rec_col_text(st, 20, b->ip_claim, sizeof(b->ip_claim));
    rec_col_text(st, 21, b->ip_claim_source, sizeof(b->ip_claim_source));
    b->ip_claim_at = rec_col_int(st, 22, 0);
}

static const char sql_board_upsert[] =
    "INSERT INTO boards (" BOARD_COLS ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8, ?9, "
    "?10, ?11, ?12, ?13, ?14, ?15) ON CONFLICT (mac) DO UPDATE SET "
    "chip = coalesce(excluded.chip, boards.chip), "
    "revision = coalesce(excluded.revision, boards.revision), "
    "flash_id = coalesce(excluded.flash_id, boards.flash_id), "
    "flash_size = coalesce(excluded.flash_size, boards.flash_size), "
    "crystal_mhz = coalesce(excluded.crystal_mhz, boards.crystal_mhz), "
    "last_seen = excluded.last_seen, slot = coalesce(excluded.slot, boards.slot), "
    "current_firmware = coalesce(excluded.current_firmware, boards.current_firmware), "
    "current_md5 = coalesce(excluded.current_md5, boards.current_md5), "
    "ip_confirmed = CASE WHEN excluded.ip IS NULL OR excluded.ip IS NOT DISTINCT FROM "
    "boards.ip THEN boards.ip_confirmed ELSE 0 END, "
    "ip_source = CASE WHEN excluded.ip IS NULL OR excluded.ip IS NOT DISTINCT FROM "
    "boards.ip THEN boards.ip_source ELSE NULL END, "
    "ip = coalesce(excluded.ip, boards.ip), "
    "running_version = coalesce(excluded.running_version, boards.running_version), "
    "target_firmware = coalesce(excluded.target_firmware, boards.target_firmware), "
    "online_state = coalesce(excluded.online_state, boards.online_state), "
    "notes = coalesce(excluded.notes, boards.notes)";

int records_board_upsert(struct records *r, const struct records_board *b,
                         struct records_error *err)
{
    char mac[RECORDS_MAC_LEN];
    struct rdb_stmt *st;
    int ret;
    ENTER(r, err);
    if (JOURNALED(r))
        return rj_board_upsert(r, b, err);
    if (!b)
        return rec_set_err(err, -EINVAL, "records: no board");
    if ((ret = rec_check_array("board MAC", b->mac, sizeof(b->mac), err)) < 0 ||
        (ret = rec_normalize_mac(b->mac, mac, err)) < 0 ||
        (ret = rec_check_array("board chip", b->chip, sizeof(b->chip), err)) < 0 ||
        (ret = rec_check_array("board slot", b->slot, sizeof(b->slot), err)) < 0 ||
        (ret = rec_check_array("board current_firmware", b->current_firmware,
                               sizeof(b->current_firmware), err)) < 0 ||
        (ret = rec_check_array("board current_md5", b->current_md5, sizeof(b->current_md5), err)) <
            0 ||
        (ret = rec_check_array("board ip", b->ip, sizeof(b->ip), err)) < 0 ||
        (ret = rec_check_array("board running_version", b->running_version,
                               sizeof(b->running_version), err)) < 0 ||
        (ret = rec_check_array("board target_firmware", b->target_firmware,
                               sizeof(b->target_firmware), err)) < 0 ||
        (ret = rec_check_array("board online_state", b->online_state, sizeof(b->online_state),
                               err)) < 0)
        return ret;
    if (!memchr(b->notes, '\0', sizeof(b->notes)))
        return rec_set_err(err, -EINVAL, "records: board notes is not NUL-terminated");
    if ((ret = rec_prep(r, sql_board_upsert, NULL, &st, err)) < 0)
        return ret;
    rdb_bind_text(st, 1, mac);
    rec_bind_text(st, 2, b->chip);
    rec_bind_opt_int(st, 3, b->revision);
    rec_bind_opt_int(st, 4, b->flash_id);
    rec_bind_opt_int(st, 5, b->flash_size);
    rec_bind_opt_int(st, 6, b->crystal_mhz);
    rdb_bind_int64(st, 7, records_now_ms(r));
    rec_bind_text(st, 8, b->slot);
    rec_bind_text(st, 9, b->current_firmware);
    rec_bind_text(st, 10, b->current_md5);
    rec_bind_text(st, 11, b->ip);
    rec_bind_text(st, 12, b->running_version);
    rec_bind_text(st, 13, b->target_firmware);
    rec_bind_text(st, 14, b->online_state);
    rec_bind_text(st, 15, b->notes);
    return rec_write_done(r, st, rdb_step(st), "cannot record board", err);
}

static const char sql_board_get[] =
    "SELECT " BOARD_SELECT("group_concat") " FROM boards WHERE mac = ?1";
static const char sql_board_get_pg[] =
    "SELECT " BOARD_SELECT("string_agg") " FROM boards WHERE mac = ?1";

int records_board_get(struct records *r, const char *mac, struct records_board *out,
                      struct records_error *err)
{
    char norm[RECORDS_MAC_LEN];
    struct rdb_stmt *st;
    int ret;
    ENTER(r, err);
    if (!out)
        return rec_set_err(err, -EINVAL, "records: no output board");
    if ((ret = rec_normalize_mac(mac, norm, err)) < 0)
        return ret;
    if ((ret = rec_prep(r, sql_board_get, sql_board_get_pg, &st, err)) < 0)
        return ret;
    rdb_bind_text(st, 1, norm);
    return rec_get_one(r, st, read_board, out, "cannot read board", err, "records: no board %s",
                       norm);
}

static const char sql_board_list[] = BOARD_LIST("group_concat");
static const char sql_board_list_pg[] = BOARD_LIST("string_agg");

int records_board_list(struct records *r, const struct records_board_filter *f, records_board_cb cb,
                       void *ctx, struct records_error *err)
{
    struct rdb_stmt *st;
    int rc, ret, n = 0;
    ENTER(r, err);
    if ((ret = rec_prep(r, sql_board_list, sql_board_list_pg, &st, err)) < 0)
        return ret;
    rec_bind_text(st, 1, f ? f->chip : NULL);
    rec_bind_text(st, 2, f ? f->firmware : NULL);
    rdb_bind_int64(st, 3, f && f->limit > 0 ? f->limit : REC_NO_LIMIT);
    rdb_bind_int64(st, 4, f && f->offset > 0 ? f->offset : 0);
    rec_bind_text(st, 5, f ? f->group : NULL);
    while (rec_next_row(r, st, &rc, &n)) {
        read_board(st, &r->row.board);
        if (cb && cb(&r->row.board, ctx))
            break;
    }
    return rec_list_done(r, st, rc, n, "cannot list boards", err);
}

static const char sql_board_set_address[] =
    "UPDATE boards SET ip_changed_at = CASE WHEN ip IS NOT DISTINCT FROM ?2 "
    "THEN ip_changed_at ELSE ?7 END, "
    "ip = ?2, ip_confirmed = ?3, ip_source = ?4, ip_claim = ?5, ip_claim_source = ?6, "
    "ip_claim_at = CASE WHEN ip_claim = ?5 THEN ip_claim_at WHEN ?5 IS NULL THEN NULL "
    "ELSE ?7 END WHERE mac = ?1";

int records_board_set_address(struct records *r, const char *mac, const char *ip, bool confirmed,
                              const char *source, const char *claim, const char *claim_source,
                              struct records_error *err)
{
    char norm[RECORDS_MAC_LEN];
    struct rdb_stmt *st;
    int ret;
    ENTER(r, err);
    if ((ret = rec_normalize_mac(mac, norm, err)) < 0 ||
        (ret = rec_check_text("board ip", ip, RECORDS_IP_LEN, err)) < 0 ||
        (ret = rec_check_text("board ip_source", source, RECORDS_STATE_LEN, err)) < 0 ||
        (ret = rec_check_text("board ip_claim", claim, RECORDS_IP_LEN, err)) < 0 ||
        (ret = rec_check_text("board ip_claim_source", claim_source, RECORDS_STATE_LEN, err)) < 0)
        return ret;
    if (confirmed && (!ip || !*ip))
        return rec_set_err(err, -EINVAL, "records: a confirmed address needs an ip");
    if ((ret = rec_prep(r, sql_board_set_address, NULL, &st, err)) < 0)
        return ret;
    rdb_bind_text(st, 1, norm);
    rec_bind_text(st, 2, ip);
    rdb_bind_int64(st, 3, confirmed ? 1 : 0);
    rec_bind_text(st, 4, source);
    rec_bind_text(st, 5, claim);
    rec_bind_text(st, 6, claim && *claim ? claim_source : NULL);
    rdb_bind_int64(st, 7, records_now_ms(r));
    return rec_change_one(r, st, rdb_step(st), "cannot record the board's address", err,
                          "records: no board %s", norm);
}

static const char sql_board_take_address[] =
    "UPDATE boards SET ip_confirmed = 0, ip_source = 'taken' "
    "WHERE ip = ?1 AND ip_confirmed = 1 AND mac <> ?2 RETURNING mac";

int records_board_take_address(struct records *r, const char *mac, const char *ip,
                               char (*others)[RECORDS_MAC_LEN], int max, struct records_error *err)
{
    char norm[RECORDS_MAC_LEN];
    struct rdb_stmt *st;
    int rc, ret, n = 0;
    ENTER(r, err);
    if ((ret = rec_normalize_mac(mac, norm, err)) < 0 ||
        (ret = rec_check_text("board ip", ip, RECORDS_IP_LEN, err)) < 0)
        return ret;
    if (!ip || !*ip)
        return rec_set_err(err, -EINVAL, "records: no address to take");
    if ((ret = rec_prep(r, sql_board_take_address, NULL, &st, err)) < 0)
        return ret;
    rdb_bind_text(st, 1, ip);
    rdb_bind_text(st, 2, norm);
    /* Every row is stepped (the update is complete only then); the first max named. */
    while (rec_next_row(r, st, &rc, &n)) {
        if (others && n <= max)
            rec_col_text(st, 0, others[n - 1], RECORDS_MAC_LEN);
    }
    return rec_list_done(r, st, rc, n, "cannot take the address from other boards", err);
}

static const char sql_board_target_used[] =
    "SELECT 1 FROM boards WHERE target_firmware = ?1 LIMIT 1";

int records_board_target_used(struct records *r, const char *target, struct records_error *err)
{
    struct rdb_stmt *st;
    int ret;
    ENTER(r, err);
    if (!target || !*target)
        return 0;
    if ((ret = rec_prep(r, sql_board_target_used, NULL, &st, err)) < 0)
        return ret;
    rec_bind_text(st, 1, target);
    int rc = rdb_step(st);
    ret = rc == RDB_ROW ? 1 : rc == RDB_DONE ? 0 : rec_db_err(r, err, rc, "cannot read targets");
    rec_stmt_done(st);
    return ret;
}

static const char sql_board_count_unconfirmed[] =
    "SELECT count(*) FROM boards b WHERE b.ip_confirmed = 0 AND "
    "b.ip_source IN ('checkin', 'mdns') AND "
    "NOT EXISTS (SELECT 1 FROM jobs j WHERE j.board_mac = b.mac AND j.kind = 'flash')";

int records_board_count_unconfirmed(struct records *r, int64_t *n, struct records_error *err)
{
    struct rdb_stmt *st;
    int ret;
    ENTER(r, err);
    *n = 0;
    if ((ret = rec_prep(r, sql_board_count_unconfirmed, NULL, &st, err)) < 0)
        return ret;
    int rc = rdb_step(st);
    if (rc == RDB_ROW)
        *n = rdb_column_int64(st, 0);
    ret = rc == RDB_ROW ? 0 : rec_db_err(r, err, rc, "cannot count boards");
    rec_stmt_done(st);
    return ret;
}

static const char sql_board_set_target[] = "UPDATE boards SET target_firmware = ?2 WHERE mac = ?1";

int records_board_set_target(struct records *r, const char *mac, const char *target,
                             struct records_error *err)
{
    char norm[RECORDS_MAC_LEN];
    struct rdb_stmt *st;
    int ret;
    ENTER(r, err);
    if ((ret = rec_normalize_mac(mac, norm, err)) < 0)
        return ret;
    if (target && strlen(target) >= RECORDS_FIRMWARE_LEN)
        return rec_set_err(err, -EINVAL, "records: target firmware too long");
    if ((ret = rec_prep(r, sql_board_set_target, NULL, &st, err)) < 0)
        return ret;
    rdb_bind_text(st, 1, norm);
    rec_bind_text(st, 2, target);
    return rec_change_one(r, st, rdb_step(st), "cannot set the target firmware", err,
                          "records: no board %s", norm);
}

/* ---- board notes and groups ----------------------------------------------- */

static const char sql_board_set_notes[] = "UPDATE boards SET notes = ?2 WHERE mac = ?1";

int records_board_set_notes(struct records *r, const char *mac, const char *notes,
                            struct records_error *err)
{
    char norm[RECORDS_MAC_LEN];
    struct rdb_stmt *st;
    int ret;
    ENTER(r, err);
    if ((ret = rec_normalize_mac(mac, norm, err)) < 0)
        return ret;
    if ((ret = rec_prep(r, sql_board_set_notes, NULL, &st, err)) < 0)
        return ret;
    rdb_bind_text(st, 1, norm);
    rec_bind_trunc(st, 2, notes, RECORDS_TEXT_LEN);
    return rec_change_one(r, st, rdb_step(st), "cannot set the board's notes", err,
                          "records: no board %s", norm);
}

bool records_group_name_ok(const char *name)
{
    return rec_name_ok(name, RECORDS_GROUP_LEN);
}

static const char sql_board_exists[] = "SELECT 1 FROM boards WHERE mac = ?1";
static const char sql_groups_clear[] = "DELETE FROM board_groups WHERE mac = ?1";
static const char sql_group_add[] =
    "INSERT INTO board_groups (mac, name) VALUES (?1, ?2) ON CONFLICT DO NOTHING";

int records_board_set_groups(struct records *r, const char *mac, const char *const *names, size_t n,
                             struct records_error *err)
{
    char norm[RECORDS_MAC_LEN];
    struct rdb_stmt *ex, *clear, *add;
    size_t distinct = 0;
    int rc, ret;
    ENTER(r, err);
    if ((ret = rec_normalize_mac(mac, norm, err)) < 0)
        return ret;
    if (n && !names)
        return rec_set_err(err, -EINVAL, "records: no group names");
    for (size_t i = 0; i < n; i++) {
        bool dup = false;
        if (!records_group_name_ok(names[i]))
            return rec_set_err(err, -EINVAL,
                               "records: group name \"%.80s\" is not 1 to 64 of A-Z a-z 0-9 . _ -",
                               names[i] ? names[i] : "(null)");
        for (size_t k = 0; k < i && !dup; k++)
            dup = strcmp(names[k], names[i]) == 0;
        distinct += !dup;
    }
    if (distinct > RECORDS_GROUPS_MAX)
        return rec_set_err(err, -EINVAL, "records: %zu groups, at most %d per board", distinct,
                           RECORDS_GROUPS_MAX);
    if ((ret = rec_prep(r, sql_board_exists, NULL, &ex, err)) < 0 ||
        (ret = rec_prep(r, sql_groups_clear, NULL, &clear, err)) < 0 ||
        (ret = rec_prep(r, sql_group_add, NULL, &add, err)) < 0)
        return ret;
    rdb_bind_text(ex, 1, norm);
    rc = rdb_step(ex);
    rec_stmt_done(ex);
    if (rc == RDB_DONE)
        return rec_set_err(err, -ENOENT, "records: no board %s", norm);
    if (rc != RDB_ROW)
        return rec_db_err(r, err, rc, "cannot read board");
    rc = rdb_begin(r->db);
    if (rc < 0)
        return rec_db_err(r, err, rc, "cannot set the board's groups");
    rdb_bind_text(clear, 1, norm);
    rc = rec_step_once(clear);
    for (size_t i = 0; rc >= 0 && i < n; i++) {
        rdb_bind_text(add, 1, norm);
        rdb_bind_text(add, 2, names[i]);
        rc = rec_step_once(add);
    }
    if (rc >= 0)
        rc = rdb_commit(r->db);
    if (rc < 0) {
        ret = rec_db_err(r, err, rc, "cannot set the board's groups");
        rdb_rollback(r->db);
        return ret;
    }
    return 0;
}

/* ---- slots' link limits -------------------------------------------------- */

/* slot_link's key: on a line's shared database the station's name comes first
 * ("st1/pci-0000:00:14.0-usb-0:2:1.0"), so two stations' ports of the same path keep
 * their own limits; a SQLite file is one station's and keeps the bare key. */
static const char *slot_link_key(struct records *r, const char *slot_key, char *buf, size_t n)
{
    if (r->db->ops->dialect != RDB_POSTGRESQL || !r->station[0])
        return slot_key;
    snprintf(buf, n, "%s/%s", r->station, slot_key);
    return buf;
}

static const char sql_slot_baud_set[] =
    "INSERT INTO slot_link (slot_key, baud_limit, updated) VALUES (?1, ?2, ?3) "
    "ON CONFLICT (slot_key) DO UPDATE SET baud_limit = ?2, updated = ?3";
static const char sql_slot_baud_clear[] = "DELETE FROM slot_link WHERE slot_key = ?1";

int records_slot_baud_limit_set(struct records *r, const char *slot_key, uint32_t baud,
                                struct records_error *err)
{
    char key[RECORDS_STATION_LEN + RECORDS_TEXT_LEN + 1];
    struct rdb_stmt *st;
    int ret;
    ENTER(r, err);
    if (!slot_key || !*slot_key)
        return rec_set_err(err, -EINVAL, "records: slot key missing");
    if ((ret = rec_check_text("slot key", slot_key, RECORDS_TEXT_LEN, err)) < 0)
        return ret;
    if ((ret = rec_prep(r, baud ? sql_slot_baud_set : sql_slot_baud_clear, NULL, &st, err)) < 0)
        return ret;
    rdb_bind_text(st, 1, slot_link_key(r, slot_key, key, sizeof(key)));
    if (baud) {
        rdb_bind_int64(st, 2, baud);
        rdb_bind_int64(st, 3, records_now_ms(r));
    }
    return rec_write_done(r, st, rec_step_durable(r, st), "cannot store the slot's baud limit",
                          err);
}

static void read_baud(struct rdb_stmt *st, void *out)
{
    int64_t v = rec_col_int(st, 0, 0);
    *(uint32_t *)out = v > 0 && v <= UINT32_MAX ? (uint32_t)v : 0;
}

static const char sql_slot_baud_get[] = "SELECT baud_limit FROM slot_link WHERE slot_key = ?1";

int records_slot_baud_limit_get(struct records *r, const char *slot_key, uint32_t *baud,
                                struct records_error *err)
{
    char key[RECORDS_STATION_LEN + RECORDS_TEXT_LEN + 1];
    struct rdb_stmt *st;
    int ret;
    ENTER(r, err);
    *baud = 0;
    if (!slot_key || !*slot_key)
        return rec_set_err(err, -EINVAL, "records: slot key missing");
    if ((ret = rec_check_text("slot key", slot_key, RECORDS_TEXT_LEN, err)) < 0)
        return ret;
    if ((ret = rec_prep(r, sql_slot_baud_get, NULL, &st, err)) < 0)
        return ret;
    rdb_bind_text(st, 1, slot_link_key(r, slot_key, key, sizeof(key)));
    ret = rec_get_one(r, st, read_baud, baud, "cannot read the slot's baud limit", err,
                      "records: no baud limit for slot %s", slot_key);
    return ret == -ENOENT ? 0 : ret;
}
