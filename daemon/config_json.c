/*
 * config_json: the JSON plumbing every config parser shares (config_priv.h): the
 * document read with line/column syntax errors, messages that name the key path
 * ("profiles.p1.baud: ..."), the unknown-key check with its "did you mean", and
 * typed getters that check type and range before anything is copied.
 */
#include "config_priv.h"
#include "json_msg.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

/* ---- messages ------------------------------------------------------------------ */

int cfg_fail(struct cfg_ctx *c, const char *path, const char *fmt, ...)
{
    if (c->err && c->errlen > 0) {
        char msg[512];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        if (path && *path)
            snprintf(c->err, c->errlen, "%s: %s: %s", c->origin, path, msg);
        else
            snprintf(c->err, c->errlen, "%s: %s", c->origin, msg);
        /* Keys and values come from the file: keep the message one printable line. */
        for (char *p = c->err; *p; p++)
            if ((unsigned char)*p < 0x20 || *p == 0x7f)
                *p = '?';
    }
    return -EINVAL;
}

int cfg_fail_nomem(struct cfg_ctx *c)
{
    if (c->err && c->errlen > 0)
        snprintf(c->err, c->errlen, "%s: out of memory", c->origin);
    return -ENOMEM;
}

void cfg_join_key(char *out, size_t n, const char *parent, const char *key)
{
    if (parent && *parent)
        snprintf(out, n, "%s.%s", parent, key);
    else
        snprintf(out, n, "%s", key);
}

void cfg_join_index(char *out, size_t n, const char *parent, size_t i)
{
    snprintf(out, n, "%s[%zu]", parent, i);
}

/* Edit distance, capped: only used to suggest a key for a typo. */
static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 40 || lb > 40)
        return SIZE_MAX;
    size_t row[41];
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best =
                diag + (tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]));
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

/* Every key of obj must be in allowed (NULL-terminated). */
int cfg_check_keys(struct cfg_ctx *c, const char *path, json_object *obj,
                   const char *const *allowed)
{
    json_object_object_foreach(obj, key, val)
    {
        (void)val;
        bool ok = false;
        const char *best = NULL;
        size_t best_d = SIZE_MAX;
        for (const char *const *a = allowed; *a; a++) {
            if (strcmp(key, *a) == 0) {
                ok = true;
                break;
            }
            size_t d = edit_distance(key, *a);
            if (d < best_d) {
                best_d = d;
                best = *a;
            }
        }
        if (ok)
            continue;
        char kp[KEYPATH_MAX];
        cfg_join_key(kp, sizeof(kp), path, key);
        if (best && best_d <= 2)
            return cfg_fail(c, kp, "unknown key (did you mean \"%s\"?)", best);
        char list[256] = "";
        size_t used = 0;
        for (const char *const *a = allowed; *a && used < sizeof(list); a++)
            used += (size_t)snprintf(list + used, sizeof(list) - used, "%s%s",
                                     a == allowed ? "" : ", ", *a);
        return cfg_fail(c, kp, "unknown key (valid keys here: %s)", list);
    }
    return 0;
}

/* ---- typed getters ------------------------------------------------------------- */

int cfg_want_object(struct cfg_ctx *c, const char *path, json_object *v)
{
    if (json_object_is_type(v, json_type_object))
        return 0;
    char got[96];
    json_msg_describe(v, got, sizeof(got));
    return cfg_fail(c, path, "must be an object (%s)", got);
}

int cfg_want_array(struct cfg_ctx *c, const char *path, json_object *v)
{
    if (json_object_is_type(v, json_type_array))
        return 0;
    char got[96];
    json_msg_describe(v, got, sizeof(got));
    return cfg_fail(c, path, "must be a list (%s)", got);
}

/* A string without NUL bytes, 1..maxlen characters (0 = no limit). *out is borrowed. */
int cfg_get_str(struct cfg_ctx *c, const char *path, json_object *v, size_t maxlen,
                const char **out)
{
    if (!json_object_is_type(v, json_type_string)) {
        char got[96];
        json_msg_describe(v, got, sizeof(got));
        return cfg_fail(c, path, "must be a string (%s)", got);
    }
    const char *s = json_object_get_string(v);
    size_t len = (size_t)json_object_get_string_len(v);
    if (!s || strlen(s) != len)
        return cfg_fail(c, path, "must not contain NUL characters");
    if (len == 0)
        return cfg_fail(c, path, "must not be empty");
    if (maxlen && len > maxlen)
        return cfg_fail(c, path, "too long (%zu characters, at most %zu)", len, maxlen);
    *out = s;
    return 0;
}

