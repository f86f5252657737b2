/*
 * ota: the station's side of the hand-over from serial to network, on the loop
 * thread.
 *
 * Owns:
 *  - the device-facing HTTP update endpoint (config "ota.listen"): a small
 *    non-blocking HTTP/1.0 server in the loop, separate from the REST API
 *    because the ESP updaters want byte-exact answers (ota_http formats them:
 *    HTTP/1.0, exact Content-Length with one space, lowercase x-MD5, never
 *    chunked) and because the device network is not the operator network.
 *    Any path is accepted (/ota/update, /ota/<name>.bin, ...): the board is
 *    known by its STA MAC header, not by the URL;
 *  - the check-in bookkeeping: a check-in links the MAC to the record written
 *    by the serial flash (or enrols it, config ota.unknown_boards, limited by
 *    ota.enrol_rate_per_min / ota.enrol_max without credentials), stores IP,
 *    running version, free space, sketch size/MD5, chip size, SDK version and
 *    the time, and makes the board "online" (the slot too, when it still shows
 *    awaiting_network). The address is trusted per board_addr.h: a check-in
 *    with a profile's checkin_auth confirms it; one without never moves a
 *    confirmed address and then records nothing but a claim;
 *  - the image cache: "name@version" -> the set's app region (the OTA image),
 *    its MD5 and the profile's signature verdict, loaded once from the catalog
 *    and shared read-only with push workers (refcounted);
 *  - push jobs (ota_job.c): one worker thread per push (espota, webform,
 *    tcp), recorded as jobs of kind "ota-push", and bulk updates.
 *
 * Plain GETs by path serve only sets a profile names or a board's pinned target.
 *
 * Which firmware a board should run (its target): the board's pinned target
 * (records target_firmware), else the active profile's OTA release for its
 * chip family (profile "ota_firmware", falling back to "firmware"). A profile
 * with require_signed refuses unsigned images before serving or pushing.
 *
 * Threads: everything here runs on the loop thread except the push workers,
 * which only see a copy of their parameters and a reference to the image and
 * report through a pipe read by the loop (ownership of a message moves with
 * the pointer).
 */
#ifndef ESPSTATION_OTA_H
#define ESPSTATION_OTA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct station;
struct loop;
struct ota;

/* Creates the OTA manager; listens when the config enables ota.listen (the bound
 * port is written to <data_dir>/ota.port). 0 or -errno with one line in err. */
int ota_new(struct station *st, struct loop *loop, struct ota **out, char *err, size_t errlen);
/* Cancels and joins push workers, closes connections. NULL allowed. */
void ota_free(struct ota *o);
/* Bound port of the update endpoint, -1 when disabled. */
int ota_port(const struct ota *o);
/* The catalog or the config changed: drops cached images. */
void ota_invalidate(struct ota *o);
/* The config was reloaded (station_reload, loop thread): when ota.listen changed, binds the
 * new address first and only then closes the old listener (connections already accepted,
 * i.e. downloads in flight, finish on their own sockets); a bind failure keeps the old
 * listener and logs an error naming the address. <data_dir>/ota.port gets the bound port
 * (removed when ota.listen was removed). NULL allowed. */
void ota_reload(struct ota *o);
/* True while push workers run (the station waits for them when stopping). */
bool ota_busy(const struct ota *o);
/* Cancels every push (daemon stopping). */
void ota_cancel_all(struct ota *o);

/* True when mac checked in at the update endpoint after job job_id started (the
 * flash job's boot check was still running when the firmware came online). o NULL:
 * false. */
bool ota_checked_in_during(struct ota *o, const char *mac, int64_t job_id);

/* Pins (firmware "name@version") or unpins (NULL) a board's target. The firmware
 * must be in the catalog, for the board's chip family, and pass the profile's
 * signature policy. 0, -ENOENT (no board / no firmware), -EINVAL, -EPERM. */
int ota_set_target(struct ota *o, const char *mac, const char *firmware, char *err, size_t errlen);

/* The target a board should run ("name@version" into buf, "" none) and whether it
 * is pinned. 0 or -ENOENT (no board). */
int ota_board_target(struct ota *o, const char *mac, char *buf, size_t len, bool *pinned);

