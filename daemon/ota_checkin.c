/*
 * ota_checkin.c: one request to the update endpoint (ota.c accepts the connection and
 * does its I/O): check-in bookkeeping (board record, credentials, enrolment gate), the
 * pull decision and its response, and the record of a pull once the image went out.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <time.h>

#include <json-c/json.h>

#include "board_addr.h"
#include "catalog.h"
#include "log.h"
#include "loop.h"
#include "ota_http.h"
#include "ota_image.h"
#include "ota_priv.h"
#include "ota_routes.h"
#include "slot.h"
#include "station.h"

/* The whole image went out; seconds: from the first byte of the response to the board's
 * close, < 0 when not known (why_unknown says why). */
void ota_served_complete(struct ota_conn *c, double seconds, const char *why_unknown)
{
    struct ota *o = c->o;
    struct records *rec = station_records(o->st);
    c->draining = false;
    if (!c->fs && !c->plain && c->mac[0] && !c->claim) {
        /* The sketch memory (ota_http's "served"); a filesystem image is remembered by its
         * passed ota-pull-fs job (fs_served). */
        struct records_board_ota bo;
        if (records_board_ota_get(rec, c->mac, &bo, NULL) < 0) {
            records_board_ota_init(&bo);
            snprintf(bo.mac, sizeof(bo.mac), "%s", c->mac);
        }
        snprintf(bo.served_md5, sizeof(bo.served_md5), "%s", c->fw->md5);
        snprintf(bo.served_version, sizeof(bo.served_version), "%s", c->fw->version);
        snprintf(bo.served_sketch_md5, sizeof(bo.served_sketch_md5), "%s", c->sketch_md5);
        bo.served_at = records_now_ms(rec);
        records_board_ota_put(rec, &bo, NULL);
    }
    if (c->job_id > 0) {
        struct records_job_result res;
        records_job_result_init(&res);
        res.state = RECORDS_JOB_PASSED;
        res.bytes = (int64_t)c->body_len;
        res.wire_bytes = (int64_t)(c->body_len + c->head_len);
        res.seconds = seconds;
        res.duration_unknown = !(seconds > 0);
        char line[300];
        if (seconds > 0)
            snprintf(line, sizeof(line), "the board took %zu bytes in %.3f s (%.0f kbit/s)",
                     c->body_len, seconds, (double)c->body_len * 8 / 1000 / seconds);
        else
            snprintf(line, sizeof(line),
                     "all %zu bytes handed over, but %s: the transfer's duration is not known",
                     c->body_len, why_unknown ? why_unknown : "no time was measured");
        records_job_log(rec, c->job_id, "info", line, NULL);
        records_job_finish(rec, c->job_id, &res, NULL);
    }
    char extra[160] = "", data[400];
    if (c->plain)
        snprintf(extra, sizeof(extra), ",\"plain\":true,\"ip\":\"%s\"%s%s%s", c->ip,
                 c->half ? ",\"half\":\"" : "", c->half ? c->half : "", c->half ? "\"" : "");
    snprintf(data, sizeof(data),
             "{\"firmware\":\"%s\",\"bytes\":%zu,\"method\":\"pull\",\"image\":\"%s\"%s}",
             c->fw->ref, c->body_len, c->fs ? "filesystem" : "app", extra);
    station_post_event(o->st, "ota.served", NULL, c->mac[0] ? c->mac : NULL,
                       c->job_id > 0 ? c->job_id : 0, data);
    log_board(LOG_LEVEL_INFO, NULL, c->mac[0] ? c->mac : NULL,
              "pull: served %s%s%s%s (%zu bytes) to %s%s", c->fw->ref,
              c->fs ? " filesystem image" : "", c->half ? " " : "", c->half ? c->half : "",
              c->body_len, c->ip, c->plain ? " (plain GET)" : "");
    c->job_id = 0;
    c->record_served = false;
}

