/*
 * sim_net: the virtual board's network persona. After a reset into the
 * application (normal boot, or the loader's "run app"), when esp_sim was given
 * --net-bind, the board "runs" the firmware in its flash model: the app image
 * at the chip's app offset (ESP8266 0x0 simple layout, ESP32 family 0x10000;
 * --app-offset overrides) is parsed as an ESP image and identified by its MD5
 * (over the image length) and its version string (the printable text after
 * "ESPSIM_VERSION=" or "ESPVER:" inside the image, else "md5:<8 hex>").
 *
 * The persona itself is tests/netdev/esp_netdev, spawned as a child with the
 * chip, MAC, bind address, version, password, check-in URL and fault knob,
 * writing every image it applies back into DIR/flash.bin at the app offset
 * (and, with --fs-offset N, every filesystem image at N).
 * ESP8266 NONOS dual-image firmware: when no --app-offset is given and the
 * flash holds an SDK "V2" image (EA 04) at 0x1000 (user1), the board runs the
 * NONOS persona instead: esp_netdev with --tcp-ota on port 65056 of the bind
 * address (no ArduinoOTA, no HTTP check-in: a NONOS app has neither), user1
 * at 0x1000 and user2 at 0x1000 + the slot size of the header's flash size
 * map (0x41000 / 0x81000 / 0x101000). The running half is user1, or user2
 * when net/slot (written by esp_netdev after a TCP-OTA) says "2" and a V2
 * image is there; esp_netdev answers GetNextFlash with the other half and
 * writes an applied image into flash.bin at that half's address.
 * It is killed (SIGKILL: a reset is a power cut to the firmware) on the next
 * chip reset, EN low, or when esp_sim exits. No valid app image: no persona,
 * logged. The console announces "I (<ms>) app: version <v> ip <addr>" at the
 * first app tick after the persona is up, so the daemon's boot check can
 * capture both.
 *
 * Start-up is checked: the persona is "up" only once it wrote DIR/net/ready.
 * If esp_netdev cannot be run (exec error, reported through a close-on-exec
 * pipe), exits, or writes no ready file within --net-start-timeout MS (default
 * 5000), the board logs "net: persona failed: <why>", writes the reason to
 * DIR/net/failed (removed at the next app boot) and its console prints
 * "E (<ms>) app: version <v> network failed: <why>" instead of the IP line.
 * Real-device fact: firmware whose network stack does not come up logs an
 * error on the console instead of its address (ESP-IDF "E (..) wifi: ..."), so
 * a boot check waiting for the IP fails rather than passing a dead board.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "esp_image.h"
#include "ota_common.h"
#include "sim.h"

uint32_t sim_net_app_offset(const struct sim *s)
{
    if (s->net.app_offset >= 0)
        return (uint32_t)s->net.app_offset;
    return s->chip->chip == SIM_ESP8266 ? 0x0 : 0x10000;
}

static void find_version(const uint8_t *img, size_t len, const char *md5, char *out, size_t cap)
{
    static const char *const markers[] = {"ESPSIM_VERSION=", "ESPVER:"};
    for (size_t i = 0; i < len; i++) {
        for (size_t m = 0; m < 2; m++) {
            size_t ml = strlen(markers[m]);
            if (i + ml > len || memcmp(img + i, markers[m], ml) != 0)
                continue;
            const uint8_t *p = img + i + ml;
            size_t n = 0;
            while (p + n < img + len && n + 1 < cap && n < 32 && p[n] > 0x20 && p[n] < 0x7F)
                n++;
            if (n == 0)
                continue;
            memcpy(out, p, n);
            out[n] = '\0';
            return;
        }
    }
    snprintf(out, cap, "md5:%.8s", md5);
}

static const char *netdev_path(const struct sim *s, char *buf, size_t cap)
{
    if (s->net.netdev)
        return s->net.netdev;
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n <= 0)
        return "esp_netdev";
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash)
        *slash = '\0';
    static const char *const rel[] = {"netdev/esp_netdev", "../netdev/esp_netdev", "esp_netdev"};
    for (size_t i = 0; i < 3; i++) {
        snprintf(buf, cap, "%s/%s", exe, rel[i]);
        if (access(buf, X_OK) == 0)
            return buf;
    }
    return "esp_netdev";
}

/* Length of an ESP8266 SDK V2 image at img (header, irom0 segment, an 0xE9 image, the
 * CRC word), 0 if it is not one. *slot_bytes gets the slot size of its size map (0 none). */
