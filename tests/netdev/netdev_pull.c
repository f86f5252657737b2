/*
 * esp_netdev: the HTTP pull check-in (PROTOCOL-OTA.md §2): the exact request of the chip's
 * updater (over TLS 1.2 for an https:// URL, with the cores' certificate checks), a 200
 * answer's image applied, the new version reported at the next check-in.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>
#include <netinet/tcp.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "netdev.h"

bool nd_want_fs(const struct netdev *d)
{
    char path[PATH_MAX + 16];
    snprintf(path, sizeof(path), "%s/want-fs", d->dir);
    return access(path, F_OK) == 0;
}

/*
 * The body of a pull (200): HTTPUpdate / ESP8266httpUpdate hand the socket to
 * Update.writeStream(), which fills the Updater's 4 KiB sector buffer and then erases and
 * writes the sector while reading nothing (--erase-ms each, as in the push), behind the same
 * lwIP receive window (--rcvbuf, set on the check-in socket before connect). got: bytes
 * already in img (the peeked header). 0, or -1 when the stream ends or stays quiet for
 * timeout_ms.
 */
static int pull_body(struct netdev *d, int fd, uint8_t *img, size_t len, size_t got, int timeout_ms)
{
    size_t sector = got;
    while (got < len) {
        size_t want = 4096 - sector;
        if (want > len - got)
            want = len - got;
        if (nd_recv_exact(fd, img + got, want, timeout_ms) < 0)
            return -1;
        got += want;
        sector += want;
        nd_sector_done(d, &sector, got == len);
    }
    return 0;
}

/*
 * HTTPS check-in (an https:// URL). ESP32 HTTPUpdate over a WiFiClientSecure given
 * setCACert(), and ESP8266httpUpdate over a BearSSL::WiFiClientSecure given
 * setTrustAnchors(), verify the server's chain against that CA and the URL's host against
 * the certificate's names (--ca FILE). Mbed TLS 2.x (arduino-esp32 2.x, ESP-IDF 4.x) does
 * the name check of x509_crt_verify_name(): with a subjectAltName extension, the host
 * against every entry's bytes (case-insensitive, "*." one label), the CN never; an
 * iPAddress entry holds 4 raw bytes, so a URL with an IP address matches only a DNS entry
 * spelling it (Mbed-TLS issue #5082). --tls-ip-san: the host matches iPAddress entries
 * instead, as in Mbed TLS 3.5+ (arduino-esp32 3.x). --fingerprint HEX: ESP8266
 * setFingerprint(): only the SHA-1 of the server's certificate is compared (no chain, no
 * name, no dates). The cores speak TLS 1.2 (--tls-max 1.3 allows 1.3) and send the host as
 * SNI, an IP address too. A failed handshake is the updater's "connection refused" (-1).
 */
static bool name_matches(const char *host, const unsigned char *name, size_t nlen)
{
    size_t hl = strlen(host);
    if (nlen == hl && strncasecmp(host, (const char *)name, hl) == 0)
        return true;
    if (nlen > 2 && name[0] == '*' && name[1] == '.') {
        const char *dot = strchr(host, '.');
        return dot && strlen(dot) == nlen - 1 &&
               strncasecmp(dot, (const char *)name + 1, nlen - 1) == 0;
    }
    return false;
}

static bool mbedtls2_name_ok(X509 *x, const char *host)
{
    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    bool ok = false;
    if (gens) {
        for (int i = 0; i < sk_GENERAL_NAME_num(gens) && !ok; i++) {
            const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
            const ASN1_STRING *s = g->type == GEN_DNS     ? g->d.dNSName
                                   : g->type == GEN_IPADD ? g->d.iPAddress
                                                          : NULL;
            ok = s && name_matches(host, ASN1_STRING_get0_data(s), (size_t)ASN1_STRING_length(s));
        }
        GENERAL_NAMES_free(gens);
        return ok;
    }
    X509_NAME *subj = X509_get_subject_name(x);
    for (int i = -1; (i = X509_NAME_get_index_by_NID(subj, NID_commonName, i)) >= 0 && !ok;) {
        const ASN1_STRING *cn = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, i));
        ok = name_matches(host, ASN1_STRING_get0_data(cn), (size_t)ASN1_STRING_length(cn));
    }
    return ok;
}