int cfg_dup_str(struct cfg_ctx *c, const char *s, char **out)
{
    char *d = strdup(s);
    if (!d)
        return cfg_fail_nomem(c);
    free(*out);
    *out = d;
    return 0;
}

int cfg_get_int(struct cfg_ctx *c, const char *path, json_object *v, long long min, long long max,
                long long *out)
{
    if (json_object_is_type(v, json_type_int)) {
        int64_t x = json_object_get_int64(v);
        /* json-c clamps out-of-range literals to INT64_MIN/MAX. */
        if (x >= min && x <= max && x != INT64_MAX && x != INT64_MIN) {
            *out = x;
            return 0;
        }
    }
    char got[96];
    json_msg_describe(v, got, sizeof(got));
    return cfg_fail(c, path, "must be an integer from %lld to %lld (%s)", min, max, got);
}

int cfg_get_bool(struct cfg_ctx *c, const char *path, json_object *v, bool *out)
{
    if (json_object_is_type(v, json_type_boolean)) {
        *out = json_object_get_boolean(v);
        return 0;
    }
    char got[96];
    json_msg_describe(v, got, sizeof(got));
    return cfg_fail(c, path, "must be true or false (%s)", got);
}

/* A path; relative ones are resolved against c->base_dir. */
int cfg_get_path(struct cfg_ctx *c, const char *path, json_object *v, char **out)
{
    const char *s;
    int rc = cfg_get_str(c, path, v, 4000, &s);
    if (rc < 0)
        return rc;
    if (s[0] == '/' || !c->base_dir)
        return cfg_dup_str(c, s, out);
    char *full = NULL;
    if (asprintf(&full, "%s/%s", c->base_dir, s) < 0)
        return cfg_fail_nomem(c);
    free(*out);
    *out = full;
    return 0;
}

bool cfg_chars_ok(const char *s, const char *extra)
{
    for (const char *p = s; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr(extra, *p))
            return false;
    return true;
}

/* ---- the document -------------------------------------------------------------- */

static void offset_to_line_col(const char *s, size_t off, size_t *line, size_t *col)
{
    *line = 1;
    *col = 1;
    for (size_t i = 0; i < off; i++) {
        if (s[i] == '\n') {
            (*line)++;
            *col = 1;
        } else {
            (*col)++;
        }
    }
}

int cfg_parse_tree(struct cfg_ctx *c, const char *json, size_t len, json_object **out)
{
    if (len > MAX_CONFIG_BYTES)
        return cfg_fail(c, NULL, "file too large (%zu bytes; a configuration is a few KiB)", len);
    if (len > INT_MAX)
        return cfg_fail(c, NULL, "file too large");
    json_tokener *tok = json_tokener_new();
    if (!tok)
        return cfg_fail_nomem(c);
    json_object *root = json_tokener_parse_ex(tok, json, (int)len);
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    size_t end = json_tokener_get_parse_end(tok);
    if (!root && jerr == json_tokener_continue) {
        /* Input ended inside a value; ask the tokener to finish. */
        json_tokener_free(tok);
        size_t nonblank = 0;
        for (size_t i = 0; i < len; i++)
            if (!isspace((unsigned char)json[i]))
                nonblank++;
        if (nonblank == 0)
            return cfg_fail(c, NULL, "empty file (use {} for all defaults)");
        size_t line, col;
        offset_to_line_col(json, len, &line, &col);
        return cfg_fail(c, NULL,
                        "JSON syntax error at line %zu, column %zu: unexpected end of file "
                        "(unclosed object, list or string)",
                        line, col);
    }
    json_tokener_free(tok);
    if (!root || jerr != json_tokener_success) {
        json_object_put(root);
        size_t line, col;
        if (end > len)
            end = len;
        offset_to_line_col(json, end, &line, &col);
        return cfg_fail(c, NULL, "JSON syntax error at line %zu, column %zu: %s", line, col,
                        json_tokener_error_desc(jerr));
    }
    for (size_t i = end; i < len; i++) {
        if (!isspace((unsigned char)json[i])) {
            size_t line, col;
            offset_to_line_col(json, i, &line, &col);
            json_object_put(root);
            return cfg_fail(c, NULL,
                            "JSON syntax error at line %zu, column %zu: text after the end of "
                            "the top-level object",
                            line, col);
        }
    }
    if (!json_object_is_type(root, json_type_object)) {
        char got[96];
        json_msg_describe(root, got, sizeof(got));
        json_object_put(root);
        return cfg_fail(c, NULL, "the top level must be an object { ... } (%s)", got);
    }
    *out = root;
    return 0;
}
