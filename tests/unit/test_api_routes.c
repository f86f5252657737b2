/*
 * test_api_routes: the REST API's route table (web/routes.c) walked row by
 * row. The table is well formed (methods, policies, patterns that select their
 * own row), the matcher captures what it should, and every changing route
 * refuses a request without the token or with a wrong one (401), and, with no
 * token configured, a client that is not on loopback (403) -- before its
 * handler runs. Every read route answers without a token. Cross-site requests:
 * every changing route refuses, with or without a token configured, a request
 * from a page of another origin (Origin, Sec-Fetch-Site), a foreign Host (DNS
 * rebinding; every route) and a POST that is not JSON (415); the station's own
 * origin and clients without an Origin (curl) still reach the handler.
 *
 * The station is real (records, catalog, OTA manager, one idle slot "F1") but
 * stopped, and the API runs in dry-run mode, as in tests/fuzz/fuzz_api_request.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api.h"
#include "log.h"
#include "loop.h"
#include "ota.h"
#include "ota_http.h"
#include "ota_routes.h"
#include "routes.h"
#include "station.h"

#define TOKEN "route-test-token"

struct fixture {
    char dir[64];
    struct loop *loop;
    struct station *st;
    struct ota *ota;
    struct api *api;
};

static int setup_with(void **state, const char *config)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "/tmp/test_api_routes.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    char cfg[128];
    snprintf(cfg, sizeof(cfg), "%s/station.json", f->dir);
    FILE *fp = fopen(cfg, "w");
    assert_non_null(fp);
    fputs(config, fp);
    fclose(fp);
    struct station_options o;
    memset(&o, 0, sizeof(o));
    o.config_path = cfg;
    o.data_dir = f->dir;
    o.no_udev = true;
    char err[512];
    assert_int_equal(loop_new(&f->loop), 0);
    if (station_new(&o, f->loop, &f->st, err, sizeof(err)) != 0)
        fail_msg("station_new: %s", err);
    station_stop(f->st); /* an attached port becomes an idle slot, no job runs */
    assert_int_equal(station_attach(f->st, "/nonexistent/route-tty", "F1"), 0);
    if (ota_new(f->st, f->loop, &f->ota, err, sizeof(err)) != 0)
        fail_msg("ota_new: %s", err);
    station_set_ota(f->st, f->ota);
    f->api = api_new(f->st);
    assert_non_null(f->api);
    api_set_dry_run(f->api, true);
    *state = f;
    return 0;
}

static int setup_token(void **state)
{
    return setup_with(state, "{\"api\": {\"token\": \"" TOKEN "\","
                             " \"allowed_hosts\": [\"station-3.lan\"]},"
                             " \"profiles\": {\"p1\": {\"baud\": 460800}}}");
}

static int setup_no_token(void **state)
{
    return setup_with(state, "{\"profiles\": {\"p1\": {\"baud\": 460800}}}");
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    api_free(f->api);
    station_set_ota(f->st, NULL);
    ota_free(f->ota);
    station_free(f->st);
    loop_free(f->loop);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    if (system(cmd) != 0) {
        /* best effort */
    }
    free(f);
    return 0;
}

/* A concrete path for a pattern: every capture gets a value that names something real
 * where the fixture has it (slot F1, profile p1). */
static void instantiate(const char *pattern, char *out, size_t len)
{
    static const struct {
        const char *cap, *value;
    } values[] = {
        {"{id*}", "F1"},
        {"{mac}", "24:6f:28:00:00:01"},
        {"{id}", "1"},
        {"{name}", "p1"},
        {"{version*}", "1.0"},
        {"{sha256}", "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"},
    };
    size_t o = 0;
    for (const char *p = pattern; *p && o + 1 < len;) {
        bool done = false;
        for (size_t i = 0; i < sizeof(values) / sizeof(values[0]) && !done; i++) {
            size_t n = strlen(values[i].cap);
            if (strncmp(p, values[i].cap, n) == 0) {
                o += (size_t)snprintf(out + o, len - o, "%s", values[i].value);
                p += n;
                done = true;
            }
        }
        if (!done) {
            if (*p == '{')
                fail_msg("pattern %s: capture without a test value", pattern);
            out[o++] = *p++;
        }
    }
    out[o] = '\0';
}