static size_t v2_length(const uint8_t *img, size_t room, uint32_t *slot_bytes)
{
    *slot_bytes = 0;
    if (room < 24 || img[0] != 0xEA || img[1] != 0x04)
        return 0;
    uint32_t irom = (uint32_t)img[12] | (uint32_t)img[13] << 8 | (uint32_t)img[14] << 16 |
                    (uint32_t)img[15] << 24;
    if (irom > room - 24)
        return 0;
    struct esp_image_info info;
    if (esp_image_parse(img + 16 + irom, room - 16 - irom, true, &info, NULL) != 0)
        return 0;
    size_t len = 16 + irom + info.image_length + 4;
    if (len > room)
        return 0;
    static const uint32_t kib[] = {256, 0, 512, 512, 512, 1024, 1024};
    unsigned map = img[3] >> 4;
    *slot_bytes = map < 7 ? kib[map] * 1024u : 0;
    return len;
}

const char *sim_net_state_to_string(enum sim_net_state st)
{
    switch (st) {
    case SIM_NET_OFF:
        return "off";
    case SIM_NET_STARTING:
        return "starting";
    case SIM_NET_UP:
        return "up";
    case SIM_NET_FAILED:
        return "failed";
    }
    return "?";
}

static void net_path(const struct sim *s, const char *name, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s/net/%s", s->dir, name);
}

/* The first non-empty line this boot's persona wrote to DIR/net/netdev.err (what it said
 * before it died: an option error comes before the usage text; the file keeps earlier
 * boots' lines too). */
static void first_err_line(const struct sim *s, char *out, size_t cap)
{
    char path[PATH_MAX + 16], line[256];
    out[0] = '\0';
    net_path(s, "netdev.err", path, sizeof(path));
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    if (fseeko(f, s->net.err_start, SEEK_SET) != 0) {
        fclose(f);
        return;
    }
    while (fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0]) {
            snprintf(out, cap, "%s", line);
            break;
        }
    }
    fclose(f);
}

/* The persona could not start: log it, write DIR/net/failed, print it on the console. */
static void net_failed(struct sim *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void net_failed(struct sim *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->net.failed, sizeof(s->net.failed), fmt, ap);
    va_end(ap);
    s->net.state = SIM_NET_FAILED;
    s->net.start_deadline = 0;
    sim_log("net: persona failed: %s", s->net.failed);
    char tmp[PATH_MAX + 16], fin[PATH_MAX + 16];
    net_path(s, "failed.tmp", tmp, sizeof(tmp));
    net_path(s, "failed", fin, sizeof(fin));
    FILE *f = fopen(tmp, "w");
    if (f) {
        fprintf(f, "%s\n", s->net.failed);
        if (fclose(f) == 0)
            rename(tmp, fin);
    }
}

static void reap(struct sim *s, int st)
{
    char why[200];
    first_err_line(s, why, sizeof(why));
    int pid = s->net.pid;
    s->net.pid = 0;
    if (WIFEXITED(st))
        net_failed(s, "esp_netdev (pid %d) exited with status %d%s%s%s", pid, WEXITSTATUS(st),
                   s->net.state == SIM_NET_UP ? " while up" : " before it was ready",
                   why[0] ? ": " : "", why);
    else
        net_failed(s, "esp_netdev (pid %d) killed by signal %d%s%s%s", pid,
                   WIFSIGNALED(st) ? WTERMSIG(st) : 0,
                   s->net.state == SIM_NET_UP ? " while up" : " before it was ready",
                   why[0] ? ": " : "", why);
}