struct ota_push_request {
    const char *mac;
    const char *method;   /* "espota" (default), "webform", "tcp" */
    const char *firmware; /* "name@version"; NULL = the board's target */
    const char *password; /* NULL = the profile's ota_password */
    const char *user;     /* webform: HTTP Basic user; NULL = config ota.webform_user */
    int port;             /* device port; 0 = the protocol's default */
    bool filesystem;      /* the set's filesystem region instead of the app (espota cmd 100,
                             web-form field "filesystem"; tcp: refused with -EINVAL) */
    int64_t bulk_id;      /* 0 = none */
    /* Skip the ESP8266 header-vs-chip flash size refusal (flash_too_small in ota_job.c): a
     * build with the core's FLASH_MAP_SUPPORT does not check it on the device. The board's
     * own ERROR[9] is still reported with advice. false = check (the default). */
    bool no_flash_size_check;
};

/* Starts a push job (worker thread). *job_id gets its records id. -ENOENT no board
 * or firmware, -EINVAL bad request (no IP known, bad method), -EPERM unsigned image
 * on a signed-only profile, -EBUSY a push to this board runs, -EIO. */
int ota_push(struct ota *o, const struct ota_push_request *r, int64_t *job_id, char *err,
             size_t errlen);

/* Cancels push job id: 0, or -ENOENT when no such push runs. */
int ota_cancel_push(struct ota *o, int64_t job_id);

/* ---- bulk updates --------------------------------------------------------------------- */

struct ota_bulk_request {
    /* selection (one of) */
    const char *group; /* boards in this group (records board groups) */
    const char *profile;
    const char *chip;
    const char *const *macs;
    size_t n_macs;
    const char *firmware; /* "name@version" (required) */
    const char *method;   /* "pull" (default), "espota", "webform", "tcp" */
    const char *password;
    const char *user; /* webform: HTTP Basic user; NULL = config ota.webform_user */
    bool filesystem;  /* push the filesystem image (espota/webform only; api_ota.c refuses
                         it with pull and tcp) */
    int port;
    int concurrency;         /* 1..64, default 4 */
    int retries;             /* 0..10, default 1 */
    double max_failure_rate; /* 0..1, default 0.2 */
    int timeout_s;           /* pull: how long to wait for a board to report the target; 300 */
};

/* Starts a bulk update. *bulk_id gets its id. -EINVAL (err names the field),
 * -ENOENT (firmware), -EPERM (signature policy). */
int ota_bulk_start(struct ota *o, const struct ota_bulk_request *r, int64_t *bulk_id, char *err,
                   size_t errlen);

/* JSON text of one bulk, read from the records (malloc'd, caller frees), NULL when
 * unknown. Bulks are stored and resumed after a restart (ota_bulk.c). */
char *ota_bulk_json(struct ota *o, int64_t bulk_id);
/* JSON {"bulks": [...]} of the stored bulks, newest first (malloc'd). */
char *ota_bulk_list_json(struct ota *o);
/* Cancels a bulk: 0 or -ENOENT. */
int ota_bulk_cancel(struct ota *o, int64_t bulk_id);

/* JSON object with the board's OTA state (malloc'd), NULL when it never checked in. */
char *ota_board_json(struct ota *o, const char *mac);

/* An mDNS advertisement (mdns.c) mapped to the known board mac: records ip as
 * its address (so it can be pushed to) and marks it online. port/auth_upload
 * (1 yes, 0 no, -1 unknown) are logged. Loop thread. */
void ota_seen_mdns(struct ota *o, const char *mac, const char *ip, int port, int auth_upload);

/* Counters since the daemon started that no event carries, for /metrics (loop thread):
 * requests to the update endpoint by the HTTP status answered, and pulls that did not
 * complete (index 0 app image, 1 filesystem image) with the bytes sent before the cut. */
#define OTA_CHECKIN_STATUSES 12
struct ota_counters {
    struct {
        int status; /* 0 = unused entry */
        uint64_t n;
    } checkins[OTA_CHECKIN_STATUSES];
    uint64_t pulls_failed[2];       /* incomplete pulls with a job (app, filesystem) */
    uint64_t plain_pulls_failed[2]; /* incomplete plain GETs from unknown addresses (no job) */
    uint64_t pull_failed_bytes;
};
/* NULL when o is NULL. */
const struct ota_counters *ota_counters(const struct ota *o);

/* ota.tls: the not-after of the certificate new connections get (seconds since the epoch),
 * 0 when the endpoint is off or speaks plain HTTP (/metrics). */
int64_t ota_tls_expiry(const struct ota *o);
/* Its subject ("/CN=..."); "" when the endpoint speaks plain HTTP or is off. */
const char *ota_tls_server_subject(const struct ota *o);

#endif
