/*
 * bench_flash: how fast does the engine flash a real-sized image, and how
 * well does it use the wire?
 *
 * For each (mode, baud) it starts a fresh virtual board (esp_sim, realistic
 * baud pacing with --link-speed 1), drives it in-process through the engine
 * API (transport_open, esp_loader_connect/identify/start/flash/verify) and
 * measures the write phase only (esp_loader_flash with verify off):
 *   wall      seconds of the write phase
 *   kbit/s    image bytes * 8 / wall / 1000
 *   wire%     (bytes written + read on the transport) * 10 / baud / wall
 *             (10 bits per byte on an 8N1 line; both directions counted,
 *             as the definition asks, so a full-duplex link could exceed 100)
 *   cpu%      getrusage(RUSAGE_SELF) user+sys of this process / wall
 * The image is 1 MiB of firmware-like data (alternating 4 KiB chunks of
 * text-like and pseudo-random bytes, about half compressible). Compression
 * for stub mode is done once before timing (esp_region_compress), as the
 * station caches compressed images. Verification (MD5 on the chip) runs after
 * the timed phase and must pass, so a fast but wrong flash is not reported.
 *
 * Prints figures; never fails on time. Exit status is non-zero only when a
 * run could not complete (sim missing, flash or verify error).
 * Owns: the child esp_sim processes it starts (killed on every path).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "esp_error.h"
#include "esp_loader.h"
#include "transport.h"

struct bench_opts {
    const char *sim;
    const char *stub_dir;
    const char *chip;
    const char *tmp;
    size_t image_size;
    double link_speed;
    bool quick;
    bool verbose;
    uint32_t bauds[8];
    size_t n_bauds;
    bool want_rom, want_stub;
};

struct bench_result {
    bool ok;
    double write_s, verify_s, connect_s;
    uint64_t wire_bytes; /* written + read during the write phase */
    uint64_t tx, rx;
    double cpu_s;
    unsigned retries;
    uint32_t baud_in_force;
    bool stub_running;
    char error[640];
};

struct sim_proc {
    pid_t pid;
    char dir[1024];
    char port[PATH_MAX];
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* Deterministic firmware-like image: 4 KiB text-like chunks alternating with
 * 4 KiB xorshift32 chunks. gzip -9 makes it about 55% of its size. */
static uint8_t *make_image(size_t len)
{
    static const char text[] = "esp_wifi_init: rf calibration data ok; "
                               "httpd_start: port 80, max 7 sockets; "
                               "nvs_flash_init partition 'nvs' ok. ";
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf)
        return NULL;
    uint32_t x = 0x12345678u;
    for (size_t i = 0; i < len; i++) {
        if ((i / 4096) % 2 == 0) {
            buf[i] = (uint8_t)text[i % (sizeof(text) - 1)];
        } else {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            buf[i] = (uint8_t)x;
        }
    }
    return buf;
}

static void log_cb(void *ctx, enum esp_log_level level, const char *msg)
{
    const struct bench_opts *o = ctx;
    if (level <= ESP_LOG_WARN || o->verbose)
        fprintf(stderr, "  [engine] %s\n", msg);
}

static void sim_stop(struct sim_proc *sp)
{
    if (sp->pid > 0) {
        kill(sp->pid, SIGTERM);
        for (int i = 0; i < 100; i++) {
            if (waitpid(sp->pid, NULL, WNOHANG) == sp->pid) {
                sp->pid = 0;
                break;
            }
            usleep(50 * 1000);
        }
        if (sp->pid > 0) {
            kill(sp->pid, SIGKILL);
            waitpid(sp->pid, NULL, 0);
            sp->pid = 0;
        }
    }
    if (sp->dir[0]) {
        char cmd[PATH_MAX + 16];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", sp->dir);
        if (system(cmd) != 0)
            fprintf(stderr, "bench: could not remove %s\n", sp->dir);
        sp->dir[0] = 0;
    }
}

/* Starts esp_sim --chip CHIP --dir <tmp dir> --link-speed F [--stub-dir D];
 * waits up to 10 s for DIR/ready. Returns 0 or -1 (message on stderr). */
