/*
 * options: turns argv into struct cli_options.
 *
 * Global and command options may appear anywhere (GNU getopt_long permutes
 * argv); the first non-option word is the command, the rest are its
 * arguments. Command-specific options are accepted by the parser and then
 * refused when they do not belong to the command, so the error names them.
 * Environment: ESPSTATION_PORT (default --port), ESPSTATION_STUB_DIR
 * (default --stub-dir). Nothing here does I/O except the help text.
 */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#ifndef ESPSTATION_VERSION
#define ESPSTATION_VERSION "unknown"
#endif
#ifndef ESPSTATION_DEFAULT_STUB_DIR
#define ESPSTATION_DEFAULT_STUB_DIR ""
#endif

enum {
    OPT_INITIAL_BAUD = 256,
    OPT_BEFORE,
    OPT_AFTER,
    OPT_NO_STUB,
    OPT_STUB_DIR,
    OPT_CONNECT_ATTEMPTS,
    OPT_TIMEOUT_SCALE,
    OPT_JSON,
    OPT_VERSION,
    OPT_ERASE_ALL,
    OPT_NO_COMPRESS,
    OPT_NO_VERIFY,
    OPT_NO_DIFF,
    OPT_FLASH_MODE,
    OPT_FLASH_SIZE,
    OPT_FLASH_FREQ,
    OPT_FORCE,
    OPT_ZOPFLI,
    OPT_FROM,
    OPT_REGION,
};

static const struct option long_options[] = {
    {"port", required_argument, NULL, 'p'},
    {"baud", required_argument, NULL, 'b'},
    {"initial-baud", required_argument, NULL, OPT_INITIAL_BAUD},
    {"before", required_argument, NULL, OPT_BEFORE},
    {"after", required_argument, NULL, OPT_AFTER},
    {"no-stub", no_argument, NULL, OPT_NO_STUB},
    {"stub-dir", required_argument, NULL, OPT_STUB_DIR},
    {"connect-attempts", required_argument, NULL, OPT_CONNECT_ATTEMPTS},
    {"timeout-scale", required_argument, NULL, OPT_TIMEOUT_SCALE},
    {"json", no_argument, NULL, OPT_JSON},
    {"quiet", no_argument, NULL, 'q'},
    {"verbose", no_argument, NULL, 'v'},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, OPT_VERSION},
    {"erase-all", no_argument, NULL, OPT_ERASE_ALL},
    {"no-compress", no_argument, NULL, OPT_NO_COMPRESS},
    {"no-verify", no_argument, NULL, OPT_NO_VERIFY},
    {"no-diff", no_argument, NULL, OPT_NO_DIFF},
    {"flash-mode", required_argument, NULL, OPT_FLASH_MODE},
    {"flash-size", required_argument, NULL, OPT_FLASH_SIZE},
    {"flash-freq", required_argument, NULL, OPT_FLASH_FREQ},
    {"force", no_argument, NULL, OPT_FORCE},
    {"zopfli", no_argument, NULL, OPT_ZOPFLI},
    {"from", required_argument, NULL, OPT_FROM},
    {"region", no_argument, NULL, OPT_REGION},
    {NULL, 0, NULL, 0},
};

static const char *const commands[] = {"info", "flash", "verify",  "erase",
                                       "read", "reset", "version", "help"};

