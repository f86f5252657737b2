/*
 * station_priv: what station.c and the station_*.c files split from it share: the station
 * itself, the REST job requests and the helpers each part offers the others. Not for other
 * modules (they use station.h). Loop thread only.
 */
#ifndef ESPSTATION_STATION_PRIV_H
#define ESPSTATION_STATION_PRIV_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "fdbudget.h"
#include "log.h"
#include "records.h"
#include "slot.h"
#include "station.h"

struct json_object;
struct job;
struct job_firmware;
struct devsrc_udev;
struct loop_timer;
struct job_msg;
struct job_params;
struct job_result;
struct esp_chip_info;
struct port_event;

/*
 * A job asked for through the REST API, from the request until the job is
 * finished. While queued (max_parallel reached) it already has a 'queued'
 * records job, so the API can answer with its id.
 */
struct station_req {
    struct slot *s;
    int64_t job_id; /* 0 until the records job exists */
    bool started;   /* a worker runs it (s->job) */
    char kind[16];
    char fw_name[RECORDS_NAME_LEN];
    char fw_version[RECORDS_NAME_LEN];
    bool force;
    int erase_all, verify;
    uint32_t baud;
    bool erase_region;
    uint32_t erase_offset, erase_size;
    struct station_req *next;
};

struct station {
    struct station_options opt;
    struct ota *ota; /* borrowed, set by main */
    char *config_path;
    char data_dir[PATH_MAX];
    char stub_dir[PATH_MAX];
    char stub_override[PATH_MAX];
    char stub_env[PATH_MAX];   /* $ESPSTATION_STUB_DIR, "" none */
    char stub_build[PATH_MAX]; /* the build's default, "" none */
    char data_override[PATH_MAX];
    char name[64]; /* this station's name in the line (config "station", else the host name) */
    struct config *cfg;
    struct records *rec;
    struct catalog *cat;
    struct loop *loop;
    struct slot_table slots;
    struct job *jobs;
    int running;
    struct slot **queue;
    size_t nq, capq;
    struct job_firmware **fw;
    size_t nfw, capfw;
    struct loop_timer *poll_timer;
    struct devsrc_udev *udev;
    int udev_fd;
    bool stopping;
    bool stopped;
    struct station_hooks hooks;
    struct station_req *reqs;     /* REST API job requests, pending or running */
    struct json_object *overlay;  /* REST API profile changes (config_load_overlay), or NULL */
    struct fd_budget budget;      /* set by main (station_set_fd_budget) */
    int api_idle_start;           /* api.idle_timeout_s the REST API was started with */
    struct line_fw *lfw;          /* firmware shared across the line (line_fw.h), NULL none */
    struct loop_timer *rec_timer; /* station_records.c: drives the records journal */
    bool rec_down;                /* the records database was found unreachable */
    int64_t rec_dropped;          /* journal writes the database refused, logged */
    bool rec_offline;             /* started offline; its open not finished yet */
    int rec_tick_err;             /* the last records_tick error logged (0 none) */
};

/* station_records.c: a records database that can go away (PostgreSQL with a
 * journal in the data directory; see records_open_journaled). */
struct records_error;
int st_records_open(struct station *st, const char *journal, struct records_error *re);
int st_records_watch(struct station *st);
void st_records_unwatch(struct station *st);

/* station.c */
void st_event(struct station *st, const char *kind, const struct slot *s, const char *mac,
              int64_t job_id, struct json_object *data); /* data consumed, may be NULL */
struct json_object *st_jobj(void);
void st_jset_str(struct json_object *o, const char *k, const char *v);
void st_jset_int(struct json_object *o, const char *k, int64_t v);
void st_resolve_dirs(struct station *st);
void st_apply_config(struct station *st, struct config *cfg);
void st_scopy(char *dst, size_t n, const char *src);
void st_rec_warn(const struct records_error *re);
void st_notify_slot(struct station *st, const struct slot *s, bool progress);
void st_slog(const struct slot *s, enum log_level lv, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void st_set_phase(struct station *st, struct slot *s, enum board_phase p);
int st_mkdir_p(const char *path);
const struct config_profile *st_active_profile(const struct station *st);

/* station_ports.c: ports arriving and leaving */
const char *st_manual_path(const char *uri); /* NULL: always present (tcp://, ...) */
bool st_manual_present(const char *uri);
void st_port_removed(struct station *st, const struct port_event *ev);
void st_poll_manual(void *ctx); /* ctx: the station */
void st_udev_start(struct station *st);

/* station_jobs.c: starting jobs, the queue, per-slot timers */
void st_queue_remove(struct station *st, struct slot *s);
int st_queue_push(struct station *st, struct slot *s);
void st_start_job(struct station *st, struct slot *s);
void st_schedule(struct station *st, struct slot *s);
void st_start_queued(struct station *st);
int st_slot_timer_arm(struct station *st, struct slot *s, int ms);

/* station_plan.c: what an identified board gets */
void st_on_identified(struct station *st, struct job *j, const struct job_msg *m);
void st_on_flash_info(struct station *st, struct job *j, const struct job_msg *m);
void st_on_capture(struct station *st, struct job *j, const struct job_msg *m);

/* station_results.c: an ended job */
void st_finish_job(struct station *st, struct job *j, struct job_result *r);

/* station_requests.c: REST API job requests */
struct station_req *st_req_pending(const struct station *st, const struct slot *s);
struct station_req *st_req_of_job(const struct station *st, int64_t id);
void st_req_free(struct station *st, struct station_req *rq);
void st_req_drop(struct station *st, struct station_req *rq, const char *why);
void st_apply_req(const struct station_req *rq, struct job_params *p);

/* station_firmware.c: the cache of verified sets */
void st_fw_cache_clear(struct station *st);
int st_fw_get(struct station *st, const struct config_firmware_ref *ref, struct job_firmware **out,
              char *err, size_t errlen);
int st_check_profiles(struct station *st);

/* station_serial.c: the active profile's serial number for the identified board j
 * (records, events, job log; plan->boot_pattern and a flash region when configured).
 * 0 (also when the profile has no "serial"), or < 0 with plan->message/advice set and
 * plan's extra regions freed. */
struct job_plan;
int station_take_serial(struct station *st, struct job *j, struct job_plan *plan);

/* station_profiles.c */
void st_quarantine_overlay(const struct station *st, const char *why);
void st_load_overlay_file(struct station *st);

#endif
