/*
 * sse: GET /api/v1/events, the Server-Sent Events stream.
 *
 * Each client is a callback response with its own byte queue. The station's
 * event hook formats a journal event once and appends it to every client
 * that is "live"; a client that resumes with Last-Event-ID first replays the
 * journal from the store in chunks (records_events_since) and turns live when
 * a chunk comes back short -- all on the loop thread, so nothing is missed or
 * sent twice between the replay and the live events. A client with nothing to
 * send is suspended (MHD_suspend_connection from the content reader) and
 * resumed when bytes arrive; heartbeats (": ping") every 15 s also find dead
 * clients. The non-persisted "slot.progress" event (the full slot object) is
 * coalesced per slot: at once after a state change, at most 4 a second for
 * byte counts.
 *
 * Invariants: a client's queue never exceeds SSE_MAX_QUEUE (a client that
 * falls that far behind is disconnected and resumes by id); every client is
 * freed by MHD's response-free callback, never elsewhere.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "log.h"
#include "loop.h"
#include "records.h"
#include "slot.h"
#include "station.h"
#include "web_priv.h"

#define SSE_MAX_QUEUE (4u * 1024 * 1024)
#define SSE_REPLAY_CHUNK 200
#define SSE_PING_MS 15000
#define SSE_PROGRESS_MS 250

struct sse_client {
    struct web *w;
    struct MHD_Connection *c;
    char *buf;
    size_t off, len, cap;
    int64_t cursor; /* last journal id queued (replay) */
    bool live;      /* caught up: journal events are appended as they happen */
    bool suspended;
    bool closing;
    struct sse_client *prev, *next;
};

static void wake(struct sse_client *cl)
{
    if (cl->suspended) {
        cl->suspended = false;
        MHD_resume_connection(cl->c);
        web_kick(cl->w);
    }
}

static void append(struct sse_client *cl, const char *text, size_t n)
{
    if (cl->closing)
        return;
    if (cl->len - cl->off + n > SSE_MAX_QUEUE) {
        log_msg(LOG_LEVEL_WARN, "event stream: a client fell %u bytes behind: disconnecting it",
                SSE_MAX_QUEUE);
        cl->closing = true;
        wake(cl);
        return;
    }
    if (cl->off > 0 && cl->off == cl->len)
        cl->off = cl->len = 0;
    if (cl->len + n > cl->cap) {
        if (cl->off > 0) {
            memmove(cl->buf, cl->buf + cl->off, cl->len - cl->off);
            cl->len -= cl->off;
            cl->off = 0;
        }
        if (cl->len + n > cl->cap) {
            size_t cap = cl->cap ? cl->cap : 4096;
            while (cap < cl->len + n)
                cap *= 2;
            char *nb = realloc(cl->buf, cap);
            if (!nb) {
                cl->closing = true;
                wake(cl);
                return;
            }
            cl->buf = nb;
            cl->cap = cap;
        }
    }
    memcpy(cl->buf + cl->len, text, n);
    cl->len += n;
    wake(cl);
}

/* "id: N\nevent: kind\ndata: {...}\n\n" (malloc'd; NULL on failure). */
static char *format_event(const struct records_event *e, size_t *n)
{
    struct json_object *o = api_event_json(e);
    if (!o)
        return NULL;
    const char *data =
        json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
    char *out = NULL;
    char id[32] = "";
    /* An event written while the records database was unreachable has no id
     * yet (records_open_journaled): sent without one, the client's
     * Last-Event-ID stays where it was. */
    if (e->id > 0)
        snprintf(id, sizeof(id), "id: %lld\n", (long long)e->id);
    int len = asprintf(&out, "%sevent: %s\ndata: %s\n\n", id, e->kind, data);
    json_object_put(o);
    if (len < 0)
        return NULL;
    *n = (size_t)len;
    return out;
}

struct replay_ctx {
    struct sse_client *cl;
    int n;
};

static int replay_cb(const struct records_event *e, void *ctx)
{
    struct replay_ctx *rc = ctx;
    size_t n;
    char *text = format_event(e, &n);
    if (text) {
        append(rc->cl, text, n);
        free(text);
    }
    rc->cl->cursor = e->id;
    rc->n++;
    return 0;
}

static void refill(struct sse_client *cl)
{
    struct replay_ctx rc = {.cl = cl};
    struct records_error re;
    int got = records_events_since(station_records(cl->w->st), cl->cursor, SSE_REPLAY_CHUNK,
                                   replay_cb, &rc, &re);
    if (got < 0) {
        log_msg(LOG_LEVEL_WARN, "event stream: replay failed: %s", re.message);
        cl->closing = true;
        return;
    }
    if (rc.n < SSE_REPLAY_CHUNK)
        cl->live = true;
}

static ssize_t reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    struct sse_client *cl = cls;
    if (cl->closing)
        return MHD_CONTENT_READER_END_WITH_ERROR;
    if (cl->off == cl->len && !cl->live)
        refill(cl);
    if (cl->off < cl->len) {
        size_t n = cl->len - cl->off;
        if (n > max)
            n = max;
        memcpy(buf, cl->buf + cl->off, n);
        cl->off += n;
        if (cl->off == cl->len)
            cl->off = cl->len = 0;
        return (ssize_t)n;
    }
    if (cl->closing)
        return MHD_CONTENT_READER_END_WITH_ERROR;
    cl->suspended = true;
    MHD_suspend_connection(cl->c);
    return 0;
}