static int sim_start(const struct bench_opts *o, struct sim_proc *sp)
{
    memset(sp, 0, sizeof(*sp));
    snprintf(sp->dir, sizeof(sp->dir), "%s/bench-sim.XXXXXX", o->tmp);
    if (!mkdtemp(sp->dir)) {
        fprintf(stderr, "bench: mkdtemp %s: %s\n", sp->dir, strerror(errno));
        sp->dir[0] = 0;
        return -1;
    }
    char speed[32], logpath[PATH_MAX + 16];
    snprintf(speed, sizeof(speed), "%g", o->link_speed);
    snprintf(logpath, sizeof(logpath), "%s/sim.stderr", sp->dir);
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "bench: fork: %s\n", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        int fd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        const char *argv[16];
        int n = 0;
        argv[n++] = o->sim;
        argv[n++] = "--chip";
        argv[n++] = o->chip;
        argv[n++] = "--dir";
        argv[n++] = sp->dir;
        argv[n++] = "--link-speed";
        argv[n++] = speed;
        if (o->stub_dir) {
            argv[n++] = "--stub-dir";
            argv[n++] = o->stub_dir;
        }
        argv[n] = NULL;
        execv(o->sim, (char *const *)argv);
        _exit(127);
    }
    sp->pid = pid;
    char ready[PATH_MAX + 16];
    snprintf(ready, sizeof(ready), "%s/ready", sp->dir);
    double deadline = now_s() + 10.0;
    while (now_s() < deadline) {
        FILE *f = fopen(ready, "r");
        if (f) {
            bool got = fgets(sp->port, sizeof(sp->port), f) != NULL;
            fclose(f);
            if (got) {
                sp->port[strcspn(sp->port, "\r\n")] = 0;
                if (sp->port[0] && strncmp(sp->port, "tcp://", 6) != 0) {
                    /* Talk through DIR/tty: its DIR/tty.modem side channel carries
                     * DTR/RTS (the ready file may name the /dev/pts/N behind it). */
                    snprintf(sp->port, sizeof(sp->port), "%s/tty", sp->dir);
                }
                if (sp->port[0])
                    return 0;
            }
        }
        if (waitpid(pid, NULL, WNOHANG) == pid) {
            sp->pid = 0;
            fprintf(stderr, "bench: %s exited before ready (see %s)\n", o->sim, logpath);
            return -1;
        }
        usleep(20 * 1000);
    }
    fprintf(stderr, "bench: %s not ready within 10 s\n", o->sim);
    return -1;
}

static void set_error(struct bench_result *r, const char *what, const struct esp_error *err)
{
    snprintf(r->error, sizeof(r->error), "%s: %s [%s]%s%s", what,
             err->message[0] ? err->message : esp_errno_to_string(err->code),
             esp_stage_to_string(err->stage), err->advice[0] ? " - " : "", err->advice);
}

