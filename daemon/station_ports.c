/*
 * station_ports: ports and their slots arriving and leaving: udev events, the config's manual
 * ports (polled for presence), ports attached and detached through the REST API. A board that
 * arrives is scheduled; one that leaves cancels its job or drops its queued request. Split from
 * station.c; shares struct station through station_priv.h. Loop thread only.
 */
#include "station.h"
#include "station_priv.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/stat.h>

#include <json-c/json.h>

#include "config.h"
#include "devsrc.h"
#include "job.h"
#include "log.h"
#include "loop.h"
#include "records.h"
#include "slot.h"

/* The path whose existence means "plugged in" for a manual URI; NULL: always present. */
const char *st_manual_path(const char *uri)
{
    if (strncmp(uri, "tcp://", 6) == 0 || strncmp(uri, "rfc2217://", 10) == 0 ||
        strncmp(uri, "fd:", 3) == 0)
        return NULL;
    if (strncmp(uri, "pty:", 4) == 0)
        return uri + 4;
    if (strncmp(uri, "serial:", 7) == 0)
        return uri + 7;
    return uri;
}

/*
 * Identity of a manual port's path: 0 when absent, 1 for URIs without a path
 * (tcp://, rfc2217://, fd:), else a hash of the path's own inode and change time (lstat:
 * a symlink re-created by a restarted board differs) and the device it leads
 * to. A pty symlink left behind by a board that died can point at a /dev/pts
 * number that a new, unrelated pty reuses; comparing with the identity the
 * port had when it went away keeps such a stale path "absent".
 */
static uint64_t manual_id(const char *uri)
{
    const char *p = st_manual_path(uri);
    if (!p)
        return 1;
    struct stat ls, ts;
    if (lstat(p, &ls) != 0 || stat(p, &ts) != 0)
        return 0;
    uint64_t h = 1469598103934665603ull;
    uint64_t parts[5] = {(uint64_t)ls.st_ino, (uint64_t)ls.st_ctim.tv_sec,
                         (uint64_t)ls.st_ctim.tv_nsec, (uint64_t)ts.st_rdev, (uint64_t)ts.st_ino};
    for (int i = 0; i < 5; i++)
        h = (h ^ parts[i]) * 1099511628211ull;
    return h ? h : 2;
}

bool st_manual_present(const char *uri)
{
    return manual_id(uri) != 0;
}

/* ---- ports ---------------------------------------------------------------------------------- */

