/*
 * station_plan: what an identified board gets. The worker's reports about the board (its
 * chip and MAC, flash, boot-check captures) go into the records; the firmware is chosen
 * (active profile, or the set a REST request names; fetched from the line when only another
 * station holds it), with its serial number and per-board pool regions, and the worker gets
 * the plan. Split from station.c; shares struct station through station_priv.h. Loop thread only.
 */
#include "station.h"
#include "station_priv.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <json-c/json.h>

#include "board_addr.h"
#include "config.h"
#include "job.h"
#include "line_fw.h"
#include "log.h"
#include "pool.h"
#include "records.h"
#include "slot.h"

/* ---- the board a worker identified ------------------------------------------------------ */

static void plan_job(struct station *st, struct job *j, const struct esp_chip_info *ci);

static void mac_string(const struct esp_chip_info *ci, char *out, size_t len)
{
    if (!ci->mac_valid) {
        out[0] = '\0';
        return;
    }
    snprintf(out, len, "%02x:%02x:%02x:%02x:%02x:%02x", ci->mac[0], ci->mac[1], ci->mac[2],
             ci->mac[3], ci->mac[4], ci->mac[5]);
}

/* The active profile's per-board regions for this board (pool.h): on failure the plan
 * gets the message and advice, the regions taken so far stay recorded for the board. */
static int take_per_board(struct station *st, struct job *j, struct job_plan *plan)
{
    const struct config_profile *prof = st_active_profile(st);
    struct slot *s = j->slot;
    for (size_t i = 0; prof && i < prof->n_per_board && i < JOB_MAX_EXTRA; i++) {
        const struct config_per_board *pb = &prof->per_board[i];
        struct pool_status ps;
        if (!j->mac[0]) {
            snprintf(plan->message, sizeof(plan->message),
                     "pool %s: the board's MAC is unknown, so it cannot be given per-board data",
                     pb->name);
            snprintf(plan->advice, sizeof(plan->advice), "check the chip's eFuse MAC");
            job_plan_free_extra(plan);
            return -EINVAL;
        }
        int rc =
            pool_take(st->rec, pb, j->mac, j->id, &plan->extra[plan->n_extra], &ps, plan->message,
                      sizeof(plan->message), plan->advice, sizeof(plan->advice));
        struct json_object *d = st_jobj();
        st_jset_str(d, "pool", pb->name);
        if (rc < 0) {
            st_jset_str(d, "error", plan->message);
            st_event(st, "pool.failed", s, j->mac, j->id, d);
            st_slog(s, LOG_LEVEL_ERROR, "%s", plan->message);
            job_plan_free_extra(plan);
            return rc;
        }
        plan->n_extra++;
        st_jset_str(d, "file", ps.file);
        st_jset_int(d, "offset", pb->offset);
        json_object_object_add(d, "reused", json_object_new_boolean(ps.reused));
        st_jset_int(d, "free", ps.free);
        st_event(st, "pool.assigned", s, j->mac, j->id, d);
        st_slog(s, ps.free < 10 ? LOG_LEVEL_WARN : LOG_LEVEL_INFO,
                "pool %s: %s %s at 0x%x (%lld free%s)", pb->name, ps.file,
                ps.reused ? "again (this board's)" : "given to this board", pb->offset,
                (long long)ps.free, ps.free < 10 ? ": add files soon" : "");
    }
    return 0;
}

void st_on_identified(struct station *st, struct job *j, const struct job_msg *m)
{
    struct slot *s = j->slot;
    const struct esp_chip_info *ci = &m->info;
    struct records_error re;
    mac_string(ci, j->mac, sizeof(j->mac));
    snprintf(j->chip, sizeof(j->chip), "%s", ci->chip ? ci->chip->name : "unknown");
    snprintf(s->mac, sizeof(s->mac), "%s", j->mac);
    snprintf(s->chip, sizeof(s->chip), "%s", j->chip);
    if (j->mac[0]) {
        struct records_board b;
        records_board_init(&b);
        snprintf(b.mac, sizeof(b.mac), "%s", j->mac);
        snprintf(b.chip, sizeof(b.chip), "%s", j->chip);
        b.revision = ci->revision;
        b.crystal_mhz = ci->xtal_mhz ? (int)ci->xtal_mhz : -1;
        snprintf(b.slot, sizeof(b.slot), "%s", slot_name(s));
        if (records_board_upsert(st->rec, &b, &re) < 0 ||
            records_job_set_board(st->rec, j->id, j->mac, &re) < 0)
            st_rec_warn(&re);
    }
    struct json_object *d = st_jobj();
    st_jset_str(d, "chip", j->chip);
    st_jset_int(d, "revision", ci->revision);
    if (ci->usb_jtag)
        json_object_object_add(d, "usb_jtag", json_object_new_boolean(true));
    st_event(st, "board.identified", s, j->mac, j->id, d);
    char rev[16] = "?";
    if (ci->revision >= 0)
        snprintf(rev, sizeof(rev), "%d.%d", ci->revision / 100, ci->revision % 100);
    st_slog(s, LOG_LEVEL_INFO, "identified %s rev %s, crystal %u MHz", j->chip, rev, ci->xtal_mhz);
    if (ci->usb_jtag)
        s->usb_jtag = true;
    plan_job(st, j, ci);
}

