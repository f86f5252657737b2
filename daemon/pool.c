/*
 * Per-board data pools: see pool.h.
 */
#include "pool.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

struct names {
    char **v;
    size_t n;
};

static void names_free(struct names *n)
{
    for (size_t i = 0; i < n->n; i++)
        free(n->v[i]);
    free(n->v);
    n->v = NULL;
    n->n = 0;
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The pool's candidate files: regular *.bin files, not hidden, in byte order. */
static int list_bins(const char *dir, struct names *out)
{
    memset(out, 0, sizeof(*out));
    DIR *d = opendir(dir);
    if (!d)
        return -errno;
    size_t cap = 0;
    int rc = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (e->d_name[0] == '.' || len < 5 || len >= RECORDS_POOL_FILE_LEN ||
            strcmp(e->d_name + len - 4, ".bin") != 0)
            continue;
        struct stat sb;
        if (fstatat(dirfd(d), e->d_name, &sb, 0) != 0 || !S_ISREG(sb.st_mode))
            continue;
        if (out->n == cap) {
            size_t ncap = cap ? cap * 2 : 64;
            char **nv = realloc(out->v, ncap * sizeof(*nv));
            if (!nv) {
                rc = -ENOMEM;
                break;
            }
            out->v = nv;
            cap = ncap;
        }
        if (!(out->v[out->n] = strdup(e->d_name))) {
            rc = -ENOMEM;
            break;
        }
        out->n++;
    }
    closedir(d);
    if (rc < 0) {
        names_free(out);
        return rc;
    }
    if (out->n)
        qsort(out->v, out->n, sizeof(*out->v), cmp_name);
    return 0;
}

static void md5_hex(const uint8_t *data, size_t len, char out[33])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    out[0] = '\0';
    if (EVP_Digest(data, len, md, &n, EVP_md5(), NULL) != 1 || n != 16)
        return;
    for (unsigned i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

/* Reads dir/name whole: 0, -errno, -EFBIG when empty or over POOL_MAX_FILE_BYTES. */
static int read_file(const char *dir, const char *name, uint8_t **data, size_t *len)
{
    *data = NULL;
    *len = 0;
    char path[PATH_MAX];
    if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >= sizeof(path))
        return -ENAMETOOLONG;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return -EIO;
    }
    if (sb.st_size <= 0 || (uint64_t)sb.st_size > POOL_MAX_FILE_BYTES) {
        close(fd);
        return -EFBIG;
    }
    uint8_t *buf = malloc((size_t)sb.st_size);
    size_t got = 0;
    int rc = buf ? 0 : -ENOMEM;
    while (rc == 0 && got < (size_t)sb.st_size) {
        ssize_t n = read(fd, buf + got, (size_t)sb.st_size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            rc = n < 0 ? -errno : -EIO;
        else
            got += (size_t)n;
    }
    close(fd);
    if (rc < 0) {
        free(buf);
        return rc;
    }
    *data = buf;
    *len = got;
    return 0;
}

static void fill_extra(const struct config_per_board *pb, const char *file, uint8_t *data,
                       size_t len, struct job_extra *out)
{
    memset(out, 0, sizeof(*out));
    out->offset = pb->offset;
    out->data = data;
    out->len = len;
    snprintf(out->name, sizeof(out->name), "%s:%.*s", pb->name, 120, file);
}

/* Counts the free files (not given to any board) of a listing. */
static int64_t count_free(struct records *rec, const struct config_per_board *pb,
                          const struct names *n)
{
    int64_t free_n = 0;
    for (size_t i = 0; i < n->n; i++)
        if (records_pool_file_used(rec, pb->name, n->v[i], NULL) == 0)
            free_n++;
    return free_n;
}

int pool_stat(struct records *rec, const struct config_per_board *pb, struct pool_status *st)
{
    memset(st, 0, sizeof(*st));
    struct names n;
    int rc = records_pool_count(rec, pb->name, &st->used, NULL);
    if (rc < 0)
        return rc;
    if (list_bins(pb->dir, &n) < 0) {
        st->files = -1;
        return 0;
    }
    st->files = (int64_t)n.n;
    st->free = count_free(rec, pb, &n);
    names_free(&n);
    return 0;
}

/* The board's own file again (a re-flash, or a file another station gave this board a
 * moment ago): it must still be the same bytes. */
static int take_own(struct records *rec, const struct config_per_board *pb, const char *mac,
                    const struct records_pool_item *it, struct job_extra *out,
                    struct pool_status *st, char *msg, size_t msglen, char *advice, size_t advlen)
{
    uint8_t *data = NULL;
    size_t len = 0;
    snprintf(st->file, sizeof(st->file), "%s", it->file);
    st->reused = true;
    int rc = read_file(pb->dir, it->file, &data, &len);
    if (rc < 0) {
        snprintf(msg, msglen, "pool %s: %s/%s, the file given to %s, cannot be read: %s", pb->name,
                 pb->dir, it->file, mac, strerror(-rc));
        snprintf(advice, advlen,
                 "put %s back into %s: it belongs to this board (records pool_items)", it->file,
                 pb->dir);
        return rc == -ENOENT ? -ENOENT : -EIO;
    }
    char md5[33];
    md5_hex(data, len, md5);
    if (it->md5[0] && strcmp(md5, it->md5) != 0) {
        free(data);
        snprintf(msg, msglen, "pool %s: %s/%s changed since it was given to %s (MD5 %s, was %s)",
                 pb->name, pb->dir, it->file, mac, md5, it->md5);
        snprintf(advice, advlen,
                 "restore the original %s: a board's per-board data must not change "
                 "under it",
                 it->file);
        return -EBADMSG;
    }
    fill_extra(pb, it->file, data, len, out);
    pool_stat(rec, pb, st);
    snprintf(st->file, sizeof(st->file), "%s", it->file);
    st->reused = true;
    return 0;
}

