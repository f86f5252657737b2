/*
 * devsrc_udev: the udev device source (see devsrc.h).
 *
 * Owns: one libudev context and one monitor (subsystem "tty"), plus a small
 * table devpath -> port_event of the ports it has reported as added.
 *
 * Invariants:
 *  - Hotplug (monitor) and coldplug (enumeration) go through the same filter,
 *    port_of_ours(), and the same table, so a port seen by both is reported
 *    once.
 *  - A tty is ours when its USB parent's idVendor:idProduct is a configured
 *    bridge, or when the tty carries the configured udev tag. Nothing else is
 *    ever opened or probed here: this module reads sysfs attributes and udev
 *    properties only, never the device node.
 *  - PORT_REMOVED is resolved through the table, because by the time the
 *    remove uevent arrives the sysfs directory (and the USB parent) may be
 *    gone. A remove for a devpath we never reported is ignored.
 *  - Everything runs on the loop thread; no locks.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libudev.h>

#include "bridges.h"
#include "config.h"
#include "devsrc.h"

#define MONITOR_RCVBUF (4 * 1024 * 1024)

struct known_port {
    char *devpath;
    struct port_event ev; /* as reported on add */
};

struct devsrc_udev {
    const struct config *cfg; /* borrowed; swapped by devsrc_udev_set_config */
    devsrc_cb cb;
    void *ctx;
    struct udev *udev;
    struct udev_monitor *mon;
    struct known_port *known;
    size_t n_known, cap_known;
};

static void copy_str(char *dst, size_t cap, const char *src)
{
    if (!src)
        src = "";
    snprintf(dst, cap, "%s", src);
}

