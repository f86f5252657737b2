/*
 * slot: see slot.h. The transition table is the single statement of which
 * phase may follow which; everything else asks it.
 */
#include "slot.h"

#include "esp_error.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const phase_names[BOARD_PHASE_COUNT] = {
    [BOARD_EMPTY] = "empty",
    [BOARD_IDLE] = "idle",
    [BOARD_QUEUED] = "queued",
    [BOARD_CONNECTING] = "connecting",
    [BOARD_IDENTIFYING] = "identifying",
    [BOARD_FLASHING] = "flashing",
    [BOARD_VERIFYING] = "verifying",
    [BOARD_RESETTING] = "resetting",
    [BOARD_BOOT_CHECK] = "boot_check",
    [BOARD_AWAITING_NETWORK] = "awaiting_network",
    [BOARD_ONLINE] = "online",
    [BOARD_FAILED] = "failed",
    [BOARD_SKIPPED] = "skipped",
    [BOARD_CANCELLED] = "cancelled",
};

const char *board_phase_to_string(enum board_phase p)
{
    if ((unsigned)p >= BOARD_PHASE_COUNT)
        return "unknown";
    return phase_names[p];
}

bool board_phase_is_active(enum board_phase p)
{
    return p >= BOARD_CONNECTING && p <= BOARD_BOOT_CHECK;
}

#define B(p) (1u << (p))

/* Allowed successors of each phase (besides itself). Every phase may go to
 * EMPTY: a board can be unplugged at any time. Phases where a job runs may
 * end in FAILED or CANCELLED. Phases where no job runs may start a new one. */
static const unsigned next_ok[BOARD_PHASE_COUNT] = {
    [BOARD_EMPTY] = B(BOARD_QUEUED) | B(BOARD_CONNECTING) | B(BOARD_IDLE),
    [BOARD_IDLE] = B(BOARD_QUEUED) | B(BOARD_CONNECTING),
    [BOARD_QUEUED] = B(BOARD_CONNECTING) | B(BOARD_CANCELLED) | B(BOARD_IDLE),
    [BOARD_CONNECTING] = B(BOARD_IDENTIFYING) | B(BOARD_FAILED) | B(BOARD_CANCELLED),
    [BOARD_IDENTIFYING] = B(BOARD_FLASHING) | B(BOARD_RESETTING) | B(BOARD_SKIPPED) |
                          B(BOARD_FAILED) | B(BOARD_CANCELLED),
    [BOARD_FLASHING] =
        B(BOARD_VERIFYING) | B(BOARD_RESETTING) | B(BOARD_FAILED) | B(BOARD_CANCELLED),
    [BOARD_VERIFYING] =
        B(BOARD_FLASHING) | B(BOARD_RESETTING) | B(BOARD_FAILED) | B(BOARD_CANCELLED),
    [BOARD_RESETTING] = B(BOARD_BOOT_CHECK) | B(BOARD_AWAITING_NETWORK) | B(BOARD_SKIPPED) |
                        B(BOARD_IDLE) | B(BOARD_FAILED) | B(BOARD_CANCELLED),
    [BOARD_BOOT_CHECK] = B(BOARD_AWAITING_NETWORK) | B(BOARD_FAILED) | B(BOARD_CANCELLED),
    [BOARD_AWAITING_NETWORK] = B(BOARD_ONLINE) | B(BOARD_QUEUED) | B(BOARD_CONNECTING),
    [BOARD_ONLINE] = B(BOARD_AWAITING_NETWORK) | B(BOARD_QUEUED) | B(BOARD_CONNECTING),
    [BOARD_FAILED] = B(BOARD_QUEUED) | B(BOARD_CONNECTING) | B(BOARD_IDLE),
    [BOARD_SKIPPED] = B(BOARD_QUEUED) | B(BOARD_CONNECTING) | B(BOARD_IDLE),
    [BOARD_CANCELLED] = B(BOARD_QUEUED) | B(BOARD_CONNECTING) | B(BOARD_IDLE),
};

bool board_phase_transition_ok(enum board_phase from, enum board_phase to)
{
    if ((unsigned)from >= BOARD_PHASE_COUNT || (unsigned)to >= BOARD_PHASE_COUNT)
        return false;
    if (from == to || to == BOARD_EMPTY)
        return true;
    return (next_ok[from] & B(to)) != 0;
}

const char *slot_name(const struct slot *s)
{
    return s->label[0] ? s->label : s->key;
}

int slot_set_phase(struct slot *s, enum board_phase to)
{
    if (!board_phase_transition_ok(s->phase, to))
        return -EINVAL;
    s->phase = to;
    if (!board_phase_is_active(to) && to != BOARD_QUEUED) {
        s->done = s->total = 0;
        s->kbps = 0;
    }
    return 0;
}

char *slot_removed_message(const char *stage, enum board_phase phase, char *buf, size_t len)
{
    snprintf(buf, len, "board removed during %s",
             stage && *stage ? stage : board_phase_to_string(phase));
    return buf;
}

