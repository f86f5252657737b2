/*
 * esp_netdev: the HTTPUpdateServer web form (PROTOCOL-OTA.md §3): GET/POST /update,
 * Basic auth, the strict multipart parser, "Update Success! Rebooting..." or "Update error".
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "netdev.h"

static void http_answer(int fd, int status, const char *extra, const char *body)
{
    char head[512];
    const char *phrase = status == 200 ? "OK" : status == 401 ? "Unauthorized" : "Not Found";
    snprintf(head, sizeof(head),
             "HTTP/1.1 %d %s\r\nContent-Type: text/html\r\nContent-Length: %zu\r\n%s"
             "Connection: close\r\n\r\n",
             status, phrase, strlen(body), extra ? extra : "");
    nd_send_str(fd, head);
    nd_send_str(fd, body);
}

static bool basic_ok(struct netdev *d, const char *head)
{
    if (!d->password[0])
        return true;
    char v[256];
    if (!nd_header_value(head, "Authorization", v, sizeof(v)) || strncmp(v, "Basic ", 6) != 0)
        return false;
    char cred[160];
    unsigned char b64[240];
    int n = snprintf(cred, sizeof(cred), "%s:%s", d->web_user, d->password);
    EVP_EncodeBlock(b64, (unsigned char *)cred, n);
    /* What the station sent, for the log: the user part of the decoded credentials. */
    unsigned char got[200] = "";
    size_t vl = strlen(v + 6);
    if (vl < 240 && vl % 4 == 0) {
        int gl = EVP_DecodeBlock(got, (const unsigned char *)v + 6, (int)vl);
        got[gl > 0 ? gl : 0] = '\0';
        char *colon = strchr((char *)got, ':');
        if (colon)
            *colon = '\0';
    }
    bool ok = strcmp(v + 6, (char *)b64) == 0;
    if (ok)
        nd_logf(d, "web: Basic auth as user %s", (char *)got);
    else
        nd_logf(d, "web: 401 (credentials; got user %s)", (char *)got);
    return ok;
}

