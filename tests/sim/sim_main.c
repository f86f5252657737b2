/*
 * sim_main: esp_sim, the virtual ESP board. Parses the command line, creates
 * the files in DIR (tty symlink, tty.modem socket, flash.bin, sim.log, ready)
 * and runs the single-threaded event loop: ppoll() over the link fd, the
 * modem datagram socket and the TCP listener, with the timeout set to the
 * nearest deadline (wire pacing, deferred replies, strap sample, app chatter).
 * Exits 0 on SIGTERM/SIGINT or when a disconnect fault fires.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "sim.h"

static volatile sig_atomic_t stop_requested, manual_boot_requested;

static void on_signal(int sig)
{
    if (sig == SIGUSR1)
        manual_boot_requested = 1; /* the technician: hold BOOT, tap EN */
    else
        stop_requested = 1;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: esp_sim --chip esp8266|esp32|esp32c3|esp32s3 --dir DIR [--tcp PORT]\n"
            "               [--flash-size SIZE] [--flash-id HEX] [--mac aa:bb:cc:dd:ee:ff]\n"
            "               [--link-speed F] [--strict-reset] [--no-boot-noise] [--log-mono]\n"
            "               [--stub-dir DIR] [--stub-gen current|legacy] [--fault KIND[:ARG]]...\n"
            "               [--stub-pipeline on|off] [--stub-erase-ahead on|off]\n"
            "               [--master-fd N] [--adapter-max BAUD] [--rom-unsupported N[:OP]]\n"
            "               [--secure-download] [--spi-pads CLK,Q,D,CS,HD]\n"
            "               [--rom-attach required|lenient]\n"
            "               [--usb serial-jtag|otg [--usb-wdt-ms N] [--usb-gone-ms N]\n"
            "                [--usb-reenum app|always] [--usb-otg-block N]\n"
            "                [--usb-stray-05 N[:EVERY]]]\n"
            "               [--net-bind 127.0.0.x [--checkin URL] [--checkin-interval MS|once]\n"
            "                [--ota-password PW] [--ota-auth md5|pbkdf2] [--ota-port N]\n"
            "                [--web-port N] [--net-fault F] [--netdev PATH] [--app-offset N]\n"
            "                [--fs-offset N] [--net-start-timeout MS]] [--app-baud N]\n"
            "               [--manual-boot-after MS|signal]\n");
}

static int parse_size(const char *arg, uint32_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(arg, &end, 0);
    if (errno || end == arg)
        return -1;
    if (strcasecmp(end, "MB") == 0 || strcasecmp(end, "M") == 0)
        v <<= 20;
    else if (strcasecmp(end, "KB") == 0 || strcasecmp(end, "K") == 0)
        v <<= 10;
    else if (*end)
        return -1;
    if (v < 0x10000 || v > 0x10000000ull || v % 0x1000)
        return -1;
    *out = (uint32_t)v;
    return 0;
}

static int parse_mac(const char *arg, uint8_t mac[6])
{
    unsigned m[6];
    char extra;
    if (sscanf(arg, "%x:%x:%x:%x:%x:%x%c", &m[0], &m[1], &m[2], &m[3], &m[4], &m[5], &extra) != 6)
        return -1;
    for (int i = 0; i < 6; i++) {
        if (m[i] > 0xFF)
            return -1;
        mac[i] = (uint8_t)m[i];
    }
    return 0;
}

static uint32_t default_flash_id(uint32_t size)
{
    unsigned code = 0x16;
    for (unsigned c = 0x10; c < 0x20; c++)
        if ((1u << c) == size)
            code = c;
    return (code << 16) | 0x40EF;
}

static int path_in(char *buf, size_t cap, const char *dir, const char *name)
{
    int n = snprintf(buf, cap, "%s/%s", dir, name);
    return (n < 0 || (size_t)n >= cap) ? -1 : 0;
}

