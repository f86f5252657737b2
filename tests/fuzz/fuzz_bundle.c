/*
 * fuzz_bundle: the firmware bundle extractor (web/bundle.c) over arbitrary
 * bytes as a tar / tar.gz / zip archive, with small limits so the entry and
 * unpacked-size refusals are reached. Each input is extracted into a fresh
 * directory under a private temporary directory, which is then walked:
 * nothing may exist but plain files and directories with safe names at most
 * two levels deep, the unpacked bytes on disk never exceed the limit, the
 * result agrees with the return code, and messages are printable. Each input
 * is extracted a second time with allow_build (a build's output: directories
 * up to BUNDLE_MAX_DEPTH deep, names safe or '.' and a safe name). Must never
 * crash, hang or leak.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bundle.h"
#include "catalog.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond)
{
    if (!cond)
        abort();
}

static void check_text(const char *s)
{
    check(s != NULL);
    for (const char *p = s; *p; p++)
        check((unsigned char)*p >= 0x20 && *p != 0x7f);
}

static char base[PATH_MAX / 2];

static void extract_once(const uint8_t *data, size_t size);

static void cleanup_base(void)
{
    rmdir(base);
}

static bool build_mode;

/* A name extraction may create: safe, or (build mode) '.' and a safe name. */
static bool name_ok(const char *s)
{
    return catalog_name_valid(s) || (build_mode && s[0] == '.' && catalog_name_valid(s + 1));
}

/* Walks dir: checks every entry, adds up file sizes, removes everything. */
static uint64_t walk_and_remove(const char *dir, int depth)
{
    uint64_t total = 0;
    DIR *d = opendir(dir);
    check(d != NULL);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        check(name_ok(e->d_name));
        char p[PATH_MAX];
        snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
        struct stat st;
        check(lstat(p, &st) == 0);
        if (S_ISDIR(st.st_mode)) {
            /* only "dir/file" below the extraction root; a build tree's files at most
             * BUNDLE_MAX_DEPTH components deep */
            check(build_mode ? depth < BUNDLE_MAX_DEPTH : depth == 1);
            total += walk_and_remove(p, depth + 1);
            check(rmdir(p) == 0);
        } else {
            check(S_ISREG(st.st_mode));
            total += (uint64_t)st.st_size;
            check(unlink(p) == 0);
        }
    }
    closedir(d);
    return total;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!base[0]) {
        const char *tmp = getenv("TMPDIR");
        snprintf(base, sizeof(base), "%s/fuzz_bundle.XXXXXX", tmp && *tmp ? tmp : "/tmp");
        check(mkdtemp(base) != NULL);
        atexit(cleanup_base);
    }
    for (int pass = 0; pass < 2; pass++) {
        build_mode = pass == 1;
        extract_once(data, size);
    }
    return 0;
}

static void extract_once(const uint8_t *data, size_t size)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s/x", base);
    check(mkdir(dir, 0700) == 0);

    const struct bundle_limits lim = {
        .max_entries = 64, .max_bytes = 256 * 1024, .allow_build = build_mode};
    struct bundle_result res;
    int rc = bundle_extract_mem(data, size, dir, &lim, &res);
    check(rc == 0 || rc == -EINVAL || rc == -EFBIG || rc == -ENOMEM);
    check(res.bytes <= lim.max_bytes);
    check(res.n_entries <= lim.max_entries + 1);
    check(!res.build || build_mode);
    if (rc == 0) {
        check(res.err[0] == '\0');
        check(res.root[0] == '\0' || catalog_name_valid(res.root));
        char m[PATH_MAX];
        snprintf(m, sizeof(m), "%s/%s%smanifest.json", dir, res.root, res.root[0] ? "/" : "");
        struct stat st;
        check(res.build || (lstat(m, &st) == 0 && S_ISREG(st.st_mode)));
        check(res.n_warnings <= BUNDLE_MAX_WARNINGS + 1);
        for (size_t i = 0; i < res.n_warnings; i++)
            check_text(res.warnings[i]);
    } else {
        check(res.err[0] != '\0');
        check_text(res.err);
        check(res.n_warnings == 0 && res.warnings == NULL);
    }
    check(walk_and_remove(dir, 1) <= lim.max_bytes);
    check(rmdir(dir) == 0);
    bundle_result_free(&res);
}
