/*
 * espstationd: the station daemon. Always in the foreground (systemd runs it
 * as Type=simple; logs go to stderr, journald-friendly).
 *
 *   espstationd [--config FILE] [--data-dir DIR] [--stub-dir DIR] [--listen HOST:PORT]
 *               [--port-file FILE] [--web-root DIR]
 *   espstationd [--config FILE] [--data-dir DIR] --import PATH [--name N] [--fw-version V]
 *               [--replace]
 *
 * Exit: 0 after SIGTERM/SIGINT (jobs cancelled and recorded) or a successful
 * import; 1 on a start-up error (config, records, catalog); 2 on a bad command line.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fdbudget.h"
#include "line.h"
#include "log.h"
#include "loop.h"
#include "ota.h"
#include "station.h"
#include "web.h"

#ifndef ESPSTATION_DEFAULT_STUB_DIR
#define ESPSTATION_DEFAULT_STUB_DIR ""
#endif

/* An array, not the macro, in conditions: clang warns about a constant operand of &&. */
static const char default_stub_dir[] = ESPSTATION_DEFAULT_STUB_DIR;

/* The status page's default directory (web/http.c serves it): the source tree's
 * web/static, or where the Debian package installs it (ESPSTATION_PACKAGE). */
#ifndef ESPSTATION_WEB_ROOT
#define ESPSTATION_WEB_ROOT ""
#endif
static const char default_web_root[] = ESPSTATION_WEB_ROOT;

#ifndef ESPSTATION_VERSION
#define ESPSTATION_VERSION "0.1.0"
#endif

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: espstationd [options]\n"
        "  -c, --config FILE          configuration (JSON); default: none, built-in defaults\n"
        "  -d, --data-dir DIR         data directory (overrides the config's data_dir)\n"
        "  -s, --stub-dir DIR         flasher stubs (default: config stub_dir, "
        "$ESPSTATION_STUB_DIR, %s)\n"
        "      --import PATH          import into the catalog and exit: a firmware set's\n"
        "                             directory (manifest.json), or a build's output: an ESP-IDF\n"
        "                             build/ (flasher_args.json), a PlatformIO .pio/build/<env>/,\n"
        "                             an Arduino export (*.ino.bin), an ESP Web Tools\n"
        "                             manifest.json, a merged image\n"
        "      --import-firmware DIR  the same as --import\n"
        "      --name NAME            with --import of a build: the set's name (default: the\n"
        "                             project, sketch or environment name)\n"
        "      --fw-version VERSION   with --import of a build: the set's version (default: the\n"
        "                             app's version, else build-<digest of the files>)\n"
        "      --replace              with --import: replace an existing name@version\n"
        "      --flag-after N         flag a slot after N failed jobs in a row (default 3)\n"
        "      --retry-backoff-ms MS  wait before retrying a failed board (default 2000)\n"
        "      --no-udev              serve only the manual ports of the config\n"
        "  -l, --listen HOST:PORT     REST API and status page address (default: config listen,\n"
        "                             127.0.0.1:8080); port 0 picks a free port\n"
        "      --port-file FILE       write the bound HTTP port to FILE once listening\n"
        "      --web-root DIR         status page files (default: %s)\n"
        "      --log-level LEVEL      error, warn, notice, info (default), debug\n"
        "  -h, --help                 this text\n"
        "  -V, --version              version\n"
        "Signals: SIGTERM/SIGINT stop (running jobs are cancelled and recorded),\n"
        "SIGHUP reloads the configuration and rescans the firmware catalog (a changed\n"
        "ota.listen is bound anew; the old listener stays if that fails).\n",
        default_stub_dir[0] ? default_stub_dir : "none",
        default_web_root[0] ? default_web_root : "none");
}

static int parse_int(const char *s, int lo, int hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || end == s || v < lo || v > hi)
        return -EINVAL;
    *out = (int)v;
    return 0;
}

