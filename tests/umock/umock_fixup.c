/*
 * umock_fixup: a tiny LD_PRELOAD shim that umock_station puts in front of
 * libumockdev-preload for the program under test.
 *
 * Why: umockdev backs a mock /dev/ttyUSBn with a symlink to a real
 * /dev/pts/N inside the testbed. Its realpath() wrapper then strips the
 * testbed prefix from "/dev/pts/N", which is shorter than the prefix, and
 * smashes the caller's stack (umockdev 0.17.16). Even without the crash the
 * program would learn it talks to a pty, not to a USB serial port.
 *
 * What: realpath()/canonicalize_file_name() of a /dev path whose testbed
 * node is such a pty symlink answer the path itself, as the kernel does for
 * a real /dev/ttyUSB0 character device. Everything else goes to the next
 * definition (umockdev's wrapper, then libc).
 */
#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

char *realpath(const char *path, char *resolved);
char *__realpath_chk(const char *path, char *resolved, size_t resolvedlen);
char *canonicalize_file_name(const char *path);

/* True if path is /dev/X and the testbed's dev/X is a symlink to /dev/pts/N. */
static int is_mock_pty_node(const char *path)
{
    const char *root = getenv("UMOCKDEV_DIR");
    if (!root || !path || strncmp(path, "/dev/", 5) != 0 || strstr(path, "/.."))
        return 0;
    char node[PATH_MAX], target[PATH_MAX];
    if (snprintf(node, sizeof(node), "%s%s", root, path) >= (int)sizeof(node))
        return 0;
    ssize_t n = readlink(node, target, sizeof(target) - 1);
    if (n <= 0)
        return 0;
    target[n] = '\0';
    return strncmp(target, "/dev/pts/", 9) == 0;
}

static char *answer_self(const char *path, char *resolved)
{
    if (strlen(path) >= PATH_MAX)
        return NULL;
    if (!resolved)
        return strdup(path);
    strcpy(resolved, path);
    return resolved;
}

char *realpath(const char *path, char *resolved)
{
    if (is_mock_pty_node(path))
        return answer_self(path, resolved);
    char *(*next)(const char *, char *) =
        (char *(*)(const char *, char *))dlsym(RTLD_NEXT, "realpath");
    return next ? next(path, resolved) : NULL;
}

char *__realpath_chk(const char *path, char *resolved, size_t resolvedlen)
{
    (void)resolvedlen;
    return realpath(path, resolved);
}

char *canonicalize_file_name(const char *path)
{
    return realpath(path, NULL);
}
