/*
 * station_priv: what station.c and station_profiles.c share: the station itself and a few
 * helpers. Not for other modules (they use station.h). Loop thread only.
 */
#ifndef ESPSTATION_STATION_PRIV_H
#define ESPSTATION_STATION_PRIV_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "fdbudget.h"
#include "slot.h"
#include "station.h"

struct json_object;
struct job;
struct job_firmware;
struct devsrc_udev;
struct loop_timer;
struct station_req;

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