struct req {
    struct api_request rq;
    char path[ROUTE_MAX_PATH + 1];
    char auth[128];
};

/* A request a well-behaved client would send to the route: JSON "{}" for a change. */
static void make_request(struct req *r, const struct route *rt)
{
    memset(r, 0, sizeof(*r));
    instantiate(rt->pattern, r->path, sizeof(r->path));
    r->rq.method = rt->method;
    r->rq.path = r->path;
    r->rq.loopback = true;
    r->rq.host = "127.0.0.1:8080";
    if (rt->policy == ROUTE_CHANGE) {
        r->rq.content_type = "application/json";
        r->rq.body = "{}";
        r->rq.body_len = 2;
    }
}

static void with_token(struct req *r, const char *token)
{
    snprintf(r->auth, sizeof(r->auth), "Bearer %s", token);
    r->rq.authorization = r->auth;
}

/* Sends r; returns the status (the body is checked to be the JSON error for >= 400). */
static int send_req(struct fixture *f, const struct req *r, struct api_response *resp)
{
    api_handle(f->api, &r->rq, resp);
    int status = resp->status;
    if (status >= 400)
        assert_non_null(strstr(resp->body ? resp->body : "", "\"error\""));
    return status;
}

static void test_table_well_formed(void **state)
{
    (void)state;
    assert_true(api_routes_count > 30);
    for (size_t i = 0; i < api_routes_count; i++) {
        const struct route *r = &api_routes[i];
        bool get = strcmp(r->method, "GET") == 0;
        assert_true(get || strcmp(r->method, "POST") == 0 || strcmp(r->method, "PUT") == 0 ||
                    strcmp(r->method, "DELETE") == 0);
        /* reads are GETs and every other method changes something */
        if (get != (r->policy == ROUTE_READ))
            fail_msg("%s %s: policy %s", r->method, r->pattern, route_policy_to_string(r->policy));
        assert_true(strncmp(r->pattern, "/api/v1/", 8) == 0 || strcmp(r->pattern, "/metrics") == 0);
        assert_non_null(r->fn);
        if (r->flags & ROUTE_UPLOAD)
            assert_string_equal(r->method, "POST");
        for (size_t j = i + 1; j < api_routes_count; j++)
            if (strcmp(r->method, api_routes[j].method) == 0 &&
                strcmp(r->pattern, api_routes[j].pattern) == 0)
                fail_msg("%s %s: twice in the table", r->method, r->pattern);
        /* the row's own path selects the row's pattern (no other pattern is more specific) */
        char path[ROUTE_MAX_PATH + 1];
        instantiate(r->pattern, path, sizeof(path));
        int own = route_match(r->pattern, path, NULL);
        if (own < 0)
            fail_msg("%s does not match its own path %s", r->pattern, path);
        for (size_t j = 0; j < api_routes_count; j++)
            if (strcmp(api_routes[j].pattern, r->pattern) != 0 &&
                route_match(api_routes[j].pattern, path, NULL) >= own)
                fail_msg("%s: path %s is taken by %s", r->pattern, path, api_routes[j].pattern);
    }
    assert_string_equal(route_policy_to_string(ROUTE_READ), "read");
    assert_string_equal(route_policy_to_string(ROUTE_CHANGE), "change");
}

/* find_row HEAD: the device-facing row (daemon/ota_routes.c) the OTA endpoint gives a
 * request with this head. */
static const struct ota_route *find_row(const char *head)
{
    struct ota_http_request rq;
    struct ota_error err;
    int n = ota_http_parse_request(head, strlen(head), &rq, &err);
    if (n <= 0)
        fail_msg("head does not parse: %s", head);
    return ota_route_find(&rq);
}

