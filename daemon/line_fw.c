/*
 * line_fw.c: firmware shared across a line of stations: publishing this station's
 * sets (records `firmware` rows and `blobs`), and fetching a set another station
 * holds, checked by hash, into the local catalog. See line_fw.h.
 *
 * The fetch client is a small blocking HTTP/1.1 GET (Connection: close, the body
 * length from Content-Length) on a worker thread: the other end is our own REST
 * API (web/api_blobs.c), and the worker's socket timeouts bound every wait.
 */
#include "line_fw.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <openssl/evp.h>

#include "catalog.h"
#include "config.h"
#include "log.h"
#include "loop.h"
#include "records.h"
#include "records_blobs.h"
#include "station.h"

#define CONNECT_TIMEOUT_MS 5000
#define IO_TIMEOUT_S 20
#define HEAD_MAX 16384
#define MAX_HOLDERS 8
#define PROFILE_CHECK_MS 5000

struct lf_holder {
    char station[RECORDS_STATION_LEN];
    char address[RECORDS_ADDRESS_LEN];
};

struct lf_file {
    char file[CATALOG_NAME_MAX + 1];
    char sha[RECORDS_SHA256_LEN];
    char md5[33];
    int64_t size;
    struct lf_holder holders[MAX_HOLDERS];
    size_t n_holders;
    uint8_t *data; /* worker: the checked content */
    char from[RECORDS_STATION_LEN];
};

struct lf_waiter {
    line_fw_done_fn done;
    void *ctx;
    int64_t key;
    void *data;
    struct lf_waiter *next;
};

enum lf_state { LF_FETCHING = 0, LF_FAILED, LF_DONE };

struct lf_fetch {
    struct line_fw *lf;
    char name[RECORDS_NAME_LEN];
    char version[RECORDS_NAME_LEN];
    char *manifest; /* the manifest.json text to import */
    struct lf_file *files;
    size_t n_files;
    char *token; /* api.token of this station, NULL none */
    struct catalog *cat;
    pthread_t thread;
    bool joinable;
    /* worker result */
    int rc;
    char err[600];
    uint64_t bytes;
    /* loop side */
    enum lf_state state;
    int64_t ended_ms;
    int64_t started_ms;
    struct lf_waiter *waiters;
    struct lf_fetch *next;
};

struct line_fw {
    struct station *st;
    struct loop *loop;
    int pipe[2];
    atomic_bool stopping;
    struct lf_fetch *fetches;
    struct loop_timer *timer;
};

static int64_t now_ms(void)
{
    return loop_now_ms();
}

static const char *lf_token(struct line_fw *lf)
{
    const struct config *cfg = station_config(lf->st);
    return cfg && cfg->api.token && cfg->api.token[0] ? cfg->api.token : NULL;
}

/* ---- finding files by hash (the catalog's index.json files) ------------------------------ */

static json_object *read_json(const char *path)
{
    return json_object_from_file(path);
}

static const char *jstr(json_object *o, const char *k)
{
    json_object *v;
    return o && json_object_object_get_ex(o, k, &v) && json_object_is_type(v, json_type_string)
               ? json_object_get_string(v)
               : NULL;
}

static int64_t jint(json_object *o, const char *k)
{
    json_object *v;
    return o && json_object_object_get_ex(o, k, &v) ? json_object_get_int64(v) : -1;
}

static bool sha_ok(const char *s)
{
    if (!s || strlen(s) != 64)
        return false;
    for (size_t i = 0; i < 64; i++)
        if (!isxdigit((unsigned char)s[i]) || isupper((unsigned char)s[i]))
            return false;
    return true;
}

int line_fw_find_blob(struct catalog *cat, const char *sha, char *path, size_t n, int64_t *size)
{
    if (!sha_ok(sha))
        return -EINVAL;
    struct catalog_entry *ents = NULL;
    size_t ne = 0;
    int rc = catalog_list(cat, &ents, &ne);
    if (rc < 0)
        return rc;
    rc = -ENOENT;
    for (size_t i = 0; i < ne && rc == -ENOENT; i++) {
        char ip[4096];
        snprintf(ip, sizeof(ip), "%s/%s/%s/index.json", catalog_root(cat), ents[i].name,
                 ents[i].version);
        json_object *idx = read_json(ip), *regs;
        if (idx && json_object_object_get_ex(idx, "regions", &regs))
            for (size_t k = 0; k < json_object_array_length(regs) && rc == -ENOENT; k++) {
                json_object *r = json_object_array_get_idx(regs, k);
                const char *s = jstr(r, "sha256"), *f = jstr(r, "file");
                if (s && f && strcmp(s, sha) == 0 && catalog_name_valid(f)) {
                    snprintf(path, n, "%s/%s/%s/%s", catalog_root(cat), ents[i].name,
                             ents[i].version, f);
                    *size = jint(r, "size");
                    rc = 0;
                }
            }
        json_object_put(idx);
    }
    catalog_entries_free(ents, ne);
    return rc;
}

