/*
 * station_serial: a board's serial number when a profile with "serial" flashes it
 * (docs/CONFIG.md): allocated in the records (records_serial.h: one number per
 * board and profile, never one number to two boards, across the stations of a
 * line), written to the job's log and events, put into the boot check's pattern
 * for "{serial}", and -- with "offset" -- written to the flash as one 4 KiB
 * region in the same job, next to the per-board pool files.
 * Loop thread only.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "config.h"
#include "job.h"
#include "log.h"
#include "records_serial.h"
#include "serial_fmt.h"
#include "station_priv.h"
#include "station_serial.h"

#define SERIAL_REGION_BYTES 4096u /* one flash sector: the region erases nothing else */

static int prepare_fail(struct station *st, struct job *j, struct job_plan *plan,
                        const char *profile, int rc)
{
    struct json_object *d = st_jobj();
    st_jset_str(d, "profile", profile);
    st_jset_str(d, "error", plan->message);
    st_event(st, "serial.failed", j->slot, j->mac, j->id, d);
    log_board(LOG_LEVEL_ERROR, slot_name(j->slot), j->mac, "%s", plan->message);
    job_plan_free_extra(plan);
    return rc;
}

/* The serial's flash region: the text, its NUL, then 0xFF (erased flash) to the
 * end of the sector. 0 or -ENOMEM. */
static int serial_region(const struct config_serial *cs, const char *text, struct job_extra *x)
{
    memset(x, 0, sizeof(*x));
    x->data = malloc(SERIAL_REGION_BYTES);
    if (!x->data)
        return -ENOMEM;
    memset(x->data, 0xFF, SERIAL_REGION_BYTES);
    size_t len = strlen(text);
    memcpy(x->data, text, len);
    x->data[len] = '\0';
    x->len = SERIAL_REGION_BYTES;
    x->offset = cs->offset;
    snprintf(x->name, sizeof(x->name), "serial:%s", text);
    return 0;
}

int station_take_serial(struct station *st, struct job *j, struct job_plan *plan)
{
    const struct config_profile *prof = config_profile(st->cfg, NULL);
    if (!prof || !prof->serial.enabled)
        return 0;
    const struct config_serial *cs = &prof->serial;
    if (!j->mac[0]) {
        snprintf(plan->message, sizeof(plan->message),
                 "serial: the board's MAC is unknown, so it cannot be given a serial number");
        snprintf(plan->advice, sizeof(plan->advice), "check the chip's eFuse MAC");
        return prepare_fail(st, j, plan, prof->name, -EINVAL);
    }
    struct records_error re;
    int64_t number = -1;
    char text[RECORDS_SERIAL_TEXT_LEN];
    int rc = records_serial_assign(st->rec, prof->name, j->mac, cs->start, cs->format, j->id,
                                   &number, text, &re);
    if (rc < 0) {
        snprintf(plan->message, sizeof(plan->message), "serial number of profile %s: %s",
                 prof->name, re.message);
        snprintf(plan->advice, sizeof(plan->advice),
                 rc == -EAGAIN ? "flash the board again: other stations were allocating at the "
                                 "same moment"
                               : "check the records database (docs/OPERATIONS.md)");
        return prepare_fail(st, j, plan, prof->name, rc == -EAGAIN ? -EAGAIN : -EIO);
    }
    bool kept = rc == 1;
    if (prof->boot_check.enabled && prof->boot_check.pattern &&
        strstr(prof->boot_check.pattern, SERIAL_TOKEN) &&
        serial_pattern_expand(prof->boot_check.pattern, text, plan->boot_pattern,
                              sizeof(plan->boot_pattern)) < 0) {
        snprintf(plan->message, sizeof(plan->message),
                 "boot_check.pattern is too long once {serial} is replaced by %s", text);
        snprintf(plan->advice, sizeof(plan->advice), "shorten the profile's boot_check.pattern");
        return prepare_fail(st, j, plan, prof->name, -ENAMETOOLONG);
    }
    if (cs->has_offset) {
        if (plan->n_extra >= JOB_MAX_EXTRA) {
            snprintf(plan->message, sizeof(plan->message),
                     "serial: no room for the serial's region (%d per-board regions at most)",
                     JOB_MAX_EXTRA);
            snprintf(plan->advice, sizeof(plan->advice), "use fewer per_board pools");
            return prepare_fail(st, j, plan, prof->name, -ENOSPC);
        }
        if (serial_region(cs, text, &plan->extra[plan->n_extra]) < 0) {
            snprintf(plan->message, sizeof(plan->message), "serial: out of memory");
            plan->advice[0] = '\0';
            return prepare_fail(st, j, plan, prof->name, -ENOMEM);
        }
        plan->n_extra++;
    }
    struct json_object *d = st_jobj();
    st_jset_str(d, "profile", prof->name);
    st_jset_int(d, "number", number);
    st_jset_str(d, "text", text);
    json_object_object_add(d, "kept", json_object_new_boolean(kept));
    if (cs->has_offset)
        st_jset_int(d, "offset", cs->offset);
    st_event(st, "serial.assigned", j->slot, j->mac, j->id, d);
    char line[256];
    if (cs->has_offset)
        snprintf(line, sizeof(line), "serial %s (number %lld of profile %s) %s, written at 0x%x",
                 text, (long long)number, prof->name,
                 kept ? "again (this board's)" : "given to this board", cs->offset);
    else
        snprintf(line, sizeof(line), "serial %s (number %lld of profile %s) %s", text,
                 (long long)number, prof->name,
                 kept ? "again (this board's)" : "given to this board");
    log_board(LOG_LEVEL_INFO, slot_name(j->slot), j->mac, "%s", line);
    if (records_job_log(st->rec, j->id, "info", line, &re) < 0)
        log_board(LOG_LEVEL_WARN, slot_name(j->slot), j->mac, "%s", re.message);
    return 0;
}

