/*
 * station_firmware: the station's view of the firmware catalog: verified sets loaded once and
 * cached, the profiles' firmware checked against the catalog, the cache dropped when the
 * catalog changes, and the --import-firmware command (a set directory or a build's output).
 * Split from station.c; shares struct station through station_priv.h. Loop thread only.
 */
#include "station.h"
#include "station_priv.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <json-c/json.h>

#include "buildimport.h"
#include "catalog.h"
#include "config.h"
#include "job.h"
#include "line_fw.h"
#include "log.h"
#include "ota.h"
#include "records.h"

/* ---- firmware -------------------------------------------------------------------- */

void st_fw_cache_clear(struct station *st)
{
    for (size_t i = 0; i < st->nfw; i++)
        job_firmware_unref(st->fw[i]);
    st->nfw = 0;
}

/* A new reference to name@version, loaded (and verified) once and then cached. */
int st_fw_get(struct station *st, const struct config_firmware_ref *ref, struct job_firmware **out,
              char *err, size_t errlen)
{
    char key[RECORDS_FIRMWARE_LEN];
    snprintf(key, sizeof(key), "%s@%s", ref->name, ref->version);
    for (size_t i = 0; i < st->nfw; i++) {
        if (strcmp(st->fw[i]->ref, key) == 0) {
            *out = job_firmware_ref(st->fw[i]);
            return 0;
        }
    }
    struct catalog_set *set = NULL;
    int rc = catalog_get(st->cat, ref->name, ref->version, &set, err, errlen);
    if (rc < 0)
        return rc;
    if (set->chip != ref->chip) {
        snprintf(err, errlen, "firmware %s is for %s, not %s", key, esp_chip_to_string(set->chip),
                 esp_chip_to_string(ref->chip));
        catalog_free_set(set);
        return -EINVAL;
    }
    struct job_firmware *fw = job_firmware_new(set);
    if (!fw)
        return -ENOMEM;
    if (st->nfw == st->capfw) {
        size_t cap = st->capfw ? st->capfw * 2 : 8;
        struct job_firmware **v = realloc(st->fw, cap * sizeof(*v));
        if (!v) {
            *out = fw; /* usable, just not cached */
            return 0;
        }
        st->fw = v;
        st->capfw = cap;
    }
    st->fw[st->nfw++] = fw;
    log_msg(LOG_LEVEL_INFO, "firmware %s loaded and verified (%zu regions)", key, set->n_regions);
    *out = job_firmware_ref(fw);
    return 0;
}

/* Warns about profile firmware refs missing from the catalog. Returns how many. */
int st_check_profiles(struct station *st)
{
    struct catalog_entry *ents = NULL;
    size_t n = 0;
    if (catalog_list(st->cat, &ents, &n) < 0) {
        log_msg(LOG_LEVEL_WARN, "cannot list the firmware catalog in %s", catalog_root(st->cat));
        return -1;
    }
    int missing = 0;
    for (size_t p = 0; p < st->cfg->n_profiles; p++) {
        const struct config_profile *prof = &st->cfg->profiles[p];
        for (size_t f = 0; f < prof->n_firmware; f++) {
            const struct config_firmware_ref *ref = &prof->firmware[f];
            bool found = false;
            for (size_t i = 0; i < n && !found; i++)
                found = strcmp(ents[i].name, ref->name) == 0 &&
                        strcmp(ents[i].version, ref->version) == 0 && ents[i].chip == ref->chip;
            if (!found) {
                missing++;
                log_msg(LOG_LEVEL_WARN,
                        "profile %s: firmware %s@%s for %s is not in the catalog (%s); boards of "
                        "that family will fail until it is imported",
                        prof->name, ref->name, ref->version, esp_chip_to_string(ref->chip),
                        catalog_root(st->cat));
            }
        }
    }
    catalog_entries_free(ents, n);
    if (!config_profile(st->cfg, NULL))
        log_msg(LOG_LEVEL_NOTICE,
                "no active profile: boards are identified and recorded, not flashed");
    return missing;
}

