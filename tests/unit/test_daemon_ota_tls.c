/*
 * test_daemon_ota_tls: daemon/ota_tls.c. Certificate/key pairs (every refusal names the
 * file and what to do; the info line and fingerprint; warnings), the reload check, and
 * the non-blocking server layer against a real OpenSSL client over a socket pair: a whole
 * request and answer, and the reasons a handshake fails (plain HTTP, a client that hangs
 * up, a client that does not trust the certificate).
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "log.h"
#include "ota_tls.h"

static char dir[] = "/tmp/test_ota_tls.XXXXXX";
static char sha1_of_cert[60];

static const char *file(const char *name)
{
    static char bufs[8][300];
    static int k;
    char *b = bufs[k++ % 8];
    snprintf(b, 300, "%s/%s", dir, name);
    return b;
}

/* An EC P-256 certificate for 127.0.0.1 signed by issuer (self-signed when NULL), valid
 * from now + from_days for days. */
static X509 *make_cert(EVP_PKEY *k, EVP_PKEY *issuer_key, const char *cn, long from_days, long days)
{
    X509 *x = X509_new();
    assert_non_null(x);
    ASN1_INTEGER_set(X509_get_serialNumber(x), (long)time(NULL) & 0xffff);
    X509_gmtime_adj(X509_getm_notBefore(x), from_days * 86400);
    X509_gmtime_adj(X509_getm_notAfter(x), (from_days + days) * 86400);
    X509_set_pubkey(x, k);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, n);
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
    X509_EXTENSION *ext =
        X509V3_EXT_conf_nid(NULL, &ctx, NID_subject_alt_name, "IP:127.0.0.1,DNS:127.0.0.1");
    assert_non_null(ext);
    X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    assert_true(X509_sign(x, issuer_key ? issuer_key : k, EVP_sha256()) > 0);
    return x;
}

static void put_cert(const char *name, X509 *x, const char *mode)
{
    FILE *f = fopen(file(name), mode);
    assert_non_null(f);
    assert_int_equal(PEM_write_X509(f, x), 1);
    fclose(f);
}

static void put_key(const char *name, EVP_PKEY *k, const char *pass)
{
    FILE *f = fopen(file(name), "w");
    assert_non_null(f);
    assert_int_equal(PEM_write_PrivateKey(f, k, pass ? EVP_aes_256_cbc() : NULL,
                                          (unsigned char *)pass, pass ? (int)strlen(pass) : 0, NULL,
                                          NULL),
                     1);
    fclose(f);
    chmod(file(name), 0600);
}