static void update_board(struct ota *o, struct ota_conn *c, const struct ota_http_request *req,
                         const struct records_board *before, bool known,
                         const struct ota_http_decision *d, const char *problem,
                         enum board_addr_source src)
{
    struct records *rec = station_records(o->st);
    struct records_board b;
    records_board_init(&b);
    snprintf(b.mac, sizeof(b.mac), "%s", c->mac);
    if (!known)
        snprintf(b.chip, sizeof(b.chip), "%s",
                 req->header_chip == OTA_CHIP_ESP8266 ? "ESP8266" : "ESP32");
    if (req->version[0])
        snprintf(b.running_version, sizeof(b.running_version), "%s", req->version);
    /* A board that reports its target's version now runs that set (a pull it applied, or
     * an update from elsewhere): its record names it, as a push or a serial flash would. */
    char target[RECORDS_FIRMWARE_LEN];
    bool pinned = false;
    if (known && req->version[0] &&
        ota_target_of(o, before, target, sizeof(target), &pinned) == 0 && target[0]) {
        const char *at = strrchr(target, '@');
        if (at && strcmp(at + 1, req->version) == 0 &&
            strcmp(before->current_firmware, target) != 0)
            snprintf(b.current_firmware, sizeof(b.current_firmware), "%s", target);
    }
    snprintf(b.online_state, sizeof(b.online_state), "online");
    if (records_board_upsert(rec, &b, NULL) < 0)
        return;
    if (!known) /* a known board's address was noted before (ota_handle_request) */
        board_addr_note(o->st, c->mac, c->ip, src, NULL, 0);
    struct records_board_ota bo;
    if (records_board_ota_get(rec, c->mac, &bo, NULL) < 0) {
        records_board_ota_init(&bo);
        snprintf(bo.mac, sizeof(bo.mac), "%s", c->mac);
    }
    bo.free_space = req->has_free_space ? (int64_t)req->free_space : -1;
    bo.sketch_size = req->has_sketch_size ? (int64_t)req->sketch_size : -1;
    bo.chip_size = req->has_chip_size ? (int64_t)req->chip_size : -1;
    snprintf(bo.sketch_md5, sizeof(bo.sketch_md5), "%s", req->sketch_md5);
    snprintf(bo.sdk_version, sizeof(bo.sdk_version), "%s", req->sdk_version);
    bo.last_checkin = records_now_ms(rec);
    bo.checkins++;
    snprintf(bo.problem, sizeof(bo.problem), "%s",
             problem ? problem : (d->problem ? d->reason : ""));
    records_board_ota_put(rec, &bo, NULL);

    bool was_online = known && strcmp(before->online_state, "online") == 0;
    bool version_changed =
        known && req->version[0] && strcmp(before->running_version, req->version) != 0;
    if (!was_online || version_changed) {
        json_object *j = json_object_new_object();
        json_object_object_add(j, "ip", json_object_new_string(c->ip));
        json_object_object_add(j, "version", json_object_new_string(req->version));
        json_object_object_add(j, "enrolled", json_object_new_boolean(!known));
        json_object_object_add(j, "previous_version",
                               json_object_new_string(known ? before->running_version : ""));
        station_post_event(o->st, was_online ? "board.version" : "board.online", NULL, c->mac, 0,
                           json_object_to_json_string_ext(j, JSON_C_TO_STRING_PLAIN));
        json_object_put(j);
        log_board(LOG_LEVEL_INFO, NULL, c->mac, "%s at %s, running %s",
                  was_online ? "reports a new version" : "online", c->ip,
                  req->version[0] ? req->version : "(no version header)");
    }
    ota_slot_online(o, c->mac);
    ota_bulk_on_checkin(o, c->mac, req->version);
}

void ota_slot_online(struct ota *o, const char *mac)
{
    station_board_online(o->st, mac);
}

static const char *status_text(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 304:
        return "Not Modified";
    case 400:
        return "Bad Request";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 429:
        return "Too Many Requests";
    case 503:
        return "Service Unavailable";
    default:
        return "Error";
    }
}

void ota_answer_text(struct ota_conn *c, int status, const char *text)
{
    int n = snprintf(c->head, sizeof(c->head),
                     "HTTP/1.0 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n%s",
                     status, status_text(status), strlen(text), text);
    c->head_len = n > 0 && (size_t)n < sizeof(c->head) ? (size_t)n : 0;
}

