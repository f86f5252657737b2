/*
 * config: parse and validate espstationd's JSON configuration.
 *
 * Owns: defaults, the walk over the json-c tree, one validator per key, and
 * the key-path error messages. The tree is walked once; every value is
 * checked for type and range before it is copied into the struct config, and
 * every object is checked for unknown keys first so a typo is reported as a
 * typo (with a "did you mean" when the key is close to a valid one).
 * Input is untrusted text (it is fuzzed): nothing here asserts on content.
 */
#include "config.h"
#include "json_msg.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "bridges.h"
#include "catalog.h"
#include "config_serial.h"
#include "records.h"

#define MAX_CONFIG_BYTES (4u * 1024 * 1024)
#define KEYPATH_MAX 256

struct ctx {
    const char *origin;   /* "config /etc/espstation.json" */
    const char *base_dir; /* for relative paths; NULL = keep */
    char *err;
    size_t errlen;
    const char *overlay; /* JSON object text merged over the file (config_load_overlay) */
};

/* ---- messages ------------------------------------------------------------------ */

static int fail(struct ctx *c, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(struct ctx *c, const char *path, const char *fmt, ...)
{
    if (c->err && c->errlen > 0) {
        char msg[512];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        if (path && *path)
            snprintf(c->err, c->errlen, "%s: %s: %s", c->origin, path, msg);
        else
            snprintf(c->err, c->errlen, "%s: %s", c->origin, msg);
        /* Keys and values come from the file: keep the message one printable line. */
        for (char *p = c->err; *p; p++)
            if ((unsigned char)*p < 0x20 || *p == 0x7f)
                *p = '?';
    }
    return -EINVAL;
}

static int fail_nomem(struct ctx *c)
{
    if (c->err && c->errlen > 0)
        snprintf(c->err, c->errlen, "%s: out of memory", c->origin);
    return -ENOMEM;
}

static void join_key(char *out, size_t n, const char *parent, const char *key)
{
    if (parent && *parent)
        snprintf(out, n, "%s.%s", parent, key);
    else
        snprintf(out, n, "%s", key);
}

static void join_index(char *out, size_t n, const char *parent, size_t i)
{
    snprintf(out, n, "%s[%zu]", parent, i);
}

/* Edit distance, capped: only used to suggest a key for a typo. */
static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 40 || lb > 40)
        return SIZE_MAX;
    size_t row[41];
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best =
                diag + (tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]));
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

/* Every key of obj must be in allowed (NULL-terminated). */
static int check_keys(struct ctx *c, const char *path, json_object *obj, const char *const *allowed)
{
    json_object_object_foreach(obj, key, val)
    {
        (void)val;
        bool ok = false;
        const char *best = NULL;
        size_t best_d = SIZE_MAX;
        for (const char *const *a = allowed; *a; a++) {
            if (strcmp(key, *a) == 0) {
                ok = true;
                break;
            }
            size_t d = edit_distance(key, *a);
            if (d < best_d) {
                best_d = d;
                best = *a;
            }
        }
        if (ok)
            continue;
        char kp[KEYPATH_MAX];
        join_key(kp, sizeof(kp), path, key);
        if (best && best_d <= 2)
            return fail(c, kp, "unknown key (did you mean \"%s\"?)", best);
        char list[256] = "";
        size_t used = 0;
        for (const char *const *a = allowed; *a && used < sizeof(list); a++)
            used += (size_t)snprintf(list + used, sizeof(list) - used, "%s%s",
                                     a == allowed ? "" : ", ", *a);
        return fail(c, kp, "unknown key (valid keys here: %s)", list);
    }
    return 0;
}

/* ---- typed getters ------------------------------------------------------------- */

static int want_object(struct ctx *c, const char *path, json_object *v)
{
    if (json_object_is_type(v, json_type_object))
        return 0;
    char got[96];
    json_msg_describe(v, got, sizeof(got));
    return fail(c, path, "must be an object (%s)", got);
}

static int want_array(struct ctx *c, const char *path, json_object *v)
{
    if (json_object_is_type(v, json_type_array))
        return 0;
    char got[96];
    json_msg_describe(v, got, sizeof(got));
    return fail(c, path, "must be a list (%s)", got);
}

/* A string without NUL bytes, 1..maxlen characters (0 = no limit). *out is borrowed. */
static int get_str(struct ctx *c, const char *path, json_object *v, size_t maxlen, const char **out)
{
    if (!json_object_is_type(v, json_type_string)) {
        char got[96];
        json_msg_describe(v, got, sizeof(got));
        return fail(c, path, "must be a string (%s)", got);
    }
    const char *s = json_object_get_string(v);
    size_t len = (size_t)json_object_get_string_len(v);
    if (!s || strlen(s) != len)
        return fail(c, path, "must not contain NUL characters");
    if (len == 0)
        return fail(c, path, "must not be empty");
    if (maxlen && len > maxlen)
        return fail(c, path, "too long (%zu characters, at most %zu)", len, maxlen);
    *out = s;
    return 0;
}

static int dup_str(struct ctx *c, const char *s, char **out)
{
    char *d = strdup(s);
    if (!d)
        return fail_nomem(c);
    free(*out);
    *out = d;
    return 0;
}

static int get_int(struct ctx *c, const char *path, json_object *v, long long min, long long max,
                   long long *out)
{
    if (json_object_is_type(v, json_type_int)) {
        int64_t x = json_object_get_int64(v);
        /* json-c clamps out-of-range literals to INT64_MIN/MAX. */
        if (x >= min && x <= max && x != INT64_MAX && x != INT64_MIN) {
            *out = x;
            return 0;
        }
    }
    char got[96];
    json_msg_describe(v, got, sizeof(got));
    return fail(c, path, "must be an integer from %lld to %lld (%s)", min, max, got);
}

static int get_bool(struct ctx *c, const char *path, json_object *v, bool *out)
{
    if (json_object_is_type(v, json_type_boolean)) {
        *out = json_object_get_boolean(v);
        return 0;
    }
    char got[96];
    json_msg_describe(v, got, sizeof(got));
    return fail(c, path, "must be true or false (%s)", got);
}

/* A path; relative ones are resolved against c->base_dir. */
static int get_path(struct ctx *c, const char *path, json_object *v, char **out)
{
    const char *s;
    int rc = get_str(c, path, v, 4000, &s);
    if (rc < 0)
        return rc;
    if (s[0] == '/' || !c->base_dir)
        return dup_str(c, s, out);
    char *full = NULL;
    if (asprintf(&full, "%s/%s", c->base_dir, s) < 0)
        return fail_nomem(c);
    free(*out);
    *out = full;
    return 0;
}

static bool chars_ok(const char *s, const char *extra)
{
    for (const char *p = s; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr(extra, *p))
            return false;
    return true;
}

/* ---- defaults ------------------------------------------------------------------ */

static void profile_defaults(struct config_profile *p)
{
    memset(p, 0, sizeof(*p));
    p->baud = CONFIG_DEFAULT_BAUD;
    p->stub = true;
    p->compress = true;
    p->verify = true;
    p->skip_if_same = true;
    p->diff = true;
    p->retries = 1;
    p->after = ESP_AFTER_HARD_RESET;
    p->boot_check.timeout_ms = CONFIG_DEFAULT_BOOT_TIMEOUT_MS;
    p->boot_check.baud = CONFIG_DEFAULT_BOOT_BAUD;
    p->baud_probe_after = CONFIG_DEFAULT_BAUD_PROBE_AFTER;
}

static int set_defaults(struct ctx *c, struct config *cfg)
{
    const char *xdg = getenv("XDG_STATE_HOME");
    if (xdg && xdg[0] == '/') {
        if (asprintf(&cfg->data_dir, "%s/espstation", xdg) < 0) {
            cfg->data_dir = NULL;
            return fail_nomem(c);
        }
    } else if (dup_str(c, "./espstation-data", &cfg->data_dir) < 0) {
        return -ENOMEM;
    }
    if (dup_str(c, CONFIG_DEFAULT_LISTEN, &cfg->listen) < 0 ||
        dup_str(c, "127.0.0.1", &cfg->listen_host) < 0 ||
        dup_str(c, CONFIG_DEFAULT_UDEV_TAG, &cfg->udev_tag) < 0)
        return -ENOMEM;
    cfg->listen_port = 8080;
    cfg->max_parallel = CONFIG_DEFAULT_MAX_PARALLEL;
    cfg->line.heartbeat_s = 5;
    cfg->line.gone_after_s = 15;
    /* The default bridges are the adapter table's ids (bridges.c). */
    size_t n;
    const struct bridge_info *known = bridges_builtin(&n);
    cfg->bridges = calloc(n, sizeof(*cfg->bridges));
    if (!cfg->bridges)
        return fail_nomem(c);
    for (size_t i = 0; i < n; i++) {
        /* one per id: its row for any product string ("CP210x", not "CP2102N") */
        if (known[i].product || config_is_known_bridge(cfg, known[i].vid, known[i].pid))
            continue;
        struct config_bridge *b = &cfg->bridges[cfg->n_bridges++];
        b->vid = known[i].vid;
        b->pid = known[i].pid;
        b->reset = -1;
        if (dup_str(c, known[i].name, &b->name) < 0)
            return -ENOMEM;
    }
    cfg->api.read_requires_token = false;
    cfg->api.max_body_bytes = CONFIG_DEFAULT_MAX_BODY_BYTES;
    cfg->api.max_connections = CONFIG_DEFAULT_API_MAX_CONNECTIONS;
    cfg->api.idle_timeout_s = CONFIG_DEFAULT_API_IDLE_TIMEOUT_S;
    cfg->ota.enrol_unknown = true;
    cfg->ota.max_connections = CONFIG_DEFAULT_OTA_MAX_CONNECTIONS;
    cfg->ota.idle_timeout_s = CONFIG_DEFAULT_OTA_IDLE_TIMEOUT_S;
    cfg->ota.mdns_interval_s = 60;
    cfg->ota.enrol_rate_per_min = 30;
    cfg->ota.enrol_max = 500;
    if (dup_str(c, "admin", &cfg->ota.webform_user) < 0)
        return -ENOMEM;
    return 0;
}

