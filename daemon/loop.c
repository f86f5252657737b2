/*
 * loop: see loop.h. Every registration is a struct handle whose pointer is the
 * epoll data; removed handles are unlinked from epoll at once, marked dead and
 * freed after the batch that might still reference them.
 */
#include "loop.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

enum handle_kind { H_FD, H_TIMER, H_SIGNAL, H_MSG };

struct handle {
    enum handle_kind kind;
    int fd;
    bool dead;
    loop_fd_fn fn;
    void *ctx;
    struct handle *next; /* live list, or the graveyard */
};

struct loop_timer {
    struct handle h; /* first member: the handle pointer is the timer pointer */
    struct loop *loop;
    loop_timer_fn fn;
    void *ctx;
    bool armed;
    bool periodic;
};

struct loop {
    int epfd;
    bool stop;
    struct handle *live;
    struct handle *grave;
    /* signals */
    struct handle sig;
    loop_signal_fn sig_fn;
    void *sig_ctx;
    /* messages */
    struct handle msg;
    int msg_wr;
    loop_msg_fn msg_fn, msg_destroy;
    void *msg_ctx;
};

int64_t loop_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int ep_add(struct loop *l, struct handle *h, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = h};
    return epoll_ctl(l->epfd, EPOLL_CTL_ADD, h->fd, &ev) == 0 ? 0 : -errno;
}

int loop_new(struct loop **out)
{
    *out = NULL;
    struct loop *l = calloc(1, sizeof(*l));
    if (!l)
        return -ENOMEM;
    l->sig.fd = -1;
    l->msg.fd = -1;
    l->msg_wr = -1;
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (l->epfd < 0) {
        int e = -errno;
        free(l);
        return e;
    }
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) {
        int e = -errno;
        close(l->epfd);
        free(l);
        return e;
    }
    /* Readers never block; writers (workers) block when the pipe is full. */
    fcntl(p[0], F_SETFL, fcntl(p[0], F_GETFL) | O_NONBLOCK);
    l->msg.kind = H_MSG;
    l->msg.fd = p[0];
    l->msg_wr = p[1];
    int rc = ep_add(l, &l->msg, EPOLLIN);
    if (rc < 0) {
        close(p[0]);
        close(p[1]);
        close(l->epfd);
        free(l);
        return rc;
    }
    *out = l;
    return 0;
}

static void drain_messages(struct loop *l, bool deliver)
{
    void *m;
    for (;;) {
        ssize_t n = read(l->msg.fd, &m, sizeof(m));
        if (n < 0 && errno == EINTR)
            continue;
        if (n != (ssize_t)sizeof(m))
            break; /* pointer writes are atomic (< PIPE_BUF): no partial reads */
        if (deliver && l->msg_fn)
            l->msg_fn(l->msg_ctx, m);
        else if (l->msg_destroy)
            l->msg_destroy(l->msg_ctx, m);
        if (deliver && l->stop)
            break;
    }
}

static void free_handle(struct handle *h)
{
    if (h->kind == H_TIMER || h->kind == H_FD)
        free(h);
}

static void bury(struct loop *l)
{
    while (l->grave) {
        struct handle *h = l->grave;
        l->grave = h->next;
        free_handle(h);
    }
}

void loop_free(struct loop *l)
{
    if (!l)
        return;
    drain_messages(l, false);
    while (l->live) {
        struct handle *h = l->live;
        l->live = h->next;
        if (h->kind == H_TIMER)
            close(h->fd);
        free_handle(h);
    }
    bury(l);
    if (l->sig.fd >= 0)
        close(l->sig.fd);
    close(l->msg.fd);
    close(l->msg_wr);
    close(l->epfd);
    free(l);
}

static void unlink_live(struct loop *l, struct handle *h)
{
    for (struct handle **pp = &l->live; *pp; pp = &(*pp)->next) {
        if (*pp == h) {
            *pp = h->next;
            break;
        }
    }
    epoll_ctl(l->epfd, EPOLL_CTL_DEL, h->fd, NULL);
    h->dead = true;
    h->next = l->grave;
    l->grave = h;
}

int loop_add_fd(struct loop *l, int fd, uint32_t events, loop_fd_fn fn, void *ctx)
{
    struct handle *h = calloc(1, sizeof(*h));
    if (!h)
        return -ENOMEM;
    h->kind = H_FD;
    h->fd = fd;
    h->fn = fn;
    h->ctx = ctx;
    int rc = ep_add(l, h, events);
    if (rc < 0) {
        free(h);
        return rc;
    }
    h->next = l->live;
    l->live = h;
    return 0;
}

