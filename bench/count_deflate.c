/*
 * count_deflate: an LD_PRELOAD shim that counts zlib compressions in a
 * process, independently of the program's own logs (bench_daemon.sh).
 *
 *   COUNT_DEFLATE_DIR=DIR LD_PRELOAD=.../libcount_deflate.so PROG ...
 *
 * Wraps deflateInit_, deflateInit2_, compress and compress2 (the real ones
 * are found with dlsym(RTLD_NEXT)). Every process that loads the shim with
 * COUNT_DEFLATE_DIR set appends to DIR/deflate.<pid>:
 *   load exe=<path>                    once, when the shim is loaded
 *   deflate <function> len=<n> tid=<t> for each compression started
 * one write(2) per line on an O_APPEND descriptor, so the file is current at
 * any moment ("on demand": count the lines while the program runs) and
 * complete at exit. The "load" line proves the shim was active: a zero count
 * is only evidence when it is there.
 *
 * Invariant: one compression is counted once. compress/compress2 call
 * deflateInit_ inside libz; whether that inner call goes through the PLT
 * (and so through this shim) depends on how libz was linked, so a
 * thread-local depth suppresses the inner count.
 * Never sanitized (it is preloaded ahead of everything).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <zlib.h>

static int out_fd = -1;
static __thread int depth;

static void emit(const char *line, size_t n)
{
    if (out_fd >= 0)
        (void)!write(out_fd, line, n);
}

__attribute__((constructor)) static void count_deflate_init(void)
{
    const char *dir = getenv("COUNT_DEFLATE_DIR");
    if (!dir || !*dir)
        return;
    char path[4096];
    int n = snprintf(path, sizeof(path), "%s/deflate.%ld", dir, (long)getpid());
    if (n < 0 || (size_t)n >= sizeof(path))
        return;
    out_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    char exe[1024];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    exe[len > 0 ? len : 0] = '\0';
    char line[1200];
    n = snprintf(line, sizeof(line), "load exe=%s\n", exe);
    if (n > 0)
        emit(line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
}

static void count(const char *fn, unsigned long len)
{
    if (depth > 0)
        return;
    char line[160];
    int n = snprintf(line, sizeof(line), "deflate %s len=%lu tid=%ld\n", fn, len,
                     (long)syscall(SYS_gettid));
    if (n > 0)
        emit(line, (size_t)n);
}

static void *next(const char *name)
{
    void *f = dlsym(RTLD_NEXT, name);
    if (!f) {
        static const char msg[] = "count_deflate: a zlib symbol is missing\n";
        (void)!write(STDERR_FILENO, msg, sizeof(msg) - 1);
        abort();
    }
    return f;
}

int deflateInit_(z_streamp strm, int level, const char *version, int stream_size)
{
    static int (*real)(z_streamp, int, const char *, int);
    if (!real)
        real = (int (*)(z_streamp, int, const char *, int))next("deflateInit_");
    count("deflateInit_", 0);
    depth++;
    int rc = real(strm, level, version, stream_size);
    depth--;
    return rc;
}

int deflateInit2_(z_streamp strm, int level, int method, int window_bits, int mem_level,
                  int strategy, const char *version, int stream_size)
{
    static int (*real)(z_streamp, int, int, int, int, int, const char *, int);
    if (!real)
        real =
            (int (*)(z_streamp, int, int, int, int, int, const char *, int))next("deflateInit2_");
    count("deflateInit2_", 0);
    depth++;
    int rc = real(strm, level, method, window_bits, mem_level, strategy, version, stream_size);
    depth--;
    return rc;
}

int compress2(Bytef *dest, uLongf *dest_len, const Bytef *source, uLong source_len, int level)
{
    static int (*real)(Bytef *, uLongf *, const Bytef *, uLong, int);
    if (!real)
        real = (int (*)(Bytef *, uLongf *, const Bytef *, uLong, int))next("compress2");
    count("compress2", source_len);
    depth++;
    int rc = real(dest, dest_len, source, source_len, level);
    depth--;
    return rc;
}

int compress(Bytef *dest, uLongf *dest_len, const Bytef *source, uLong source_len)
{
    static int (*real)(Bytef *, uLongf *, const Bytef *, uLong);
    if (!real)
        real = (int (*)(Bytef *, uLongf *, const Bytef *, uLong))next("compress");
    count("compress", source_len);
    depth++;
    int rc = real(dest, dest_len, source, source_len);
    depth--;
    return rc;
}
