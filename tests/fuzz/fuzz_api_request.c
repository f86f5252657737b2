/*
 * fuzz_api_request: the REST API's router, authentication and JSON body
 * validation (api_handle) on arbitrary requests, without sockets.
 *
 * Input: "METHOD TARGET\n", header lines "Name: value\n", an empty line, the
 * body. TARGET is a path with an optional "?query" (percent-decoded here as
 * libmicrohttpd would). Known headers: Content-Type, Authorization,
 * Last-Event-ID, Host, Origin, Sec-Fetch-Site; "X-Remote: 1" makes the client
 * non-loopback.
 *
 * The station is real (records, catalog, config with a token and a profile,
 * one idle slot "F1") but never started, and the API runs in dry-run mode:
 * requests are validated completely, no job or thread is started. The OTA
 * manager is real too (no update endpoint, no boards in the records), so the
 * OTA and bulk routes parse and validate their bodies and then find no board.
 *
 * Checks: every answer has a status 200..599; a JSON answer parses; every
 * error (>= 400) is {"error": {"code": string, "message": string}}.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>

#include "api.h"
#include "log.h"
#include "loop.h"
#include "ota.h"
#include "station.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct loop *g_loop;
static struct station *g_st;
static struct api *g_api;
static struct ota *g_ota;
static char g_dir[64];

static void check(int cond)
{
    if (!cond)
        abort();
}

static void cleanup(void)
{
    api_free(g_api);
    station_set_ota(g_st, NULL);
    ota_free(g_ota);
    station_free(g_st);
    loop_free(g_loop);
    if (g_dir[0]) {
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_dir);
        if (system(cmd) != 0) {
            /* best effort */
        }
    }
}

static void init(void)
{
    if (g_api)
        return;
    log_init(LOG_MODE_JOURNAL, LOG_LEVEL_ERROR);
    snprintf(g_dir, sizeof(g_dir), "/tmp/fuzz_api.XXXXXX");
    check(mkdtemp(g_dir) != NULL);
    char cfg[128];
    snprintf(cfg, sizeof(cfg), "%s/pool", g_dir);
    check(mkdir(cfg, 0700) == 0); /* the per-board pool: empty, so GET /pools counts 0 */
    snprintf(cfg, sizeof(cfg), "%s/station.json", g_dir);
    FILE *f = fopen(cfg, "w");
    check(f != NULL);
    fputs("{\"api\": {\"token\": \"fuzz-token\", \"max_body_bytes\": 4096},"
          " \"profiles\": {\"p1\": {\"baud\": 460800, \"per_board\": [{\"name\": \"nvs\","
          " \"offset\": \"0x9000\", \"dir\": \"pool\"}]}}}",
          f);
    fclose(f);
    struct station_options o;
    memset(&o, 0, sizeof(o));
    o.config_path = cfg;
    o.data_dir = g_dir;
    o.no_udev = true;
    char err[512];
    check(loop_new(&g_loop) == 0);
    check(station_new(&o, g_loop, &g_st, err, sizeof(err)) == 0);
    /* Stopped before it starts: an attached port becomes an idle slot, no job runs. */
    station_stop(g_st);
    check(station_attach(g_st, "/nonexistent/fuzz-tty", "F1") == 0);
    check(ota_new(g_st, g_loop, &g_ota, err, sizeof(err)) == 0);
    station_set_ota(g_st, g_ota);
    g_api = api_new(g_st);
    check(g_api != NULL);
    api_set_dry_run(g_api, true);
    atexit(cleanup);
}

#define MAX_ARGS 32

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    init();
    char *buf = malloc(size + 1);
    check(buf != NULL);
    memcpy(buf, data, size);
    buf[size] = '\0';

    struct api_request rq;
    memset(&rq, 0, sizeof(rq));
    rq.loopback = true;
    char *line_end = memchr(buf, '\n', size);
    char *p = line_end ? line_end + 1 : buf + size;
    if (line_end)
        *line_end = '\0';
    char *sp = strchr(buf, ' ');
    char root[2] = "/";
    char *target = sp ? sp + 1 : root;
    if (sp)
        *sp = '\0';
    rq.method = buf;
    char *q = strchr(target, '?');
    struct api_kv args[MAX_ARGS];
    if (q) {
        *q = '\0';
        rq.n_args = api_parse_query(q + 1, args, MAX_ARGS);
        rq.args = args;
    }
    rq.path = api_unescape(target);
    /* headers */
    char *end = buf + size;
    while (p < end) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl)
            nl = end;
        *nl = '\0';
        if (*p == '\0') {
            p = nl < end ? nl + 1 : end;
            break;
        }
        char *colon = strchr(p, ':');
        if (colon) {
            *colon = '\0';
            char *v = colon + 1;
            while (*v == ' ')
                v++;
            if (!strcasecmp(p, "Content-Type"))
                rq.content_type = v;
            else if (!strcasecmp(p, "Authorization"))
                rq.authorization = v;
            else if (!strcasecmp(p, "Last-Event-ID"))
                rq.last_event_id = v;
            else if (!strcasecmp(p, "Host"))
                rq.host = v;
            else if (!strcasecmp(p, "Origin"))
                rq.origin = v;
            else if (!strcasecmp(p, "Sec-Fetch-Site"))
                rq.fetch_site = v;
            else if (!strcasecmp(p, "X-Remote"))
                rq.loopback = strcmp(v, "1") != 0;
        }
        p = nl < end ? nl + 1 : end;
    }
    rq.body = p;
    rq.body_len = (size_t)(end - p);

    struct api_response resp;
    api_handle(g_api, &rq, &resp);
    if (resp.sse) {
        check(resp.sse_after >= -1);
    } else {
        check(resp.status >= 200 && resp.status < 600);
        bool json = resp.content_type && strcmp(resp.content_type, "application/json") == 0;
        check(resp.status < 400 || json);
        if (json) {
            check(resp.body != NULL);
            struct json_object *o = json_tokener_parse(resp.body);
            check(o != NULL);
            if (resp.status >= 400) {
                struct json_object *e, *c, *m;
                check(json_object_object_get_ex(o, "error", &e));
                check(json_object_object_get_ex(e, "code", &c) &&
                      json_object_is_type(c, json_type_string));
                check(json_object_object_get_ex(e, "message", &m) &&
                      json_object_is_type(m, json_type_string));
            }
            json_object_put(o);
        }
    }
    api_response_free(&resp);
    free(buf);
    return 0;
}
