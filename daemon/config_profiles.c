/*
 * config_profiles: the "profiles" section: a profile's defaults, its keys (firmware
 * maps, boot check, per-board pools, check-in auth; "serial" through
 * config_serial.c) and the checks across keys, and freeing a parsed profile.
 */
#include "config_priv.h"

#include <errno.h>
#include <regex.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "catalog.h"
#include "config_serial.h"

static void profile_defaults(struct config_profile *p)
{
    memset(p, 0, sizeof(*p));
    p->baud = CONFIG_DEFAULT_BAUD;
    p->stub = true;
    p->compress = true;
    p->verify = true;
    p->skip_if_same = true;
    p->diff = true;
    p->retries = 1;
    p->after = ESP_AFTER_HARD_RESET;
    p->boot_check.timeout_ms = CONFIG_DEFAULT_BOOT_TIMEOUT_MS;
    p->boot_check.baud = CONFIG_DEFAULT_BOOT_BAUD;
    p->baud_probe_after = CONFIG_DEFAULT_BAUD_PROBE_AFTER;
}

static int parse_checkin_auth(struct cfg_ctx *c, const char *path, struct config_profile *p,
                              json_object *v)
{
    static const char *const keys[] = {"user", "password", "required", NULL};
    char kp[KEYPATH_MAX];
    json_object *f;
    const char *s;
    int rc;
    if ((rc = cfg_want_object(c, path, v)) < 0 || (rc = cfg_check_keys(c, path, v, keys)) < 0)
        return rc;
    cfg_join_key(kp, sizeof(kp), path, "user");
    if (!json_object_object_get_ex(v, "user", &f))
        return cfg_fail(c, kp, "is required (the HTTP Basic user the boards' updaters send)");
    if ((rc = cfg_get_str(c, kp, f, 64, &s)) < 0)
        return rc;
    if (!*s)
        return cfg_fail(c, kp, "must not be empty");
    for (const char *q = s; *q; q++)
        if (*q == ':' || (unsigned char)*q < 0x20 || *q == 0x7F)
            return cfg_fail(c, kp,
                            "must not contain ':' or control characters (HTTP Basic "
                            "authentication cannot carry them)");
    if ((rc = cfg_dup_str(c, s, &p->checkin_user)) < 0)
        return rc;
    cfg_join_key(kp, sizeof(kp), path, "password");
    if (!json_object_object_get_ex(v, "password", &f))
        return cfg_fail(c, kp, "is required");
    if ((rc = cfg_get_str(c, kp, f, 128, &s)) < 0)
        return rc;
    if (strlen(s) < 8)
        return cfg_fail(c, kp,
                        "must be at least 8 characters (anyone on the device network can try "
                        "passwords)");
    for (const char *q = s; *q; q++)
        if ((unsigned char)*q < 0x20 || *q == 0x7F)
            return cfg_fail(c, kp, "must not contain control characters");
    if ((rc = cfg_dup_str(c, s, &p->checkin_password)) < 0)
        return rc;
    if (json_object_object_get_ex(v, "required", &f)) {
        cfg_join_key(kp, sizeof(kp), path, "required");
        if ((rc = cfg_get_bool(c, kp, f, &p->checkin_required)) < 0)
            return rc;
    }
    return 0;
}