int loop_del_fd(struct loop *l, int fd)
{
    for (struct handle *h = l->live; h; h = h->next) {
        if (h->kind == H_FD && h->fd == fd) {
            unlink_live(l, h);
            return 0;
        }
    }
    return -ENOENT;
}

struct loop_timer *loop_timer_new(struct loop *l, loop_timer_fn fn, void *ctx)
{
    struct loop_timer *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->h.kind = H_TIMER;
    t->h.fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
    if (t->h.fd < 0) {
        free(t);
        return NULL;
    }
    t->loop = l;
    t->fn = fn;
    t->ctx = ctx;
    if (ep_add(l, &t->h, EPOLLIN) < 0) {
        close(t->h.fd);
        free(t);
        return NULL;
    }
    t->h.next = l->live;
    l->live = &t->h;
    return t;
}

static struct timespec ms_to_ts(int64_t ms)
{
    struct timespec ts = {.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000};
    return ts;
}

int loop_timer_arm(struct loop_timer *t, int64_t first_ms, int64_t interval_ms)
{
    if (first_ms < 1)
        first_ms = 1;
    struct itimerspec its = {.it_value = ms_to_ts(first_ms), .it_interval = ms_to_ts(interval_ms)};
    if (timerfd_settime(t->h.fd, 0, &its, NULL) != 0)
        return -errno;
    t->armed = true;
    t->periodic = interval_ms > 0;
    return 0;
}

void loop_timer_disarm(struct loop_timer *t)
{
    struct itimerspec its;
    memset(&its, 0, sizeof(its));
    timerfd_settime(t->h.fd, 0, &its, NULL);
    uint64_t n;
    if (read(t->h.fd, &n, sizeof(n)) < 0) {
        /* nothing pending: fine */
    }
    t->armed = false;
}

bool loop_timer_armed(const struct loop_timer *t)
{
    return t->armed;
}

void loop_timer_free(struct loop_timer *t)
{
    if (!t)
        return;
    unlink_live(t->loop, &t->h);
    close(t->h.fd);
}

int loop_signals(struct loop *l, const int *sigs, size_t n, loop_signal_fn fn, void *ctx)
{
    sigset_t set;
    sigemptyset(&set);
    for (size_t i = 0; i < n; i++)
        sigaddset(&set, sigs[i]);
    int rc = pthread_sigmask(SIG_BLOCK, &set, NULL);
    if (rc != 0)
        return -rc;
    int fd = signalfd(l->sig.fd, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    if (fd < 0)
        return -errno;
    if (l->sig.fd < 0) {
        l->sig.kind = H_SIGNAL;
        l->sig.fd = fd;
        rc = ep_add(l, &l->sig, EPOLLIN);
        if (rc < 0)
            return rc;
    }
    l->sig_fn = fn;
    l->sig_ctx = ctx;
    return 0;
}

void loop_set_msg_handler(struct loop *l, loop_msg_fn fn, loop_msg_fn destroy, void *ctx)
{
    l->msg_fn = fn;
    l->msg_destroy = destroy;
    l->msg_ctx = ctx;
}

int loop_post(struct loop *l, void *msg)
{
    for (;;) {
        ssize_t n = write(l->msg_wr, &msg, sizeof(msg));
        if (n == (ssize_t)sizeof(msg))
            return 0;
        if (n < 0 && errno == EINTR)
            continue;
        return n < 0 ? -errno : -EIO;
    }
}

void loop_stop(struct loop *l)
{
    l->stop = true;
}

static void dispatch(struct loop *l, struct handle *h, uint32_t events)
{
    if (h->dead)
        return;
    switch (h->kind) {
    case H_FD:
        h->fn(h->ctx, h->fd, events);
        break;
    case H_TIMER: {
        struct loop_timer *t = (struct loop_timer *)h;
        uint64_t n;
        if (read(h->fd, &n, sizeof(n)) != (ssize_t)sizeof(n))
            return; /* disarmed meanwhile */
        if (!t->periodic)
            t->armed = false;
        t->fn(t->ctx);
        break;
    }
    case H_SIGNAL: {
        struct signalfd_siginfo si;
        while (read(h->fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
            if (l->sig_fn)
                l->sig_fn(l->sig_ctx, (int)si.ssi_signo);
        }
        break;
    }
    case H_MSG:
        drain_messages(l, true);
        break;
    }
}

int loop_run(struct loop *l)
{
    struct epoll_event evs[32];
    l->stop = false;
    while (!l->stop) {
        int n = epoll_wait(l->epfd, evs, 32, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        for (int i = 0; i < n && !l->stop; i++)
            dispatch(l, evs[i].data.ptr, evs[i].events);
        bury(l);
    }
    return 0;
}
