/*
 * board_addr.c: the trust rules for a board's network address (see board_addr.h).
 *
 * Invariants:
 *  - Only board_addr_note writes a board's ip and its trust (records_board_set_address);
 *    records_board_upsert callers leave ip alone.
 *  - A confirmed address is replaced only by a confirming source.
 *  - One address, one confirmed board: a confirming source that gives a board an
 *    address another board holds confirmed takes it (take_from_others): DHCP
 *    gave that address to this board since, so the other board's record of it is
 *    stale and a push there would reach the wrong board.
 *  - Each call posts at most one board.address event, and only when something changed:
 *    a board that keeps checking in from its address adds nothing to the journal.
 */
#include "board_addr.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <json-c/json.h>

#include "log.h"
#include "records.h"
#include "slot.h"
#include "station.h"

static const char *const source_names[BOARD_ADDR_SOURCE_COUNT] = {
    [BOARD_ADDR_BOOT_CHECK] = "boot-check", [BOARD_ADDR_CHECKIN_AUTH] = "checkin-auth",
    [BOARD_ADDR_CHECKIN] = "checkin",       [BOARD_ADDR_MDNS] = "mdns",
    [BOARD_ADDR_OPERATOR] = "operator",
};

const char *board_addr_source_to_string(enum board_addr_source s)
{
    return (unsigned)s < BOARD_ADDR_SOURCE_COUNT ? source_names[s] : "unknown";
}

bool board_addr_source_confirms(enum board_addr_source s)
{
    return s == BOARD_ADDR_BOOT_CHECK || s == BOARD_ADDR_CHECKIN_AUTH || s == BOARD_ADDR_OPERATOR;
}

const char *board_addr_result_to_string(enum board_addr_result r)
{
    switch (r) {
    case BOARD_ADDR_SAME:
        return "same";
    case BOARD_ADDR_CHANGED:
        return "changed";
    case BOARD_ADDR_CLAIM:
        return "claim";
    default:
        return "error";
    }
}

static void post(struct station *st, const struct slot *s, const char *mac, int64_t job_id,
                 const char *old, const char *ip, enum board_addr_source source, bool confirmed,
                 bool was_confirmed, bool claim, const char *taken_by)
{
    json_object *j = json_object_new_object();
    json_object_object_add(j, "old", old && *old ? json_object_new_string(old) : NULL);
    json_object_object_add(j, "new", json_object_new_string(ip));
    json_object_object_add(j, "source",
                           json_object_new_string(board_addr_source_to_string(source)));
    json_object_object_add(j, "confirmed", json_object_new_boolean(confirmed));
    json_object_object_add(j, "previous_confirmed", json_object_new_boolean(was_confirmed));
    json_object_object_add(j, "claim", json_object_new_boolean(claim));
    if (taken_by)
        json_object_object_add(j, "taken_by", json_object_new_string(taken_by));
    station_post_event(st, "board.address", s, mac, job_id,
                       json_object_to_json_string_ext(j, JSON_C_TO_STRING_PLAIN));
    json_object_put(j);
}

/* mac's address ip was just confirmed by source: every other board that held ip
 * confirmed loses the confirmation (its ip stays, unconfirmed, ip_source "taken"),
 * with a board.address event on it naming mac in taken_by. */
static void take_from_others(struct station *st, const struct slot *s, const char *mac,
                             const char *ip, enum board_addr_source source, int64_t job_id)
{
    char others[8][RECORDS_MAC_LEN];
    struct records_error re;
    const char *src = board_addr_source_to_string(source);
    int n = records_board_take_address(station_records(st), mac, ip, others, 8, &re);
    if (n < 0) {
        log_board(LOG_LEVEL_WARN, s ? slot_name(s) : NULL, mac,
                  "cannot take the address %s from other boards: %s", ip, re.message);
        return;
    }
    for (int i = 0; i < n && i < 8; i++) {
        post(st, NULL, others[i], 0, ip, ip, source, false, true, false, mac);
        log_board(LOG_LEVEL_WARN, NULL, others[i],
                  "address %s is now confirmed for %s (%s): this board's address is "
                  "unconfirmed and nothing is pushed to it until it is confirmed again",
                  ip, mac, src);
    }
    if (n > 0)
        log_board(LOG_LEVEL_INFO, s ? slot_name(s) : NULL, mac,
                  "address %s taken from %d other board(s) that had it confirmed (%s%s)", ip, n,
                  others[0], n > 1 ? ", ..." : "");
    (void)job_id;
}

