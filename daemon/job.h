/*
 * job: one flash job on one board, run by its own worker thread.
 *
 * The worker owns its transport and loader. It never touches station state:
 * everything it learns travels to the loop thread as heap messages (struct
 * job_msg, posted with loop_post; ownership moves with the pointer). The one
 * question it asks the loop -- "which firmware for this chip?" -- is answered
 * with job_reply() through the job's mutex/condition; a cancel wakes it too.
 *
 * Worker steps: open -> connect (reset, SYNC) -> identify -> [ask the loop]
 * -> start (stub, baud, attach) -> compare (skip_if_same: each region's flash
 * MD5 against the MD5 of exactly what the engine would write) -> write and
 * verify -> reset (an ESP8266 always gets a real hard reset) -> boot check
 * (optional: regex on the console) -> done. The last message of every job is
 * JOB_MSG_DONE; after posting it the worker touches nothing and returns, so
 * the loop may join and free the job when it handles that message.
 *
 * Cancel: job_cancel() (any thread) makes cancel_fd readable; the transport
 * returns -ECANCELED from its next read, and a wait for the reply ends.
 *
 * Fields of struct job: "params" and "id" are written before the thread
 * starts and only read afterwards; "mu"-guarded fields are the reply channel;
 * fields marked (loop) are touched by the loop thread only.
 */
#ifndef ESPSTATION_JOB_H
#define ESPSTATION_JOB_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "catalog.h"
#include "esp_loader.h"
#include "log.h"
#include "records.h"
#include "slot.h"

struct loop;

/* A loaded firmware set shared read-only by the workers that flash it. The
 * compressed region data comes from the catalog (compressed once at import). */
struct job_firmware {
    atomic_int refs;
    struct catalog_set *set;
    char ref[RECORDS_FIRMWARE_LEN]; /* "name@version" */
    char md5[33]; /* the set's identity for the board record (see station_results.c) */
};

/* Takes ownership of set. NULL on allocation failure (set is then freed). */
struct job_firmware *job_firmware_new(struct catalog_set *set);
struct job_firmware *job_firmware_ref(struct job_firmware *fw);
void job_firmware_unref(struct job_firmware *fw); /* NULL allowed; frees at zero */

#define JOB_MAX_CAPTURE 8

/* Everything the worker needs, copied in at creation. */
struct job_params {
    char uri[256];
    char slot[96]; /* display name, for messages */
    char stub_dir[512];
    bool usb_jtag;
    uint32_t baud;
    bool stub, compress, verify, erase_all, skip_if_same;
    bool diff; /* write only the sectors that differ from the flash (profile "diff") */
    enum esp_after after;
    /* The profile names "stub" / "after" (or the request needs the stub: erase): they win
     * over the firmware set's esptool_args (docs/CONFIG.md). */
    bool stub_fixed, after_fixed;
    /* How the board is put in its loader: default-reset (or the port's USB-JTAG sequence),
     * or what every set the job may write asks for (esptool_args.before, chosen before the
     * chip is known); before_set names the set(s) for the log. */
    enum esp_before before;
    char before_set[160];
    bool boot_check;
    char boot_pattern[512];
    int boot_timeout_ms;
    uint32_t boot_baud;
    char capture[JOB_MAX_CAPTURE][32];
    size_t n_capture;
    int reenum_grace_ms;  /* USB-Serial/JTAG: how long a reset may take the port away */
    int connect_attempts; /* 0 = engine default */
    /* What the job does after identify (the REST API's slot actions): "" or "flash" writes
     * the plan's firmware; "info" reads the flash id/size and resets; "reset" hard-resets;
     * "erase" erases the chip (or erase_offset/erase_size when erase_region) and resets.
     * Every kind asks the loop for a plan after identify (the answer carries no firmware
     * for the kinds that write none). */
    char kind[16];
    bool erase_region;
    uint32_t erase_offset, erase_size;
};

/* The loop's answer after identify. */
/* A per-board region (profile "per_board"): this board's file of a pool. */
struct job_extra {
    uint32_t offset;
    uint8_t *data; /* owned (malloc) */
    size_t len;
    char name[160]; /* "nvs:0001.bin" for logs and MD5 messages */
};
#define JOB_MAX_EXTRA 5 /* per_board pools (CONFIG_MAX_PER_BOARD) + the serial's region */

struct job_plan {
    struct job_firmware *fw;               /* reference moved to the job; NULL: nothing to write */
    struct job_extra extra[JOB_MAX_EXTRA]; /* data moved with the plan, like fw */
    size_t n_extra;
    enum records_job_state nofw_state; /* when fw is NULL: SKIPPED or FAILED */
    char message[256];                 /* when fw is NULL: why */
    int prepare_failed; /* when fw is NULL: < 0 (-errno) the set was fine, its per-board
                           data was not (stage "prepare"); 0 otherwise */
    char advice[256];
    /* The boot check's pattern for this board ("{serial}" replaced, station_serial.c);
     * "" = params.boot_pattern. */
    char boot_pattern[512];
};