/* ---- sections ------------------------------------------------------------------ */

/* "host:port" or "[v6]:port". */
static int parse_listen(struct ctx *c, struct config *cfg, json_object *v)
{
    const char *s;
    int rc = get_str(c, "listen", v, 255, &s);
    if (rc < 0)
        return rc;
    const char *colon = strrchr(s, ':');
    const char *host = s;
    size_t hlen = colon ? (size_t)(colon - s) : 0;
    if (colon && s[0] == '[') {
        if (hlen < 3 || s[hlen - 1] != ']')
            colon = NULL;
        host = s + 1;
        hlen -= 2;
    }
    if (!colon || hlen == 0)
        return fail(c, "listen",
                    "must be \"host:port\", e.g. \"127.0.0.1:8080\" or "
                    "\"[::1]:8080\" (got \"%s\")",
                    s);
    for (size_t i = 0; i < hlen; i++)
        if (!isalnum((unsigned char)host[i]) && !strchr(".-:_", host[i]))
            return fail(c, "listen", "\"%.*s\" is not a host name or address", (int)hlen, host);
    const char *p = colon + 1;
    long port = 0;
    if (!*p || strlen(p) > 5)
        port = -1;
    for (; *p && port >= 0; p++)
        port = isdigit((unsigned char)*p) ? port * 10 + (*p - '0') : -1;
    if (port < 0 || port > 65535)
        return fail(c, "listen",
                    "port must be a number from 0 (any free port) to 65535 (got \"%s\")",
                    colon + 1);
    char *h = strndup(host, hlen);
    if (!h)
        return fail_nomem(c);
    free(cfg->listen_host);
    cfg->listen_host = h;
    cfg->listen_port = (uint16_t)port;
    return dup_str(c, s, &cfg->listen);
}

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

static int parse_bridges(struct ctx *c, struct config *cfg, json_object *v)
{
    int rc = want_array(c, "bridges", v);
    if (rc < 0)
        return rc;
    for (size_t i = 0; i < cfg->n_bridges; i++)
        free(cfg->bridges[i].name);
    free(cfg->bridges);
    cfg->n_bridges = 0;
    size_t n = json_object_array_length(v);
    cfg->bridges = calloc(n ? n : 1, sizeof(*cfg->bridges));
    if (!cfg->bridges)
        return fail_nomem(c);
    static const char *const keys[] = {"id", "name", "max_baud", "reset", NULL};
    for (size_t i = 0; i < n; i++) {
        char kp[KEYPATH_MAX], sub[KEYPATH_MAX];
        join_index(kp, sizeof(kp), "bridges", i);
        json_object *e = json_object_array_get_idx(v, i);
        json_object *id = e, *name = NULL;
        struct config_bridge *b = &cfg->bridges[i];
        cfg->n_bridges = i + 1;
        b->reset = -1;
        if (json_object_is_type(e, json_type_object)) {
            if ((rc = check_keys(c, kp, e, keys)) < 0)
                return rc;
            if (!json_object_object_get_ex(e, "id", &id))
                return fail(c, kp, "missing \"id\" (\"vvvv:pppp\", e.g. \"10c4:ea60\")");
            json_object_object_get_ex(e, "name", &name);
            join_key(sub, sizeof(sub), kp, "id");
        } else {
            snprintf(sub, sizeof(sub), "%s", kp);
        }
        const char *s;
        if ((rc = get_str(c, sub, id, 64, &s)) < 0)
            return rc;
        if (parse_usb_id(s, &b->vid, &b->pid) < 0)
            return fail(c, sub,
                        "must be a USB id \"vvvv:pppp\" in hex, e.g. \"10c4:ea60\" (got "
                        "\"%s\")",
                        s);
        for (size_t j = 0; j < i; j++)
            if (cfg->bridges[j].vid == b->vid && cfg->bridges[j].pid == b->pid)
                return fail(c, sub, "duplicate bridge %04x:%04x (also bridges[%zu])", b->vid,
                            b->pid, j);
        if (name) {
            join_key(sub, sizeof(sub), kp, "name");
            if ((rc = get_str(c, sub, name, 64, &s)) < 0 || (rc = dup_str(c, s, &b->name)) < 0)
                return rc;
        }
        json_object *f;
        if (json_object_is_type(e, json_type_object) &&
            json_object_object_get_ex(e, "max_baud", &f)) {
            long long x;
            join_key(sub, sizeof(sub), kp, "max_baud");
            if ((rc = get_int(c, sub, f, 9600, 20000000, &x)) < 0)
                return rc;
            b->max_baud = (uint32_t)x;
        }
        if (json_object_is_type(e, json_type_object) && json_object_object_get_ex(e, "reset", &f)) {
            join_key(sub, sizeof(sub), kp, "reset");
            if ((rc = get_str(c, sub, f, 16, &s)) < 0)
                return rc;
            if ((b->reset = bridge_reset_from_string(s)) < 0)
                return fail(c, sub, "must be \"classic\" or \"usb-jtag\" (got \"%s\")", s);
        }
    }
    return 0;
}

static bool label_ok(const char *s)
{
    return chars_ok(s, " _.-/") && s[0] != ' ';
}

/* Labels are unique across slots and ports: they name a place on the bench. */
static int check_label_unique(struct ctx *c, const char *kp, const struct config *cfg,
                              const char *label, size_t n_slots, size_t n_ports)
{
    for (size_t j = 0; j < n_slots; j++)
        if (cfg->slots[j].label && strcmp(cfg->slots[j].label, label) == 0)
            return fail(c, kp, "duplicate label \"%s\" (already used by slots[%zu])", label, j);
    for (size_t j = 0; j < n_ports; j++)
        if (cfg->ports[j].label && strcmp(cfg->ports[j].label, label) == 0)
            return fail(c, kp, "duplicate label \"%s\" (already used by ports[%zu])", label, j);
    return 0;
}

static int parse_slots(struct ctx *c, struct config *cfg, json_object *v)
{
    int rc = want_array(c, "slots", v);
    if (rc < 0)
        return rc;
    size_t n = json_object_array_length(v);
    cfg->slots = calloc(n ? n : 1, sizeof(*cfg->slots));
    if (!cfg->slots)
        return fail_nomem(c);
    static const char *const keys[] = {"id_path", "label", NULL};
    for (size_t i = 0; i < n; i++) {
        char kp[KEYPATH_MAX], sub[KEYPATH_MAX];
        join_index(kp, sizeof(kp), "slots", i);
        json_object *e = json_object_array_get_idx(v, i), *f;
        struct config_slot *s = &cfg->slots[i];
        cfg->n_slots = i + 1;
        const char *str;
        if ((rc = want_object(c, kp, e)) < 0 || (rc = check_keys(c, kp, e, keys)) < 0)
            return rc;
        join_key(sub, sizeof(sub), kp, "id_path");
        if (!json_object_object_get_ex(e, "id_path", &f))
            return fail(c, sub,
                        "missing (the udev ID_PATH of the port, e.g. "
                        "\"pci-0000:00:14.0-usb-0:1.2:1.0\"; see `udevadm info`)");
        if ((rc = get_str(c, sub, f, 255, &str)) < 0)
            return rc;
        for (size_t j = 0; j < i; j++)
            if (strcmp(cfg->slots[j].id_path, str) == 0)
                return fail(c, sub, "duplicate id_path \"%s\" (also slots[%zu])", str, j);
        if ((rc = dup_str(c, str, &s->id_path)) < 0)
            return rc;
        join_key(sub, sizeof(sub), kp, "label");
        if (!json_object_object_get_ex(e, "label", &f))
            return fail(c, sub, "missing (a short name for the port, e.g. \"A1\")");
        if ((rc = get_str(c, sub, f, 32, &str)) < 0)
            return rc;
        if (!label_ok(str))
            return fail(c, sub, "\"%s\": use letters, digits, space, '_', '.', '-', '/' only", str);
        if ((rc = check_label_unique(c, sub, cfg, str, i, 0)) < 0)
            return rc;
        if ((rc = dup_str(c, str, &s->label)) < 0)
            return rc;
    }
    return 0;
}

