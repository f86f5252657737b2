/*
 * config_server: the sections of the station's services: "listen" (the REST API's
 * address), "api" (token, limits, allowed host names, TLS), "ota" (the device-facing
 * update server and push defaults), "records" (the database backend) and "line"
 * (this station's heartbeat and address in a line of stations).
 */
#include "config_priv.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

/* "host:port" or "[v6]:port". */
int cfg_parse_listen(struct cfg_ctx *c, struct config *cfg, json_object *v)
{
    const char *s;
    int rc = cfg_get_str(c, "listen", v, 255, &s);
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
        return cfg_fail(c, "listen",
                        "must be \"host:port\", e.g. \"127.0.0.1:8080\" or "
                        "\"[::1]:8080\" (got \"%s\")",
                        s);
    for (size_t i = 0; i < hlen; i++)
        if (!isalnum((unsigned char)host[i]) && !strchr(".-:_", host[i]))
            return cfg_fail(c, "listen", "\"%.*s\" is not a host name or address", (int)hlen, host);
    const char *p = colon + 1;
    long port = 0;
    if (!*p || strlen(p) > 5)
        port = -1;
    for (; *p && port >= 0; p++)
        port = isdigit((unsigned char)*p) ? port * 10 + (*p - '0') : -1;
    if (port < 0 || port > 65535)
        return cfg_fail(c, "listen",
                        "port must be a number from 0 (any free port) to 65535 (got \"%s\")",
                        colon + 1);
    char *h = strndup(host, hlen);
    if (!h)
        return cfg_fail_nomem(c);
    free(cfg->listen_host);
    cfg->listen_host = h;
    cfg->listen_port = (uint16_t)port;
    return cfg_dup_str(c, s, &cfg->listen);
}

static int parse_allowed_hosts(struct cfg_ctx *c, struct config *cfg, json_object *v)
{
    int rc;
    if ((rc = cfg_want_array(c, "api.allowed_hosts", v)) < 0)
        return rc;
    size_t n = json_object_array_length(v);
    if (n > 32)
        return cfg_fail(c, "api.allowed_hosts", "at most 32 names (%zu given)", n);
    char **names = calloc(n ? n : 1, sizeof(*names));
    if (!names)
        return cfg_fail_nomem(c);
    cfg->api.allowed_hosts = names;
    for (size_t i = 0; i < n; i++) {
        char path[64];
        snprintf(path, sizeof(path), "api.allowed_hosts[%zu]", i);
        const char *s;
        if ((rc = cfg_get_str(c, path, json_object_array_get_idx(v, i), 253, &s)) < 0)
            return rc;
        for (const char *p = s; *p; p++)
            if (!isalnum((unsigned char)*p) && *p != '-' && *p != '.')
                return cfg_fail(c, path,
                                "\"%s\": a host name (letters, digits, '-' and '.'; no port, no "
                                "scheme); IP addresses are always allowed",
                                s);
        if ((rc = cfg_dup_str(c, s, &names[i])) < 0)
            return rc;
        for (char *p = names[i]; *p; p++)
            *p = (char)tolower((unsigned char)*p);
        cfg->api.n_allowed_hosts = i + 1;
    }
    return 0;
}

/* "tls": {"cert": PATH, "key": PATH} (api.tls, ota.tls): both required, relative paths
 * against the config file's directory. The files are read when the server starts. */
static int parse_tls(struct cfg_ctx *c, const char *path, json_object *v, struct config_tls *t)
{
    static const char *const keys[] = {"cert", "key", NULL};
    char kp[KEYPATH_MAX];
    json_object *f;
    int rc;
    if ((rc = cfg_want_object(c, path, v)) < 0 || (rc = cfg_check_keys(c, path, v, keys)) < 0)
        return rc;
    cfg_join_key(kp, sizeof(kp), path, "cert");
    if (!json_object_object_get_ex(v, "cert", &f))
        return cfg_fail(c, kp,
                        "is required (a PEM file: the server certificate, then any intermediate CA "
                        "certificates)");
    if ((rc = cfg_get_path(c, kp, f, &t->cert)) < 0)
        return rc;
    cfg_join_key(kp, sizeof(kp), path, "key");
    if (!json_object_object_get_ex(v, "key", &f))
        return cfg_fail(c, kp,
                        "is required (a PEM file: the certificate's private key, unencrypted)");
    return cfg_get_path(c, kp, f, &t->key);
}