/* A set fetched from the line (line_fw.h) for a job that waits for its plan: plan again. */
static void line_fw_ready(void *ctx, int64_t job_id, int rc, const char *err, const void *data)
{
    (void)rc;
    (void)err;
    struct station *st = ctx;
    for (struct job *j = st->jobs; j; j = j->next)
        if (j->id == job_id && !j->replied)
            plan_job(st, j, data);
}

/* Decides what the identified board gets and answers the worker (job_reply); a set that
 * only the line holds is fetched first (the answer waits for it). */
static void plan_job(struct station *st, struct job *j, const struct esp_chip_info *ci)
{
    struct slot *s = j->slot;
    struct records_error re;
    /* Decide what this board gets. */
    struct job_plan plan;
    memset(&plan, 0, sizeof(plan));
    if (j->params.kind[0] && strcmp(j->params.kind, "flash") != 0) {
        /* info / reset / erase: nothing to write. */
        j->replied = true;
        job_reply(j, &plan);
        return;
    }
    const struct config_firmware_ref *ref = NULL;
    int pick = station_choose_firmware(st->cfg, ci->chip, ci->magic, &ref, plan.message,
                                       sizeof(plan.message), plan.advice, sizeof(plan.advice));
    struct station_req *rq = st_req_of_job(st, j->id);
    struct config_firmware_ref override;
    if (rq && rq->fw_name[0] && ci->chip) {
        /* The API named the firmware: it replaces the profile's choice (fw_get checks the chip). */
        override.chip = ci->chip->chip;
        override.name = rq->fw_name;
        override.version = rq->fw_version;
        ref = &override;
        pick = 1;
    }
    plan.nofw_state = pick < 0 ? RECORDS_JOB_FAILED : RECORDS_JOB_SKIPPED;
    if (pick == 0 && ci->chip && !st_active_profile(st)) {
        /* The line stands still for this board: say so where the technician looks. */
        struct json_object *np = st_jobj();
        struct json_object *names = json_object_new_array();
        for (size_t i = 0; i < st->cfg->n_profiles; i++)
            json_object_array_add(names, json_object_new_string(st->cfg->profiles[i].name));
        st_jset_str(np, "chip", j->chip);
        json_object_object_add(np, "profiles", names);
        st_jset_str(np, "message", plan.message);
        st_jset_str(np, "advice", plan.advice);
        st_event(st, "slot.no_profile", s, j->mac, j->id, np);
        st_slog(s, LOG_LEVEL_WARN, "%s -- %s", plan.message, plan.advice);
    }
    if (pick > 0) {
        char err[512] = "";
        int rc = st_fw_get(st, ref, &plan.fw, err, sizeof(err));
        if (rc == -ENOENT) {
            /* not here: another station of the line may hold it (fetched, then planned) */
            int lrc = line_fw_need(st->lfw, ref->name, ref->version, line_fw_ready, st, j->id, ci,
                                   sizeof(*ci), err, sizeof(err));
            if (lrc > 0) {
                st_slog(s, LOG_LEVEL_INFO, "%s; the job waits for it", err);
                return;
            }
            if (lrc < 0)
                rc = lrc;
        }
        if (rc < 0) {
            plan.fw = NULL;
            plan.nofw_state = RECORDS_JOB_FAILED;
            st_scopy(plan.message, sizeof(plan.message), err[0] ? err : "cannot load the firmware");
            snprintf(plan.advice, sizeof(plan.advice),
                     "import %s@%s with espstationd --import-firmware DIR (or fix the profile)",
                     ref->name, ref->version);
        } else if (records_job_set_firmware(st->rec, j->id, plan.fw->ref, &re) < 0) {
            st_rec_warn(&re);
        }
    }
    int prc = plan.fw ? station_take_serial(st, j, &plan) : 0;
    if (prc == 0 && plan.fw)
        prc = take_per_board(st, j, &plan);
    if (prc < 0) {
        job_firmware_unref(plan.fw);
        plan.fw = NULL;
        plan.nofw_state = RECORDS_JOB_FAILED;
        plan.prepare_failed = prc;
    }
    j->replied = true;
    job_reply(j, &plan);
    job_firmware_unref(plan.fw); /* NULL after job_reply moved it; kept for clarity */
}