static int parse_ports(struct ctx *c, struct config *cfg, json_object *v)
{
    int rc = want_array(c, "ports", v);
    if (rc < 0)
        return rc;
    size_t n = json_object_array_length(v);
    cfg->ports = calloc(n ? n : 1, sizeof(*cfg->ports));
    if (!cfg->ports)
        return fail_nomem(c);
    static const char *const keys[] = {"uri", "label", NULL};
    for (size_t i = 0; i < n; i++) {
        char kp[KEYPATH_MAX], sub[KEYPATH_MAX];
        join_index(kp, sizeof(kp), "ports", i);
        json_object *e = json_object_array_get_idx(v, i), *f;
        struct config_port *p = &cfg->ports[i];
        cfg->n_ports = i + 1;
        const char *str;
        if ((rc = want_object(c, kp, e)) < 0 || (rc = check_keys(c, kp, e, keys)) < 0)
            return rc;
        join_key(sub, sizeof(sub), kp, "uri");
        if (!json_object_object_get_ex(e, "uri", &f))
            return fail(c, sub, "missing (e.g. \"tcp://10.0.0.5:4000\" or \"/dev/ttyUSB0\")");
        if ((rc = get_str(c, sub, f, 255, &str)) < 0)
            return rc;
        for (size_t j = 0; j < i; j++)
            if (strcmp(cfg->ports[j].uri, str) == 0)
                return fail(c, sub, "duplicate uri \"%s\" (also ports[%zu])", str, j);
        if ((rc = dup_str(c, str, &p->uri)) < 0)
            return rc;
        if (json_object_object_get_ex(e, "label", &f)) {
            join_key(sub, sizeof(sub), kp, "label");
            if ((rc = get_str(c, sub, f, 32, &str)) < 0)
                return rc;
            if (!label_ok(str))
                return fail(c, sub, "\"%s\": use letters, digits, space, '_', '.', '-', '/' only",
                            str);
            if ((rc = check_label_unique(c, sub, cfg, str, cfg->n_slots, i)) < 0)
                return rc;
            if ((rc = dup_str(c, str, &p->label)) < 0)
                return rc;
        }
    }
    return 0;
}

/* "api.allowed_hosts": ["station-3.lan", ...]: DNS names, no port, no wildcard. */
static int parse_allowed_hosts(struct ctx *c, struct config *cfg, json_object *v)
{
    int rc;
    if ((rc = want_array(c, "api.allowed_hosts", v)) < 0)
        return rc;
    size_t n = json_object_array_length(v);
    if (n > 32)
        return fail(c, "api.allowed_hosts", "at most 32 names (%zu given)", n);
    char **names = calloc(n ? n : 1, sizeof(*names));
    if (!names)
        return fail_nomem(c);
    cfg->api.allowed_hosts = names;
    for (size_t i = 0; i < n; i++) {
        char path[64];
        snprintf(path, sizeof(path), "api.allowed_hosts[%zu]", i);
        const char *s;
        if ((rc = get_str(c, path, json_object_array_get_idx(v, i), 253, &s)) < 0)
            return rc;
        for (const char *p = s; *p; p++)
            if (!isalnum((unsigned char)*p) && *p != '-' && *p != '.')
                return fail(c, path,
                            "\"%s\": a host name (letters, digits, '-' and '.'; no port, no "
                            "scheme); IP addresses are always allowed",
                            s);
        if ((rc = dup_str(c, s, &names[i])) < 0)
            return rc;
        for (char *p = names[i]; *p; p++)
            *p = (char)tolower((unsigned char)*p);
        cfg->api.n_allowed_hosts = i + 1;
    }
    return 0;
}

/* "tls": {"cert": PATH, "key": PATH} (api.tls, ota.tls): both required, relative paths
 * against the config file's directory. The files are read when the server starts. */
static int parse_tls(struct ctx *c, const char *path, json_object *v, struct config_tls *t)
{
    static const char *const keys[] = {"cert", "key", NULL};
    char kp[KEYPATH_MAX];
    json_object *f;
    int rc;
    if ((rc = want_object(c, path, v)) < 0 || (rc = check_keys(c, path, v, keys)) < 0)
        return rc;
    join_key(kp, sizeof(kp), path, "cert");
    if (!json_object_object_get_ex(v, "cert", &f))
        return fail(c, kp,
                    "is required (a PEM file: the server certificate, then any intermediate CA "
                    "certificates)");
    if ((rc = get_path(c, kp, f, &t->cert)) < 0)
        return rc;
    join_key(kp, sizeof(kp), path, "key");
    if (!json_object_object_get_ex(v, "key", &f))
        return fail(c, kp, "is required (a PEM file: the certificate's private key, unencrypted)");
    return get_path(c, kp, f, &t->key);
}

static int parse_api(struct ctx *c, struct config *cfg, json_object *v)
{
    static const char *const keys[] = {"token",
                                       "read_requires_token",
                                       "max_body_bytes",
                                       "max_connections",
                                       "idle_timeout_s",
                                       "allowed_hosts",
                                       "tls",
                                       NULL};
    int rc;
    json_object *f;
    long long x;
    if ((rc = want_object(c, "api", v)) < 0 || (rc = check_keys(c, "api", v, keys)) < 0)
        return rc;
    if (json_object_object_get_ex(v, "token", &f) && !json_object_is_type(f, json_type_null)) {
        const char *s;
        if ((rc = get_str(c, "api.token", f, 256, &s)) < 0)
            return rc;
        for (const char *p = s; *p; p++)
            if (!isgraph((unsigned char)*p))
                return fail(c, "api.token", "must not contain spaces or control characters");
        if ((rc = dup_str(c, s, &cfg->api.token)) < 0)
            return rc;
    }
    if (json_object_object_get_ex(v, "read_requires_token", &f) &&
        (rc = get_bool(c, "api.read_requires_token", f, &cfg->api.read_requires_token)) < 0)
        return rc;
    if (json_object_object_get_ex(v, "max_body_bytes", &f)) {
        if ((rc = get_int(c, "api.max_body_bytes", f, 1024, 1024LL * 1024 * 1024, &x)) < 0)
            return rc;
        cfg->api.max_body_bytes = (size_t)x;
    }
    if (json_object_object_get_ex(v, "max_connections", &f)) {
        if ((rc = get_int(c, "api.max_connections", f, 1, 65536, &x)) < 0)
            return rc;
        cfg->api.max_connections = (int)x;
    }
    if (json_object_object_get_ex(v, "tls", &f) &&
        (rc = parse_tls(c, "api.tls", f, &cfg->api.tls)) < 0)
        return rc;
    if (json_object_object_get_ex(v, "idle_timeout_s", &f)) {
        if ((rc = get_int(c, "api.idle_timeout_s", f, 1, 3600, &x)) < 0)
            return rc;
        cfg->api.idle_timeout_s = (int)x;
    }
    if (json_object_object_get_ex(v, "allowed_hosts", &f) &&
        (rc = parse_allowed_hosts(c, cfg, f)) < 0)
        return rc;
    if (cfg->api.read_requires_token && !cfg->api.token)
        return fail(c, "api.read_requires_token",
                    "is true but no api.token is set (nobody could read the API)");
    return 0;
}