static void port_added(struct station *st, const struct port_event *ev)
{
    struct slot *s = slot_table_get(&st->slots, ev->slot_key);
    if (!s) {
        log_msg(LOG_LEVEL_ERROR, "out of memory: port %s ignored", ev->uri);
        return;
    }
    if (!s->link_loaded) {
        struct records_error re;
        if (records_slot_baud_limit_get(st->rec, s->key, &s->baud_limit, &re) < 0)
            log_msg(LOG_LEVEL_WARN, "records: %s", re.message);
        else if (s->baud_limit)
            log_msg(LOG_LEVEL_NOTICE,
                    "slot %s: baud limited to %u (learnt from link errors earlier; POST "
                    "/api/v1/slots/{id}/reset-baud forgets it)",
                    s->key, (unsigned)s->baud_limit);
        s->link_loaded = true;
    }
    const char *label = ev->label[0] ? ev->label : config_slot_label(st->cfg, ev->slot_key);
    snprintf(s->label, sizeof(s->label), "%s", label ? label : "");
    if (s->in_grace && s->job) {
        /* A USB-Serial/JTAG board back after its reset: same job, same slot. */
        s->in_grace = false;
        loop_timer_disarm(s->timer);
        s->present = true;
        snprintf(s->uri, sizeof(s->uri), "%s", ev->uri);
        st_slog(s, LOG_LEVEL_INFO, "port back as %s: the job continues", ev->uri);
        job_port_back(s->job, ev->uri);
        return;
    }
    if (s->present && (s->job || s->phase != BOARD_EMPTY)) {
        if (strcmp(s->uri, ev->uri) != 0)
            snprintf(s->uri, sizeof(s->uri), "%s", ev->uri);
        return; /* seen already (coldplug and hotplug racing) */
    }
    s->present = true;
    s->usb_jtag = ev->usb_jtag;
    s->adapter_known = ev->bridge_known;
    s->adapter_baud = ev->max_baud;
    snprintf(s->uri, sizeof(s->uri), "%s", ev->uri);
    slot_clear_board(s);
    struct json_object *d = st_jobj();
    st_jset_str(d, "uri", ev->uri);
    if (ev->vid || ev->pid) {
        char id[16];
        snprintf(id, sizeof(id), "%04x:%04x", ev->vid, ev->pid);
        st_jset_str(d, "usb_id", id);
    }
    if (ev->coldplug)
        json_object_object_add(d, "coldplug", json_object_new_boolean(true));
    if (ev->max_baud)
        st_jset_int(d, "adapter_baud", ev->max_baud);
    st_event(st, "port.added", s, NULL, 0, d);
    char adapter[48] = "";
    if (ev->max_baud)
        snprintf(adapter, sizeof(adapter), " (adapter good to %u baud)", (unsigned)ev->max_baud);
    st_slog(s, LOG_LEVEL_INFO, "port added: %s%s%s", ev->uri, adapter,
            ev->coldplug ? " (present at start)" : "");
    if (s->job) /* a job still ending from the previous board: it will not be retried */
        return;
    st_schedule(st, s);
}

void st_port_removed(struct station *st, const struct port_event *ev)
{
    struct slot *s = slot_table_find(&st->slots, ev->slot_key);
    if (!s || !s->present)
        return;
    s->present = false;
    if (s->manual)
        s->dead_id = s->manual_id;
    struct json_object *d = st_jobj();
    st_jset_str(d, "uri", ev->uri);
    st_event(st, "port.removed", s, s->mac, s->job ? s->job->id : 0, d);
    if (s->job) {
        struct job *j = s->job;
        bool jtag = s->usb_jtag || ev->usb_jtag;
        if (jtag && (j->phase == BOARD_RESETTING || j->phase == BOARD_BOOT_CHECK) &&
            st->opt.reenum_grace_ms > 0) {
            s->in_grace = true;
            st_slog(s, LOG_LEVEL_INFO,
                    "port gone during %s (USB-Serial/JTAG re-enumeration?): "
                    "waiting %d ms for it",
                    j->stage, st->opt.reenum_grace_ms);
            if (st_slot_timer_arm(st, s, st->opt.reenum_grace_ms) < 0) {
                s->in_grace = false;
                j->removed = true;
                job_cancel(j);
            }
            return;
        }
        st_slog(s, LOG_LEVEL_INFO, "port removed during %s: cancelling job %lld", j->stage,
                (long long)j->id);
        j->removed = true;
        job_cancel(j);
        return; /* st_finish_job empties the slot */
    }
    st_slog(s, LOG_LEVEL_INFO, "port removed");
    struct station_req *rq = st_req_pending(st, s);
    if (rq)
        st_req_drop(st, rq, "board removed while queued");
    st_queue_remove(st, s);
    s->retry_pending = false;
    if (s->timer)
        loop_timer_disarm(s->timer);
    st_set_phase(st, s, BOARD_EMPTY);
}

void station_port_event(void *ctx, const struct port_event *ev)
{
    struct station *st = ctx;
    if (ev->kind == PORT_ADDED)
        port_added(st, ev);
    else
        st_port_removed(st, ev);
}

