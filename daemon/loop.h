/*
 * loop: the daemon's event loop (epoll) on the loop thread.
 *
 * Owns: file-descriptor handlers, timers (one timerfd each), signals (one
 * signalfd; the signals are blocked in the calling thread, so call
 * loop_signals() before any other thread starts and they inherit the mask),
 * and the worker -> loop message queue: a message is a heap pointer written
 * into a pipe by any thread (loop_post) and handed to the message handler on
 * the loop thread. Ownership of a message moves with it: the poster must not
 * touch it afterwards; the handler (or, for messages still queued when the
 * loop is freed, the destroy callback) frees it.
 *
 * Invariants: every callback runs on the loop thread. A handler or timer may
 * be removed from inside any callback, including its own: removal takes
 * effect at once (no further calls) and the memory is released after the
 * current batch of events.
 */
#ifndef ESPSTATION_LOOP_H
#define ESPSTATION_LOOP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct loop;
struct loop_timer;

typedef void (*loop_fd_fn)(void *ctx, int fd, uint32_t events);
typedef void (*loop_timer_fn)(void *ctx);
typedef void (*loop_signal_fn)(void *ctx, int signo);
typedef void (*loop_msg_fn)(void *ctx, void *msg);

/* Returns 0 and *out, or -errno. */
int loop_new(struct loop **out);
/* Frees the loop, its timers and any queued messages (through the destroy
 * callback). Registered fds are the caller's: they are not closed. NULL allowed. */
void loop_free(struct loop *l);

/* Watches fd for events (EPOLLIN, ...). One handler per fd. 0 or -errno. */
int loop_add_fd(struct loop *l, int fd, uint32_t events, loop_fd_fn fn, void *ctx);
/* Stops watching fd. 0 or -ENOENT. */
int loop_del_fd(struct loop *l, int fd);

/* A timer, disarmed at creation. NULL on failure. */
struct loop_timer *loop_timer_new(struct loop *l, loop_timer_fn fn, void *ctx);
/* Fires after first_ms (>= 1), then every interval_ms (0 = once). Re-arming replaces. */
int loop_timer_arm(struct loop_timer *t, int64_t first_ms, int64_t interval_ms);
void loop_timer_disarm(struct loop_timer *t);
bool loop_timer_armed(const struct loop_timer *t);
void loop_timer_free(struct loop_timer *t); /* NULL allowed */

/* Blocks sigs in the calling thread and delivers them through fn. 0 or -errno. */
int loop_signals(struct loop *l, const int *sigs, size_t n, loop_signal_fn fn, void *ctx);

/* Sets the message handler and the destroy callback for undelivered messages. */
void loop_set_msg_handler(struct loop *l, loop_msg_fn fn, loop_msg_fn destroy, void *ctx);
/* Any thread: queues msg (ownership moves to the loop). 0 or -errno (the caller keeps msg). */
int loop_post(struct loop *l, void *msg);

/* Runs until loop_stop(). 0, or -errno when epoll fails. */
int loop_run(struct loop *l);
void loop_stop(struct loop *l);

/* Monotonic milliseconds. */
int64_t loop_now_ms(void);

#endif