/* "ota": the device-facing HTTP update endpoint and the push defaults. */
static int parse_ota(struct ctx *c, struct config *cfg, json_object *v)
{
    static const char *const keys[] = {"listen",
                                       "unknown_boards",
                                       "strict",
                                       "espota_port",
                                       "max_connections",
                                       "mdns_interval_s",
                                       "webform_user",
                                       "idle_timeout_s",
                                       "enrol_rate_per_min",
                                       "enrol_max",
                                       "tls",
                                       NULL};
    int rc;
    json_object *f;
    long long x;
    const char *s;
    if ((rc = want_object(c, "ota", v)) < 0 || (rc = check_keys(c, "ota", v, keys)) < 0)
        return rc;
    if (json_object_object_get_ex(v, "listen", &f) && !json_object_is_type(f, json_type_null)) {
        if ((rc = get_str(c, "ota.listen", f, 255, &s)) < 0)
            return rc;
        const char *colon = strrchr(s, ':');
        char *end = NULL;
        long port = colon ? strtol(colon + 1, &end, 10) : -1;
        if (!colon || colon == s || !end || *end || colon[1] == '\0' || port < 0 || port > 65535)
            return fail(c, "ota.listen",
                        "must be \"host:port\" (port 0 = any free port), e.g. "
                        "\"0.0.0.0:8266\" (got \"%s\")",
                        s);
        char *h = strndup(s, (size_t)(colon - s));
        if (!h)
            return fail_nomem(c);
        free(cfg->ota.listen_host);
        cfg->ota.listen_host = h;
        cfg->ota.listen_port = (int)port;
        cfg->ota.enabled = true;
    }
    if (json_object_object_get_ex(v, "unknown_boards", &f)) {
        if ((rc = get_str(c, "ota.unknown_boards", f, 16, &s)) < 0)
            return rc;
        if (strcmp(s, "enrol") == 0)
            cfg->ota.enrol_unknown = true;
        else if (strcmp(s, "refuse") == 0)
            cfg->ota.enrol_unknown = false;
        else
            return fail(c, "ota.unknown_boards", "must be \"enrol\" or \"refuse\" (got \"%s\")", s);
    }
    if (json_object_object_get_ex(v, "strict", &f) &&
        (rc = get_bool(c, "ota.strict", f, &cfg->ota.strict)) < 0)
        return rc;
    if (json_object_object_get_ex(v, "espota_port", &f)) {
        if ((rc = get_int(c, "ota.espota_port", f, 0, 65535, &x)) < 0)
            return rc;
        cfg->ota.espota_port = (int)x;
    }
    if (json_object_object_get_ex(v, "max_connections", &f)) {
        if ((rc = get_int(c, "ota.max_connections", f, 1, 4096, &x)) < 0)
            return rc;
        cfg->ota.max_connections = (int)x;
    }
    if (json_object_object_get_ex(v, "idle_timeout_s", &f)) {
        if ((rc = get_int(c, "ota.idle_timeout_s", f, 1, 3600, &x)) < 0)
            return rc;
        cfg->ota.idle_timeout_s = (int)x;
    }
    if (json_object_object_get_ex(v, "mdns_interval_s", &f)) {
        if ((rc = get_int(c, "ota.mdns_interval_s", f, 0, 86400, &x)) < 0)
            return rc;
        cfg->ota.mdns_interval_s = (int)x;
    }
    if (json_object_object_get_ex(v, "tls", &f) &&
        (rc = parse_tls(c, "ota.tls", f, &cfg->ota.tls)) < 0)
        return rc;
    if (json_object_object_get_ex(v, "webform_user", &f)) {
        if ((rc = get_str(c, "ota.webform_user", f, 64, &s)) < 0)
            return rc;
        for (const char *p = s; *p; p++)
            if (*p == ':' || (unsigned char)*p < 0x20 || *p == 0x7F)
                return fail(c, "ota.webform_user",
                            "must not contain ':' or control characters (HTTP Basic "
                            "authentication cannot carry them; got \"%s\")",
                            s);
        if ((rc = dup_str(c, s, &cfg->ota.webform_user)) < 0)
            return rc;
    }
    if (json_object_object_get_ex(v, "enrol_rate_per_min", &f)) {
        if ((rc = get_int(c, "ota.enrol_rate_per_min", f, 1, 6000, &x)) < 0)
            return rc;
        cfg->ota.enrol_rate_per_min = (int)x;
    }
    if (json_object_object_get_ex(v, "enrol_max", &f)) {
        if ((rc = get_int(c, "ota.enrol_max", f, 0, 1000000, &x)) < 0)
            return rc;
        cfg->ota.enrol_max = (int)x;
    }
    return 0;
}

/* "checkin_auth": {"user": U, "password": P, "required": false}. */
static int parse_checkin_auth(struct ctx *c, const char *path, struct config_profile *p,
                              json_object *v)
{
    static const char *const keys[] = {"user", "password", "required", NULL};
    char kp[KEYPATH_MAX];
    json_object *f;
    const char *s;
    int rc;
    if ((rc = want_object(c, path, v)) < 0 || (rc = check_keys(c, path, v, keys)) < 0)
        return rc;
    join_key(kp, sizeof(kp), path, "user");
    if (!json_object_object_get_ex(v, "user", &f))
        return fail(c, kp, "is required (the HTTP Basic user the boards' updaters send)");
    if ((rc = get_str(c, kp, f, 64, &s)) < 0)
        return rc;
    if (!*s)
        return fail(c, kp, "must not be empty");
    for (const char *q = s; *q; q++)
        if (*q == ':' || (unsigned char)*q < 0x20 || *q == 0x7F)
            return fail(c, kp,
                        "must not contain ':' or control characters (HTTP Basic "
                        "authentication cannot carry them)");
    if ((rc = dup_str(c, s, &p->checkin_user)) < 0)
        return rc;
    join_key(kp, sizeof(kp), path, "password");
    if (!json_object_object_get_ex(v, "password", &f))
        return fail(c, kp, "is required");
    if ((rc = get_str(c, kp, f, 128, &s)) < 0)
        return rc;
    if (strlen(s) < 8)
        return fail(c, kp,
                    "must be at least 8 characters (anyone on the device network can try "
                    "passwords)");
    for (const char *q = s; *q; q++)
        if ((unsigned char)*q < 0x20 || *q == 0x7F)
            return fail(c, kp, "must not contain control characters");
    if ((rc = dup_str(c, s, &p->checkin_password)) < 0)
        return rc;
    if (json_object_object_get_ex(v, "required", &f)) {
        join_key(kp, sizeof(kp), path, "required");
        if ((rc = get_bool(c, kp, f, &p->checkin_required)) < 0)
            return rc;
    }
    return 0;
}

static int parse_firmware_map(struct ctx *c, const char *path, struct config_firmware_ref **refs,
                              size_t *n_refs, json_object *v)
{
    int rc = want_object(c, path, v);
    if (rc < 0)
        return rc;
    size_t n = (size_t)json_object_object_length(v);
    *refs = calloc(n ? n : 1, sizeof(**refs));
    if (!*refs)
        return fail_nomem(c);
    struct config_profile pv = {.firmware = *refs};
    struct config_profile *p = &pv;
    rc = 0;
    json_object_object_foreach(v, family, ref)
    {
        char kp[KEYPATH_MAX];
        join_key(kp, sizeof(kp), path, family);
        const struct esp_chip_desc *chip = esp_chip_by_name(family);
        if (!chip) {
            char known[256] = "";
            size_t used = 0;
            for (int i = 0; i < ESP_CHIP_COUNT && used < sizeof(known); i++)
                used += (size_t)snprintf(known + used, sizeof(known) - used, "%s%s", i ? ", " : "",
                                         esp_chip_get((enum esp_chip)i)->stub_name);
            return fail(c, path, "unknown chip family \"%s\" (known: %s)", family, known);
        }
        for (size_t j = 0; j < p->n_firmware; j++)
            if (p->firmware[j].chip == chip->chip)
                return fail(c, kp, "chip family %s is given twice", chip->name);
        const char *s;
        if ((rc = get_str(c, kp, ref, 200, &s)) < 0)
            return rc;
        const char *at = strchr(s, '@');
        struct config_firmware_ref *f = &p->firmware[p->n_firmware];
        f->chip = chip->chip;
        p->n_firmware++;
        *n_refs = p->n_firmware;
        if (!at || at == s || !at[1])
            return fail(c, kp,
                        "must be \"name@version\" of a firmware set in the catalog (got "
                        "\"%s\")",
                        s);
        f->name = strndup(s, (size_t)(at - s));
        f->version = strdup(at + 1);
        if (!f->name || !f->version)
            return fail_nomem(c);
        if (!catalog_name_valid(f->name) || !catalog_name_valid(f->version))
            return fail(c, kp,
                        "\"%s\": name and version may hold letters, digits, '.', '_' "
                        "and '-' only, and must not start with '.'",
                        s);
    }
    return 0;
}

