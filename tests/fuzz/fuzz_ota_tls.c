/*
 * fuzz_ota_tls: the OTA endpoint's TLS layer (daemon/ota_tls.c) as a client's bytes
 * reach it, over a real socket pair, the server side driven as ota.c drives it: the
 * handshake step by step (non-blocking, told which direction to wait for), then reads
 * until the end, one answer written, close_notify.
 *
 * Input: the first byte chooses the client. Even: the rest is what a client sent (then it
 * half-closes); whatever the server writes is read and dropped. Odd: a real TLS client
 * (OpenSSL, TLS 1.2 when the second byte is even, else 1.3) completes the handshake and
 * sends the rest as application data (the request), then closes with close_notify.
 *
 * The server's certificate is an EC P-256 self-signed one made at start in a temporary
 * directory (ota_tls_new reads files, as the daemon does).
 *
 * Checks: every step ends (a bounded number of steps), a failed handshake has a reason
 * line, nothing leaks (ASan/LSan).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "log.h"
#include "ota_tls.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct ota_tls *server;

static void write_pem(const char *path, EVP_PKEY *k, X509 *x)
{
    FILE *f = fopen(path, "w");
    if (!f)
        abort();
    if (k ? PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL) != 1 : PEM_write_X509(f, x) != 1)
        abort();
    fclose(f);
}

static void setup(void)
{
    log_init(LOG_MODE_AUTO, LOG_LEVEL_ERROR);
    char dir[] = "/tmp/fuzz_ota_tls.XXXXXX";
    if (!mkdtemp(dir))
        abort();
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    if (!k || !x)
        abort();
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, k);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"fuzz", -1, -1, 0);
    X509_set_issuer_name(x, n);
    if (X509_sign(x, k, EVP_sha256()) <= 0)
        abort();
    char cert[64], key[64], err[600];
    snprintf(cert, sizeof(cert), "%s/cert.pem", dir);
    snprintf(key, sizeof(key), "%s/key.pem", dir);
    write_pem(cert, NULL, x);
    write_pem(key, k, NULL);
    X509_free(x);
    EVP_PKEY_free(k);
    if (ota_tls_new("ota.tls", cert, key, &server, err, sizeof(err)) < 0) {
        fprintf(stderr, "fuzz_ota_tls: %s\n", err);
        abort();
    }
    unlink(cert);
    unlink(key);
    rmdir(dir);
}

/* Reads and drops what the server wrote. */
static void drain(int fd)
{
    char buf[4096];
    while (read(fd, buf, sizeof(buf)) > 0)
        ;
}

/* A real client's next handshake step: 1 done, 0 going on, -1 failed. */
static int client_step(SSL *cl)
{
    int r = SSL_do_handshake(cl);
    if (r == 1)
        return 1;
    int e = SSL_get_error(cl, r);
    ERR_clear_error();
    return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ? 0 : -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!server)
        setup();
    if (size < 1 || size > 60000)
        return 0; /* stays within the socket buffer: the client writes all of it at once */
    bool real = data[0] & 1;
    int tls13 = size > 1 && (data[1] & 1);
    data += 1;
    size -= 1;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0)
        return 0;
    int bufsz = 256 * 1024;
    setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &bufsz, sizeof(bufsz));
    SSL_CTX *cctx = NULL;
    SSL *cl = NULL;
    if (real) {
        cctx = SSL_CTX_new(TLS_client_method());
        if (!cctx)
            abort();
        SSL_CTX_set_max_proto_version(cctx, tls13 ? TLS1_3_VERSION : TLS1_2_VERSION);
        SSL_CTX_set_verify(cctx, SSL_VERIFY_NONE, NULL);
        cl = SSL_new(cctx);
        SSL_set_fd(cl, sv[1]);
        SSL_set_connect_state(cl);
    } else {
        if (size && write(sv[1], data, size) != (ssize_t)size) {
            close(sv[0]);
            close(sv[1]);
            return 0;
        }
        shutdown(sv[1], SHUT_WR);
    }
    struct ota_tls_conn *c = ota_tls_conn_new(server, sv[0]);
    if (!c)
        abort();
    char why[300] = "";
    uint32_t ev = 0;
    int r = 0, cr = 0;
    for (int step = 0; step < 64 && (r = ota_tls_handshake(c, &ev, why, sizeof(why))) == 0;
         step++) {
        if (ev != EPOLLIN && ev != EPOLLOUT)
            abort(); /* it must say what it waits for */
        if (!real)
            drain(sv[1]);
        else if (cr == 0 && (cr = client_step(cl)) < 0)
            shutdown(sv[1], SHUT_WR);
    }
    if (real && r == 1) {
        while (cr == 0 && (cr = client_step(cl)) == 0)
            ;
        if (cr == 1 && size)
            (void)SSL_write(cl, data, (int)size);
        (void)SSL_shutdown(cl);
        shutdown(sv[1], SHUT_WR);
    }
    if (r < 0 && !why[0])
        abort(); /* a failure without its reason */
    if (r < 0)
        ota_tls_note_failure(server, "fuzz", why);
    if (r == 1) {
        char buf[2048];
        for (int step = 0; step < 64; step++) {
            ssize_t n = ota_tls_recv(c, buf, sizeof(buf), &ev);
            if (n == 0 || (n < 0 && errno != EAGAIN))
                break;
            if (n < 0)
                drain(sv[1]);
        }
        static const char answer[] = "HTTP/1.0 304 Not Modified\r\nConnection: close\r\n\r\n";
        (void)ota_tls_send(c, answer, sizeof(answer) - 1, &ev);
        ota_tls_close_notify(c);
    }
    if (real) {
        char buf[2048];
        while (SSL_read(cl, buf, sizeof(buf)) > 0)
            ;
        SSL_free(cl);
        SSL_CTX_free(cctx);
        ERR_clear_error();
    }
    drain(sv[1]);
    ota_tls_conn_free(c);
    close(sv[0]);
    close(sv[1]);
    return 0;
}
