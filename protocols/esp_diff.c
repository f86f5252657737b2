/*
 * esp_diff: the sector-difference search for re-flashing only what changed
 * (see esp_diff.h for the steps and the give-up rules).
 *
 * Owns nothing but the run list it returns. Every MD5 request goes through
 * the caller's callback; the expected MD5s are computed here from the bytes
 * to be written. Invariants: a range marked known differs for sure (the chip
 * said so for it or for a part of it), and only for such a range is "first half
 * equal => second half differs" inferred; a range holding a part that differs
 * differs too, so the probe's and the samples' answers are never asked again.
 */
#include "esp_diff.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

const char *esp_diff_verdict_to_string(enum esp_diff_verdict v)
{
    switch (v) {
    case ESP_DIFF_SAME:
        return "same";
    case ESP_DIFF_SECTORS:
        return "sectors";
    case ESP_DIFF_FULL:
        return "full";
    }
    return "unknown";
}

static void host_md5(const uint8_t *data, size_t len, uint8_t out[16])
{
    static const uint8_t empty[1];
    unsigned int n = 16;
    EVP_Digest(len ? data : empty, len, out, &n, EVP_md5(), NULL);
}

/* MD5 of len bytes of 0xFF: what an erased range hashes to. */
static void erased_md5(size_t len, uint8_t out[16])
{
    uint8_t ff[4096];
    unsigned int n = 16;
    memset(ff, 0xFF, sizeof(ff));
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx) {
        memset(out, 0, 16); /* matches no flash answer in practice: no blank shortcut */
        return;
    }
    EVP_DigestInit_ex(ctx, EVP_md5(), NULL);
    for (size_t k; len; len -= k) {
        k = len < sizeof(ff) ? len : sizeof(ff);
        EVP_DigestUpdate(ctx, ff, k);
    }
    EVP_DigestFinal_ex(ctx, out, &n);
    EVP_MD_CTX_free(ctx);
}

static bool all_ff(const uint8_t *p, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (p[i] != 0xFF)
            return false;
    return true;
}

#define OVER_BUDGET 2
#define N_SAMPLES 4
#define SAMPLE_MIN_SECTORS 16
#define CACHE 8

struct range {
    uint32_t off, len;
    bool known; /* known to differ */
};

struct search {
    const uint8_t *want;
    size_t len;
    esp_diff_md5_fn md5;
    void *ctx;
    unsigned calls, max;
    /* The first answers (probe, halves, samples) with what they said. */
    struct {
        uint32_t off, len;
        uint8_t md5[16]; /* as the chip answered */
        bool differs;
    } cache[CACHE];
    size_t n_cache;
};

/* 1 the flash differs from want over the range, 0 equal, OVER_BUDGET, <0 error. */
static int check(struct search *s, uint32_t off, uint32_t len, struct esp_error *err)
{
    for (size_t i = 0; i < s->n_cache; i++) {
        uint32_t o = s->cache[i].off, l = s->cache[i].len;
        if (o == off && l == len)
            return s->cache[i].differs;
        if (s->cache[i].differs && o >= off && (uint64_t)o + l <= (uint64_t)off + len)
            return 1;
    }
    if (s->calls >= s->max)
        return OVER_BUDGET;
    s->calls++;
    uint8_t got[16], want[16];
    int rc = s->md5(s->ctx, off, len, got, err);
    if (rc < 0)
        return rc;
    host_md5(s->want + off, len, want);
    bool d = memcmp(got, want, 16) != 0;
    if (s->n_cache < CACHE) {
        s->cache[s->n_cache].off = off;
        s->cache[s->n_cache].len = len;
        memcpy(s->cache[s->n_cache].md5, got, 16);
        s->cache[s->n_cache++].differs = d;
    }
    return d;
}

/* True when the chip's answer for exactly this range was the MD5 of erased flash. */
static bool answered_erased(const struct search *s, uint32_t off, uint32_t len)
{
    uint8_t ff[16];
    for (size_t i = 0; i < s->n_cache; i++) {
        if (s->cache[i].off == off && s->cache[i].len == len) {
            erased_md5(len, ff);
            return memcmp(s->cache[i].md5, ff, 16) == 0;
        }
    }
    return false;
}