static const struct ota_route *find_path(const char *path, bool sta_mac)
{
    char head[ROUTE_MAX_PATH + 200];
    snprintf(head, sizeof(head), "GET %s HTTP/1.1\r\nHost: s\r\n%s\r\n", path,
             sta_mac ? "User-Agent: ESP32-http-Update\r\nx-ESP32-STA-MAC: 24:6F:28:00:00:01\r\n"
                     : "");
    return find_row(head);
}

/* The device-facing table: each row is reached by the requests it describes (a check-in by
 * its STA-MAC header on any path, plain GETs by their path), every row's policy is its
 * own, and no operator route is anything on the OTA listener but "anything else". */
static void test_device_routes(void **state)
{
    (void)state;
    assert_true(ota_routes_count >= 5);
    bool seen[OTA_ROUTE_OTHER + 1] = {false};
    for (size_t i = 0; i < ota_routes_count; i++) {
        assert_string_equal(ota_routes[i].method, "GET");
        assert_non_null(ota_routes[i].what);
        assert_true(strncmp(ota_routes[i].pattern, "/api/", 5) != 0);
        seen[ota_routes[i].kind] = true;
    }
    for (int k = 0; k <= OTA_ROUTE_OTHER; k++)
        assert_true(seen[k]);
    assert_int_equal(find_path("/update", true)->kind, OTA_ROUTE_CHECKIN);
    assert_int_equal(find_path("/ota/fw/app/1.0.bin", true)->kind, OTA_ROUTE_CHECKIN);
    assert_int_equal(find_path("/ota/fw/app/1.0.bin", false)->kind, OTA_ROUTE_SET_IMAGE);
    assert_int_equal(find_path("/ota/fw/app/1.0.bin?x=1", false)->kind, OTA_ROUTE_SET_IMAGE);
    assert_int_equal(find_path("/ota/fw/app/1.0/user2.bin", false)->kind, OTA_ROUTE_SET_HALF);
    assert_int_equal(find_path("/fota/user1.bin", false)->kind, OTA_ROUTE_ADDR_HALF);
    assert_int_equal(find_path("/ota/fw/a/b/c/user1.bin", false)->kind, OTA_ROUTE_ADDR_HALF);
    assert_int_equal(find_path("/ota/fw/a/b/c.bin", false)->kind, OTA_ROUTE_OTHER);
    assert_int_equal(find_path("/ota/fw/app/1.0", false)->kind, OTA_ROUTE_OTHER);
    assert_int_equal(find_path("/update", false)->kind, OTA_ROUTE_OTHER);
    for (size_t i = 0; i < api_routes_count; i++) {
        char path[ROUTE_MAX_PATH + 1];
        instantiate(api_routes[i].pattern, path, sizeof(path));
        if (find_path(path, false)->kind != OTA_ROUTE_OTHER)
            fail_msg("operator route %s is served on the OTA listener", api_routes[i].pattern);
    }
}

static void test_match(void **state)
{
    (void)state;
    struct route_params p;
    assert_true(route_match("/api/v1/slots/{id*}/reset", "/api/v1/slots/uri:/dev/pts/5/reset", &p) >
                0);
    assert_int_equal(p.n, 1);
    assert_string_equal(p.v[0], "uri:/dev/pts/5");
    assert_true(route_match("/api/v1/slots/{id*}", "/api/v1/slots/uri:tcp://h:1", &p) > 0);
    assert_string_equal(p.v[0], "uri:tcp://h:1");
    assert_true(route_match("/api/v1/firmware/{name}/{version*}", "/api/v1/firmware/app/1.0", &p) >
                0);
    assert_int_equal(p.n, 2);
    assert_string_equal(p.v[0], "app");
    assert_string_equal(p.v[1], "1.0");
    /* single-segment captures stop at '/', captures are never empty */
    assert_int_equal(route_match("/api/v1/jobs/{id}", "/api/v1/jobs/1/x", NULL), -1);
    assert_int_equal(route_match("/api/v1/jobs/{id}", "/api/v1/jobs/", NULL), -1);
    assert_int_equal(route_match("/api/v1/slots/{id*}/reset", "/api/v1/slots//reset", NULL), -1);
    assert_int_equal(route_match("/api/v1/slots/{id*}", "/api/v1/slots/", NULL), -1);
    assert_int_equal(route_match("/api/v1/slots", "/api/v1/slots/", NULL), -1);
    assert_int_equal(route_match("/api/v1/slots", "/api/v1/slot", NULL), -1);
    /* the more literal pattern is the more specific */
    assert_true(route_match("/api/v1/profiles/active", "/api/v1/profiles/active", NULL) >
                route_match("/api/v1/profiles/{name}", "/api/v1/profiles/active", NULL));
    assert_true(route_match("/api/v1/slots/{id*}/reset", "/api/v1/slots/A1/reset", NULL) >
                route_match("/api/v1/slots/{id*}", "/api/v1/slots/A1/reset", NULL));
}