static int checkin_verify_cb(int ok, X509_STORE_CTX *xs)
{
    SSL *ssl = X509_STORE_CTX_get_ex_data(xs, SSL_get_ex_data_X509_STORE_CTX_idx());
    const struct netdev *d = SSL_get_app_data(ssl);
    int depth = X509_STORE_CTX_get_error_depth(xs);
    X509 *x = X509_STORE_CTX_get_current_cert(xs);
    if (d->pin) { /* setFingerprint: the leaf's SHA-1, nothing else */
        if (depth > 0)
            return 1;
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int n = 0;
        if (X509_digest(x, EVP_sha1(), md, &n) != 1 || n != 20 || memcmp(md, d->pin_sha1, 20)) {
            X509_STORE_CTX_set_error(xs, X509_V_ERR_CERT_REJECTED);
            return 0;
        }
        X509_STORE_CTX_set_error(xs, X509_V_OK);
        return 1;
    }
    if (!ok || depth > 0 || d->tls_ip_san)
        return ok;
    if (!mbedtls2_name_ok(x, d->checkin_host)) {
        X509_STORE_CTX_set_error(xs, X509_V_ERR_HOSTNAME_MISMATCH);
        return 0;
    }
    return 1;
}

/* The TLS session over the connected check-in socket, or -1 (logged). */
static int checkin_tls_open(struct netdev *d, int fd, const char *tag)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx)
        return -1;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_max_proto_version(ctx, d->tls13 ? TLS1_3_VERSION : TLS1_2_VERSION);
    if (!d->pin && SSL_CTX_load_verify_locations(ctx, d->ca_file, NULL) != 1) {
        nd_logf(d, "%s: cannot load the CA certificate %s", tag, d->ca_file);
        SSL_CTX_free(ctx);
        return -1;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, checkin_verify_cb);
    SSL *ssl = SSL_new(ctx);
    SSL_CTX_free(ctx); /* the session holds its own reference */
    if (!ssl)
        return -1;
    SSL_set_app_data(ssl, d);
    SSL_set_fd(ssl, fd);
    SSL_set_tlsext_host_name(ssl, d->checkin_host);
    struct in_addr ia;
    if (!d->pin && d->tls_ip_san) {
        if (inet_pton(AF_INET, d->checkin_host, &ia) == 1)
            X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), d->checkin_host);
        else
            X509_VERIFY_PARAM_set1_host(SSL_get0_param(ssl), d->checkin_host, 0);
    }
    struct timeval tv = {.tv_sec = 8}; /* HTTPClient's default timeout, for the blocking reads */
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    ERR_clear_error();
    if (SSL_connect(ssl) != 1) {
        long vr = SSL_get_verify_result(ssl);
        unsigned long e = ERR_peek_error();
        const char *why = vr != X509_V_OK ? X509_verify_cert_error_string(vr)
                          : e             ? ERR_reason_error_string(e)
                                          : "the server closed the connection";
        nd_logf(d, "%s: TLS handshake with %s:%d failed: %s (HTTP error -1: connection refused)",
                tag, d->checkin_host, d->checkin_port, why ? why : "?");
        SSL_free(ssl);
        ERR_clear_error();
        return -1;
    }
    nd_logf(d, "%s: TLS %s %s, server certificate %s", tag, SSL_get_version(ssl),
            SSL_get_cipher_name(ssl),
            d->pin ? "matches the pinned SHA-1 fingerprint" : "verified against the CA");
    nd_tls_ssl = ssl;
    nd_tls_fd = fd;
    return 0;
}

/* The end of the session: close_notify sent (not waited for); the caller closes fd. */
static void checkin_tls_close(void)
{
    if (!nd_tls_ssl)
        return;
    ERR_clear_error();
    (void)SSL_shutdown(nd_tls_ssl);
    SSL_free(nd_tls_ssl);
    ERR_clear_error();
    nd_tls_ssl = NULL;
    nd_tls_fd = -1;
}