enum board_addr_result board_addr_note(struct station *st, const char *mac, const char *ip,
                                       enum board_addr_source source, const struct slot *s,
                                       int64_t job_id)
{
    struct records *rec = station_records(st);
    struct records_board b;
    struct records_error re;
    if (!ip || !*ip || records_board_get(rec, mac, &b, &re) < 0)
        return BOARD_ADDR_ERROR;
    const char *src = board_addr_source_to_string(source);
    const char *slot = s ? slot_name(s) : NULL;
    bool same = strcmp(b.ip, ip) == 0;
    int rc;
    if (board_addr_source_confirms(source)) {
        enum board_addr_result res = BOARD_ADDR_SAME;
        if (!(same && b.ip_confirmed && !b.ip_claim[0])) {
            rc = records_board_set_address(rec, b.mac, ip, true, src, NULL, NULL, &re);
            if (rc < 0)
                goto store_failed;
            if (same && b.ip_confirmed) {          /* only a pending claim was dropped */
                if (source == BOARD_ADDR_OPERATOR) /* the operator's decision: on the record */
                    post(st, s, b.mac, job_id, b.ip, ip, source, true, true, false, NULL);
                log_board(LOG_LEVEL_INFO, slot, b.mac,
                          "address %s confirmed again (%s); the claim of %s (%s) is dropped", ip,
                          src, b.ip_claim, b.ip_claim_source);
            } else {
                post(st, s, b.mac, job_id, b.ip, ip, source, true, b.ip_confirmed, false, NULL);
                log_board(LOG_LEVEL_INFO, slot, b.mac, "address %s confirmed (%s)%s%s", ip, src,
                          same ? "" : ", was ", same ? "" : (b.ip[0] ? b.ip : "none"));
                res = BOARD_ADDR_CHANGED;
            }
        }
        /* Also when nothing changed here: a record from before this rule may have
         * two boards on one confirmed address. */
        take_from_others(st, s, b.mac, ip, source, job_id);
        return res;
    }
    if (same) {
        if (b.ip_claim[0]) {
            /* Seen at its own address again: the other address's claim is stale. */
            if (records_board_set_address(rec, b.mac, b.ip, b.ip_confirmed, b.ip_source, NULL, NULL,
                                          &re) < 0)
                goto store_failed;
            log_board(LOG_LEVEL_INFO, slot, b.mac,
                      "seen at its address %s again (%s); the claim of %s is dropped", ip, src,
                      b.ip_claim);
        }
        return BOARD_ADDR_SAME;
    }
    if (b.ip_confirmed) {
        if (strcmp(b.ip_claim, ip) == 0)
            return BOARD_ADDR_CLAIM; /* the same claim again: already recorded and announced */
        rc = records_board_set_address(rec, b.mac, b.ip, true, b.ip_source, ip, src, &re);
        if (rc < 0)
            goto store_failed;
        post(st, s, b.mac, job_id, b.ip, ip, source, false, true, true, NULL);
        log_board(LOG_LEVEL_WARN, slot, b.mac,
                  "%s from %s claims this board, whose confirmed address is %s: recorded as a "
                  "claim only; the board's record and pushes keep %s (a check-in with the "
                  "profile's checkin_auth, a boot check or the operator confirms a new address)",
                  source == BOARD_ADDR_MDNS ? "an mDNS advertisement"
                                            : "a check-in without "
                                              "credentials",
                  ip, b.ip, b.ip);
        return BOARD_ADDR_CLAIM;
    }
    rc = records_board_set_address(rec, b.mac, ip, false, src, NULL, NULL, &re);
    if (rc < 0)
        goto store_failed;
    post(st, s, b.mac, job_id, b.ip, ip, source, false, false, false, NULL);
    log_board(LOG_LEVEL_INFO, slot, b.mac, "address %s (%s, unconfirmed)%s%s", ip, src,
              b.ip[0] ? ", was " : "", b.ip);
    return BOARD_ADDR_CHANGED;
store_failed:
    log_board(LOG_LEVEL_WARN, slot, b.mac, "cannot record the address %s: %s", ip, re.message);
    return BOARD_ADDR_ERROR;
}

int board_addr_push_check(const struct records_board *b, char *err, size_t errlen)
{
    if (!b->ip[0]) {
        snprintf(err, errlen,
                 "no IP address known for %s: the board has not checked in and its boot check "
                 "captured none (add an \"ip\" capture to the profile's boot_check)",
                 b->mac);
        return -EINVAL;
    }
    if (b->ip_confirmed)
        return 0;
    if (strcmp(b->ip_source, "taken") == 0) {
        snprintf(err, errlen,
                 "the IP address %s of %s is no longer confirmed: it was confirmed for another "
                 "board since (the board.address event of %s names it in taken_by), so the "
                 "station sends no image or password there. Confirm this board's current "
                 "address: a boot check that captures \"ip\", a check-in with the profile's "
                 "\"checkin_auth\", or POST /api/v1/boards/%s/address {\"ip\": ...}",
                 b->ip, b->mac, b->mac, b->mac);
        return -EACCES;
    }
    const char *how = strcmp(b->ip_source, "checkin") == 0 ? "a check-in without credentials"
                      : strcmp(b->ip_source, "mdns") == 0  ? "an mDNS advertisement"
                                                           : "a record made before addresses were "
                                                             "confirmed";
    snprintf(err, errlen,
             "the IP address %s of %s is not confirmed: it came from %s, which anyone on the "
             "device network can send, so the station sends no image or password there. "
             "Confirm it: give the profile \"checkin_auth\" and have the sketch's updater send "
             "it (setAuthorization) so a check-in confirms it; flash the board over serial with "
             "a boot_check that captures \"ip\"; or, knowing it is the board's, POST "
             "/api/v1/boards/%s/address {\"ip\": \"%s\"}",
             b->ip, b->mac, how, b->mac, b->ip);
    return -EACCES;
}