static int parse_boot_check(struct ctx *c, const char *path, struct config_boot_check *b,
                            json_object *v)
{
    static const char *const keys[] = {"pattern", "timeout_ms", "baud", "capture", NULL};
    char kp[KEYPATH_MAX];
    json_object *f;
    int rc;
    if ((rc = want_object(c, path, v)) < 0 || (rc = check_keys(c, path, v, keys)) < 0)
        return rc;
    join_key(kp, sizeof(kp), path, "pattern");
    if (!json_object_object_get_ex(v, "pattern", &f))
        return fail(c, kp,
                    "missing (a regular expression the board prints after boot, e.g. "
                    "\"OTA ready\")");
    const char *s;
    if ((rc = get_str(c, kp, f, 1024, &s)) < 0)
        return rc;
    regex_t re;
    char sample[1200]; /* "{serial}" as a board's serial text will stand there */
    if (config_serial_pattern_sample(s, sample, sizeof(sample)) < 0)
        return fail(c, kp, "too long once {serial} is replaced");
    int rrc = regcomp(&re, sample, REG_EXTENDED);
    if (rrc != 0) {
        char msg[200];
        regerror(rrc, &re, msg, sizeof(msg));
        return fail(c, kp, "not a valid POSIX extended regular expression: %s", msg);
    }
    size_t groups = re.re_nsub;
    regfree(&re);
    if ((rc = dup_str(c, s, &b->pattern)) < 0)
        return rc;
    b->enabled = true;
    if (json_object_object_get_ex(v, "timeout_ms", &f)) {
        long long x;
        join_key(kp, sizeof(kp), path, "timeout_ms");
        if ((rc = get_int(c, kp, f, 100, 600000, &x)) < 0)
            return rc;
        b->timeout_ms = (int)x;
    }
    if (json_object_object_get_ex(v, "baud", &f)) {
        long long x;
        join_key(kp, sizeof(kp), path, "baud");
        if ((rc = get_int(c, kp, f, 9600, 5000000, &x)) < 0)
            return rc;
        b->baud = (uint32_t)x;
    }
    if (json_object_object_get_ex(v, "capture", &f)) {
        join_key(kp, sizeof(kp), path, "capture");
        if ((rc = want_array(c, kp, f)) < 0)
            return rc;
        size_t n = json_object_array_length(f);
        if (n > groups)
            return fail(c, kp, "names %zu groups but the pattern has %zu parenthesised group%s", n,
                        groups, groups == 1 ? "" : "s");
        b->capture = calloc(n ? n : 1, sizeof(*b->capture));
        if (!b->capture)
            return fail_nomem(c);
        for (size_t i = 0; i < n; i++) {
            char sub[KEYPATH_MAX];
            join_index(sub, sizeof(sub), kp, i);
            if ((rc = get_str(c, sub, json_object_array_get_idx(f, i), 64, &s)) < 0)
                return rc;
            if (!chars_ok(s, "_"))
                return fail(c, sub, "\"%s\": use letters, digits and '_' only", s);
            for (size_t j = 0; j < i; j++)
                if (strcmp(b->capture[j], s) == 0)
                    return fail(c, sub, "duplicate capture name \"%s\"", s);
            b->n_capture = i + 1;
            if ((rc = dup_str(c, s, &b->capture[i])) < 0)
                return rc;
        }
    }
    return 0;
}

static int parse_per_board(struct ctx *c, const char *path, struct config_profile *p,
                           json_object *v)
{
    static const char *const keys[] = {"name", "offset", "dir", NULL};
    int rc;
    if ((rc = want_array(c, path, v)) < 0)
        return rc;
    size_t n = json_object_array_length(v);
    if (n > CONFIG_MAX_PER_BOARD)
        return fail(c, path, "at most %d per-board regions (got %zu)", CONFIG_MAX_PER_BOARD, n);
    p->per_board = calloc(n ? n : 1, sizeof(*p->per_board));
    if (!p->per_board)
        return fail_nomem(c);
    for (size_t i = 0; i < n; i++) {
        char ep[KEYPATH_MAX], kp[KEYPATH_MAX];
        join_index(ep, sizeof(ep), path, i);
        json_object *e = json_object_array_get_idx(v, i), *f;
        struct config_per_board *pb = &p->per_board[i];
        p->n_per_board = i + 1;
        if ((rc = want_object(c, ep, e)) < 0 || (rc = check_keys(c, ep, e, keys)) < 0)
            return rc;
        const char *s;
        join_key(kp, sizeof(kp), ep, "name");
        if (!json_object_object_get_ex(e, "name", &f))
            return fail(c, kp, "missing (the pool's name, e.g. \"nvs\")");
        if ((rc = get_str(c, kp, f, 33, &s)) < 0)
            return rc;
        if (!*s || !chars_ok(s, "_-"))
            return fail(c, kp, "\"%s\": use letters, digits, '_' and '-' only", s);
        for (size_t j = 0; j < i; j++)
            if (strcmp(p->per_board[j].name, s) == 0)
                return fail(c, kp, "duplicate pool name \"%s\"", s);
        if ((rc = dup_str(c, s, &pb->name)) < 0)
            return rc;
        join_key(kp, sizeof(kp), ep, "offset");
        if (!json_object_object_get_ex(e, "offset", &f))
            return fail(c, kp, "missing (the flash offset, e.g. \"0x9000\")");
        long long off = -1;
        if (json_object_is_type(f, json_type_string)) {
            const char *os = json_object_get_string(f);
            char *end = NULL;
            errno = 0;
            if ((os[0] == '0' && (os[1] == 'x' || os[1] == 'X')) && os[2])
                off = strtoll(os + 2, &end, 16);
            if (!end || *end || errno)
                off = -1;
        } else if (json_object_is_type(f, json_type_int)) {
            off = json_object_get_int64(f);
        }
        if (off < 0 || off > 0x7FFFFFFF || off % 4096)
            return fail(c, kp, "must be a flash offset in 0x hex, 4 KiB aligned (e.g. \"0x9000\")");
        pb->offset = (uint32_t)off;
        for (size_t j = 0; j < i; j++)
            if (p->per_board[j].offset == pb->offset)
                return fail(c, kp, "0x%x is already the offset of pool \"%s\"", pb->offset,
                            p->per_board[j].name);
        join_key(kp, sizeof(kp), ep, "dir");
        if (!json_object_object_get_ex(e, "dir", &f))
            return fail(c, kp, "missing (the directory holding one .bin file per board)");
        if ((rc = get_path(c, kp, f, &pb->dir)) < 0)
            return rc;
    }
    return 0;
}

static int parse_profile(struct ctx *c, const char *path, struct config_profile *p, json_object *v)
{
    static const char *const keys[] = {
        "firmware",  "erase_all",    "baud",           "baud_probe_after", "stub",
        "compress",  "verify",       "skip_if_same",   "boot_check",       "retries",
        "after",     "ota_firmware", "require_signed", "public_key",       "ota_password",
        "per_board", "checkin_auth", "diff",           "serial",           NULL};
    int rc;
    char kp[KEYPATH_MAX];
    json_object *f;
    long long x;
    if ((rc = want_object(c, path, v)) < 0 || (rc = check_keys(c, path, v, keys)) < 0)
        return rc;
    static const struct {
        const char *key;
        size_t off;
    } bools[] = {
        {"erase_all", offsetof(struct config_profile, erase_all)},
        {"stub", offsetof(struct config_profile, stub)},
        {"compress", offsetof(struct config_profile, compress)},
        {"verify", offsetof(struct config_profile, verify)},
        {"skip_if_same", offsetof(struct config_profile, skip_if_same)},
        {"diff", offsetof(struct config_profile, diff)},
    };
    for (size_t i = 0; i < sizeof(bools) / sizeof(bools[0]); i++) {
        if (!json_object_object_get_ex(v, bools[i].key, &f))
            continue;
        join_key(kp, sizeof(kp), path, bools[i].key);
        if ((rc = get_bool(c, kp, f, (bool *)((char *)p + bools[i].off))) < 0)
            return rc;
    }
    if (json_object_object_get_ex(v, "baud", &f)) {
        join_key(kp, sizeof(kp), path, "baud");
        if (json_object_is_type(f, json_type_string) &&
            strcmp(json_object_get_string(f), "auto") == 0) {
            p->baud_auto = true;
            p->baud = 0;
        } else if (json_object_is_type(f, json_type_string)) {
            return fail(c, kp, "must be an integer from 9600 to 5000000 or \"auto\" (got \"%s\")",
                        json_object_get_string(f));
        } else if ((rc = get_int(c, kp, f, 9600, 5000000, &x)) < 0) {
            return rc;
        } else {
            p->baud = (uint32_t)x;
        }
    }
    if (json_object_object_get_ex(v, "baud_probe_after", &f)) {
        join_key(kp, sizeof(kp), path, "baud_probe_after");
        if ((rc = get_int(c, kp, f, 0, 100000, &x)) < 0)
            return rc;
        p->baud_probe_after = (int)x;
    }
    if (json_object_object_get_ex(v, "retries", &f)) {
        join_key(kp, sizeof(kp), path, "retries");
        if ((rc = get_int(c, kp, f, 0, 10, &x)) < 0)
            return rc;
        p->retries = (int)x;
    }
    if (json_object_object_get_ex(v, "after", &f)) {
        const char *s;
        join_key(kp, sizeof(kp), path, "after");
        if ((rc = get_str(c, kp, f, 32, &s)) < 0)
            return rc;
        int a = esp_after_from_string(s);
        if (a < 0)
            return fail(c, kp,
                        "must be \"hard-reset\", \"soft-reset\", \"no-reset\" or "
                        "\"no-reset-stub\" (got \"%s\")",
                        s);
        p->after = (enum esp_after)a;
    }
    if (json_object_object_get_ex(v, "firmware", &f)) {
        join_key(kp, sizeof(kp), path, "firmware");
        if ((rc = parse_firmware_map(c, kp, &p->firmware, &p->n_firmware, f)) < 0)
            return rc;
    }
    if (json_object_object_get_ex(v, "ota_firmware", &f)) {
        join_key(kp, sizeof(kp), path, "ota_firmware");
        if ((rc = parse_firmware_map(c, kp, &p->ota_firmware, &p->n_ota_firmware, f)) < 0)
            return rc;
    }
    if (json_object_object_get_ex(v, "require_signed", &f)) {
        join_key(kp, sizeof(kp), path, "require_signed");
        if ((rc = get_bool(c, kp, f, &p->require_signed)) < 0)
            return rc;
    }
    if (json_object_object_get_ex(v, "public_key", &f)) {
        join_key(kp, sizeof(kp), path, "public_key");
        if ((rc = get_path(c, kp, f, &p->public_key)) < 0)
            return rc;
    }
    if (json_object_object_get_ex(v, "ota_password", &f)) {
        const char *s;
        join_key(kp, sizeof(kp), path, "ota_password");
        if ((rc = get_str(c, kp, f, 128, &s)) < 0 || (rc = dup_str(c, s, &p->ota_password)) < 0)
            return rc;
    }
    if (json_object_object_get_ex(v, "checkin_auth", &f)) {
        join_key(kp, sizeof(kp), path, "checkin_auth");
        if ((rc = parse_checkin_auth(c, kp, p, f)) < 0)
            return rc;
    }
    if (p->require_signed && !p->public_key) {
        join_key(kp, sizeof(kp), path, "require_signed");
        return fail(c, kp,
                    "is true but no public_key is set (a PEM RSA public key file to verify "
                    "signed images with)");
    }
    if (json_object_object_get_ex(v, "boot_check", &f)) {
        join_key(kp, sizeof(kp), path, "boot_check");
        if ((rc = parse_boot_check(c, kp, &p->boot_check, f)) < 0)
            return rc;
    }
    if (json_object_object_get_ex(v, "per_board", &f)) {
        join_key(kp, sizeof(kp), path, "per_board");
        if ((rc = parse_per_board(c, kp, p, f)) < 0)
            return rc;
    }
    char sk[32], why[256];
    if (json_object_object_get_ex(v, "serial", &f)) {
        join_key(kp, sizeof(kp), path, "serial");
        if ((rc = config_serial_parse(f, &p->serial, sk, sizeof(sk), why, sizeof(why))) < 0) {
            char sp[KEYPATH_MAX];
            join_key(sp, sizeof(sp), kp, sk);
            return rc == -ENOMEM ? fail_nomem(c) : fail(c, sk[0] ? sp : kp, "%s", why);
        }
    }
    if (config_serial_check_profile(p, sk, sizeof(sk), why, sizeof(why)) < 0) {
        join_key(kp, sizeof(kp), path, sk);
        return fail(c, kp, "%s", why);
    }
    if (p->erase_all && !p->stub) {
        join_key(kp, sizeof(kp), path, "erase_all");
        return fail(c, kp, "erasing the whole chip needs the flasher stub, but stub is false");
    }
    return 0;
}