void nd_web_session(struct netdev *d, int fd)
{
    char head[8192];
    if (nd_recv_head(fd, head, sizeof(head), 5000) < 0)
        return;
    char method[8] = "", path[128] = "";
    sscanf(head, "%7s %127s", method, path);
    if (strcmp(path, "/update") != 0) {
        http_answer(fd, 404, NULL, "Not found");
        return;
    }
    if (strcmp(method, "GET") == 0) {
        http_answer(fd, 200, NULL,
                    "<html><body><form method='POST' action='' enctype='multipart/form-data'>"
                    "<input type='file' accept='.bin,.bin.gz' name='firmware'>"
                    "<input type='submit' value='Update Firmware'></form></body></html>");
        return;
    }
    char v[256];
    uint64_t clen = 0;
    if (nd_header_value(head, "Content-Length", v, sizeof(v)))
        clen = strtoull(v, NULL, 10);
    uint8_t *body = clen && clen <= MAX_IMAGE ? malloc(clen) : NULL;
    if (!body || nd_recv_exact(fd, body, clen, 5000) < 0) {
        nd_logf(d, "web: body not received (%" PRIu64 " bytes announced)", clen);
        free(body);
        return;
    }
    if (!basic_ok(d, head)) {
        http_answer(fd, 401, "WWW-Authenticate: Basic realm=\"Login Required\"\r\n", "");
        free(body);
        return;
    }
    char err[128] = "";
    const char *ct = nd_header_value(head, "Content-Type", v, sizeof(v));
    char boundary[80] = "";
    if (!ct || strncmp(ct, "multipart/form-data", 19) != 0 || !strchr(ct, '=')) {
        snprintf(err, sizeof(err), "no multipart body");
    } else {
        snprintf(boundary, sizeof(boundary), "--%s", strchr(ct, '=') + 1);
    }
    size_t bl = strlen(boundary);
    const uint8_t *data = NULL;
    size_t dlen = 0;
    bool fs = false;
    if (!err[0]) {
        /* Strict part parser: "--B\r\n", Content-Disposition with name then filename, an
         * optional Content-Type line, blank line, data up to "\r\n--B". */
        const char *b = (const char *)body;
        const char *end = b + clen;
        char name[64] = "", fname[128] = "";
        const char *p = b;
        if ((size_t)(end - p) < bl + 2 || memcmp(p, boundary, bl) != 0 ||
            memcmp(p + bl, "\r\n", 2) != 0) {
            snprintf(err, sizeof(err), "bad multipart start");
        } else {
            p += bl + 2;
            const char *eol = memmem(p, (size_t)(end - p), "\r\n", 2);
            char line[300];
            size_t ll = eol ? (size_t)(eol - p) : 0;
            if (!eol || ll >= sizeof(line)) {
                snprintf(err, sizeof(err), "bad part header");
            } else {
                memcpy(line, p, ll);
                line[ll] = '\0';
                if (sscanf(line,
                           "Content-Disposition: form-data; name=\"%63[^\"]\"; "
                           "filename=\"%127[^\"]\"",
                           name, fname) != 2)
                    snprintf(err, sizeof(err), "part is not a file upload: '%.60s'", line);
                p = eol + 2;
                eol = memmem(p, (size_t)(end - p), "\r\n", 2);
                if (!err[0] && eol && strncasecmp(p, "Content-Type:", 13) == 0) {
                    p = eol + 2;
                    eol = memmem(p, (size_t)(end - p), "\r\n", 2);
                }
                if (!err[0] && eol != p)
                    snprintf(err, sizeof(err), "unexpected part header");
                if (!err[0]) {
                    p += 2;
                    char term[96];
                    snprintf(term, sizeof(term), "\r\n%s", boundary);
                    const char *q = memmem(p, (size_t)(end - p), term, strlen(term));
                    if (!q) {
                        snprintf(err, sizeof(err), "no closing boundary");
                    } else {
                        data = (const uint8_t *)p;
                        dlen = (size_t)(q - p);
                        fs = strcmp(name, "filesystem") == 0;
                        nd_logf(d, "web: part name=%s filename=%s %zu bytes", name, fname, dlen);
                    }
                }
            }
        }
    }
    if (!err[0] && (d->fault == FAULT_NO_SPACE || dlen > d->free_space))
        snprintf(err, sizeof(err), "%sNot Enough Space",
                 d->chip == CHIP_ESP8266 ? "ERROR[4]: " : "");
    if (!err[0] && !fs && dlen > 0 && data[0] != 0xE9 &&
        !(d->chip == CHIP_ESP8266 && data[0] == 0x1F))
        snprintf(err, sizeof(err), "%s",
                 d->chip == CHIP_ESP8266 ? "ERROR[10]: Magic byte is wrong, not 0xE9"
                                         : "Wrong Magic Byte");
    /* Update.end(true) at the upload's end: the header's flash size must fit the chip
     * (netdev.h); the page carries the Updater's printError text */
    if (!err[0])
        nd_esp8266_flash_refusal(d, fs, data, dlen, err, sizeof(err));
    if (!err[0] && d->fault == FAULT_ERROR_LINE)
        snprintf(err, sizeof(err), "%sFlash Write Failed",
                 d->chip == CHIP_ESP8266 ? "ERROR[1]: " : "");
    if (err[0]) {
        char page[256];
        snprintf(page, sizeof(page), "Update error: %s", err);
        nd_logf(d, "web: %s", page);
        http_answer(fd, 200, NULL, page);
    } else {
        nd_apply_image(d, "web", fs, data, dlen);
        http_answer(fd, 200, NULL,
                    "<META http-equiv=\"refresh\" content=\"15;URL=/\">Update Success! "
                    "Rebooting...");
        nd_sleep_ms(100);
    }
    free(body);
}
