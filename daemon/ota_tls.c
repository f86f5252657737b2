/*
 * ota_tls.c: certificate/key pairs for the station's servers, and the OTA endpoint's
 * non-blocking TLS layer (see ota_tls.h for what this module owns).
 *
 * Invariants:
 *  - Loop thread only for the connection layer; the OpenSSL error queue is cleared
 *    before every call whose errors are read (it is per thread, and a stale entry
 *    would be taken for this connection's).
 *  - A refused pair leaves nothing allocated and says which file and what to do.
 */
#include "ota_tls.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "log.h"

#define PEM_MAX_BYTES (1024 * 1024)
#define WARN_EVERY_MS 60000

struct ota_tls {
    SSL_CTX *ctx;
    char *cert, *key;                   /* the paths it was made from */
    struct tls_file_id cert_id, key_id; /* and what they were then (ota_tls_unchanged) */
    char info[400];
    char warn[400];
    char subject[160];
    char until[64];
    int64_t not_after_s;
    uint64_t failed;   /* failed handshakes since the last warning */
    int64_t warned_ms; /* monotonic time of the last warning, 0 none yet */
};

struct ota_tls_conn {
    SSL *ssl;
    bool ready;
    bool notified;
};

/* ---- files ---------------------------------------------------------------------------- */

/* The whole file, NUL-terminated (malloc'd), or NULL with errno. */
static char *read_pem_file(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return NULL;
    }
    if (S_ISDIR(st.st_mode) || st.st_size > PEM_MAX_BYTES) {
        close(fd);
        errno = S_ISDIR(st.st_mode) ? EISDIR : EFBIG;
        return NULL;
    }
    char *buf = malloc((size_t)st.st_size + 1);
    if (!buf) {
        close(fd);
        errno = ENOMEM;
        return NULL;
    }
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    int e = errno;
    close(fd);
    if (got != (size_t)st.st_size) {
        free(buf);
        errno = e ? e : EIO;
        return NULL;
    }
    buf[got] = '\0';
    return buf;
}

/* The first OpenSSL error's reason, for a message ("" none). */
static const char *ssl_reason(void)
{
    unsigned long ec = ERR_peek_error();
    const char *r = ec ? ERR_reason_error_string(ec) : NULL;
    return r ? r : "";
}

/* Never asked: an encrypted key has no one to type its passphrase. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1;
}

static void asn1_time_text(const ASN1_TIME *t, char *buf, size_t len)
{
    buf[0] = '\0';
    BIO *b = BIO_new(BIO_s_mem());
    if (!b)
        return;
    if (ASN1_TIME_print(b, t) == 1) {
        int n = BIO_read(b, buf, (int)len - 1);
        buf[n > 0 ? n : 0] = '\0';
    }
    BIO_free(b);
}

/* "CN=..., names DNS:a IP:b, valid until ..., SHA-1 fingerprint ..." */
static void describe_cert(X509 *x, struct tls_pair *p)
{
    char subject[160] = "", names[160] = "", until[64];
    X509_NAME_oneline(X509_get_subject_name(x), subject, sizeof(subject));
    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    size_t used = 0;
    for (int i = 0; gens && i < sk_GENERAL_NAME_num(gens) && used < sizeof(names) - 1; i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        char one[80] = "";
        if (g->type == GEN_DNS) {
            snprintf(one, sizeof(one), "DNS:%.*s", ASN1_STRING_length(g->d.dNSName),
                     (const char *)ASN1_STRING_get0_data(g->d.dNSName));
        } else if (g->type == GEN_IPADD) {
            const unsigned char *a = ASN1_STRING_get0_data(g->d.iPAddress);
            if (ASN1_STRING_length(g->d.iPAddress) == 4)
                snprintf(one, sizeof(one), "IP:%u.%u.%u.%u", a[0], a[1], a[2], a[3]);
            else
                snprintf(one, sizeof(one), "IP:(v6)");
        }
        if (one[0])
            used +=
                (size_t)snprintf(names + used, sizeof(names) - used, "%s%s", used ? " " : "", one);
    }
    GENERAL_NAMES_free(gens);
    asn1_time_text(X509_get0_notAfter(x), until, sizeof(until));
    snprintf(p->subject, sizeof(p->subject), "%s", subject);
    snprintf(p->until, sizeof(p->until), "%s", until);
    struct tm tm;
    p->not_after_s = ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm) == 1 ? (int64_t)timegm(&tm) : 0;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    p->sha1[0] = '\0';
    size_t off = 0;
    if (X509_digest(x, EVP_sha1(), md, &n) == 1)
        for (unsigned i = 0; i < n && off + 3 < sizeof(p->sha1); i++)
            off += (size_t)snprintf(p->sha1 + off, sizeof(p->sha1) - off, "%s%02X", i ? ":" : "",
                                    md[i]);
    snprintf(p->info, sizeof(p->info),
             "certificate %s, names %s, valid until %s, SHA-1 fingerprint %s", subject,
             names[0] ? names : "(no subjectAltName)", until, p->sha1);
    if (X509_cmp_current_time(X509_get0_notAfter(x)) < 0)
        snprintf(p->warn, sizeof(p->warn),
                 "the certificate expired on %s: clients that check dates (curl, browsers, boards "
                 "whose clock is set) refuse it; renew it and reload (SIGHUP)",
                 until);
    else if (X509_cmp_current_time(X509_get0_notBefore(x)) > 0)
        snprintf(p->warn, sizeof(p->warn),
                 "the certificate is not valid yet (check this machine's clock): clients that "
                 "check dates refuse it");
}