static int parse_profiles(struct ctx *c, struct config *cfg, json_object *v)
{
    int rc = want_object(c, "profiles", v);
    if (rc < 0)
        return rc;
    size_t n = (size_t)json_object_object_length(v);
    cfg->profiles = calloc(n ? n : 1, sizeof(*cfg->profiles));
    if (!cfg->profiles)
        return fail_nomem(c);
    json_object_object_foreach(v, name, pv)
    {
        char kp[KEYPATH_MAX];
        join_key(kp, sizeof(kp), "profiles", name);
        struct config_profile *p = &cfg->profiles[cfg->n_profiles];
        profile_defaults(p);
        cfg->n_profiles++;
        if (!*name || strlen(name) > 64 || !chars_ok(name, "_-"))
            return fail(c, kp,
                        "profile names may hold letters, digits, '_' and '-' only (1 to "
                        "64 characters)");
        if ((rc = dup_str(c, name, &p->name)) < 0 || (rc = parse_profile(c, kp, p, pv)) < 0)
            return rc;
    }
    return 0;
}

/* ---- top level ----------------------------------------------------------------- */

static void offset_to_line_col(const char *s, size_t off, size_t *line, size_t *col)
{
    *line = 1;
    *col = 1;
    for (size_t i = 0; i < off; i++) {
        if (s[i] == '\n') {
            (*line)++;
            *col = 1;
        } else {
            (*col)++;
        }
    }
}

static int parse_tree(struct ctx *c, const char *json, size_t len, json_object **out)
{
    if (len > MAX_CONFIG_BYTES)
        return fail(c, NULL, "file too large (%zu bytes; a configuration is a few KiB)", len);
    if (len > INT_MAX)
        return fail(c, NULL, "file too large");
    json_tokener *tok = json_tokener_new();
    if (!tok)
        return fail_nomem(c);
    json_object *root = json_tokener_parse_ex(tok, json, (int)len);
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    size_t end = json_tokener_get_parse_end(tok);
    if (!root && jerr == json_tokener_continue) {
        /* Input ended inside a value; ask the tokener to finish. */
        json_tokener_free(tok);
        size_t nonblank = 0;
        for (size_t i = 0; i < len; i++)
            if (!isspace((unsigned char)json[i]))
                nonblank++;
        if (nonblank == 0)
            return fail(c, NULL, "empty file (use {} for all defaults)");
        size_t line, col;
        offset_to_line_col(json, len, &line, &col);
        return fail(c, NULL,
                    "JSON syntax error at line %zu, column %zu: unexpected end of file "
                    "(unclosed object, list or string)",
                    line, col);
    }
    json_tokener_free(tok);
    if (!root || jerr != json_tokener_success) {
        json_object_put(root);
        size_t line, col;
        if (end > len)
            end = len;
        offset_to_line_col(json, end, &line, &col);
        return fail(c, NULL, "JSON syntax error at line %zu, column %zu: %s", line, col,
                    json_tokener_error_desc(jerr));
    }
    for (size_t i = end; i < len; i++) {
        if (!isspace((unsigned char)json[i])) {
            size_t line, col;
            offset_to_line_col(json, i, &line, &col);
            json_object_put(root);
            return fail(c, NULL,
                        "JSON syntax error at line %zu, column %zu: text after the end of "
                        "the top-level object",
                        line, col);
        }
    }
    if (!json_object_is_type(root, json_type_object)) {
        char got[96];
        json_msg_describe(root, got, sizeof(got));
        json_object_put(root);
        return fail(c, NULL, "the top level must be an object { ... } (%s)", got);
    }
    *out = root;
    return 0;
}

/* "records": {"backend": "sqlite" | "postgresql", "dsn": "host=... dbname=... user=..."}. */
static int parse_records(struct ctx *c, struct config *cfg, json_object *v)
{
    static const char *const keys[] = {"backend", "dsn", NULL};
    int rc;
    json_object *f;
    const char *s;
    if ((rc = want_object(c, "records", v)) < 0 || (rc = check_keys(c, "records", v, keys)) < 0)
        return rc;
    if (json_object_object_get_ex(v, "backend", &f)) {
        if ((rc = get_str(c, "records.backend", f, 32, &s)) < 0)
            return rc;
        if (strcmp(s, "sqlite") != 0 && strcmp(s, "postgresql") != 0)
            return fail(c, "records.backend",
                        "must be \"sqlite\" (the default: <data_dir>/records.db) or "
                        "\"postgresql\" (with records.dsn) (got \"%s\")",
                        s);
        cfg->records.postgresql = strcmp(s, "postgresql") == 0;
    }
    if (json_object_object_get_ex(v, "dsn", &f)) {
        if ((rc = get_str(c, "records.dsn", f, 1024, &s)) < 0)
            return rc;
        for (const char *p = s; *p; p++)
            if ((unsigned char)*p < 0x20)
                return fail(c, "records.dsn", "must not contain control characters");
        if ((rc = dup_str(c, s, &cfg->records.dsn)) < 0)
            return rc;
    }
    if (cfg->records.postgresql && !cfg->records.dsn)
        return fail(c, "records.dsn",
                    "missing: backend \"postgresql\" needs a libpq connection string, e.g. "
                    "\"host=db1 dbname=espstation user=station\"");
    if (!cfg->records.postgresql && cfg->records.dsn)
        return fail(c, "records.dsn", "is for backend \"postgresql\" only (backend is sqlite)");
    return 0;
}