int cfg_parse_api(struct cfg_ctx *c, struct config *cfg, json_object *v)
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
    if ((rc = cfg_want_object(c, "api", v)) < 0 || (rc = cfg_check_keys(c, "api", v, keys)) < 0)
        return rc;
    if (json_object_object_get_ex(v, "token", &f) && !json_object_is_type(f, json_type_null)) {
        const char *s;
        if ((rc = cfg_get_str(c, "api.token", f, 256, &s)) < 0)
            return rc;
        for (const char *p = s; *p; p++)
            if (!isgraph((unsigned char)*p))
                return cfg_fail(c, "api.token", "must not contain spaces or control characters");
        if ((rc = cfg_dup_str(c, s, &cfg->api.token)) < 0)
            return rc;
    }
    if (json_object_object_get_ex(v, "read_requires_token", &f) &&
        (rc = cfg_get_bool(c, "api.read_requires_token", f, &cfg->api.read_requires_token)) < 0)
        return rc;
    if (json_object_object_get_ex(v, "max_body_bytes", &f)) {
        if ((rc = cfg_get_int(c, "api.max_body_bytes", f, 1024, 1024LL * 1024 * 1024, &x)) < 0)
            return rc;
        cfg->api.max_body_bytes = (size_t)x;
    }
    if (json_object_object_get_ex(v, "max_connections", &f)) {
        if ((rc = cfg_get_int(c, "api.max_connections", f, 1, 65536, &x)) < 0)
            return rc;
        cfg->api.max_connections = (int)x;
    }
    if (json_object_object_get_ex(v, "tls", &f) &&
        (rc = parse_tls(c, "api.tls", f, &cfg->api.tls)) < 0)
        return rc;
    if (json_object_object_get_ex(v, "idle_timeout_s", &f)) {
        if ((rc = cfg_get_int(c, "api.idle_timeout_s", f, 1, 3600, &x)) < 0)
            return rc;
        cfg->api.idle_timeout_s = (int)x;
    }
    if (json_object_object_get_ex(v, "allowed_hosts", &f) &&
        (rc = parse_allowed_hosts(c, cfg, f)) < 0)
        return rc;
    if (cfg->api.read_requires_token && !cfg->api.token)
        return cfg_fail(c, "api.read_requires_token",
                        "is true but no api.token is set (nobody could read the API)");
    return 0;
}

/* "ota": the device-facing HTTP update endpoint and the push defaults. */
int cfg_parse_ota(struct cfg_ctx *c, struct config *cfg, json_object *v)
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
    if ((rc = cfg_want_object(c, "ota", v)) < 0 || (rc = cfg_check_keys(c, "ota", v, keys)) < 0)
        return rc;
    if (json_object_object_get_ex(v, "listen", &f) && !json_object_is_type(f, json_type_null)) {
        if ((rc = cfg_get_str(c, "ota.listen", f, 255, &s)) < 0)
            return rc;
        const char *colon = strrchr(s, ':');
        char *end = NULL;
        long port = colon ? strtol(colon + 1, &end, 10) : -1;
        if (!colon || colon == s || !end || *end || colon[1] == '\0' || port < 0 || port > 65535)
            return cfg_fail(c, "ota.listen",
                            "must be \"host:port\" (port 0 = any free port), e.g. "
                            "\"0.0.0.0:8266\" (got \"%s\")",
                            s);
        char *h = strndup(s, (size_t)(colon - s));
        if (!h)
            return cfg_fail_nomem(c);
        free(cfg->ota.listen_host);
        cfg->ota.listen_host = h;
        cfg->ota.listen_port = (int)port;
        cfg->ota.enabled = true;
    }
    if (json_object_object_get_ex(v, "unknown_boards", &f)) {
        if ((rc = cfg_get_str(c, "ota.unknown_boards", f, 16, &s)) < 0)
            return rc;
        if (strcmp(s, "enrol") == 0)
            cfg->ota.enrol_unknown = true;
        else if (strcmp(s, "refuse") == 0)
            cfg->ota.enrol_unknown = false;
        else
            return cfg_fail(c, "ota.unknown_boards", "must be \"enrol\" or \"refuse\" (got \"%s\")",
                            s);
    }
    if (json_object_object_get_ex(v, "strict", &f) &&
        (rc = cfg_get_bool(c, "ota.strict", f, &cfg->ota.strict)) < 0)
        return rc;
    if (json_object_object_get_ex(v, "espota_port", &f)) {
        if ((rc = cfg_get_int(c, "ota.espota_port", f, 0, 65535, &x)) < 0)
            return rc;
        cfg->ota.espota_port = (int)x;
    }
    if (json_object_object_get_ex(v, "max_connections", &f)) {
        if ((rc = cfg_get_int(c, "ota.max_connections", f, 1, 4096, &x)) < 0)
            return rc;
        cfg->ota.max_connections = (int)x;
    }
    if (json_object_object_get_ex(v, "idle_timeout_s", &f)) {
        if ((rc = cfg_get_int(c, "ota.idle_timeout_s", f, 1, 3600, &x)) < 0)
            return rc;
        cfg->ota.idle_timeout_s = (int)x;
    }
    if (json_object_object_get_ex(v, "mdns_interval_s", &f)) {
        if ((rc = cfg_get_int(c, "ota.mdns_interval_s", f, 0, 86400, &x)) < 0)
            return rc;
        cfg->ota.mdns_interval_s = (int)x;
    }
    if (json_object_object_get_ex(v, "tls", &f) &&
        (rc = parse_tls(c, "ota.tls", f, &cfg->ota.tls)) < 0)
        return rc;
    if (json_object_object_get_ex(v, "webform_user", &f)) {
        if ((rc = cfg_get_str(c, "ota.webform_user", f, 64, &s)) < 0)
            return rc;
        for (const char *p = s; *p; p++)
            if (*p == ':' || (unsigned char)*p < 0x20 || *p == 0x7F)
                return cfg_fail(c, "ota.webform_user",
                                "must not contain ':' or control characters (HTTP Basic "
                                "authentication cannot carry them; got \"%s\")",
                                s);
        if ((rc = cfg_dup_str(c, s, &cfg->ota.webform_user)) < 0)
            return rc;
    }
    if (json_object_object_get_ex(v, "enrol_rate_per_min", &f)) {
        if ((rc = cfg_get_int(c, "ota.enrol_rate_per_min", f, 1, 6000, &x)) < 0)
            return rc;
        cfg->ota.enrol_rate_per_min = (int)x;
    }
    if (json_object_object_get_ex(v, "enrol_max", &f)) {
        if ((rc = cfg_get_int(c, "ota.enrol_max", f, 0, 1000000, &x)) < 0)
            return rc;
        cfg->ota.enrol_max = (int)x;
    }
    return 0;
}