int tls_load_pair(const char *what, const char *cert, const char *key, struct tls_pair *out,
                  char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    X509 *leaf = NULL;
    EVP_PKEY *pkey = NULL;
    BIO *b = NULL;
    int rc = -EINVAL;
    ERR_clear_error();
    out->cert_pem = read_pem_file(cert);
    if (!out->cert_pem) {
        rc = -errno;
        snprintf(err, errlen,
                 "%s.cert: cannot read %s: %s (the PEM certificate the server presents; fix the "
                 "path or the file's permissions, see docs/CONFIG.md \"TLS\")",
                 what, cert, strerror(-rc));
        goto fail;
    }
    out->key_pem = read_pem_file(key);
    if (!out->key_pem) {
        rc = -errno;
        snprintf(err, errlen,
                 "%s.key: cannot read %s: %s (the certificate's private key; fix the path or the "
                 "file's permissions, see docs/CONFIG.md \"TLS\")",
                 what, key, strerror(-rc));
        goto fail;
    }
    b = BIO_new_mem_buf(out->cert_pem, -1);
    leaf = b ? PEM_read_bio_X509(b, NULL, no_passphrase, NULL) : NULL;
    if (!leaf) {
        bool has_key = strstr(out->cert_pem, "PRIVATE KEY-----") != NULL;
        snprintf(err, errlen,
                 "%s.cert: %s holds no PEM certificate%s: give the server certificate in PEM "
                 "(\"-----BEGIN CERTIFICATE-----\", then any intermediate CA certificates; from "
                 "DER: openssl x509 -inform der -in FILE -out FILE.pem)",
                 what, cert, has_key ? " (it holds a private key: are cert and key swapped?)" : "");
        goto fail;
    }
    /* Any intermediate certificates after it must be readable too. */
    X509 *extra;
    while ((extra = PEM_read_bio_X509(b, NULL, no_passphrase, NULL)) != NULL)
        X509_free(extra);
    unsigned long last = ERR_peek_last_error();
    if (last &&
        !(ERR_GET_LIB(last) == ERR_LIB_PEM && ERR_GET_REASON(last) == PEM_R_NO_START_LINE)) {
        snprintf(
            err, errlen,
            "%s.cert: %s: a certificate after the first one is damaged (%s): give the "
            "server certificate, then its intermediate CA certificates, each a whole PEM block",
            what, cert, ssl_reason());
        goto fail;
    }
    ERR_clear_error();
    BIO_free(b);
    b = BIO_new_mem_buf(out->key_pem, -1);
    pkey = b ? PEM_read_bio_PrivateKey(b, NULL, no_passphrase, NULL) : NULL;
    if (!pkey) {
        if (strstr(out->key_pem, "ENCRYPTED"))
            snprintf(
                err, errlen,
                "%s.key: %s is encrypted (it has a passphrase, and nobody is there to type "
                "it): write it unencrypted (openssl pkey -in FILE -out FILE.plain) and let only "
                "the station's user read it (chmod 600)",
                what, key);
        else
            snprintf(err, errlen,
                     "%s.key: %s holds no PEM private key%s: give the certificate's private key "
                     "in PEM (\"-----BEGIN PRIVATE KEY-----\" or \"-----BEGIN EC/RSA PRIVATE "
                     "KEY-----\")",
                     what, key,
                     strstr(out->key_pem, "BEGIN CERTIFICATE")
                         ? " (it holds a certificate: are cert and key swapped?)"
                         : "");
        goto fail;
    }
    if (X509_check_private_key(leaf, pkey) != 1) {
        snprintf(err, errlen,
                 "%s.key: %s is not the private key of the certificate in %s (a key of another "
                 "certificate?): give the key the certificate was made for, or a certificate "
                 "made for this key",
                 what, key, cert);
        goto fail;
    }
    describe_cert(leaf, out);
    struct stat st;
    if (!out->warn[0] && stat(key, &st) == 0 && (st.st_mode & 0004))
        snprintf(out->warn, sizeof(out->warn),
                 "%s.key: %s can be read by every user of this machine (mode %04o): whoever reads "
                 "it can pose as the station; chmod 600 it (owned by the station's user)",
                 what, key, (unsigned)(st.st_mode & 07777));
    BIO_free(b);
    X509_free(leaf);
    EVP_PKEY_free(pkey);
    ERR_clear_error();
    return 0;
fail:
    BIO_free(b);
    X509_free(leaf);
    EVP_PKEY_free(pkey);
    tls_pair_free(out);
    ERR_clear_error();
    return rc;
}

