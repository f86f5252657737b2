/*
 * catalog_manifest: the manifest format (docs/CONFIG.md, "Firmware sets") — the
 * names, kinds and slots a set may use, and manifest.json parsed into a
 * struct catalog_manifest with every problem reported (catalog_report), never only
 * the first. Manifest text is untrusted (uploads): every value is type- and
 * range-checked, and file names are restricted to a safe alphabet before they are
 * ever joined to a path.
 */
#include "catalog_priv.h"
#include "json_msg.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <json-c/json.h>

#include "esp_loader.h"

/* ---- names and kinds ----------------------------------------------------------------- */

static const char *const kind_names[] = {"bootloader", "app", "data", "filesystem"};

const char *catalog_kind_to_string(enum catalog_kind kind)
{
    if ((unsigned)kind >= sizeof(kind_names) / sizeof(kind_names[0]))
        return "unknown";
    return kind_names[kind];
}

int cat_kind_from_string(const char *s)
{
    for (unsigned i = 0; i < sizeof(kind_names) / sizeof(kind_names[0]); i++)
        if (strcmp(s, kind_names[i]) == 0)
            return (int)i;
    return -EINVAL;
}

static const char *const slot_names[] = {"", "user1", "user2"};

const char *catalog_slot_to_string(enum catalog_slot slot)
{
    if ((unsigned)slot >= sizeof(slot_names) / sizeof(slot_names[0]))
        return "";
    return slot_names[slot];
}

bool catalog_name_valid(const char *s)
{
    if (!s || !*s || s[0] == '.' || strlen(s) > CATALOG_NAME_MAX || strstr(s, ".."))
        return false;
    for (const char *p = s; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '.' && *p != '_' && *p != '-')
            return false;
    return true;
}

/* File names a region may not use: they are the catalog's own. */
static bool file_name_reserved(const char *s)
{
    size_t n = strlen(s);
    return strcmp(s, MANIFEST_FILE) == 0 || strcmp(s, INDEX_FILE) == 0 ||
           (n >= 2 && strcmp(s + n - 2, ".z") == 0);
}

/* ---- JSON text ----------------------------------------------------------------------- */

static void line_col(const char *s, size_t off, size_t *line, size_t *col)
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

/* Parses a whole JSON document; on a syntax error adds "<what>: JSON syntax error at ...". */
static json_object *parse_json(const char *text, size_t len, const char *what,
                               struct catalog_report *rep)
{
    if (len > INT_MAX) {
        cat_rep_add(rep, false, -1, "%s: too large", what);
        return NULL;
    }
    json_tokener *tok = json_tokener_new();
    if (!tok) {
        cat_rep_add(rep, false, -1, "%s: out of memory", what);
        return NULL;
    }
    json_object *root = json_tokener_parse_ex(tok, text, (int)len);
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    size_t end = json_tokener_get_parse_end(tok);
    json_tokener_free(tok);
    size_t line, col;
    if (!root || jerr != json_tokener_success) {
        json_object_put(root);
        if (jerr == json_tokener_continue) {
            line_col(text, len, &line, &col);
            cat_rep_add(rep, false, -1,
                        "%s: JSON syntax error at line %zu, column %zu: unexpected end of file",
                        what, line, col);
        } else {
            line_col(text, end > len ? len : end, &line, &col);
            cat_rep_add(rep, false, -1, "%s: JSON syntax error at line %zu, column %zu: %s", what,
                        line, col, json_tokener_error_desc(jerr));
        }
        return NULL;
    }
    for (size_t i = end; i < len; i++) {
        if (!isspace((unsigned char)text[i])) {
            line_col(text, i, &line, &col);
            cat_rep_add(rep, false, -1,
                        "%s: JSON syntax error at line %zu, column %zu: text after the end of the "
                        "object",
                        what, line, col);
            json_object_put(root);
            return NULL;
        }
    }
    if (!json_object_is_type(root, json_type_object)) {
        char got[96];
        json_msg_describe(root, got, sizeof(got));
        cat_rep_add(rep, false, -1, "%s: must be a JSON object { ... } (%s)", what, got);
        json_object_put(root);
        return NULL;
    }
    return root;
}

/* ---- manifest ------------------------------------------------------------------------ */

void catalog_manifest_free(struct catalog_manifest *m)
{
    if (!m)
        return;
    free(m->name);
    free(m->version);
    free(m->description);
    for (size_t i = 0; i < m->n_regions; i++)
        free(m->regions[i].file);
    free(m->regions);
    free(m);
}