static void run_one(const struct bench_opts *o, bool stub, uint32_t baud, const uint8_t *img,
                    const uint8_t *zimg, size_t zlen, struct bench_result *r)
{
    memset(r, 0, sizeof(*r));
    struct sim_proc sp;
    if (sim_start(o, &sp) != 0) {
        snprintf(r->error, sizeof(r->error), "could not start the virtual board");
        sim_stop(&sp);
        return;
    }
    struct esp_error err;
    esp_error_clear(&err);
    struct transport *t = NULL;
    struct esp_loader *l = NULL;
    if (transport_open(sp.port, 115200, &t, &err) < 0) {
        set_error(r, "open", &err);
        goto out;
    }
    struct esp_loader_config cfg;
    esp_loader_config_init(&cfg);
    cfg.baud = baud;
    cfg.use_stub = stub;
    cfg.stub_dir = stub ? o->stub_dir : NULL;
    cfg.log = log_cb;
    cfg.log_ctx = (void *)o;
    l = esp_loader_new(t, &cfg);
    if (!l) {
        snprintf(r->error, sizeof(r->error), "out of memory");
        goto out;
    }
    double t0 = now_s();
    if (esp_loader_connect(l, &err) < 0) {
        set_error(r, "connect", &err);
        goto out;
    }
    if (esp_loader_identify(l, &err) < 0) {
        set_error(r, "identify", &err);
        goto out;
    }
    if (esp_loader_start(l, &err) < 0) {
        set_error(r, "start", &err);
        goto out;
    }
    r->connect_s = now_s() - t0;
    const struct esp_chip_info *ci = esp_loader_info(l);
    r->baud_in_force = ci->baud;
    r->stub_running = ci->stub_running;

    struct esp_region reg = {.offset = 0x10000,
                             .data = img,
                             .len = o->image_size,
                             .zdata = stub ? zimg : NULL,
                             .zlen = stub ? zlen : 0,
                             .name = "bench.bin"};
    struct esp_flash_opts fo;
    esp_flash_opts_init(&fo);
    fo.compress = stub;
    fo.verify = false;
    fo.skip_image_check = true;

    const struct esp_loader_stats *st = esp_loader_stats(l);
    unsigned retries0 = st->block_retries;
    uint64_t tx0 = t->bytes_written, rx0 = t->bytes_read;
    double c0 = cpu_s(), w0 = now_s();
    int rc = esp_loader_flash(l, &reg, 1, &fo, &err);
    double w1 = now_s(), c1 = cpu_s();
    if (rc < 0) {
        set_error(r, "flash", &err);
        goto out;
    }
    r->write_s = w1 - w0;
    r->cpu_s = c1 - c0;
    r->tx = t->bytes_written - tx0;
    r->rx = t->bytes_read - rx0;
    r->wire_bytes = r->tx + r->rx;
    r->retries = st->block_retries - retries0;

    double v0 = now_s();
    rc = esp_loader_verify(l, &reg, 1, &err);
    r->verify_s = now_s() - v0;
    if (rc < 0) {
        set_error(r, "verify", &err);
        goto out;
    }
    r->ok = true;
    esp_error_clear(&err);
    (void)esp_loader_reset(l, ESP_AFTER_NO_RESET, &err);
out:
    esp_loader_free(l);
    transport_close(t);
    sim_stop(&sp);
}

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: bench_flash [--sim PATH] [--stub-dir DIR] [--quick] [--baud B]...\n"
        "                   [--mode rom|stub] [--chip esp32] [--size BYTES]\n"
        "                   [--link-speed F] [--tmp DIR] [-v]\n"
        "  --sim        esp_sim binary (default: $ESP_SIM)\n"
        "  --stub-dir   flasher stub JSONs (default: $STUB_DIR); without, stub rows are skipped\n"
        "  --quick      only 921600 baud\n"
        "  --baud       baud to run (repeatable; default 115200 460800 921600)\n"
        "  --mode       only ROM-only uncompressed, or only stub+compressed\n"
        "  --size       image bytes (default 1048576)\n"
        "  --link-speed sim pacing factor (default 1 = realistic)\n");
}

