/*
 * station_profiles: the profile overlay file (<data_dir>/profiles.json: the profile changes
 * made through the REST API, saved atomically, a corrupt or unreadable one moved aside) and
 * the station's profile calls for the web layer (put, delete, choose the active one). Split
 * from station.c; shares struct station through station_priv.h. Loop thread only.
 */
#include "station.h"
#include "station_priv.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "board_addr.h"
#include "buildimport.h"
#include "catalog.h"
#include "config.h"
#include "job.h"
#include "log.h"
#include "loop.h"
#include "ota.h"
#include "pool.h"
#include "records.h"
#include "slot.h"

#define PROFILES_FILE "profiles.json"
#define MAX_OVERLAY_BYTES (4u * 1024 * 1024)

/* ---- profile overlay file (REST API profile changes, <data_dir>/profiles.json) ---------- */

static void overlay_path(const struct station *st, char *buf, size_t len)
{
    snprintf(buf, len, "%s/%s", st->data_dir, PROFILES_FILE);
}

const char *station_profiles_file(const struct station *st, char *buf, size_t len)
{
    overlay_path(st, buf, len);
    return buf;
}

static void fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
}

/* Moves an unusable overlay file aside (<file>.bad-<time>) and says what to do. */
void st_quarantine_overlay(const struct station *st, const char *why)
{
    char path[PATH_MAX + 32], bad[PATH_MAX + 64], stamp[32];
    overlay_path(st, path, sizeof(path));
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    strftime(stamp, sizeof(stamp), "%Y%m%d-%H%M%S", &tm);
    snprintf(bad, sizeof(bad), "%s.bad-%s", path, stamp);
    for (int i = 1; i < 100 && access(bad, F_OK) == 0; i++)
        snprintf(bad, sizeof(bad), "%s.bad-%s-%d", path, stamp, i);
    if (rename(path, bad) != 0) {
        log_msg(LOG_LEVEL_ERROR,
                "profile changes file %s is unusable (%s) and cannot be moved aside: %s; "
                "using the config file's profiles; the next profile change through the API "
                "replaces it",
                path, why, strerror(errno));
        return;
    }
    fsync_dir(st->data_dir);
    log_msg(LOG_LEVEL_ERROR,
            "profile changes file %s is unusable (%s): moved aside to %s; using the config "
            "file's profiles. Make the changes again through the API (PUT "
            "/api/v1/profiles/...) or put them in the config file, then delete %s",
            path, why, bad, bad);
}

/*
 * Writes ov (the REST API's profile changes) to <data_dir>/profiles.json:
 * temp file (mode 0600: it can hold ota_password) + fsync + rename + fsync of
 * the directory, so a kill at any point leaves the old or the new file. No
 * changes left: the file is removed.
 */
static int save_overlay(const struct station *st, struct json_object *ov, char *err, size_t errlen)
{
    char path[PATH_MAX + 32], tmp[PATH_MAX + 48];
    overlay_path(st, path, sizeof(path));
    struct json_object *profs = NULL, *active = NULL;
    bool has_profs =
        json_object_object_get_ex(ov, "profiles", &profs) && json_object_object_length(profs) > 0;
    bool has_active = json_object_object_get_ex(ov, "active_profile", &active);
    if (!has_profs && !has_active) {
        if (unlink(path) != 0 && errno != ENOENT) {
            snprintf(err, errlen, "cannot remove %s: %s", path, strerror(errno));
            return -EIO;
        }
        fsync_dir(st->data_dir);
        return 0;
    }
    struct json_object *doc = st_jobj();
    if (!doc)
        return -ENOMEM;
    st_jset_str(doc, "format", CONFIG_OVERLAY_FORMAT);
    st_jset_int(doc, "version", 1);
    json_object_object_add(doc, "profiles", has_profs ? json_object_get(profs) : st_jobj());
    if (has_active)
        json_object_object_add(doc, "active_profile", json_object_get(active));
    const char *text = json_object_to_json_string_ext(doc, JSON_C_TO_STRING_PRETTY);
    snprintf(tmp, sizeof(tmp), "%s.tmp-XXXXXX", path);
    int fd = mkstemp(tmp); /* 0600 */
    int rc = 0;
    if (fd < 0) {
        snprintf(err, errlen, "cannot save the profile changes: cannot create %s: %s", tmp,
                 strerror(errno));
        json_object_put(doc);
        return -EIO;
    }
    size_t len = strlen(text), off = 0;
    while (off < len) {
        ssize_t n = write(fd, text + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            rc = -(n < 0 ? errno : EIO);
            break;
        }
        off += (size_t)n;
    }
    if (rc == 0 && (write(fd, "\n", 1) != 1 || fsync(fd) != 0))
        rc = -(errno ? errno : EIO);
    if (close(fd) != 0 && rc == 0)
        rc = -errno;
    if (rc == 0 && rename(tmp, path) != 0)
        rc = -errno;
    json_object_put(doc);
    if (rc < 0) {
        unlink(tmp);
        snprintf(err, errlen, "cannot save the profile changes to %s: %s", path, strerror(-rc));
        return -EIO;
    }
    fsync_dir(st->data_dir);
    return 0;
}

