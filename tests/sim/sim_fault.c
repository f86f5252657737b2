/*
 * sim_fault: parsing and bookkeeping of the fault knobs (--fault KIND[:ARG]).
 * The decisions that need board state (when a counter is bumped, what a
 * fault does) live with the code that counts; this module only answers
 * "does fault X apply to event N".
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

static int parse_num(const char *arg, unsigned long long *out)
{
    if (!arg || !*arg)
        return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(arg, &end, 0);
    if (errno || *end)
        return -1;
    *out = v;
    return 0;
}

int sim_fault_parse(struct sim_faults *f, const char *spec)
{
    char kind[64];
    const char *colon = strchr(spec, ':');
    size_t klen = colon ? (size_t)(colon - spec) : strlen(spec);
    if (klen >= sizeof(kind))
        goto bad;
    memcpy(kind, spec, klen);
    kind[klen] = '\0';
    const char *arg = colon ? colon + 1 : NULL;
    unsigned long long v = 0;

    if (strcmp(kind, "drop-reply") == 0 || strcmp(kind, "corrupt-reply") == 0) {
        if (parse_num(arg, &v) || v == 0 || v > 0xFFFFFFFFu)
            goto bad;
        bool drop = kind[0] == 'd';
        size_t *n = drop ? &f->n_drop_reply : &f->n_corrupt_reply;
        unsigned *list = drop ? f->drop_reply : f->corrupt_reply;
        if (*n >= SIM_MAX_FAULT_ARGS)
            goto bad;
        list[(*n)++] = (unsigned)v;
    } else if (strcmp(kind, "stall") == 0) {
        if (parse_num(arg, &v) || v == 0 || v > 0xFFFFFFFFu)
            goto bad;
        f->stall_at = (unsigned)v;
    } else if (strcmp(kind, "disconnect") == 0) {
        if (parse_num(arg, &v) || v == 0)
            goto bad;
        f->disconnect_bytes = v;
    } else if (strcmp(kind, "refuse-sync") == 0) {
        if (parse_num(arg, &v) || v > 0xFFFFFFFFu)
            goto bad;
        f->refuse_sync = (unsigned)v;
    } else if (strcmp(kind, "boot-mode") == 0) {
        if (parse_num(arg, &v) || v > 0xFF)
            goto bad;
        f->boot_mode = (int)v;
    } else if (strcmp(kind, "write-error") == 0) {
        if (!arg)
            goto bad;
        char *end;
        errno = 0;
        unsigned long a = strtoul(arg, &end, 16); /* hex, with or without 0x */
        if (errno || *end || a > 0xFFFFFFFFul || f->n_write_error >= SIM_MAX_FAULT_ARGS)
            goto bad;
        f->write_error_addr[f->n_write_error++] = (uint32_t)a;
    } else if (strcmp(kind, "noisy-above") == 0) {
        if (parse_num(arg, &v) || v == 0 || v > 0xFFFFFFFFu)
            goto bad;
        f->noisy_above = (uint32_t)v;
    } else if (strcmp(kind, "flash-dead") == 0) {
        unsigned long id = 0xFFFFFF;
        if (arg) {
            char *end;
            errno = 0;
            id = strtoul(arg, &end, 16); /* hex, with or without 0x */
            if (errno || !*arg || *end || id > 0xFFFFFFul)
                goto bad;
        }
        f->flash_dead = true;
        f->flash_dead_id = (uint32_t)id;
    } else if (strcmp(kind, "flash-asleep") == 0 && !arg) {
        f->flash_asleep = true;
    } else if (strcmp(kind, "md5-mismatch") == 0 && !arg) {
        f->md5_mismatch = true;
    } else if (strcmp(kind, "stub-no-ohai") == 0 && !arg) {
        f->stub_no_ohai = true;
    } else if (strcmp(kind, "silent") == 0 && !arg) {
        f->silent = true;
    } else if (strcmp(kind, "no-download-banner-answer") == 0 && !arg) {
        f->no_download_answer = true;
    } else {
        goto bad;
    }
    return 0;
bad:
    fprintf(stderr, "esp_sim: bad --fault '%s'\n", spec);
    return -1;
}

static bool in_list(const unsigned *list, size_t n, unsigned v)
{
    for (size_t i = 0; i < n; i++)
        if (list[i] == v)
            return true;
    return false;
}

bool sim_fault_drop_reply(struct sim_faults *f, unsigned n)
{
    return in_list(f->drop_reply, f->n_drop_reply, n);
}

bool sim_fault_corrupt_reply(struct sim_faults *f, unsigned n)
{
    return in_list(f->corrupt_reply, f->n_corrupt_reply, n);
}

bool sim_fault_write_error(const struct sim_faults *f, uint32_t addr, uint32_t len)
{
    for (size_t i = 0; i < f->n_write_error; i++) {
        uint32_t a = f->write_error_addr[i];
        if (a >= addr && (uint64_t)a < (uint64_t)addr + len)
            return true;
    }
    return false;
}

uint8_t sim_fault_noisy(struct sim_faults *f, uint8_t byte, uint32_t board_baud)
{
    if (!f->noisy_above || board_baud <= f->noisy_above)
        return byte;
    f->noisy_bytes++;
    if (f->noisy_bytes % SIM_NOISY_PERIOD != 0)
        return byte;
    if (!f->noisy_fired) {
        f->noisy_fired = true;
        sim_log("fault noisy-above fired (board at %u baud > %u: a bit flipped in 1 of every "
                "%u host bytes)",
                board_baud, f->noisy_above, SIM_NOISY_PERIOD);
    }
    /* walk the flipped bit through the byte so that both SLIP specials and data suffer */
    return (uint8_t)(byte ^ (1u << ((f->noisy_bytes / SIM_NOISY_PERIOD) % 8)));
}
