/*
 * ota_driver: station-side CLI over the espproto OTA modules, for the
 * integration tests. One line on stdout per outcome:
 *   OK <details>
 *   ERROR errno=<name> stage=<stage> device=<text> message=<...> advice=<...>
 * Exit 0 on OK, 1 on ERROR, 2 on usage. Library log lines go to stderr.
 *
 *   ota_driver espota --ip IP --port N [--chip esp8266|esp32] [--password PW]
 *       [--hash auto|sha256|md5] [--fs] [--local-port N] [--attempts N]
 *       [--invite-timeout MS] [--auth-timeout MS] [--accept-timeout MS]
 *       [--stall-timeout MS] [--result-timeout MS] [--progress FILE] IMAGE
 *     --progress FILE: every progress report appended as "<done> <total>" lines
 *   ota_driver webform --ip IP --port N [--user U] [--password PW] [--fs] IMAGE
 *   ota_driver tcpota --ip IP --port N USER1 USER2
 *   ota_driver serve --bind IP --port-file F --image FILE --version V --mac MAC
 *       [--strict] [--enrol] [--requests N]      (HTTP pull server: ota_http)
 *   ota_driver image [--pubkey PEM] [--require-signed] [--chip C] FILE
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ota_common.h"
#include "ota_espota.h"
#include "ota_http.h"
#include "ota_image.h"
#include "ota_tcp.h"
#include "ota_webform.h"

static void log_cb(void *ctx, enum ota_log_level level, const char *line)
{
    (void)ctx;
    fprintf(stderr, "[%s] %s\n", ota_log_level_to_string(level), line);
}

static uint8_t *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc(n > 0 ? (size_t)n : 1);
    if (buf && n > 0 && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    *len = n > 0 ? (size_t)n : 0;
    return buf;
}

static int report(int rc, const struct ota_error *err, const char *ok_details)
{
    if (rc >= 0) {
        printf("OK %s\n", ok_details ? ok_details : "");
        return 0;
    }
    printf("ERROR errno=%s stage=%s device=%s message=%s advice=%s\n", ota_errno_to_string(rc),
           ota_stage_to_string(err->stage), err->device_text[0] ? err->device_text : "-",
           err->message, err->advice);
    return 1;
}

static void usage(void)
{
    fprintf(stderr, "usage: see the comment at the top of ota_driver.c\n");
    exit(2);
}

static const char *opt(int argc, char **argv, const char *name)
{
    for (int i = 2; i + 1 < argc; i++)
        if (strcmp(argv[i], name) == 0)
            return argv[i + 1];
    return NULL;
}

static bool flag(int argc, char **argv, const char *name)
{
    for (int i = 2; i < argc; i++)
        if (strcmp(argv[i], name) == 0)
            return true;
    return false;
}

static int opt_int(int argc, char **argv, const char *name, int dflt)
{
    const char *v = opt(argc, argv, name);
    return v ? atoi(v) : dflt;
}

static void progress_cb(void *ctx, uint64_t done, uint64_t total)
{
    FILE *f = ctx;
    if (f) {
        fprintf(f, "%" PRIu64 " %" PRIu64 "\n", done, total);
        fflush(f);
    }
}

static int cmd_espota(int argc, char **argv)
{
    size_t len = 0;
    uint8_t *img = read_file(argv[argc - 1], &len);
    if (!img)
        usage();
    struct ota_espota_config cfg = {
        .chip = opt(argc, argv, "--chip") && strcmp(opt(argc, argv, "--chip"), "esp32") == 0
                    ? OTA_CHIP_ESP32
                    : OTA_CHIP_ESP8266,
        .device_ip = opt(argc, argv, "--ip"),
        .device_port = (uint16_t)opt_int(argc, argv, "--port", 0),
        .local_port = (uint16_t)opt_int(argc, argv, "--local-port", 0),
        .command = flag(argc, argv, "--fs") ? OTA_ESPOTA_CMD_FS : OTA_ESPOTA_CMD_FLASH,
        .password = opt(argc, argv, "--password"),
        .invite_attempts = opt_int(argc, argv, "--attempts", 0),
        .invite_timeout_ms = opt_int(argc, argv, "--invite-timeout", 0),
        .auth_timeout_ms = opt_int(argc, argv, "--auth-timeout", 0),
        .accept_timeout_ms = opt_int(argc, argv, "--accept-timeout", 0),
        .stall_timeout_ms = opt_int(argc, argv, "--stall-timeout", 0),
        .result_timeout_ms = opt_int(argc, argv, "--result-timeout", 0),
        .log = log_cb,
    };
    const char *h = opt(argc, argv, "--hash");
    if (h && strcmp(h, "sha256") == 0)
        cfg.pbkdf2_hash = OTA_ESPOTA_HASH_SHA256;
    else if (h && strcmp(h, "md5") == 0)
        cfg.pbkdf2_hash = OTA_ESPOTA_HASH_MD5;
    const char *pf = opt(argc, argv, "--progress");
    FILE *progress = pf ? fopen(pf, "w") : NULL;
    if (pf && !progress)
        usage();
    struct ota_error err;
    int rc = ota_espota_push(&cfg, img, len, progress_cb, progress, -1, &err);
    if (progress)
        fclose(progress);
    char details[64];
    snprintf(details, sizeof(details), "pushed %zu bytes", len);
    free(img);
    return report(rc, &err, details);
}

static int cmd_webform(int argc, char **argv)
{
    size_t len = 0;
    uint8_t *img = read_file(argv[argc - 1], &len);
    if (!img)
        usage();
    struct ota_webform_config cfg = {
        .host = opt(argc, argv, "--ip"),
        .port = (uint16_t)opt_int(argc, argv, "--port", 0),
        .user = opt(argc, argv, "--user"),
        .password = opt(argc, argv, "--password"),
        .filesystem = flag(argc, argv, "--fs"),
        .log = log_cb,
    };
    struct ota_error err;
    int rc = ota_webform_push(&cfg, img, len, progress_cb, NULL, -1, &err);
    free(img);
    return report(rc, &err, "Update Success");
}

static int cmd_tcpota(int argc, char **argv)
{
    size_t l1 = 0, l2 = 0;
    uint8_t *u1 = read_file(argv[argc - 2], &l1);
    uint8_t *u2 = read_file(argv[argc - 1], &l2);
    if (!u1 || !u2)
        usage();
    struct ota_tcp_config cfg = {
        .host = opt(argc, argv, "--ip"),
        .port = (uint16_t)opt_int(argc, argv, "--port", 0),
        .log = log_cb,
    };
    struct ota_error err;
    enum ota_tcp_slot slot = OTA_TCP_SLOT_NONE;
    int rc = ota_tcp_push(&cfg, u1, l1, u2, l2, &slot, progress_cb, NULL, -1, &err);
    free(u1);
    free(u2);
    return report(rc, &err, ota_tcp_slot_to_string(slot));
}

/* A one-board HTTP pull server: the daemon's future endpoint in miniature. */
static int cmd_serve(int argc, char **argv)
{
    const char *bind_ip = opt(argc, argv, "--bind");
    const char *port_file = opt(argc, argv, "--port-file");
    const char *image_path = opt(argc, argv, "--image");
    const char *version = opt(argc, argv, "--version");
    const char *mac_s = opt(argc, argv, "--mac");
    int requests = opt_int(argc, argv, "--requests", 2);
    uint8_t mac[6];
    size_t len = 0;
    uint8_t *img = image_path ? read_file(image_path, &len) : NULL;
    if (!bind_ip || !port_file || !img || !mac_s || ota_http_parse_mac(mac_s, mac) < 0)
        usage();
    char md5[33];
    ota_md5_hex(img, len, md5);
    /* ESP8266 image facts as the daemon keeps them (ota_fw.c): header flash size, and the
     * MD5s with each flash mode (a board that runs the image reports one of them) */
    char mode_md5[4][33];
    bool have_modes = ota_image_mode_md5(img, len, mode_md5) == 0;
    struct ota_http_image target = {.version = version && version[0] ? version : NULL,
                                    .md5 = md5,
                                    .size = len,
                                    .gzip = ota_image_is_gzip(img, len),
                                    .header_flash = ota_image_esp8266_flash_size(img, len),
                                    .mode_md5 = have_modes ? (const char(*)[33])mode_md5 : NULL};
    char served_md5[33] = "", served_from[33] = "";
    struct ota_http_policy policy = {
        .strict = flag(argc, argv, "--strict"),
        .unknown = flag(argc, argv, "--enrol") ? OTA_HTTP_UNKNOWN_ENROL : OTA_HTTP_UNKNOWN_REFUSE};
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    inet_pton(AF_INET, bind_ip, &a.sin_addr);
    socklen_t al = sizeof(a);
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(lfd, 8) != 0 ||
        getsockname(lfd, (struct sockaddr *)&a, &al) != 0) {
        perror("listen");
        return 2;
    }
    FILE *pf = fopen(port_file, "w");
    if (!pf)
        return 2;
    fprintf(pf, "%u\n", ntohs(a.sin_port));
    fclose(pf);
    for (int n = 0; n < requests; n++) {
        int fd = accept(lfd, NULL, NULL);
        if (fd < 0)
            return 2;
        char buf[OTA_HTTP_MAX_HEAD];
        size_t got = 0;
        struct ota_http_request req;
        struct ota_error err;
        int rc = 0;
        while (rc == 0 && got < sizeof(buf)) {
            struct pollfd p = {.fd = fd, .events = POLLIN};
            if (poll(&p, 1, 5000) <= 0)
                break;
            ssize_t r = recv(fd, buf + got, sizeof(buf) - got, 0);
            if (r <= 0)
                break;
            got += (size_t)r;
            rc = ota_http_parse_request(buf, got, &req, &err);
        }
        if (rc <= 0) {
            printf("request: unparsed (%s)\n", rc < 0 ? err.message : "incomplete");
            close(fd);
            continue;
        }
        bool known = req.has_sta_mac && memcmp(req.sta_mac, mac, 6) == 0;
        struct ota_http_board board = {
            .known = known,
            .target = &target,
            .served_md5 = served_md5[0] ? served_md5 : NULL,
            .served_from_sketch_md5 = served_from[0] ? served_from : NULL,
        };
        struct ota_http_decision d;
        ota_http_decide(&req, &board, &policy, &d);
        char head[1024];
        int hn = ota_http_format_response(&d, head, sizeof(head));
        bool sent_ok = hn > 0 && send(fd, head, (size_t)hn, MSG_NOSIGNAL) == hn;
        if (sent_ok && d.action == OTA_HTTP_SERVE)
            sent_ok = send(fd, img, len, MSG_NOSIGNAL) == (ssize_t)len;
        if (sent_ok && d.record_served) {
            snprintf(served_md5, sizeof(served_md5), "%s", md5);
            snprintf(served_from, sizeof(served_from), "%s", req.sketch_md5);
        }
        printf("request client=%s version=%s -> %d %s: %s\n", ota_http_client_to_string(req.client),
               req.version[0] ? req.version : "-", d.status, ota_http_action_to_string(d.action),
               d.reason);
        fflush(stdout);
        shutdown(fd, SHUT_WR);
        close(fd);
    }
    free(img);
    close(lfd);
    return 0;
}