/* ---- publishing -------------------------------------------------------------------------- */

struct sha_set {
    char (*v)[RECORDS_SHA256_LEN];
    size_t n, cap;
};

static void sha_add(struct sha_set *s, const char *sha)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 32;
        void *nv = realloc(s->v, cap * sizeof(*s->v));
        if (!nv)
            return;
        s->v = nv;
        s->cap = cap;
    }
    snprintf(s->v[s->n++], RECORDS_SHA256_LEN, "%s", sha);
}

static bool sha_has(const struct sha_set *s, const char *sha)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->v[i], sha) == 0)
            return true;
    return false;
}

/* The line's description of a set: {"format":1,"manifest":{...},"regions":[{file, offset,
 * size, sha256, md5}]} (the region hashes from index.json, made at import). */
static char *describe_set(const char *dir, struct json_object **regions_out)
{
    char mp[4096], ip[4096];
    snprintf(mp, sizeof(mp), "%s/manifest.json", dir);
    snprintf(ip, sizeof(ip), "%s/index.json", dir);
    json_object *man = read_json(mp), *idx = read_json(ip), *regs;
    char *out = NULL;
    if (man && idx && json_object_object_get_ex(idx, "regions", &regs)) {
        json_object *d = json_object_new_object(), *rs = json_object_new_array();
        json_object_object_add(d, "format", json_object_new_int(1));
        json_object_object_add(d, "manifest", json_object_get(man));
        for (size_t k = 0; k < json_object_array_length(regs); k++) {
            json_object *r = json_object_array_get_idx(regs, k), *e = json_object_new_object();
            static const char *const keys[] = {"file", "offset", "size", "sha256", "md5"};
            for (size_t i = 0; i < 5; i++) {
                json_object *v;
                if (json_object_object_get_ex(r, keys[i], &v))
                    json_object_object_add(e, keys[i], json_object_get(v));
            }
            json_object_array_add(rs, e);
        }
        json_object_object_add(d, "regions", rs);
        out = strdup(json_object_to_json_string_ext(d, JSON_C_TO_STRING_PLAIN |
                                                           JSON_C_TO_STRING_NOSLASHESCAPE));
        if (regions_out)
            *regions_out = json_object_get(rs);
        json_object_put(d);
    }
    json_object_put(man);
    json_object_put(idx);
    return out;
}

/* The sha256 list of a description's regions joined, to compare two descriptions. */
static void regions_key(json_object *regs, char *buf, size_t n)
{
    size_t used = 0;
    buf[0] = '\0';
    for (size_t k = 0; regs && k < json_object_array_length(regs) && used < n; k++) {
        const char *s = jstr(json_object_array_get_idx(regs, k), "sha256");
        used += (size_t)snprintf(buf + used, n - used, "%s,", s ? s : "?");
    }
}

static void publish_set(struct line_fw *lf, const struct catalog_entry *e, struct sha_set *held)
{
    struct records *rec = station_records(lf->st);
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s/%s/%s", catalog_root(station_catalog(lf->st)), e->name,
             e->version);
    json_object *regs = NULL;
    char *desc = describe_set(dir, &regs);
    if (!desc) {
        log_msg(LOG_LEVEL_WARN, "line: cannot describe firmware %s@%s (%s) for the line", e->name,
                e->version, dir);
        return;
    }
    struct records_firmware *fw = calloc(1, sizeof(*fw));
    struct records_error re;
    if (fw && strlen(desc) < sizeof(fw->manifest)) {
        snprintf(fw->name, sizeof(fw->name), "%s", e->name);
        snprintf(fw->version, sizeof(fw->version), "%s", e->version);
        snprintf(fw->chip, sizeof(fw->chip), "%s", esp_chip_to_string(e->chip));
        snprintf(fw->manifest, sizeof(fw->manifest), "%s", desc);
        int rc = records_firmware_put(rec, fw, &re);
        if (rc == -EEXIST && records_firmware_get(rec, e->name, e->version, fw, &re) == 0) {
            /* versions are immutable: the line's record stays; say when it differs */
            json_object *theirs = json_tokener_parse(fw->manifest), *tr = NULL;
            char a[4096], b[4096];
            if (theirs)
                json_object_object_get_ex(theirs, "regions", &tr);
            regions_key(regs, a, sizeof(a));
            regions_key(tr, b, sizeof(b));
            if (strcmp(a, b) != 0)
                log_msg(LOG_LEVEL_WARN,
                        "line: firmware %s@%s of this station differs from the line's set of "
                        "that name (another station imported other files under it): the line "
                        "keeps its own; give this build a new version",
                        e->name, e->version);
            json_object_put(theirs);
        } else if (rc < 0) {
            log_msg(LOG_LEVEL_WARN, "line: cannot describe firmware %s@%s: %s", e->name, e->version,
                    re.message);
        }
    } else if (fw) {
        log_msg(LOG_LEVEL_WARN,
                "line: firmware %s@%s: its manifest is too large to share (%zu bytes)", e->name,
                e->version, strlen(desc));
    }
    free(fw);
    for (size_t k = 0; regs && k < json_object_array_length(regs); k++) {
        json_object *r = json_object_array_get_idx(regs, k);
        const char *sha = jstr(r, "sha256");
        if (!sha_ok(sha))
            continue;
        sha_add(held, sha);
        if (records_blob_put(rec, sha, jint(r, "size"), &re) < 0)
            log_msg(LOG_LEVEL_WARN, "line: %s", re.message);
    }
    json_object_put(regs);
    free(desc);
}

