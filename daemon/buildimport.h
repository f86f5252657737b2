/*
 * buildimport: a build's output (protocols/buildsrc: ESP-IDF, PlatformIO, Arduino, ESP Web
 * Tools, a merged image) into the firmware catalog, one set per build (an ESP Web Tools
 * manifest with several builds gives one set per chip family, named <name>-<chip>).
 *
 * The recognised set becomes a station manifest (chip, flash settings, regions with file
 * names made safe and unique, kinds from the roles) and goes through the catalog's full
 * validation and atomic import like any uploaded set, so the catalog's invariants hold.
 * Used by `espstationd --import PATH` and the REST upload of a bundle without a station
 * manifest. No globals; safe on any thread (the catalog is).
 */
#ifndef ESPSTATION_BUILDIMPORT_H
#define ESPSTATION_BUILDIMPORT_H

#include <stdbool.h>
#include <stddef.h>

#include <json-c/json.h>

#include "buildsrc.h"
#include "catalog.h"

struct buildimport_opts {
    const char *name;    /* set name; NULL: what the build suggests */
    const char *version; /* set version; NULL: what the build suggests */
    bool replace;        /* replace an existing name@version */
    bool validate_only;  /* check everything, import nothing (cat may be NULL) */
};

struct buildimport_result {
    json_object *source; /* what was recognised (buildsrc_to_json), NULL when nothing; owned */
    size_t n_sets;       /* sets validated / imported */
    char names[BUILDSRC_MAX_SETS][CATALOG_NAME_MAX];
    char versions[BUILDSRC_MAX_SETS][CATALOG_NAME_MAX];
    char err[600]; /* the build could not be recognised: what, naming the file, and what to do */
};

void buildimport_result_free(struct buildimport_result *res); /* leaves it empty */

/* True when dir holds the station's own manifest.json (a set, not a build). */
bool buildimport_is_station_set(const char *dir);

/*
 * Recognises the build at path and validates (and, unless validate_only, imports) each of
 * its sets. Returns 0; -ENOTSUP / -EINVAL when the build is not recognised or has a problem
 * (res->err, nothing imported); -EINVAL when the catalog refused a set (rep); -EEXIST
 * (name@version exists, replace false; res->names/versions say which); -ENOMEM/-EIO.
 * Sets before a failing one stay imported.
 */
int buildimport_run(struct catalog *cat, const char *path, const struct buildimport_opts *o,
                    struct buildimport_result *res, struct catalog_report *rep);

#endif
