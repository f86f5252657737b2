/*
 * http_tls.c: api.tls, the certificate the REST API and status page serve (libmicrohttpd
 * with GnuTLS), and its renewal on a reload (SIGHUP) without a restart.
 *
 * libmicrohttpd 0.9.75 reads MHD_OPTION_HTTPS_MEM_CERT/KEY once, when the daemon starts.
 * Instead the daemon is started with MHD_OPTION_HTTPS_CERT_CALLBACK2 (GnuTLS's
 * certificate retrieve function 3): GnuTLS asks for the certificate in every handshake,
 * and gets the pair loaded last. A reload swaps that pair; the listening socket, the MHD
 * daemon and every open connection (a held event stream, a keep-alive client) stay as
 * they are, and only handshakes after the swap see the new certificate.
 *
 * Invariants:
 *  - Every handshake gets its own copy of the certificate chain and key, which GnuTLS
 *    frees with the session (GNUTLS_CERT_RETR_DEINIT_ALL): a swapped-out pair can be
 *    freed at once, whatever sessions are still open or mid-handshake.
 *  - A pair is served only once tls_load_pair (ota_tls.h: readable, PEM, unencrypted key,
 *    the certificate's key) and GnuTLS have both taken it; a refused one leaves the
 *    served pair as it was.
 *  - Loop thread only: MHD runs from the loop (MHD_USE_EPOLL, no threads of its own), so
 *    the handshake callback and the reload never run at the same time. GnuTLS's callback
 *    has no closure argument: the served pair is this file's `serving` (one REST API
 *    with TLS per process, as espstationd has).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>

#include "log.h"
#include "ota_tls.h"
#include "station.h"
#include "web_priv.h"

#define CHAIN_MAX 16 /* certificates in api.tls.cert: the server's, then intermediates */

struct web_tls {
    struct tls_pair pair;
    char *cert, *key; /* the paths it was read from */
    struct tls_file_id cert_id, key_id;
};

static const struct web_tls *serving;

/* GnuTLS's own copy of the pair: *certs (gnutls_malloc'd, *n of them) and *key. 0 or a
 * GnuTLS error code, nothing left allocated. */
static int import_pair(const struct tls_pair *p, gnutls_pcert_st **certs, unsigned *n,
                       gnutls_privkey_t *key)
{
    *certs = NULL;
    *n = 0;
    *key = NULL;
    gnutls_pcert_st *list = gnutls_malloc(CHAIN_MAX * sizeof(*list));
    if (!list)
        return GNUTLS_E_MEMORY_ERROR;
    unsigned got = CHAIN_MAX;
    gnutls_datum_t cd = {(unsigned char *)p->cert_pem, (unsigned)strlen(p->cert_pem)};
    int r = gnutls_pcert_list_import_x509_raw(list, &got, &cd, GNUTLS_X509_FMT_PEM, 0);
    if (r < 0) {
        gnutls_free(list);
        return r;
    }
    gnutls_privkey_t k = NULL;
    gnutls_datum_t kd = {(unsigned char *)p->key_pem, (unsigned)strlen(p->key_pem)};
    if ((r = gnutls_privkey_init(&k)) < 0 ||
        (r = gnutls_privkey_import_x509_raw(k, &kd, GNUTLS_X509_FMT_PEM, NULL, 0)) < 0) {
        gnutls_privkey_deinit(k);
        for (unsigned i = 0; i < got; i++)
            gnutls_pcert_deinit(&list[i]);
        gnutls_free(list);
        return r;
    }
    *certs = list;
    *n = got;
    *key = k;
    return 0;
}

int web_tls_retrieve(gnutls_session_t session, const struct gnutls_cert_retr_st *info,
                     gnutls_pcert_st **certs, unsigned int *pcert_length,
                     gnutls_ocsp_data_st **ocsp, unsigned int *ocsp_length,
                     gnutls_privkey_t *privkey, unsigned int *flags)
{
    (void)session;
    (void)info;
    *ocsp = NULL;
    *ocsp_length = 0;
    *flags = GNUTLS_CERT_RETR_DEINIT_ALL; /* this session's copy: GnuTLS frees it */
    if (!serving)
        return -1;
    int r = import_pair(&serving->pair, certs, pcert_length, privkey);
    if (r < 0) {
        log_msg(LOG_LEVEL_WARN, "api.tls: cannot hand the certificate to a handshake: %s",
                gnutls_strerror(r));
        return -1;
    }
    return 0;
}

bool web_tls_reloadable(void)
{
    return MHD_is_feature_supported(MHD_FEATURE_HTTPS_CERT_CALLBACK2) == MHD_YES;
}