static int give_up(struct esp_diff_result *out, const char *why)
{
    out->verdict = ESP_DIFF_FULL;
    out->why = why;
    free(out->runs);
    out->runs = NULL;
    out->n_runs = 0;
    out->sectors = 0;
    return 0;
}

/* Refines every range of cur longer than a sector into next (see the top comment).
 * 1 something was split or checked, 0 every range is a known sector, OVER_BUDGET, <0. */
static int split_level(struct search *s, const struct range *cur, size_t n, struct range *next,
                       size_t *n_next, struct esp_error *err)
{
    size_t k = 0;
    int work = 0;
    for (size_t i = 0; i < n; i++) {
        struct range c = cur[i];
        int rc;
        if (c.len <= ESP_DIFF_SECTOR) {
            if (!c.known) { /* only a one-sector region without a probe */
                work = 1;
                if ((rc = check(s, c.off, c.len, err)) < 0 || rc == OVER_BUDGET)
                    return rc;
                c.known = rc == 1;
                if (!c.known)
                    continue;
            }
            next[k++] = c;
            continue;
        }
        work = 1;
        uint32_t sectors = (c.len + ESP_DIFF_SECTOR - 1) / ESP_DIFF_SECTOR;
        uint32_t half = sectors / 2 * ESP_DIFF_SECTOR;
        struct range a = {c.off, half, true}, b = {c.off + half, c.len - half, true};
        if ((rc = check(s, a.off, a.len, err)) < 0 || rc == OVER_BUDGET)
            return rc;
        if (rc == 0 && c.known) {
            next[k++] = b; /* c differs and its first half does not */
            continue;
        }
        if (rc == 1)
            next[k++] = a;
        if ((rc = check(s, b.off, b.len, err)) < 0 || rc == OVER_BUDGET)
            return rc;
        if (rc == 1)
            next[k++] = b;
    }
    *n_next = k;
    return work;
}

/* The samples (regions of SAMPLE_MIN_SECTORS or more). 1 all differ, 0 not,
 * OVER_BUDGET, <0. */
static int all_samples_differ(struct search *s, struct esp_error *err)
{
    size_t nsec = (s->len + ESP_DIFF_SECTOR - 1) / ESP_DIFF_SECTOR;
    if (nsec < SAMPLE_MIN_SECTORS)
        return 0;
    int n_diff = 0;
    for (size_t k = 1; k <= N_SAMPLES; k++) {
        uint32_t off = (uint32_t)(nsec * k / (N_SAMPLES + 1)) * ESP_DIFF_SECTOR;
        uint32_t len = s->len - off < ESP_DIFF_SECTOR ? (uint32_t)(s->len - off) : ESP_DIFF_SECTOR;
        int rc = check(s, off, len, err);
        if (rc < 0 || rc == OVER_BUDGET)
            return rc;
        n_diff += rc;
    }
    return n_diff == N_SAMPLES;
}

int esp_diff_plan(const uint8_t *want, size_t len, const uint8_t *whole_md5, unsigned max_calls,
                  esp_diff_md5_fn md5, void *ctx, struct esp_diff_result *out,
                  struct esp_error *err)
{
    memset(out, 0, sizeof(*out));
    out->verdict = ESP_DIFF_FULL;
    out->why = "not compared";
    if (!want || len == 0 || len > UINT32_MAX || !md5)
        return esp_error_set(err, -EINVAL, ESP_STAGE_PREPARE, NULL, "nothing to compare");
    struct search s = {
        .want = want,
        .len = len,
        .md5 = md5,
        .ctx = ctx,
        .max = max_calls ? max_calls : ESP_DIFF_MAX_MD5,
    };
    size_t nsec = (len + ESP_DIFF_SECTOR - 1) / ESP_DIFF_SECTOR;
    struct range root = {0, (uint32_t)len, false};
    const char *why = NULL;
    int rc = 0;

