/*
 * config_priv.h: what the config parser's files share: config.c (defaults, top
 * level, overlay, load, free, lookups), config_json.c (the JSON plumbing below),
 * config_bench.c, config_server.c and config_profiles.c (the sections). Not for
 * other modules: they use config.h.
 *
 * Every parser takes the parse context and a key path ("profiles.p1.boot_check")
 * and fails through cfg_fail(), which writes "<origin>: <path>: <message>" into
 * the caller's buffer and returns -EINVAL; the first failure ends the parse.
 */
#ifndef ESPSTATION_CONFIG_PRIV_H
#define ESPSTATION_CONFIG_PRIV_H

#include <stdbool.h>
#include <stddef.h>

#include <json-c/json.h>

#include "config.h"

#define MAX_CONFIG_BYTES (4u * 1024 * 1024)
#define KEYPATH_MAX 256

struct cfg_ctx {
    const char *origin;   /* "config /etc/espstation.json" */
    const char *base_dir; /* for relative paths; NULL = keep */
    char *err;
    size_t errlen;
    const char *overlay; /* JSON object text merged over the file (config_load_overlay) */
};

/* ---- config_json.c -------------------------------------------------------------- */

/* "<origin>: <path>: <message>" (path may be NULL) into c->err; returns -EINVAL. */
int cfg_fail(struct cfg_ctx *c, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int cfg_fail_nomem(struct cfg_ctx *c); /* returns -ENOMEM */

void cfg_join_key(char *out, size_t n, const char *parent, const char *key); /* "parent.key" */
void cfg_join_index(char *out, size_t n, const char *parent, size_t i);      /* "parent[i]" */

/* Every key of obj must be in allowed (NULL-terminated). */
int cfg_check_keys(struct cfg_ctx *c, const char *path, json_object *obj,
                   const char *const *allowed);

int cfg_want_object(struct cfg_ctx *c, const char *path, json_object *v);
int cfg_want_array(struct cfg_ctx *c, const char *path, json_object *v);
/* A string without NUL bytes, 1..maxlen characters (0 = no limit). *out is borrowed. */
int cfg_get_str(struct cfg_ctx *c, const char *path, json_object *v, size_t maxlen,
                const char **out);
int cfg_dup_str(struct cfg_ctx *c, const char *s, char **out); /* replaces *out */
int cfg_get_int(struct cfg_ctx *c, const char *path, json_object *v, long long min, long long max,
                long long *out);
int cfg_get_bool(struct cfg_ctx *c, const char *path, json_object *v, bool *out);
/* A path; relative ones are resolved against c->base_dir. Replaces *out. */
int cfg_get_path(struct cfg_ctx *c, const char *path, json_object *v, char **out);
bool cfg_chars_ok(const char *s, const char *extra); /* alphanumerics and the extra chars */

/* The whole text as one JSON object; syntax errors with line and column. */
int cfg_parse_tree(struct cfg_ctx *c, const char *json, size_t len, json_object **out);

/* ---- the sections: each fills its part of cfg from the value v of its key ---------- */

int cfg_parse_listen(struct cfg_ctx *c, struct config *cfg, json_object *v);   /* server */
int cfg_parse_api(struct cfg_ctx *c, struct config *cfg, json_object *v);      /* server */
int cfg_parse_ota(struct cfg_ctx *c, struct config *cfg, json_object *v);      /* server */
int cfg_parse_records(struct cfg_ctx *c, struct config *cfg, json_object *v);  /* server */
int cfg_parse_line(struct cfg_ctx *c, struct config *cfg, json_object *v);     /* server */
int cfg_parse_bridges(struct cfg_ctx *c, struct config *cfg, json_object *v);  /* bench */
int cfg_parse_slots(struct cfg_ctx *c, struct config *cfg, json_object *v);    /* bench */
int cfg_parse_ports(struct cfg_ctx *c, struct config *cfg, json_object *v);    /* bench */
int cfg_parse_profiles(struct cfg_ctx *c, struct config *cfg, json_object *v); /* profiles */
void cfg_profile_free(struct config_profile *p);                               /* profiles */

#endif