static void put_text(const char *name, const char *text)
{
    FILE *f = fopen(file(name), "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static int setup(void **state)
{
    (void)state;
    log_init(LOG_MODE_AUTO, LOG_LEVEL_ERROR);
    assert_non_null(mkdtemp(dir));
    EVP_PKEY *k = EVP_EC_gen("P-256"), *k2 = EVP_EC_gen("P-256");
    assert_non_null(k);
    assert_non_null(k2);
    X509 *x = make_cert(k, NULL, "127.0.0.1", 0, 2);
    X509 *old = make_cert(k, NULL, "127.0.0.1", -10, 2);
    X509 *other = make_cert(k2, NULL, "someone else", 0, 2);
    put_cert("cert.pem", x, "w");
    put_cert("chain.pem", x, "w");
    put_cert("chain.pem", other, "a"); /* a leaf, then an "intermediate" */
    put_cert("expired.pem", old, "w");
    put_cert("other.pem", other, "w");
    put_key("key.pem", k, NULL);
    put_key("other.key", k2, NULL);
    put_key("encrypted.key", k, "secret");
    put_text("garbage.pem", "this is not PEM\n\x01\x02\x03");
    put_text("empty.pem", "");
    FILE *f = fopen(file("broken-chain.pem"), "w");
    assert_non_null(f);
    PEM_write_X509(f, x);
    fputs("-----BEGIN CERTIFICATE-----\nMIIBbroken\n-----END CERTIFICATE-----\n", f);
    fclose(f);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    assert_int_equal(X509_digest(x, EVP_sha1(), md, &n), 1);
    for (unsigned i = 0; i < n; i++)
        snprintf(sha1_of_cert + 3 * i - (i ? 1 : 0), 4, "%s%02X", i ? ":" : "", md[i]);
    X509_free(x);
    X509_free(old);
    X509_free(other);
    EVP_PKEY_free(k);
    EVP_PKEY_free(k2);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* ---- pairs ----------------------------------------------------------------------------- */

/* tmpl with "{cert}" and "{key}" replaced by the paths. */
static void expand(char *out, size_t len, const char *tmpl, const char *cert, const char *key)
{
    size_t o = 0;
    for (const char *t = tmpl; *t && o + 1 < len;) {
        const char *v = strncmp(t, "{cert}", 6) == 0  ? cert
                        : strncmp(t, "{key}", 5) == 0 ? key
                                                      : NULL;
        if (v) {
            o += (size_t)snprintf(out + o, len - o, "%s", v);
            t += v == cert ? 6 : 5;
        } else {
            out[o++] = *t++;
        }
    }
    out[o < len ? o : len - 1] = '\0';
}

static void test_refusals_name_the_file(void **state)
{
    (void)state;
    struct {
        const char *cert, *key;
        int rc;
        const char *want; /* {cert}: the cert's path, {key}: the key's */
    } cases[] = {
        {"missing.pem", "key.pem", -ENOENT,
         "ota.tls.cert: cannot read {cert}: No such file or directory (the PEM certificate"},
        {"cert.pem", "missing.key", -ENOENT,
         "ota.tls.key: cannot read {key}: No such file or directory (the certificate's private"},
        {".", "key.pem", -EISDIR, "ota.tls.cert: cannot read {cert}: Is a directory"},
        {"garbage.pem", "key.pem", -EINVAL, "ota.tls.cert: {cert} holds no PEM certificate: give"},
        {"empty.pem", "key.pem", -EINVAL, "ota.tls.cert: {cert} holds no PEM certificate: give"},
        {"key.pem", "cert.pem", -EINVAL,
         "ota.tls.cert: {cert} holds no PEM certificate (it holds a private key: are cert and key "
         "swapped?)"},
        {"broken-chain.pem", "key.pem", -EINVAL,
         "ota.tls.cert: {cert}: a certificate after the first one is damaged"},
        {"cert.pem", "garbage.pem", -EINVAL, "ota.tls.key: {key} holds no PEM private key: give"},
        {"cert.pem", "other.pem", -EINVAL,
         "ota.tls.key: {key} holds no PEM private key (it holds a certificate: are cert and key "
         "swapped?)"},
        {"cert.pem", "encrypted.key", -EINVAL,
         "ota.tls.key: {key} is encrypted (it has a passphrase, and nobody is there to type it)"},
        {"cert.pem", "other.key", -EINVAL,
         "ota.tls.key: {key} is not the private key of the certificate in {cert} (a key of another "
         "certificate?)"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char cert[300], key[300], want[900], err[700] = "";
        snprintf(cert, sizeof(cert), "%s", file(cases[i].cert));
        snprintf(key, sizeof(key), "%s", file(cases[i].key));
        expand(want, sizeof(want), cases[i].want, cert, key);
        struct tls_pair p;
        int rc = tls_load_pair("ota.tls", cert, key, &p, err, sizeof(err));
        if (rc != cases[i].rc || strncmp(err, want, strlen(want)) != 0 || p.cert_pem || p.key_pem) {
            print_error("case %zu: rc %d (want %d)\n  got:  %s\n  want: %s...\n", i, rc,
                        cases[i].rc, err, want);
            fail();
        }
        struct ota_tls *t = (struct ota_tls *)1;
        assert_int_equal(ota_tls_new("ota.tls", cert, key, &t, err, sizeof(err)), cases[i].rc);
        assert_null(t);
    }
}

static void test_pair_info_and_warnings(void **state)
{
    (void)state;
    char err[700] = "", want[200];
    struct tls_pair p;
    assert_int_equal(
        tls_load_pair("api.tls", file("chain.pem"), file("key.pem"), &p, err, sizeof(err)), 0);
    assert_non_null(strstr(p.cert_pem, "-----BEGIN CERTIFICATE-----"));
    assert_non_null(strstr(p.key_pem, "PRIVATE KEY-----"));
    assert_string_equal(p.sha1, sha1_of_cert);
    snprintf(want, sizeof(want), "SHA-1 fingerprint %s", sha1_of_cert);
    assert_non_null(strstr(p.info, want));
    assert_non_null(strstr(p.info, "certificate /CN=127.0.0.1, names IP:127.0.0.1 DNS:127.0.0.1, "
                                   "valid until "));
    assert_string_equal(p.warn, "");
    tls_pair_free(&p);

    chmod(file("key.pem"), 0644);
    assert_int_equal(
        tls_load_pair("api.tls", file("cert.pem"), file("key.pem"), &p, err, sizeof(err)), 0);
    snprintf(want, sizeof(want), "api.tls.key: %s can be read by every user of this machine",
             file("key.pem"));
    assert_non_null(strstr(p.warn, want));
    tls_pair_free(&p);
    chmod(file("key.pem"), 0600);

    assert_int_equal(
        tls_load_pair("api.tls", file("expired.pem"), file("key.pem"), &p, err, sizeof(err)), 0);
    assert_non_null(strstr(p.warn, "the certificate expired on "));
    tls_pair_free(&p);
}

static void test_reload_sees_changes(void **state)
{
    (void)state;
    char err[700];
    struct ota_tls *t = NULL;
    assert_int_equal(
        ota_tls_new("ota.tls", file("cert.pem"), file("key.pem"), &t, err, sizeof(err)), 0);
    assert_non_null(strstr(ota_tls_info(t), sha1_of_cert));
    assert_true(ota_tls_unchanged(t, file("cert.pem"), file("key.pem")));
    assert_false(ota_tls_unchanged(t, file("chain.pem"), file("key.pem")));
    assert_false(ota_tls_unchanged(NULL, file("cert.pem"), file("key.pem")));
    /* the same bytes written again (a renewal in place): a new modification time */
    struct stat st;
    assert_int_equal(stat(file("cert.pem"), &st), 0);
    struct timespec ts[2] = {st.st_atim, st.st_mtim};
    ts[1].tv_sec -= 5;
    assert_int_equal(utimensat(AT_FDCWD, file("cert.pem"), ts, 0), 0);
    assert_false(ota_tls_unchanged(t, file("cert.pem"), file("key.pem")));
    ota_tls_free(t);
}

/* ---- connections ----------------------------------------------------------------------- */

struct pair {
    int sv[2];
    struct ota_tls *server;
    struct ota_tls_conn *c;
    SSL_CTX *cctx;
    SSL *cl;
};

/* A server connection and an OpenSSL client (TLS max_version) over a socket pair; ca:
 * the client verifies against it, NULL none. */
static void open_pair(struct pair *p, int max_version, const char *ca)
{
    char err[700];
    memset(p, 0, sizeof(*p));
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, p->sv), 0);
    assert_int_equal(
        ota_tls_new("ota.tls", file("cert.pem"), file("key.pem"), &p->server, err, sizeof(err)), 0);
    p->c = ota_tls_conn_new(p->server, p->sv[0]);
    assert_non_null(p->c);
    p->cctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_max_proto_version(p->cctx, max_version);
    if (ca) {
        assert_int_equal(SSL_CTX_load_verify_locations(p->cctx, ca, NULL), 1);
        SSL_CTX_set_verify(p->cctx, SSL_VERIFY_PEER, NULL);
    }
    p->cl = SSL_new(p->cctx);
    SSL_set_fd(p->cl, p->sv[1]);
    SSL_set_connect_state(p->cl);
}

static void close_pair(struct pair *p)
{
    SSL_free(p->cl);
    SSL_CTX_free(p->cctx);
    ota_tls_conn_free(p->c);
    ota_tls_free(p->server); /* after the connection: it held its own reference anyway */
    close(p->sv[0]);
    close(p->sv[1]);
    ERR_clear_error();
}

/* Steps both sides; the server's result (1 done, -1 failed with why). */
static int handshake(struct pair *p, char *why, size_t len)
{
    int r = 0;
    for (int i = 0; i < 50 && r == 0; i++) {
        uint32_t ev = 0;
        r = ota_tls_handshake(p->c, &ev, why, len);
        if (r == 0)
            assert_true(ev == EPOLLIN || ev == EPOLLOUT);
        if (SSL_do_handshake(p->cl) != 1)
            ERR_clear_error();
    }
    return r;
}

static void exchange(int max_version)
{
    struct pair p;
    char why[300] = "";
    open_pair(&p, max_version, file("cert.pem"));
    assert_false(ota_tls_conn_ready(p.c));
    assert_int_equal(handshake(&p, why, sizeof(why)), 1);
    assert_true(ota_tls_conn_ready(p.c));
    while (SSL_do_handshake(p.cl) != 1) /* the client's last step */
        ERR_clear_error();
    uint32_t ev = 0;
    char buf[256];
    /* nothing sent yet: wait for EPOLLIN */
    assert_int_equal(ota_tls_recv(p.c, buf, sizeof(buf), &ev), -1);
    assert_int_equal(errno, EAGAIN);
    assert_int_equal(ev, EPOLLIN);
    static const char req[] = "GET /ota/update HTTP/1.0\r\n\r\n";
    assert_int_equal(SSL_write(p.cl, req, sizeof(req) - 1), (int)sizeof(req) - 1);
    ssize_t n = ota_tls_recv(p.c, buf, sizeof(buf), &ev);
    assert_int_equal(n, (ssize_t)sizeof(req) - 1);
    assert_memory_equal(buf, req, sizeof(req) - 1);
    static const char ans[] = "HTTP/1.0 304 Not Modified\r\n\r\n";
    assert_int_equal(ota_tls_send(p.c, ans, sizeof(ans) - 1, &ev), (ssize_t)sizeof(ans) - 1);
    ota_tls_close_notify(p.c);
    ota_tls_close_notify(p.c); /* once only */
    n = SSL_read(p.cl, buf, sizeof(buf));
    assert_int_equal(n, (int)sizeof(ans) - 1);
    assert_memory_equal(buf, ans, sizeof(ans) - 1);
    assert_true(SSL_read(p.cl, buf, sizeof(buf)) <= 0);
    assert_int_equal(SSL_get_error(p.cl, 0), SSL_ERROR_ZERO_RETURN); /* close_notify came */
    /* the client closes without close_notify: the end of the stream, not an error */
    shutdown(p.sv[1], SHUT_WR);
    assert_int_equal(ota_tls_recv(p.c, buf, sizeof(buf), &ev), 0);
    close_pair(&p);
}

static void test_request_and_answer_tls12(void **state)
{
    (void)state;
    exchange(TLS1_2_VERSION);
}

static void test_request_and_answer_tls13(void **state)
{
    (void)state;
    exchange(TLS1_3_VERSION);
}

static void test_handshake_failures_say_why(void **state)
{
    (void)state;
    struct pair p;
    char why[300] = "";
    uint32_t ev = 0;

    /* an http:// URL pointed at the TLS port */
    open_pair(&p, TLS1_3_VERSION, NULL);
    static const char get[] = "GET /ota/update HTTP/1.0\r\nHost: x\r\n\r\n";
    assert_int_equal(write(p.sv[1], get, sizeof(get) - 1), (ssize_t)sizeof(get) - 1);
    assert_int_equal(ota_tls_handshake(p.c, &ev, why, sizeof(why)), -1);
    assert_string_equal(
        why, "a plain HTTP request on the TLS port: the client's URL must start with https://");
    close_pair(&p);

    /* a client that hangs up before a byte */
    open_pair(&p, TLS1_3_VERSION, NULL);
    shutdown(p.sv[1], SHUT_WR);
    assert_int_equal(ota_tls_handshake(p.c, &ev, why, sizeof(why)), -1);
    assert_non_null(strstr(why, "the client closed the connection during the handshake"));
    close_pair(&p);

    /* a client that trusts another CA (TLS 1.2 and 1.3) */
    for (int v = 0; v < 2; v++) {
        open_pair(&p, v ? TLS1_3_VERSION : TLS1_2_VERSION, file("other.pem"));
        assert_int_equal(handshake(&p, why, sizeof(why)), -1);
        assert_non_null(strstr(why, "the client does not trust the certificate (alert: unknown "
                                    "CA): give it the CA certificate"));
        close_pair(&p);
    }

    /* garbage */
    open_pair(&p, TLS1_3_VERSION, NULL);
    static const char junk[] = "\x16\x03\x01\xff\xff\x01\x02\x03\x04\x05\x06\x07";
    assert_int_equal(write(p.sv[1], junk, sizeof(junk) - 1), (ssize_t)sizeof(junk) - 1);
    shutdown(p.sv[1], SHUT_WR);
    int r = 0;
    for (int i = 0; i < 5 && r == 0; i++)
        r = ota_tls_handshake(p.c, &ev, why, sizeof(why));
    assert_int_equal(r, -1);
    assert_true(why[0] != '\0');
    close_pair(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refusals_name_the_file),
        cmocka_unit_test(test_pair_info_and_warnings),
        cmocka_unit_test(test_reload_sees_changes),
        cmocka_unit_test(test_request_and_answer_tls12),
        cmocka_unit_test(test_request_and_answer_tls13),
        cmocka_unit_test(test_handshake_failures_say_why),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