static int write_ready(const char *dir, const char *content)
{
    char tmp[4096], fin[4096];
    if (path_in(tmp, sizeof(tmp), dir, ".ready.tmp") || path_in(fin, sizeof(fin), dir, "ready"))
        return -1;
    FILE *f = fopen(tmp, "w");
    if (!f)
        return -1;
    fputs(content, f);
    if (fclose(f) != 0)
        return -1;
    return rename(tmp, fin);
}

static int open_modem(const char *path)
{
    struct sockaddr_un a;
    memset(&a, 0, sizeof(a));
    a.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof(a.sun_path)) {
        fprintf(stderr, "esp_sim: modem socket path too long: %s\n", path);
        return -1;
    }
    strcpy(a.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    unlink(path);
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

struct options {
    const char *chip, *dir;
    int tcp_port;
    bool tcp;
    int master_fd; /* --master-fd: an inherited pty master, -1 = make our own pty */
};

static int parse_args(int argc, char **argv, struct sim *s, struct options *o)
{
    static const struct option longopts[] = {{"chip", required_argument, NULL, 'c'},
                                             {"dir", required_argument, NULL, 'd'},
                                             {"tcp", required_argument, NULL, 't'},
                                             {"flash-size", required_argument, NULL, 's'},
                                             {"flash-id", required_argument, NULL, 'i'},
                                             {"mac", required_argument, NULL, 'm'},
                                             {"link-speed", required_argument, NULL, 'l'},
                                             {"strict-reset", no_argument, NULL, 'r'},
                                             {"no-boot-noise", no_argument, NULL, 'n'},
                                             {"log-mono", no_argument, NULL, 'L'},
                                             {"stub-dir", required_argument, NULL, 'S'},
                                             {"stub-gen", required_argument, NULL, 'G'},
                                             {"stub-pipeline", required_argument, NULL, 'p'},
                                             {"stub-erase-ahead", required_argument, NULL, 'e'},
                                             {"fault", required_argument, NULL, 'f'},
                                             {"master-fd", required_argument, NULL, 'M'},
                                             {"net-bind", required_argument, NULL, 'B'},
                                             {"checkin", required_argument, NULL, 'C'},
                                             {"checkin-interval", required_argument, NULL, 'I'},
                                             {"ota-password", required_argument, NULL, 'P'},
                                             {"ota-auth", required_argument, NULL, 'A'},
                                             {"ota-port", required_argument, NULL, 'O'},
                                             {"web-port", required_argument, NULL, 'W'},
                                             {"net-fault", required_argument, NULL, 'F'},
                                             {"netdev", required_argument, NULL, 'N'},
                                             {"app-offset", required_argument, NULL, 'a'},
                                             {"fs-offset", required_argument, NULL, 'Z'},
                                             {"app-baud", required_argument, NULL, 'R'},
                                             {"adapter-max", required_argument, NULL, 'X'},
                                             {"net-start-timeout", required_argument, NULL, 'T'},
                                             {"rom-unsupported", required_argument, NULL, 'U'},
                                             {"secure-download", no_argument, NULL, 'D'},
                                             {"spi-pads", required_argument, NULL, 'Q'},
                                             {"rom-attach", required_argument, NULL, 'H'},
                                             {"usb", required_argument, NULL, 'u'},
                                             {"usb-wdt-ms", required_argument, NULL, 'w'},
                                             {"usb-gone-ms", required_argument, NULL, 'g'},
                                             {"usb-reenum", required_argument, NULL, 'E'},
                                             {"usb-otg-block", required_argument, NULL, 'K'},
                                             {"usb-stray-05", required_argument, NULL, 'J'},
                                             {"manual-boot-after", required_argument, NULL, 'b'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    uint32_t flash_size = 4u << 20;
    bool have_id = false, have_mac = false;
    int c;
    char *end;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'c':
            o->chip = optarg;
            break;
        case 'd':
            o->dir = optarg;
            break;
        case 't':
            o->tcp = true;
            o->tcp_port = (int)strtol(optarg, &end, 10);
            if (*end || o->tcp_port < 0 || o->tcp_port > 65535) {
                fprintf(stderr, "esp_sim: bad --tcp port '%s'\n", optarg);
                return -1;
            }
            break;
        case 's':
            if (parse_size(optarg, &flash_size)) {
                fprintf(stderr, "esp_sim: bad --flash-size '%s'\n", optarg);
                return -1;
            }
            break;
        case 'i':
            errno = 0;
            s->flash_id = (uint32_t)strtoul(optarg, &end, 16);
            if (errno || *end) {
                fprintf(stderr, "esp_sim: bad --flash-id '%s'\n", optarg);
                return -1;
            }
            have_id = true;
            break;
        case 'm':
            if (parse_mac(optarg, s->mac)) {
                fprintf(stderr, "esp_sim: bad --mac '%s'\n", optarg);
                return -1;
            }
            have_mac = true;
            break;
        case 'l':
            s->speed = strtod(optarg, &end);
            if (*end || s->speed < 0) {
                fprintf(stderr, "esp_sim: bad --link-speed '%s'\n", optarg);
                return -1;
            }
            break;
        case 'r':
            s->strict_reset = true;
            break;
        case 'n':
            s->no_boot_noise = true;
            break;
        case 'L':
            sim_log_set_mono(true);
            break;
        case 'S':
            s->stub_dir = optarg;
            break;
        case 'G':
            if (strcmp(optarg, "legacy") != 0 && strcmp(optarg, "current") != 0) {
                fprintf(stderr, "esp_sim: bad --stub-gen '%s' (current or legacy)\n", optarg);
                return -1;
            }
            s->stub_legacy = strcmp(optarg, "legacy") == 0;
            break;
        case 'p':
        case 'e': {
            /* Both default to on, as the real stubs do (sim_stub.c, sim_write.c). */
            bool on = strcmp(optarg, "on") == 0;
            if (!on && strcmp(optarg, "off") != 0) {
                fprintf(stderr, "esp_sim: bad --%s '%s' (on or off)\n",
                        c == 'p' ? "stub-pipeline" : "stub-erase-ahead", optarg);
                return -1;
            }
            if (c == 'p')
                s->stub_sync_writes = !on;
            else
                s->stub_no_erase_ahead = !on;
            break;
        }
        case 'f':
            if (sim_fault_parse(&s->faults, optarg))
                return -1;
            s->flash_sleeping = s->faults.flash_asleep;
            break;
        case 'B':
            s->net.bind = optarg;
            break;
        case 'C':
            s->net.checkin = optarg;
            break;
        case 'I':
            s->net.interval_ms = strcmp(optarg, "once") == 0 ? -1 : atoi(optarg);
            break;
        case 'P':
            s->net.password = optarg;
            break;
        case 'A':
            s->net.auth = optarg;
            break;
        case 'O':
            s->net.ota_port = atoi(optarg);
            break;
        case 'W':
            s->net.http_port = atoi(optarg);
            break;
        case 'F':
            s->net.fault = optarg;
            break;
        case 'N':
            s->net.netdev = optarg;
            break;
        case 'a':
            s->net.app_offset = strtoll(optarg, NULL, 0);
            break;
        case 'Z':
            s->net.fs_off = optarg;
            break;
        case 'T':
            errno = 0;
            s->net.start_timeout_ms = (int)strtol(optarg, &end, 10);
            if (errno || *end || end == optarg || s->net.start_timeout_ms < 1 ||
                s->net.start_timeout_ms > 600000) {
                fprintf(stderr, "esp_sim: --net-start-timeout: 1 .. 600000 ms\n");
                return -1;
            }
            break;
        case 'X':
            errno = 0;
            s->link.adapter_max = (uint32_t)strtoul(optarg, &end, 10);
            if (errno || *end || s->link.adapter_max < 300) {
                fprintf(stderr, "esp_sim: bad --adapter-max '%s' (a baud rate)\n", optarg);
                return -1;
            }
            break;
        case 'R':
            errno = 0;
            s->app_baud = (uint32_t)strtoul(optarg, &end, 10);
            if (errno || *end || s->app_baud < 300 || s->app_baud > 5000000) {
                fprintf(stderr, "esp_sim: --app-baud: 300 .. 5000000\n");
                return -1;
            }
            break;
        case 'b':
            s->manual_boot = true;
            s->manual_boot_ms = -1;
            if (strcmp(optarg, "signal") != 0) {
                errno = 0;
                unsigned long ms = strtoul(optarg, &end, 10);
                if (errno || *end || end == optarg || ms > 3600000) {
                    fprintf(stderr, "esp_sim: --manual-boot-after: MS (0 .. 3600000) or signal\n");
                    return -1;
                }
                s->manual_boot_ms = (int)ms;
            }
            break;
        case 'D':
            s->secure_download = true;
            break;
        case 'Q': {
            unsigned p[5];
            char extra;
            if (sscanf(optarg, "%u,%u,%u,%u,%u%c", &p[0], &p[1], &p[2], &p[3], &p[4], &extra) !=
                    5 ||
                p[0] > 31 || p[1] > 31 || p[2] > 31 || p[3] > 31 || p[4] > 31) {
                fprintf(stderr, "esp_sim: bad --spi-pads '%s' (CLK,Q,D,CS,HD, 0..31)\n", optarg);
                return -1;
            }
            for (int i = 0; i < 5; i++)
                s->spi_pads[i] = (uint8_t)p[i];
            break;
        }
        case 'H':
            if (strcmp(optarg, "required") != 0 && strcmp(optarg, "lenient") != 0) {
                fprintf(stderr, "esp_sim: bad --rom-attach '%s' (required or lenient)\n", optarg);
                return -1;
            }
            s->rom_attach_lenient = strcmp(optarg, "lenient") == 0;
            break;
        case 'U': {
            /* N replies to an unknown opcode, with the request's opcode or OP (hex). */
            errno = 0;
            unsigned long n = strtoul(optarg, &end, 10);
            long op = -1;
            if (!errno && *end == ':')
                op = strtol(end + 1, &end, 16);
            if (errno || *end || n < 1 || n > 8 || op > 0xFF) {
                fprintf(stderr, "esp_sim: bad --rom-unsupported '%s' (N[:OP], N 1..8, OP hex)\n",
                        optarg);
                return -1;
            }
            s->rom_unsup_replies = (unsigned)n;
            s->rom_unsup_op = (int)op;
            break;
        }
        case 'u':
            if (strcmp(optarg, "serial-jtag") == 0)
                s->usb = SIM_USB_JTAG;
            else if (strcmp(optarg, "otg") == 0)
                s->usb = SIM_USB_OTG;
            else if (strcmp(optarg, "uart") == 0)
                s->usb = SIM_USB_NONE;
            else {
                fprintf(stderr, "esp_sim: bad --usb '%s' (serial-jtag, otg or uart)\n", optarg);
                return -1;
            }
            break;
        case 'w':
        case 'g':
        case 'K': {
            errno = 0;
            long v = strtol(optarg, &end, 0);
            if (errno || *end || end == optarg || v < 0 || v > 600000 || (c == 'K' && v < 64)) {
                fprintf(stderr, "esp_sim: bad --%s '%s'\n",
                        c == 'w'   ? "usb-wdt-ms"
                        : c == 'g' ? "usb-gone-ms"
                                   : "usb-otg-block",
                        optarg);
                return -1;
            }
            if (c == 'w')
                s->usb_wdt_ms = (int)v;
            else if (c == 'g')
                s->usb_gone_ms = (int)v;
            else
                s->usb_otg_block = (uint32_t)v;
            break;
        }
        case 'J': {
            errno = 0;
            unsigned long n = strtoul(optarg, &end, 0), every = 4;
            if (!errno && *end == ':' && end[1])
                every = strtoul(end + 1, &end, 0);
            if (errno || *end || end == optarg || n > 1000 || every < 1 || every > 1000) {
                fprintf(stderr, "esp_sim: bad --usb-stray-05 '%s' (N[:EVERY])\n", optarg);
                return -1;
            }
            s->usb_stray_left = (unsigned)n;
            s->usb_stray_every = (unsigned)every;
            break;
        }
        case 'E':
            if (strcmp(optarg, "app") != 0 && strcmp(optarg, "always") != 0) {
                fprintf(stderr, "esp_sim: bad --usb-reenum '%s' (app or always)\n", optarg);
                return -1;
            }
            s->usb_reenum_always = strcmp(optarg, "always") == 0;
            break;
        case 'M':
            errno = 0;
            o->master_fd = (int)strtol(optarg, &end, 10);
            if (errno || *end || end == optarg || o->master_fd < 0) {
                fprintf(stderr, "esp_sim: bad --master-fd '%s'\n", optarg);
                return -1;
            }
            break;
        default:
            usage();
            return -1;
        }
    }
    if (!o->chip || !o->dir || optind != argc) {
        usage();
        return -1;
    }
    if (o->tcp && o->master_fd >= 0) {
        fprintf(stderr, "esp_sim: --tcp and --master-fd exclude each other\n");
        return -1;
    }
    s->chip = sim_chip_by_name(o->chip);
    if (!s->chip) {
        fprintf(stderr, "esp_sim: unknown chip '%s'\n", o->chip);
        return -1;
    }
    if ((s->spi_pads[0] | s->spi_pads[1] | s->spi_pads[2] | s->spi_pads[3] | s->spi_pads[4]) &&
        s->chip->chip != SIM_ESP32) {
        fprintf(stderr, "esp_sim: --spi-pads: ESP32 only\n");
        return -1;
    }
    if ((s->usb == SIM_USB_JTAG && s->chip->chip != SIM_ESP32C3 && s->chip->chip != SIM_ESP32S3) ||
        (s->usb == SIM_USB_OTG && s->chip->chip != SIM_ESP32S3)) {
        fprintf(stderr,
                "esp_sim: --usb %s: not on %s (serial-jtag: esp32c3/esp32s3, otg: esp32s3)\n",
                sim_usb_name(s->usb), o->chip);
        return -1;
    }
    if (s->usb_stray_left && s->usb != SIM_USB_JTAG) {
        fprintf(stderr, "esp_sim: --usb-stray-05 needs --usb serial-jtag\n");
        return -1;
    }
    s->usb_master_fd = o->master_fd >= 0;
    if (s->secure_download && !s->chip->security_info) {
        fprintf(stderr, "esp_sim: --secure-download: ESP32-S2 and later only (%s)\n", o->chip);
        return -1;
    }
    if (!have_mac)
        memcpy(s->mac, s->chip->default_mac, 6);
    if (!have_id)
        s->flash_id = default_flash_id(flash_size);
    s->flash.size = flash_size;
    return 0;
}

static void drain_modem(struct sim *s, int fd)
{
    char buf[256];
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n < 0)
            return;
        sim_board_modem(s, buf, (size_t)n);
    }
}

