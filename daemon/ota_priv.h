/*
 * ota_priv: what ota.c (update endpoint: listener and connections), ota_checkin.c
 * (check-in and pull handling of a request), ota_fw.c (image cache), ota_job.c (push
 * workers) and ota_bulk.c (bulk updates) share. Not for other modules.
 */
#ifndef ESPSTATION_OTA_PRIV_H
#define ESPSTATION_OTA_PRIV_H

#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "ota.h"
#include "ota_common.h"
#include "ota_http.h"
#include "records.h"

/* One OTA image: the app region of a catalog set (and its filesystem region, if
 * any). For an ESP8266 NONOS dual set, data is user1 and data2 user2 (by their
 * "slot"); otherwise data is the first app region and data2 a second one, if any.
 * Immutable once loaded; shared read-only with workers by reference count. */
struct ota_fw {
    atomic_int refs;
    char ref[RECORDS_FIRMWARE_LEN]; /* "name@version" */
    char name[RECORDS_NAME_LEN];
    char version[RECORDS_NAME_LEN];
    enum esp_chip chip;
    uint8_t *data;
    size_t size;
    uint8_t *data2; /* a second app region (NONOS user2 for raw TCP-OTA), NULL none */
    size_t size2;
    char md5_2[33]; /* of data2 */
    bool dual;      /* data/data2 are the set's user1/user2 slots (ESP8266 NONOS layout) */
    char md5[33];
    bool gzip; /* data is a gzip-compressed ESP8266 image (served/pushed as is) */
    /* ESP8266 0xE9 app: the flash size its header declares (0 unknown) and the MD5s of data
     * with flash-mode byte 0..3, what a board running it reports (ota_image.h) */
    uint64_t header_flash;
    bool have_mode_md5;
    char mode_md5[4][33];
    uint8_t *fs_data; /* the set's filesystem region (SPIFFS/LittleFS/FAT), NULL none */
    size_t fs_size;
    uint32_t fs_offset;
    char fs_md5[33];
    /* the last signature-policy verdict (loop thread only) */
    char policy_key[600];
    int policy_rc;
    char policy_msg[256];
    struct ota_fw *next; /* cache list (loop) */
};

struct ota_fw *ota_fw_ref(struct ota_fw *fw);
void ota_fw_unref(struct ota_fw *fw); /* NULL allowed; any thread */

struct ota_tls_conn;
struct ota_push;
struct ota_bulk;
struct loop_timer;

struct ota {
    struct station *st;
    struct loop *loop;
    int listen_fd;
    int port;
    char listen_host[128]; /* the ota.listen the listener was opened for ("" none) */
    int listen_cfg_port;   /* its configured port (0 = any) */
    bool stopping;         /* ota_free runs */
    struct ota_conn *conns;
    int n_conns;
    struct loop_timer *sweep;
    /* accept() found no descriptor (EMFILE...): the listener rests, accept_timer wakes it */
    struct loop_timer *accept_timer;
    bool accept_paused;
    int64_t accept_log_ms; /* the last such warning */
    uint64_t evicted;      /* connections closed to make room at the cap */
    int64_t evict_log_ms;  /* the last "at its cap" warning */
    struct ota_fw *cache;
    /* ota.tls: the endpoint's TLS context (ota_tls.h), NULL plain HTTP; replaced by a
     * reload whose files changed, connections in flight keep theirs */
    struct ota_tls *tls;
    /* push workers */
    int msg_pipe[2];
    struct ota_push *pushes;
    int n_pushes;
    /* bulks */
    struct ota_bulk *bulks;
    bool bulks_resumed;       /* ota_bulk.c loaded the store's running bulks */
    int64_t bulk_lease_next;  /* loop_now_ms() of the next lease renewal and takeover scan */
    bool bulk_leases_failing; /* the last read of the leases failed (logged once) */
    /* mDNS discovery (mdns.c), NULL off */
    struct mdns *mdns;
    struct ota_counters counters; /* /metrics (ota_counters) */
    /* Check-ins without credentials that would enrol a board (ota.c enrol_gate): a token
     * bucket of ota.enrol_rate_per_min, and the refusals since the last ota.enrol_limited
     * event (posted at most once a minute, so a flood does not fill the journal). */
    double enrol_tokens;
    int64_t enrol_refill_ms; /* 0: full bucket */
    uint64_t enrol_refused;
    int64_t enrol_event_ms;
    /* Check-ins refused for wrong or missing checkin_auth credentials since the last
     * warning (logged at most once a minute). */
    uint64_t auth_refused;
    int64_t auth_log_ms;
};

/* One connection to the update endpoint (ota.c accepts it and does its I/O; ota_checkin.c
 * answers its request). */