/* "line": {"heartbeat_s": 5, "gone_after_s": 15, "address": "http://st1:8080"}. */
static int parse_line(struct ctx *c, struct config *cfg, json_object *v)
{
    static const char *const keys[] = {"heartbeat_s", "gone_after_s", "address", NULL};
    int rc;
    json_object *f;
    long long x;
    const char *s;
    if ((rc = want_object(c, "line", v)) < 0 || (rc = check_keys(c, "line", v, keys)) < 0)
        return rc;
    if (json_object_object_get_ex(v, "heartbeat_s", &f)) {
        if ((rc = get_int(c, "line.heartbeat_s", f, 1, 3600, &x)) < 0)
            return rc;
        cfg->line.heartbeat_s = (int)x;
    }
    cfg->line.gone_after_s = 3 * cfg->line.heartbeat_s;
    if (json_object_object_get_ex(v, "gone_after_s", &f)) {
        if ((rc = get_int(c, "line.gone_after_s", f, cfg->line.heartbeat_s + 1, 86400, &x)) < 0)
            return rc;
        cfg->line.gone_after_s = (int)x;
    }
    if (json_object_object_get_ex(v, "address", &f)) {
        if ((rc = get_str(c, "line.address", f, 255, &s)) < 0)
            return rc;
        if (strncmp(s, "http://", 7) != 0 && strncmp(s, "https://", 8) != 0)
            return fail(c, "line.address",
                        "must be this station's REST base URL, \"http://HOST:PORT\" or "
                        "\"https://HOST:PORT\" (got \"%s\")",
                        s);
        for (const char *p = s; *p; p++)
            if ((unsigned char)*p <= 0x20 || *p == '"' || *p == '<' || *p == '>')
                return fail(c, "line.address", "must not contain spaces, quotes or < >");
        if ((rc = dup_str(c, s, &cfg->line.address)) < 0)
            return rc;
    }
    return 0;
}

static int parse_config(struct ctx *c, struct config *cfg, json_object *root)
{
    static const char *const keys[] = {"data_dir", "listen",   "max_parallel",   "bridges",
                                       "udev_tag", "slots",    "ports",          "stub_dir",
                                       "api",      "profiles", "active_profile", "ota",
                                       "records",  "station",  "line",           NULL};
    int rc;
    json_object *f;
    long long x;
    if ((rc = check_keys(c, NULL, root, keys)) < 0)
        return rc;
    if (json_object_object_get_ex(root, "data_dir", &f) &&
        (rc = get_path(c, "data_dir", f, &cfg->data_dir)) < 0)
        return rc;
    if (json_object_object_get_ex(root, "stub_dir", &f) &&
        (rc = get_path(c, "stub_dir", f, &cfg->stub_dir)) < 0)
        return rc;
    if (json_object_object_get_ex(root, "listen", &f) && (rc = parse_listen(c, cfg, f)) < 0)
        return rc;
    if (json_object_object_get_ex(root, "max_parallel", &f)) {
        if ((rc = get_int(c, "max_parallel", f, 1, 256, &x)) < 0)
            return rc;
        cfg->max_parallel = (int)x;
    }
    if (json_object_object_get_ex(root, "bridges", &f) && (rc = parse_bridges(c, cfg, f)) < 0)
        return rc;
    if (json_object_object_get_ex(root, "udev_tag", &f)) {
        const char *s;
        if ((rc = get_str(c, "udev_tag", f, 64, &s)) < 0)
            return rc;
        if (!chars_ok(s, "_"))
            return fail(c, "udev_tag", "\"%s\": use letters, digits and '_' only (udev tag)", s);
        if ((rc = dup_str(c, s, &cfg->udev_tag)) < 0)
            return rc;
    }
    if (json_object_object_get_ex(root, "slots", &f) && (rc = parse_slots(c, cfg, f)) < 0)
        return rc;
    if (json_object_object_get_ex(root, "ports", &f) && (rc = parse_ports(c, cfg, f)) < 0)
        return rc;
    if (json_object_object_get_ex(root, "api", &f) && (rc = parse_api(c, cfg, f)) < 0)
        return rc;
    if (json_object_object_get_ex(root, "ota", &f) && (rc = parse_ota(c, cfg, f)) < 0)
        return rc;
    if (json_object_object_get_ex(root, "records", &f) && (rc = parse_records(c, cfg, f)) < 0)
        return rc;
    if (json_object_object_get_ex(root, "line", &f) && (rc = parse_line(c, cfg, f)) < 0)
        return rc;
    if (json_object_object_get_ex(root, "station", &f)) {
        const char *s;
        if ((rc = get_str(c, "station", f, RECORDS_STATION_LEN, &s)) < 0)
            return rc;
        if (!records_station_name_ok(s))
            return fail(c, "station",
                        "\"%s\": a station name is 1 to %d of A-Z a-z 0-9 . _ - (unique in "
                        "the line)",
                        s, RECORDS_STATION_LEN - 1);
        if ((rc = dup_str(c, s, &cfg->station)) < 0)
            return rc;
    }
    if (json_object_object_get_ex(root, "profiles", &f) && (rc = parse_profiles(c, cfg, f)) < 0)
        return rc;
    if (json_object_object_get_ex(root, "active_profile", &f) &&
        !json_object_is_type(f, json_type_null)) {
        const char *s;
        if ((rc = get_str(c, "active_profile", f, 64, &s)) < 0)
            return rc;
        if (!config_profile(cfg, s)) {
            char list[256] = "";
            size_t used = 0;
            for (size_t i = 0; i < cfg->n_profiles && used < sizeof(list); i++)
                used += (size_t)snprintf(list + used, sizeof(list) - used, "%s%s", i ? ", " : "",
                                         cfg->profiles[i].name);
            return fail(c, "active_profile", "no profile named \"%s\" (profiles: %s)", s,
                        cfg->n_profiles ? list : "none defined");
        }
        if ((rc = dup_str(c, s, &cfg->active_profile)) < 0)
            return rc;
    } else if (cfg->n_profiles == 1) {
        /* One profile and no choice made: that one is meant. */
        if ((rc = dup_str(c, cfg->profiles[0].name, &cfg->active_profile)) < 0)
            return rc;
    }
    return 0;
}

/*
 * Merges the overlay (an object with optional "profiles": name -> profile,
 * each replacing or adding one profile, and "active_profile") into root, so
 * the result is validated as one config. The overlay comes from the daemon
 * itself (REST API profile changes), not from a file.
 */
static int apply_overlay(struct ctx *c, json_object *root)
{
    json_object *ov = json_tokener_parse(c->overlay);
    if (!ov || !json_object_is_type(ov, json_type_object)) {
        json_object_put(ov);
        return fail(c, NULL, "internal: overlay is not a JSON object");
    }
    json_object *profs, *active;
    if (json_object_object_get_ex(ov, "profiles", &profs) &&
        json_object_is_type(profs, json_type_object)) {
        json_object *dst;
        if (!json_object_object_get_ex(root, "profiles", &dst) ||
            !json_object_is_type(dst, json_type_object)) {
            dst = json_object_new_object();
            if (!dst) {
                json_object_put(ov);
                return fail_nomem(c);
            }
            json_object_object_add(root, "profiles", dst);
        }
        json_object_object_foreach(profs, name, prof)
        {
            json_object_object_add(dst, name, json_object_get(prof));
        }
    }
    if (json_object_object_get_ex(ov, "active_profile", &active))
        json_object_object_add(root, "active_profile", json_object_get(active));
    json_object_put(ov);
    return 0;
}

/*
 * The overlay file (<data_dir>/profiles.json, written by the daemon): checks
 * its shape only; whether the profiles in it are valid is decided when it is
 * merged over the config file (config_load_overlay).
 */
int config_overlay_check(const char *text, size_t len, const char *origin, char **norm, char *err,
                         size_t errlen)
{
    if (norm)
        *norm = NULL;
    if (err && errlen)
        err[0] = '\0';
    struct ctx c = {.origin = origin ? origin : "profiles", .err = err, .errlen = errlen};
    if (!text)
        return fail(&c, NULL, "no text given");
    json_object *root = NULL;
    int rc = parse_tree(&c, text, len, &root);
    if (rc < 0)
        return rc;
    static const char *const keys[] = {"format", "version", "profiles", "active_profile", NULL};
    json_object *f, *profs = NULL, *active = NULL;
    const char *s;
    if ((rc = want_object(&c, NULL, root)) < 0 || (rc = check_keys(&c, NULL, root, keys)) < 0)
        goto out;
    if (!json_object_object_get_ex(root, "format", &f) ||
        !json_object_is_type(f, json_type_string) ||
        strcmp(json_object_get_string(f), CONFIG_OVERLAY_FORMAT) != 0) {
        rc = fail(&c, "format", "must be \"%s\" (not a profile overlay file)",
                  CONFIG_OVERLAY_FORMAT);
        goto out;
    }
    if (!json_object_object_get_ex(root, "version", &f) || !json_object_is_type(f, json_type_int) ||
        json_object_get_int64(f) != 1) {
        rc = fail(&c, "version", "must be 1");
        goto out;
    }
    if (json_object_object_get_ex(root, "profiles", &profs)) {
        if ((rc = want_object(&c, "profiles", profs)) < 0)
            goto out;
        json_object_object_foreach(profs, name, prof)
        {
            char kp[KEYPATH_MAX];
            join_key(kp, sizeof(kp), "profiles", name);
            if (strlen(name) == 0 || strlen(name) > 64 || !chars_ok(name, "_-")) {
                rc = fail(&c, kp, "not a valid profile name");
                goto out;
            }
            if ((rc = want_object(&c, kp, prof)) < 0)
                goto out;
        }
    }
    if (json_object_object_get_ex(root, "active_profile", &active) && active &&
        (rc = get_str(&c, "active_profile", active, 64, &s)) < 0)
        goto out;
    if (norm) {
        json_object *o = json_object_new_object();
        if (!o) {
            rc = fail_nomem(&c);
            goto out;
        }
        if (profs)
            json_object_object_add(o, "profiles", json_object_get(profs));
        if (json_object_object_get_ex(root, "active_profile", &active))
            json_object_object_add(o, "active_profile", json_object_get(active));
        const char *t = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
        *norm = t ? strdup(t) : NULL;
        json_object_put(o);
        if (!*norm)
            rc = fail_nomem(&c);
    }
out:
    json_object_put(root);
    return rc;
}