/* USB re-enumeration with our own pty (sim_usb.c): DIR/tty goes away with the pty
 * (the host's fd hangs up) and comes back as a new pty after --usb-gone-ms. */
static void usb_replug(struct sim *s, int64_t now)
{
    char path[4096];
    if (path_in(path, sizeof(path), s->dir, "tty"))
        return;
    if (s->usb_unplug_req) {
        s->usb_unplug_req = false;
        unlink(path);
        sim_link_pty_drop(&s->link);
        s->usb_back_at = now + (int64_t)s->usb_gone_ms * SIM_NS_PER_MS;
        if (!s->usb_back_at)
            s->usb_back_at = 1;
    }
    if (s->usb_back_at && now >= s->usb_back_at) {
        s->usb_back_at = 0;
        if (sim_link_pty_new(&s->link) != 0 || symlink(s->link.slave_path, path) != 0) {
            sim_log("usb: cannot re-create the tty: %s", strerror(errno));
            s->want_exit = true;
            return;
        }
        sim_log("usb: tty back as %s", s->link.slave_path);
    }
}

static void run(struct sim *s, int modem_fd)
{
    struct sim_link *l = &s->link;
    while (!stop_requested && !s->want_exit) {
        if (manual_boot_requested) {
            manual_boot_requested = 0;
            sim_board_manual_boot(s);
        }
        int64_t now = sim_now();
        sim_link_advance(l, now, s->baud);
        sim_board_step(s, now);
        if (s->usb_unplug_req || s->usb_back_at)
            usb_replug(s, sim_now());
        if (s->want_exit)
            break;
        sim_link_advance(l, now, s->baud);
        sim_link_flush(l);

        int64_t next = sim_link_next_event(l, s->baud);
        int64_t nb = sim_board_next_event(s);
        if (nb < next)
            next = nb;
        if (s->usb_back_at && s->usb_back_at < next)
            next = s->usb_back_at;
        struct pollfd pfd[3];
        int n = 0, link_i = -1, modem_i = -1, listen_i = -1;
        if (l->master_fd >= 0) {
            short ev = 0;
            if (sim_link_rx_has_room(l))
                ev |= POLLIN;
            if (l->out_len > 0)
                ev |= POLLOUT;
            link_i = n;
            pfd[n++] = (struct pollfd){.fd = l->master_fd, .events = ev};
        } else if (l->listen_fd >= 0) {
            listen_i = n;
            pfd[n++] = (struct pollfd){.fd = l->listen_fd, .events = POLLIN};
        }
        if (modem_fd >= 0) {
            modem_i = n;
            pfd[n++] = (struct pollfd){.fd = modem_fd, .events = POLLIN};
        }
        struct timespec ts, *tsp = NULL;
        if (next != INT64_MAX) {
            int64_t d = next - sim_now();
            if (d < 0)
                d = 0;
            ts.tv_sec = (time_t)(d / 1000000000LL);
            ts.tv_nsec = (long)(d % 1000000000LL);
            tsp = &ts;
        }
        sigset_t empty;
        sigemptyset(&empty);
        int rc = ppoll(pfd, (nfds_t)n, tsp, &empty);
        if (rc <= 0)
            continue;
        if (link_i >= 0 && (pfd[link_i].revents & (POLLIN | POLLHUP | POLLERR))) {
            if (sim_link_read(l, s->baud) < 0) {
                fprintf(stderr, "esp_sim: link read failed: %s\n", strerror(errno));
                break;
            }
        }
        if (listen_i >= 0 && (pfd[listen_i].revents & POLLIN))
            sim_link_tcp_accept(l);
        if (modem_i >= 0 && (pfd[modem_i].revents & POLLIN))
            drain_modem(s, modem_fd);
    }
}

