/*
 * station: the daemon's state and its decisions, on the loop thread.
 *
 * Owns the config (swapped whole on SIGHUP), the records store, the firmware
 * catalog and a cache of loaded firmware sets, the slot table, the running
 * jobs (at most config max_parallel; further boards queue in plug order) and
 * the device sources (manual ports from the config, polled for presence;
 * udev). Every port event, worker message, timer and signal ends up here, on
 * the loop thread; workers see only copies (struct job_params) and answers
 * (struct job_plan).
 *
 * Decisions made here, each logged once: which firmware a board gets (the
 * active profile's entry for its chip family), whether a failed job is
 * retried (profile retries, backoff, board still present), when a slot is
 * flagged (flag_after consecutive failures), how an ended job is recorded
 * (an unplug is "board removed during <stage>" whether the worker saw the
 * port vanish first or the station did).
 */
#ifndef ESPSTATION_STATION_H
#define ESPSTATION_STATION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "devsrc.h"
#include "config.h"
#include "fdbudget.h"

struct loop;
struct station;

struct station_options {
    const char *config_path; /* NULL: defaults */
    const char *data_dir;    /* overrides the config's; NULL keeps it */
    const char *stub_dir;    /* overrides the config's; NULL keeps it */
    /* Where the stubs are when neither stub_dir above nor the config's stub_dir names a
     * directory, in this order: $ESPSTATION_STUB_DIR, then the build's default. */
    const char *stub_dir_env;   /* NULL or "": none */
    const char *stub_dir_build; /* NULL or "": none */
    int flag_after;             /* consecutive failures before a slot is flagged; 0 = 3 */
    int retry_backoff_ms;       /* 0 = 2000 */
    int manual_poll_ms;         /* 0 = 1000 */
    int reenum_grace_ms;        /* USB-Serial/JTAG re-enumeration grace; 0 = 3000 */
    bool no_udev;               /* do not start the udev source */
    /* --import of a build's output (buildimport.h): the set's name and version, NULL for
     * what the build suggests. */
    const char *import_name;
    const char *import_version;
};

/* Loads the config, opens the records store (crash recovery) and the catalog.
 * On failure returns -errno with one line in err. */
int station_new(const struct station_options *o, struct loop *loop, struct station **out, char *err,
                size_t errlen);
/* Starts the device sources and the manual-port poll. */
int station_start(struct station *st);
/* The device-source callback (devsrc_cb): ctx is the station. */
void station_port_event(void *ctx, const struct port_event *ev);
/* Attaches a URI by hand (the REST API's "attach"). 0 or -errno. */
int station_attach(struct station *st, const char *uri, const char *label);
/* SIGHUP: reloads the config (keeps the old one on error) and rescans the catalog. */
int station_reload(struct station *st);
/* SIGTERM/SIGINT: cancels running jobs (recorded "cancelled: daemon stopping");
 * stops the loop once every worker has ended. */
void station_stop(struct station *st);
/* True once stopped with no job left. */
bool station_stopped(const struct station *st);
/* The loop's signal handler (loop_signal_fn): ctx is the station. */
void station_on_signal(void *ctx, int signo);
/* Closes everything (no job may be running). NULL allowed. */
void station_free(struct station *st);

/*
 * Which firmware the active profile puts on a chip (the profile matching rule):
 * 1 and *ref (borrowed from cfg) when there is an entry for the chip family;
 * 0 when there is nothing to write (no active profile, no entry for the
 * family: identified and recorded, job skipped); -ENOTSUP for an unknown chip
 * (chip NULL; job failed). msg/advice say why, for the job record.
 */
int station_choose_firmware(const struct config *cfg, const struct esp_chip_desc *chip,
                            uint32_t magic, const struct config_firmware_ref **ref, char *msg,
                            size_t msglen, char *advice, size_t advlen);

/* ---- for the web layer (REST API), loop thread only ---------------------------------- */

struct records;
struct records_event;
struct catalog;
struct slot;
struct slot_table;

/* Borrowed views of the station's state; valid until the next call into the station
 * (the config is swapped whole on reload or a profile change). */
struct records *station_records(struct station *st);
struct catalog *station_catalog(struct station *st);
/* Firmware shared across the line (line_fw.h); NULL when it could not start. */
struct line_fw *station_line_fw(struct station *st);
const struct config *station_config(const struct station *st);
const struct slot_table *station_slots(const struct station *st);
const char *station_data_dir(const struct station *st);
/* This station's name in the line: config "station", else the host name. */
const char *station_name(const struct station *st);
bool station_stopping(const struct station *st);
/* Jobs running now / slots waiting for a job place. */
int station_running(const struct station *st);

/* A slot by its name (label, else key), its key, or its decimal index. NULL if none. */
struct slot *station_find_slot(const struct station *st, const char *id);
/* True while the slot has a job running, queued (API or plug-in) or a retry pending. */
bool station_slot_busy(const struct station *st, const struct slot *s);
/* Kind ("flash", "erase", ...) of the slot's current job, NULL when none runs. */
const char *station_slot_job_kind(const struct station *st, const struct slot *s);
/* Milliseconds since the slot's current job started, -1 when none runs. */
int64_t station_slot_elapsed_ms(const struct station *st, const struct slot *s);
/* The slot whose running job has records id `id`, NULL when no such job runs. */
struct slot *station_slot_of_job(const struct station *st, int64_t id);
/* Forgets the slot's learnt baud limit (link back-off): later jobs run at the profile's
 * baud again. Logs and emits slot.baud_limit_cleared when there was one. Returns the
 * limit that was cleared (0 when none). */