void web_tls_free(struct web_tls *t)
{
    if (!t)
        return;
    if (serving == t)
        serving = NULL;
    tls_pair_free(&t->pair);
    free(t->cert);
    free(t->key);
    free(t);
}

int web_tls_load(const char *cert, const char *key, struct web_tls **out, char *err, size_t errlen)
{
    *out = NULL;
    struct web_tls *t = calloc(1, sizeof(*t));
    if (!t || !(t->cert = strdup(cert)) || !(t->key = strdup(key))) {
        web_tls_free(t);
        snprintf(err, errlen, "api.tls: out of memory");
        return -ENOMEM;
    }
    /* before reading: a file replaced meanwhile is read again on the next reload */
    tls_file_id_of(cert, &t->cert_id);
    tls_file_id_of(key, &t->key_id);
    int rc = tls_load_pair("api.tls", cert, key, &t->pair, err, errlen);
    if (rc < 0) {
        web_tls_free(t);
        return rc;
    }
    gnutls_pcert_st *certs;
    unsigned n;
    gnutls_privkey_t k;
    int r = import_pair(&t->pair, &certs, &n, &k);
    if (r < 0) {
        snprintf(err, errlen,
                 "api.tls: GnuTLS (which serves the REST API) refuses %s or %s: %s; check them "
                 "with certtool -i --infile CERT and certtool -k --infile KEY",
                 cert, key, gnutls_strerror(r));
        web_tls_free(t);
        return -EINVAL;
    }
    gnutls_privkey_deinit(k);
    for (unsigned i = 0; i < n; i++)
        gnutls_pcert_deinit(&certs[i]);
    gnutls_free(certs);
    *out = t;
    return 0;
}

void web_tls_serve(struct web_tls *t)
{
    serving = t;
}

const struct tls_pair *web_tls_pair(const struct web_tls *t)
{
    return &t->pair;
}

/* The files are the ones t was read from, unchanged since. */
static bool unchanged(const struct web_tls *t, const char *cert, const char *key)
{
    if (strcmp(t->cert, cert) != 0 || strcmp(t->key, key) != 0)
        return false;
    struct tls_file_id c, k;
    tls_file_id_of(cert, &c);
    tls_file_id_of(key, &k);
    return tls_file_id_eq(&c, &t->cert_id) && tls_file_id_eq(&k, &t->key_id);
}

void web_tls_reload(struct web *w)
{
    const struct config *cfg = station_config(w->st);
    if (!w->tls) {
        if (cfg->api.tls.cert)
            log_msg(LOG_LEVEL_WARN,
                    "api.tls added: the status page and REST API speak plain HTTP until the "
                    "daemon restarts (a reload does not switch a listener to HTTPS)");
        return;
    }
    if (!cfg->api.tls.cert) {
        log_msg(LOG_LEVEL_WARN,
                "api.tls removed: the status page and REST API keep speaking HTTPS with %s, "
                "not after %s, until the daemon restarts (a reload never drops to plain HTTP)",
                w->tls->pair.subject, w->tls->pair.until);
        return;
    }
    if (unchanged(w->tls, cfg->api.tls.cert, cfg->api.tls.key))
        return; /* a reload for something else, or the same files */
    if (!w->tls_reloadable) {
        log_msg(LOG_LEVEL_WARN,
                "tls: api certificate not reloaded: this libmicrohttpd lacks "
                "MHD_OPTION_HTTPS_CERT_CALLBACK2 (GnuTLS 3.6.3+), so the status page and REST "
                "API keep %s, not after %s, until the daemon restarts",
                w->tls->pair.subject, w->tls->pair.until);
        return;
    }
    struct web_tls *t = NULL;
    char err[700] = "";
    if (web_tls_load(cfg->api.tls.cert, cfg->api.tls.key, &t, err, sizeof(err)) < 0) {
        log_msg(LOG_LEVEL_ERROR,
                "tls: api certificate not reloaded: %s; the status page and REST API keep the "
                "certificate they had (%s, not after %s) until the files are fixed and the "
                "configuration reloaded (SIGHUP)",
                err, w->tls->pair.subject, w->tls->pair.until);
        return;
    }
    log_msg(LOG_LEVEL_NOTICE,
            "tls: api certificate reloaded (%s, not after %s): the status page and REST API "
            "speak HTTPS with %s to new connections (open ones keep theirs)",
            t->pair.subject, t->pair.until, t->pair.info);
    if (t->pair.warn[0])
        log_msg(LOG_LEVEL_WARN, "api.tls: %s", t->pair.warn);
    web_tls_free(w->tls); /* every session holds its own copy (see the top) */
    w->tls = t;
    web_tls_serve(t);
    api_set_tls_expiry(w->api, t->pair.not_after_s, t->pair.subject);
}