enum job_msg_kind {
    JOB_MSG_LOG = 0,
    JOB_MSG_PHASE,      /* phase and/or stage changed */
    JOB_MSG_PROGRESS,   /* bytes and speed (throttled) */
    JOB_MSG_IDENTIFIED, /* chip, MAC, revision, crystal: the worker now waits for job_reply */
    JOB_MSG_FLASH_INFO, /* flash id and size, after attach */
    JOB_MSG_CAPTURE,    /* a boot-check group: name = value */
    JOB_MSG_DONE,       /* last message */
};

const char *job_msg_kind_to_string(enum job_msg_kind k);

/* Frees the plan's per-board data (extra[].data) and sets n_extra to 0. */
void job_plan_free_extra(struct job_plan *p);

struct job_result {
    enum records_job_state state;  /* PASSED, FAILED, SKIPPED, CANCELLED */
    struct esp_error err;          /* code != 0 on failure/cancel; also the skip reason */
    char stage[RECORDS_STATE_LEN]; /* the job's stage when it ended */
    int64_t bytes, wire_bytes;
    int64_t skipped_bytes; /* of bytes, already on the board and not sent (diff); -1 unknown */
    double kbps;           /* effective, over the write; < 0 unknown */
    char firmware[RECORDS_FIRMWARE_LEN];
    char md5[33];
    uint32_t link_baud; /* the serial rate in force when the job ended; 0 = never connected */
    bool stub_fallback; /* flashed through the ROM loader: the stub did not start */
    /* A write/verify/read timed out and the board then answered nothing, not even junk:
     * it stopped answering (a hung chip), which is not a link error (no baud back-off). */
    bool board_silent;
};

struct job;

struct job_msg {
    enum job_msg_kind kind;
    struct job *job;
    /* LOG */
    enum log_level level;
    char text[512];
    /* PHASE / PROGRESS */
    enum board_phase phase;
    char stage[RECORDS_STATE_LEN];
    char note[256]; /* PHASE: what the job waits for from the technician, "" none */
    uint64_t done, total, wire;
    double kbps;
    /* IDENTIFIED / FLASH_INFO */
    struct esp_chip_info info; /* info.chip points to the static chip table */
    /* CAPTURE */
    char name[32];
    char value[256];
    /* DONE */
    struct job_result result;
};

void job_msg_free(struct job_msg *m); /* NULL allowed */

struct job {
    struct job_params params;
    int64_t id; /* records job id */
    struct loop *loop;
    int cancel_fd; /* eventfd; the transport's cancel_fd */
    pthread_t thread;
    bool started;
    struct job_msg *done_msg; /* allocated up front so the end can always be reported */

    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool have_plan;       /* mu */
    bool cancelled;       /* mu */
    struct job_plan plan; /* mu */
    char back_uri[256];   /* mu: the port's new uri after a re-enumeration, "" = none */

    /* (loop) */
    struct slot *slot;
    bool removed;  /* the port went away under the job */
    bool stopping; /* cancelled because the daemon stops */
    char stage[RECORDS_STATE_LEN];
    enum board_phase phase;
    char mac[18];
    char chip[24];
    char boot_ip[64]; /* the IP the boot check captured ("ip"), "" none */
    bool replied;
    int64_t started_ms;
    struct job *next;
};

/* Creates a job (thread not started). NULL on failure with errno set: ENOMEM, or
 * EMFILE / ENFILE when no descriptor is left for its cancel eventfd. */
struct job *job_new(const struct job_params *p, struct loop *loop, int64_t id);
/* Starts the worker. 0 or -errno. */
int job_start(struct job *j);
/* Any thread; idempotent. */
void job_cancel(struct job *j);
/* (any thread) A USB-Serial/JTAG board came back as uri: the worker follows it. */
void job_port_back(struct job *j, const char *uri);
/* Loop thread: answers JOB_MSG_IDENTIFIED (plan->fw reference moves to the job). */
void job_reply(struct job *j, struct job_plan *plan);
/* Loop thread, after JOB_MSG_DONE (or for a job never started): joins and frees. */
void job_free(struct job *j);

/*
 * The MD5 of exactly what esp_loader_flash() writes for region r on chip:
 * the data padded with 0xFF to a multiple of 4, with the image header's flash
 * mode/size/frequency patched (and the appended SHA-256 recomputed) when the
 * region sits at the chip's bootloader offset, starts with the image magic,
 * opts asks for a change and secure boot / secure download mode are off.
 * *len4 gets the padded length (what to ask the chip's flash MD5 over).
 * Returns 0, -ENOMEM.
 */
int job_region_md5(const struct esp_chip_desc *chip, bool secure, const struct esp_region *r,
                   const struct esp_flash_opts *opts, uint8_t md5[16], uint32_t *len4);

#endif
