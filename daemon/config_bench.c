/*
 * config_bench: the sections that describe the bench: "bridges" (USB-serial adapters
 * by VID:PID, with their reset style and highest reliable baud), "slots" (ports found
 * by their udev ID_PATH) and "ports" (manually attached URIs). A label names a place
 * on the bench: it is unique across slots and ports.
 */
#include "config_priv.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "bridges.h"

static int parse_usb_id(const char *s, uint16_t *vid, uint16_t *pid)
{
    unsigned v = 0, p = 0;
    if (strlen(s) != 9 || s[4] != ':')
        return -EINVAL;
    for (int i = 0; i < 9; i++) {
        if (i == 4)
            continue;
        if (!isxdigit((unsigned char)s[i]))
            return -EINVAL;
        unsigned d =
            (unsigned)(isdigit((unsigned char)s[i]) ? s[i] - '0'
                                                    : tolower((unsigned char)s[i]) - 'a' + 10);
        if (i < 4)
            v = v * 16 + d;
        else
            p = p * 16 + d;
    }
    *vid = (uint16_t)v;
    *pid = (uint16_t)p;
    return 0;
}

int cfg_parse_bridges(struct cfg_ctx *c, struct config *cfg, json_object *v)
{
    int rc = cfg_want_array(c, "bridges", v);
    if (rc < 0)
        return rc;
    for (size_t i = 0; i < cfg->n_bridges; i++)
        free(cfg->bridges[i].name);
    free(cfg->bridges);
    cfg->n_bridges = 0;
    size_t n = json_object_array_length(v);
    cfg->bridges = calloc(n ? n : 1, sizeof(*cfg->bridges));
    if (!cfg->bridges)
        return cfg_fail_nomem(c);
    static const char *const keys[] = {"id", "name", "max_baud", "reset", NULL};
    for (size_t i = 0; i < n; i++) {
        char kp[KEYPATH_MAX], sub[KEYPATH_MAX];
        cfg_join_index(kp, sizeof(kp), "bridges", i);
        json_object *e = json_object_array_get_idx(v, i);
        json_object *id = e, *name = NULL;
        struct config_bridge *b = &cfg->bridges[i];
        cfg->n_bridges = i + 1;
        b->reset = -1;
        if (json_object_is_type(e, json_type_object)) {
            if ((rc = cfg_check_keys(c, kp, e, keys)) < 0)
                return rc;
            if (!json_object_object_get_ex(e, "id", &id))
                return cfg_fail(c, kp, "missing \"id\" (\"vvvv:pppp\", e.g. \"10c4:ea60\")");
            json_object_object_get_ex(e, "name", &name);
            cfg_join_key(sub, sizeof(sub), kp, "id");
        } else {
            snprintf(sub, sizeof(sub), "%s", kp);
        }
        const char *s;
        if ((rc = cfg_get_str(c, sub, id, 64, &s)) < 0)
            return rc;
        if (parse_usb_id(s, &b->vid, &b->pid) < 0)
            return cfg_fail(c, sub,
                            "must be a USB id \"vvvv:pppp\" in hex, e.g. \"10c4:ea60\" (got "
                            "\"%s\")",
                            s);
        for (size_t j = 0; j < i; j++)
            if (cfg->bridges[j].vid == b->vid && cfg->bridges[j].pid == b->pid)
                return cfg_fail(c, sub, "duplicate bridge %04x:%04x (also bridges[%zu])", b->vid,
                                b->pid, j);
        if (name) {
            cfg_join_key(sub, sizeof(sub), kp, "name");
            if ((rc = cfg_get_str(c, sub, name, 64, &s)) < 0 ||
                (rc = cfg_dup_str(c, s, &b->name)) < 0)
                return rc;
        }
        json_object *f;
        if (json_object_is_type(e, json_type_object) &&
            json_object_object_get_ex(e, "max_baud", &f)) {
            long long x;
            cfg_join_key(sub, sizeof(sub), kp, "max_baud");
            if ((rc = cfg_get_int(c, sub, f, 9600, 20000000, &x)) < 0)
                return rc;
            b->max_baud = (uint32_t)x;
        }
        if (json_object_is_type(e, json_type_object) && json_object_object_get_ex(e, "reset", &f)) {
            cfg_join_key(sub, sizeof(sub), kp, "reset");
            if ((rc = cfg_get_str(c, sub, f, 16, &s)) < 0)
                return rc;
            if ((b->reset = bridge_reset_from_string(s)) < 0)
                return cfg_fail(c, sub, "must be \"classic\" or \"usb-jtag\" (got \"%s\")", s);
        }
    }
    return 0;
}

static bool label_ok(const char *s)
{
    return cfg_chars_ok(s, " _.-/") && s[0] != ' ';
}

/* Labels are unique across slots and ports: they name a place on the bench. */
static int check_label_unique(struct cfg_ctx *c, const char *kp, const struct config *cfg,
                              const char *label, size_t n_slots, size_t n_ports)
{
    for (size_t j = 0; j < n_slots; j++)
        if (cfg->slots[j].label && strcmp(cfg->slots[j].label, label) == 0)
            return cfg_fail(c, kp, "duplicate label \"%s\" (already used by slots[%zu])", label, j);
    for (size_t j = 0; j < n_ports; j++)
        if (cfg->ports[j].label && strcmp(cfg->ports[j].label, label) == 0)
            return cfg_fail(c, kp, "duplicate label \"%s\" (already used by ports[%zu])", label, j);
    return 0;
}