struct ip_board {
    const char *ip;
    struct records_board b;
    bool found;
};

static int ip_board_cb(const struct records_board *b, void *ctx)
{
    struct ip_board *s = ctx;
    if (!b->ip_confirmed || strcmp(b->ip, s->ip) != 0)
        return 1; /* only a confirmed address says which board is asking */
    s->b = *b;
    s->found = true;
    return 0;
}

/* A set the endpoint may serve by name: one a profile names (firmware or ota_firmware, for
 * any chip) or a board's pinned target. Any other catalog set (an old release, a set for
 * another customer) is not handed to whoever asks for its path. */
static bool serve_allowed(struct ota *o, const char *ref)
{
    const struct config *cfg = station_config(o->st);
    char r[RECORDS_FIRMWARE_LEN];
    for (size_t i = 0; i < cfg->n_profiles; i++) {
        const struct config_profile *p = &cfg->profiles[i];
        for (size_t k = 0; k < p->n_firmware + p->n_ota_firmware; k++) {
            const struct config_firmware_ref *f =
                k < p->n_firmware ? &p->firmware[k] : &p->ota_firmware[k - p->n_firmware];
            snprintf(r, sizeof(r), "%s@%s", f->name, f->version);
            if (strcmp(r, ref) == 0)
                return true;
        }
    }
    return records_board_target_used(station_records(o->st), ref, NULL) > 0;
}

/* The plain GET's part of a set: the app, or one half of a dual set. */
struct plain_pick {
    enum ota_http_userbin half; /* NONE: the app (data) */
    const uint8_t *body;
    size_t len;
    const char *md5;
    struct ip_board at; /* the board the station knows at the client's address, if any */
};

/*
 * Plain GET by SDK example clients and curl (docs/OTA.md "Plain GET"):
 *   /ota/fw/<name>/<version>.bin          the set's app (user1 of a dual set)
 *   /ota/fw/<name>/<version>/user1.bin    the user1 / user2 half of a dual set
 *   /ota/fw/<name>/<version>/user2.bin
 *   any other path ending in user1.bin / user2.bin (NONOS system_upgrade_start builds
 *   its own path): that half of the target set of the board the station knows at the
 *   client's IP address.
 */
static struct ota_fw *plain_image(struct ota *o, const char *uri, const char *ip,
                                  struct plain_pick *pick)
{
    char name[RECORDS_NAME_LEN], ver[RECORDS_NAME_LEN], ref[RECORDS_FIRMWARE_LEN] = "";
    memset(pick, 0, sizeof(*pick));
    pick->half = ota_http_userbin_from_uri(uri);
    if (ip) {
        pick->at.ip = ip;
        records_board_list(station_records(o->st), NULL, ip_board_cb, &pick->at, NULL);
    }
    size_t ulen = strcspn(uri, "?#");
    const char *p = strncmp(uri, "/ota/fw/", 8) == 0 ? uri + 8 : NULL;
    const char *slash = p ? memchr(p, '/', ulen - 8) : NULL;
    const char *end = slash ? p + (ulen - 8) : NULL; /* name/version part ends here */
    if (slash && pick->half != OTA_HTTP_USERBIN_NONE)
        end -= 10; /* "/userN.bin" */
    else if (slash && end - slash > 4 && memcmp(end - 4, ".bin", 4) == 0)
        end -= 4;
    else
        slash = NULL;
    if (slash && end > slash + 1 && (size_t)(slash - p) < sizeof(name) &&
        (size_t)(end - slash - 1) < sizeof(ver) &&
        !memchr(slash + 1, '/', (size_t)(end - slash - 1))) {
        memcpy(name, p, (size_t)(slash - p));
        name[slash - p] = '\0';
        memcpy(ver, slash + 1, (size_t)(end - slash - 1));
        ver[end - slash - 1] = '\0';
        snprintf(ref, sizeof(ref), "%s@%s", name, ver);
        if (!serve_allowed(o, ref)) {
            log_msg(LOG_LEVEL_DEBUG,
                    "plain GET %s from %s: %s is not named by a profile or a "
                    "board's target: 404",
                    uri, ip ? ip : "?", ref);
            return NULL;
        }
    } else if (pick->half != OTA_HTTP_USERBIN_NONE && pick->at.found) {
        ota_target_of(o, &pick->at.b, ref, sizeof(ref), NULL);
    }
    struct ota_fw *fw = NULL;
    if (!ref[0] || ota_fw_get(o, ref, &fw, NULL, 0) < 0)
        return NULL;
    if (ota_fw_policy(o, fw, NULL, 0) < 0 || (pick->half != OTA_HTTP_USERBIN_NONE && !fw->dual)) {
        ota_fw_unref(fw); /* a userN.bin of a set without user1/user2 slots: 404 */
        return NULL;
    }
    bool two = pick->half == OTA_HTTP_USERBIN_USER2;
    pick->body = two ? fw->data2 : fw->data;
    pick->len = two ? fw->size2 : fw->size;
    pick->md5 = two ? fw->md5_2 : fw->md5;
    return fw;
}

