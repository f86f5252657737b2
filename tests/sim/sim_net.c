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
 * first app tick so the daemon's boot check can capture both.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
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

void sim_net_stop(struct sim *s)
{
    if (s->net.pid <= 0)
        return;
    kill(s->net.pid, SIGKILL);
    int st;
    while (waitpid(s->net.pid, &st, 0) < 0 && errno == EINTR)
        ;
    sim_log("net: persona stopped (pid %d)", (int)s->net.pid);
    s->net.pid = 0;
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
    snprintf(flash, sizeof(flash), "%s/flash.bin", s->dir);
    snprintf(errf, sizeof(errf), "%s/netdev.err", dir);
    const char *prog = netdev_path(s, exe, sizeof(exe));
    char mac[18], size[24], offs[24], port[16], interval[16], hp[16], u2[24], run[4];
    snprintf(mac, sizeof(mac), "%02X:%02X:%02X:%02X:%02X:%02X", s->mac[0], s->mac[1], s->mac[2],
             s->mac[3], s->mac[4], s->mac[5]);
    snprintf(size, sizeof(size), "%zu", len);
    snprintf(offs, sizeof(offs), "0x%x", running ? 0x1000u : off);
    snprintf(port, sizeof(port), "%d",
             s->net.ota_port >= 0 ? s->net.ota_port : (esp8266 ? 8266 : 3232));
    snprintf(interval, sizeof(interval), "%d", s->net.interval_ms > 0 ? s->net.interval_ms : 1000);
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

    pid_t pid = fork();
    if (pid < 0) {
        sim_log("net: fork failed: %s", strerror(errno));
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
            close(fd);
        execv(prog, (char *const *)argv);
        _exit(127);
    }
    s->net.pid = pid;
    s->net.announce = true;
    sim_log("net: persona up (pid %d) %s version %s md5 %s size %zu ip %s%s", (int)pid, prog,
            s->net.version, s->net.md5, len, s->net.bind,
            running == 1   ? " nonos user1 tcp-ota 65056"
            : running == 2 ? " nonos user2 tcp-ota 65056"
                           : "");
}