int station_choose_firmware(const struct config *cfg, const struct esp_chip_desc *chip,
                            uint32_t magic, const struct config_firmware_ref **ref, char *msg,
                            size_t msglen, char *advice, size_t advlen)
{
    *ref = NULL;
    msg[0] = advice[0] = '\0';
    if (!chip) {
        snprintf(msg, msglen, "unknown chip (magic 0x%08X)", magic);
        snprintf(advice, advlen, "this chip family is not supported by the station");
        return -ENOTSUP;
    }
    const struct config_profile *prof = config_profile(cfg, NULL);
    if (!prof) {
        char names[200] = "";
        size_t used = 0;
        for (size_t i = 0; i < cfg->n_profiles && used < sizeof(names); i++)
            used += (size_t)snprintf(names + used, sizeof(names) - used, "%s%s", i ? ", " : "",
                                     cfg->profiles[i].name);
        snprintf(msg, msglen,
                 "no active profile: %s identified and recorded, not flashed (%zu profile(s) "
                 "defined, none chosen)",
                 chip->name, cfg->n_profiles);
        if (cfg->n_profiles)
            snprintf(advice, advlen,
                     "choose the profile to flash with: PUT /api/v1/profiles/active "
                     "{\"name\": \"%s\"} or active_profile in the config (profiles: %s), "
                     "then plug the board in again",
                     cfg->profiles[0].name, names);
        else
            snprintf(advice, advlen,
                     "define a profile (PUT /api/v1/profiles/NAME or \"profiles\" in the config) "
                     "to flash boards");
        return 0;
    }
    *ref = config_profile_firmware(prof, chip->chip);
    if (!*ref) {
        snprintf(msg, msglen, "no firmware configured for %s in profile %s", chip->name,
                 prof->name);
        snprintf(advice, advlen,
                 "add \"%s\": \"name@version\" to profiles.%s.firmware in the config",
                 chip->stub_name, prof->name);
        return 0;
    }
    return 1;
}

void st_on_flash_info(struct station *st, struct job *j, const struct job_msg *m)
{
    if (!j->mac[0])
        return;
    struct records_board b;
    records_board_init(&b);
    snprintf(b.mac, sizeof(b.mac), "%s", j->mac);
    b.flash_id = m->info.flash_id ? (int64_t)m->info.flash_id : -1;
    b.flash_size = m->info.flash_size ? (int64_t)m->info.flash_size : -1;
    struct records_error re;
    if (records_board_upsert(st->rec, &b, &re) < 0)
        st_rec_warn(&re);
}

void st_on_capture(struct station *st, struct job *j, const struct job_msg *m)
{
    if (!j->mac[0])
        return;
    struct records_board b;
    records_board_init(&b);
    snprintf(b.mac, sizeof(b.mac), "%s", j->mac);
    if (strcmp(m->name, "version") == 0) {
        st_scopy(b.running_version, sizeof(b.running_version), m->value);
    } else if (strcmp(m->name, "ip") == 0) {
        st_scopy(j->boot_ip, sizeof(j->boot_ip), m->value); /* online when the job ends */
        /* Printed by the board on its own UART in this slot: a confirmed address. */
        board_addr_note(st, j->mac, m->value, BOARD_ADDR_BOOT_CHECK, j->slot, j->id);
        return;
    } else {
        snprintf(b.notes, sizeof(b.notes), "boot %s=%s", m->name, m->value);
    }
    struct records_error re;
    if (records_board_upsert(st->rec, &b, &re) < 0)
        st_rec_warn(&re);
}