uint32_t station_slot_reset_baud(struct station *st, struct slot *s);

/*
 * Observers (the web layer's event stream). event: called after every append to
 * the events journal, with the stored event (id, ts, kind, ...). slot: called when
 * a slot's visible state changed; progress is true for byte-count updates (frequent:
 * throttle them), false for phase/port/result changes. Both on the loop thread,
 * possibly from inside any station call; they must not call back into the station.
 */
struct station_hooks {
    void (*event)(void *ctx, const struct records_event *e);
    void (*slot)(void *ctx, const struct slot *s, bool progress);
    void (*reload)(void *ctx); /* after a reload (SIGHUP) applied a config; NULL none */
    void *ctx;
};
void station_set_hooks(struct station *st, const struct station_hooks *h);

/* Appends an event to the journal (and tells the hooks). data: JSON object text or NULL. */
int station_post_event(struct station *st, const char *kind, const struct slot *s, const char *mac,
                       int64_t job_id, const char *data);

/* A job asked for through the REST API. */
struct station_job_request {
    const char *kind;             /* "flash", "erase", "info", "reset" */
    const char *firmware_name;    /* flash: overrides the profile's choice; NULL = profile */
    const char *firmware_version; /* with firmware_name */
    bool force;                   /* flash: ignore skip_if_same */
    int erase_all;                /* flash: -1 profile, 0 no, 1 yes */
    int verify;                   /* flash: -1 profile, 0 no, 1 yes */
    uint32_t baud;                /* flash: 0 = profile */
    bool erase_region;            /* erase: offset/size instead of the whole chip */
    uint32_t erase_offset, erase_size;
};

/*
 * Starts (or queues, when max_parallel jobs run) a job on the board of slot s and
 * returns its records id in *job_id. Exactly one request per slot wins: -EBUSY when
 * the slot already has a job (running, queued, retry pending), -ENODEV when no
 * board/port is present, -ESHUTDOWN while stopping, -EINVAL bad request, -EIO when
 * the job cannot be recorded or started (err says why).
 */
int station_request_job(struct station *st, struct slot *s, const struct station_job_request *r,
                        int64_t *job_id, char *err, size_t errlen);

/* Cancels job `id`: 0 when a running job was told to stop (it ends shortly as
 * cancelled), 1 when a queued job was cancelled at once, -ENOENT when no such job
 * runs or waits (it may have ended: look at the records). */
int station_cancel_job(struct station *st, int64_t id);

/* Detaches slot s as if unplugged (a running job ends "board removed during ...").
 * A port from the config's ports stays detached until its path is re-created. */
int station_detach(struct station *st, struct slot *s);

/*
 * Profile changes, applied on top of the config file (so they survive SIGHUP) and
 * saved in <data_dir>/profiles.json before they apply (so they survive a restart or
 * a kill; loaded by station_new, an unusable file is moved aside). put: profile_json
 * is a profile object as in the config file; the whole config is validated again
 * (err gets the config's message, naming the key). active: name NULL = no active
 * profile. delete: drops the API's change to profile name (an API-created profile is
 * removed, an edited one is the config file's again) or, name NULL, the API's active
 * choice. 0, -EINVAL (validation), -ENOENT (no such profile), -EALREADY (delete:
 * nothing changed through the API), -EIO (cannot save: err says why), -ENOMEM.
 */
int station_put_profile(struct station *st, const char *name, const char *profile_json, char *err,
                        size_t errlen);
int station_set_active_profile(struct station *st, const char *name, char *err, size_t errlen);
int station_delete_profile(struct station *st, const char *name, char *err, size_t errlen);
/* True if the API changed profile name (NULL: the active choice). */
bool station_profile_overridden(const struct station *st, const char *name);
/* The profile changes file's path (in buf). */
const char *station_profiles_file(const struct station *st, char *buf, size_t len);

/* The firmware catalog changed (import, replace, delete): drops cached sets and
 * re-checks the profiles' references. */
void station_catalog_changed(struct station *st);

/* The network-OTA manager (daemon/ota.h), set once by main after both exist; the
 * station tells it about catalog changes and asks it whether a board checked in
 * during its flash job. NULL when none. */
struct ota;
void station_set_ota(struct station *st, struct ota *o);
struct ota *station_ota(const struct station *st);
/* The open-file budget (fdbudget.h), set once by main before the servers start; a
 * reload computes it again for the new config (the REST API's cap kept). The
 * servers read their connection caps from it. All zero until set. */
void station_set_fd_budget(struct station *st, const struct fd_budget *b);
const struct fd_budget *station_fd_budget(const struct station *st);
/* The network side saw board mac (check-in, accepted push): a slot that shows it
 * awaiting the network (and runs no job) moves to online; the hooks are told. */
void station_board_online(struct station *st, const char *mac);

/* Imports into the catalog of the data directory the station would use (--import and
 * --import-firmware): a set's directory (manifest.json), or a build's output (buildimport.h:
 * an ESP-IDF build, a PlatformIO env, an Arduino export, an ESP Web Tools manifest, a merged
 * image), logging what was recognised. */
int station_import_firmware(const struct station_options *o, const char *dir, bool replace);

#endif