void sim_net_step(struct sim *s, int64_t now)
{
    if (s->net.pid <= 0 || (s->net.state != SIM_NET_STARTING && s->net.state != SIM_NET_UP))
        return;
    int st;
    pid_t r = waitpid(s->net.pid, &st, WNOHANG);
    if (r == s->net.pid) {
        reap(s, st);
        return;
    }
    if (s->net.state != SIM_NET_STARTING)
        return;
    char ready[PATH_MAX + 16];
    net_path(s, "ready", ready, sizeof(ready));
    if (access(ready, F_OK) == 0) {
        s->net.state = SIM_NET_UP;
        s->net.start_deadline = 0;
        sim_log("net: persona up (pid %d) %s", s->net.pid, s->net.up_line);
        return;
    }
    if (now >= s->net.start_deadline) {
        int pid = s->net.pid;
        kill(pid, SIGKILL);
        while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
            ;
        s->net.pid = 0;
        net_failed(s, "esp_netdev (pid %d) wrote no %s within %d ms (killed)", pid, ready,
                   s->net.start_timeout_ms);
    }
}

/* While starting, the loop looks for DIR/net/ready every 10 ms. */
int64_t sim_net_next_event(const struct sim *s)
{
    if (s->net.state != SIM_NET_STARTING)
        return INT64_MAX;
    int64_t t = sim_now() + 10 * SIM_NS_PER_MS;
    return s->net.start_deadline < t ? s->net.start_deadline : t;
}

int sim_net_app_line(struct sim *s, unsigned ms, char *line, size_t cap)
{
    if (!s->net.announce)
        return 0;
    switch (s->net.state) {
    case SIM_NET_STARTING:
        return -1;
    case SIM_NET_UP:
        s->net.announce = false;
        snprintf(line, cap, "I (%u) app: version %s ip %s\r\n", ms, s->net.version, s->net.bind);
        return 1;
    case SIM_NET_FAILED:
        s->net.announce = false;
        snprintf(line, cap, "E (%u) app: version %s network failed: %s\r\n", ms, s->net.version,
                 s->net.failed);
        return 1;
    case SIM_NET_OFF:
        break;
    }
    s->net.announce = false;
    return 0;
}

void sim_net_stop(struct sim *s)
{
    if (s->net.pid > 0) {
        kill(s->net.pid, SIGKILL);
        int st;
        while (waitpid(s->net.pid, &st, 0) < 0 && errno == EINTR)
            ;
        sim_log("net: persona stopped (pid %d, was %s)", (int)s->net.pid,
                sim_net_state_to_string(s->net.state));
    }
    s->net.pid = 0;
    s->net.state = SIM_NET_OFF;
    s->net.start_deadline = 0;
    s->net.announce = false;
}