/* Every changing route refuses a missing and a wrong token before its handler; the right
 * token reaches the handler (whatever it answers then, it is not 401/403). */
static void test_change_routes_need_the_token(void **state)
{
    struct fixture *f = *state;
    size_t n_change = 0;
    for (size_t i = 0; i < api_routes_count; i++) {
        const struct route *rt = &api_routes[i];
        if (rt->policy != ROUTE_CHANGE)
            continue;
        n_change++;
        struct req r;
        struct api_response resp;
        make_request(&r, rt);
        if (send_req(f, &r, &resp) != 401 || !resp.auth_challenge)
            fail_msg("%s %s without a token: %d %s", rt->method, r.path, resp.status, resp.body);
        api_response_free(&resp);
        with_token(&r, "wrong-token");
        if (send_req(f, &r, &resp) != 401)
            fail_msg("%s %s with a wrong token: %d %s", rt->method, r.path, resp.status, resp.body);
        api_response_free(&resp);
        with_token(&r, TOKEN);
        int st = send_req(f, &r, &resp);
        if (st == 401 || st == 403 || (st == 404 && strstr(resp.body, "no such resource")) ||
            st == 405)
            fail_msg("%s %s with the token: %d %s", rt->method, r.path, st, resp.body);
        api_response_free(&resp);
        if (rt->flags & ROUTE_UPLOAD) {
            /* the upload path (multipart, bundles) applies the same policy */
            bool validate = false, replace = false;
            make_request(&r, rt);
            r.rq.content_type = "multipart/form-data; boundary=x";
            assert_int_equal(api_upload_precheck(f->api, &r.rq, &resp, &validate, &replace), 0);
            assert_int_equal(resp.status, 401);
            api_response_free(&resp);
            with_token(&r, TOKEN);
            assert_int_equal(api_upload_precheck(f->api, &r.rq, &resp, &validate, &replace), 1);
            api_response_free(&resp);
        }
    }
    assert_true(n_change >= 20);
}

static void test_read_routes_open(void **state)
{
    struct fixture *f = *state;
    for (size_t i = 0; i < api_routes_count; i++) {
        const struct route *rt = &api_routes[i];
        if (rt->policy != ROUTE_READ)
            continue;
        struct req r;
        struct api_response resp;
        make_request(&r, rt);
        int st = send_req(f, &r, &resp);
        if (st == 401 || st == 403 || st == 405)
            fail_msg("%s %s: %d %s", rt->method, r.path, st, resp.body);
        api_response_free(&resp);
    }
}

/* No token configured: changes only from loopback clients. */
static void test_no_token_loopback_only(void **state)
{
    struct fixture *f = *state;
    for (size_t i = 0; i < api_routes_count; i++) {
        const struct route *rt = &api_routes[i];
        struct req r;
        struct api_response resp;
        make_request(&r, rt);
        r.rq.loopback = false;
        int st = send_req(f, &r, &resp);
        if ((rt->policy == ROUTE_CHANGE) != (st == 403))
            fail_msg("%s %s from the network: %d %s", rt->method, r.path, st, resp.body);
        api_response_free(&resp);
        r.rq.loopback = true;
        st = send_req(f, &r, &resp);
        if (st == 401 || st == 403)
            fail_msg("%s %s from loopback: %d %s", rt->method, r.path, st, resp.body);
        api_response_free(&resp);
    }
}