static int load(struct ctx *c, const char *json, size_t len, const char *path, struct config **out)
{
    struct config *cfg = calloc(1, sizeof(*cfg));
    if (!cfg)
        return fail_nomem(c);
    int rc = set_defaults(c, cfg);
    if (rc == 0 && path && (cfg->path = strdup(path)) == NULL)
        rc = fail_nomem(c);
    if (rc == 0 && (json || c->overlay)) {
        json_object *root = NULL;
        if (json)
            rc = parse_tree(c, json, len, &root);
        else if ((root = json_object_new_object()) == NULL)
            rc = fail_nomem(c);
        if (rc == 0 && c->overlay)
            rc = apply_overlay(c, root);
        if (rc == 0)
            rc = parse_config(c, cfg, root);
        json_object_put(root);
    }
    if (rc < 0) {
        config_free(cfg);
        return rc;
    }
    *out = cfg;
    return 0;
}

int config_load_string(const char *json, size_t len, const char *origin, struct config **out,
                       char *err, size_t errlen)
{
    if (out)
        *out = NULL;
    if (err && errlen)
        err[0] = '\0';
    struct ctx c = {.origin = origin ? origin : "config", .err = err, .errlen = errlen};
    if (!out)
        return -EINVAL;
    if (!json)
        return fail(&c, NULL, "no text given");
    return load(&c, json, len, NULL, out);
}

int config_load(const char *path, struct config **out, char *err, size_t errlen)
{
    return config_load_overlay(path, NULL, out, err, errlen);
}

int config_load_overlay(const char *path, const char *overlay, struct config **out, char *err,
                        size_t errlen)
{
    if (out)
        *out = NULL;
    if (err && errlen)
        err[0] = '\0';
    if (!out)
        return -EINVAL;
    struct ctx c = {.origin = "config", .err = err, .errlen = errlen, .overlay = overlay};
    if (!path)
        return load(&c, NULL, 0, NULL, out);

    char origin[512];
    snprintf(origin, sizeof(origin), "config %s", path);
    c.origin = origin;
    FILE *f = fopen(path, "rb");
    if (!f) {
        int e = errno;
        if (err && errlen)
            snprintf(err, errlen, "%s: cannot open: %s", origin, strerror(e));
        return e == ENOENT || e == EACCES ? -e : -EIO;
    }
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int rc = 0;
    for (;;) {
        if (len == cap) {
            if (cap > MAX_CONFIG_BYTES) {
                rc = fail(&c, NULL, "file too large (more than %u bytes)", MAX_CONFIG_BYTES);
                break;
            }
            cap = cap ? cap * 2 : 8192;
            char *nb = realloc(buf, cap);
            if (!nb) {
                rc = fail_nomem(&c);
                break;
            }
            buf = nb;
        }
        size_t n = fread(buf + len, 1, cap - len, f);
        if (n == 0) {
            if (ferror(f)) {
                if (err && errlen)
                    snprintf(err, errlen, "%s: read error: %s", origin, strerror(errno));
                rc = -EIO;
            }
            break;
        }
        len += n;
    }
    fclose(f);

    char *dir = NULL;
    if (rc == 0) {
        const char *slash = strrchr(path, '/');
        dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
        if (!dir)
            rc = fail_nomem(&c);
        else if (strcmp(dir, ".") == 0) {
            /* Relative to the working directory: keep relative paths as they are. */
            free(dir);
            dir = NULL;
        }
    }
    if (rc == 0) {
        c.base_dir = dir;
        rc = load(&c, buf ? buf : "", len, path, out);
    }
    free(dir);
    free(buf);
    return rc;
}

static void profile_free(struct config_profile *p)
{
    free(p->name);
    free(p->checkin_user);
    free(p->checkin_password);
    for (size_t i = 0; i < p->n_firmware; i++) {
        free(p->firmware[i].name);
        free(p->firmware[i].version);
    }
    free(p->firmware);
    for (size_t i = 0; i < p->n_ota_firmware; i++) {
        free(p->ota_firmware[i].name);
        free(p->ota_firmware[i].version);
    }
    free(p->ota_firmware);
    free(p->public_key);
    free(p->ota_password);
    for (size_t i = 0; i < p->n_per_board; i++) {
        free(p->per_board[i].name);
        free(p->per_board[i].dir);
    }
    free(p->per_board);
    free(p->boot_check.pattern);
    for (size_t i = 0; i < p->boot_check.n_capture; i++)
        free(p->boot_check.capture[i]);
    free(p->boot_check.capture);
    config_serial_free(&p->serial);
}

void config_free(struct config *cfg)
{
    if (!cfg)
        return;
    free(cfg->path);
    free(cfg->data_dir);
    free(cfg->records.dsn);
    free(cfg->line.address);
    free(cfg->listen);
    free(cfg->listen_host);
    for (size_t i = 0; i < cfg->n_bridges; i++)
        free(cfg->bridges[i].name);
    free(cfg->bridges);
    free(cfg->udev_tag);
    for (size_t i = 0; i < cfg->n_slots; i++) {
        free(cfg->slots[i].id_path);
        free(cfg->slots[i].label);
    }
    free(cfg->slots);
    for (size_t i = 0; i < cfg->n_ports; i++) {
        free(cfg->ports[i].uri);
        free(cfg->ports[i].label);
    }
    free(cfg->ports);
    free(cfg->stub_dir);
    free(cfg->api.token);
    free(cfg->api.tls.cert);
    free(cfg->api.tls.key);
    free(cfg->ota.tls.cert);
    free(cfg->ota.tls.key);
    for (size_t i = 0; i < cfg->api.n_allowed_hosts; i++)
        free(cfg->api.allowed_hosts[i]);
    free(cfg->api.allowed_hosts);
    free(cfg->ota.listen_host);
    free(cfg->ota.webform_user);
    for (size_t i = 0; i < cfg->n_profiles; i++)
        profile_free(&cfg->profiles[i]);
    free(cfg->profiles);
    free(cfg->active_profile);
    free(cfg->station);
    free(cfg);
}

/* ---- lookups ------------------------------------------------------------------- */

const struct config_profile *config_profile(const struct config *cfg, const char *name)
{
    if (!cfg)
        return NULL;
    if (!name)
        name = cfg->active_profile;
    if (!name)
        return NULL;
    for (size_t i = 0; i < cfg->n_profiles; i++)
        if (cfg->profiles[i].name && strcmp(cfg->profiles[i].name, name) == 0)
            return &cfg->profiles[i];
    return NULL;
}

const struct config_firmware_ref *config_profile_firmware(const struct config_profile *p,
                                                          enum esp_chip chip)
{
    if (!p)
        return NULL;
    for (size_t i = 0; i < p->n_firmware; i++)
        if (p->firmware[i].chip == chip && p->firmware[i].name)
            return &p->firmware[i];
    return NULL;
}

const struct config_firmware_ref *config_profile_ota_firmware(const struct config_profile *p,
                                                              enum esp_chip chip)
{
    if (!p)
        return NULL;
    for (size_t i = 0; i < p->n_ota_firmware; i++)
        if (p->ota_firmware[i].chip == chip && p->ota_firmware[i].name)
            return &p->ota_firmware[i];
    return config_profile_firmware(p, chip);
}

const char *config_slot_label(const struct config *cfg, const char *id_path)
{
    if (!cfg || !id_path)
        return NULL;
    for (size_t i = 0; i < cfg->n_slots; i++)
        if (cfg->slots[i].id_path && strcmp(cfg->slots[i].id_path, id_path) == 0)
            return cfg->slots[i].label;
    return NULL;
}

bool config_is_known_bridge(const struct config *cfg, uint16_t vid, uint16_t pid)
{
    if (!cfg)
        return false;
    for (size_t i = 0; i < cfg->n_bridges; i++)
        if (cfg->bridges[i].vid == vid && cfg->bridges[i].pid == pid)
            return true;
    return false;
}