struct fs_seen {
    int64_t id;
    char firmware[RECORDS_FIRMWARE_LEN];
};

static int fs_seen_cb(const struct records_job *j, void *ctx)
{
    struct fs_seen *s = ctx;
    if (j->id > s->id) {
        s->id = j->id;
        snprintf(s->firmware, sizeof(s->firmware), "%s", j->firmware);
    }
    return 1;
}

/* The station's own knowledge of the filesystem image a board holds: the newest passed
 * job that wrote one (a serial flash of a set, a filesystem pull or push). True when it
 * was ref's: a mode-spiffs check-in then gets 304. */
static bool fs_served(struct ota *o, const char *mac, const char *ref)
{
    static const char *const kinds[] = {"flash", "ota-pull-fs", "ota-push-fs"};
    struct fs_seen seen = {0};
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        struct records_job_filter f;
        records_job_filter_init(&f);
        f.board_mac = mac;
        f.kind = kinds[i];
        f.state = RECORDS_JOB_PASSED;
        f.limit = 1;
        records_job_list(station_records(o->st), &f, fs_seen_cb, &seen, NULL);
    }
    return seen.id > 0 && strcmp(seen.firmware, ref) == 0;
}

/* /metrics: one request answered with status (ota_counters). */
void ota_count_checkin(struct ota *o, int status)
{
    for (size_t i = 0; i < OTA_CHECKIN_STATUSES; i++) {
        if (o->counters.checkins[i].status == 0)
            o->counters.checkins[i].status = status;
        if (o->counters.checkins[i].status == status) {
            o->counters.checkins[i].n++;
            return;
        }
    }
}

const struct ota_counters *ota_counters(const struct ota *o)
{
    return o ? &o->counters : NULL;
}

/* Equal strings, compared in time independent of where they differ. */
static bool secret_eq(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    volatile unsigned char d = la != lb;
    for (size_t i = 0; i < la; i++)
        d |= (unsigned char)(a[i] ^ (lb ? b[i % lb] : 0));
    return d == 0;
}

/* The request's credentials against the profiles' checkin_auth (any profile's: a board
 * of any of the station's profiles may check in): 1 they match one, 0 none sent (or no
 * profile sets checkin_auth), -1 wrong or not HTTP Basic. */
static int checkin_auth(const struct config *cfg, const struct ota_http_request *req)
{
    bool any = false, ok = false;
    for (size_t i = 0; i < cfg->n_profiles; i++) {
        const struct config_profile *p = &cfg->profiles[i];
        if (!p->checkin_user)
            continue;
        any = true;
        if (req->has_basic_auth) {
            bool user = secret_eq(req->auth_user, p->checkin_user);
            bool pass = secret_eq(req->auth_password, p->checkin_password);
            ok |= user && pass;
        }
    }
    if (!any || !req->has_authorization)
        return 0;
    return ok ? 1 : -1;
}