/* A known path with another method: 405 with the pattern's methods; unknown: 404. */
static void test_405_and_404(void **state)
{
    struct fixture *f = *state;
    struct req r;
    struct api_response resp;
    memset(&r, 0, sizeof(r));
    r.rq.loopback = true;
    r.rq.method = "PATCH";
    r.rq.path = "/api/v1/profiles/p1";
    assert_int_equal(send_req(f, &r, &resp), 405);
    assert_string_equal(resp.allow, "GET, PUT, DELETE");
    api_response_free(&resp);
    r.rq.method = "GET";
    r.rq.path = "/api/v1/slots/F1/reset";
    assert_int_equal(send_req(f, &r, &resp), 405);
    assert_string_equal(resp.allow, "POST");
    api_response_free(&resp);
    r.rq.path = "/api/v1/nothing";
    assert_int_equal(send_req(f, &r, &resp), 404);
    api_response_free(&resp);
    r.rq.method = "HEAD";
    r.rq.path = "/api/v1/events";
    assert_int_equal(send_req(f, &r, &resp), 405);
    api_response_free(&resp);
}

/* Every changing route: a page of another origin, a foreign Host, a non-JSON POST are
 * refused even with the right token, before the handler; the station's own origin passes. */
static void expect_refused(struct fixture *f, const struct route *rt, const struct req *r, int want,
                           const char *field, const char *what)
{
    struct api_response resp;
    int st = send_req(f, r, &resp);
    if (st != want || (field && !strstr(resp.body, field)))
        fail_msg("%s %s %s: %d %s", rt->method, r->path, what, st, resp.body);
    api_response_free(&resp);
    if ((rt->flags & ROUTE_UPLOAD) && want != 415) {
        /* the same request as an upload (multipart): refused the same way */
        struct req u = *r;
        u.rq.path = u.path;
        u.rq.authorization = r->rq.authorization ? u.auth : NULL;
        u.rq.content_type = "multipart/form-data; boundary=x";
        bool validate = false, replace = false;
        if (api_upload_precheck(f->api, &u.rq, &resp, &validate, &replace) != 0 ||
            resp.status != want)
            fail_msg("upload %s %s: %d %s", r->path, what, resp.status, resp.body);
        api_response_free(&resp);
    }
}

