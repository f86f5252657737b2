/*
 * config: load and validate espstationd's JSON configuration.
 *
 * Owns: the defaults, the walk over the top-level keys (each section is parsed by
 * its file: config_bench.c, config_server.c, config_profiles.c; the JSON plumbing
 * and key-path messages are config_json.c's), the profile overlay the daemon
 * writes, reading the file, freeing and the lookups. The tree is walked once;
 * every value is checked for type and range before it is copied into the struct
 * config, and every object is checked for unknown keys first so a typo is reported
 * as a typo (with a "did you mean" when the key is close to a valid one).
 * Input is untrusted text (it is fuzzed): nothing here asserts on content.
 */
#include "config_priv.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "bridges.h"
#include "records.h"

/* ---- defaults ------------------------------------------------------------------ */

static int set_defaults(struct cfg_ctx *c, struct config *cfg)
{
    const char *xdg = getenv("XDG_STATE_HOME");
    if (xdg && xdg[0] == '/') {
        if (asprintf(&cfg->data_dir, "%s/espstation", xdg) < 0) {
            cfg->data_dir = NULL;
            return cfg_fail_nomem(c);
        }
    } else if (cfg_dup_str(c, "./espstation-data", &cfg->data_dir) < 0) {
        return -ENOMEM;
    }
    if (cfg_dup_str(c, CONFIG_DEFAULT_LISTEN, &cfg->listen) < 0 ||
        cfg_dup_str(c, "127.0.0.1", &cfg->listen_host) < 0 ||
        cfg_dup_str(c, CONFIG_DEFAULT_UDEV_TAG, &cfg->udev_tag) < 0)
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
        return cfg_fail_nomem(c);
    for (size_t i = 0; i < n; i++) {
        /* one per id: its row for any product string ("CP210x", not "CP2102N") */
        if (known[i].product || config_is_known_bridge(cfg, known[i].vid, known[i].pid))
            continue;
        struct config_bridge *b = &cfg->bridges[cfg->n_bridges++];
        b->vid = known[i].vid;
        b->pid = known[i].pid;
        b->reset = -1;
        if (cfg_dup_str(c, known[i].name, &b->name) < 0)
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
    if (cfg_dup_str(c, "admin", &cfg->ota.webform_user) < 0)
        return -ENOMEM;
    return 0;
}

/* ---- top level ----------------------------------------------------------------- */

static int parse_config(struct cfg_ctx *c, struct config *cfg, json_object *root)
{
    static const char *const keys[] = {"data_dir", "listen",   "max_parallel",   "bridges",
                                       "udev_tag", "slots",    "ports",          "stub_dir",
                                       "api",      "profiles", "active_profile", "ota",
                                       "records",  "station",  "line",           NULL};
    int rc;
    json_object *f;
    long long x;
    if ((rc = cfg_check_keys(c, NULL, root, keys)) < 0)
        return rc;
    if (json_object_object_get_ex(root, "data_dir", &f) &&
        (rc = cfg_get_path(c, "data_dir", f, &cfg->data_dir)) < 0)
        return rc;
    if (json_object_object_get_ex(root, "stub_dir", &f) &&
        (rc = cfg_get_path(c, "stub_dir", f, &cfg->stub_dir)) < 0)
        return rc;
    if (json_object_object_get_ex(root, "listen", &f) && (rc = cfg_parse_listen(c, cfg, f)) < 0)
        return rc;
    if (json_object_object_get_ex(root, "max_parallel", &f)) {
        if ((rc = cfg_get_int(c, "max_parallel", f, 1, 256, &x)) < 0)
            return rc;
        cfg->max_parallel = (int)x;
    }
    if (json_object_object_get_ex(root, "bridges", &f) && (rc = cfg_parse_bridges(c, cfg, f)) < 0)
        return rc;
    if (json_object_object_get_ex(root, "udev_tag", &f)) {
        const char *s;
        if ((rc = cfg_get_str(c, "udev_tag", f, 64, &s)) < 0)
            return rc;
        if (!cfg_chars_ok(s, "_"))
            return cfg_fail(c, "udev_tag", "\"%s\": use letters, digits and '_' only (udev tag)",
                            s);
        if ((rc = cfg_dup_str(c, s, &cfg->udev_tag)) < 0)
            return rc;
    }
    if (json_object_object_get_ex(root, "slots", &f) && (rc = cfg_parse_slots(c, cfg, f)) < 0)
        return rc;
    if (json_object_object_get_ex(root, "ports", &f) && (rc = cfg_parse_ports(c, cfg, f)) < 0)
        return rc;
    if (json_object_object_get_ex(root, "api", &f) && (rc = cfg_parse_api(c, cfg, f)) < 0)
        return rc;
    if (json_object_object_get_ex(root, "ota", &f) && (rc = cfg_parse_ota(c, cfg, f)) < 0)
        return rc;
    if (json_object_object_get_ex(root, "records", &f) && (rc = cfg_parse_records(c, cfg, f)) < 0)
        return rc;
    if (json_object_object_get_ex(root, "line", &f) && (rc = cfg_parse_line(c, cfg, f)) < 0)
        return rc;
    if (json_object_object_get_ex(root, "station", &f)) {
        const char *s;
        if ((rc = cfg_get_str(c, "station", f, RECORDS_STATION_LEN, &s)) < 0)
            return rc;
        if (!records_station_name_ok(s))
            return cfg_fail(c, "station",
                            "\"%s\": a station name is 1 to %d of A-Z a-z 0-9 . _ - (unique in "
                            "the line)",
                            s, RECORDS_STATION_LEN - 1);
        if ((rc = cfg_dup_str(c, s, &cfg->station)) < 0)
            return rc;
    }
    if (json_object_object_get_ex(root, "profiles", &f) && (rc = cfg_parse_profiles(c, cfg, f)) < 0)
        return rc;
    if (json_object_object_get_ex(root, "active_profile", &f) &&
        !json_object_is_type(f, json_type_null)) {
        const char *s;
        if ((rc = cfg_get_str(c, "active_profile", f, 64, &s)) < 0)
            return rc;
        if (!config_profile(cfg, s)) {
            char list[256] = "";
            size_t used = 0;
            for (size_t i = 0; i < cfg->n_profiles && used < sizeof(list); i++)
                used += (size_t)snprintf(list + used, sizeof(list) - used, "%s%s", i ? ", " : "",
                                         cfg->profiles[i].name);
            return cfg_fail(c, "active_profile", "no profile named \"%s\" (profiles: %s)", s,
                            cfg->n_profiles ? list : "none defined");
        }
        if ((rc = cfg_dup_str(c, s, &cfg->active_profile)) < 0)
            return rc;
    } else if (cfg->n_profiles == 1) {
        /* One profile and no choice made: that one is meant. */
        if ((rc = cfg_dup_str(c, cfg->profiles[0].name, &cfg->active_profile)) < 0)
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
static int apply_overlay(struct cfg_ctx *c, json_object *root)
{
    json_object *ov = json_tokener_parse(c->overlay);
    if (!ov || !json_object_is_type(ov, json_type_object)) {
        json_object_put(ov);
        return cfg_fail(c, NULL, "internal: overlay is not a JSON object");
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
                return cfg_fail_nomem(c);
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
    struct cfg_ctx c = {.origin = origin ? origin : "profiles", .err = err, .errlen = errlen};
    if (!text)
        return cfg_fail(&c, NULL, "no text given");
    json_object *root = NULL;
    int rc = cfg_parse_tree(&c, text, len, &root);
    if (rc < 0)
        return rc;
    static const char *const keys[] = {"format", "version", "profiles", "active_profile", NULL};
    json_object *f, *profs = NULL, *active = NULL;
    const char *s;
    if ((rc = cfg_want_object(&c, NULL, root)) < 0 ||
        (rc = cfg_check_keys(&c, NULL, root, keys)) < 0)
        goto out;
    if (!json_object_object_get_ex(root, "format", &f) ||
        !json_object_is_type(f, json_type_string) ||
        strcmp(json_object_get_string(f), CONFIG_OVERLAY_FORMAT) != 0) {
        rc = cfg_fail(&c, "format", "must be \"%s\" (not a profile overlay file)",
                      CONFIG_OVERLAY_FORMAT);
        goto out;
    }
    if (!json_object_object_get_ex(root, "version", &f) || !json_object_is_type(f, json_type_int) ||
        json_object_get_int64(f) != 1) {
        rc = cfg_fail(&c, "version", "must be 1");
        goto out;
    }
    if (json_object_object_get_ex(root, "profiles", &profs)) {
        if ((rc = cfg_want_object(&c, "profiles", profs)) < 0)
            goto out;
        json_object_object_foreach(profs, name, prof)
        {
            char kp[KEYPATH_MAX];
            cfg_join_key(kp, sizeof(kp), "profiles", name);
            if (strlen(name) == 0 || strlen(name) > 64 || !cfg_chars_ok(name, "_-")) {
                rc = cfg_fail(&c, kp, "not a valid profile name");
                goto out;
            }
            if ((rc = cfg_want_object(&c, kp, prof)) < 0)
                goto out;
        }
    }
    if (json_object_object_get_ex(root, "active_profile", &active) && active &&
        (rc = cfg_get_str(&c, "active_profile", active, 64, &s)) < 0)
        goto out;
    if (norm) {
        json_object *o = json_object_new_object();
        if (!o) {
            rc = cfg_fail_nomem(&c);
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
            rc = cfg_fail_nomem(&c);
    }
out:
    json_object_put(root);
    return rc;
}

static int load(struct cfg_ctx *c, const char *json, size_t len, const char *path,
                struct config **out)
{
    struct config *cfg = calloc(1, sizeof(*cfg));
    if (!cfg)
        return cfg_fail_nomem(c);
    int rc = set_defaults(c, cfg);
    if (rc == 0 && path && (cfg->path = strdup(path)) == NULL)
        rc = cfg_fail_nomem(c);
    if (rc == 0 && (json || c->overlay)) {
        json_object *root = NULL;
        if (json)
            rc = cfg_parse_tree(c, json, len, &root);
        else if ((root = json_object_new_object()) == NULL)
            rc = cfg_fail_nomem(c);
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
    struct cfg_ctx c = {.origin = origin ? origin : "config", .err = err, .errlen = errlen};
    if (!out)
        return -EINVAL;
    if (!json)
        return cfg_fail(&c, NULL, "no text given");
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
    struct cfg_ctx c = {.origin = "config", .err = err, .errlen = errlen, .overlay = overlay};
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
                rc = cfg_fail(&c, NULL, "file too large (more than %u bytes)", MAX_CONFIG_BYTES);
                break;
            }
            cap = cap ? cap * 2 : 8192;
            char *nb = realloc(buf, cap);
            if (!nb) {
                rc = cfg_fail_nomem(&c);
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
            rc = cfg_fail_nomem(&c);
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
        cfg_profile_free(&cfg->profiles[i]);
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