/* A build's output (buildimport.h): logs what was recognised and each set imported. */
static int import_build(struct catalog *cat, const struct station_options *o, const char *path,
                        bool replace, struct catalog_report *rep)
{
    const struct buildimport_opts bo = {
        .name = o->import_name, .version = o->import_version, .replace = replace};
    struct buildimport_result res;
    int rc = buildimport_run(cat, path, &bo, &res, rep);
    if (res.err[0])
        log_msg(LOG_LEVEL_ERROR, "%s: %s", path, res.err);
    json_object *src = res.source, *v, *sets = NULL;
    if (src) {
        json_object_object_get_ex(src, "sets", &sets);
        const char *fmt =
            json_object_object_get_ex(src, "format", &v) ? json_object_get_string(v) : "?";
        const char *desc =
            json_object_object_get_ex(src, "descriptor", &v) && v ? json_object_get_string(v) : "-";
        log_msg(LOG_LEVEL_NOTICE, "%s: recognised %s (%s), %zu firmware set(s)", path, fmt, desc,
                sets ? json_object_array_length(sets) : 0);
        json_object *notes;
        if (json_object_object_get_ex(src, "notes", &notes))
            for (size_t i = 0; i < json_object_array_length(notes); i++)
                log_msg(LOG_LEVEL_NOTICE, "%s: %s", path,
                        json_object_get_string(json_object_array_get_idx(notes, i)));
    }
    for (size_t i = 0; i < res.n_sets && sets; i++) {
        json_object *s = json_object_array_get_idx(sets, i), *regs;
        const char *chip =
            json_object_object_get_ex(s, "chip", &v) ? json_object_get_string(v) : "?";
        size_t nr =
            json_object_object_get_ex(s, "regions", &regs) ? json_object_array_length(regs) : 0;
        bool done = rc == 0 || i + 1 < res.n_sets;
        log_msg(done ? LOG_LEVEL_NOTICE : LOG_LEVEL_ERROR, "%s: %s %s@%s (%s, %zu regions)", path,
                done ? "firmware set" : "refused:", res.names[i], res.versions[i], chip, nr);
    }
    buildimport_result_free(&res);
    return rc;
}

int station_import_firmware(const struct station_options *o, const char *dir, bool replace)
{
    char err[512] = "";
    struct config *cfg = NULL;
    int rc = config_load(o->config_path, &cfg, err, sizeof(err));
    if (rc < 0) {
        log_msg(LOG_LEVEL_ERROR, "%s", err);
        return rc;
    }
    const char *data_dir = o->data_dir ? o->data_dir : cfg->data_dir;
    rc = st_mkdir_p(data_dir);
    struct catalog *cat = NULL;
    if (rc == 0)
        rc = catalog_open(data_dir, &cat, err, sizeof(err));
    if (rc < 0) {
        log_msg(LOG_LEVEL_ERROR, "cannot open the catalog in %s: %s", data_dir,
                err[0] ? err : strerror(-rc));
        config_free(cfg);
        return rc;
    }
    struct catalog_report rep;
    catalog_report_init(&rep);
    struct stat st;
    bool build = stat(dir, &st) != 0 || !S_ISDIR(st.st_mode) || !buildimport_is_station_set(dir);
    if (build)
        rc = import_build(cat, o, dir, replace, &rep);
    else
        rc = catalog_import(cat, dir, replace, &rep);
    if (rep.n) {
        size_t len = rep.n * 420 + 64;
        char *buf = malloc(len);
        if (buf) {
            catalog_report_format(&rep, buf, len);
            for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n"))
                log_msg(strncmp(line, "error", 5) == 0 ? LOG_LEVEL_ERROR : LOG_LEVEL_WARN, "%s",
                        line);
            free(buf);
        }
    }
    if (rc == -EEXIST)
        log_msg(LOG_LEVEL_ERROR, "%s: this name@version is already in the catalog (use --replace)",
                dir);
    else if (rc < 0)
        log_msg(LOG_LEVEL_ERROR, "import of %s refused (%zu problem(s))", dir, rep.n_errors);
    else
        log_msg(LOG_LEVEL_NOTICE, "imported %s into %s", dir, catalog_root(cat));
    catalog_report_free(&rep);
    catalog_close(cat);
    config_free(cfg);
    return rc;
}

void station_catalog_changed(struct station *st)
{
    ota_invalidate(st->ota);
    st_fw_cache_clear(st);
    st_check_profiles(st);
    line_fw_publish(st->lfw);
}
