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

#include "devsrc.h"
#include "config.h"

struct loop;
struct station;

struct station_options {
    const char *config_path; /* NULL: defaults */
    const char *data_dir;    /* overrides the config's; NULL keeps it */
    const char *stub_dir;    /* overrides the config's; NULL keeps it */
    int flag_after;          /* consecutive failures before a slot is flagged; 0 = 3 */
    int retry_backoff_ms;    /* 0 = 2000 */
    int manual_poll_ms;      /* 0 = 1000 */
    int reenum_grace_ms;     /* USB-Serial/JTAG re-enumeration grace; 0 = 3000 */
    bool no_udev;            /* do not start the udev source */
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

/* Resolves the data directory the station would use (for --import-firmware). */
int station_import_firmware(const struct station_options *o, const char *dir, bool replace);

#endif