/* "10c4" -> 0x10c4; false for anything that is not 1-4 hex digits. */
static bool parse_hex16(const char *s, uint16_t *out)
{
    if (!s || !*s)
        return false;
    unsigned v = 0;
    size_t n = 0;
    for (; s[n] && s[n] != '\n'; n++) {
        char c = s[n];
        unsigned d;
        if (c >= '0' && c <= '9')
            d = (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            d = (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            d = (unsigned)(c - 'A' + 10);
        else
            return false;
        if (n >= 4)
            return false;
        v = v * 16 + d;
    }
    if (n == 0)
        return false;
    *out = (uint16_t)v;
    return true;
}

/* True if a ":"-separated udev tag list ("TAGS=:a:b:") contains tag. */
static bool tag_list_has(const char *list, const char *tag)
{
    if (!list || !tag || !*tag)
        return false;
    size_t tl = strlen(tag);
    const char *p = list;
    while ((p = strstr(p, tag)) != NULL) {
        bool start = p == list || p[-1] == ':';
        bool end = p[tl] == '\0' || p[tl] == ':';
        if (start && end)
            return true;
        p += tl;
    }
    return false;
}

static bool has_station_tag(struct udev_device *dev, const char *tag)
{
    if (!tag || !*tag)
        return false;
    if (udev_device_has_tag(dev, tag))
        return true;
    /* Monitor events and testbeds may carry the tags only as properties. */
    return tag_list_has(udev_device_get_property_value(dev, "TAGS"), tag) ||
           tag_list_has(udev_device_get_property_value(dev, "CURRENT_TAGS"), tag);
}

/* A sysfs attribute of usb, else a udev property of dev, else NULL. */
static const char *usb_attr_or_prop(struct udev_device *usb, const char *attr,
                                    struct udev_device *dev, const char *prop)
{
    const char *v = usb ? udev_device_get_sysattr_value(usb, attr) : NULL;
    if (!v || !*v)
        v = udev_device_get_property_value(dev, prop);
    return v;
}

/*
 * The one filter for hotplug and coldplug. Fills ev (kind PORT_ADDED) and
 * returns true when dev is a tty of ours; reads attributes only.
 */
static bool port_of_ours(const struct devsrc_udev *src, struct udev_device *dev,
                         struct port_event *ev)
{
    const char *devnode = udev_device_get_devnode(dev);
    if (!devnode || !*devnode)
        return false;
    struct udev_device *usb =
        udev_device_get_parent_with_subsystem_devtype(dev, "usb", "usb_device");
    uint16_t vid = 0, pid = 0;
    bool have_ids = parse_hex16(usb_attr_or_prop(usb, "idVendor", dev, "ID_VENDOR_ID"), &vid) &&
                    parse_hex16(usb_attr_or_prop(usb, "idProduct", dev, "ID_MODEL_ID"), &pid);
    bool bridge = have_ids && config_is_known_bridge(src->cfg, vid, pid);
    if (!bridge && !has_station_tag(dev, src->cfg ? src->cfg->udev_tag : NULL))
        return false;

    memset(ev, 0, sizeof(*ev));
    ev->kind = PORT_ADDED;
    const char *id_path = udev_device_get_property_value(dev, "ID_PATH");
    if (id_path && *id_path) {
        copy_str(ev->slot_key, sizeof(ev->slot_key), id_path);
    } else {
        /* No path_id (no udev rules, odd bus): the USB interface is the next
         * most stable name of the physical port. */
        struct udev_device *intf =
            udev_device_get_parent_with_subsystem_devtype(dev, "usb", "usb_interface");
        copy_str(ev->slot_key, sizeof(ev->slot_key),
                 intf ? udev_device_get_devpath(intf) : udev_device_get_devpath(dev));
    }
    copy_str(ev->uri, sizeof(ev->uri), devnode);
    copy_str(ev->label, sizeof(ev->label), config_slot_label(src->cfg, ev->slot_key));
    if (have_ids) {
        ev->vid = vid;
        ev->pid = pid;
    }
    copy_str(ev->serial, sizeof(ev->serial),
             usb_attr_or_prop(usb, "serial", dev, "ID_SERIAL_SHORT"));
    copy_str(ev->product, sizeof(ev->product), usb_attr_or_prop(usb, "product", dev, "ID_MODEL"));
    if (have_ids) {
        /* Reset style and highest reliable baud: data (bridges.c, config overrides). */
        struct bridge_port bp;
        bridges_for_port(src->cfg, vid, pid, ev->product, &bp);
        ev->bridge_known = bp.name != NULL;
        ev->max_baud = bp.max_baud;
        ev->usb_jtag = bp.reset == BRIDGE_RESET_USB_JTAG;
    }
    return true;
}

static struct known_port *known_find(struct devsrc_udev *src, const char *devpath)
{
    for (size_t i = 0; i < src->n_known; i++)
        if (strcmp(src->known[i].devpath, devpath) == 0)
            return &src->known[i];
    return NULL;
}

static int known_add(struct devsrc_udev *src, const char *devpath, const struct port_event *ev)
{
    if (src->n_known == src->cap_known) {
        size_t cap = src->cap_known ? src->cap_known * 2 : 16;
        struct known_port *k = realloc(src->known, cap * sizeof(*k));
        if (!k)
            return -ENOMEM;
        src->known = k;
        src->cap_known = cap;
    }
    char *dp = strdup(devpath);
    if (!dp)
        return -ENOMEM;
    src->known[src->n_known].devpath = dp;
    src->known[src->n_known].ev = *ev;
    src->n_known++;
    return 0;
}

static void known_remove(struct devsrc_udev *src, struct known_port *k)
{
    size_t i = (size_t)(k - src->known);
    free(k->devpath);
    src->known[i] = src->known[src->n_known - 1];
    src->n_known--;
}

/* add (or coldplug, or change of a port not yet known) */
static int handle_add(struct devsrc_udev *src, struct udev_device *dev, bool coldplug)
{
    const char *devpath = udev_device_get_devpath(dev);
    if (!devpath || known_find(src, devpath))
        return 0; /* already reported (coldplug raced with hotplug) */
    struct port_event ev;
    if (!port_of_ours(src, dev, &ev))
        return 0;
    ev.coldplug = coldplug;
    int rc = known_add(src, devpath, &ev);
    if (rc < 0)
        return rc;
    src->cb(src->ctx, &ev);
    return 1;
}

static void handle_remove(struct devsrc_udev *src, struct udev_device *dev)
{
    const char *devpath = udev_device_get_devpath(dev);
    struct known_port *k = devpath ? known_find(src, devpath) : NULL;
    if (!k)
        return;
    struct port_event ev = k->ev;
    ev.kind = PORT_REMOVED;
    ev.coldplug = false;
    known_remove(src, k);
    src->cb(src->ctx, &ev);
}

int devsrc_udev_new(const struct config *cfg, devsrc_cb cb, void *ctx, struct devsrc_udev **out,
                    char *err, size_t errlen)
{
    *out = NULL;
    if (!cb) {
        snprintf(err, errlen, "udev: no event callback");
        return -EINVAL;
    }
    struct devsrc_udev *src = calloc(1, sizeof(*src));
    if (!src) {
        snprintf(err, errlen, "udev: out of memory");
        return -ENOMEM;
    }
    src->cfg = cfg;
    src->cb = cb;
    src->ctx = ctx;
    int rc;
    src->udev = udev_new();
    if (!src->udev) {
        rc = errno ? -errno : -ENOMEM;
        snprintf(err, errlen, "udev: cannot create a libudev context: %s", strerror(-rc));
        goto fail;
    }
    src->mon = udev_monitor_new_from_netlink(src->udev, "udev");
    if (!src->mon) {
        rc = errno ? -errno : -ENODEV;
        snprintf(err, errlen,
                 "udev: cannot open the udev monitor (%s); is systemd-udevd running? "
                 "Without udev, attach ports by URI (config \"ports\")",
                 strerror(-rc));
        goto fail;
    }
    if (udev_monitor_filter_add_match_subsystem_devtype(src->mon, "tty", NULL) < 0) {
        rc = -EINVAL;
        snprintf(err, errlen, "udev: cannot install the tty monitor filter");
        goto fail;
    }
    /* Eight boards plugged into one hub arrive as a burst; a bigger buffer
     * avoids ENOBUFS. Needs CAP_NET_ADMIN beyond rmem_max: best effort. */
    (void)udev_monitor_set_receive_buffer_size(src->mon, MONITOR_RCVBUF);
    rc = udev_monitor_enable_receiving(src->mon);
    if (rc < 0) {
        snprintf(err, errlen, "udev: cannot start the udev monitor: %s", strerror(-rc));
        goto fail;
    }
    *out = src;
    return 0;
fail:
    devsrc_udev_free(src);
    return rc < 0 ? rc : -EIO;
}

int devsrc_udev_fd(const struct devsrc_udev *src)
{
    return src ? udev_monitor_get_fd(src->mon) : -1;
}

int devsrc_udev_dispatch(struct devsrc_udev *src)
{
    int n = 0;
    struct udev_device *dev;
    /* The monitor socket is non-blocking: NULL means drained (or a message we
     * could not parse, which is skipped the same way). */
    while ((dev = udev_monitor_receive_device(src->mon)) != NULL) {
        const char *action = udev_device_get_action(dev);
        int rc = 0;
        if (!action || strcmp(action, "add") == 0 || strcmp(action, "change") == 0 ||
            strcmp(action, "bind") == 0) {
            /* "change" covers `udevadm trigger` after the rules were installed:
             * a port that has just become ours is added then. */
            rc = handle_add(src, dev, false);
        } else if (strcmp(action, "remove") == 0) {
            handle_remove(src, dev);
        }
        udev_device_unref(dev);
        if (rc < 0)
            return rc;
        n++;
    }
    return n;
}

int devsrc_udev_coldplug(struct devsrc_udev *src)
{
    struct udev_enumerate *en = udev_enumerate_new(src->udev);
    if (!en)
        return -ENOMEM;
    int rc = udev_enumerate_add_match_subsystem(en, "tty");
    if (rc >= 0)
        rc = udev_enumerate_scan_devices(en);
    if (rc < 0) {
        udev_enumerate_unref(en);
        return rc;
    }
    int found = 0;
    struct udev_list_entry *e;
    udev_list_entry_foreach(e, udev_enumerate_get_list_entry(en))
    {
        struct udev_device *dev =
            udev_device_new_from_syspath(src->udev, udev_list_entry_get_name(e));
        if (!dev)
            continue; /* vanished between scan and lookup */
        rc = handle_add(src, dev, true);
        udev_device_unref(dev);
        if (rc < 0) {
            udev_enumerate_unref(en);
            return rc;
        }
        found += rc;
    }
    udev_enumerate_unref(en);
    return found;
}

void devsrc_udev_set_config(struct devsrc_udev *src, const struct config *cfg)
{
    if (!src)
        return;
    src->cfg = cfg;
    /* Ports already reported keep their identity; only labels may change.
     * A changed bridge list applies to ports plugged in from now on. */
    for (size_t i = 0; i < src->n_known; i++) {
        struct port_event *ev = &src->known[i].ev;
        copy_str(ev->label, sizeof(ev->label), config_slot_label(cfg, ev->slot_key));
    }
}

void devsrc_udev_free(struct devsrc_udev *src)
{
    if (!src)
        return;
    for (size_t i = 0; i < src->n_known; i++)
        free(src->known[i].devpath);
    free(src->known);
    if (src->mon)
        udev_monitor_unref(src->mon);
    if (src->udev)
        udev_unref(src->udev);
    free(src);
}