void cli_print_help(FILE *f)
{
    fprintf(
        f,
        "espstation %s - flash ESP8266/ESP32-family boards through their ROM bootloader\n"
        "\n"
        "usage: espstation [OPTIONS] COMMAND [ARGS]   (options may also follow the command)\n"
        "\n"
        "commands:\n"
        "  info                          connect and print chip, revision, MAC, crystal,\n"
        "                                flash id/size, security flags, stub, baud\n"
        "  flash [FLASH OPTIONS] OFFSET FILE [OFFSET FILE ...]\n"
        "                                write files to flash and verify them by MD5\n"
        "  flash [FLASH OPTIONS] --from PATH\n"
        "                                flash a build's output (see --from)\n"
        "  verify OFFSET FILE [...]      compare flash with files by MD5, write nothing\n"
        "  erase                         erase the whole flash (needs the stub)\n"
        "  erase --region OFFSET SIZE    erase a region (multiples of 4096)\n"
        "  read OFFSET SIZE FILE         read flash into FILE\n"
        "  reset                         connect, then reset per --after\n"
        "                                (with --before no-reset-no-sync: just reset)\n"
        "  version                       print the version\n"
        "\n"
        "global options:\n"
        "  -p, --port URI                /dev/ttyUSB0, a pty path, tcp://host:port,\n"
        "                                rfc2217://host:port (serial server), fd:N\n"
        "                                (default: $ESPSTATION_PORT)\n"
        "  -b, --baud N                  baud after connecting (460800)\n"
        "      --initial-baud N          baud for reset and sync (115200)\n"
        "      --before MODE             default-reset | usb-reset | no-reset |\n"
        "                                no-reset-no-sync | manual\n"
        "      --after MODE              hard-reset (default) | soft-reset | no-reset |\n"
        "                                no-reset-stub\n"
        "      --no-stub                 use the ROM loader only\n"
        "      --stub-dir DIR            flasher stub JSON files (default: $ESPSTATION_STUB_DIR,\n"
        "                                else %s)\n"
        "      --connect-attempts N      reset+sync cycles (0 = forever; default 7)\n"
        "      --timeout-scale F         multiply every device timeout by F\n"
        "      --json                    JSON Lines on stdout (progress, log, one result)\n"
        "  -q, --quiet                   only warnings and errors\n"
        "  -v, --verbose                 also debug messages\n"
        "  -h, --help                    this help\n"
        "      --version                 print the version\n"
        "\n"
        "flash options:\n"
        "      --erase-all               erase the whole flash first (needs the stub)\n"
        "      --no-compress             send data uncompressed\n"
        "      --no-verify               skip the MD5 check after writing\n"
        "      --no-diff                 write every region whole; by default (with the\n"
        "                                stub) only the 4 KiB sectors whose MD5 differs\n"
        "                                from the flash are written, then the region is\n"
        "                                verified\n"
        "      --flash-mode M            keep | qio | qout | dio | dout\n"
        "      --flash-size S            keep | detect | 256KB | 512KB | 1MB | 2MB | 4MB |\n"
        "                                8MB | 16MB\n"
        "      --flash-freq F            keep | 80m | 40m | 26m | 20m\n"
        "      --force                   write images built for another chip/revision\n"
        "      --from PATH               flash what a build wrote, instead of OFFSET FILE\n"
        "                                pairs: an ESP-IDF build/ (flasher_args.json), a\n"
        "                                PlatformIO .pio/build/<env>/, an Arduino export\n"
        "                                (*.ino.bin), an ESP Web Tools manifest.json or a\n"
        "                                merged image; offsets, chip and flash settings\n"
        "                                come from the build (--flash-* override them)\n"
        "      --zopfli                  compress with zopfli instead of zlib -9: 2-3 %%\n"
        "                                fewer bytes on the wire, about 1 s per MB to make\n"
        "\n"
        "offsets and sizes: decimal or 0x-hex, optional K or M suffix (x1024, x1048576)\n"
        "\n"
        "exit codes:\n"
        "  0 success                     5 verification failed (MD5 mismatch)\n"
        "  1 usage error                 6 refused by safety checks (wrong chip image,\n"
        "  2 cannot open the port          does not fit, overlap, bad file)\n"
        "  3 could not connect (no sync, 7 interrupted (SIGINT/SIGTERM)\n"
        "    wrong boot mode, no data)   8 board removed (port vanished)\n"
        "  4 device or protocol error during an operation\n"
        "  9 not supported by the loader in use (whole-chip erase or verify without\n"
        "    the stub, a command the chip refuses as unsupported)\n",
        ESPSTATION_VERSION,
        ESPSTATION_DEFAULT_STUB_DIR[0] ? ESPSTATION_DEFAULT_STUB_DIR : "(none)");
}

static enum cli_parse_result usage(char *msg, size_t msg_size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static enum cli_parse_result usage(char *msg, size_t msg_size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, msg_size, fmt, ap);
    va_end(ap);
    return CLI_PARSE_ERROR;
}

static int parse_int(const char *s, long min, long max, long *out)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end != '\0' || v < min || v > max)
        return -EINVAL;
    *out = v;
    return 0;
}

static bool is_command(const char *s)
{
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (strcmp(s, commands[i]) == 0)
            return true;
    return false;
}

bool cli_argv_wants_json(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0)
            return false;
        if (strcmp(argv[i], "--json") == 0)
            return true;
    }
    return false;
}