void tls_pair_free(struct tls_pair *p)
{
    if (!p)
        return;
    if (p->key_pem)
        OPENSSL_cleanse(p->key_pem, strlen(p->key_pem));
    free(p->cert_pem);
    free(p->key_pem);
    p->cert_pem = p->key_pem = NULL;
}

/* ---- the OTA endpoint's context ---------------------------------------------------------- */

void tls_file_id_of(const char *path, struct tls_file_id *id)
{
    struct stat st;
    memset(id, 0, sizeof(*id));
    if (stat(path, &st) != 0)
        return;
    id->dev = st.st_dev;
    id->ino = st.st_ino;
    id->size = st.st_size;
    id->mtime = st.st_mtim;
}

bool tls_file_id_eq(const struct tls_file_id *a, const struct tls_file_id *b)
{
    return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
           a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec;
}

bool ota_tls_unchanged(const struct ota_tls *t, const char *cert, const char *key)
{
    if (!t || strcmp(t->cert, cert) != 0 || strcmp(t->key, key) != 0)
        return false;
    struct tls_file_id c, k;
    tls_file_id_of(cert, &c);
    tls_file_id_of(key, &k);
    return tls_file_id_eq(&c, &t->cert_id) && tls_file_id_eq(&k, &t->key_id);
}