static int db_fail(const struct config_per_board *pb, const struct records_error *re, char *msg,
                   size_t msglen, char *advice, size_t advlen)
{
    snprintf(msg, msglen, "pool %s: %s", pb->name, re->message);
    snprintf(advice, advlen, "check the records database (docs/OPERATIONS.md)");
    return -EIO;
}

/*
 * Stations of a line share the pool (one database): between "file i is free" and
 * the insert that gives it to this board, another station may give it to its own
 * board. The insert is the claim (PK (pool, file), UNIQUE (pool, mac)): when it
 * fails with -EEXIST, either this board got a file meanwhile (another station
 * flashing it: it keeps that one) or the file went elsewhere, and the next free
 * file is tried. Each -EEXIST moves on by one file, so the loop is bounded.
 */
int pool_take(struct records *rec, const struct config_per_board *pb, const char *mac,
              int64_t job_id, struct job_extra *out, struct pool_status *st, char *msg,
              size_t msglen, char *advice, size_t advlen)
{
    memset(out, 0, sizeof(*out));
    memset(st, 0, sizeof(*st));
    struct records_error re;
    struct records_pool_item it;
    uint8_t *data = NULL;
    size_t len = 0;
    int rc = records_pool_item_of(rec, pb->name, mac, &it, &re);
    if (rc == 0)
        return take_own(rec, pb, mac, &it, out, st, msg, msglen, advice, advlen);
    if (rc != -ENOENT)
        return db_fail(pb, &re, msg, msglen, advice, advlen);
    struct names n;
    rc = list_bins(pb->dir, &n);
    if (rc < 0) {
        snprintf(msg, msglen, "pool %s: cannot read the directory %s: %s", pb->name, pb->dir,
                 strerror(-rc));
        snprintf(advice, advlen,
                 "create %s with one .bin file per board (profile per_board), readable by "
                 "the daemon",
                 pb->dir);
        return -EIO;
    }
    st->files = (int64_t)n.n;
    size_t lost = 0; /* files other stations took while this one looked */
    for (size_t i = 0; i < n.n; i++) {
        int used = records_pool_file_used(rec, pb->name, n.v[i], &re);
        if (used < 0) {
            names_free(&n);
            return db_fail(pb, &re, msg, msglen, advice, advlen);
        }
        if (used)
            continue;
        rc = read_file(pb->dir, n.v[i], &data, &len);
        if (rc < 0) {
            snprintf(msg, msglen, "pool %s: %s/%s cannot be used: %s", pb->name, pb->dir, n.v[i],
                     rc == -EFBIG ? "empty or larger than 16 MiB" : strerror(-rc));
            snprintf(advice, advlen, "replace or remove %s/%s", pb->dir, n.v[i]);
            names_free(&n);
            return rc == -EFBIG ? -EFBIG : -EIO;
        }
        memset(&it, 0, sizeof(it));
        snprintf(it.pool, sizeof(it.pool), "%s", pb->name);
        snprintf(it.file, sizeof(it.file), "%s", n.v[i]);
        snprintf(it.mac, sizeof(it.mac), "%s", mac);
        md5_hex(data, len, it.md5);
        it.job_id = job_id;
        rc = records_pool_assign(rec, &it, &re);
        if (rc == 0) {
            fill_extra(pb, it.file, data, len, out);
            records_pool_count(rec, pb->name, &st->used, NULL);
            st->free = count_free(rec, pb, &n);
            snprintf(st->file, sizeof(st->file), "%s", it.file);
            names_free(&n);
            return 0;
        }
        free(data);
        data = NULL;
        if (rc != -EEXIST) {
            names_free(&n);
            snprintf(msg, msglen, "pool %s: cannot record that %s goes to %s: %s", pb->name,
                     it.file, mac, re.message);
            snprintf(advice, advlen, "check the records database (docs/OPERATIONS.md)");
            return -EIO;
        }
        /* Lost the race for this file: did this board get one meanwhile? */
        rc = records_pool_item_of(rec, pb->name, mac, &it, &re);
        if (rc == 0) {
            names_free(&n);
            return take_own(rec, pb, mac, &it, out, st, msg, msglen, advice, advlen);
        }
        if (rc != -ENOENT) {
            names_free(&n);
            return db_fail(pb, &re, msg, msglen, advice, advlen);
        }
        lost++;
    }
    records_pool_count(rec, pb->name, &st->used, NULL);
    snprintf(msg, msglen,
             "pool %s is exhausted: all %zu .bin files in %s went to other boards "
             "(%lld given in all%s)",
             pb->name, n.n, pb->dir, (long long)st->used,
             lost ? ", the last ones to other stations while this one chose" : "");
    snprintf(advice, advlen,
             "add files to %s (one per board, e.g. from ESP-IDF mfg_gen), then re-flash "
             "this board",
             pb->dir);
    names_free(&n);
    return -ENOSPC;
}