static void options_defaults(struct cli_options *opt)
{
    memset(opt, 0, sizeof(*opt));
    opt->baud = 460800;
    opt->initial_baud = 115200;
    opt->before = ESP_BEFORE_DEFAULT_RESET;
    opt->after = ESP_AFTER_HARD_RESET;
    opt->connect_attempts = -1;
    opt->timeout_scale = 0;
    const char *env = getenv("ESPSTATION_PORT");
    opt->port = env && *env ? env : NULL;
    env = getenv("ESPSTATION_STUB_DIR");
    opt->stub_dir = env && *env ? env : ESPSTATION_DEFAULT_STUB_DIR;
}

/* Checks that command-specific options and the argument count fit the command. */
static enum cli_parse_result check_command(struct cli_options *opt, char *msg, size_t msg_size)
{
    const char *c = opt->command;
    bool is_flash = strcmp(c, "flash") == 0;
    bool is_erase = strcmp(c, "erase") == 0;

    if ((opt->cmd_opts_seen & CLI_OPT_FLASH) && !is_flash)
        return usage(
            msg, msg_size,
            "--erase-all, --no-compress, --no-verify, --no-diff, --flash-mode, "
            "--flash-size, --flash-freq, --force, --zopfli and --from only apply to 'flash'");
    if ((opt->cmd_opts_seen & CLI_OPT_ERASE) && !is_erase)
        return usage(msg, msg_size, "--region only applies to 'erase'");
    if (opt->zopfli && opt->no_compress)
        return usage(msg, msg_size, "--zopfli and --no-compress exclude each other");

    if (is_flash && opt->from) {
        if (opt->nargs != 0)
            return usage(msg, msg_size,
                         "'flash --from PATH' takes no OFFSET FILE pairs (unexpected '%s')",
                         opt->args[0]);
    } else if (is_flash || strcmp(c, "verify") == 0) {
        if (opt->nargs < 2 || opt->nargs % 2 != 0)
            return usage(msg, msg_size, "'%s' needs OFFSET FILE pairs", c);
    } else if (is_erase) {
        if (opt->region && opt->nargs != 2)
            return usage(msg, msg_size, "'erase --region' needs OFFSET SIZE");
        if (!opt->region && opt->nargs != 0)
            return usage(msg, msg_size,
                         "'erase' takes no arguments (use 'erase --region OFFSET SIZE')");
    } else if (strcmp(c, "read") == 0) {
        if (opt->nargs != 3)
            return usage(msg, msg_size, "'read' needs OFFSET SIZE FILE");
    } else if (opt->nargs != 0) {
        return usage(msg, msg_size, "'%s' takes no arguments (unexpected '%s')", c, opt->args[0]);
    }

    bool needs_port = strcmp(c, "version") != 0;
    if (needs_port && !opt->port)
        return usage(msg, msg_size, "no port given: use -p/--port URI or set ESPSTATION_PORT");
    if (opt->quiet && opt->verbose)
        return usage(msg, msg_size, "-q and -v exclude each other");
    return CLI_PARSE_OK;
}

