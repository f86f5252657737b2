/*
 * devsrc_probe: runs the udev device source alone (coldplug, then the
 * monitor) and prints one line per port_event on stdout, so the udev layer
 * can be tested under umockdev without the rest of the daemon:
 *
 *   add coldplug=0 slot=<slot_key> uri=<uri> label=<label> vid=10c4 pid=ea60 jtag=0
 *       serial=<serial> product=<product, may contain spaces, always last>
 *   remove coldplug=0 slot=... (same fields as the add)
 *   ready                      after coldplug, once the monitor is being polled
 *
 * usage: devsrc_probe [--config FILE]   (exits 0 on SIGTERM/SIGINT)
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "devsrc.h"

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static void print_event(void *ctx, const struct port_event *ev)
{
    (void)ctx;
    printf("%s coldplug=%d slot=%s uri=%s label=%s vid=%04x pid=%04x jtag=%d serial=%s "
           "product=%s\n",
           ev->kind == PORT_ADDED ? "add" : "remove", ev->coldplug ? 1 : 0, ev->slot_key, ev->uri,
           ev->label, ev->vid, ev->pid, ev->usb_jtag ? 1 : 0, ev->serial, ev->product);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    const char *cfg_path = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
            cfg_path = argv[++i];
        } else {
            fprintf(stderr, "usage: devsrc_probe [--config FILE]\n");
            return 2;
        }
    }
    char err[512];
    struct config *cfg = NULL;
    if (config_load(cfg_path, &cfg, err, sizeof(err)) < 0) {
        fprintf(stderr, "devsrc_probe: %s\n", err);
        return 1;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    struct devsrc_udev *src = NULL;
    int rc = devsrc_udev_new(cfg, print_event, NULL, &src, err, sizeof(err));
    if (rc < 0) {
        fprintf(stderr, "devsrc_probe: %s\n", err);
        config_free(cfg);
        return 1;
    }
    rc = devsrc_udev_coldplug(src);
    if (rc < 0)
        fprintf(stderr, "devsrc_probe: coldplug: %s\n", strerror(-rc));
    printf("ready\n");
    fflush(stdout);

    int status = 0;
    while (!stop_requested) {
        struct pollfd p = {.fd = devsrc_udev_fd(src), .events = POLLIN};
        int n = poll(&p, 1, 200);
        if (n < 0 && errno != EINTR) {
            perror("devsrc_probe: poll");
            status = 1;
            break;
        }
        if (n > 0 && (rc = devsrc_udev_dispatch(src)) < 0) {
            fprintf(stderr, "devsrc_probe: dispatch: %s\n", strerror(-rc));
            status = 1;
            break;
        }
    }
    devsrc_udev_free(src);
    config_free(cfg);
    return status;
}