static int parse_firmware_map(struct cfg_ctx *c, const char *path,
                              struct config_firmware_ref **refs, size_t *n_refs, json_object *v)
{
    int rc = cfg_want_object(c, path, v);
    if (rc < 0)
        return rc;
    size_t n = (size_t)json_object_object_length(v);
    *refs = calloc(n ? n : 1, sizeof(**refs));
    if (!*refs)
        return cfg_fail_nomem(c);
    struct config_profile pv = {.firmware = *refs};
    struct config_profile *p = &pv;
    rc = 0;
    json_object_object_foreach(v, family, ref)
    {
        char kp[KEYPATH_MAX];
        cfg_join_key(kp, sizeof(kp), path, family);
        const struct esp_chip_desc *chip = esp_chip_by_name(family);
        if (!chip) {
            char known[256] = "";
            size_t used = 0;
            for (int i = 0; i < ESP_CHIP_COUNT && used < sizeof(known); i++)
                used += (size_t)snprintf(known + used, sizeof(known) - used, "%s%s", i ? ", " : "",
                                         esp_chip_get((enum esp_chip)i)->stub_name);
            return cfg_fail(c, path, "unknown chip family \"%s\" (known: %s)", family, known);
        }
        for (size_t j = 0; j < p->n_firmware; j++)
            if (p->firmware[j].chip == chip->chip)
                return cfg_fail(c, kp, "chip family %s is given twice", chip->name);
        const char *s;
        if ((rc = cfg_get_str(c, kp, ref, 200, &s)) < 0)
            return rc;
        const char *at = strchr(s, '@');
        struct config_firmware_ref *f = &p->firmware[p->n_firmware];
        f->chip = chip->chip;
        p->n_firmware++;
        *n_refs = p->n_firmware;
        if (!at || at == s || !at[1])
            return cfg_fail(c, kp,
                            "must be \"name@version\" of a firmware set in the catalog (got "
                            "\"%s\")",
                            s);
        f->name = strndup(s, (size_t)(at - s));
        f->version = strdup(at + 1);
        if (!f->name || !f->version)
            return cfg_fail_nomem(c);
        if (!catalog_name_valid(f->name) || !catalog_name_valid(f->version))
            return cfg_fail(c, kp,
                            "\"%s\": name and version may hold letters, digits, '.', '_' "
                            "and '-' only, and must not start with '.'",
                            s);
    }
    return 0;
}

static int parse_boot_check(struct cfg_ctx *c, const char *path, struct config_boot_check *b,
                            json_object *v)
{
    static const char *const keys[] = {"pattern", "timeout_ms", "baud", "capture", NULL};
    char kp[KEYPATH_MAX];
    json_object *f;
    int rc;
    if ((rc = cfg_want_object(c, path, v)) < 0 || (rc = cfg_check_keys(c, path, v, keys)) < 0)
        return rc;
    cfg_join_key(kp, sizeof(kp), path, "pattern");
    if (!json_object_object_get_ex(v, "pattern", &f))
        return cfg_fail(c, kp,
                        "missing (a regular expression the board prints after boot, e.g. "
                        "\"OTA ready\")");
    const char *s;
    if ((rc = cfg_get_str(c, kp, f, 1024, &s)) < 0)
        return rc;
    regex_t re;
    char sample[1200]; /* "{serial}" as a board's serial text will stand there */
    if (config_serial_pattern_sample(s, sample, sizeof(sample)) < 0)
        return cfg_fail(c, kp, "too long once {serial} is replaced");
    int rrc = regcomp(&re, sample, REG_EXTENDED);
    if (rrc != 0) {
        char msg[200];
        regerror(rrc, &re, msg, sizeof(msg));
        return cfg_fail(c, kp, "not a valid POSIX extended regular expression: %s", msg);
    }
    size_t groups = re.re_nsub;
    regfree(&re);
    if ((rc = cfg_dup_str(c, s, &b->pattern)) < 0)
        return rc;
    b->enabled = true;
    if (json_object_object_get_ex(v, "timeout_ms", &f)) {
        long long x;
        cfg_join_key(kp, sizeof(kp), path, "timeout_ms");
        if ((rc = cfg_get_int(c, kp, f, 100, 600000, &x)) < 0)
            return rc;
        b->timeout_ms = (int)x;
    }
    if (json_object_object_get_ex(v, "baud", &f)) {
        long long x;
        cfg_join_key(kp, sizeof(kp), path, "baud");
        if ((rc = cfg_get_int(c, kp, f, 9600, 5000000, &x)) < 0)
            return rc;
        b->baud = (uint32_t)x;
    }
    if (json_object_object_get_ex(v, "capture", &f)) {
        cfg_join_key(kp, sizeof(kp), path, "capture");
        if ((rc = cfg_want_array(c, kp, f)) < 0)
            return rc;
        size_t n = json_object_array_length(f);
        if (n > groups)
            return cfg_fail(c, kp, "names %zu groups but the pattern has %zu parenthesised group%s",
                            n, groups, groups == 1 ? "" : "s");
        b->capture = calloc(n ? n : 1, sizeof(*b->capture));
        if (!b->capture)
            return cfg_fail_nomem(c);
        for (size_t i = 0; i < n; i++) {
            char sub[KEYPATH_MAX];
            cfg_join_index(sub, sizeof(sub), kp, i);
            if ((rc = cfg_get_str(c, sub, json_object_array_get_idx(f, i), 64, &s)) < 0)
                return rc;
            if (!cfg_chars_ok(s, "_"))
                return cfg_fail(c, sub, "\"%s\": use letters, digits and '_' only", s);
            for (size_t j = 0; j < i; j++)
                if (strcmp(b->capture[j], s) == 0)
                    return cfg_fail(c, sub, "duplicate capture name \"%s\"", s);
            b->n_capture = i + 1;
            if ((rc = cfg_dup_str(c, s, &b->capture[i])) < 0)
                return rc;
        }
    }
    return 0;
}