const char cat_name_rule[] = "use letters, digits, '.', '_' and '-' only (at most 64), not "
                             "starting with '.' and without \"..\"";

static void parse_name_field(json_object *root, const char *key, const char *example, char **out,
                             struct catalog_report *rep)
{
    json_object *v;
    if (!json_object_object_get_ex(root, key, &v)) {
        cat_rep_add(rep, false, -1, "%s: missing (e.g. \"%s\")", key, example);
        return;
    }
    const char *s = cat_json_str(v);
    if (!s) {
        char got[96];
        json_msg_describe(v, got, sizeof(got));
        cat_rep_add(rep, false, -1, "%s: must be a string (%s)", key, got);
        return;
    }
    if (!catalog_name_valid(s)) {
        cat_rep_add(rep, false, -1, "%s: \"%.80s\" is not allowed: %s", key, s, cat_name_rule);
        return;
    }
    *out = strdup(s);
    if (!*out)
        cat_rep_add(rep, false, -1, "%s: out of memory", key);
}

/* Offset: a JSON integer or a "0x..." string, 0 .. 0xffffffff. */
static int parse_offset(json_object *v, uint32_t *out)
{
    if (json_object_is_type(v, json_type_int)) {
        int64_t x = json_object_get_int64(v);
        if (x < 0 || x > 0xFFFFFFFFLL)
            return -ERANGE;
        *out = (uint32_t)x;
        return 0;
    }
    const char *s = cat_json_str(v);
    if (!s || (strncmp(s, "0x", 2) != 0 && strncmp(s, "0X", 2) != 0))
        return -EINVAL;
    s += 2;
    size_t n = strlen(s);
    if (n == 0 || n > 8)
        return n > 8 ? -ERANGE : -EINVAL;
    uint32_t x = 0;
    for (; *s; s++) {
        if (!isxdigit((unsigned char)*s))
            return -EINVAL;
        x = x * 16 + (uint32_t)(isdigit((unsigned char)*s) ? *s - '0'
                                                           : tolower((unsigned char)*s) - 'a' + 10);
    }
    *out = x;
    return 0;
}