enum {
    OPT_IMPORT = 256,
    OPT_REPLACE,
    OPT_FLAG_AFTER,
    OPT_BACKOFF,
    OPT_NO_UDEV,
    OPT_LOG_LEVEL,
    OPT_PORT_FILE,
    OPT_WEB_ROOT,
    OPT_IMPORT_NAME,
    OPT_IMPORT_VERSION,
};

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"data-dir", required_argument, NULL, 'd'},
        {"stub-dir", required_argument, NULL, 's'},
        {"import-firmware", required_argument, NULL, OPT_IMPORT},
        {"import", required_argument, NULL, OPT_IMPORT},
        {"name", required_argument, NULL, OPT_IMPORT_NAME},
        {"fw-version", required_argument, NULL, OPT_IMPORT_VERSION},
        {"replace", no_argument, NULL, OPT_REPLACE},
        {"flag-after", required_argument, NULL, OPT_FLAG_AFTER},
        {"retry-backoff-ms", required_argument, NULL, OPT_BACKOFF},
        {"no-udev", no_argument, NULL, OPT_NO_UDEV},
        {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
        {"listen", required_argument, NULL, 'l'},
        {"port-file", required_argument, NULL, OPT_PORT_FILE},
        {"web-root", required_argument, NULL, OPT_WEB_ROOT},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    struct station_options o;
    memset(&o, 0, sizeof(o));
    const char *import_dir = NULL;
    bool replace = false;
    struct web_options wo;
    memset(&wo, 0, sizeof(wo));
    enum log_level level = LOG_LEVEL_INFO;
    int c;
    while ((c = getopt_long(argc, argv, "c:d:s:l:hV", longopts, NULL)) != -1) {
        switch (c) {
        case 'c':
            o.config_path = optarg;
            break;
        case 'd':
            o.data_dir = optarg;
            break;
        case 's':
            o.stub_dir = optarg;
            break;
        case 'l':
            wo.listen = optarg;
            break;
        case OPT_PORT_FILE:
            wo.port_file = optarg;
            break;
        case OPT_WEB_ROOT:
            wo.web_root = optarg;
            break;
        case OPT_IMPORT:
            import_dir = optarg;
            break;
        case OPT_REPLACE:
            replace = true;
            break;
        case OPT_IMPORT_NAME:
            o.import_name = optarg;
            break;
        case OPT_IMPORT_VERSION:
            o.import_version = optarg;
            break;
        case OPT_FLAG_AFTER:
            if (parse_int(optarg, 1, 1000, &o.flag_after) < 0) {
                fprintf(stderr, "espstationd: --flag-after: expected 1..1000, got '%s'\n", optarg);
                return 2;
            }
            break;
        case OPT_BACKOFF:
            if (parse_int(optarg, 1, 3600000, &o.retry_backoff_ms) < 0) {
                fprintf(stderr, "espstationd: --retry-backoff-ms: expected 1..3600000, got '%s'\n",
                        optarg);
                return 2;
            }
            break;
        case OPT_NO_UDEV:
            o.no_udev = true;
            break;
        case OPT_LOG_LEVEL: {
            int lv = log_level_from_string(optarg);
            if (lv < 0) {
                fprintf(stderr,
                        "espstationd: --log-level: expected error, warn, notice, info or debug, "
                        "got '%s'\n",
                        optarg);
                return 2;
            }
            level = (enum log_level)lv;
            break;
        }
        case 'h':
            usage(stdout);
            return 0;
        case 'V':
            printf("espstationd %s\n", ESPSTATION_VERSION);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "espstationd: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    if ((replace || o.import_name || o.import_version) && !import_dir) {
        fprintf(stderr, "espstationd: --replace, --name and --fw-version need --import\n");
        return 2;
    }
    /* Only --stub-dir overrides the config's stub_dir; the environment and the
     * build's default come after it (station.c resolve_dirs). */
    o.stub_dir_env = getenv("ESPSTATION_STUB_DIR");
    o.stub_dir_build = default_stub_dir;
    log_init(LOG_MODE_AUTO, level);

    if (import_dir)
        return station_import_firmware(&o, import_dir, replace) < 0 ? 1 : 0;

    /* A closed log pipe or TCP peer must give EPIPE, not kill the station. */
    signal(SIGPIPE, SIG_IGN);

    /* Every descriptor the hard limit allows, before anything is opened (fdbudget.h). */
    struct fd_budget budget;
    memset(&budget, 0, sizeof(budget));
    int raise_rc = fd_budget_raise_limit(&budget.raised_from, &budget.limit, &budget.hard);

    struct loop *loop = NULL;
    int rc = loop_new(&loop);
    if (rc < 0) {
        log_msg(LOG_LEVEL_ERROR, "cannot create the event loop: %s", strerror(-rc));
        return 1;
    }
    /* Before any thread exists, so every worker inherits the blocked mask. */
    static const int sigs[] = {SIGTERM, SIGINT, SIGHUP};
    struct station *st = NULL;
    rc = loop_signals(loop, sigs, 3, station_on_signal, NULL);
    if (rc < 0) {
        log_msg(LOG_LEVEL_ERROR, "cannot set up signal handling: %s", strerror(-rc));
        loop_free(loop);
        return 1;
    }
    char err[1024] = ""; /* room for a records error (DSN and libpq's text) */
    rc = station_new(&o, loop, &st, err, sizeof(err));
    if (rc < 0) {
        log_msg(LOG_LEVEL_ERROR, "%s", err[0] ? err : strerror(-rc));
        loop_free(loop);
        return 1;
    }
    /* The reserve for jobs and the servers' connection caps, before the servers start. */
    if (raise_rc < 0)
        log_msg(LOG_LEVEL_WARN, "open files: cannot raise the soft limit %ld to the hard limit: %s",
                budget.limit, strerror(-raise_rc));
    fd_budget_compute(&budget, budget.limit, station_config(st), 0);
    char line[400];
    fd_budget_describe(&budget, line, sizeof(line));
    log_msg(LOG_LEVEL_NOTICE, "%s", line);
    if (budget.short_by > 0)
        log_msg(LOG_LEVEL_ERROR,
                "open files: the limit %ld is %ld short of the reserve for max_parallel %d and "
                "the smallest connection caps: jobs may fail with \"too many open files\"; "
                "raise LimitNOFILE (systemd) or ulimit -n, or lower max_parallel",
                budget.limit, budget.short_by, station_config(st)->max_parallel);
    station_set_fd_budget(st, &budget);
    rc = loop_signals(loop, sigs, 3, station_on_signal, st);
    struct web *web = NULL;
    if (rc == 0) {
        /* Listening before the devices start: a bad address is a start-up error. */
        rc = web_new(st, loop, &wo, &web, err, sizeof(err));
        if (rc < 0) {
            log_msg(LOG_LEVEL_ERROR, "%s", err);
            station_free(st);
            loop_free(loop);
            return 1;
        }
    }
    struct ota *ota = NULL;
    if (rc == 0) {
        /* The device-facing OTA endpoint (config "ota"), push jobs and bulk updates. */
        rc = ota_new(st, loop, &ota, err, sizeof(err));
        if (rc < 0) {
            log_msg(LOG_LEVEL_ERROR, "%s", err);
            web_free(web);
            station_free(st);
            loop_free(loop);
            return 1;
        }
        station_set_ota(st, ota);
    }
    struct line *line_st = NULL;
    if (rc == 0) {
        /* The station's row in the line (records stations), written before any job. */
        rc = line_new(st, loop, ESPSTATION_VERSION, web_port(web), &line_st, err, sizeof(err));
        if (rc < 0)
            log_msg(LOG_LEVEL_ERROR, "%s", err);
    }
    if (rc == 0)
        rc = station_start(st);
    if (rc < 0) {
        log_msg(LOG_LEVEL_ERROR, "cannot start the station: %s", strerror(-rc));
        station_stop(st);
    } else {
        rc = loop_run(loop);
        if (rc < 0)
            log_msg(LOG_LEVEL_ERROR, "event loop failed: %s", strerror(-rc));
    }
    /* loop_run returns once every job has ended (station_stop). */
    line_free(line_st);
    web_free(web);
    station_set_ota(st, NULL);
    ota_free(ota);
    station_free(st);
    loop_free(loop);
    log_msg(LOG_LEVEL_NOTICE, "stopped");
    return rc < 0 ? 1 : 0;
}