static int mine_cb(const char *sha, int64_t size, void *ctx)
{
    (void)size;
    sha_add(ctx, sha);
    return 0;
}

void line_fw_publish(struct line_fw *lf)
{
    if (!lf)
        return;
    struct catalog_entry *ents = NULL;
    size_t n = 0;
    if (catalog_list(station_catalog(lf->st), &ents, &n) < 0) {
        log_msg(LOG_LEVEL_WARN, "line: cannot list the firmware catalog to share it");
        return;
    }
    struct sha_set held = {0}, mine = {0};
    for (size_t i = 0; i < n; i++)
        publish_set(lf, &ents[i], &held);
    catalog_entries_free(ents, n);
    struct records *rec = station_records(lf->st);
    struct records_error re;
    if (records_blob_list_mine(rec, mine_cb, &mine, &re) >= 0)
        for (size_t i = 0; i < mine.n; i++)
            if (!sha_has(&held, mine.v[i]) && records_blob_drop(rec, mine.v[i], &re) < 0)
                log_msg(LOG_LEVEL_WARN, "line: %s", re.message);
    free(held.v);
    free(mine.v);
}

bool line_fw_known(struct line_fw *lf, const char *name, const char *version)
{
    if (!lf)
        return false;
    struct records_firmware *fw = malloc(sizeof(*fw));
    bool known = fw && records_firmware_get(station_records(lf->st), name, version, fw, NULL) == 0;
    free(fw);
    return known;
}

/* ---- the HTTP client (worker thread) ----------------------------------------------------- */

int line_fw_parse_head(const char *head, size_t len, int *status, int64_t *content_length)
{
    *status = 0;
    *content_length = -1;
    if (len < 12 || memcmp(head, "HTTP/1.", 7) != 0 || !isdigit((unsigned char)head[9]) ||
        !isdigit((unsigned char)head[10]) || !isdigit((unsigned char)head[11]) || head[8] != ' ')
        return -EPROTO;
    *status = (head[9] - '0') * 100 + (head[10] - '0') * 10 + (head[11] - '0');
    const char *p = memchr(head, '\n', len), *end = head + len;
    while (p && p + 1 < end) {
        const char *line = p + 1;
        p = memchr(line, '\n', (size_t)(end - line));
        size_t ll = (size_t)((p ? p : end) - line);
        static const char cl[] = "content-length:";
        if (ll > sizeof(cl) - 1 && strncasecmp(line, cl, sizeof(cl) - 1) == 0) {
            const char *v = line + sizeof(cl) - 1, *ve = line + ll;
            while (v < ve && (*v == ' ' || *v == '\t'))
                v++;
            int64_t x = 0;
            bool any = false;
            while (v < ve && isdigit((unsigned char)*v) && x < INT64_MAX / 10 - 10) {
                x = x * 10 + (*v++ - '0');
                any = true;
            }
            while (v < ve && (*v == ' ' || *v == '\t' || *v == '\r'))
                v++;
            if (!any || v != ve)
                return -EPROTO;
            *content_length = x;
        }
    }
    return 0;
}

/* "http://host[:port][/prefix]" -> host, port, prefix ("" or "/x" without a trailing '/'). */
static int parse_url(const char *url, char *host, size_t hn, char *port, size_t pn, char *prefix,
                     size_t xn)
{
    if (strncmp(url, "http://", 7) != 0)
        return -EPROTONOSUPPORT;
    const char *h = url + 7, *slash = strchr(h, '/');
    size_t hl = slash ? (size_t)(slash - h) : strlen(h);
    if (hl == 0 || hl >= hn)
        return -EINVAL;
    char hp[300];
    snprintf(hp, sizeof(hp), "%.*s", (int)hl, h);
    char *colon = hp[0] == '[' ? strstr(hp, "]:") : strrchr(hp, ':');
    if (hp[0] == '[') {
        char *rb = strchr(hp, ']');
        if (!rb)
            return -EINVAL;
        *rb = '\0';
        snprintf(host, hn, "%s", hp + 1);
        snprintf(port, pn, "%s", colon ? colon + 2 : "80");
    } else {
        if (colon)
            *colon = '\0';
        snprintf(host, hn, "%s", hp);
        snprintf(port, pn, "%s", colon ? colon + 1 : "80");
    }
    snprintf(prefix, xn, "%s", slash ? slash : "");
    size_t pl = strlen(prefix);
    while (pl > 0 && prefix[pl - 1] == '/')
        prefix[--pl] = '\0';
    return 0;
}