static void client_free(void *cls)
{
    struct sse_client *cl = cls;
    struct web *w = cl->w;
    if (cl->prev)
        cl->prev->next = cl->next;
    else
        w->clients = cl->next;
    if (cl->next)
        cl->next->prev = cl->prev;
    w->n_clients--;
    api_metrics(w->api)->sse_clients = w->n_clients;
    free(cl->buf);
    free(cl);
}

struct MHD_Response *sse_response(struct web *w, struct MHD_Connection *c, int64_t after)
{
    struct sse_client *cl = calloc(1, sizeof(*cl));
    if (!cl)
        return NULL;
    cl->w = w;
    cl->c = c;
    int64_t last = 0;
    struct records_error re;
    if (records_events_last_id(station_records(w->st), &last, &re) < 0)
        last = 0;
    if (after >= 0 && after < last) {
        cl->cursor = after;
        cl->live = false;
    } else {
        cl->cursor = last;
        cl->live = true;
    }
    char hello[128];
    int n =
        snprintf(hello, sizeof(hello),
                 "retry: 2000\nevent: hello\ndata: {\"last_event_id\":%lld}\n\n", (long long)last);
    append(cl, hello, (size_t)n);
    struct MHD_Response *r =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, reader, cl, client_free);
    if (!r) {
        free(cl->buf);
        free(cl);
        return NULL;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream; charset=utf-8");
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    MHD_add_response_header(r, "X-Accel-Buffering", "no");
    cl->next = w->clients;
    if (w->clients)
        w->clients->prev = cl;
    w->clients = cl;
    w->n_clients++;
    api_metrics(w->api)->sse_clients = w->n_clients;
    return r;
}

void sse_on_event(void *ctx, const struct records_event *e)
{
    struct web *w = ctx;
    api_invalidate(w->api);
    api_note_event(w->api, e);
    if (!w->clients)
        return;
    size_t n = 0;
    char *text = NULL;
    for (struct sse_client *cl = w->clients; cl; cl = cl->next) {
        if (!cl->live || cl->closing)
            continue; /* replaying: the store has this event for it */
        if (!text && !(text = format_event(e, &n)))
            return;
        append(cl, text, n);
        if (e->id > 0)
            cl->cursor = e->id;
    }
    free(text);
}

/* ---- slot.progress ---------------------------------------------------------------------- */

static struct web_slot_mark *mark_of(struct web *w, const struct slot *s)
{
    for (size_t i = 0; i < w->n_marks; i++)
        if (w->marks[i].s == s)
            return &w->marks[i];
    if (w->n_marks == w->cap_marks) {
        size_t cap = w->cap_marks ? w->cap_marks * 2 : 16;
        struct web_slot_mark *v = realloc(w->marks, cap * sizeof(*v));
        if (!v)
            return NULL;
        w->marks = v;
        w->cap_marks = cap;
    }
    struct web_slot_mark *m = &w->marks[w->n_marks++];
    memset(m, 0, sizeof(*m));
    m->s = s;
    return m;
}

static void arm_flush(struct web *w, int64_t at)
{
    int64_t now = loop_now_ms();
    if (loop_timer_armed(w->flush_timer) && w->flush_at_ms && w->flush_at_ms <= at)
        return;
    w->flush_at_ms = at;
    loop_timer_arm(w->flush_timer, at - now < 1 ? 1 : at - now, 0);
}

static void flush(void *ctx)
{
    struct web *w = ctx;
    w->flush_at_ms = 0;
    int64_t now = loop_now_ms();
    for (size_t i = 0; i < w->n_marks; i++) {
        struct web_slot_mark *m = &w->marks[i];
        if (!m->dirty)
            continue;
        m->dirty = false;
        m->last_ms = now;
        if (!w->clients)
            continue;
        struct json_object *o = api_slot_json(w->st, m->s);
        if (!o)
            continue;
        char *text = NULL;
        int n = asprintf(&text, "event: slot.progress\ndata: %s\n\n",
                         json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
                                                               JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(o);
        if (n < 0)
            continue;
        for (struct sse_client *cl = w->clients; cl; cl = cl->next)
            if (cl->live && !cl->closing)
                append(cl, text, (size_t)n);
        free(text);
    }
}

void sse_on_slot(void *ctx, const struct slot *s, bool progress)
{
    struct web *w = ctx;
    api_invalidate(w->api);
    if (!w->clients)
        return;
    struct web_slot_mark *m = mark_of(w, s);
    if (!m)
        return;
    m->dirty = true;
    int64_t now = loop_now_ms();
    if (!progress || now - m->last_ms >= SSE_PROGRESS_MS)
        arm_flush(w, now + 1);
    else
        arm_flush(w, m->last_ms + SSE_PROGRESS_MS);
}

/* ---- heartbeats and life cycle ------------------------------------------------------------ */

static void ping(void *ctx)
{
    struct web *w = ctx;
    for (struct sse_client *cl = w->clients; cl; cl = cl->next)
        append(cl, ": ping\n\n", 8);
}

int sse_init(struct web *w)
{
    w->ping_timer = loop_timer_new(w->loop, ping, w);
    w->flush_timer = loop_timer_new(w->loop, flush, w);
    if (!w->ping_timer || !w->flush_timer)
        return -ENOMEM;
    return loop_timer_arm(w->ping_timer, SSE_PING_MS, SSE_PING_MS);
}

void sse_fini(struct web *w)
{
    for (struct sse_client *cl = w->clients; cl; cl = cl->next) {
        cl->closing = true;
        if (cl->suspended) {
            cl->suspended = false;
            MHD_resume_connection(cl->c);
        }
    }
    if (w->ping_timer)
        loop_timer_disarm(w->ping_timer);
    if (w->flush_timer)
        loop_timer_disarm(w->flush_timer);
}