struct ota_conn {
    struct ota *o;
    int fd;
    struct ota_tls_conn *tls; /* ota.tls: the connection's TLS layer; NULL plain HTTP */
    char ip[INET6_ADDRSTRLEN];
    char in[OTA_HTTP_MAX_HEAD];
    size_t in_len;
    char head[1024];
    size_t head_len, head_off;
    struct ota_fw *fw;   /* body to send (SERVE), referenced */
    const uint8_t *body; /* fw's app or filesystem image */
    size_t body_len;
    bool fs; /* x-…-mode: spiffs (the filesystem image) */
    size_t body_off;
    bool writing;
    bool record_served; /* a GET answered with an image: counted, and a job when mac */
    bool plain;         /* an SDK plain GET (no updater headers) */
    const char *half;   /* plain GET of a dual set: "user1" / "user2", else NULL */
    char mac[RECORDS_MAC_LEN];
    bool claim; /* a check-in without credentials for a board confirmed at another address:
                   answered, but nothing goes into that board's record (board_addr.h) */
    char sketch_md5[33];
    int64_t job_id;
    int64_t last_io;
    int64_t started;
    int64_t first_us; /* monotonic time of the response's first byte handed to the socket */
    bool draining;    /* whole image handed over, our side shut: waiting for the board's close */
    struct ota_conn *next;
};

/* ota.c: the connection's I/O */
void ota_conn_io(void *ctx, int fd, uint32_t events); /* loop callback, ctx the ota_conn */
void ota_conn_write(struct ota_conn *c);              /* sends the head, then the body */
void ota_conn_close(struct ota_conn *c);              /* unlinks and frees c */

/* ota_checkin.c: one request */
/* Answers c's parsed request: check-in bookkeeping, the pull decision, the response. */
void ota_handle_request(struct ota_conn *c, const struct ota_http_request *req);
/* A plain-text response head and body into c->head. */
void ota_answer_text(struct ota_conn *c, int status, const char *text);
/* /metrics: one request answered with status (ota_counters). */
void ota_count_checkin(struct ota *o, int status);
/* The whole image went out; seconds: from the first byte of the response to the board's
 * close, < 0 when not known (why_unknown says why). */
void ota_served_complete(struct ota_conn *c, double seconds, const char *why_unknown);

/* Loads (or takes from the cache) "name@version"'s OTA image: a new reference.
 * -ENOENT, -EINVAL (no app region / bad reference), -EBADMSG, -ENOMEM. */
int ota_fw_get(struct ota *o, const char *ref, struct ota_fw **out, char *err, size_t errlen);

/* The active profile's signature policy applied to fw (cached verdict): 0, or
 * -EPERM / -EBADMSG / -ENOTSUP / -EINVAL with a message. */
int ota_fw_policy(struct ota *o, struct ota_fw *fw, char *err, size_t errlen);

/* The filesystem image of fw may be served or pushed: 0; -ENOENT when the set has
 * none, -EPERM on a signed-only profile (the station cannot verify a filesystem
 * image); err says what to do. */
int ota_fw_fs_policy(struct ota *o, const struct ota_fw *fw, char *err, size_t errlen);

/* Board chip text ("ESP32", "ESP8266", ...) to the ota_chip family. */
enum ota_chip ota_chip_of(const char *chip_name);

/* The board's target reference ("" none). */
int ota_target_of(struct ota *o, const struct records_board *b, char *ref, size_t len,
                  bool *pinned);

/* A slot showing mac as awaiting_network (and idle) moves to online. */
void ota_slot_online(struct ota *o, const char *mac);

/* ota_job.c */
void ota_jobs_init(struct ota *o);
void ota_jobs_on_msg(void *ctx, int fd, uint32_t events);
void ota_jobs_free(struct ota *o);
/* A board checked in reporting version (pull bulks wait for it). */
void ota_bulk_on_checkin(struct ota *o, const char *mac, const char *version);
/* A pull to mac failed on the station side (serve problem / broken transfer). */
void ota_bulk_on_pull_problem(struct ota *o, const char *mac, const char *why);
/* Periodic (timeouts of pull bulks). */
void ota_bulk_tick(struct ota *o);

/* ota_bulk.c */
/* A push started by bulk bulk_id for mac ended (ok, or why). */
void ota_bulk_on_push_done(struct ota *o, int64_t bulk_id, const char *mac, bool ok,
                           const char *why);
/* A push ended: running push bulks that wait for a place among the FD_BUDGET_PUSHES pushes
 * the station runs at once start their next boards. */
void ota_bulk_on_push_room(struct ota *o);
/* Frees every bulk (daemon stopping). */
void ota_bulks_free(struct ota *o);

/* Formats into a fixed buffer, always NUL-terminated. */
void ota_errf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