int main(int argc, char **argv)
{
    static struct sim s; /* large; zeroed */
    struct options o = {.master_fd = -1};
    s.speed = 1.0;
    s.rom_unsup_replies = 1;
    s.rom_unsup_op = -1;
    s.faults.boot_mode = -1;
    s.net.ota_port = -1;
    s.net.http_port = -1;
    s.net.app_offset = -1;
    s.net.start_timeout_ms = 5000;
    s.usb_wdt_ms = 5000;
    s.usb_gone_ms = 300;
    s.usb_otg_block = 0x800;
    if (parse_args(argc, argv, &s, &o) != 0)
        return 2;
    double speed = s.speed;
    s.dir = o.dir;
    char path[4096], modem_path[4096], ready_path[4096];
    mkdir(o.dir, 0755);
    if (path_in(ready_path, sizeof(ready_path), o.dir, "ready") ||
        path_in(modem_path, sizeof(modem_path), o.dir, "tty.modem") ||
        path_in(path, sizeof(path), o.dir, "sim.log")) {
        fprintf(stderr, "esp_sim: --dir path too long\n");
        return 2;
    }
    unlink(ready_path);
    if (sim_log_open(path) != 0) {
        fprintf(stderr, "esp_sim: cannot create %s: %s\n", path, strerror(errno));
        return 1;
    }
    sim_log("esp_sim %s flash 0x%x id 0x%06x mac %02x:%02x:%02x:%02x:%02x:%02x speed %g",
            s.chip->name, s.flash.size, s.flash_id, s.mac[0], s.mac[1], s.mac[2], s.mac[3],
            s.mac[4], s.mac[5], speed);
    if (s.usb != SIM_USB_NONE)
        sim_log("port: %s (watchdogs %d ms after a USB reset, tty away %d ms on re-enumeration)",
                sim_usb_name(s.usb), s.usb_wdt_ms, s.usb_gone_ms);

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGUSR1);
    sigprocmask(SIG_BLOCK, &block, NULL);

    int rc = 1, modem_fd = -1;
    bool tty_linked = false; /* DIR/tty is ours to remove at exit */
    char ready[4096 + 8];
    path_in(path, sizeof(path), o.dir, "flash.bin");
    if (sim_flash_open(&s.flash, path, s.flash.size, speed) != 0) {
        fprintf(stderr, "esp_sim: cannot open %s: %s\n", path, strerror(errno));
        goto out;
    }
    if (o.tcp) {
        int port = 0;
        if (sim_link_open_tcp(&s.link, o.tcp_port, &port, speed) != 0) {
            fprintf(stderr, "esp_sim: cannot listen on port %d: %s\n", o.tcp_port, strerror(errno));
            goto out;
        }
        snprintf(ready, sizeof(ready), "tcp://127.0.0.1:%d", port);
        s.strict_reset = false; /* no modem lines over TCP: the board waits in download mode */
    } else {
        if (o.master_fd >= 0) {
            /* The pty belongs to the caller (umockdev testbed): no DIR/tty. */
            if (sim_link_open_master(&s.link, o.master_fd, speed) != 0) {
                fprintf(stderr, "esp_sim: --master-fd %d is not a usable pty master: %s\n",
                        o.master_fd, strerror(errno));
                goto out;
            }
        } else {
            if (sim_link_open_pty(&s.link, speed) != 0) {
                fprintf(stderr, "esp_sim: cannot open a pty: %s\n", strerror(errno));
                goto out;
            }
            path_in(path, sizeof(path), o.dir, "tty");
            unlink(path);
            if (symlink(s.link.slave_path, path) != 0) {
                fprintf(stderr, "esp_sim: cannot create %s: %s\n", path, strerror(errno));
                goto out;
            }
            tty_linked = true;
        }
        modem_fd = open_modem(modem_path);
        if (modem_fd < 0) {
            fprintf(stderr, "esp_sim: cannot bind %s: %s\n", modem_path, strerror(errno));
            goto out;
        }
        if (o.master_fd >= 0) {
            snprintf(ready, sizeof(ready), "%s", s.link.slave_path);
        } else {
            /* The port to use is DIR/tty: its DIR/tty.modem side channel carries
             * DTR/RTS (a client given /dev/pts/N would look for /dev/pts/N.modem).
             * Absolute, so the content works from any working directory. */
            char absdir[4096];
            const char *d = realpath(o.dir, absdir) ? absdir : o.dir;
            int n = snprintf(ready, sizeof(ready), "%s/tty", d);
            if (n < 0 || (size_t)n >= sizeof(ready)) {
                fprintf(stderr, "esp_sim: --dir path too long\n");
                goto out;
            }
        }
    }
    if (sim_board_init(&s) != 0) {
        fprintf(stderr, "esp_sim: out of memory\n");
        goto out;
    }
    if (write_ready(o.dir, ready) != 0) {
        fprintf(stderr, "esp_sim: cannot write %s: %s\n", ready_path, strerror(errno));
        goto out;
    }
    sim_log("ready %s", ready);
    run(&s, modem_fd);
    sim_log(s.want_exit ? "exit (disconnect)" : "exit (signal)");
    rc = 0;
out:
    sim_board_free(&s);
    if (tty_linked) {
        /* Like a real unplug removing /dev/ttyUSBn: the port is gone before the pty is
         * released, so DIR/tty can never lead to the next board that gets this pts. */
        path_in(path, sizeof(path), o.dir, "tty");
        unlink(path);
    }
    sim_link_close(&s.link);
    sim_flash_close(&s.flash);
    if (modem_fd >= 0) {
        close(modem_fd);
        unlink(modem_path);
    }
    unlink(ready_path);
    sim_log_close();
    return rc;
}