/* One check-in; fs: x-…-mode: spiffs (the filesystem image) instead of sketch. */
void nd_checkin(struct netdev *d, bool fs)
{
    const char *mode = fs ? "spiffs" : "sketch";
    const char *tag = fs ? "checkin-fs" : "checkin";
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((uint16_t)d->checkin_port)};
    inet_pton(AF_INET, d->checkin_host, &to.sin_addr);
    struct sockaddr_in me = {.sin_family = AF_INET};
    inet_pton(AF_INET, d->bind_ip, &me.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && d->rcvbuf > 0) { /* the lwIP window, announced in the SYN */
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &d->rcvbuf, sizeof(d->rcvbuf));
        setsockopt(fd, IPPROTO_TCP, TCP_WINDOW_CLAMP, &d->rcvbuf, sizeof(d->rcvbuf));
    }
    if (fd < 0 || bind(fd, (struct sockaddr *)&me, sizeof(me)) != 0 ||
        connect(fd, (struct sockaddr *)&to, sizeof(to)) != 0) {
        nd_logf(d, "%s: connect to %s:%d failed: %s", tag, d->checkin_host, d->checkin_port,
                strerror(errno));
        if (fd >= 0)
            close(fd);
        return;
    }
    if (d->checkin_tls && checkin_tls_open(d, fd, tag) < 0) {
        close(fd);
        return;
    }
    char host[96];
    if (d->checkin_port == (d->checkin_tls ? 443 : 80)) /* HTTPClient omits a default port */
        snprintf(host, sizeof(host), "%s", d->checkin_host);
    else
        snprintf(host, sizeof(host), "%s:%d", d->checkin_host, d->checkin_port);
    char ap[18];
    snprintf(ap, sizeof(ap), "%s", d->mac);
    ap[16] = ap[16] == 'F' ? '0' : (char)(ap[16] + 1); /* AP MAC differs from STA MAC */
    /* HTTPClient's own headers first: Host, User-Agent, then Authorization before Connection
     * (ESP8266HTTPClient) or after it (ESP32 HTTPClient); then the updater's headers in the
     * order it adds them. x-…-version only when the sketch passed a non-empty current
     * version (--no-current-version: it passed none). */
    bool esp8266 = d->chip == CHIP_ESP8266;
    const char *x = esp8266 ? "x-ESP8266-" : "x-ESP32-";
    char auth[sizeof(d->checkin_auth) + 20] = "";
    if (d->checkin_auth[0])
        snprintf(auth, sizeof(auth), "Authorization: %s\r\n", d->checkin_auth);
    char req[2048];
    int n = snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\nHost: %s\r\nUser-Agent: %s\r\n%s%s%s",
                     d->checkin_path, host, esp8266 ? "ESP8266-http-Update" : "ESP32-http-Update",
                     esp8266 ? auth : "", "Connection: close\r\n", esp8266 ? "" : auth);
    if (esp8266) {
        unsigned chip_id = (unsigned)strtoul(d->mac + 9, NULL, 16) & 0xFFFFFF;
        n += snprintf(req + n, sizeof(req) - (size_t)n, "x-ESP8266-Chip-ID: %u\r\n", chip_id);
    } else {
        n += snprintf(req + n, sizeof(req) - (size_t)n, "Cache-Control: no-cache\r\n");
    }
    n += snprintf(req + n, sizeof(req) - (size_t)n,
                  "%sSTA-MAC: %s\r\n%sAP-MAC: %s\r\n%sfree-space: %" PRIu64 "\r\n"
                  "%ssketch-size: %" PRIu64 "\r\n%ssketch-md5: %s\r\n",
                  x, d->mac, x, ap, x, d->free_space, x, d->sketch_size, x, d->sketch_md5);
    if (!esp8266) {
        /* ESP32: the IDF partition hash, UPPERCASE, not the file's SHA-256 (issue #3306): a
         * stand-in derived from the running sketch, with the real header's form. */
        char sha[65];
        nd_digest_hex(EVP_sha256(), d->sketch_md5, strlen(d->sketch_md5), sha);
        for (char *p = sha; *p; p++)
            *p = (char)toupper((unsigned char)*p);
        n += snprintf(req + n, sizeof(req) - (size_t)n, "x-ESP32-sketch-sha256: %s\r\n", sha);
    }
    n += snprintf(req + n, sizeof(req) - (size_t)n,
                  "%schip-size: %" PRIu64 "\r\n%ssdk-version: %s\r\n%smode: %s\r\n", x,
                  d->chip_size, x, esp8266 ? "2.2.2-dev(38a443e)" : "v4.4.7-dirty", x, mode);
    if (d->version[0] && !d->no_current_version)
        n += snprintf(req + n, sizeof(req) - (size_t)n, "%sversion: %s\r\n", x, d->version);
    /* ESP8266HTTPClient adds Content-Length: 0 to the GET, after the updater's headers */
    n += snprintf(req + n, sizeof(req) - (size_t)n, "%s\r\n",
                  esp8266 ? "Content-Length: 0\r\n" : "");
    char head[4096];
    int status = 0;
    if (nd_send_all(fd, req, (size_t)n) < 0 || nd_recv_head(fd, head, sizeof(head), 8000) < 0 ||
        sscanf(head, "HTTP/1.%*d %d", &status) != 1) {
        nd_logf(d, "%s: no answer", tag);
        checkin_tls_close();
        close(fd);
        return;
    }
    nd_logf(d, "%s: status=%d version=%s", tag, status, d->version);
    if (status >= 400) {
        /* the station's one-line reason (text body) */
        char v[64], text[256] = "";
        uint64_t tl =
            nd_header_value(head, "Content-Length", v, sizeof(v)) ? strtoull(v, NULL, 10) : 0;
        if (tl > 0 && tl < sizeof(text) && nd_recv_exact(fd, (uint8_t *)text, tl, 2000) == 0) {
            text[tl] = '\0';
            text[strcspn(text, "\r\n")] = '\0';
            nd_logf(d, "%s: refused: %s", tag, text);
        }
    }
    if (status == 200) {
        char v[128], want_md5[64] = "";
        uint64_t clen = 0;
        bool has_len = nd_header_value(head, "Content-Length", v, sizeof(v)) != NULL;
        if (has_len)
            clen = strtoull(v, NULL, 10);
        if (nd_header_value(head, "x-MD5", v, sizeof(v)))
            snprintf(want_md5, sizeof(want_md5), "%.40s", v);
        if (nd_header_value(head, "Transfer-Encoding", v, sizeof(v)) ||
            nd_header_value(head, "Content-Encoding", v, sizeof(v))) {
            nd_logf(d, "%s: HTTP_UE_SERVER_FAULTY_... encoded body refused", tag);
        } else if (!has_len || clen == 0) {
            nd_logf(d, "%s: -101 Server Did Not Report Size", tag);
        } else if (fs ? d->fs_size && clen > d->fs_size : clen > d->free_space) {
            nd_logf(d, "%s: -100 Not Enough space", tag);
        } else if (want_md5[0] && strlen(want_md5) != 32) {
            nd_logf(d, "%s: -105 wrong x-MD5 length", tag);
        } else {
            uint8_t *img = malloc(clen);
            int64_t t0 = nd_now_ms(); /* the head is in: the body starts */
            /* Both updaters peek the first 4 bytes before Update.begin (sketch mode): not 0xE9
             * (ESP8266 also 0x1F, gzip) is -106; on an ESP8266 an 0xE9 header whose flash-size
             * nibble (byte 3, high 4 bits) names more flash than the chip has is -107. Either
             * ends the update there: http.end() closes the socket with the body unread. */
            const char *bad = NULL;
            if (!img || clen < 4 || nd_recv_exact(fd, img, 4, 8000) < 0)
                bad = "body incomplete";
            else if (!fs && img[0] != 0xE9 && !(d->chip == CHIP_ESP8266 && img[0] == 0x1F))
                bad = "-106 Verify Bin Header Failed";
            else if (!fs && d->chip == CHIP_ESP8266 && img[0] == 0xE9 &&
                     nd_esp8266_header_flash(img, 4) > d->chip_size)
                bad = "-107 New Binary Does Not Fit Flash Size";
            bool whole = !bad && pull_body(d, fd, img, clen, 4, 8000) == 0;
            if (whole) /* head to last sector written (tests compare the station's figure) */
                nd_logf(d, "pull: received %" PRIu64 " bytes in %" PRId64 " ms", clen,
                        nd_now_ms() - t0);
            if (bad && img && clen >= 4 && bad[0] == '-')
                nd_logf(d, "%s: %s (header %02x %02x %02x %02x, chip %" PRIu64 " bytes)", tag, bad,
                        img[0], img[1], img[2], img[3], d->chip_size);
            else if (!whole) {
                nd_logf(d, "%s: body incomplete", tag);
            } else {
                char md5[33];
                nd_digest_hex(EVP_md5(), img, clen, md5);
                bool ok = !want_md5[0] || (d->chip == CHIP_ESP32 ? strcmp(md5, want_md5) == 0
                                                                 : strcasecmp(md5, want_md5) == 0);
                if (!ok)
                    nd_logf(d, "%s: update error 7: MD5 mismatch (x-MD5 %s, body %s)", tag,
                            want_md5, md5);
                else
                    nd_apply_image(d, "pull", fs, img, clen);
            }
            free(img);
        }
    }
    checkin_tls_close();
    close(fd);
}
