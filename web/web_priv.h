/*
 * web_priv: what http.c, sse.c and upload.c share. Loop thread only, except
 * where a field says otherwise.
 */
#ifndef ESPSTATION_WEB_PRIV_H
#define ESPSTATION_WEB_PRIV_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sys/socket.h>

#include <gnutls/abstract.h>
#include <microhttpd.h>

#include "api.h"
#include "web.h"

struct loop_timer;
struct slot;
struct sse_client;
struct head_conn;
struct upload;
struct web_conn;
struct web_tls;
struct tls_pair;

/* Request heads (http_head.c): a connection's first head larger than HEAD_MAX bytes or
 * with more than HEAD_LINES lines gets the JSON 431; a target longer than WEB_MAX_TARGET
 * the JSON 414 (http.c). MHD's 32 KiB per connection holds the rest. */
#define WEB_MAX_TARGET 8192
#define HEAD_MAX_TARGET WEB_MAX_TARGET
#define HEAD_MAX (24 * 1024)
#define HEAD_LINES 100

/* Per-slot throttle of the non-persisted "slot.progress" event. */
struct web_slot_mark {
    const struct slot *s;
    int64_t last_ms;
    bool dirty;
};

struct web {
    struct station *st;
    struct loop *loop;
    struct api *api;
    struct MHD_Daemon *d;
    int epfd;
    uint16_t port;
    struct sockaddr_storage addr; /* where to listen */
    bool v6;
    char host[128];
    char listen[160];
    char port_file[PATH_MAX];
    struct loop_timer *retry_timer;     /* the configured port was taken: try again */
    struct loop_timer *tls_check_timer; /* api_tls_check once a day */
    char root[PATH_MAX];
    /* api.tls (http_tls.c): the pair new handshakes get, NULL plain HTTP; swapped by a
     * reload. tls_reloadable: MHD asks for it per handshake (MHD_OPTION_HTTPS_CERT_CALLBACK2),
     * else it was given once (MHD_OPTION_HTTPS_MEM_CERT/KEY) and a reload cannot change it. */
    struct web_tls *tls;
    bool tls_reloadable;
    /* libmicrohttpd's last message, for a start that fails */
    char mhd_error[200];
    struct loop_timer *mhd_timer; /* MHD_get_timeout(), and "run soon" after a resume */
    bool in_run;                  /* inside MHD_run: a kick is a re-arm, never a recursion */
    bool kick_pending;            /* run again as soon as the current MHD_run returns */

    /* connections (http.c): every accepted one, the longest idle first */
    struct web_conn *conns, *conns_tail;
    int n_conns;
    int max_conns;        /* the fd budget's REST API cap: MHD's connection limit */
    uint64_t evicted;     /* connections closed to make room at the cap */
    int64_t evict_log_ms; /* the last "at its cap" warning */

    /* plain HTTP: our own listener, connections held until their first head is complete
     * (http_head.c); -1 with api.tls (MHD listens itself) */
    int listen_fd;
    bool listen_watched;
    struct head_conn *heads, *heads_tail; /* oldest first */
    int n_heads;
    char *head_buf;                /* HEAD_MAX + 1 bytes for MSG_PEEK */
    struct loop_timer *head_timer; /* idle and drain timeouts of waiting connections */
    struct loop_timer *rest_timer; /* accept() found no descriptor: try again */
    int64_t rest_log_ms;

    /* event stream (sse.c) */
    struct sse_client *clients;
    int n_clients;
    struct loop_timer *ping_timer;
    struct loop_timer *flush_timer; /* slot.progress flush */
    int64_t flush_at_ms;            /* when flush_timer fires; 0 = not armed */
    struct web_slot_mark *marks;
    size_t n_marks, cap_marks;

    /* uploads (upload.c): finished validation/import threads report through a pipe */
    int upload_pipe[2];
    int uploads_running;
};

/* Asks for MHD_run() soon (after a resume or a queued response on a suspended connection). */
void web_kick(struct web *w);

/* At the connection cap: closes the longest-idle connection (http.c). */
void web_make_room(struct web *w);

/* ---- http_head.c ---- */
/* Opens the listening socket on w->addr and watches it; *port: the bound port. 0 or -errno
 * with err. Connections go to MHD (MHD_add_connection) once their first head is complete. */
int head_listen(struct web *w, uint16_t *port, char *err, size_t errlen);
void head_stop(struct web *w); /* closes the listener and every waiting connection */
/* Length of the complete head in buf[0..n) (through its blank line), else 0; *lines gets
 * the header lines seen so far. Pure: no state. */
size_t http_head_end(const char *buf, size_t n, size_t *lines);
/* A connection ended: accept again if the listener rested at the cap or after EMFILE. */
void head_resume(struct web *w);
/* Closes the oldest connection still waiting for its head, if accepted at or before
 * `before` (loop_now_ms()); false when there is none. */
bool head_close_oldest(struct web *w, int64_t before);

/* ---- http_tls.c ---- */
/* Reads and checks api.tls's pair (tls_load_pair, then GnuTLS's own import). 0 or -errno
 * with one line in err naming the file and what to do. */
int web_tls_load(const char *cert, const char *key, struct web_tls **out, char *err, size_t errlen);
void web_tls_free(struct web_tls *t); /* NULL allowed; stops serving it */
const struct tls_pair *web_tls_pair(const struct web_tls *t);
/* t is what web_tls_retrieve hands to handshakes from now on. */
void web_tls_serve(struct web_tls *t);
/* This libmicrohttpd takes MHD_OPTION_HTTPS_CERT_CALLBACK2. */
bool web_tls_reloadable(void);
/* MHD_OPTION_HTTPS_CERT_CALLBACK2: a copy of the served pair for one handshake. */
gnutls_certificate_retrieve_function3 web_tls_retrieve;
/* A reload (SIGHUP): the files read again when a path or a file changed; a good pair is
 * served to new connections, a refused one is logged and the old one kept. */
void web_tls_reload(struct web *w);

/* ---- sse.c ---- */
int sse_init(struct web *w);
void sse_fini(struct web *w); /* resumes and ends every stream */
/* Creates the streaming response for a connection (after == -1: only new events). */
struct MHD_Response *sse_response(struct web *w, struct MHD_Connection *c, int64_t after);
void sse_on_event(void *ctx, const struct records_event *e);
void sse_on_slot(void *ctx, const struct slot *s, bool progress);

/* ---- upload.c ---- */
struct upload;
int upload_init(struct web *w);
void upload_fini(struct web *w); /* waits for running threads */
/* Starts a multipart upload for connection c (validate_only: /firmware/validate).
 * Returns NULL and fills resp on failure. */
struct upload *upload_begin(struct web *w, struct MHD_Connection *c, bool validate_only,
                            bool replace, struct api_response *resp);
/* Feeds body bytes. */
void upload_feed(struct upload *u, const char *data, size_t len);
/* The body is complete: 1 when the connection was suspended (validation runs on a
 * thread; the handler is called again after the resume), 0 when resp holds the answer. */
int upload_finish(struct upload *u, struct api_response *resp);
void upload_free(struct upload *u); /* NULL allowed; only when no thread runs for it */

#endif