static void walk_cross_origin(struct fixture *f, const char *token)
{
    for (size_t i = 0; i < api_routes_count; i++) {
        const struct route *rt = &api_routes[i];
        struct req r;
        struct api_response resp;
        make_request(&r, rt);
        if (token)
            with_token(&r, token);
        if (rt->policy == ROUTE_CHANGE) {
            static const char *const origins[] = {
                "http://evil.example",     "http://127.0.0.1:9090",
                "https://127.0.0.1",       "null",
                "http://127.0.0.1",        "file://",
                "http://127.0.0.1:8080.x", "http://evil.example:8080"};
            for (size_t k = 0; k < sizeof(origins) / sizeof(origins[0]); k++) {
                r.rq.origin = origins[k];
                expect_refused(f, rt, &r, 403, "Origin", origins[k]);
            }
            r.rq.origin = NULL;
            static const char *const sites[] = {"cross-site", "same-site"};
            for (size_t k = 0; k < 2; k++) {
                r.rq.fetch_site = sites[k];
                expect_refused(f, rt, &r, 403, "Sec-Fetch-Site", sites[k]);
            }
            r.rq.fetch_site = NULL;
            if (strcmp(rt->method, "POST") == 0) {
                /* what a form or a no-cors fetch can send without a preflight */
                static const char *const simple[] = {NULL, "text/plain", "text/plain;charset=UTF-8",
                                                     "application/x-www-form-urlencoded"};
                for (size_t k = 0; k < sizeof(simple) / sizeof(simple[0]); k++) {
                    r.rq.content_type = simple[k];
                    expect_refused(f, rt, &r, 415, NULL, simple[k] ? simple[k] : "no type");
                }
                r.rq.content_type = "application/json";
            }
            /* the station's own page (any spelling of its own origin) reaches the handler */
            r.rq.origin = "http://127.0.0.1:8080";
            r.rq.fetch_site = "same-origin";
            int st = send_req(f, &r, &resp);
            if (st == 401 || st == 403 || (st == 415 && !(rt->flags & ROUTE_UPLOAD)))
                fail_msg("%s %s same-origin: %d %s", rt->method, r.path, st, resp.body);
            api_response_free(&resp);
            if (rt->flags & ROUTE_UPLOAD) { /* the status page's own upload */
                bool validate = false, replace = false;
                r.rq.content_type = "multipart/form-data; boundary=x";
                assert_int_equal(api_upload_precheck(f->api, &r.rq, &resp, &validate, &replace), 1);
                api_response_free(&resp);
                r.rq.content_type = "application/json";
            }
            r.rq.origin = NULL;
            r.rq.fetch_site = NULL;
        } else {
            /* reads: another origin may send them (it cannot read the answer) */
            r.rq.origin = "http://evil.example";
            r.rq.fetch_site = "cross-site";
            int st = send_req(f, &r, &resp);
            if (st == 401 || st == 403)
                fail_msg("%s %s cross-origin read: %d %s", rt->method, r.path, st, resp.body);
            api_response_free(&resp);
            r.rq.origin = NULL;
            r.rq.fetch_site = NULL;
        }
        /* DNS rebinding: a foreign Host is refused on every route */
        static const char *const hosts[] = {
            "evil.example", "evil.example:8080", "127.0.0.1.evil.example", "", "[::1", "x:99999"};
        for (size_t k = 0; k < sizeof(hosts) / sizeof(hosts[0]); k++) {
            r.rq.host = hosts[k];
            expect_refused(f, rt, &r, 403, "Host", hosts[k]);
        }
    }
}

static void test_cross_origin_with_token(void **state)
{
    walk_cross_origin(*state, TOKEN);
}

static void test_cross_origin_no_token(void **state)
{
    walk_cross_origin(*state, NULL);
}

static void test_hosts(void **state)
{
    struct fixture *f = *state;
    static const char *const ok[] = {
        NULL,         "127.0.0.1",     "127.0.0.1:8080",     "10.1.2.3:80",
        "[::1]:8080", "[fe80::1]",     "localhost",          "LocalHost:8080",
        "localhost.", "station-3.lan", "Station-3.LAN:8080",
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        if (!api_host_allowed(f->api, ok[i]))
            fail_msg("Host %s refused", ok[i]);
    static const char *const bad[] = {"evil.example",     "station-3.lan.evil.example",
                                      "127.0.0.1.nip.io", "[::1",
                                      "[nothex]:80",      "localhost:",
                                      "station-4.lan",    "::1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (api_host_allowed(f->api, bad[i]))
            fail_msg("Host %s allowed", bad[i]);
    char self[300];
    if (gethostname(self, 256) == 0) {
        self[255] = '\0';
        assert_true(api_host_allowed(f->api, self));
        strcat(self, ".local:8080");
        assert_true(api_host_allowed(f->api, self));
    }
}

int main(void)
{
    log_init(LOG_MODE_JOURNAL, LOG_LEVEL_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_well_formed),
        cmocka_unit_test(test_match),
        cmocka_unit_test(test_device_routes),
        cmocka_unit_test_setup_teardown(test_change_routes_need_the_token, setup_token, teardown),
        cmocka_unit_test_setup_teardown(test_read_routes_open, setup_token, teardown),
        cmocka_unit_test_setup_teardown(test_405_and_404, setup_token, teardown),
        cmocka_unit_test_setup_teardown(test_no_token_loopback_only, setup_no_token, teardown),
        cmocka_unit_test_setup_teardown(test_cross_origin_with_token, setup_token, teardown),
        cmocka_unit_test_setup_teardown(test_cross_origin_no_token, setup_no_token, teardown),
        cmocka_unit_test_setup_teardown(test_hosts, setup_token, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
