/*
 * sim_baud: the baud the host has set on the pty. A pty keeps one termios
 * for all its slave fds, so the board reads it from its own slave fd.
 * TCGETS2 gives arbitrary rates (BOTHER) exactly; this file includes only the
 * kernel's termbits because they clash with glibc's <termios.h>.
 */
#include <asm/ioctls.h>
#include <asm/termbits.h>

#include "sim.h"

int ioctl(int fd, unsigned long request, ...);

uint32_t sim_baud_get(int fd)
{
    struct termios2 t2;
    if (fd < 0 || ioctl(fd, TCGETS2, &t2) != 0)
        return 0;
    return (uint32_t)t2.c_ospeed;
}