static void parse_region(json_object *e, size_t i, struct cat_parsed *p, struct catalog_report *rep)
{
    struct catalog_manifest_region *r = &p->m->regions[i];
    int ri = (int)i;
    char got[96];
    if (!json_object_is_type(e, json_type_object)) {
        json_msg_describe(e, got, sizeof(got));
        cat_rep_add(
            rep, false, ri,
            "regions[%zu]: must be an object {\"offset\": ..., \"file\": ..., \"kind\": ...} "
            "(%s)",
            i, got);
        return;
    }
    json_object_object_foreach(e, key, val)
    {
        (void)val;
        if (strcmp(key, "offset") != 0 && strcmp(key, "file") != 0 && strcmp(key, "kind") != 0 &&
            strcmp(key, "slot") != 0)
            cat_rep_add(rep, false, ri,
                        "regions[%zu].%.60s: unknown key (valid: offset, file, kind, slot)", i,
                        key);
    }
    json_object *v;
    if (!json_object_object_get_ex(e, "offset", &v)) {
        cat_rep_add(rep, false, ri,
                    "regions[%zu].offset: missing (flash address, e.g. \"0x10000\")", i);
    } else {
        int rc = parse_offset(v, &r->offset);
        json_msg_describe(v, got, sizeof(got));
        if (rc == -ERANGE) {
            cat_rep_add(rep, false, ri, "regions[%zu].offset: must be from 0x0 to 0xffffffff (%s)",
                        i, got);
        } else if (rc < 0) {
            cat_rep_add(rep, false, ri,
                        "regions[%zu].offset: not a number or hex string (%s; e.g. 65536 or "
                        "\"0x10000\")",
                        i, got);
        } else if (r->offset % 4 != 0) {
            cat_rep_add(rep, false, ri, "regions[%zu].offset: 0x%x is not a multiple of 4", i,
                        r->offset);
        } else {
            p->region_offset_ok[i] = true;
            if (r->offset % 0x1000 != 0)
                cat_rep_add(rep, true, ri,
                            "regions[%zu].offset: 0x%x is not on a 4 KiB sector boundary; the "
                            "flasher erases whole sectors, so the bytes before it in sector 0x%x "
                            "are lost",
                            i, r->offset, r->offset & ~0xFFFu);
        }
    }
    if (!json_object_object_get_ex(e, "file", &v)) {
        cat_rep_add(rep, false, ri, "regions[%zu].file: missing (file name next to manifest.json)",
                    i);
    } else {
        const char *s = cat_json_str(v);
        if (!s) {
            json_msg_describe(v, got, sizeof(got));
            cat_rep_add(rep, false, ri, "regions[%zu].file: must be a string (%s)", i, got);
        } else if (!catalog_name_valid(s)) {
            cat_rep_add(rep, false, ri,
                        "regions[%zu].file: \"%.80s\" is not allowed: a plain file name next to "
                        "manifest.json (no '/', no \"..\", not starting with '.'; letters, digits, "
                        "'.', '_', '-' only)",
                        i, s);
        } else if (file_name_reserved(s)) {
            cat_rep_add(rep, false, ri,
                        "regions[%zu].file: \"%s\" is reserved by the catalog (manifest.json, "
                        "index.json and names ending in .z); rename the file",
                        i, s);
        } else if ((r->file = strdup(s)) == NULL) {
            cat_rep_add(rep, false, ri, "regions[%zu].file: out of memory", i);
        } else {
            p->region_file_ok[i] = true;
        }
    }
    if (!json_object_object_get_ex(e, "kind", &v)) {
        cat_rep_add(rep, false, ri,
                    "regions[%zu].kind: missing (bootloader, app, data or filesystem)", i);
    } else {
        const char *s = cat_json_str(v);
        int k = s ? cat_kind_from_string(s) : -EINVAL;
        if (k < 0) {
            json_msg_describe(v, got, sizeof(got));
            cat_rep_add(rep, false, ri,
                        "regions[%zu].kind: must be \"bootloader\", \"app\", \"data\" or "
                        "\"filesystem\" (%s)",
                        i, got);
        } else {
            r->kind = (enum catalog_kind)k;
            p->region_kind_ok[i] = true;
        }
    }
    if (json_object_object_get_ex(e, "slot", &v)) {
        const char *s = cat_json_str(v);
        if (s && strcmp(s, "user1") == 0) {
            r->slot = CATALOG_SLOT_USER1;
        } else if (s && strcmp(s, "user2") == 0) {
            r->slot = CATALOG_SLOT_USER2;
        } else {
            json_msg_describe(v, got, sizeof(got));
            cat_rep_add(rep, false, ri,
                        "regions[%zu].slot: must be \"user1\" or \"user2\" (the ESP8266 NONOS "
                        "dual-image halves) (%s)",
                        i, got);
        }
    }
}

/*
 * The ESP8266 NONOS dual-image layout (catalog.h): what the manifest alone can tell.
 * Sets p->slot_bytes when the user2 offset is one of the SDK's.
 */