/* At start: the REST API's profile changes from the last run, applied on top of the
 * config file exactly as on SIGHUP. An unusable file is moved aside, never fatal. */
void st_load_overlay_file(struct station *st)
{
    char path[PATH_MAX + 32];
    overlay_path(st, path, sizeof(path));
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno != ENOENT) {
            /* Moved aside so the next change through the API does not replace it. */
            char why[128];
            snprintf(why, sizeof(why), "cannot open it: %s", strerror(errno));
            st_quarantine_overlay(st, why);
        }
        return;
    }
    char *buf = malloc(MAX_OVERLAY_BYTES + 1);
    size_t len = 0;
    int rerr = buf ? 0 : ENOMEM;
    while (buf && len <= MAX_OVERLAY_BYTES) {
        ssize_t n = read(fd, buf + len, MAX_OVERLAY_BYTES + 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            rerr = errno;
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    if (rerr) {
        char why[128];
        snprintf(why, sizeof(why), "cannot read it: %s", strerror(rerr));
        st_quarantine_overlay(st, why);
        free(buf);
        return;
    }
    char err[512] = "", *norm = NULL;
    int rc = config_overlay_check(buf, len, PROFILES_FILE, &norm, err, sizeof(err));
    free(buf);
    if (rc < 0) {
        st_quarantine_overlay(st, err);
        return;
    }
    struct config *cfg = NULL;
    rc = config_load_overlay(st->config_path, norm, &cfg, err, sizeof(err));
    struct json_object *ov = rc == 0 ? json_tokener_parse(norm) : NULL;
    free(norm);
    if (rc < 0 || !ov) {
        char why[700];
        snprintf(why, sizeof(why), "its profiles do not fit the config file: %s", err);
        st_quarantine_overlay(st, rc < 0 ? why : "out of memory");
        config_free(cfg);
        return;
    }
    config_free(st->cfg);
    st->cfg = cfg;
    st_resolve_dirs(st); /* the overlay holds profiles only: data_dir stays */
    st->overlay = ov;
    struct json_object *profs, *active;
    char names[256] = "";
    size_t used = 0;
    if (json_object_object_get_ex(ov, "profiles", &profs)) {
        json_object_object_foreach(profs, name, prof)
        {
            (void)prof;
            if (used < sizeof(names))
                used += (size_t)snprintf(names + used, sizeof(names) - used, "%s%s",
                                         used ? ", " : "", name);
        }
    }
    bool has_active = json_object_object_get_ex(ov, "active_profile", &active);
    log_msg(LOG_LEVEL_NOTICE,
            "profile changes made through the API loaded from %s: profiles %s; active profile "
            "%s",
            path, names[0] ? names : "(none)",
            has_active ? (active ? json_object_get_string(active) : "(none)")
                       : "(the config file's)");
}

static int set_overlay(struct station *st, struct json_object *ov, char *err, size_t errlen)
{
    struct config *cfg = NULL;
    int rc = config_load_overlay(st->config_path,
                                 json_object_to_json_string_ext(ov, JSON_C_TO_STRING_PLAIN), &cfg,
                                 err, errlen);
    if (rc == 0) {
        /* Stored before it applies: an answered change survives a kill. */
        rc = save_overlay(st, ov, err, errlen);
        if (rc < 0)
            config_free(cfg);
    }
    if (rc < 0) {
        json_object_put(ov);
        return rc;
    }
    json_object_put(st->overlay);
    st->overlay = ov;
    st_apply_config(st, cfg);
    return 0;
}

static struct json_object *overlay_copy(const struct station *st)
{
    struct json_object *ov = NULL;
    if (st->overlay && json_object_deep_copy(st->overlay, &ov, NULL) == 0)
        return ov;
    return st_jobj();
}

int station_put_profile(struct station *st, const char *name, const char *profile_json, char *err,
                        size_t errlen)
{
    struct json_object *prof = json_tokener_parse(profile_json);
    if (!prof || !json_object_is_type(prof, json_type_object)) {
        json_object_put(prof);
        snprintf(err, errlen, "profile: must be a JSON object");
        return -EINVAL;
    }
    struct json_object *ov = overlay_copy(st);
    struct json_object *profs;
    if (!ov || (!json_object_object_get_ex(ov, "profiles", &profs) &&
                json_object_object_add(ov, "profiles", profs = st_jobj()) != 0)) {
        json_object_put(ov);
        json_object_put(prof);
        return -ENOMEM;
    }
    json_object_object_add(profs, name, prof);
    /* The only profile is active without being named (config.c). A second one must not stop
     * the line: the one that was active is named in the overlay and stays active. */
    char kept[80] = "";
    if (st->cfg->active_profile && !json_object_object_get_ex(ov, "active_profile", NULL)) {
        struct config *trial = NULL;
        char e2[512];
        if (config_load_overlay(st->config_path,
                                json_object_to_json_string_ext(ov, JSON_C_TO_STRING_PLAIN), &trial,
                                e2, sizeof(e2)) == 0 &&
            !trial->active_profile) {
            snprintf(kept, sizeof(kept), "%s", st->cfg->active_profile);
            json_object_object_add(ov, "active_profile", json_object_new_string(kept));
        }
        config_free(trial);
    }
    int rc = set_overlay(st, ov, err, errlen);
    if (rc == 0) {
        log_msg(LOG_LEVEL_NOTICE,
                "profile %s updated through the API (saved in %s/" PROFILES_FILE ")%s%s%s", name,
                st->data_dir, kept[0] ? "; profile " : "", kept,
                kept[0] ? " was active as the only profile and stays active (switch with PUT "
                          "/api/v1/profiles/active)"
                        : "");
        struct json_object *d = st_jobj();
        st_jset_str(d, "name", name);
        json_object_object_add(d, "active",
                               json_object_new_boolean(st->cfg->active_profile &&
                                                       strcmp(st->cfg->active_profile, name) == 0));
        if (kept[0])
            st_jset_str(d, "kept_active", kept);
        st_event(st, "profile.changed", NULL, NULL, 0, d);
    }
    return rc;
}

int station_set_active_profile(struct station *st, const char *name, char *err, size_t errlen)
{
    if (name && !config_profile(st->cfg, name)) {
        snprintf(err, errlen, "no profile named \"%s\"", name);
        return -ENOENT;
    }
    struct json_object *ov = overlay_copy(st);
    if (!ov)
        return -ENOMEM;
    json_object_object_add(ov, "active_profile", name ? json_object_new_string(name) : NULL);
    int rc = set_overlay(st, ov, err, errlen);
    if (rc == 0) {
        log_msg(LOG_LEVEL_NOTICE,
                "active profile switched to %s through the API (saved in %s/" PROFILES_FILE ")",
                name ? name : "(none)", st->data_dir);
        struct json_object *d = st_jobj();
        json_object_object_add(d, "name", name ? json_object_new_string(name) : NULL);
        json_object_object_add(d, "active", json_object_new_boolean(true));
        st_event(st, "profile.changed", NULL, NULL, 0, d);
    }
    return rc;
}

bool station_profile_overridden(const struct station *st, const char *name)
{
    struct json_object *o;
    if (!st->overlay)
        return false;
    if (!name)
        return json_object_object_get_ex(st->overlay, "active_profile", &o);
    return json_object_object_get_ex(st->overlay, "profiles", &o) &&
           json_object_object_get_ex(o, name, NULL);
}

int station_delete_profile(struct station *st, const char *name, char *err, size_t errlen)
{
    if (name && !config_profile(st->cfg, name)) {
        snprintf(err, errlen, "no profile named \"%s\"", name);
        return -ENOENT;
    }
    if (!station_profile_overridden(st, name)) {
        if (name)
            snprintf(err, errlen,
                     "profile \"%s\" is the config file's and has no change made through the "
                     "API (edit the config file to change or remove it)",
                     name);
        else
            snprintf(err, errlen,
                     "the active profile is the config file's choice: no change made through "
                     "the API to drop");
        return -EALREADY;
    }
    struct json_object *ov = overlay_copy(st), *profs, *active;
    if (!ov)
        return -ENOMEM;
    if (name && json_object_object_get_ex(ov, "profiles", &profs))
        json_object_object_del(profs, name);
    else if (!name)
        json_object_object_del(ov, "active_profile");
    /* An API-created profile that the API also made active: the config file's
     * choice applies again. */
    if (name && json_object_object_get_ex(ov, "active_profile", &active) && active &&
        strcmp(json_object_get_string(active), name) == 0) {
        struct json_object *tryov = NULL;
        struct config *cfg = NULL;
        char e2[512];
        if (json_object_deep_copy(ov, &tryov, NULL) != 0)
            tryov = NULL;
        if (!tryov ||
            config_load_overlay(st->config_path,
                                json_object_to_json_string_ext(tryov, JSON_C_TO_STRING_PLAIN), &cfg,
                                e2, sizeof(e2)) < 0)
            json_object_object_del(ov, "active_profile");
        json_object_put(tryov);
        config_free(cfg);
    }
    int rc = set_overlay(st, ov, err, errlen);
    if (rc == 0) {
        bool still = name && config_profile(st->cfg, name) != NULL;
        if (name)
            log_msg(LOG_LEVEL_NOTICE, "profile %s %s through the API", name,
                    still ? "reverted to the config file's version" : "removed");
        else
            log_msg(LOG_LEVEL_NOTICE,
                    "active profile choice made through the API dropped: profile %s (the "
                    "config file's)",
                    st->cfg->active_profile ? st->cfg->active_profile : "(none)");
        struct json_object *d = st_jobj();
        const char *n = name ? name : st->cfg->active_profile;
        json_object_object_add(d, "name", n ? json_object_new_string(n) : NULL);
        json_object_object_add(d, "active",
                               json_object_new_boolean(st->cfg->active_profile && n &&
                                                       strcmp(st->cfg->active_profile, n) == 0));
        if (name)
            json_object_object_add(d, "removed", json_object_new_boolean(!still));
        st_event(st, "profile.changed", NULL, NULL, 0, d);
    }
    return rc;
}
