/*
 * test_daemon_loop: the event loop: messages posted from several threads all
 * arrive once, on the loop thread, and undelivered ones are destroyed at free;
 * one-shot and periodic timers; a handler removing itself; signals through
 * signalfd.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "loop.h"

#define THREADS 4
#define PER_THREAD 2000

struct ctx {
    struct loop *l;
    int got[THREADS];
    int total;
    int destroyed;
    pthread_t loop_thread;
    bool wrong_thread;
    int fired, periodic;
    struct loop_timer *per;
    int sig;
    int fd_calls;
    int pipefd[2];
};

struct msg {
    int thread;
    int seq;
};

static void on_msg(void *c_, void *m_)
{
    struct ctx *c = c_;
    struct msg *m = m_;
    if (!pthread_equal(pthread_self(), c->loop_thread))
        c->wrong_thread = true;
    assert_int_equal(m->seq, c->got[m->thread]); /* in order per thread */
    c->got[m->thread]++;
    if (++c->total == THREADS * PER_THREAD)
        loop_stop(c->l);
    free(m);
}

static void on_destroy(void *c_, void *m_)
{
    struct ctx *c = c_;
    c->destroyed++;
    free(m_);
}

struct targ {
    struct ctx *c;
    int idx;
};

static void *poster(void *a_)
{
    struct targ *a = a_;
    for (int i = 0; i < PER_THREAD; i++) {
        struct msg *m = malloc(sizeof(*m));
        m->thread = a->idx;
        m->seq = i;
        if (loop_post(a->c->l, m) < 0)
            free(m);
    }
    return NULL;
}

static void test_messages(void **state)
{
    (void)state;
    struct ctx c;
    memset(&c, 0, sizeof(c));
    assert_int_equal(loop_new(&c.l), 0);
    c.loop_thread = pthread_self();
    loop_set_msg_handler(c.l, on_msg, on_destroy, &c);
    pthread_t th[THREADS];
    struct targ a[THREADS];
    for (int i = 0; i < THREADS; i++) {
        a[i].c = &c;
        a[i].idx = i;
        pthread_create(&th[i], NULL, poster, &a[i]);
    }
    assert_int_equal(loop_run(c.l), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    assert_false(c.wrong_thread);
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(c.got[i], PER_THREAD);
    /* queued but never delivered: destroyed by loop_free */
    for (int i = 0; i < 5; i++) {
        struct msg *m = calloc(1, sizeof(*m));
        assert_int_equal(loop_post(c.l, m), 0);
    }
    loop_free(c.l);
    assert_int_equal(c.destroyed, 5);
}

static void on_once(void *c_)
{
    struct ctx *c = c_;
    c->fired++;
}

static void on_periodic(void *c_)
{
    struct ctx *c = c_;
    if (++c->periodic == 3) {
        loop_timer_free(c->per); /* removing itself from its own callback */
        c->per = NULL;
        loop_stop(c->l);
    }
}

static void test_timers(void **state)
{
    (void)state;
    struct ctx c;
    memset(&c, 0, sizeof(c));
    assert_int_equal(loop_new(&c.l), 0);
    struct loop_timer *once = loop_timer_new(c.l, on_once, &c);
    struct loop_timer *never = loop_timer_new(c.l, on_once, &c);
    c.per = loop_timer_new(c.l, on_periodic, &c);
    assert_non_null(once);
    assert_int_equal(loop_timer_arm(once, 5, 0), 0);
    assert_int_equal(loop_timer_arm(never, 5, 0), 0);
    loop_timer_disarm(never);
    assert_false(loop_timer_armed(never));
    assert_int_equal(loop_timer_arm(c.per, 20, 10), 0);
    int64_t t0 = loop_now_ms();
    assert_int_equal(loop_run(c.l), 0);
    assert_true(loop_now_ms() - t0 >= 40);
    assert_int_equal(c.fired, 1);
    assert_false(loop_timer_armed(once));
    assert_int_equal(c.periodic, 3);
    loop_timer_free(once);
    loop_timer_free(never);
    loop_free(c.l);
}

static void on_fd(void *c_, int fd, uint32_t ev)
{
    struct ctx *c = c_;
    (void)ev;
    c->fd_calls++;
    char b[16];
    if (read(fd, b, sizeof(b)) < 0) {
        /* nothing */
    }
    loop_del_fd(c->l, fd); /* one call only, although more data follows */
}

static void on_signal(void *c_, int signo)
{
    struct ctx *c = c_;
    c->sig = signo;
    loop_stop(c->l);
}

static void test_fd_and_signal(void **state)
{
    (void)state;
    struct ctx c;
    memset(&c, 0, sizeof(c));
    assert_int_equal(loop_new(&c.l), 0);
    assert_int_equal(pipe(c.pipefd), 0);
    assert_int_equal(loop_add_fd(c.l, c.pipefd[0], EPOLLIN, on_fd, &c), 0);
    assert_int_equal(loop_del_fd(c.l, 12345), -ENOENT);
    int sigs[] = {SIGHUP};
    assert_int_equal(loop_signals(c.l, sigs, 1, on_signal, &c), 0);
    assert_int_equal(write(c.pipefd[1], "abc", 3), 3);
    struct loop_timer *t = loop_timer_new(c.l, on_once, &c);
    loop_timer_arm(t, 30, 0);
    raise(SIGHUP); /* blocked: delivered through the signalfd */
    assert_int_equal(loop_run(c.l), 0);
    assert_int_equal(c.sig, SIGHUP);
    assert_int_equal(write(c.pipefd[1], "def", 3), 3);
    loop_timer_free(t);
    assert_int_equal(c.fd_calls, 1);
    loop_free(c.l);
    close(c.pipefd[0]);
    close(c.pipefd[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_messages),
        cmocka_unit_test(test_timers),
        cmocka_unit_test(test_fd_and_signal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