static int connect_to(const char *host, const char *port)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
    int rc = getaddrinfo(host, port, &hints, &ai);
    if (rc != 0)
        return -EHOSTUNREACH;
    int fd = -1, err = -ECONNREFUSED;
    for (struct addrinfo *a = ai; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol);
        if (fd < 0) {
            err = -errno;
            continue;
        }
        if (connect(fd, a->ai_addr, a->ai_addrlen) < 0 && errno != EINPROGRESS) {
            err = -errno;
            close(fd);
            fd = -1;
            continue;
        }
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        int so = 0;
        socklen_t sl = sizeof(so);
        int pr = poll(&p, 1, CONNECT_TIMEOUT_MS);
        if (pr <= 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &so, &sl) < 0 || so != 0) {
            err = pr == 0 ? -ETIMEDOUT : so ? -so : -errno;
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(ai);
    if (fd < 0)
        return err;
    int fl = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    struct timeval tv = {.tv_sec = IO_TIMEOUT_S};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    return fd;
}

/* GET <address>/api/v1/blobs/<sha>: the body (expect bytes) into *out. err on failure. */
static int http_get_blob(const char *address, const char *sha, const char *token, int64_t expect,
                         uint8_t **out, char *err, size_t errlen)
{
    char host[256], port[16], prefix[256];
    int rc = parse_url(address, host, sizeof(host), port, sizeof(port), prefix, sizeof(prefix));
    if (rc < 0) {
        snprintf(err, errlen, "address %s is not an http:// URL", address);
        return rc;
    }
    int fd = connect_to(host, port);
    if (fd < 0) {
        snprintf(err, errlen, "cannot connect to %s: %s", address, strerror(-fd));
        return fd;
    }
    char req[1024];
    bool v6 = strchr(host, ':') != NULL;
    int n =
        snprintf(req, sizeof(req),
                 "GET %s/api/v1/blobs/%s HTTP/1.1\r\nHost: %s%s%s:%s\r\n%s%s%s"
                 "Connection: close\r\nAccept: application/octet-stream\r\n\r\n",
                 prefix, sha, v6 ? "[" : "", host, v6 ? "]" : "", port,
                 token ? "Authorization: Bearer " : "", token ? token : "", token ? "\r\n" : "");
    if (n < 0 || (size_t)n >= sizeof(req) || send(fd, req, (size_t)n, MSG_NOSIGNAL) != n) {
        snprintf(err, errlen, "cannot send the request to %s", address);
        close(fd);
        return -EIO;
    }
    char *head = malloc(HEAD_MAX);
    uint8_t *body = NULL;
    size_t hl = 0, got = 0;
    char *end = NULL;
    rc = -EPROTO;
    while (head && hl < HEAD_MAX - 1) {
        ssize_t r = recv(fd, head + hl, HEAD_MAX - 1 - hl, 0);
        if (r <= 0) {
            snprintf(err, errlen, "%s: %s", address,
                     r == 0 ? "connection closed before the answer"
                     : (errno == EAGAIN || errno == EWOULDBLOCK) ? "no answer (timed out)"
                                                                 : strerror(errno));
            rc = r == 0 ? -EPROTO : -ETIMEDOUT;
            goto out;
        }
        hl += (size_t)r;
        head[hl] = '\0';
        if ((end = strstr(head, "\r\n\r\n")))
            break;
    }
    if (!end) {
        snprintf(err, errlen, "%s: no HTTP answer", address);
        goto out;
    }
    int status;
    int64_t clen;
    size_t head_len = (size_t)(end + 4 - head);
    if (line_fw_parse_head(head, head_len, &status, &clen) < 0) {
        snprintf(err, errlen, "%s: not an HTTP answer", address);
        goto out;
    }
    if (status != 200) {
        snprintf(err, errlen, "%s answered %d", address, status);
        rc = status == 404 ? -ENOENT : status == 401 || status == 403 ? -EACCES : -EIO;
        goto out;
    }
    if (clen != expect) {
        snprintf(err, errlen, "%s sent %lld bytes, the manifest says %lld", address,
                 (long long)clen, (long long)expect);
        rc = -EBADMSG;
        goto out;
    }
    body = malloc((size_t)expect + 1);
    if (!body) {
        rc = -ENOMEM;
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    got = hl - head_len;
    if (got > (size_t)expect)
        got = (size_t)expect;
    memcpy(body, head + head_len, got);
    while (got < (size_t)expect) {
        ssize_t r = recv(fd, body + got, (size_t)expect - got, 0);
        if (r <= 0) {
            snprintf(err, errlen, "%s: the transfer broke after %zu of %lld bytes", address, got,
                     (long long)expect);
            rc = -EIO;
            goto out;
        }
        got += (size_t)r;
    }
    *out = body;
    body = NULL;
    rc = 0;
out:
    free(body);
    free(head);
    close(fd);
    return rc;
}

static void hex_digest(const EVP_MD *md, const uint8_t *d, size_t n, char *out)
{
    unsigned char h[EVP_MAX_MD_SIZE];
    unsigned int hl = 0;
    EVP_Digest(d, n, h, &hl, md, NULL);
    for (unsigned i = 0; i < hl; i++)
        sprintf(out + 2 * i, "%02x", h[i]);
    out[2 * hl] = '\0';
}

static int fetch_file(struct lf_fetch *f, struct lf_file *fi)
{
    char first[400] = "";
    int first_rc = -EHOSTUNREACH;
    for (size_t h = 0; h < fi->n_holders && !atomic_load(&f->lf->stopping); h++) {
        const struct lf_holder *ho = &fi->holders[h];
        char why[400] = "";
        uint8_t *data = NULL;
        int rc;
        if (!ho->address[0]) {
            snprintf(why, sizeof(why), "it has no address in the line (no heartbeat)");
            rc = -EHOSTUNREACH;
        } else {
            rc = http_get_blob(ho->address, fi->sha, f->token, fi->size, &data, why, sizeof(why));
        }
        if (rc == 0) {
            char sha[65], md5[33];
            hex_digest(EVP_sha256(), data, (size_t)fi->size, sha);
            hex_digest(EVP_md5(), data, (size_t)fi->size, md5);
            if (strcmp(sha, fi->sha) != 0 || (fi->md5[0] && strcmp(md5, fi->md5) != 0)) {
                snprintf(why, sizeof(why),
                         "refused: its content has %s %s, the manifest says %s (the holder's copy "
                         "is corrupted)",
                         strcmp(sha, fi->sha) != 0 ? "SHA-256" : "MD5",
                         strcmp(sha, fi->sha) != 0 ? sha : md5,
                         strcmp(sha, fi->sha) != 0 ? fi->sha : fi->md5);
                free(data);
                rc = -EBADMSG;
            } else {
                fi->data = data;
                snprintf(fi->from, sizeof(fi->from), "%s", ho->station);
                f->bytes += (uint64_t)fi->size;
                return 0;
            }
        }
        log_msg(LOG_LEVEL_WARN, "line: firmware %s@%s: file %s from station %s: %s", f->name,
                f->version, fi->file, ho->station, why);
        if (!first[0] || (rc == -EBADMSG && first_rc != -EBADMSG)) {
            snprintf(first, sizeof(first), "station %s: %s", ho->station, why);
            first_rc = rc;
        }
    }
    snprintf(f->err, sizeof(f->err),
             "firmware %s@%s: file %s (sha256 %.12s...) could not be fetched: %s", f->name,
             f->version, fi->file, fi->sha, first[0] ? first : "the station is stopping");
    return first_rc == -EBADMSG ? -EBADMSG : first_rc;
}

static int mem_load(void *ctx, const char *file, uint8_t **data, size_t *len)
{
    struct lf_fetch *f = ctx;
    for (size_t i = 0; i < f->n_files; i++)
        if (strcmp(f->files[i].file, file) == 0 && f->files[i].data) {
            size_t n = (size_t)f->files[i].size;
            *data = malloc(n ? n : 1);
            if (!*data)
                return -ENOMEM;
            memcpy(*data, f->files[i].data, n);
            *len = n;
            return 0;
        }
    return -ENOENT;
}

static void *fetch_main(void *arg)
{
    struct lf_fetch *f = arg;
    f->rc = 0;
    for (size_t i = 0; i < f->n_files && f->rc == 0; i++) {
        /* a file listed twice (same hash) is fetched once */
        bool dup = false;
        for (size_t k = 0; k < i && !dup; k++)
            dup = strcmp(f->files[k].file, f->files[i].file) == 0;
        if (!dup)
            f->rc = fetch_file(f, &f->files[i]);
    }
    if (f->rc == 0) {
        struct catalog_report rep;
        catalog_report_init(&rep);
        f->rc =
            catalog_import_mem(f->cat, f->manifest, strlen(f->manifest), mem_load, f, false, &rep);
        if (f->rc == -EEXIST)
            f->rc = 0; /* imported meanwhile (the API, another fetch): it is here */
        else if (f->rc < 0) {
            char buf[1024] = "";
            catalog_report_format(&rep, buf, sizeof(buf));
            buf[strcspn(buf, "\n")] = '\0';
            snprintf(f->err, sizeof(f->err), "firmware %s@%s: fetched, but the import failed: %s",
                     f->name, f->version, buf[0] ? buf : strerror(-f->rc));
        }
        catalog_report_free(&rep);
    }
    if (write(f->lf->pipe[1], &f, sizeof(f)) != sizeof(f))
        log_msg(LOG_LEVEL_ERROR, "line: cannot report the end of a firmware fetch");
    return NULL;
}

/* ---- fetches (loop thread) --------------------------------------------------------------- */

static void fetch_free_data(struct lf_fetch *f)
{
    for (size_t i = 0; i < f->n_files; i++) {
        free(f->files[i].data);
        f->files[i].data = NULL;
    }
    free(f->manifest);
    f->manifest = NULL;
    free(f->token);
    f->token = NULL;
}

static void fetch_free(struct lf_fetch *f)
{
    fetch_free_data(f);
    while (f->waiters) {
        struct lf_waiter *w = f->waiters;
        f->waiters = w->next;
        free(w->data);
        free(w);
    }
    free(f->files);
    free(f);
}

static struct lf_fetch *fetch_find(struct line_fw *lf, const char *name, const char *version)
{
    for (struct lf_fetch *f = lf->fetches; f; f = f->next)
        if (strcmp(f->name, name) == 0 && strcmp(f->version, version) == 0)
            return f;
    return NULL;
}

static void fetch_ended(struct line_fw *lf, struct lf_fetch *f)
{
    if (f->joinable) {
        pthread_join(f->thread, NULL);
        f->joinable = false;
    }
    f->state = f->rc == 0 ? LF_DONE : LF_FAILED;
    f->ended_ms = now_ms();
    char from[400] = "";
    size_t used = 0;
    json_object *d = json_object_new_object(), *files = json_object_new_array();
    json_object_object_add(d, "firmware", json_object_new_string(f->name));
    json_object_object_add(d, "version", json_object_new_string(f->version));
    for (size_t i = 0; i < f->n_files; i++) {
        if (!f->files[i].from[0])
            continue;
        json_object *e = json_object_new_object();
        json_object_object_add(e, "file", json_object_new_string(f->files[i].file));
        json_object_object_add(e, "sha256", json_object_new_string(f->files[i].sha));
        json_object_object_add(e, "station", json_object_new_string(f->files[i].from));
        json_object_array_add(files, e);
        if (!strstr(from, f->files[i].from) && used < sizeof(from))
            used += (size_t)snprintf(from + used, sizeof(from) - used, "%s%s", used ? ", " : "",
                                     f->files[i].from);
    }
    json_object_object_add(d, "files", files);
    json_object_object_add(d, "bytes", json_object_new_int64((int64_t)f->bytes));
    char line[900];
    if (f->rc == 0) {
        snprintf(line, sizeof(line),
                 "firmware %s@%s fetched from station %s (%zu files, %llu bytes, SHA-256 and MD5 "
                 "checked) into the local catalog",
                 f->name, f->version, from[0] ? from : "?", f->n_files,
                 (unsigned long long)f->bytes);
        log_msg(LOG_LEVEL_NOTICE, "line: %s", line);
        station_post_event(lf->st, "firmware.fetched", NULL, NULL, 0,
                           json_object_to_json_string_ext(d, JSON_C_TO_STRING_PLAIN));
        /* this station holds the files now: the line may fetch them here too */
        station_catalog_changed(lf->st);
    } else {
        snprintf(line, sizeof(line), "%s", f->err[0] ? f->err : strerror(-f->rc));
        log_msg(LOG_LEVEL_ERROR, "line: %s", line);
        json_object_object_add(d, "error", json_object_new_string(line));
        station_post_event(lf->st, "firmware.fetch_failed", NULL, NULL, 0,
                           json_object_to_json_string_ext(d, JSON_C_TO_STRING_PLAIN));
    }
    json_object_put(d);
    fetch_free_data(f);
    struct lf_waiter *w = f->waiters;
    f->waiters = NULL;
    while (w) {
        struct lf_waiter *next = w->next;
        if (w->key > 0)
            records_job_log(station_records(lf->st), w->key, f->rc == 0 ? "info" : "error", line,
                            NULL);
        if (w->done)
            w->done(w->ctx, w->key, f->rc, f->rc == 0 ? NULL : line, w->data);
        free(w->data);
        free(w);
        w = next;
    }
}

static void on_pipe(void *ctx, int fd, uint32_t events)
{
    (void)events;
    struct line_fw *lf = ctx;
    struct lf_fetch *f;
    while (read(fd, &f, sizeof(f)) == sizeof(f))
        fetch_ended(lf, f);
}

struct holder_ctx {
    struct lf_file *fi;
};

static int holder_cb(const struct records_blob_holder *h, void *ctx)
{
    struct lf_file *fi = ctx;
    if (fi->n_holders >= MAX_HOLDERS)
        return 1;
    struct lf_holder *ho = &fi->holders[fi->n_holders++];
    snprintf(ho->station, sizeof(ho->station), "%s", h->station);
    snprintf(ho->address, sizeof(ho->address), "%s", h->address);
    return 0;
}

/* Builds the fetch of name@version from the line's description. 0, or -errno with err. */
static int fetch_prepare(struct line_fw *lf, struct lf_fetch *f, const struct records_firmware *fw,
                         char *err, size_t errlen)
{
    json_object *d = json_tokener_parse(fw->manifest), *man = NULL, *regs = NULL;
    int rc = 0;
    if (!d || !json_object_object_get_ex(d, "manifest", &man) ||
        !json_object_object_get_ex(d, "regions", &regs) ||
        !json_object_is_type(regs, json_type_array)) {
        snprintf(err, errlen,
                 "firmware %s@%s: the line's record of it names no files by hash; import it on "
                 "this station",
                 fw->name, fw->version);
        rc = -ENOENT;
        goto out;
    }
    f->manifest = strdup(json_object_to_json_string_ext(man, JSON_C_TO_STRING_PLAIN |
                                                                 JSON_C_TO_STRING_NOSLASHESCAPE));
    f->n_files = json_object_array_length(regs);
    f->files = calloc(f->n_files ? f->n_files : 1, sizeof(*f->files));
    if (!f->manifest || !f->files) {
        snprintf(err, errlen, "out of memory");
        rc = -ENOMEM;
        goto out;
    }
    struct records_error re;
    for (size_t i = 0; i < f->n_files; i++) {
        json_object *r = json_object_array_get_idx(regs, i);
        struct lf_file *fi = &f->files[i];
        const char *file = jstr(r, "file"), *sha = jstr(r, "sha256"), *md5 = jstr(r, "md5");
        fi->size = jint(r, "size");
        if (!file || !catalog_name_valid(file) || !sha_ok(sha) || fi->size < 0 ||
            fi->size > CATALOG_MAX_FILE_BYTES) {
            snprintf(err, errlen, "firmware %s@%s: the line's record of region %zu is damaged",
                     fw->name, fw->version, i);
            rc = -EBADMSG;
            goto out;
        }
        snprintf(fi->file, sizeof(fi->file), "%s", file);
        snprintf(fi->sha, sizeof(fi->sha), "%s", sha);
        snprintf(fi->md5, sizeof(fi->md5), "%s", md5 && strlen(md5) == 32 ? md5 : "");
        int64_t fresh = records_now_ms(station_records(lf->st)) - LINE_FW_FRESH_MS;
        if (records_blob_holders(station_records(lf->st), sha, fresh, holder_cb, fi, &re) < 0) {
            snprintf(err, errlen, "firmware %s@%s: %s", fw->name, fw->version, re.message);
            rc = re.code;
            goto out;
        }
        if (fi->n_holders == 0) {
            snprintf(err, errlen,
                     "firmware %s@%s: no other station of the line holds file %s (sha256 "
                     "%.12s...); import the set on this station",
                     fw->name, fw->version, file, sha);
            rc = -ENOENT;
            goto out;
        }
    }
out:
    json_object_put(d);
    return rc;
}

int line_fw_need(struct line_fw *lf, const char *name, const char *version, line_fw_done_fn done,
                 void *ctx, int64_t key, const void *data, size_t len, char *err, size_t errlen)
{
    char dummy[8];
    if (!err || !errlen) {
        err = dummy;
        errlen = sizeof(dummy);
    }
    err[0] = '\0';
    if (!lf || !catalog_name_valid(name) || !catalog_name_valid(version))
        return 0;
    struct lf_fetch *f = fetch_find(lf, name, version);
    if (f && f->state != LF_FETCHING && now_ms() - f->ended_ms < LINE_FW_RETRY_MS &&
        f->state == LF_FAILED) {
        snprintf(err, errlen, "%s", f->err[0] ? f->err : strerror(-f->rc));
        return f->rc < 0 ? f->rc : -EIO;
    }
    if (!f || f->state != LF_FETCHING) {
        struct records_firmware *fw = malloc(sizeof(*fw));
        struct records_error re;
        int rc =
            fw ? records_firmware_get(station_records(lf->st), name, version, fw, &re) : -ENOMEM;
        if (rc == -ENOENT) {
            free(fw);
            return 0;
        }
        if (rc < 0) {
            snprintf(err, errlen, "firmware %s@%s: %s", name, version,
                     fw ? re.message : "out of memory");
            free(fw);
            return rc;
        }
        if (!f) {
            f = calloc(1, sizeof(*f));
            if (!f) {
                free(fw);
                snprintf(err, errlen, "out of memory");
                return -ENOMEM;
            }
            f->lf = lf;
            snprintf(f->name, sizeof(f->name), "%s", name);
            snprintf(f->version, sizeof(f->version), "%s", version);
            f->next = lf->fetches;
            lf->fetches = f;
        } else {
            free(f->files);
            f->files = NULL;
            f->n_files = 0;
        }
        f->rc = 0;
        f->err[0] = '\0';
        f->bytes = 0;
        rc = fetch_prepare(lf, f, fw, f->err, sizeof(f->err));
        free(fw);
        if (rc == 0) {
            f->cat = station_catalog(lf->st);
            f->token = lf_token(lf) ? strdup(lf_token(lf)) : NULL;
            f->state = LF_FETCHING;
            f->started_ms = now_ms();
            rc = pthread_create(&f->thread, NULL, fetch_main, f);
            if (rc != 0) {
                rc = -rc;
                snprintf(f->err, sizeof(f->err), "firmware %s@%s: cannot start the fetch: %s", name,
                         version, strerror(-rc));
            } else {
                f->joinable = true;
                log_msg(LOG_LEVEL_NOTICE,
                        "line: firmware %s@%s is not in this station's catalog: fetching %zu "
                        "file(s) from station %s",
                        name, version, f->n_files, f->files[0].holders[0].station);
            }
        }
        if (rc < 0) {
            fetch_free_data(f);
            f->state = LF_FAILED;
            f->rc = rc;
            f->ended_ms = now_ms();
            log_msg(LOG_LEVEL_ERROR, "line: %s", f->err);
            snprintf(err, errlen, "%s", f->err);
            return rc;
        }
    }
    snprintf(err, errlen, "firmware %s@%s is being fetched from station %s", name, version,
             f->n_files ? f->files[0].holders[0].station : "?");
    if (done || key > 0) {
        struct lf_waiter *w = calloc(1, sizeof(*w));
        if (w && len)
            w->data = malloc(len);
        if (!w || (len && !w->data)) {
            if (w)
                free(w);
            snprintf(err, errlen, "out of memory");
            return -ENOMEM;
        }
        if (len)
            memcpy(w->data, data, len);
        w->done = done;
        w->ctx = ctx;
        w->key = key;
        w->next = f->waiters;
        f->waiters = w;
    }
    return 1;
}

const char *line_fw_fetching_from(struct line_fw *lf, const char *name, const char *version)
{
    struct lf_fetch *f = lf ? fetch_find(lf, name, version) : NULL;
    return f && f->state == LF_FETCHING && f->n_files ? f->files[0].holders[0].station : "";
}

/* The active profile's sets: fetched before a board needs them. */
static void on_timer(void *ctx)
{
    struct line_fw *lf = ctx;
    if (station_stopping(lf->st))
        return;
    const struct config_profile *p = config_profile(station_config(lf->st), NULL);
    for (size_t i = 0; p && i < p->n_firmware; i++) {
        const struct config_firmware_ref *ref = &p->firmware[i];
        char dir[4096];
        struct stat sb;
        snprintf(dir, sizeof(dir), "%s/%s/%s/index.json", catalog_root(station_catalog(lf->st)),
                 ref->name, ref->version);
        if (stat(dir, &sb) == 0)
            continue;
        struct lf_fetch *f = fetch_find(lf, ref->name, ref->version);
        if (f && (f->state == LF_FETCHING || now_ms() - f->ended_ms < LINE_FW_RETRY_MS * 6))
            continue; /* running, or failed lately: a board's job asks again */
        line_fw_need(lf, ref->name, ref->version, NULL, NULL, 0, NULL, 0, NULL, 0);
    }
}

struct line_fw *line_fw_new(struct station *st, struct loop *loop)
{
    struct line_fw *lf = calloc(1, sizeof(*lf));
    if (!lf)
        return NULL;
    lf->st = st;
    lf->loop = loop;
    atomic_init(&lf->stopping, false);
    if (pipe2(lf->pipe, O_CLOEXEC | O_NONBLOCK) < 0) {
        log_msg(LOG_LEVEL_ERROR, "line: cannot create a pipe: %s", strerror(errno));
        free(lf);
        return NULL;
    }
    /* the worker's one write must not fail on a full pipe: block in the worker */
    fcntl(lf->pipe[1], F_SETFL, fcntl(lf->pipe[1], F_GETFL) & ~O_NONBLOCK);
    lf->timer = loop_timer_new(loop, on_timer, lf);
    if (loop_add_fd(loop, lf->pipe[0], EPOLLIN, on_pipe, lf) < 0 || !lf->timer ||
        loop_timer_arm(lf->timer, 500, PROFILE_CHECK_MS) < 0) {
        log_msg(LOG_LEVEL_ERROR, "line: cannot watch firmware fetches");
        loop_del_fd(loop, lf->pipe[0]);
        loop_timer_free(lf->timer);
        close(lf->pipe[0]);
        close(lf->pipe[1]);
        free(lf);
        return NULL;
    }
    return lf;
}

void line_fw_free(struct line_fw *lf)
{
    if (!lf)
        return;
    atomic_store(&lf->stopping, true);
    loop_timer_free(lf->timer);
    loop_del_fd(lf->loop, lf->pipe[0]);
    while (lf->fetches) {
        struct lf_fetch *f = lf->fetches;
        lf->fetches = f->next;
        if (f->joinable)
            pthread_join(f->thread, NULL); /* its pipe write is then unread: fine */
        fetch_free(f);
    }
    close(lf->pipe[0]);
    close(lf->pipe[1]);
    free(lf);
}
