/*
 * board_addr: how far the station trusts a board's network address (loop thread).
 *
 * Owns the rules; the records store (schema 6) keeps the state. The device
 * network is not trusted: anyone on it can send a check-in carrying any MAC, or
 * announce any hostname over mDNS. So:
 *  - an address is confirmed only by a source that proves it is the board: the
 *    serial boot check (the board printed it on its own UART in a slot) or a
 *    check-in carrying the profile's checkin_auth credentials -- or by the
 *    operator, who vouches for it (POST /api/v1/boards/{mac}/address: an address
 *    typed in, or the pending claim accepted);
 *  - an unconfirmed source (a check-in without credentials, mDNS) may give an
 *    address to a board that has no confirmed one (it stays unconfirmed), but
 *    never replaces a confirmed address: the other address is kept as a claim
 *    and the board's record is left as it was;
 *  - one address, one confirmed board: a confirming source that gives a board an
 *    address another board holds confirmed takes it; the other board's address
 *    becomes unconfirmed (ip_source "taken"; board.address event with taken_by);
 *  - pushes (images, ArduinoOTA passwords, web-form Basic credentials) go only
 *    to a confirmed address (board_addr_push_check);
 *  - every change of a board's address or of its trust, and every new claim, is
 *    a "board.address" event {old, new, source, confirmed, claim}.
 */
#ifndef ESPSTATION_BOARD_ADDR_H
#define ESPSTATION_BOARD_ADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct station;
struct slot;
struct records_board;

enum board_addr_source {
    BOARD_ADDR_BOOT_CHECK = 0, /* the serial boot check captured it: confirms */
    BOARD_ADDR_CHECKIN_AUTH,   /* a check-in with the profile's checkin_auth: confirms */
    BOARD_ADDR_CHECKIN,        /* a check-in without credentials */
    BOARD_ADDR_MDNS,           /* an mDNS (ArduinoOTA) advertisement */
    BOARD_ADDR_OPERATOR,       /* the operator over the token-protected API: confirms */
    BOARD_ADDR_SOURCE_COUNT
};

const char *board_addr_source_to_string(enum board_addr_source s);
bool board_addr_source_confirms(enum board_addr_source s);

enum board_addr_result {
    BOARD_ADDR_SAME = 0, /* the board's recorded address, unchanged */
    BOARD_ADDR_CHANGED,  /* the board's address or its trust changed to this */
    BOARD_ADDR_CLAIM,    /* the board has another, confirmed address: this one is only a claim */
    BOARD_ADDR_ERROR     /* no record, or the store failed (logged) */
};

const char *board_addr_result_to_string(enum board_addr_result r);

/* What source says about mac's address ip (the board record must exist); posts
 * board.address on every change (s and job_id name the slot and job, NULL/0
 * none). */
enum board_addr_result board_addr_note(struct station *st, const char *mac, const char *ip,
                                       enum board_addr_source source, const struct slot *s,
                                       int64_t job_id);

/* 0 when the station may send an image or credentials to b's address; -EINVAL
 * when it knows none, -EACCES when it is not confirmed. err says why and how to
 * confirm it. */
int board_addr_push_check(const struct records_board *b, char *err, size_t errlen);

#endif
