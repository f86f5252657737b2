/*
 * fdbudget: the open-file budget (see fdbudget.h).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

#include "fdbudget.h"

/* The kernel refuses a soft or hard RLIMIT_NOFILE above fs.nr_open (EPERM). */
static long nr_open(void)
{
    long v = 1048576; /* the kernel's default */
    FILE *f = fopen("/proc/sys/fs/nr_open", "re");
    if (f) {
        if (fscanf(f, "%ld", &v) != 1 || v < 1)
            v = 1048576;
        fclose(f);
    }
    return v;
}

int fd_budget_raise_limit(long *before, long *soft, long *hard)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        *before = *soft = *hard = -1;
        return -errno;
    }
    *before = rl.rlim_cur == RLIM_INFINITY ? nr_open() : (long)rl.rlim_cur;
    *hard = rl.rlim_max == RLIM_INFINITY ? -1 : (long)rl.rlim_max;
    long want = rl.rlim_max == RLIM_INFINITY ? nr_open() : (long)rl.rlim_max;
    if (want > nr_open())
        want = nr_open();
    *soft = *before;
    if (want <= *before)
        return 0;
    rl.rlim_cur = (rlim_t)want;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
        return -errno;
    *soft = want;
    return 0;
}

static long lmin(long a, long b)
{
    return a < b ? a : b;
}

static long lmax(long a, long b)
{
    return a > b ? a : b;
}

void fd_budget_compute(struct fd_budget *b, long limit, const struct config *cfg, int api_fixed)
{
    const long per_api = FD_BUDGET_PER_API_CONN;
    b->limit = limit;
    b->jobs = cfg->max_parallel + FD_BUDGET_PUSHES;
    b->reserve = FD_BUDGET_DAEMON + (long)b->jobs * FD_BUDGET_PER_JOB;
    b->api_want = cfg->api.max_connections;
    b->ota_want = cfg->ota.max_connections;
    b->short_by = 0;
    long api_min = api_fixed > 0 ? api_fixed : lmin(FD_BUDGET_MIN_CONN, b->api_want);
    long ota_min = lmin(FD_BUDGET_MIN_CONN, b->ota_want);
    long avail = limit - b->reserve;
    if (avail < api_min * per_api + ota_min) {
        b->short_by = api_min * per_api + ota_min - avail;
        b->api_max = (int)api_min;
        b->ota_max = (int)ota_min;
        return;
    }
    if (api_fixed > 0) {
        b->api_max = api_fixed;
        b->ota_max = (int)lmin(b->ota_want, avail - (long)api_fixed * per_api);
        return;
    }
    long want = (long)b->api_want * per_api + b->ota_want;
    if (want <= avail) {
        b->api_max = b->api_want;
        b->ota_max = b->ota_want;
        return;
    }
    /* Both lowered in proportion; the floors cannot overshoot avail together. */
    long api = lmax(api_min, (long)b->api_want * avail / want);
    long ota = lmax(ota_min, (long)b->ota_want * avail / want);
    if (api * per_api + ota > avail) {
        if (api > api_min)
            api = lmax(api_min, (avail - ota) / per_api);
        if (api * per_api + ota > avail)
            ota = avail - api * per_api;
    }
    b->api_max = (int)api;
    b->ota_max = (int)ota;
}

void fd_budget_describe(const struct fd_budget *b, char *buf, size_t len)
{
    char raised[64] = "";
    if (b->raised_from != b->limit)
        snprintf(raised, sizeof(raised), "raised from %ld, ", b->raised_from);
    char hard[32];
    if (b->hard < 0)
        snprintf(hard, sizeof(hard), "unlimited");
    else
        snprintf(hard, sizeof(hard), "%ld", b->hard);
    snprintf(buf, len,
             "open files: limit %ld (%shard %s); reserved %ld for the daemon and %d jobs "
             "(max_parallel %d + %d OTA pushes, %d each); REST API %d connections "
             "(api.max_connections %d), OTA endpoint %d connections (ota.max_connections %d)",
             b->limit, raised, hard, b->reserve, b->jobs, b->jobs - FD_BUDGET_PUSHES,
             FD_BUDGET_PUSHES, FD_BUDGET_PER_JOB, b->api_max, b->api_want, b->ota_max, b->ota_want);
}