static void check_slots(struct cat_parsed *p, struct catalog_report *rep)
{
    struct catalog_manifest *m = p->m;
    int user[3] = {-1, -1, -1};
    size_t n_slots = 0;
    for (size_t i = 0; i < m->n_regions; i++) {
        const struct catalog_manifest_region *r = &m->regions[i];
        if (r->slot == CATALOG_SLOT_NONE)
            continue;
        n_slots++;
        int ri = (int)i;
        if (p->region_kind_ok[i] && r->kind != CATALOG_KIND_APP)
            cat_rep_add(rep, false, ri,
                        "regions[%zu].slot: only an app region has a slot (this one is kind "
                        "\"%s\")",
                        i, catalog_kind_to_string(r->kind));
        if (p->chip_ok && m->chip != ESP_CHIP_ESP8266)
            cat_rep_add(
                rep, false, ri,
                "regions[%zu].slot: user1/user2 is the ESP8266 NONOS SDK dual-image layout; "
                "the %s has no such slots (its OTA partitions come from the partition "
                "table): remove \"slot\"",
                i, esp_chip_get(m->chip)->name);
        if (user[r->slot] >= 0)
            cat_rep_add(rep, false, ri, "regions[%zu].slot: a second %s (the first is regions[%d])",
                        i, catalog_slot_to_string(r->slot), user[r->slot]);
        else
            user[r->slot] = ri;
    }
    if (n_slots == 0)
        return;
    for (int s = CATALOG_SLOT_USER1; s <= CATALOG_SLOT_USER2; s++)
        if (user[s] < 0)
            cat_rep_add(rep, false, -1,
                        "regions: a dual-image set needs both a \"user1\" and a \"user2\" app "
                        "region; %s is missing",
                        catalog_slot_to_string((enum catalog_slot)s));
    for (size_t i = 0; i < m->n_regions; i++)
        if (p->region_kind_ok[i] && m->regions[i].kind == CATALOG_KIND_APP &&
            m->regions[i].slot == CATALOG_SLOT_NONE)
            cat_rep_add(rep, false, (int)i,
                        "regions[%zu]: an app without a slot in a dual-image set; the set holds "
                        "exactly the user1 and user2 apps (declare other files as kind \"data\")",
                        i);
    int u1 = user[CATALOG_SLOT_USER1], u2 = user[CATALOG_SLOT_USER2];
    if (u1 >= 0 && p->region_offset_ok[u1] && m->regions[u1].offset != CATALOG_USER1_OFFSET)
        cat_rep_add(rep, false, u1,
                    "regions[%d]: user1 must be at 0x%x (where boot_v1.x starts it), not at 0x%x",
                    u1, CATALOG_USER1_OFFSET, m->regions[u1].offset);
    if (u2 >= 0 && p->region_offset_ok[u2]) {
        uint32_t off = m->regions[u2].offset;
        uint32_t slot = off - CATALOG_USER1_OFFSET;
        if (off != 0x41000 && off != 0x81000 && off != 0x101000) {
            cat_rep_add(rep, false, u2,
                        "regions[%d]: user2 must be at 0x41000, 0x81000 or 0x101000 (0x1000 past "
                        "the half of a 512 KB, 1 MB or 2 MB application area), not at 0x%x",
                        u2, off);
        } else if (m->flash_size && m->flash_size < 2 * slot) {
            cat_rep_add(rep, false, u2,
                        "regions[%d]: user2 at 0x%x means two %u KiB slots, which do not fit the "
                        "%u KiB flash (flash_size)",
                        u2, off, slot / 1024, m->flash_size / 1024);
        } else {
            p->slot_bytes = slot;
        }
    }
}

static void sizes_for_chip(const struct esp_chip_desc *chip, char *buf, size_t n)
{
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < chip->n_size_codes && used < n; i++) {
        uint32_t b = chip->size_codes[i];
        if (b == 0)
            continue;
        if (b >= 1024u * 1024)
            used += (size_t)snprintf(buf + used, n - used, "%s%uMB", used ? ", " : "",
                                     b / (1024u * 1024));
        else
            used += (size_t)snprintf(buf + used, n - used, "%s%uKB", used ? ", " : "", b / 1024u);
    }
}

static void parse_flash_params(json_object *root, struct cat_parsed *p, struct catalog_report *rep)
{
    struct catalog_manifest *m = p->m;
    const struct esp_chip_desc *chip = p->chip_ok ? esp_chip_get(m->chip) : NULL;
    json_object *v;
    char got[96];
    bool keep;
    if (json_object_object_get_ex(root, "flash_mode", &v)) {
        const char *s = cat_json_str(v);
        int mode = s ? esp_parse_flash_mode(s, &keep) : -EINVAL;
        if (mode < 0) {
            json_msg_describe(v, got, sizeof(got));
            cat_rep_add(rep, false, -1,
                        "flash_mode: must be \"qio\", \"qout\", \"dio\", \"dout\" or "
                        "\"keep\" (%s)",
                        got);
        } else {
            m->flash_mode = keep ? -1 : mode;
        }
    }
    if (json_object_object_get_ex(root, "flash_size", &v)) {
        const char *s = cat_json_str(v);
        uint32_t bytes = 0;
        json_msg_describe(v, got, sizeof(got));
        if (s && strcasecmp(s, "detect") == 0) {
            cat_rep_add(rep, false, -1,
                        "flash_size: \"detect\" is not possible in a manifest; give the size the "
                        "firmware was built for (e.g. \"4MB\") or \"keep\"");
        } else if (!s || esp_parse_flash_size(s, &bytes, &keep) < 0) {
            cat_rep_add(rep, false, -1, "flash_size: must be a size like \"4MB\" or \"keep\" (%s)",
                        got);
        } else if (!keep) {
            m->flash_size = bytes;
            int code = chip ? esp_chip_flash_size_code(chip, bytes) : -EINVAL;
            if (chip && code < 0) {
                char sizes[160];
                sizes_for_chip(chip, sizes, sizeof(sizes));
                cat_rep_add(rep, false, -1,
                            "flash_size: %s is not a flash size of the %s (valid: %s)", s,
                            chip->name, sizes);
            } else if (chip) {
                m->flash_size_code = code;
            }
        }
    }
    if (json_object_object_get_ex(root, "flash_freq", &v)) {
        const char *s = cat_json_str(v);
        unsigned mhz = 0;
        json_msg_describe(v, got, sizeof(got));
        if (!s || esp_parse_flash_freq(s, &mhz, &keep) < 0) {
            cat_rep_add(rep, false, -1,
                        "flash_freq: must be a frequency like \"40m\" or \"keep\" (%s)", got);
        } else if (!keep) {
            m->flash_freq_mhz = mhz;
            int code = chip ? esp_chip_flash_freq_code(chip, mhz) : -EINVAL;
            if (chip && code < 0)
                cat_rep_add(rep, false, -1, "flash_freq: %u MHz is not a flash frequency of the %s",
                            mhz, chip->name);
            else if (chip)
                m->flash_freq_code = code;
        }
    }
}