bool slot_count_result(struct slot *s, bool failed, bool counts, int flag_after)
{
    if (!failed) {
        s->failures = 0;
        s->flagged = false;
        return false;
    }
    if (!counts)
        return false;
    s->failures++;
    if (!s->flagged && flag_after > 0 && s->failures >= flag_after) {
        s->flagged = true;
        return true;
    }
    return false;
}

bool slot_link_error(int code, int stage, bool has_device_status, uint8_t status, uint8_t error)
{
    switch (stage) {
    case ESP_STAGE_BAUD:
    case ESP_STAGE_ATTACH:
    case ESP_STAGE_ERASE:
    case ESP_STAGE_WRITE:
    case ESP_STAGE_VERIFY:
    case ESP_STAGE_READ:
        break;
    default:
        return false;
    }
    if (code == -ETIMEDOUT || code == -EPROTO)
        return true;
    if (code == -EBADMSG)
        return stage != ESP_STAGE_VERIFY; /* an MD5 mismatch is about the flash content */
    if (code != -EIO || !has_device_status)
        return false;
    if (status >= 0xC0) /* stub: the code is the first status byte */
        return status == 0xC0 || status == 0xC1 || status == 0xC7;
    return status != 0 && (error == 0x07 || error == 0x0B || error == 0x0C);
}

const uint32_t slot_baud_ladder[] = {6000000, 5000000, 4000000, 3000000, 2000000,
                                     1500000, 921600,  460800,  230400,  115200};
const size_t slot_baud_ladder_len = sizeof(slot_baud_ladder) / sizeof(slot_baud_ladder[0]);

uint32_t slot_baud_step_down(uint32_t baud)
{
    for (size_t i = 0; i < slot_baud_ladder_len; i++)
        if (slot_baud_ladder[i] < baud)
            return slot_baud_ladder[i];
    return 0;
}

uint32_t slot_baud_step_up(uint32_t baud, uint32_t ceiling)
{
    if (baud >= ceiling)
        return 0;
    for (size_t i = slot_baud_ladder_len; i-- > 0;)
        if (slot_baud_ladder[i] > baud)
            return slot_baud_ladder[i] < ceiling ? slot_baud_ladder[i] : ceiling;
    return ceiling;
}

uint32_t slot_link_job_baud(struct slot *s, uint32_t ceiling, int probe_after)
{
    s->probe_baud = 0;
    if (!ceiling || !s->baud_limit || s->baud_limit >= ceiling)
        return ceiling;
    if (probe_after > 0 && s->clean_jobs >= probe_after) {
        s->probe_baud = slot_baud_step_up(s->baud_limit, ceiling);
        if (s->probe_baud)
            return s->probe_baud;
    }
    return s->baud_limit;
}

bool slot_link_passed(struct slot *s, uint32_t link_baud, uint32_t ceiling)
{
    uint32_t probe = s->probe_baud;
    s->probe_baud = 0;
    if (!s->baud_limit)
        return false;
    if (probe && link_baud >= probe) {
        s->baud_limit = probe >= ceiling ? 0 : probe;
        s->clean_jobs = 0;
        return true;
    }
    if (link_baud && link_baud <= s->baud_limit)
        s->clean_jobs++;
    return false;
}

uint32_t slot_link_failed(struct slot *s, uint32_t link_baud, bool *probe_failed)
{
    *probe_failed = false;
    uint32_t probe = s->probe_baud;
    s->probe_baud = 0;
    if (probe && s->baud_limit && link_baud > s->baud_limit) {
        *probe_failed = true;
        s->clean_jobs = 0;
        return s->baud_limit;
    }
    uint32_t lower = slot_baud_step_down(link_baud);
    if (!lower || (s->baud_limit && lower >= s->baud_limit))
        return 0;
    s->baud_limit = lower;
    s->clean_jobs = 0;
    return lower;
}

void slot_clear_board(struct slot *s)
{
    s->mac[0] = s->chip[0] = s->firmware[0] = s->stage[0] = '\0';
    s->error[0] = s->advice[0] = s->notice[0] = '\0';
    s->device_status = s->device_error = -1;
    s->done = s->total = 0;
    s->kbps = 0;
    s->attempt = 0;
    s->baud_retry = false;
}

void slot_table_init(struct slot_table *t)
{
    memset(t, 0, sizeof(*t));
}

void slot_table_free(struct slot_table *t)
{
    for (size_t i = 0; i < t->n; i++)
        free(t->v[i]);
    free(t->v);
    memset(t, 0, sizeof(*t));
}

struct slot *slot_table_find(const struct slot_table *t, const char *key)
{
    for (size_t i = 0; i < t->n; i++)
        if (strcmp(t->v[i]->key, key) == 0)
            return t->v[i];
    return NULL;
}

struct slot *slot_table_get(struct slot_table *t, const char *key)
{
    struct slot *s = slot_table_find(t, key);
    if (s)
        return s;
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 16;
        struct slot **v = realloc(t->v, cap * sizeof(*v));
        if (!v)
            return NULL;
        t->v = v;
        t->cap = cap;
    }
    s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    snprintf(s->key, sizeof(s->key), "%s", key);
    s->phase = BOARD_EMPTY;
    s->device_status = s->device_error = -1;
    t->v[t->n++] = s;
    return s;
}
