/*
 * slot: the station's physical ports and the board on each.
 *
 * A slot is keyed by slot_key (udev ID_PATH, or "uri:<uri>" for a manually
 * attached port), has an optional human label ("A3") and, as attributes only,
 * the uri/devnode it was last seen at (tty names change on re-enumeration).
 * It holds the board phase shown to technicians, the current job (if any),
 * the last result, and the count of consecutive failed jobs: after flag_after
 * of them the slot is flagged (a bad cable, socket or adapter is likelier than
 * a run of bad boards); a passed job clears the count and the flag.
 *
 * The board phase is a state machine; board_phase_transition_ok() is the one
 * table of allowed moves and slot_set_phase() refuses the others (a bug, not
 * device input). Unplugging at any point ends the job as
 * "board removed during <stage>" and empties the slot.
 *
 * Threads: loop thread only.
 */
#ifndef ESPSTATION_SLOT_H
#define ESPSTATION_SLOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SLOT_DEFAULT_FLAG_AFTER 3

enum board_phase {
    BOARD_EMPTY = 0,        /* no board (port absent or unplugged) */
    BOARD_IDLE,             /* port present, no job (e.g. the station is stopping) */
    BOARD_QUEUED,           /* waiting for a free job place (max_parallel) or a retry */
    BOARD_CONNECTING,       /* open, reset into the bootloader, SYNC */
    BOARD_IDENTIFYING,      /* chip, MAC, revision, flash */
    BOARD_FLASHING,         /* stub, baud, compare, erase, write (stage, bytes, speed) */
    BOARD_VERIFYING,        /* MD5 of a written region */
    BOARD_RESETTING,        /* hard reset into the application */
    BOARD_BOOT_CHECK,       /* watching the console for the profile's pattern */
    BOARD_AWAITING_NETWORK, /* flashed; waiting for the firmware to check in */
    BOARD_ONLINE,           /* checked in over the network */
    BOARD_FAILED,           /* stage + device error + advice in the slot */
    BOARD_SKIPPED,          /* nothing to do: already carries the image, or no firmware */
    BOARD_CANCELLED,        /* stopped on purpose (daemon stopping, API) */
    BOARD_PHASE_COUNT
};

const char *board_phase_to_string(enum board_phase p);
/* True while a job works on the board (connecting .. boot_check). */
bool board_phase_is_active(enum board_phase p);
/* True if a slot may move from -> to (staying put is always allowed). */
bool board_phase_transition_ok(enum board_phase from, enum board_phase to);

struct job;
struct loop_timer;

struct slot {
    char key[256];
    char label[64]; /* "" when none */
    char uri[256];  /* last uri/devnode (attribute only) */
    bool usb_jtag;
    bool present;
    bool manual;        /* from the config's ports: polled for presence */
    uint64_t manual_id; /* identity of the path while present (see station_ports.c manual_id) */
    uint64_t dead_id;   /* identity it had when it went away: the same again is stale */

    enum board_phase phase;
    char stage[24];   /* engine stage name ("write") or "boot_check", "" when none */
    char notice[256]; /* what the running job waits for from the technician, "" none */
    uint64_t done, total;
    double kbps;

    char mac[18];  /* board currently (or last) on the slot */
    char chip[24]; /* "ESP32" */
    char firmware[128];

    /* last result */
    char error[512];
    char advice[256];
    int device_status, device_error; /* -1 none */

    int failures; /* consecutive failed jobs */
    bool flagged;
    int attempt; /* 0 = first try of the current board, n = n-th retry */
    bool retry_pending;

    struct job *job;          /* running job, NULL when none */
    int64_t job_id;           /* records id of the current or last job, 0 none */
    char job_kind[16];        /* its kind ("flash", "erase", ...), "" none */
    struct loop_timer *timer; /* retry backoff / usb-jtag grace (owned by the station) */
    void *timer_ctx;          /* the timer's callback context (owned by the station) */
    bool in_grace;            /* usb-jtag board gone during reset: waiting for it */