/* A refused check-in that no board record shows: logged at most once a minute with the count. */
static void auth_refused(struct ota *o, const char *ip, const char *mac, const char *why)
{
    int64_t now = loop_now_ms();
    o->auth_refused++;
    log_board(LOG_LEVEL_DEBUG, NULL, mac, "check-in from %s refused: %s", ip, why);
    if (o->auth_log_ms && now - o->auth_log_ms < 60000)
        return;
    log_board(LOG_LEVEL_WARN, NULL, mac,
              "check-in from %s refused: %s (%llu such refusal(s) since the last warning; a "
              "board with old credentials, or someone trying MACs)",
              ip, why, (unsigned long long)o->auth_refused);
    o->auth_refused = 0;
    o->auth_log_ms = now;
}

/* A check-in without the profile's credentials would enrol mac. 0: go on; else the HTTP
 * status to answer (403 the cap, 429 the rate) with text. ota.enrol_limited is posted at
 * most once a minute with the refusals since the last one. */
static int enrol_gate(struct ota *o, const char *mac, const char *ip, char *text, size_t len)
{
    const struct config *cfg = station_config(o->st);
    int64_t now = loop_now_ms(), known = 0;
    double rate = cfg->ota.enrol_rate_per_min;
    int status = 0;
    const char *reason;
    if (records_board_count_unconfirmed(station_records(o->st), &known, NULL) < 0 ||
        known >= cfg->ota.enrol_max) {
        status = 403;
        reason = "cap";
        snprintf(text, len,
                 "enrolment refused: the station knows %lld board(s) only from check-ins without "
                 "credentials (ota.enrol_max %d); confirm or remove them, raise ota.enrol_max, "
                 "or give the boards the profile's checkin_auth\n",
                 (long long)known, cfg->ota.enrol_max);
    } else {
        if (o->enrol_refill_ms == 0 || o->enrol_tokens > rate) {
            o->enrol_tokens = rate; /* a full bucket: a burst of one minute's worth */
            o->enrol_refill_ms = now;
        }
        o->enrol_tokens += (double)(now - o->enrol_refill_ms) * rate / 60000.0;
        if (o->enrol_tokens > rate)
            o->enrol_tokens = rate;
        o->enrol_refill_ms = now;
        if (o->enrol_tokens >= 1.0) {
            o->enrol_tokens -= 1.0;
            return 0;
        }
        status = 429;
        reason = "rate";
        snprintf(text, len,
                 "enrolment rate limit: at most %d new board(s) a minute "
                 "(ota.enrol_rate_per_min); check in again later\n",
                 cfg->ota.enrol_rate_per_min);
    }
    o->enrol_refused++;
    log_board(LOG_LEVEL_DEBUG, NULL, mac, "enrolment from %s refused (%s)", ip, reason);
    if (!o->enrol_event_ms || now - o->enrol_event_ms >= 60000) {
        json_object *j = json_object_new_object();
        json_object_object_add(j, "reason", json_object_new_string(reason));
        json_object_object_add(j, "refused", json_object_new_int64((int64_t)o->enrol_refused));
        json_object_object_add(j, "ip", json_object_new_string(ip));
        json_object_object_add(j, "rate_per_min", json_object_new_int(cfg->ota.enrol_rate_per_min));
        json_object_object_add(j, "max", json_object_new_int(cfg->ota.enrol_max));
        json_object_object_add(j, "unconfirmed_boards", json_object_new_int64(known));
        station_post_event(o->st, "ota.enrol_limited", NULL, NULL, 0,
                           json_object_to_json_string_ext(j, JSON_C_TO_STRING_PLAIN));
        json_object_put(j);
        log_msg(LOG_LEVEL_WARN,
                "OTA endpoint: enrolment of unknown boards by check-ins without credentials "
                "refused (%s; %llu refusal(s) in this minute, e.g. %s from %s): %s",
                reason, (unsigned long long)o->enrol_refused, mac, ip, text);
        o->enrol_refused = 0;
        o->enrol_event_ms = now;
    }
    return status;
}

