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
    uint64_t manual_id; /* identity of the path while present (see station.c manual_id) */
    uint64_t dead_id;   /* identity it had when it went away: the same again is stale */

    enum board_phase phase;
    char stage[24]; /* engine stage name ("write") or "boot_check", "" when none */
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

/* The back-off step below `baud`: 921600 -> 460800 -> 230400 -> 115200 (the next lower of
 * those below `baud`); 0 when baud <= 115200 (nothing lower to try). */
uint32_t slot_baud_step_down(uint32_t baud);

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