    if (whole_md5) {
        /* The caller's answer for the whole region. */
        uint8_t exp[16], ff[16];
        host_md5(want, len, exp);
        if (memcmp(whole_md5, exp, 16) == 0) {
            out->verdict = ESP_DIFF_SAME;
            out->why = NULL;
            return 0;
        }
        erased_md5(len, ff);
        if (memcmp(whole_md5, ff, 16) == 0)
            return give_up(out, "the flash is erased over the region");
        root.known = true;
    } else {
        /* 1. The probe. */
        uint32_t plen = len < ESP_DIFF_SECTOR ? (uint32_t)len : ESP_DIFF_SECTOR;
        if (!all_ff(want, plen)) {
            rc = check(&s, 0, plen, err);
            out->md5_calls = s.calls;
            if (rc < 0) {
                out->why = "the flash MD5 could not be read";
                return rc;
            }
            if (answered_erased(&s, 0, plen))
                return give_up(out, "the flash is erased where the region starts");
            root.known = rc == 1;
        }
    }

    struct range *cur = malloc(nsec * sizeof(*cur));
    struct range *next = malloc(nsec * sizeof(*next));
    if (!cur || !next) {
        free(cur);
        free(next);
        return esp_error_set(err, -ENOMEM, ESP_STAGE_PREPARE, NULL, "out of memory");
    }
    size_t n = 1;
    cur[0] = root;
    bool sampled = false;
    for (int level = 1;; level++) {
        /* 3. The samples, once the region is known to differ. */
        if (!sampled && (level > 1 || root.known)) {
            sampled = true;
            rc = all_samples_differ(&s, err);
            if (rc < 0 || rc == OVER_BUDGET)
                break;
            if (rc == 1) {
                why = "every sampled sector differs (another firmware)";
                break;
            }
        }
        /* 2./4. The halves (the whole region's answer when not known yet), then
         * bisection. */
        size_t n_next = 0;
        rc = split_level(&s, cur, n, next, &n_next, err);
        if (rc <= 0 || rc == OVER_BUDGET)
            break;
        struct range *t = cur;
        cur = next;
        next = t;
        n = n_next;
        if (n == 0) /* only when the region was not known to differ */
            break;
        if (level == 1 && !root.known && nsec >= 2 && answered_erased(&s, 0, cur[0].len) &&
            n == 2 && answered_erased(&s, cur[1].off, cur[1].len)) {
            why = "the flash is erased over the region";
            break;
        }
        uint64_t bytes = 0;
        for (size_t i = 0; i < n; i++)
            bytes += cur[i].len;
        if (level >= 2 && bytes * 4 > (uint64_t)len * 3) {
            why = "most of the region differs";
            break;
        }
    }
    free(next);
    out->md5_calls = s.calls;
    if (rc < 0) {
        free(cur);
        out->why = "the flash MD5 could not be read";
        return rc;
    }
    if (rc == OVER_BUDGET)
        why = "too many MD5 requests";
    if (why) {
        free(cur);
        return give_up(out, why);
    }
    if (n == 0) {
        free(cur);
        out->verdict = ESP_DIFF_SAME;
        out->why = NULL;
        return 0;
    }

    /* Merge adjacent sectors into runs (cur is ascending and disjoint). */
    struct esp_diff_run *runs = malloc(n * sizeof(*runs));
    if (!runs) {
        free(cur);
        return esp_error_set(err, -ENOMEM, ESP_STAGE_PREPARE, NULL, "out of memory");
    }
    size_t m = 0;
    uint64_t bytes = 0;
    unsigned sectors = 0;
    for (size_t i = 0; i < n; i++) {
        bytes += cur[i].len;
        sectors += (cur[i].len + ESP_DIFF_SECTOR - 1) / ESP_DIFF_SECTOR;
        if (m > 0 && runs[m - 1].off + runs[m - 1].len == cur[i].off)
            runs[m - 1].len += cur[i].len;
        else
            runs[m++] = (struct esp_diff_run){cur[i].off, cur[i].len};
    }
    free(cur);
    if (bytes >= len) {
        free(runs);
        return give_up(out, "every sector differs");
    }
    out->verdict = ESP_DIFF_SECTORS;
    out->why = NULL;
    out->runs = runs;
    out->n_runs = m;
    out->diff_bytes = bytes;
    out->sectors = sectors;
    return 0;
}

void esp_diff_result_free(struct esp_diff_result *r)
{
    if (!r)
        return;
    free(r->runs);
    r->runs = NULL;
    r->n_runs = 0;
}