/*
 * "esptool_args": {"before": ..., "after": ..., "stub": ...}: how the build wants the board
 * driven (ESP-IDF's extra_esptool_args; docs/CONFIG.md). Every key optional; esptool's names
 * ('-' or ESP-IDF's '_'); "manual" is the CLI's, not a build's.
 */
static void parse_esptool_args(json_object *root, struct catalog_manifest *m,
                               struct catalog_report *rep)
{
    json_object *o, *v;
    char got[96];
    if (!json_object_object_get_ex(root, "esptool_args", &o))
        return;
    if (!json_object_is_type(o, json_type_object)) {
        json_msg_describe(o, got, sizeof(got));
        cat_rep_add(rep, false, -1,
                    "esptool_args: must be an object {\"before\": ..., \"after\": ..., "
                    "\"stub\": ...} (%s)",
                    got);
        return;
    }
    json_object_object_foreach(o, key, val)
    {
        (void)val;
        if (strcmp(key, "before") != 0 && strcmp(key, "after") != 0 && strcmp(key, "stub") != 0)
            cat_rep_add(rep, false, -1,
                        "esptool_args.%.60s: unknown key (valid: before, after, stub)", key);
    }
    struct catalog_esptool_args *a = &m->esptool_args;
    if (json_object_object_get_ex(o, "before", &v)) {
        const char *s = cat_json_str(v);
        int b = s ? esp_before_from_string(s) : -EINVAL;
        if (b < 0 || b == ESP_BEFORE_MANUAL) {
            json_msg_describe(v, got, sizeof(got));
            cat_rep_add(rep, false, -1,
                        "esptool_args.before: must be \"default-reset\", \"usb-reset\", "
                        "\"no-reset\" or \"no-reset-no-sync\" (%s)",
                        got);
        } else {
            a->has_before = true;
            a->before = (enum esp_before)b;
        }
    }
    if (json_object_object_get_ex(o, "after", &v)) {
        const char *s = cat_json_str(v);
        int x = s ? esp_after_from_string(s) : -EINVAL;
        if (x < 0) {
            json_msg_describe(v, got, sizeof(got));
            cat_rep_add(rep, false, -1,
                        "esptool_args.after: must be \"hard-reset\", \"soft-reset\", "
                        "\"no-reset\" or \"no-reset-stub\" (%s)",
                        got);
        } else {
            a->has_after = true;
            a->after = (enum esp_after)x;
        }
    }
    if (json_object_object_get_ex(o, "stub", &v)) {
        if (!json_object_is_type(v, json_type_boolean)) {
            json_msg_describe(v, got, sizeof(got));
            cat_rep_add(rep, false, -1,
                        "esptool_args.stub: must be true or false (false: the ROM loader only) "
                        "(%s)",
                        got);
        } else {
            a->has_stub = true;
            a->stub = json_object_get_boolean(v);
        }
    }
}

/*
 * Fills p->m as far as the manifest allows, adding every problem to rep.
 * Returns -EINVAL when the text is not a JSON object at all (nothing usable),
 * -ENOMEM, else 0 (check rep->n_errors).
 */
int cat_manifest_parse(const char *json, size_t len, struct cat_parsed *p,
                       struct catalog_report *rep)
{
    memset(p, 0, sizeof(*p));
    p->m = calloc(1, sizeof(*p->m));
    if (!p->m)
        return -ENOMEM;
    struct catalog_manifest *m = p->m;
    m->flash_mode = -1;
    m->flash_size_code = -1;
    m->flash_freq_code = -1;
    if (len > MANIFEST_MAX_BYTES) {
        cat_rep_add(rep, false, -1, "manifest.json: too large (%zu bytes, at most %u)", len,
                    MANIFEST_MAX_BYTES);
        return -EINVAL;
    }
    json_object *root = parse_json(json, len, MANIFEST_FILE, rep);
    if (!root)
        return -EINVAL;