/* Polls the config's manual ports: a path that does not exist is "not plugged". */
void st_poll_manual(void *ctx)
{
    struct station *st = ctx;
    if (st->stopping)
        return;
    for (size_t i = 0; i < st->cfg->n_ports; i++) {
        const struct config_port *p = &st->cfg->ports[i];
        struct port_event ev;
        devsrc_manual_event(PORT_ADDED, p->uri, p->label, &ev);
        struct slot *s = slot_table_find(&st->slots, ev.slot_key);
        uint64_t id = manual_id(p->uri);
        bool was = s && s->present;
        if (was && id != 0 && id != s->manual_id && id != 1) {
            /* Replaced between two polls (a new board on the same path). */
            ev.kind = PORT_REMOVED;
            st_port_removed(st, &ev);
            ev.kind = PORT_ADDED;
            was = false;
        }
        if (id != 0 && !was && !(s && s->dead_id == id)) {
            port_added(st, &ev);
            s = slot_table_find(&st->slots, ev.slot_key);
            if (s) {
                s->manual = true;
                s->manual_id = id;
                s->dead_id = 0;
            }
        } else if (id == 0 && was) {
            ev.kind = PORT_REMOVED;
            st_port_removed(st, &ev);
        }
    }
    /* Manual slots no longer in the config are unplugged. */
    for (size_t k = 0; k < st->slots.n; k++) {
        struct slot *s = st->slots.v[k];
        if (!s->manual || !s->present)
            continue;
        bool listed = false;
        for (size_t i = 0; i < st->cfg->n_ports && !listed; i++)
            listed = strcmp(s->key + 4, st->cfg->ports[i].uri) == 0;
        if (!listed) {
            struct port_event ev;
            devsrc_manual_event(PORT_REMOVED, s->key + 4, NULL, &ev);
            st_port_removed(st, &ev);
        }
    }
}

int station_attach(struct station *st, const char *uri, const char *label)
{
    if (!uri || !*uri || strlen(uri) >= 250)
        return -EINVAL;
    struct port_event ev;
    devsrc_manual_event(PORT_ADDED, uri, label, &ev);
    port_added(st, &ev);
    return 0;
}

/* ---- udev -------------------------------------------------------------------------------------
 */

static void udev_ready(void *ctx, int fd, uint32_t events)
{
    (void)fd;
    (void)events;
    struct station *st = ctx;
    devsrc_udev_dispatch(st->udev);
}

/* Starts the udev source: hotplug monitor, then coldplug through the same path.
 * Failure is a warning: the station still serves manual ports. */
void st_udev_start(struct station *st)
{
    char err[256] = "";
    int rc = devsrc_udev_new(st->cfg, station_port_event, st, &st->udev, err, sizeof(err));
    if (rc < 0) {
        st->udev = NULL;
        log_msg(LOG_LEVEL_WARN, "udev monitor unavailable (%s): only manual ports are served",
                err[0] ? err : strerror(-rc));
        return;
    }
    st->udev_fd = devsrc_udev_fd(st->udev);
    if (loop_add_fd(st->loop, st->udev_fd, EPOLLIN, udev_ready, st) < 0) {
        log_msg(LOG_LEVEL_WARN, "cannot watch the udev monitor: only manual ports are served");
        devsrc_udev_free(st->udev);
        st->udev = NULL;
        return;
    }
    rc = devsrc_udev_coldplug(st->udev);
    if (rc < 0)
        log_msg(LOG_LEVEL_WARN, "udev coldplug failed: %s", strerror(-rc));
}

int station_detach(struct station *st, struct slot *s)
{
    if (!s->present)
        return -ENODEV;
    struct port_event ev;
    devsrc_manual_event(PORT_REMOVED, s->uri, NULL, &ev);
    snprintf(ev.slot_key, sizeof(ev.slot_key), "%s", s->key);
    st_slog(s, LOG_LEVEL_NOTICE, "detached through the API");
    st_port_removed(st, &ev);
    /* Taken out of service on purpose: whatever cable/adapter comes back is tried at full
     * speed again (an unplug or a board change keeps the limit). */
    station_slot_reset_baud(st, s);
    return 0;
}