static int parse_per_board(struct cfg_ctx *c, const char *path, struct config_profile *p,
                           json_object *v)
{
    static const char *const keys[] = {"name", "offset", "dir", NULL};
    int rc;
    if ((rc = cfg_want_array(c, path, v)) < 0)
        return rc;
    size_t n = json_object_array_length(v);
    if (n > CONFIG_MAX_PER_BOARD)
        return cfg_fail(c, path, "at most %d per-board regions (got %zu)", CONFIG_MAX_PER_BOARD, n);
    p->per_board = calloc(n ? n : 1, sizeof(*p->per_board));
    if (!p->per_board)
        return cfg_fail_nomem(c);
    for (size_t i = 0; i < n; i++) {
        char ep[KEYPATH_MAX], kp[KEYPATH_MAX];
        cfg_join_index(ep, sizeof(ep), path, i);
        json_object *e = json_object_array_get_idx(v, i), *f;
        struct config_per_board *pb = &p->per_board[i];
        p->n_per_board = i + 1;
        if ((rc = cfg_want_object(c, ep, e)) < 0 || (rc = cfg_check_keys(c, ep, e, keys)) < 0)
            return rc;
        const char *s;
        cfg_join_key(kp, sizeof(kp), ep, "name");
        if (!json_object_object_get_ex(e, "name", &f))
            return cfg_fail(c, kp, "missing (the pool's name, e.g. \"nvs\")");
        if ((rc = cfg_get_str(c, kp, f, 33, &s)) < 0)
            return rc;
        if (!*s || !cfg_chars_ok(s, "_-"))
            return cfg_fail(c, kp, "\"%s\": use letters, digits, '_' and '-' only", s);
        for (size_t j = 0; j < i; j++)
            if (strcmp(p->per_board[j].name, s) == 0)
                return cfg_fail(c, kp, "duplicate pool name \"%s\"", s);
        if ((rc = cfg_dup_str(c, s, &pb->name)) < 0)
            return rc;
        cfg_join_key(kp, sizeof(kp), ep, "offset");
        if (!json_object_object_get_ex(e, "offset", &f))
            return cfg_fail(c, kp, "missing (the flash offset, e.g. \"0x9000\")");
        long long off = -1;
        if (json_object_is_type(f, json_type_string)) {
            const char *os = json_object_get_string(f);
            char *end = NULL;
            errno = 0;
            if ((os[0] == '0' && (os[1] == 'x' || os[1] == 'X')) && os[2])
                off = strtoll(os + 2, &end, 16);
            if (!end || *end || errno)
                off = -1;
        } else if (json_object_is_type(f, json_type_int)) {
            off = json_object_get_int64(f);
        }
        if (off < 0 || off > 0x7FFFFFFF || off % 4096)
            return cfg_fail(c, kp,
                            "must be a flash offset in 0x hex, 4 KiB aligned (e.g. \"0x9000\")");
        pb->offset = (uint32_t)off;
        for (size_t j = 0; j < i; j++)
            if (p->per_board[j].offset == pb->offset)
                return cfg_fail(c, kp, "0x%x is already the offset of pool \"%s\"", pb->offset,
                                p->per_board[j].name);
        cfg_join_key(kp, sizeof(kp), ep, "dir");
        if (!json_object_object_get_ex(e, "dir", &f))
            return cfg_fail(c, kp, "missing (the directory holding one .bin file per board)");
        if ((rc = cfg_get_path(c, kp, f, &pb->dir)) < 0)
            return rc;
    }
    return 0;
}

