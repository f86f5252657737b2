/*
 * web: the station's HTTP server (REST API, event stream, metrics, status page).
 *
 * libmicrohttpd runs in external-epoll mode inside the daemon's loop: MHD's
 * epoll fd is one more loop handler, a loop timer follows MHD_get_timeout(),
 * and every callback (requests, the event stream, the station hooks) runs on
 * the loop thread. Nothing here blocks on a device; firmware validation and
 * import run on a short-lived thread while the request is suspended.
 */
#ifndef ESPSTATION_WEB_H
#define ESPSTATION_WEB_H

#include <stddef.h>
#include <stdint.h>

struct station;
struct loop;
struct web;

struct web_options {
    const char *listen;    /* "host:port" overriding the config's listen; NULL = config */
    const char *web_root;  /* status page directory; NULL = the build's default */
    const char *port_file; /* written with the bound port once listening; NULL = none */
};

/* Binds and starts serving; registers the station hooks. 0 or -errno with err. */
int web_new(struct station *st, struct loop *loop, const struct web_options *o, struct web **out,
            char *err, size_t errlen);
/* The bound TCP port. */
uint16_t web_port(const struct web *w);
/* Ends the event streams, waits for running uploads, stops the server. NULL allowed. */
void web_free(struct web *w);

#endif