    /* Link back-off: the highest baud the adapter/cable on this port carried reliably,
     * learnt from link errors (slot_link_error); 0 = no limit. Jobs run at
     * min(profile baud, baud_limit). Kept across boards, unplugs and replugs on the same
     * port (it belongs to the port's cable and adapter) and across restarts (records
     * slot_link, loaded when the port is first seen); cleared by POST
     * /slots/{id}/reset-baud and by detaching the port through the API. */
    uint32_t baud_limit;
    bool link_loaded; /* baud_limit has been read from the records */
    bool baud_retry;  /* the pending retry is a back-off retry (not counted in attempt) */
    /* The step-up rule (slot_link_job_baud): passed jobs in a row at baud_limit since it
     * was learnt or last probed (not kept across restarts), and the rate the running job
     * tries one rung above the limit (0 = the job is no probe). */
    int clean_jobs;
    uint32_t probe_baud;
    uint32_t link_ceiling; /* the running job's profile rate before the limit (0 = stay) */
    /* The adapter on the port (bridges.h, from its USB VID:PID): its highest reliable
     * rate, where a profile's "baud": "auto" starts; 0 = unknown or no UART. */
    uint32_t adapter_baud;
    bool adapter_known; /* the VID:PID is in the bridge table */
};

/* A slot's display name: its label, else its key. */
const char *slot_name(const struct slot *s);

/* Moves to phase `to`. -EINVAL (and no change) if the move is not allowed. */
int slot_set_phase(struct slot *s, enum board_phase to);

/* "board removed during <stage>" (stage "" -> the phase name) into buf. Returns buf. */
char *slot_removed_message(const char *stage, enum board_phase phase, char *buf, size_t len);

/* Counts a finished job: failed increments the consecutive failures (removals
 * are not the slot's fault and are passed as counts=false), passed/skipped
 * clear them and the flag. Returns true when the slot has just become flagged. */
bool slot_count_result(struct slot *s, bool failed, bool counts, int flag_after);

/* True when a failed job's error looks like link trouble at a high baud: it happened after
 * the baud change (stages baud, attach, erase, write, verify, read; esp_stage values) and
 * is a timeout, a garbled/invalid reply (-ETIMEDOUT, -EPROTO, -EBADMSG outside verify), or
 * a device error that reports corrupted data (stub 0xC0 bad length, 0xC1 bad checksum,
 * 0xC7 inflate error; ROM 0x07 checksum, 0x0B/0x0C deflate). A flash write/SPI error, a
 * wrong chip or an MD5 mismatch in verify are not link errors. */
bool slot_link_error(int code, int stage, bool has_device_status, uint8_t status, uint8_t error);

/* The rate ladder, highest first: 6000000, 5000000, 4000000, 3000000, 2000000, 1500000,
 * 921600, 460800, 230400, 115200 (rates the common bridges generate exactly or within
 * 0.2 %: FT232R 3 MHz / n, CH340 and CP2102N). */
extern const uint32_t slot_baud_ladder[];
extern const size_t slot_baud_ladder_len;

/* The back-off step below `baud`: the next lower rung of the ladder (3000000 -> 2000000,
 * 921600 -> 460800 ...); 0 when baud <= 115200 (nothing lower to try). */
uint32_t slot_baud_step_down(uint32_t baud);

/* The step up from `baud` towards `ceiling`: the next higher rung, or ceiling when that
 * rung is above it (or none is left); 0 when baud >= ceiling. */
uint32_t slot_baud_step_up(uint32_t baud, uint32_t ceiling);

/* The rate the next job on s runs at, for a profile whose rate is `ceiling` (its baud, or
 * for "auto" the adapter's best; 0 = stay at the initial rate): ceiling without a learnt
 * limit, else the limit -- except that after probe_after clean jobs at the limit (>0) the
 * job tries one step up (s->probe_baud set; cleared otherwise). */
uint32_t slot_link_job_baud(struct slot *s, uint32_t ceiling, int probe_after);

/* A job on s passed at link_baud. Counts a clean job at the limit; a probe that passed
 * raises the limit to the probed rate (clears it once that reaches ceiling) and returns
 * true (the caller stores and reports the new limit). */
bool slot_link_passed(struct slot *s, uint32_t link_baud, uint32_t ceiling);

/* A job on s failed with link errors (slot_link_error) at link_baud. Returns the rate to
 * retry at: for a step-up probe the limit it came from (*probe_failed = true: the limit
 * stays, the count starts again); else the next rung down when that is below the current
 * limit (s->baud_limit set to it); 0 when there is nothing lower to learn. */
uint32_t slot_link_failed(struct slot *s, uint32_t link_baud, bool *probe_failed);

/* Clears the per-board fields (mac, chip, progress, error) for a new board. */
void slot_clear_board(struct slot *s);

struct slot_table {
    struct slot **v;
    size_t n, cap;
};

void slot_table_init(struct slot_table *t);
/* Frees every slot; their timers and jobs must already be gone. */
void slot_table_free(struct slot_table *t);
struct slot *slot_table_find(const struct slot_table *t, const char *key);
/* Finds or creates the slot for key. NULL on allocation failure. */
struct slot *slot_table_get(struct slot_table *t, const char *key);

#endif