static int parse_profile(struct cfg_ctx *c, const char *path, struct config_profile *p,
                         json_object *v)
{
    static const char *const keys[] = {
        "firmware",  "erase_all",    "baud",           "baud_probe_after", "stub",
        "compress",  "verify",       "skip_if_same",   "boot_check",       "retries",
        "after",     "ota_firmware", "require_signed", "public_key",       "ota_password",
        "per_board", "checkin_auth", "diff",           "serial",           NULL};
    int rc;
    char kp[KEYPATH_MAX];
    json_object *f;
    long long x;
    if ((rc = cfg_want_object(c, path, v)) < 0 || (rc = cfg_check_keys(c, path, v, keys)) < 0)
        return rc;
    static const struct {
        const char *key;
        size_t off;
    } bools[] = {
        {"erase_all", offsetof(struct config_profile, erase_all)},
        {"stub", offsetof(struct config_profile, stub)},
        {"compress", offsetof(struct config_profile, compress)},
        {"verify", offsetof(struct config_profile, verify)},
        {"skip_if_same", offsetof(struct config_profile, skip_if_same)},
        {"diff", offsetof(struct config_profile, diff)},
    };
    for (size_t i = 0; i < sizeof(bools) / sizeof(bools[0]); i++) {
        if (!json_object_object_get_ex(v, bools[i].key, &f))
            continue;
        cfg_join_key(kp, sizeof(kp), path, bools[i].key);
        if ((rc = cfg_get_bool(c, kp, f, (bool *)((char *)p + bools[i].off))) < 0)
            return rc;
    }
    p->stub_set = json_object_object_get_ex(v, "stub", NULL);
    if (json_object_object_get_ex(v, "baud", &f)) {
        cfg_join_key(kp, sizeof(kp), path, "baud");
        if (json_object_is_type(f, json_type_string) &&
            strcmp(json_object_get_string(f), "auto") == 0) {
            p->baud_auto = true;
            p->baud = 0;
        } else if (json_object_is_type(f, json_type_string)) {
            return cfg_fail(c, kp,
                            "must be an integer from 9600 to 5000000 or \"auto\" (got \"%s\")",
                            json_object_get_string(f));
        } else if ((rc = cfg_get_int(c, kp, f, 9600, 5000000, &x)) < 0) {
            return rc;
        } else {
            p->baud = (uint32_t)x;
        }
    }
    if (json_object_object_get_ex(v, "baud_probe_after", &f)) {
        cfg_join_key(kp, sizeof(kp), path, "baud_probe_after");
        if ((rc = cfg_get_int(c, kp, f, 0, 100000, &x)) < 0)
            return rc;
        p->baud_probe_after = (int)x;
    }
    if (json_object_object_get_ex(v, "retries", &f)) {
        cfg_join_key(kp, sizeof(kp), path, "retries");
        if ((rc = cfg_get_int(c, kp, f, 0, 10, &x)) < 0)
            return rc;
        p->retries = (int)x;
    }
    if (json_object_object_get_ex(v, "after", &f)) {
        const char *s;
        cfg_join_key(kp, sizeof(kp), path, "after");
        if ((rc = cfg_get_str(c, kp, f, 32, &s)) < 0)
            return rc;
        int a = esp_after_from_string(s);
        if (a < 0)
            return cfg_fail(c, kp,
                            "must be \"hard-reset\", \"soft-reset\", \"no-reset\" or "
                            "\"no-reset-stub\" (got \"%s\")",
                            s);
        p->after = (enum esp_after)a;
        p->after_set = true;
    }
    if (json_object_object_get_ex(v, "firmware", &f)) {
        cfg_join_key(kp, sizeof(kp), path, "firmware");
        if ((rc = parse_firmware_map(c, kp, &p->firmware, &p->n_firmware, f)) < 0)
            return rc;
    }
    if (json_object_object_get_ex(v, "ota_firmware", &f)) {
        cfg_join_key(kp, sizeof(kp), path, "ota_firmware");
        if ((rc = parse_firmware_map(c, kp, &p->ota_firmware, &p->n_ota_firmware, f)) < 0)
            return rc;
    }
    if (json_object_object_get_ex(v, "require_signed", &f)) {
        cfg_join_key(kp, sizeof(kp), path, "require_signed");
        if ((rc = cfg_get_bool(c, kp, f, &p->require_signed)) < 0)
            return rc;
    }
    if (json_object_object_get_ex(v, "public_key", &f)) {
        cfg_join_key(kp, sizeof(kp), path, "public_key");
        if ((rc = cfg_get_path(c, kp, f, &p->public_key)) < 0)
            return rc;
    }
    if (json_object_object_get_ex(v, "ota_password", &f)) {
        const char *s;
        cfg_join_key(kp, sizeof(kp), path, "ota_password");
        if ((rc = cfg_get_str(c, kp, f, 128, &s)) < 0 ||
            (rc = cfg_dup_str(c, s, &p->ota_password)) < 0)
            return rc;
    }
    if (json_object_object_get_ex(v, "checkin_auth", &f)) {
        cfg_join_key(kp, sizeof(kp), path, "checkin_auth");
        if ((rc = parse_checkin_auth(c, kp, p, f)) < 0)
            return rc;
    }
    if (p->require_signed && !p->public_key) {
        cfg_join_key(kp, sizeof(kp), path, "require_signed");
        return cfg_fail(c, kp,
                        "is true but no public_key is set (a PEM RSA public key file to verify "
                        "signed images with)");
    }
    if (json_object_object_get_ex(v, "boot_check", &f)) {
        cfg_join_key(kp, sizeof(kp), path, "boot_check");
        if ((rc = parse_boot_check(c, kp, &p->boot_check, f)) < 0)
            return rc;
    }
    if (json_object_object_get_ex(v, "per_board", &f)) {
        cfg_join_key(kp, sizeof(kp), path, "per_board");
        if ((rc = parse_per_board(c, kp, p, f)) < 0)
            return rc;
    }
    char sk[32], why[256];
    if (json_object_object_get_ex(v, "serial", &f)) {
        cfg_join_key(kp, sizeof(kp), path, "serial");
        if ((rc = config_serial_parse(f, &p->serial, sk, sizeof(sk), why, sizeof(why))) < 0) {
            char sp[KEYPATH_MAX];
            cfg_join_key(sp, sizeof(sp), kp, sk);
            return rc == -ENOMEM ? cfg_fail_nomem(c) : cfg_fail(c, sk[0] ? sp : kp, "%s", why);
        }
    }
    if (config_serial_check_profile(p, sk, sizeof(sk), why, sizeof(why)) < 0) {
        cfg_join_key(kp, sizeof(kp), path, sk);
        return cfg_fail(c, kp, "%s", why);
    }
    if (p->erase_all && !p->stub) {
        cfg_join_key(kp, sizeof(kp), path, "erase_all");
        return cfg_fail(c, kp, "erasing the whole chip needs the flasher stub, but stub is false");
    }
    return 0;
}