enum cli_parse_result cli_parse_options(int argc, char **argv, struct cli_options *opt, char *msg,
                                        size_t msg_size)
{
    options_defaults(opt);
    opt->json = cli_argv_wants_json(argc, argv);
    msg[0] = '\0';

    bool help = false, version = false;
    long v;
    double d;
    char *end;
    int c;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":p:b:qvh", long_options, NULL)) != -1) {
        switch (c) {
        case 'p':
            if (!*optarg)
                return usage(msg, msg_size, "--port needs a URI");
            opt->port = optarg;
            break;
        case 'b':
        case OPT_INITIAL_BAUD:
            if (parse_int(optarg, 300, 20000000, &v) != 0)
                return usage(msg, msg_size, "bad baud rate '%s'", optarg);
            if (c == 'b')
                opt->baud = (uint32_t)v;
            else
                opt->initial_baud = (uint32_t)v;
            break;
        case OPT_BEFORE: {
            int r = esp_before_from_string(optarg);
            if (r < 0)
                return usage(msg, msg_size,
                             "bad --before '%s' (default-reset, usb-reset, no-reset, "
                             "no-reset-no-sync, manual)",
                             optarg);
            opt->before = (enum esp_before)r;
            opt->before_given = true;
            break;
        }
        case OPT_AFTER: {
            int r = esp_after_from_string(optarg);
            if (r < 0)
                return usage(msg, msg_size,
                             "bad --after '%s' (hard-reset, soft-reset, no-reset, no-reset-stub)",
                             optarg);
            opt->after = (enum esp_after)r;
            opt->after_given = true;
            break;
        }
        case OPT_NO_STUB:
            opt->no_stub = true;
            break;
        case OPT_STUB_DIR:
            opt->stub_dir = optarg;
            break;
        case OPT_CONNECT_ATTEMPTS:
            if (parse_int(optarg, 0, 1000000, &v) != 0)
                return usage(msg, msg_size, "bad --connect-attempts '%s'", optarg);
            opt->connect_attempts = (int)v;
            break;
        case OPT_TIMEOUT_SCALE:
            errno = 0;
            d = strtod(optarg, &end);
            if (errno || end == optarg || *end != '\0' || !isfinite(d) || d <= 0 || d > 1000)
                return usage(msg, msg_size, "bad --timeout-scale '%s' (a number > 0)", optarg);
            opt->timeout_scale = d;
            break;
        case OPT_JSON:
            opt->json = true;
            break;
        case 'q':
            opt->quiet = true;
            break;
        case 'v':
            opt->verbose = true;
            break;
        case 'h':
            help = true;
            break;
        case OPT_VERSION:
            version = true;
            break;
        case OPT_ERASE_ALL:
            opt->erase_all = true;
            opt->cmd_opts_seen |= CLI_OPT_FLASH;
            break;
        case OPT_NO_COMPRESS:
            opt->no_compress = true;
            opt->cmd_opts_seen |= CLI_OPT_FLASH;
            break;
        case OPT_NO_VERIFY:
            opt->no_verify = true;
            opt->cmd_opts_seen |= CLI_OPT_FLASH;
            break;
        case OPT_NO_DIFF:
            opt->no_diff = true;
            opt->cmd_opts_seen |= CLI_OPT_FLASH;
            break;
        case OPT_FORCE:
            opt->force = true;
            opt->cmd_opts_seen |= CLI_OPT_FLASH;
            break;
        case OPT_ZOPFLI:
            opt->zopfli = true;
            opt->cmd_opts_seen |= CLI_OPT_FLASH;
            break;
        case OPT_FROM:
            opt->from = optarg;
            opt->cmd_opts_seen |= CLI_OPT_FLASH;
            break;
        case OPT_FLASH_MODE: {
            bool keep = false;
            if (esp_parse_flash_mode(optarg, &keep) < 0)
                return usage(msg, msg_size, "bad --flash-mode '%s' (keep, qio, qout, dio, dout)",
                             optarg);
            opt->flash_mode = keep ? NULL : optarg;
            opt->cmd_opts_seen |= CLI_OPT_FLASH;
            break;
        }
        case OPT_FLASH_SIZE: {
            bool keep = false;
            uint32_t bytes = 0;
            if (strcmp(optarg, "detect") != 0 &&
                (esp_parse_flash_size(optarg, &bytes, &keep) < 0 || (!keep && bytes == 0)))
                return usage(msg, msg_size, "bad --flash-size '%s' (keep, detect, 256KB ... 16MB)",
                             optarg);
            opt->flash_size = keep ? NULL : optarg;
            opt->cmd_opts_seen |= CLI_OPT_FLASH;
            break;
        }
        case OPT_FLASH_FREQ: {
            bool keep = false;
            unsigned mhz = 0;
            if (esp_parse_flash_freq(optarg, &mhz, &keep) < 0)
                return usage(msg, msg_size, "bad --flash-freq '%s' (keep, 80m, 40m, 26m, 20m)",
                             optarg);
            opt->flash_freq = keep ? NULL : optarg;
            opt->cmd_opts_seen |= CLI_OPT_FLASH;
            break;
        }
        case OPT_REGION:
            opt->region = true;
            opt->cmd_opts_seen |= CLI_OPT_ERASE;
            break;
        case ':':
            return usage(msg, msg_size, "option '%s' needs a value", argv[optind - 1]);
        case '?':
        default:
            if (optopt)
                return usage(msg, msg_size, "unknown option '-%c'", optopt);
            return usage(msg, msg_size, "unknown option '%s'", argv[optind - 1]);
        }
    }

    if (help)
        return CLI_PARSE_HELP;
    if (version)
        return CLI_PARSE_VERSION;
    if (optind >= argc)
        return usage(msg, msg_size, "no command given (try 'espstation --help')");

    opt->command = argv[optind];
    opt->args = argv + optind + 1;
    opt->nargs = argc - optind - 1;
    if (!is_command(opt->command))
        return usage(msg, msg_size, "unknown command '%s' (try 'espstation --help')", opt->command);
    if (strcmp(opt->command, "help") == 0)
        return CLI_PARSE_HELP;
    return check_command(opt, msg, msg_size);
}