void ota_handle_request(struct ota_conn *c, const struct ota_http_request *req)
{
    struct ota *o = c->o;
    const struct config *cfg = station_config(o->st);
    struct records *rec = station_records(o->st);
    struct ota_http_decision d;
    memset(&d, 0, sizeof(d));
    struct ota_fw *fw = NULL;
    struct ota_http_image img, fsimg;
    memset(&img, 0, sizeof(img));
    memset(&fsimg, 0, sizeof(fsimg));
    bool fs_mode = false, fs_missing = false;
    struct plain_pick pick = {0};
    int refuse = 0;        /* a refusal answered with refuse_text before any decision */
    bool fetching = false; /* the target set is being fetched from the line (503) */
    char refuse_text[400] = "";

    /* The row of the device-facing route table (ota_routes.c) this request takes. */
    const struct ota_route *route = ota_route_find(req);
    bool checkin = route->kind == OTA_ROUTE_CHECKIN;
    if (!checkin && !cfg->ota.strict) {
        /* plain GET: the set (half) its path names, the half of the board at the client's
         * address, else 404 (OTA_ROUTE_OTHER finds no image) */
        fw = plain_image(o, req->uri, c->ip, &pick);
        c->plain = true;
        if (pick.half != OTA_HTTP_USERBIN_NONE)
            c->half = pick.half == OTA_HTTP_USERBIN_USER2 ? "user2" : "user1";
        if (pick.at.found) /* the download goes into that board's history */
            snprintf(c->mac, sizeof(c->mac), "%s", pick.at.b.mac);
        if (fw) {
            img.version = fw->version;
            img.md5 = pick.md5;
            img.size = pick.len;
            img.gzip = fw->gzip && pick.half == OTA_HTTP_USERBIN_NONE;
        }
        ota_http_decide_plain(req, fw ? &img : NULL, &d);
    } else if (!checkin) {
        struct ota_http_policy pol = {.strict = true};
        ota_http_decide(req, NULL, &pol, &d);
    } else {
        const uint8_t *m = req->sta_mac;
        snprintf(c->mac, sizeof(c->mac), "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3],
                 m[4], m[5]);
        snprintf(c->sketch_md5, sizeof(c->sketch_md5), "%s", req->sketch_md5);
        struct records_board b;
        bool known = records_board_get(rec, c->mac, &b, NULL) == 0;
        struct ota_http_policy pol = {.strict = cfg->ota.strict,
                                      .unknown = cfg->ota.enrol_unknown ? OTA_HTTP_UNKNOWN_ENROL
                                                                        : OTA_HTTP_UNKNOWN_REFUSE};
        char problem[300] = "";
        struct ota_http_board hb;
        memset(&hb, 0, sizeof(hb));
        struct records_board_ota bo;
        bool have_bo = known && records_board_ota_get(rec, c->mac, &bo, NULL) == 0;
        fs_mode = req->mode == OTA_HTTP_MODE_SPIFFS;
        /* An unknown board under "enrol" is answered as a known one: its record is made
         * from this check-in (chip from the header prefix), and its target is the
         * profile's for that chip. A sketch that checks in only in setup() gets its
         * update on this first check-in, not on one that may never come. */
        bool enrolling = !known && cfg->ota.enrol_unknown;
        /* Credentials (profile checkin_auth): right ones confirm the address this check-in
         * comes from; wrong ones, or none when the profile requires them, are refused. */
        const struct config_profile *prof = config_profile(cfg, NULL);
        int auth = checkin_auth(cfg, req);
        if (auth < 0 || (auth == 0 && prof && prof->checkin_user && prof->checkin_required)) {
            refuse = 403;
            snprintf(refuse_text, sizeof(refuse_text), "%s\n",
                     auth < 0 ? "wrong check-in credentials (profile checkin_auth)"
                              : "check-in credentials required (profile checkin_auth)");
            auth_refused(o, c->ip, c->mac,
                         auth < 0 ? "wrong credentials" : "no credentials (required)");
            goto answer;
        }
        enum board_addr_source src = auth > 0 ? BOARD_ADDR_CHECKIN_AUTH : BOARD_ADDR_CHECKIN;
        if (enrolling && auth == 0 &&
            (refuse = enrol_gate(o, c->mac, c->ip, refuse_text, sizeof(refuse_text))) != 0)
            goto answer;
        if (enrolling) {
            records_board_init(&b);
            snprintf(c->mac, sizeof(c->mac), "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2],
                     m[3], m[4], m[5]);
            snprintf(b.mac, sizeof(b.mac), "%s", c->mac);
            snprintf(b.chip, sizeof(b.chip), "%s",
                     req->header_chip == OTA_CHIP_ESP8266 ? "ESP8266" : "ESP32");
        }
        if ((known || enrolling) && fs_mode) {
            /* The filesystem image of the target set (ESP8266httpUpdate::updateFS /
             * HTTPUpdate::updateSpiffs). Served once per set: no version to compare. */
            hb.known = known;
            char ref[RECORDS_FIRMWARE_LEN];
            ota_target_of(o, &b, ref, sizeof(ref), NULL);
            char ferr[256] = "";
            int frc = ref[0] ? ota_fw_get(o, ref, &fw, ferr, sizeof(ferr)) : 0;
            if (frc < 0) {
                snprintf(problem, sizeof(problem), "target %s: %s", ref, ferr);
                fetching = frc == -EAGAIN;
            } else if (fw && (frc = ota_fw_fs_policy(o, fw, ferr, sizeof(ferr))) < 0) {
                snprintf(problem, sizeof(problem), "%s", ferr);
                fs_missing = frc == -ENOENT;
            } else if (fw) {
                fsimg.md5 = fw->fs_md5;
                fsimg.size = fw->fs_size;
                hb.fs_target = &fsimg;
                if (fs_served(o, c->mac, fw->ref))
                    hb.served_md5 = fw->fs_md5;
            }
        } else if (known || enrolling) {
            hb.known = known;
            char ref[RECORDS_FIRMWARE_LEN];
            ota_target_of(o, &b, ref, sizeof(ref), NULL);
            char ferr[256] = "";
            int grc = ref[0] ? ota_fw_get(o, ref, &fw, ferr, sizeof(ferr)) : 0;
            if (grc < 0) {
                snprintf(problem, sizeof(problem), "target %s: %s", ref, ferr);
                fetching = grc == -EAGAIN;
            } else if (fw && ota_fw_policy(o, fw, ferr, sizeof(ferr)) < 0) {
                snprintf(problem, sizeof(problem), "%s", ferr);
                ota_fw_unref(fw);
                fw = NULL;
            } else if (fw && fw->dual) {
                /* user1/user2 V2 images: the Arduino updater would refuse them (not 0xE9) */
                snprintf(problem, sizeof(problem),
                         "target %s is an ESP8266 NONOS dual-image set, which the Arduino "
                         "updater cannot take: push it with method \"tcp\" or let the board "
                         "fetch /ota/fw/%s/%s/user1.bin or user2.bin",
                         fw->ref, fw->name, fw->version);
                ota_fw_unref(fw);
                fw = NULL;
            }
            if (fw) {
                img.version = fw->version;
                img.md5 = fw->md5;
                img.size = fw->size;
                img.gzip = fw->gzip;
                img.header_flash = fw->header_flash;
                img.mode_md5 = fw->have_mode_md5 ? (const char(*)[33])fw->mode_md5 : NULL;
                hb.target = &img;
            }
            if (have_bo && bo.served_md5[0]) {
                hb.served_md5 = bo.served_md5;
                hb.served_version = bo.served_version;
                hb.served_from_sketch_md5 = bo.served_sketch_md5;
            }
        }
        ota_http_decide(req, known || enrolling ? &hb : NULL, &pol, &d);
        if (fs_missing && d.action == OTA_HTTP_NOT_MODIFIED) {
            /* A clear refusal (the updater reports 404 as "file not found"), not "nothing
             * new": the board asks for a filesystem image its target set does not have. */
            d.action = OTA_HTTP_NOT_FOUND;
            d.status = 404;
            d.image = NULL;
            snprintf(d.reason, sizeof(d.reason), "target %s has no filesystem image", fw->ref);
        }
        bool counts = d.action != OTA_HTTP_FORBIDDEN && d.action != OTA_HTTP_BAD_REQUEST &&
                      d.action != OTA_HTTP_METHOD_NOT_ALLOWED && (known || d.enrol);
        /* A known board's address first: a check-in without credentials from somewhere
         * other than its confirmed address changes nothing but the claim (board_addr.h). */
        if (counts && known)
            c->claim = board_addr_note(o->st, c->mac, c->ip, src, NULL, 0) == BOARD_ADDR_CLAIM;
        if (counts && !c->claim)
            update_board(o, c, req, &b, known, &d, problem[0] ? problem : NULL, src);
        if (problem[0] && counts && !c->claim && !fetching)
            ota_bulk_on_pull_problem(o, c->mac, problem);
        if (fetching && d.action != OTA_HTTP_FORBIDDEN && d.action != OTA_HTTP_BAD_REQUEST) {
            /* The target is on its way from another station of the line (line_fw.h). A 5xx,
             * not 304: ESP8266httpUpdate and HTTPUpdate both end such an answer as
             * HTTP_UPDATE_FAILED (HTTP_UE_SERVER_WRONG_HTTP_CODE), keep the running sketch
             * and check in again at the sketch's next interval, while 304 would say "no
             * update" (HTTP_UPDATE_NO_UPDATES): the board is told it is current. */
            refuse = 503;
            snprintf(refuse_text, sizeof(refuse_text), "%s; check in again shortly\n", problem);
        }
        if (!known && d.enrol) {
            log_board(LOG_LEVEL_INFO, NULL, c->mac, "enrolled by check-in from %s: %d (%s)", c->ip,
                      d.status, d.reason);
        }
        log_board(LOG_LEVEL_DEBUG, NULL, c->mac, "check-in from %s: %d (%s)", c->ip, d.status,
                  d.reason);
    }

answer:
    if (refuse) {
        d.action = OTA_HTTP_FORBIDDEN; /* nothing is served */
        ota_count_checkin(o, refuse);
        ota_answer_text(c, refuse, refuse_text);
    } else {
        ota_count_checkin(o, d.status);
        int n = ota_http_format_response(&d, c->head, sizeof(c->head));
        if (n < 0)
            ota_answer_text(c, 500, "internal error\n");
        else
            c->head_len = (size_t)n;
    }
    if (d.action == OTA_HTTP_SERVE && fw && strcmp(req->method, "HEAD") != 0) {
        c->fw = ota_fw_ref(fw);
        c->fs = fs_mode && d.image == &fsimg;
        c->body = c->fs ? fw->fs_data : fw->data;
        c->body_len = c->fs ? fw->fs_size : fw->size;
        if (pick.body) { /* plain GET: the app or the user1/user2 half it named */
            c->body = pick.body;
            c->body_len = pick.len;
        }
        c->record_served = d.record_served;
        if (c->record_served && c->mac[0] && !c->claim) {
            struct records_job_new jn = {.kind = c->fs ? "ota-pull-fs" : "ota-pull",
                                         .board_mac = c->mac,
                                         .firmware = fw->ref,
                                         .stage = "transfer"};
            if (records_job_begin(rec, &jn, &c->job_id, NULL) < 0) {
                c->job_id = 0;
            } else {
                char line[400];
                snprintf(line, sizeof(line), "%s image of %s (%zu bytes, md5 %s): %s%s",
                         c->half ? c->half
                         : c->fs ? "filesystem"
                                 : "app",
                         fw->ref, c->body_len,
                         c->fs       ? fw->fs_md5
                         : pick.body ? pick.md5
                                     : fw->md5,
                         d.reason, c->plain ? " (plain GET from the board's address)" : "");
                records_job_log(rec, c->job_id, "info", line, NULL);
            }
        }
    }
    ota_fw_unref(fw);
    c->writing = true;
    loop_del_fd(o->loop, c->fd);
    if (loop_add_fd(o->loop, c->fd, EPOLLOUT, ota_conn_io, c) < 0) {
        ota_conn_close(c);
        return;
    }
    ota_conn_write(c);
}
