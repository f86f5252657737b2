/*
 * fdbudget: how the station shares its open-file limit.
 *
 * Everything the station does costs file descriptors: a flash job its port, its
 * cancel eventfd and the files it reads; every REST API or OTA endpoint
 * connection a socket. With RLIMIT_NOFILE's usual soft value (1024) and servers
 * capped only by their own settings (1000 + 256 connections), idle connections
 * from anyone on the network took every descriptor and the next plugged board
 * failed. So, at start (fd_budget_compute):
 *   1. the soft limit is raised to the hard limit (fd_budget_raise_limit);
 *   2. a reserve is set aside that the servers never reach: the daemon's own
 *      descriptors (FD_BUDGET_DAEMON) plus FD_BUDGET_PER_JOB for every job that
 *      may run at once (max_parallel serial jobs and FD_BUDGET_PUSHES OTA pushes);
 *   3. what remains is shared by the two connection caps: api.max_connections
 *      and ota.max_connections as configured when they fit, else both lowered in
 *      proportion (never below FD_BUDGET_MIN_CONN). An API connection counts
 *      FD_BUDGET_PER_API_CONN: besides its socket it may hold a status-page file
 *      being sent or an upload being written.
 *
 * Invariant: reserve + FD_BUDGET_PER_API_CONN * api_max + ota_max <= limit,
 * unless short_by > 0 (the limit cannot even hold the reserve and the minimum
 * caps; the station logs that as an error and runs with the minimum caps).
 *
 * The REST API's cap is fixed at start (libmicrohttpd takes it once); on a
 * reload the budget is computed again with that cap kept (api_fixed), so a
 * changed max_parallel or ota.max_connections moves only the OTA cap.
 *
 * Pure arithmetic apart from fd_budget_raise_limit(); no globals.
 */
#ifndef ESPSTATION_FDBUDGET_H
#define ESPSTATION_FDBUDGET_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"

/* The daemon's own descriptors, measured at about 30 with no job running: stdio,
 * the loop (epoll, message pipe, signalfd, a timerfd per timer), the records
 * database (db, WAL, shm, lock), the udev monitor, the HTTP server (epoll,
 * listener, its wake-up fd), the OTA listener and message pipe, the upload pipe,
 * the mDNS child's pipe, a timerfd per slot (retry back-off), and the short-lived
 * opens (config, catalog, port files) -- with room for about 40 slots. */
#define FD_BUDGET_DAEMON 96
/* One job, serial or OTA push: its port or sockets (two while a serial port is
 * re-opened after a reset; listener, UDP and data sockets for espota), its cancel
 * eventfd, the stub, firmware and pool files it reads, libserialport's sysfs
 * look-ups. About 3 are seen at once while a serial job runs. */
#define FD_BUDGET_PER_JOB 8
/* OTA pushes (REST API, token) the reserve has room for beside max_parallel: also the most
 * that run at once (ota_push refuses more, a bulk waits for a place). */
#define FD_BUDGET_PUSHES 8
#define FD_BUDGET_PER_API_CONN 2
#define FD_BUDGET_MIN_CONN 4

struct fd_budget {
    long limit;       /* the soft RLIMIT_NOFILE in force */
    long raised_from; /* the soft limit before fd_budget_raise_limit; == limit when unchanged */
    long hard;        /* the hard limit; -1 unlimited */
    int jobs;         /* jobs the reserve has room for: max_parallel + FD_BUDGET_PUSHES */
    long reserve;     /* FD_BUDGET_DAEMON + jobs * FD_BUDGET_PER_JOB */
    int api_want, ota_want; /* the configured caps */
    int api_max, ota_max;   /* the caps in force */
    long short_by;          /* > 0: descriptors the limit lacks for reserve + minimum caps */
};

/* Raises the soft RLIMIT_NOFILE to the hard one (capped at fs.nr_open, which
 * setrlimit enforces). *soft and *hard get the limits in force afterwards, *before
 * the soft limit before. 0, or -errno when it could not be raised (the limits in
 * force are still reported). */
int fd_budget_raise_limit(long *before, long *soft, long *hard);

/* Computes b for the open-file limit `limit` and cfg. api_fixed > 0 keeps the
 * REST API's cap at that value (a reload); 0 derives it. b->limit, raised_from
 * and hard are left as they are except limit, which is set. */
void fd_budget_compute(struct fd_budget *b, long limit, const struct config *cfg, int api_fixed);

/* One line for the log: "limit 512 (raised from 256, hard 512), reserve ..., api 156 of 1000
 * connections, ota 39 of 256". */
void fd_budget_describe(const struct fd_budget *b, char *buf, size_t len);

#endif