/* "checkin_auth": {"user": U, "password": P, "required": false}. */
int cfg_parse_records(struct cfg_ctx *c, struct config *cfg, json_object *v)
{
    static const char *const keys[] = {"backend", "dsn", NULL};
    int rc;
    json_object *f;
    const char *s;
    if ((rc = cfg_want_object(c, "records", v)) < 0 ||
        (rc = cfg_check_keys(c, "records", v, keys)) < 0)
        return rc;
    if (json_object_object_get_ex(v, "backend", &f)) {
        if ((rc = cfg_get_str(c, "records.backend", f, 32, &s)) < 0)
            return rc;
        if (strcmp(s, "sqlite") != 0 && strcmp(s, "postgresql") != 0)
            return cfg_fail(c, "records.backend",
                            "must be \"sqlite\" (the default: <data_dir>/records.db) or "
                            "\"postgresql\" (with records.dsn) (got \"%s\")",
                            s);
        cfg->records.postgresql = strcmp(s, "postgresql") == 0;
    }
    if (json_object_object_get_ex(v, "dsn", &f)) {
        if ((rc = cfg_get_str(c, "records.dsn", f, 1024, &s)) < 0)
            return rc;
        for (const char *p = s; *p; p++)
            if ((unsigned char)*p < 0x20)
                return cfg_fail(c, "records.dsn", "must not contain control characters");
        if ((rc = cfg_dup_str(c, s, &cfg->records.dsn)) < 0)
            return rc;
    }
    if (cfg->records.postgresql && !cfg->records.dsn)
        return cfg_fail(c, "records.dsn",
                        "missing: backend \"postgresql\" needs a libpq connection string, e.g. "
                        "\"host=db1 dbname=espstation user=station\"");
    if (!cfg->records.postgresql && cfg->records.dsn)
        return cfg_fail(c, "records.dsn", "is for backend \"postgresql\" only (backend is sqlite)");
    return 0;
}

/* "line": {"heartbeat_s": 5, "gone_after_s": 15, "address": "http://st1:8080"}. */
int cfg_parse_line(struct cfg_ctx *c, struct config *cfg, json_object *v)
{
    static const char *const keys[] = {"heartbeat_s", "gone_after_s", "address", NULL};
    int rc;
    json_object *f;
    long long x;
    const char *s;
    if ((rc = cfg_want_object(c, "line", v)) < 0 || (rc = cfg_check_keys(c, "line", v, keys)) < 0)
        return rc;
    if (json_object_object_get_ex(v, "heartbeat_s", &f)) {
        if ((rc = cfg_get_int(c, "line.heartbeat_s", f, 1, 3600, &x)) < 0)
            return rc;
        cfg->line.heartbeat_s = (int)x;
    }
    cfg->line.gone_after_s = 3 * cfg->line.heartbeat_s;
    if (json_object_object_get_ex(v, "gone_after_s", &f)) {
        if ((rc = cfg_get_int(c, "line.gone_after_s", f, cfg->line.heartbeat_s + 1, 86400, &x)) < 0)
            return rc;
        cfg->line.gone_after_s = (int)x;
    }
    if (json_object_object_get_ex(v, "address", &f)) {
        if ((rc = cfg_get_str(c, "line.address", f, 255, &s)) < 0)
            return rc;
        if (strncmp(s, "http://", 7) != 0 && strncmp(s, "https://", 8) != 0)
            return cfg_fail(c, "line.address",
                            "must be this station's REST base URL, \"http://HOST:PORT\" or "
                            "\"https://HOST:PORT\" (got \"%s\")",
                            s);
        for (const char *p = s; *p; p++)
            if ((unsigned char)*p <= 0x20 || *p == '"' || *p == '<' || *p == '>')
                return cfg_fail(c, "line.address", "must not contain spaces, quotes or < >");
        if ((rc = cfg_dup_str(c, s, &cfg->line.address)) < 0)
            return rc;
    }
    return 0;
}
