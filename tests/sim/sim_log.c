/*
 * sim_log: DIR/sim.log. One line per event, prefixed with the milliseconds
 * since the simulator started (CLOCK_MONOTONIC), flushed at every line so a
 * test can tail it while the board runs. With sim_log_set_mono() (--log-mono)
 * each line also carries the absolute CLOCK_MONOTONIC time, "@<s>.<us>", so
 * it can be set against other processes' logs on the same clock
 * (bench/bench_daemon.sh). Also owns the clock and the opcode names used in
 * log lines.
 */
#include <stdarg.h>
#include <stdio.h>
#include <time.h>

#include "sim.h"

static FILE *log_file;
static int64_t log_t0;
static bool log_mono;

int64_t sim_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int sim_log_open(const char *path)
{
    log_t0 = sim_now();
    log_file = fopen(path, "w");
    if (!log_file)
        return -1;
    setvbuf(log_file, NULL, _IOLBF, 0);
    return 0;
}

void sim_log_set_mono(bool on)
{
    log_mono = on;
}

void sim_log_close(void)
{
    if (log_file)
        fclose(log_file);
    log_file = NULL;
}

void sim_log(const char *fmt, ...)
{
    if (!log_file)
        return;
    int64_t now = sim_now();
    int64_t ms = (now - log_t0) / SIM_NS_PER_MS;
    fprintf(log_file, "%lld ", (long long)ms);
    if (log_mono)
        fprintf(log_file, "@%lld.%06lld ", (long long)(now / 1000000000LL),
                (long long)(now % 1000000000LL / 1000));
    va_list ap;
    va_start(ap, fmt);
    vfprintf(log_file, fmt, ap);
    va_end(ap);
    fputc('\n', log_file);
}

const char *sim_op_name(uint8_t op)
{
    switch (op) {
    case 0x02:
        return "FLASH_BEGIN";
    case 0x03:
        return "FLASH_DATA";
    case 0x04:
        return "FLASH_END";
    case 0x05:
        return "MEM_BEGIN";
    case 0x06:
        return "MEM_END";
    case 0x07:
        return "MEM_DATA";
    case 0x08:
        return "SYNC";
    case 0x09:
        return "WRITE_REG";
    case 0x0A:
        return "READ_REG";
    case 0x0B:
        return "SPI_SET_PARAMS";
    case 0x0D:
        return "SPI_ATTACH";
    case 0x0E:
        return "READ_FLASH_SLOW";
    case 0x0F:
        return "CHANGE_BAUDRATE";
    case 0x10:
        return "FLASH_DEFL_BEGIN";
    case 0x11:
        return "FLASH_DEFL_DATA";
    case 0x12:
        return "FLASH_DEFL_END";
    case 0x13:
        return "SPI_FLASH_MD5";
    case 0x14:
        return "GET_SECURITY_INFO";
    case 0xD0:
        return "ERASE_FLASH";
    case 0xD1:
        return "ERASE_REGION";
    case 0xD2:
        return "READ_FLASH";
    case 0xD3:
        return "RUN_USER_CODE";
    default:
        return "UNKNOWN";
    }
}