int cfg_parse_slots(struct cfg_ctx *c, struct config *cfg, json_object *v)
{
    int rc = cfg_want_array(c, "slots", v);
    if (rc < 0)
        return rc;
    size_t n = json_object_array_length(v);
    cfg->slots = calloc(n ? n : 1, sizeof(*cfg->slots));
    if (!cfg->slots)
        return cfg_fail_nomem(c);
    static const char *const keys[] = {"id_path", "label", NULL};
    for (size_t i = 0; i < n; i++) {
        char kp[KEYPATH_MAX], sub[KEYPATH_MAX];
        cfg_join_index(kp, sizeof(kp), "slots", i);
        json_object *e = json_object_array_get_idx(v, i), *f;
        struct config_slot *s = &cfg->slots[i];
        cfg->n_slots = i + 1;
        const char *str;
        if ((rc = cfg_want_object(c, kp, e)) < 0 || (rc = cfg_check_keys(c, kp, e, keys)) < 0)
            return rc;
        cfg_join_key(sub, sizeof(sub), kp, "id_path");
        if (!json_object_object_get_ex(e, "id_path", &f))
            return cfg_fail(c, sub,
                            "missing (the udev ID_PATH of the port, e.g. "
                            "\"pci-0000:00:14.0-usb-0:1.2:1.0\"; see `udevadm info`)");
        if ((rc = cfg_get_str(c, sub, f, 255, &str)) < 0)
            return rc;
        for (size_t j = 0; j < i; j++)
            if (strcmp(cfg->slots[j].id_path, str) == 0)
                return cfg_fail(c, sub, "duplicate id_path \"%s\" (also slots[%zu])", str, j);
        if ((rc = cfg_dup_str(c, str, &s->id_path)) < 0)
            return rc;
        cfg_join_key(sub, sizeof(sub), kp, "label");
        if (!json_object_object_get_ex(e, "label", &f))
            return cfg_fail(c, sub, "missing (a short name for the port, e.g. \"A1\")");
        if ((rc = cfg_get_str(c, sub, f, 32, &str)) < 0)
            return rc;
        if (!label_ok(str))
            return cfg_fail(c, sub, "\"%s\": use letters, digits, space, '_', '.', '-', '/' only",
                            str);
        if ((rc = check_label_unique(c, sub, cfg, str, i, 0)) < 0)
            return rc;
        if ((rc = cfg_dup_str(c, str, &s->label)) < 0)
            return rc;
    }
    return 0;
}

int cfg_parse_ports(struct cfg_ctx *c, struct config *cfg, json_object *v)
{
    int rc = cfg_want_array(c, "ports", v);
    if (rc < 0)
        return rc;
    size_t n = json_object_array_length(v);
    cfg->ports = calloc(n ? n : 1, sizeof(*cfg->ports));
    if (!cfg->ports)
        return cfg_fail_nomem(c);
    static const char *const keys[] = {"uri", "label", NULL};
    for (size_t i = 0; i < n; i++) {
        char kp[KEYPATH_MAX], sub[KEYPATH_MAX];
        cfg_join_index(kp, sizeof(kp), "ports", i);
        json_object *e = json_object_array_get_idx(v, i), *f;
        struct config_port *p = &cfg->ports[i];
        cfg->n_ports = i + 1;
        const char *str;
        if ((rc = cfg_want_object(c, kp, e)) < 0 || (rc = cfg_check_keys(c, kp, e, keys)) < 0)
            return rc;
        cfg_join_key(sub, sizeof(sub), kp, "uri");
        if (!json_object_object_get_ex(e, "uri", &f))
            return cfg_fail(c, sub, "missing (e.g. \"tcp://10.0.0.5:4000\" or \"/dev/ttyUSB0\")");
        if ((rc = cfg_get_str(c, sub, f, 255, &str)) < 0)
            return rc;
        for (size_t j = 0; j < i; j++)
            if (strcmp(cfg->ports[j].uri, str) == 0)
                return cfg_fail(c, sub, "duplicate uri \"%s\" (also ports[%zu])", str, j);
        if ((rc = cfg_dup_str(c, str, &p->uri)) < 0)
            return rc;
        if (json_object_object_get_ex(e, "label", &f)) {
            cfg_join_key(sub, sizeof(sub), kp, "label");
            if ((rc = cfg_get_str(c, sub, f, 32, &str)) < 0)
                return rc;
            if (!label_ok(str))
                return cfg_fail(c, sub,
                                "\"%s\": use letters, digits, space, '_', '.', '-', '/' only", str);
            if ((rc = check_label_unique(c, sub, cfg, str, cfg->n_slots, i)) < 0)
                return rc;
            if ((rc = cfg_dup_str(c, str, &p->label)) < 0)
                return rc;
        }
    }
    return 0;
}

/* "api.allowed_hosts": ["station-3.lan", ...]: DNS names, no port, no wildcard. */
