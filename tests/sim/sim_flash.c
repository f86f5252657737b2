/*
 * sim_flash: the SPI NOR flash model. DIR/flash.bin is mapped shared, so
 * every erase/program is visible in the file at once (tests compare it byte
 * for byte). NOR semantics: erase sets 0xFF, programming can only clear
 * bits (new = old & data), so writing over stale data without an erase
 * shows up as corruption, exactly as on a real chip.
 * Timing (before the link-speed factor): 4 KiB sector erase 45 ms, 64 KiB
 * block erase 150 ms, 256-byte page program 0.4 ms: the typical tSE, tBE2 and
 * tPP of Winbond's W25Q32 datasheets (the maxima are 400 ms, 2 s and 3 ms), so
 * erasing and programming 1 MiB takes 16 x 150 + 4096 x 0.4 = 4.04 s. Functions
 * return the time an operation takes; the personas decide whether the host waits.
 */
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sim.h"

#define SECTOR 0x1000u
#define BLOCK 0x10000u
#define PAGE 0x100u
#define SECTOR_ERASE_NS (45 * SIM_NS_PER_MS)
#define BLOCK_ERASE_NS (150 * SIM_NS_PER_MS)
#define PAGE_PROGRAM_NS (400 * 1000LL)

int sim_flash_open(struct sim_flash *fl, const char *path, uint32_t size, double speed)
{
    memset(fl, 0, sizeof(*fl));
    fl->fd = -1;
    fl->speed = speed;
    fl->size = size;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return -1;
    struct stat st;
    if (fstat(fd, &st) != 0 || ftruncate(fd, (off_t)size) != 0) {
        close(fd);
        return -1;
    }
    void *m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED) {
        close(fd);
        return -1;
    }
    fl->fd = fd;
    fl->mem = m;
    if ((uint64_t)st.st_size < size) /* new file or grown: fresh flash is erased */
        memset(fl->mem + st.st_size, 0xFF, size - (size_t)st.st_size);
    return 0;
}

void sim_flash_close(struct sim_flash *fl)
{
    if (fl->mem) {
        msync(fl->mem, fl->size, MS_SYNC);
        munmap(fl->mem, fl->size);
    }
    if (fl->fd >= 0)
        close(fl->fd);
    fl->mem = NULL;
    fl->fd = -1;
}

int64_t sim_flash_scaled(const struct sim_flash *fl, int64_t ns)
{
    if (fl->speed <= 0)
        return 0;
    return (int64_t)((double)ns / fl->speed);
}

bool sim_flash_in_bounds(const struct sim_flash *fl, uint32_t addr, uint64_t len)
{
    return (uint64_t)addr + len <= fl->size;
}

int64_t sim_flash_erase(struct sim_flash *fl, uint32_t addr, uint32_t len, bool use_blocks)
{
    if (len == 0)
        return 0;
    uint64_t start = addr & ~(uint64_t)(SECTOR - 1);
    uint64_t end = ((uint64_t)addr + len + SECTOR - 1) & ~(uint64_t)(SECTOR - 1);
    if (end > fl->size)
        end = fl->size;
    int64_t t = 0;
    while (start < end) {
        uint64_t step = SECTOR;
        if (use_blocks && start % BLOCK == 0 && end - start >= BLOCK) {
            step = BLOCK;
            t += BLOCK_ERASE_NS;
        } else {
            t += SECTOR_ERASE_NS;
        }
        memset(fl->mem + start, 0xFF, (size_t)step);
        fl->bytes_erased += step;
        start += step;
    }
    return sim_flash_scaled(fl, t);
}

int64_t sim_flash_program(struct sim_flash *fl, uint32_t addr, const uint8_t *data, size_t len)
{
    if (len == 0 || !sim_flash_in_bounds(fl, addr, len))
        return 0;
    uint8_t *p = fl->mem + addr;
    for (size_t i = 0; i < len; i++)
        p[i] &= data[i];
    fl->bytes_written += len;
    uint64_t first = addr / PAGE, last = ((uint64_t)addr + len - 1) / PAGE;
    return sim_flash_scaled(fl, (int64_t)(last - first + 1) * PAGE_PROGRAM_NS);
}
