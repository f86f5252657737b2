/*
 * line_fw_priv.h: what line_fw.c (fetching) and line_fw_publish.c (publishing)
 * share. Not for other modules: they use line_fw.h.
 */
#ifndef ESPSTATION_LINE_FW_PRIV_H
#define ESPSTATION_LINE_FW_PRIV_H

#include <stdatomic.h>

#include "line_fw.h"

struct lf_fetch;
struct loop_timer;

struct line_fw {
    struct station *st;
    struct loop *loop;
    int pipe[2];
    atomic_bool stopping;
    struct lf_fetch *fetches;
    struct loop_timer *timer;
};

#endif