    static const char *const keys[] = {"name",         "version",    "chip",       "description",
                                       "flash_mode",   "flash_size", "flash_freq", "regions",
                                       "esptool_args", NULL};
    json_object_object_foreach(root, key, val)
    {
        (void)val;
        bool ok = false;
        for (const char *const *k = keys; *k && !ok; k++)
            ok = strcmp(key, *k) == 0;
        if (!ok)
            cat_rep_add(rep, false, -1,
                        "%.60s: unknown key (valid: name, version, chip, description, flash_mode, "
                        "flash_size, flash_freq, regions, esptool_args)",
                        key);
    }

    parse_name_field(root, "name", "demo", &m->name, rep);
    parse_name_field(root, "version", "1.0.0", &m->version, rep);

    json_object *v;
    char got[96];
    if (json_object_object_get_ex(root, "description", &v)) {
        const char *s = cat_json_str(v);
        if (!s || strlen(s) > 1000) {
            json_msg_describe(v, got, sizeof(got));
            cat_rep_add(rep, false, -1,
                        "description: must be a string of at most 1000 characters "
                        "(%s)",
                        got);
        } else if ((m->description = strdup(s)) == NULL) {
            cat_rep_add(rep, false, -1, "description: out of memory");
        }
    }

    if (!json_object_object_get_ex(root, "chip", &v)) {
        cat_rep_add(rep, false, -1, "chip: missing (chip family, e.g. \"esp32\", \"esp32c3\")");
    } else {
        const char *s = cat_json_str(v);
        const struct esp_chip_desc *chip = s ? esp_chip_by_name(s) : NULL;
        if (!chip) {
            char known[256] = "";
            size_t used = 0;
            for (int i = 0; i < ESP_CHIP_COUNT && used < sizeof(known); i++)
                used += (size_t)snprintf(known + used, sizeof(known) - used, "%s%s", i ? ", " : "",
                                         esp_chip_get((enum esp_chip)i)->stub_name);
            json_msg_describe(v, got, sizeof(got));
            cat_rep_add(rep, false, -1, "chip: unknown chip family (%s; known: %s)", got, known);
        } else {
            m->chip = chip->chip;
            p->chip_ok = true;
        }
    }

    parse_flash_params(root, p, rep);
    parse_esptool_args(root, m, rep);

    if (!json_object_object_get_ex(root, "regions", &v)) {
        cat_rep_add(rep, false, -1, "regions: missing (list of {\"offset\", \"file\", \"kind\"})");
    } else if (!json_object_is_type(v, json_type_array)) {
        json_msg_describe(v, got, sizeof(got));
        cat_rep_add(rep, false, -1, "regions: must be a list (%s)", got);
    } else {
        size_t n = json_object_array_length(v);
        if (n == 0) {
            cat_rep_add(rep, false, -1, "regions: empty (a firmware set needs at least one file)");
        } else if (n > CATALOG_MAX_REGIONS) {
            cat_rep_add(rep, false, -1, "regions: %zu regions, at most %d", n, CATALOG_MAX_REGIONS);
        } else {
            m->regions = calloc(n, sizeof(*m->regions));
            if (!m->regions) {
                json_object_put(root);
                return -ENOMEM;
            }
            m->n_regions = n;
            for (size_t i = 0; i < n; i++)
                parse_region(json_object_array_get_idx(v, i), i, p, rep);
            check_slots(p, rep);
        }
    }
    json_object_put(root);
    return 0;
}

int catalog_manifest_parse(const char *json, size_t len, struct catalog_manifest **out,
                           struct catalog_report *rep)
{
    struct catalog_report local;
    if (!rep) {
        catalog_report_init(&local);
        rep = &local;
    }
    if (out)
        *out = NULL;
    size_t errors_before = rep->n_errors;
    struct cat_parsed p;
    int rc = json ? cat_manifest_parse(json, len, &p, rep) : -EINVAL;
    if (rc == 0 && rep->n_errors != errors_before)
        rc = -EINVAL;
    if (rc == 0 && out)
        *out = p.m;
    else if (json)
        catalog_manifest_free(p.m);
    if (rep == &local)
        catalog_report_free(&local);
    return rc;
}
