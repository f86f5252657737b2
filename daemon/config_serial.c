/*
 * config_serial: see config_serial.h and docs/CONFIG.md ("serial").
 */
#include "config_serial.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "records_serial.h"
#include "serial_fmt.h"

static int bad(char *key, size_t keylen, const char *k, char *why, size_t whylen, const char *msg)
{
    snprintf(key, keylen, "%s", k);
    snprintf(why, whylen, "%s", msg);
    return -EINVAL;
}

int config_serial_parse(struct json_object *v, struct config_serial *s, char *key, size_t keylen,
                        char *why, size_t whylen)
{
    static const char *const keys[] = {"format", "start", "offset", NULL};
    struct json_object *f;
    char m[200];
    memset(s, 0, sizeof(*s));
    s->start = 1;
    key[0] = why[0] = '\0';
    if (!json_object_is_type(v, json_type_object))
        return bad(key, keylen, "", why, whylen,
                   "must be an object, e.g. {\"format\": \"ESP-%06u\", \"start\": 1}");
    json_object_object_foreach(v, k, val)
    {
        (void)val;
        size_t i = 0;
        while (keys[i] && strcmp(keys[i], k) != 0)
            i++;
        if (!keys[i]) {
            snprintf(m, sizeof(m), "unknown key \"%.40s\" (format, start, offset)", k);
            return bad(key, keylen, "", why, whylen, m);
        }
    }
    if (!json_object_object_get_ex(v, "format", &f))
        return bad(key, keylen, "format", why, whylen,
                   "missing (e.g. \"ESP-%06u\": one %u-family conversion for the number)");
    if (!json_object_is_type(f, json_type_string))
        return bad(key, keylen, "format", why, whylen, "must be a string");
    const char *fmt = json_object_get_string(f);
    if (serial_fmt_check(fmt, m, sizeof(m)) < 0)
        return bad(key, keylen, "format", why, whylen, m);
    if (json_object_object_get_ex(v, "start", &f)) {
        int64_t x = json_object_get_int64(f);
        if (!json_object_is_type(f, json_type_int) || x < 0 || x > RECORDS_SERIAL_MAX_NUMBER) {
            snprintf(m, sizeof(m), "must be an integer from 0 to %lld",
                     (long long)RECORDS_SERIAL_MAX_NUMBER);
            return bad(key, keylen, "start", why, whylen, m);
        }
        s->start = x;
    }
    /* The largest number must render within the records' text limit. */
    char probe[SERIAL_TEXT_MAX];
    if (serial_fmt_render(fmt, (uint64_t)RECORDS_SERIAL_MAX_NUMBER, probe, sizeof(probe)) < 0) {
        snprintf(m, sizeof(m), "a number rendered with it would exceed %d characters",
                 SERIAL_TEXT_MAX - 1);
        return bad(key, keylen, "format", why, whylen, m);
    }
    if (json_object_object_get_ex(v, "offset", &f)) {
        long long off = -1;
        if (json_object_is_type(f, json_type_string)) {
            const char *os = json_object_get_string(f);
            char *end = NULL;
            errno = 0;
            if (os[0] == '0' && (os[1] == 'x' || os[1] == 'X') && os[2])
                off = strtoll(os + 2, &end, 16);
            if (!end || *end || errno)
                off = -1;
        } else if (json_object_is_type(f, json_type_int)) {
            off = json_object_get_int64(f);
        }
        if (off < 0 || off > 0x7FFFFFFF || off % 4096)
            return bad(key, keylen, "offset", why, whylen,
                       "must be a flash offset in 0x hex, 4 KiB aligned (e.g. \"0x3ff000\")");
        s->has_offset = true;
        s->offset = (uint32_t)off;
    }
    if (!(s->format = strdup(fmt))) {
        snprintf(why, whylen, "out of memory");
        return -ENOMEM;
    }
    s->enabled = true;
    return 0;
}

int config_serial_check_profile(const struct config_profile *p, char *key, size_t keylen, char *why,
                                size_t whylen)
{
    key[0] = why[0] = '\0';
    if (p->serial.enabled && p->serial.has_offset) {
        for (size_t i = 0; i < p->n_per_board; i++) {
            if (p->per_board[i].offset == p->serial.offset) {
                snprintf(key, keylen, "serial.offset");
                snprintf(why, whylen, "0x%x is already the offset of pool \"%s\"", p->serial.offset,
                         p->per_board[i].name);
                return -EINVAL;
            }
        }
    }
    if (!p->serial.enabled && p->boot_check.enabled && p->boot_check.pattern &&
        strstr(p->boot_check.pattern, SERIAL_TOKEN)) {
        snprintf(key, keylen, "boot_check.pattern");
        snprintf(why, whylen,
                 "uses %s but the profile has no \"serial\" (add \"serial\": {\"format\": "
                 "\"ESP-%%06u\"})",
                 SERIAL_TOKEN);
        return -EINVAL;
    }
    return 0;
}

int config_serial_pattern_sample(const char *pattern, char *out, size_t outlen)
{
    int rc = serial_pattern_expand(pattern, "SERIAL-0", out, outlen);
    return rc < 0 ? rc : 0;
}

void config_serial_free(struct config_serial *s)
{
    free(s->format);
    s->format = NULL;
    s->enabled = false;
}