int cfg_parse_profiles(struct cfg_ctx *c, struct config *cfg, json_object *v)
{
    int rc = cfg_want_object(c, "profiles", v);
    if (rc < 0)
        return rc;
    size_t n = (size_t)json_object_object_length(v);
    cfg->profiles = calloc(n ? n : 1, sizeof(*cfg->profiles));
    if (!cfg->profiles)
        return cfg_fail_nomem(c);
    json_object_object_foreach(v, name, pv)
    {
        char kp[KEYPATH_MAX];
        cfg_join_key(kp, sizeof(kp), "profiles", name);
        struct config_profile *p = &cfg->profiles[cfg->n_profiles];
        profile_defaults(p);
        cfg->n_profiles++;
        if (!*name || strlen(name) > 64 || !cfg_chars_ok(name, "_-"))
            return cfg_fail(c, kp,
                            "profile names may hold letters, digits, '_' and '-' only (1 to "
                            "64 characters)");
        if ((rc = cfg_dup_str(c, name, &p->name)) < 0 || (rc = parse_profile(c, kp, p, pv)) < 0)
            return rc;
    }
    return 0;
}

void cfg_profile_free(struct config_profile *p)
{
    free(p->name);
    free(p->checkin_user);
    free(p->checkin_password);
    for (size_t i = 0; i < p->n_firmware; i++) {
        free(p->firmware[i].name);
        free(p->firmware[i].version);
    }
    free(p->firmware);
    for (size_t i = 0; i < p->n_ota_firmware; i++) {
        free(p->ota_firmware[i].name);
        free(p->ota_firmware[i].version);
    }
    free(p->ota_firmware);
    free(p->public_key);
    free(p->ota_password);
    for (size_t i = 0; i < p->n_per_board; i++) {
        free(p->per_board[i].name);
        free(p->per_board[i].dir);
    }
    free(p->per_board);
    free(p->boot_check.pattern);
    for (size_t i = 0; i < p->boot_check.n_capture; i++)
        free(p->boot_check.capture[i]);
    free(p->boot_check.capture);
    config_serial_free(&p->serial);
}