/* ---- the REST API's view ------------------------------------------------------------ */

static void jadd(struct json_object *o, const char *k, struct json_object *v)
{
    json_object_object_add(o, k, v);
}

static struct json_object *serial_json(const struct records_serial *s)
{
    char t[RECORDS_TIME_LEN];
    struct json_object *o = json_object_new_object();
    jadd(o, "profile", json_object_new_string(s->profile));
    jadd(o, "number", json_object_new_int64(s->number));
    jadd(o, "text", json_object_new_string(s->text));
    jadd(o, "job_id", s->job_id > 0 ? json_object_new_int64(s->job_id) : NULL);
    jadd(o, "station", s->station[0] ? json_object_new_string(s->station) : NULL);
    jadd(o, "assigned",
         s->assigned_at > 0
             ? json_object_new_string(records_format_time(s->assigned_at, t, sizeof(t)))
             : NULL);
    return o;
}

struct serials_ctx {
    struct json_object *arr;
    struct json_object *pick; /* borrowed from arr */
    const char *active;       /* the active profile's name, or NULL */
};

static int serial_cb(const struct records_serial *s, void *ctx)
{
    struct serials_ctx *c = ctx;
    struct json_object *o = serial_json(s);
    json_object_array_add(c->arr, o);
    /* Newest first: the first one is the pick unless the active profile has one. */
    if (!c->pick || (c->active && strcmp(s->profile, c->active) == 0))
        c->pick = o;
    return 0;
}

int station_board_serials_json(struct station *st, const char *mac, struct json_object *o,
                               struct records_error *re)
{
    const struct config_profile *ap = config_profile(st->cfg, NULL);
    struct serials_ctx c = {.arr = json_object_new_array(), .active = ap ? ap->name : NULL};
    int rc = records_serials_of_board(st->rec, mac, serial_cb, &c, re);
    if (rc < 0) {
        json_object_put(c.arr);
        return rc;
    }
    jadd(o, "serial", c.pick ? json_object_get(c.pick) : NULL);
    jadd(o, "serials", c.arr);
    return 0;
}

struct json_object *station_profile_serial_json(const struct config_profile *p)
{
    if (!p->serial.enabled)
        return NULL;
    struct json_object *o = json_object_new_object();
    jadd(o, "format", json_object_new_string(p->serial.format));
    jadd(o, "start", json_object_new_int64(p->serial.start));
    if (p->serial.has_offset) {
        char off[16];
        snprintf(off, sizeof(off), "0x%x", p->serial.offset);
        jadd(o, "offset", json_object_new_string(off));
    }
    return o;
}