int ota_tls_new(const char *what, const char *cert, const char *key, struct ota_tls **out,
                char *err, size_t errlen)
{
    *out = NULL;
    struct tls_file_id cert_id, key_id; /* before reading: one replaced meanwhile is read again */
    tls_file_id_of(cert, &cert_id);
    tls_file_id_of(key, &key_id);
    struct tls_pair p;
    int rc = tls_load_pair(what, cert, key, &p, err, errlen);
    if (rc < 0)
        return rc;
    struct ota_tls *t = calloc(1, sizeof(*t));
    X509 *leaf = NULL;
    EVP_PKEY *pkey = NULL;
    BIO *b = NULL;
    rc = -ENOMEM;
    ERR_clear_error();
    if (!t || !(t->cert = strdup(cert)) || !(t->key = strdup(key)) ||
        !(t->ctx = SSL_CTX_new(TLS_server_method()))) {
        snprintf(err, errlen, "%s: cannot set up TLS: %s", what,
                 t ? ssl_reason() : "out of memory");
        goto fail;
    }
    /* The ESP cores speak TLS 1.2 (Mbed TLS 2.x, BearSSL); nothing older. */
    SSL_CTX_set_min_proto_version(t->ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(t->ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_CTX_set_num_tickets(t->ctx, 0);
    SSL_CTX_set_mode(t->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                                 SSL_MODE_RELEASE_BUFFERS);
    rc = -EINVAL;
    b = BIO_new_mem_buf(p.cert_pem, -1);
    leaf = b ? PEM_read_bio_X509(b, NULL, no_passphrase, NULL) : NULL;
    if (!leaf || SSL_CTX_use_certificate(t->ctx, leaf) != 1) {
        snprintf(err, errlen,
                 "%s.cert: %s is refused by OpenSSL: %s (e.g. an RSA key under 2048 bits or a "
                 "SHA-1 signature; make one with RSA 2048+ or EC P-256 and SHA-256)",
                 what, cert, ssl_reason());
        goto fail;
    }
    X509 *extra;
    while ((extra = PEM_read_bio_X509(b, NULL, no_passphrase, NULL)) != NULL)
        if (SSL_CTX_add0_chain_cert(t->ctx, extra) != 1) {
            X509_free(extra);
            snprintf(err, errlen, "%s.cert: %s: an intermediate certificate is refused: %s", what,
                     cert, ssl_reason());
            goto fail;
        }
    ERR_clear_error();
    BIO_free(b);
    b = BIO_new_mem_buf(p.key_pem, -1);
    pkey = b ? PEM_read_bio_PrivateKey(b, NULL, no_passphrase, NULL) : NULL;
    if (!pkey || SSL_CTX_use_PrivateKey(t->ctx, pkey) != 1 ||
        SSL_CTX_check_private_key(t->ctx) != 1) {
        snprintf(err, errlen, "%s.key: %s is refused by OpenSSL: %s", what, key, ssl_reason());
        goto fail;
    }
    t->cert_id = cert_id;
    t->key_id = key_id;
    snprintf(t->info, sizeof(t->info), "%s", p.info);
    snprintf(t->warn, sizeof(t->warn), "%s", p.warn);
    snprintf(t->subject, sizeof(t->subject), "%s", p.subject);
    snprintf(t->until, sizeof(t->until), "%s", p.until);
    t->not_after_s = p.not_after_s;
    BIO_free(b);
    X509_free(leaf);
    EVP_PKEY_free(pkey);
    tls_pair_free(&p);
    ERR_clear_error();
    *out = t;
    return 0;
fail:
    BIO_free(b);
    X509_free(leaf);
    EVP_PKEY_free(pkey);
    tls_pair_free(&p);
    ota_tls_free(t);
    ERR_clear_error();
    return rc;
}

void ota_tls_free(struct ota_tls *t)
{
    if (!t)
        return;
    SSL_CTX_free(t->ctx); /* connections keep their own reference */
    free(t->cert);
    free(t->key);
    free(t);
}

const char *ota_tls_info(const struct ota_tls *t)
{
    return t ? t->info : "";
}

const char *ota_tls_warning(const struct ota_tls *t)
{
    return t ? t->warn : "";
}

const char *ota_tls_subject(const struct ota_tls *t)
{
    return t ? t->subject : "";
}

const char *ota_tls_until(const struct ota_tls *t)
{
    return t ? t->until : "";
}

int64_t ota_tls_not_after(const struct ota_tls *t)
{
    return t ? t->not_after_s : 0;
}

/* ---- connections ------------------------------------------------------------------------- */

struct ota_tls_conn *ota_tls_conn_new(struct ota_tls *t, int fd)
{
    struct ota_tls_conn *tc = calloc(1, sizeof(*tc));
    if (!tc)
        return NULL;
    ERR_clear_error();
    tc->ssl = SSL_new(t->ctx);
    if (!tc->ssl || SSL_set_fd(tc->ssl, fd) != 1) {
        SSL_free(tc->ssl);
        free(tc);
        ERR_clear_error();
        return NULL;
    }
    SSL_set_accept_state(tc->ssl);
    return tc;
}

void ota_tls_conn_free(struct ota_tls_conn *tc)
{
    if (!tc)
        return;
    SSL_free(tc->ssl);
    free(tc);
}

bool ota_tls_conn_ready(const struct ota_tls_conn *tc)
{
    return tc && tc->ready;
}

/* What a failed handshake means, in the operator's words. */
static void handshake_failure(int e, char *why, size_t len)
{
    unsigned long ec = ERR_peek_error();
    int reason = ec ? ERR_GET_REASON(ec) : 0;
    if ((e == SSL_ERROR_SYSCALL && !ec) || e == SSL_ERROR_ZERO_RETURN) {
        if (e == SSL_ERROR_SYSCALL && errno && errno != EPIPE)
            snprintf(why, len, "connection error during the handshake: %s", strerror(errno));
        else
            snprintf(why, len,
                     "the client closed the connection during the handshake (a client that does "
                     "not trust the certificate may just hang up)");
    } else if (reason == SSL_R_HTTP_REQUEST) {
        snprintf(why, len,
                 "a plain HTTP request on the TLS port: the client's URL must start with https://");
    } else if (reason == SSL_R_TLSV1_ALERT_UNKNOWN_CA) {
        snprintf(why, len,
                 "the client does not trust the certificate (alert: unknown CA): give it the CA "
                 "certificate that signed it (docs/OTA.md \"HTTPS\")");
    } else if (reason == SSL_R_SSLV3_ALERT_BAD_CERTIFICATE ||
               reason == SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN ||
               reason == SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED) {
        snprintf(why, len,
                 "the client refused the certificate (alert: %s): check the CA or fingerprint "
                 "it was given, the name in its URL against the certificate's names, and its "
                 "clock",
                 ERR_reason_error_string(ec));
    } else if (reason == SSL_R_WRONG_VERSION_NUMBER || reason == SSL_R_UNSUPPORTED_PROTOCOL ||
               reason == SSL_R_UNKNOWN_PROTOCOL) {
        snprintf(why, len, "not a TLS 1.2 or 1.3 client (%s)", ERR_reason_error_string(ec));
    } else {
        const char *r = ec ? ERR_reason_error_string(ec) : NULL;
        snprintf(why, len, "TLS handshake failed: %s", r ? r : "unknown error");
    }
}

static int want_of(int e, uint32_t *events)
{
    if (e == SSL_ERROR_WANT_READ) {
        *events = EPOLLIN;
        return 1;
    }
    if (e == SSL_ERROR_WANT_WRITE) {
        *events = EPOLLOUT;
        return 1;
    }
    return 0;
}

int ota_tls_handshake(struct ota_tls_conn *tc, uint32_t *events, char *why, size_t whylen)
{
    if (tc->ready)
        return 1;
    ERR_clear_error();
    errno = 0;
    int r = SSL_do_handshake(tc->ssl);
    if (r == 1) {
        tc->ready = true;
        return 1;
    }
    int e = SSL_get_error(tc->ssl, r);
    if (want_of(e, events))
        return 0;
    handshake_failure(e, why, whylen);
    ERR_clear_error();
    return -1;
}

ssize_t ota_tls_recv(struct ota_tls_conn *tc, void *buf, size_t len, uint32_t *events)
{
    ERR_clear_error();
    int r = SSL_read(tc->ssl, buf, len > INT_MAX ? INT_MAX : (int)len);
    if (r > 0)
        return r;
    int e = SSL_get_error(tc->ssl, r);
    if (want_of(e, events)) {
        errno = EAGAIN;
        return -1;
    }
    ERR_clear_error();
    if (e == SSL_ERROR_ZERO_RETURN) /* close_notify, or EOF (SSL_OP_IGNORE_UNEXPECTED_EOF) */
        return 0;
    errno = ECONNRESET;
    return -1;
}

ssize_t ota_tls_send(struct ota_tls_conn *tc, const void *buf, size_t len, uint32_t *events)
{
    ERR_clear_error();
    int r = SSL_write(tc->ssl, buf, len > INT_MAX ? INT_MAX : (int)len);
    if (r > 0)
        return r;
    int e = SSL_get_error(tc->ssl, r);
    if (want_of(e, events)) {
        errno = EAGAIN;
        return -1;
    }
    ERR_clear_error();
    errno = ECONNRESET;
    return -1;
}

void ota_tls_close_notify(struct ota_tls_conn *tc)
{
    if (!tc || !tc->ready || tc->notified)
        return;
    tc->notified = true;
    ERR_clear_error();
    (void)SSL_shutdown(tc->ssl);
    ERR_clear_error();
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void ota_tls_note_failure(struct ota_tls *t, const char *ip, const char *why)
{
    int64_t now = mono_ms();
    log_msg(LOG_LEVEL_DEBUG, "OTA endpoint: TLS handshake with %s failed: %s", ip, why);
    if (!t)
        return;
    t->failed++;
    if (t->warned_ms && now - t->warned_ms < WARN_EVERY_MS)
        return;
    log_msg(LOG_LEVEL_WARN,
            "OTA endpoint: TLS handshake with %s failed: %s (%llu failed handshake(s) since the "
            "last warning; at most one warning a minute)",
            ip, why, (unsigned long long)t->failed);
    t->failed = 0;
    t->warned_ms = now;
}