static char *read_text(const char *path)
{
    size_t n = 0;
    uint8_t *b = read_file(path, &n);
    if (!b)
        return NULL;
    char *s = realloc(b, n + 1);
    if (!s) {
        free(b);
        return NULL;
    }
    s[n] = '\0';
    return s;
}

static int cmd_image(int argc, char **argv)
{
    size_t len = 0;
    uint8_t *img = read_file(argv[argc - 1], &len);
    if (!img)
        usage();
    const char *keyp = opt(argc, argv, "--pubkey");
    char *pem = keyp ? read_text(keyp) : NULL;
    const char *chip = opt(argc, argv, "--chip");
    struct ota_image_policy pol = {.require_signed = flag(argc, argv, "--require-signed"),
                                   .pem_pubkey = pem,
                                   .chip = chip && strcmp(chip, "esp32") == 0 ? OTA_CHIP_ESP32
                                                                              : OTA_CHIP_ESP8266};
    struct ota_image_info info;
    struct ota_error err;
    ota_error_clear(&err);
    int rc = ota_image_check(img, len, &pol, &info, &err);
    char details[128];
    snprintf(details, sizeof(details), "kind=%s sig=%s payload=%zu md5=%s",
             ota_image_kind_to_string(info.kind), ota_sig_status_to_string(info.sig),
             info.payload_len, info.md5);
    free(pem);
    free(img);
    return report(rc, &err, details);
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    if (argc < 3)
        usage();
    if (strcmp(argv[1], "espota") == 0)
        return cmd_espota(argc, argv);
    if (strcmp(argv[1], "webform") == 0)
        return cmd_webform(argc, argv);
    if (strcmp(argv[1], "tcpota") == 0)
        return cmd_tcpota(argc, argv);
    if (strcmp(argv[1], "serve") == 0)
        return cmd_serve(argc, argv);
    if (strcmp(argv[1], "image") == 0)
        return cmd_image(argc, argv);
    usage();
    return 2;
}
