/*
 * espstation: command-line flasher for test benches and technicians.
 * main only parses, installs the signal pipe and runs the command; the
 * modules are described in cli.h.
 */
#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#ifndef ESPSTATION_VERSION
#define ESPSTATION_VERSION "unknown"
#endif

static int usage_error(const struct cli_options *opt, const char *msg)
{
    struct cli_output out;
    struct esp_error err;
    cli_output_init(&out, opt, opt->command);
    esp_error_clear(&err);
    esp_error_set(&err, -EINVAL, ESP_STAGE_NONE, "espstation --help lists the commands and options",
                  "%s", msg);
    cli_emit_failure(&out, NULL, &err, CLI_EXIT_USAGE);
    return CLI_EXIT_USAGE;
}

int main(int argc, char **argv)
{
    struct cli_options opt;
    char msg[256];
    switch (cli_parse_options(argc, argv, &opt, msg, sizeof(msg))) {
    case CLI_PARSE_HELP:
        cli_print_help(stdout);
        return CLI_EXIT_OK;
    case CLI_PARSE_VERSION:
        opt.command = "version";
        opt.nargs = 0;
        break;
    case CLI_PARSE_ERROR:
        return usage_error(&opt, msg);
    case CLI_PARSE_OK:
        break;
    }

    struct cli_signals *saved = NULL;
    int cancel_fd = cli_signals_install(&saved);
    if (cancel_fd < 0) {
        snprintf(msg, sizeof(msg), "cannot set up signal handling: %s", strerror(-cancel_fd));
        return usage_error(&opt, msg);
    }
    int rc = cli_cmd_run(&opt, cancel_fd);
    cli_signals_restore(saved, cancel_fd);
    return rc;
}