int main(int argc, char **argv)
{
    struct bench_opts o = {.sim = getenv("ESP_SIM"),
                           .stub_dir = getenv("STUB_DIR"),
                           .chip = "esp32",
                           .image_size = 1024 * 1024,
                           .link_speed = 1.0,
                           .want_rom = true,
                           .want_stub = true};
    o.tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    static const struct option longopts[] = {
        {"sim", required_argument, NULL, 's'},  {"stub-dir", required_argument, NULL, 'S'},
        {"quick", no_argument, NULL, 'q'},      {"baud", required_argument, NULL, 'b'},
        {"mode", required_argument, NULL, 'm'}, {"chip", required_argument, NULL, 'c'},
        {"size", required_argument, NULL, 'z'}, {"link-speed", required_argument, NULL, 'l'},
        {"tmp", required_argument, NULL, 't'},  {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},       {NULL, 0, NULL, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "vh", longopts, NULL)) != -1) {
        switch (c) {
        case 's':
            o.sim = optarg;
            break;
        case 'S':
            o.stub_dir = optarg;
            break;
        case 'q':
            o.quick = true;
            break;
        case 'b':
            if (o.n_bauds < sizeof(o.bauds) / sizeof(o.bauds[0]))
                o.bauds[o.n_bauds++] = (uint32_t)strtoul(optarg, NULL, 0);
            break;
        case 'm':
            o.want_rom = strcmp(optarg, "rom") == 0;
            o.want_stub = strcmp(optarg, "stub") == 0;
            if (!o.want_rom && !o.want_stub) {
                usage(stderr);
                return 1;
            }
            break;
        case 'c':
            o.chip = optarg;
            break;
        case 'z':
            o.image_size = (size_t)strtoull(optarg, NULL, 0);
            break;
        case 'l':
            o.link_speed = strtod(optarg, NULL);
            break;
        case 't':
            o.tmp = optarg;
            break;
        case 'v':
            o.verbose = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 1;
        }
    }
    if (!o.sim || access(o.sim, X_OK) != 0) {
        fprintf(stderr, "bench: esp_sim not found (give --sim PATH or set ESP_SIM)\n");
        return 1;
    }
    if (o.n_bauds == 0) {
        if (o.quick) {
            o.bauds[o.n_bauds++] = 921600;
        } else {
            o.bauds[o.n_bauds++] = 115200;
            o.bauds[o.n_bauds++] = 460800;
            o.bauds[o.n_bauds++] = 921600;
        }
    }
    if (o.want_stub && (!o.stub_dir || !o.stub_dir[0])) {
        fprintf(stderr, "bench: no --stub-dir / $STUB_DIR: skipping the stub+compressed rows\n");
        o.want_stub = false;
    }
    signal(SIGPIPE, SIG_IGN);

    uint8_t *img = make_image(o.image_size);
    uint8_t *zimg = NULL;
    size_t zlen = 0;
    if (!img || esp_region_compress(img, o.image_size, &zimg, &zlen) < 0) {
        fprintf(stderr, "bench: out of memory\n");
        return 1;
    }
    printf("bench_flash: %s, image %zu bytes (zlib -9: %zu bytes, %.0f%%), link speed %g\n", o.chip,
           o.image_size, zlen, 100.0 * (double)zlen / (double)o.image_size, o.link_speed);
    printf("%-14s %7s %9s %9s %7s %6s %9s %9s %9s %7s %s\n", "mode", "baud", "write_s", "kbit/s",
           "wire%", "cpu%", "verify_s", "tx_bytes", "rx_bytes", "retries", "note");

    int failures = 0;
    double stub921_wire = -1, max_cpu = 0;
    for (int m = 0; m < 2; m++) {
        bool stub = m == 1;
        if ((stub && !o.want_stub) || (!stub && !o.want_rom))
            continue;
        for (size_t i = 0; i < o.n_bauds; i++) {
            uint32_t baud = o.bauds[i];
            struct bench_result r;
            run_one(&o, stub, baud, img, zimg, zlen, &r);
            const char *mode = stub ? "stub+deflate" : "rom-raw";
            if (!r.ok) {
                printf("%-14s %7" PRIu32 " %9s  FAILED: %s\n", mode, baud, "-", r.error);
                failures++;
                continue;
            }
            double kbps = (double)o.image_size * 8.0 / r.write_s / 1000.0;
            double wire = (double)r.wire_bytes * 10.0 / (double)baud / r.write_s * 100.0;
            double cpu = r.cpu_s / r.write_s * 100.0;
            char note[96] = "";
            if (r.baud_in_force != baud)
                snprintf(note, sizeof(note), "baud in force %" PRIu32, r.baud_in_force);
            if (stub && !r.stub_running)
                snprintf(note + strlen(note), sizeof(note) - strlen(note), " stub NOT running");
            printf("%-14s %7" PRIu32 " %9.2f %9.1f %7.1f %6.2f %9.2f %9" PRIu64 " %9" PRIu64
                   " %7u %s\n",
                   mode, baud, r.write_s, kbps, wire, cpu, r.verify_s, r.tx, r.rx, r.retries, note);
            fflush(stdout);
            if (stub && baud == 921600)
                stub921_wire = wire;
            if (cpu > max_cpu)
                max_cpu = cpu;
        }
    }
    printf("\ntargets (reported, not asserted):\n");
    if (stub921_wire >= 0)
        printf("  stub+deflate at 921600 keeps the wire >= 90%% busy: %.1f%% -> %s\n", stub921_wire,
               stub921_wire >= 90.0 ? "met" : "NOT met");
    else
        printf("  stub+deflate at 921600: not measured\n");
    printf("  host CPU <= 5%% of wall: max %.2f%% -> %s\n", max_cpu,
           max_cpu <= 5.0 ? "met" : "NOT met");
    free(img);
    free(zimg);
    return failures ? 2 : 0;
}