void sim_net_boot(struct sim *s)
{
    sim_net_stop(s);
    if (!s->net.bind)
        return;
    uint32_t off = sim_net_app_offset(s);
    if (off >= s->flash.size) {
        sim_log("net: app offset 0x%x outside the flash: no network persona", off);
        return;
    }
    bool esp8266 = s->chip->chip == SIM_ESP8266;
    /* ESP8266 NONOS dual-image layout: user1 at 0x1000 (see the header comment). */
    uint32_t slot_bytes = 0, user2 = 0;
    int running = 0;
    size_t len = 0;
    if (esp8266 && s->net.app_offset < 0 && s->flash.size > 0x1000) {
        len = v2_length(s->flash.mem + 0x1000, s->flash.size - 0x1000, &slot_bytes);
        if (len && slot_bytes && 0x1000 + slot_bytes < s->flash.size) {
            off = 0x1000;
            running = 1;
            user2 = 0x1000 + slot_bytes;
            char sp[PATH_MAX + 16], buf[8] = "";
            snprintf(sp, sizeof(sp), "%s/net/slot", s->dir);
            FILE *f = fopen(sp, "r");
            if (f) {
                if (!fgets(buf, sizeof(buf), f))
                    buf[0] = '\0';
                fclose(f);
            }
            uint32_t sb2;
            size_t len2 =
                buf[0] == '2' ? v2_length(s->flash.mem + user2, s->flash.size - user2, &sb2) : 0;
            if (len2) {
                off = user2;
                running = 2;
                len = len2;
            }
        } else {
            len = 0;
        }
    }
    const uint8_t *app = s->flash.mem + off;
    if (!running) {
        size_t room = s->flash.size - off;
        struct esp_image_info info;
        int rc = esp_image_parse(app, room, esp8266, &info, NULL);
        if (rc != 0 || info.image_length == 0 || info.image_length > room) {
            sim_log("net: no valid app image at 0x%x (%d): no network persona", off, rc);
            return;
        }
        len = info.image_length;
    }
    if (ota_md5_hex(app, len, s->net.md5) != 0)
        return;
    find_version(app, len, s->net.md5, s->net.version, sizeof(s->net.version));
    s->net.size = (uint32_t)len;

    char dir[PATH_MAX], flash[PATH_MAX + 16], errf[PATH_MAX + 16], exe[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s/net", s->dir);
    mkdir(dir, 0755);
    /* This boot's persona must write its own ready file; the last boot's verdict goes. */
    net_path(s, "ready", errf, sizeof(errf));
    unlink(errf);
    net_path(s, "failed", errf, sizeof(errf));
    unlink(errf);
    snprintf(flash, sizeof(flash), "%s/flash.bin", s->dir);
    snprintf(errf, sizeof(errf), "%s/netdev.err", dir);
    struct stat est;
    s->net.err_start = stat(errf, &est) == 0 ? (int64_t)est.st_size : 0;
    const char *prog = netdev_path(s, exe, sizeof(exe));
    char mac[18], size[24], offs[24], port[16], interval[16], hp[16], u2[24], run[4];
    snprintf(mac, sizeof(mac), "%02X:%02X:%02X:%02X:%02X:%02X", s->mac[0], s->mac[1], s->mac[2],
             s->mac[3], s->mac[4], s->mac[5]);
    snprintf(size, sizeof(size), "%zu", len);
    snprintf(offs, sizeof(offs), "0x%x", running ? 0x1000u : off);
    snprintf(port, sizeof(port), "%d",
             s->net.ota_port >= 0 ? s->net.ota_port : (esp8266 ? 8266 : 3232));
    if (s->net.interval_ms < 0) /* --checkin-interval once */
        snprintf(interval, sizeof(interval), "once");
    else
        snprintf(interval, sizeof(interval), "%d",
                 s->net.interval_ms > 0 ? s->net.interval_ms : 1000);
    const char *argv[40];
    size_t n = 0;
    argv[n++] = prog;
    argv[n++] = "--chip";
    argv[n++] = esp8266 ? "esp8266" : "esp32";
    argv[n++] = "--mac";
    argv[n++] = mac;
    argv[n++] = "--bind";
    argv[n++] = s->net.bind;
    argv[n++] = "--dir";
    argv[n++] = dir;
    argv[n++] = "--version";
    argv[n++] = s->net.version;
    argv[n++] = "--sketch-md5";
    argv[n++] = s->net.md5;
    argv[n++] = "--sketch-size";
    argv[n++] = size;
    argv[n++] = "--flash";
    argv[n++] = flash;
    argv[n++] = "--flash-offset";
    argv[n++] = offs;
    argv[n++] = "--ota-port";
    argv[n++] = running ? "-1" : port; /* a NONOS app runs no ArduinoOTA */
    if (running) {
        snprintf(u2, sizeof(u2), "0x%x", user2);
        snprintf(run, sizeof(run), "%d", running);
        argv[n++] = "--tcp-ota";
        argv[n++] = "--tcp-ota-port";
        argv[n++] = "65056";
        argv[n++] = "--user2-offset";
        argv[n++] = u2;
        argv[n++] = "--running-slot";
        argv[n++] = run;
    }
    if (s->net.password) {
        argv[n++] = "--password";
        argv[n++] = s->net.password;
    }
    if (s->net.auth) {
        argv[n++] = "--auth";
        argv[n++] = s->net.auth;
    }
    if (s->net.checkin && !running) {
        argv[n++] = "--checkin";
        argv[n++] = s->net.checkin;
        argv[n++] = "--interval";
        argv[n++] = interval;
    }
    if (s->net.http_port >= 0) {
        snprintf(hp, sizeof(hp), "%d", s->net.http_port);
        argv[n++] = "--http-port";
        argv[n++] = hp;
    }
    if (s->net.fault) {
        argv[n++] = "--fault";
        argv[n++] = s->net.fault;
    }
    if (s->net.fs_off) {
        argv[n++] = "--fs-offset";
        argv[n++] = s->net.fs_off;
    }
    /* The persona's Updater erases each 4 KiB sector before writing it, on this board's flash:
     * sim_flash.c's 45 ms sector erase, scaled by --link-speed (0 at --link-speed 0). */
    char erase[24];
    snprintf(erase, sizeof(erase), "%lld",
             (long long)(sim_flash_scaled(&s->flash, 45 * SIM_NS_PER_MS) / SIM_NS_PER_MS));
    argv[n++] = "--erase-ms";
    argv[n++] = erase;
    argv[n] = NULL;

    snprintf(s->net.up_line, sizeof(s->net.up_line), "%s version %s md5 %s size %zu ip %s%s", prog,
             s->net.version, s->net.md5, len, s->net.bind,
             running == 1   ? " nonos user1 tcp-ota 65056"
             : running == 2 ? " nonos user2 tcp-ota 65056"
                            : "");
    s->net.announce = true; /* the IP line, or the failure, at the first app tick */
    /* An exec error comes back through a close-on-exec pipe (EOF = exec worked). */
    int ep[2];
    if (pipe2(ep, O_CLOEXEC) != 0) {
        net_failed(s, "pipe: %s", strerror(errno));
        return;
    }
    pid_t pid = fork();
    if (pid < 0) {
        close(ep[0]);
        close(ep[1]);
        net_failed(s, "fork: %s", strerror(errno));
        return;
    }
    if (pid == 0) {
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGPIPE, SIG_DFL);
        int efd = open(errf, O_WRONLY | O_CREAT | O_APPEND, 0644);
        int nfd = open("/dev/null", O_RDWR);
        if (nfd >= 0) {
            dup2(nfd, 0);
            dup2(efd >= 0 ? efd : nfd, 1);
            dup2(efd >= 0 ? efd : nfd, 2);
        }
        for (int fd = 3; fd < 4096; fd++)
            if (fd != ep[1])
                close(fd);
        execv(prog, (char *const *)argv);
        int e = errno;
        ssize_t w = write(ep[1], &e, sizeof(e));
        (void)w;
        _exit(127);
    }
    close(ep[1]);
    int child_errno = 0;
    ssize_t r;
    while ((r = read(ep[0], &child_errno, sizeof(child_errno))) < 0 && errno == EINTR)
        ;
    close(ep[0]);
    if (r == (ssize_t)sizeof(child_errno)) {
        int st;
        while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
            ;
        net_failed(s, "cannot run %s: %s%s", prog, strerror(child_errno),
                   s->net.netdev ? ""
                                 : " (not found next to esp_sim as netdev/esp_netdev, "
                                   "../netdev/esp_netdev or esp_netdev; build the esp_netdev "
                                   "target or give --netdev PATH)");
        return;
    }
    s->net.pid = pid;
    s->net.state = SIM_NET_STARTING;
    int ms = s->net.start_timeout_ms > 0 ? s->net.start_timeout_ms : 5000;
    s->net.start_deadline = sim_now() + ms * SIM_NS_PER_MS;
    sim_log("net: persona starting (pid %d) %s", (int)pid, prog);
}
