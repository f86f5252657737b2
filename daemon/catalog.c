/*
 * catalog: firmware sets on disk — manifest parsing, validation, atomic
 * import, verified loading, listing and deletion.
 *
 * Owns: the manifest format (docs/CONFIG.md, "Firmware sets"), the on-disk
 * layout described in catalog.h, and the validation messages. Validation
 * never stops at the first problem: a technician fixing a set wants the whole
 * list. Manifest and file contents are untrusted (uploads): every value is
 * type- and range-checked, file names are restricted to a safe alphabet before
 * they are ever joined to a path, and images go through esp_image_parse.
 * Digests come from libcrypto (EVP). The compressed copy is made once at import
 * by zcompress_best (zopfli, or zlib level 9 where that is smaller): any zlib
 * stream inflates to the same bytes on the chip, and the smaller one is sent to
 * every board (FLASH_DEFL_DATA).
 */
#include "catalog.h"
#include "json_msg.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <openssl/evp.h>
#include <zlib.h>

#include "esp_error.h"
#include "esp_image.h"
#include "esp_loader.h"
#include "zcompress.h"

#define MANIFEST_FILE "manifest.json"
#define INDEX_FILE "index.json"
#define MANIFEST_MAX_BYTES (256u * 1024)
#define INDEX_MAX_BYTES (256u * 1024)
#define REPORT_CAP 200
#define TMP_IMPORT ".import-"
#define TMP_DELETE ".delete-"

struct catalog {
    char *root; /* <data_dir>/firmware */
};

/* ---- names and kinds ----------------------------------------------------------------- */

static const char *const kind_names[] = {"bootloader", "app", "data", "filesystem"};

const char *catalog_kind_to_string(enum catalog_kind kind)
{
    if ((unsigned)kind >= sizeof(kind_names) / sizeof(kind_names[0]))
        return "unknown";
    return kind_names[kind];
}

static int kind_from_string(const char *s)
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

/* ---- reports ------------------------------------------------------------------------- */

void catalog_report_init(struct catalog_report *rep)
{
    if (rep)
        memset(rep, 0, sizeof(*rep));
}

void catalog_report_free(struct catalog_report *rep)
{
    if (!rep)
        return;
    free(rep->items);
    memset(rep, 0, sizeof(*rep));
}

static void rep_add(struct catalog_report *rep, bool warning, int region, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void rep_add(struct catalog_report *rep, bool warning, int region, const char *fmt, ...)
{
    if (warning)
        rep->n_warnings++;
    else
        rep->n_errors++;
    if (rep->n >= REPORT_CAP) {
        rep->n_dropped++;
        return;
    }
    struct catalog_problem *items = realloc(rep->items, (rep->n + 1) * sizeof(*items));
    if (!items) {
        rep->n_dropped++;
        return;
    }
    rep->items = items;
    struct catalog_problem *p = &items[rep->n++];
    p->warning = warning;
    p->region = region;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->message, sizeof(p->message), fmt, ap);
    va_end(ap);
    /* Names and values come from the manifest: keep the message one printable line. */
    for (char *c = p->message; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            *c = '?';
}

char *catalog_report_format(const struct catalog_report *rep, char *buf, size_t len)
{
    if (!buf || len == 0)
        return buf;
    buf[0] = '\0';
    if (!rep)
        return buf;
    size_t used = 0;
    for (size_t i = 0; i < rep->n && used < len; i++)
        used +=
            (size_t)snprintf(buf + used, len - used, "%s: %s\n",
                             rep->items[i].warning ? "warning" : "error", rep->items[i].message);
    if (rep->n_dropped && used < len)
        snprintf(buf + used, len - used, "... and %zu more problems\n", rep->n_dropped);
    return buf;
}

/* ---- small helpers ------------------------------------------------------------------- */

/* String value without embedded NULs; NULL otherwise. */
static const char *json_str(json_object *v)
{
    if (!json_object_is_type(v, json_type_string))
        return NULL;
    const char *s = json_object_get_string(v);
    if (!s || strlen(s) != (size_t)json_object_get_string_len(v))
        return NULL;
    return s;
}

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
        rep_add(rep, false, -1, "%s: too large", what);
        return NULL;
    }
    json_tokener *tok = json_tokener_new();
    if (!tok) {
        rep_add(rep, false, -1, "%s: out of memory", what);
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
            rep_add(rep, false, -1,
                    "%s: JSON syntax error at line %zu, column %zu: unexpected end of file", what,
                    line, col);
        } else {
            line_col(text, end > len ? len : end, &line, &col);
            rep_add(rep, false, -1, "%s: JSON syntax error at line %zu, column %zu: %s", what, line,
                    col, json_tokener_error_desc(jerr));
        }
        return NULL;
    }
    for (size_t i = end; i < len; i++) {
        if (!isspace((unsigned char)text[i])) {
            line_col(text, i, &line, &col);
            rep_add(rep, false, -1,
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
        rep_add(rep, false, -1, "%s: must be a JSON object { ... } (%s)", what, got);
        json_object_put(root);
        return NULL;
    }
    return root;
}

static void hex(const uint8_t *d, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[d[i] >> 4];
        out[2 * i + 1] = digits[d[i] & 15];
    }
    out[2 * n] = '\0';
}

static int digest_hex(const EVP_MD *md, const uint8_t *data, size_t len, char *out)
{
    uint8_t d[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (EVP_Digest(data, len, d, &n, md, NULL) != 1)
        return -ENOMEM;
    hex(d, n, out);
    return 0;
}

static char *path_join(const char *a, const char *b)
{
    char *p = NULL;
    if (asprintf(&p, "%s/%s", a, b) < 0)
        return NULL;
    return p;
}

static char *path_join3(const char *a, const char *b, const char *c)
{
    char *p = NULL;
    if (asprintf(&p, "%s/%s/%s", a, b, c) < 0)
        return NULL;
    return p;
}

/* Reads a regular file of at most max bytes into a malloc'd buffer (+1 NUL byte). */
static int read_file(const char *path, size_t max, uint8_t **data, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;
    }
    if ((uint64_t)st.st_size > max) {
        close(fd);
        return -EFBIG;
    }
    size_t size = (size_t)st.st_size;
    uint8_t *buf = malloc(size + 1);
    if (!buf) {
        close(fd);
        return -ENOMEM;
    }
    size_t got = 0;
    while (got < size) {
        ssize_t n = read(fd, buf + got, size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int e = n < 0 ? errno : EIO; /* file shrank under us */
            free(buf);
            close(fd);
            return -e;
        }
        got += (size_t)n;
    }
    close(fd);
    buf[size] = 0;
    *data = buf;
    *len = size;
    return 0;
}

static int write_all(int fd, const uint8_t *data, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, data, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Creates path (must not exist) with data, fsynced. */
static int write_file_sync(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    int rc = write_all(fd, data, len);
    if (rc == 0 && fsync(fd) != 0)
        rc = -errno;
    if (close(fd) != 0 && rc == 0)
        rc = -errno;
    return rc;
}

static int fsync_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = fsync(fd) == 0 ? 0 : -errno;
    close(fd);
    return rc;
}

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    if (remove(p) != 0 && errno != ENOENT)
        return -1;
    return 0;
}

static int rm_rf(const char *path)
{
    if (nftw(path, rm_cb, 16, FTW_DEPTH | FTW_PHYS) != 0)
        return errno == ENOENT ? 0 : -errno;
    return 0;
}

static int mkdir_p(const char *path)
{
    char *tmp = strdup(path);
    if (!tmp)
        return -ENOMEM;
    int rc = 0;
    for (char *p = tmp + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char c = *p;
        *p = '\0';
        if (mkdir(tmp, 0755) != 0 && errno != EEXIST) {
            rc = -errno;
            break;
        }
        *p = c;
        if (c == '\0')
            break;
    }
    free(tmp);
    if (rc == 0) {
        struct stat st;
        if (stat(path, &st) != 0)
            rc = -errno;
        else if (!S_ISDIR(st.st_mode))
            rc = -ENOTDIR;
    }
    return rc;
}

/* ---- manifest ------------------------------------------------------------------------ */

/* A manifest as parsed, with what is known to be usable for later checks. */
struct parsed {
    struct catalog_manifest *m;
    bool chip_ok;
    bool region_offset_ok[CATALOG_MAX_REGIONS];
    bool region_file_ok[CATALOG_MAX_REGIONS];
    bool region_kind_ok[CATALOG_MAX_REGIONS];
    uint32_t slot_bytes; /* dual layout: the size of one slot (user2 offset - 0x1000), else 0 */
};

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

static const char name_rule[] = "use letters, digits, '.', '_' and '-' only (at most 64), not "
                                "starting with '.' and without \"..\"";

static void parse_name_field(json_object *root, const char *key, const char *example, char **out,
                             struct catalog_report *rep)
{
    json_object *v;
    if (!json_object_object_get_ex(root, key, &v)) {
        rep_add(rep, false, -1, "%s: missing (e.g. \"%s\")", key, example);
        return;
    }
    const char *s = json_str(v);
    if (!s) {
        char got[96];
        json_msg_describe(v, got, sizeof(got));
        rep_add(rep, false, -1, "%s: must be a string (%s)", key, got);
        return;
    }
    if (!catalog_name_valid(s)) {
        rep_add(rep, false, -1, "%s: \"%.80s\" is not allowed: %s", key, s, name_rule);
        return;
    }
    *out = strdup(s);
    if (!*out)
        rep_add(rep, false, -1, "%s: out of memory", key);
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
    const char *s = json_str(v);
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

static void parse_region(json_object *e, size_t i, struct parsed *p, struct catalog_report *rep)
{
    struct catalog_manifest_region *r = &p->m->regions[i];
    int ri = (int)i;
    char got[96];
    if (!json_object_is_type(e, json_type_object)) {
        json_msg_describe(e, got, sizeof(got));
        rep_add(rep, false, ri,
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
            rep_add(rep, false, ri,
                    "regions[%zu].%.60s: unknown key (valid: offset, file, kind, slot)", i, key);
    }
    json_object *v;
    if (!json_object_object_get_ex(e, "offset", &v)) {
        rep_add(rep, false, ri, "regions[%zu].offset: missing (flash address, e.g. \"0x10000\")",
                i);
    } else {
        int rc = parse_offset(v, &r->offset);
        json_msg_describe(v, got, sizeof(got));
        if (rc == -ERANGE) {
            rep_add(rep, false, ri, "regions[%zu].offset: must be from 0x0 to 0xffffffff (%s)", i,
                    got);
        } else if (rc < 0) {
            rep_add(rep, false, ri,
                    "regions[%zu].offset: not a number or hex string (%s; e.g. 65536 or "
                    "\"0x10000\")",
                    i, got);
        } else if (r->offset % 4 != 0) {
            rep_add(rep, false, ri, "regions[%zu].offset: 0x%x is not a multiple of 4", i,
                    r->offset);
        } else {
            p->region_offset_ok[i] = true;
            if (r->offset % 0x1000 != 0)
                rep_add(rep, true, ri,
                        "regions[%zu].offset: 0x%x is not on a 4 KiB sector boundary; the "
                        "flasher erases whole sectors, so the bytes before it in sector 0x%x "
                        "are lost",
                        i, r->offset, r->offset & ~0xFFFu);
        }
    }
    if (!json_object_object_get_ex(e, "file", &v)) {
        rep_add(rep, false, ri, "regions[%zu].file: missing (file name next to manifest.json)", i);
    } else {
        const char *s = json_str(v);
        if (!s) {
            json_msg_describe(v, got, sizeof(got));
            rep_add(rep, false, ri, "regions[%zu].file: must be a string (%s)", i, got);
        } else if (!catalog_name_valid(s)) {
            rep_add(rep, false, ri,
                    "regions[%zu].file: \"%.80s\" is not allowed: a plain file name next to "
                    "manifest.json (no '/', no \"..\", not starting with '.'; letters, digits, "
                    "'.', '_', '-' only)",
                    i, s);
        } else if (file_name_reserved(s)) {
            rep_add(rep, false, ri,
                    "regions[%zu].file: \"%s\" is reserved by the catalog (manifest.json, "
                    "index.json and names ending in .z); rename the file",
                    i, s);
        } else if ((r->file = strdup(s)) == NULL) {
            rep_add(rep, false, ri, "regions[%zu].file: out of memory", i);
        } else {
            p->region_file_ok[i] = true;
        }
    }
    if (!json_object_object_get_ex(e, "kind", &v)) {
        rep_add(rep, false, ri, "regions[%zu].kind: missing (bootloader, app, data or filesystem)",
                i);
    } else {
        const char *s = json_str(v);
        int k = s ? kind_from_string(s) : -EINVAL;
        if (k < 0) {
            json_msg_describe(v, got, sizeof(got));
            rep_add(rep, false, ri,
                    "regions[%zu].kind: must be \"bootloader\", \"app\", \"data\" or "
                    "\"filesystem\" (%s)",
                    i, got);
        } else {
            r->kind = (enum catalog_kind)k;
            p->region_kind_ok[i] = true;
        }
    }
    if (json_object_object_get_ex(e, "slot", &v)) {
        const char *s = json_str(v);
        if (s && strcmp(s, "user1") == 0) {
            r->slot = CATALOG_SLOT_USER1;
        } else if (s && strcmp(s, "user2") == 0) {
            r->slot = CATALOG_SLOT_USER2;
        } else {
            json_msg_describe(v, got, sizeof(got));
            rep_add(rep, false, ri,
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
static void check_slots(struct parsed *p, struct catalog_report *rep)
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
            rep_add(rep, false, ri,
                    "regions[%zu].slot: only an app region has a slot (this one is kind "
                    "\"%s\")",
                    i, catalog_kind_to_string(r->kind));
        if (p->chip_ok && m->chip != ESP_CHIP_ESP8266)
            rep_add(rep, false, ri,
                    "regions[%zu].slot: user1/user2 is the ESP8266 NONOS SDK dual-image layout; "
                    "the %s has no such slots (its OTA partitions come from the partition "
                    "table): remove \"slot\"",
                    i, esp_chip_get(m->chip)->name);
        if (user[r->slot] >= 0)
            rep_add(rep, false, ri, "regions[%zu].slot: a second %s (the first is regions[%d])", i,
                    catalog_slot_to_string(r->slot), user[r->slot]);
        else
            user[r->slot] = ri;
    }
    if (n_slots == 0)
        return;
    for (int s = CATALOG_SLOT_USER1; s <= CATALOG_SLOT_USER2; s++)
        if (user[s] < 0)
            rep_add(rep, false, -1,
                    "regions: a dual-image set needs both a \"user1\" and a \"user2\" app "
                    "region; %s is missing",
                    catalog_slot_to_string((enum catalog_slot)s));
    for (size_t i = 0; i < m->n_regions; i++)
        if (p->region_kind_ok[i] && m->regions[i].kind == CATALOG_KIND_APP &&
            m->regions[i].slot == CATALOG_SLOT_NONE)
            rep_add(rep, false, (int)i,
                    "regions[%zu]: an app without a slot in a dual-image set; the set holds "
                    "exactly the user1 and user2 apps (declare other files as kind \"data\")",
                    i);
    int u1 = user[CATALOG_SLOT_USER1], u2 = user[CATALOG_SLOT_USER2];
    if (u1 >= 0 && p->region_offset_ok[u1] && m->regions[u1].offset != CATALOG_USER1_OFFSET)
        rep_add(rep, false, u1,
                "regions[%d]: user1 must be at 0x%x (where boot_v1.x starts it), not at 0x%x", u1,
                CATALOG_USER1_OFFSET, m->regions[u1].offset);
    if (u2 >= 0 && p->region_offset_ok[u2]) {
        uint32_t off = m->regions[u2].offset;
        uint32_t slot = off - CATALOG_USER1_OFFSET;
        if (off != 0x41000 && off != 0x81000 && off != 0x101000) {
            rep_add(rep, false, u2,
                    "regions[%d]: user2 must be at 0x41000, 0x81000 or 0x101000 (0x1000 past "
                    "the half of a 512 KB, 1 MB or 2 MB application area), not at 0x%x",
                    u2, off);
        } else if (m->flash_size && m->flash_size < 2 * slot) {
            rep_add(rep, false, u2,
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

static void parse_flash_params(json_object *root, struct parsed *p, struct catalog_report *rep)
{
    struct catalog_manifest *m = p->m;
    const struct esp_chip_desc *chip = p->chip_ok ? esp_chip_get(m->chip) : NULL;
    json_object *v;
    char got[96];
    bool keep;
    if (json_object_object_get_ex(root, "flash_mode", &v)) {
        const char *s = json_str(v);
        int mode = s ? esp_parse_flash_mode(s, &keep) : -EINVAL;
        if (mode < 0) {
            json_msg_describe(v, got, sizeof(got));
            rep_add(rep, false, -1,
                    "flash_mode: must be \"qio\", \"qout\", \"dio\", \"dout\" or "
                    "\"keep\" (%s)",
                    got);
        } else {
            m->flash_mode = keep ? -1 : mode;
        }
    }
    if (json_object_object_get_ex(root, "flash_size", &v)) {
        const char *s = json_str(v);
        uint32_t bytes = 0;
        json_msg_describe(v, got, sizeof(got));
        if (s && strcasecmp(s, "detect") == 0) {
            rep_add(rep, false, -1,
                    "flash_size: \"detect\" is not possible in a manifest; give the size the "
                    "firmware was built for (e.g. \"4MB\") or \"keep\"");
        } else if (!s || esp_parse_flash_size(s, &bytes, &keep) < 0) {
            rep_add(rep, false, -1, "flash_size: must be a size like \"4MB\" or \"keep\" (%s)",
                    got);
        } else if (!keep) {
            m->flash_size = bytes;
            int code = chip ? esp_chip_flash_size_code(chip, bytes) : -EINVAL;
            if (chip && code < 0) {
                char sizes[160];
                sizes_for_chip(chip, sizes, sizeof(sizes));
                rep_add(rep, false, -1, "flash_size: %s is not a flash size of the %s (valid: %s)",
                        s, chip->name, sizes);
            } else if (chip) {
                m->flash_size_code = code;
            }
        }
    }
    if (json_object_object_get_ex(root, "flash_freq", &v)) {
        const char *s = json_str(v);
        unsigned mhz = 0;
        json_msg_describe(v, got, sizeof(got));
        if (!s || esp_parse_flash_freq(s, &mhz, &keep) < 0) {
            rep_add(rep, false, -1, "flash_freq: must be a frequency like \"40m\" or \"keep\" (%s)",
                    got);
        } else if (!keep) {
            m->flash_freq_mhz = mhz;
            int code = chip ? esp_chip_flash_freq_code(chip, mhz) : -EINVAL;
            if (chip && code < 0)
                rep_add(rep, false, -1, "flash_freq: %u MHz is not a flash frequency of the %s",
                        mhz, chip->name);
            else if (chip)
                m->flash_freq_code = code;
        }
    }
}

/*
 * Fills p->m as far as the manifest allows, adding every problem to rep.
 * Returns -EINVAL when the text is not a JSON object at all (nothing usable),
 * -ENOMEM, else 0 (check rep->n_errors).
 */
static int manifest_parse(const char *json, size_t len, struct parsed *p,
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
        rep_add(rep, false, -1, "manifest.json: too large (%zu bytes, at most %u)", len,
                MANIFEST_MAX_BYTES);
        return -EINVAL;
    }
    json_object *root = parse_json(json, len, MANIFEST_FILE, rep);
    if (!root)
        return -EINVAL;

    static const char *const keys[] = {"name",        "version",    "chip",
                                       "description", "flash_mode", "flash_size",
                                       "flash_freq",  "regions",    NULL};
    json_object_object_foreach(root, key, val)
    {
        (void)val;
        bool ok = false;
        for (const char *const *k = keys; *k && !ok; k++)
            ok = strcmp(key, *k) == 0;
        if (!ok)
            rep_add(rep, false, -1,
                    "%.60s: unknown key (valid: name, version, chip, description, flash_mode, "
                    "flash_size, flash_freq, regions)",
                    key);
    }

    parse_name_field(root, "name", "demo", &m->name, rep);
    parse_name_field(root, "version", "1.0.0", &m->version, rep);

    json_object *v;
    char got[96];
    if (json_object_object_get_ex(root, "description", &v)) {
        const char *s = json_str(v);
        if (!s || strlen(s) > 1000) {
            json_msg_describe(v, got, sizeof(got));
            rep_add(rep, false, -1,
                    "description: must be a string of at most 1000 characters "
                    "(%s)",
                    got);
        } else if ((m->description = strdup(s)) == NULL) {
            rep_add(rep, false, -1, "description: out of memory");
        }
    }

    if (!json_object_object_get_ex(root, "chip", &v)) {
        rep_add(rep, false, -1, "chip: missing (chip family, e.g. \"esp32\", \"esp32c3\")");
    } else {
        const char *s = json_str(v);
        const struct esp_chip_desc *chip = s ? esp_chip_by_name(s) : NULL;
        if (!chip) {
            char known[256] = "";
            size_t used = 0;
            for (int i = 0; i < ESP_CHIP_COUNT && used < sizeof(known); i++)
                used += (size_t)snprintf(known + used, sizeof(known) - used, "%s%s", i ? ", " : "",
                                         esp_chip_get((enum esp_chip)i)->stub_name);
            json_msg_describe(v, got, sizeof(got));
            rep_add(rep, false, -1, "chip: unknown chip family (%s; known: %s)", got, known);
        } else {
            m->chip = chip->chip;
            p->chip_ok = true;
        }
    }

    parse_flash_params(root, p, rep);

    if (!json_object_object_get_ex(root, "regions", &v)) {
        rep_add(rep, false, -1, "regions: missing (list of {\"offset\", \"file\", \"kind\"})");
    } else if (!json_object_is_type(v, json_type_array)) {
        json_msg_describe(v, got, sizeof(got));
        rep_add(rep, false, -1, "regions: must be a list (%s)", got);
    } else {
        size_t n = json_object_array_length(v);
        if (n == 0) {
            rep_add(rep, false, -1, "regions: empty (a firmware set needs at least one file)");
        } else if (n > CATALOG_MAX_REGIONS) {
            rep_add(rep, false, -1, "regions: %zu regions, at most %d", n, CATALOG_MAX_REGIONS);
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
    struct parsed p;
    int rc = json ? manifest_parse(json, len, &p, rep) : -EINVAL;
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

/* ---- validation ---------------------------------------------------------------------- */

struct loaded {
    uint8_t *data;
    size_t len;
    bool ok; /* present, non-empty, within limits */
};

static void region_label(const struct catalog_manifest *m, size_t i, char *buf, size_t n)
{
    if (m->regions[i].file)
        snprintf(buf, n, "regions[%zu] %s", i, m->regions[i].file);
    else
        snprintf(buf, n, "regions[%zu]", i);
}

static void check_image(const struct esp_chip_desc *chip, const char *label, int ri,
                        const uint8_t *data, size_t len, struct catalog_report *rep)
{
    bool esp8266 = chip->chip == ESP_CHIP_ESP8266;
    struct esp_image_info info;
    struct esp_error err;
    esp_error_clear(&err);
    int rc = esp_image_parse(data, len, esp8266, &info, &err);
    if (rc != 0 && esp8266) {
        /* Perhaps an image for an ESP32-family chip: say so rather than "bad segment". */
        struct esp_image_info other;
        if (esp_image_parse(data, len, false, &other, NULL) == 0) {
            const struct esp_chip_desc *o = esp_chip_by_image_id(other.chip_id);
            if (o) {
                rep_add(rep, false, ri,
                        "%s: image is for %s (chip id %u) but this firmware set is for %s", label,
                        o->name, other.chip_id, chip->name);
                return;
            }
        }
        if (len > 0 && data[0] == 0xEA) {
            rep_add(rep, false, ri,
                    "%s: an ESP8266 \"V2\" image (first byte 0xea) is an application started "
                    "by the SDK's boot_v1.x, not a bootloader the ROM can start; declare it as "
                    "kind \"app\" (with \"slot\": \"user1\"/\"user2\" for a dual-image set)",
                    label);
            return;
        }
    }
    if (rc == -EBADMSG) {
        rep_add(rep, false, ri, "%s: image is corrupted: %s", label, err.message);
        return;
    }
    if (rc != 0) {
        rep_add(rep, false, ri, "%s: not a valid ESP image: %s", label, err.message);
        return;
    }
    esp_error_clear(&err);
    if (esp_image_check_chip(&info, chip, -1, &err) != 0) {
        if (info.has_extended_header && (int)info.chip_id != chip->image_chip_id) {
            const struct esp_chip_desc *o = esp_chip_by_image_id(info.chip_id);
            rep_add(rep, false, ri,
                    "%s: image is for %s (chip id %u) but this firmware set is for %s", label,
                    o ? o->name : "an unknown chip", info.chip_id, chip->name);
        } else {
            rep_add(rep, false, ri, "%s: %s", label, err.message);
        }
    }
}

static uint32_t le32(const uint8_t *b)
{
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

/* Slot size of a NONOS flash size map (V2 header byte 3, high nibble); 0: no dual layout. */
static uint32_t size_map_slot(unsigned map)
{
    switch (map) {
    case 0:
        return 256u * 1024;
    case 2:
    case 3:
    case 4:
        return 512u * 1024;
    case 5:
    case 6:
        return 1024u * 1024;
    default:
        return 0;
    }
}

/*
 * An ESP8266 SDK "V2" image (PROTOCOL-ROM.md §7.4): header EA 04 <mode> <map|freq>
 * <entry u32>, the irom0 segment (address 0, length, data), then a complete ESP8266
 * 0xE9 image holding the RAM segments and its checksum, then the SDK's CRC word (not
 * checked here). The header checks are those raw TCP-OTA devices apply (§5).
 */
static void check_v2(const struct parsed *p, size_t i, const char *label, const uint8_t *d,
                     size_t len, struct catalog_report *rep)
{
    const struct catalog_manifest_region *r = &p->m->regions[i];
    int ri = (int)i;
    if (len < 24) {
        rep_add(rep, false, ri, "%s: %zu bytes is too short for an ESP8266 V2 image", label, len);
        return;
    }
    unsigned map = d[3] >> 4;
    uint32_t entry = le32(d + 4), irom_addr = le32(d + 8), irom_len = le32(d + 12);
    if (d[1] != 0x04)
        rep_add(rep, false, ri,
                "%s: V2 header byte 1 is 0x%02x, not 0x04; not an image from the SDK's "
                "gen_appbin.py or esptool elf2image --version 2",
                label, d[1]);
    if (d[2] > 3)
        rep_add(rep, false, ri, "%s: V2 header flash mode %u is not QIO/QOUT/DIO/DOUT (0-3)", label,
                d[2]);
    if (map > 6)
        rep_add(rep, false, ri, "%s: V2 header flash size map %u is not one of the SDK's (0-6)",
                label, map);
    if ((entry >> 16) != 0x4010)
        rep_add(rep, false, ri,
                "%s: entry address 0x%08x is not in IRAM (0x4010xxxx); boot_v1.x and raw "
                "TCP-OTA devices refuse it",
                label, entry);
    if (irom_addr != 0)
        rep_add(rep, false, ri, "%s: the irom0 segment's address is 0x%x, not 0", label, irom_addr);
    if (irom_len % 4 != 0 || irom_len > len - 24) {
        rep_add(rep, false, ri,
                "%s: the irom0 segment (%u bytes) runs past the end of the %zu-byte file: "
                "the image is truncated",
                label, irom_len, len);
        return;
    }
    struct esp_image_info info;
    struct esp_error err;
    esp_error_clear(&err);
    if (esp_image_parse(d + 16 + irom_len, len - 16 - irom_len, true, &info, &err) != 0) {
        rep_add(rep, false, ri,
                "%s: the RAM part after the irom0 segment (at byte %u) is not a valid ESP8266 "
                "image: %s",
                label, 16 + irom_len, err.message);
        return;
    }
    if (r->slot == CATALOG_SLOT_NONE || !p->slot_bytes)
        return;
    uint32_t want = size_map_slot(map);
    if (map <= 6 && !want)
        rep_add(rep, false, ri,
                "%s: built for flash size map %u (256 KB), which has no room for user1 and "
                "user2; rebuild for a 512 KB or larger map",
                label, map);
    else if (want && want != p->slot_bytes)
        rep_add(rep, false, ri,
                "%s: built for flash size map %u (%u KiB slots, user2 at 0x%x) but this set "
                "puts user2 at 0x%x; build both images for the map of the board's flash",
                label, map, want / 1024, CATALOG_USER1_OFFSET + want,
                CATALOG_USER1_OFFSET + p->slot_bytes);
    uint32_t max = p->slot_bytes - 0x5000;
    if (len > max)
        rep_add(rep, false, ri,
                "%s: %zu bytes is too large for a %u KiB slot (at most %u: the slot less its 4 "
                "KiB boot sector and 16 KiB of system parameters)",
                label, len, p->slot_bytes / 1024, max);
}

/* Inflates a gzip stream, at most max bytes out. Trailing bytes after the stream (an
 * ESP8266 signature trailer) are allowed. 0; -EFBIG; -EBADMSG with *why; -ENOMEM. */
static int gunzip_bounded(const uint8_t *in, size_t len, size_t max, uint8_t **out, size_t *out_len,
                          const char **why)
{
    *out = NULL;
    *out_len = 0;
    *why = "";
    z_stream zs;
    memset(&zs, 0, sizeof(zs));
    if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK)
        return -ENOMEM;
    size_t cap = 64u * 1024, used = 0;
    uint8_t *buf = malloc(cap);
    int rc = buf ? 0 : -ENOMEM;
    zs.next_in = (Bytef *)(uintptr_t)in;
    zs.avail_in = (uInt)len;
    while (rc == 0) {
        if (used == cap) {
            if (cap >= max) {
                rc = -EFBIG;
                break;
            }
            size_t ncap = cap * 2 > max ? max : cap * 2;
            uint8_t *nb = realloc(buf, ncap);
            if (!nb) {
                rc = -ENOMEM;
                break;
            }
            buf = nb;
            cap = ncap;
        }
        zs.next_out = buf + used;
        zs.avail_out = (uInt)(cap - used);
        int zr = inflate(&zs, Z_NO_FLUSH);
        used = cap - zs.avail_out;
        if (zr == Z_STREAM_END)
            break;
        if (zr == Z_OK)
            continue;
        if (zr == Z_BUF_ERROR && zs.avail_out == 0)
            continue;
        *why = zr == Z_BUF_ERROR ? "the stream is truncated" : zs.msg ? zs.msg : "corrupt data";
        rc = zr == Z_MEM_ERROR ? -ENOMEM : -EBADMSG;
    }
    inflateEnd(&zs);
    if (rc < 0) {
        free(buf);
        return rc;
    }
    *out = buf;
    *out_len = used;
    return 0;
}

/* A gzip-compressed ESP8266 app (catalog.h): inflated (bounded) and the inner image checked. */
static void check_gzip(const struct parsed *p, size_t i, const struct esp_chip_desc *chip,
                       const char *label, const uint8_t *d, size_t len, struct catalog_report *rep)
{
    const struct catalog_manifest_region *r = &p->m->regions[i];
    int ri = (int)i;
    if (chip->chip != ESP_CHIP_ESP8266) {
        rep_add(rep, false, ri,
                "%s: a gzip-compressed image (first bytes 1f 8b); only ESP8266 boards (Arduino "
                "Updater with eboot) take compressed images, the %s's bootloader and OTA "
                "updaters accept only the plain 0xE9 app image: import the uncompressed .bin",
                label, chip->name);
        return;
    }
    if (r->kind == CATALOG_KIND_BOOTLOADER) {
        rep_add(rep, false, ri,
                "%s: a gzip-compressed bootloader; the ROM cannot start a compressed image: "
                "use the plain bootloader .bin",
                label);
        return;
    }
    if (r->slot != CATALOG_SLOT_NONE) {
        rep_add(rep, false, ri,
                "%s: a gzip-compressed image as %s; boot_v1.x and raw TCP-OTA take only plain "
                "SDK V2 images (first byte 0xea): import the uncompressed user%c.bin",
                label, catalog_slot_to_string(r->slot), r->slot == CATALOG_SLOT_USER1 ? '1' : '2');
        return;
    }
    uint8_t *img = NULL;
    size_t n = 0;
    const char *why = "";
    int rc = gunzip_bounded(d, len, CATALOG_GZIP_MAX_INFLATED, &img, &n, &why);
    if (rc == -EFBIG) {
        rep_add(rep, false, ri,
                "%s: the gzip stream inflates to more than %u MiB, larger than any ESP8266 "
                "flash; not a compressed firmware image",
                label, CATALOG_GZIP_MAX_INFLATED >> 20);
    } else if (rc == -ENOMEM) {
        rep_add(rep, false, ri, "%s: out of memory while inflating the gzip image", label);
    } else if (rc < 0) {
        rep_add(rep, false, ri,
                "%s: the gzip stream is corrupt (%s); compress the image again with gzip -9", label,
                why);
    } else if (n == 0 || img[0] != 0xE9) {
        rep_add(rep, false, ri,
                "%s: the gzip stream inflates to %zu bytes that are not an ESP8266 app image "
                "(first byte %s0x%02x, expected 0xe9); compress the sketch's .bin",
                label, n, n ? "" : "none, ", n ? img[0] : 0);
    } else {
        char inner[160];
        snprintf(inner, sizeof(inner), "%s (inflated)", label);
        check_image(chip, inner, ri, img, n, rep);
    }
    free(img);
}

static void free_loaded(struct loaded *l, size_t n)
{
    if (!l)
        return;
    for (size_t i = 0; i < n; i++)
        free(l[i].data);
    free(l);
}

/* A filesystem image (SPIFFS, LittleFS, FAT) is not an ESP image: only its place and size
 * are checked. One per set (network OTA sends "the" filesystem image), on a sector. */
static void check_filesystem(const struct parsed *p, const char *label, size_t i, int *first_fs,
                             const uint8_t *data, size_t len, struct catalog_report *rep)
{
    const struct catalog_manifest_region *r = &p->m->regions[i];
    int ri = (int)i;
    if (*first_fs >= 0)
        rep_add(rep, false, ri,
                "%s: a second filesystem image (the first is regions[%d]); a set carries at "
                "most one (declare the others as kind \"data\")",
                label, *first_fs);
    else
        *first_fs = ri;
    if (p->region_offset_ok[i] && r->offset % CATALOG_SECTOR_BYTES != 0)
        rep_add(rep, false, ri,
                "%s: a filesystem image must start on a 4 KiB flash sector, not at 0x%x (use the "
                "offset of the spiffs/littlefs/fat partition in the partition table)",
                label, r->offset);
    if (len % CATALOG_SECTOR_BYTES != 0)
        rep_add(rep, true, ri,
                "%s: %zu bytes is not a whole number of 4 KiB sectors; filesystem images "
                "(mkspiffs, mklittlefs, FAT) are usually exactly the partition's size",
                label, len);
    if (len > 0 && data[0] == 0xE9)
        rep_add(rep, true, ri,
                "%s: starts like an ESP application image (0xE9); if it is the app, declare it "
                "as kind \"app\"",
                label);
}

static void check_files(struct parsed *p, catalog_load_fn load, void *ctx, struct loaded *l,
                        struct catalog_report *rep)
{
    struct catalog_manifest *m = p->m;
    const struct esp_chip_desc *chip = p->chip_ok ? esp_chip_get(m->chip) : NULL;
    char label[128], other[128];
    int first_boot = -1, first_fs = -1;

    for (size_t i = 0; i < m->n_regions; i++) {
        struct catalog_manifest_region *r = &m->regions[i];
        int ri = (int)i;
        region_label(m, i, label, sizeof(label));
        if (!p->region_file_ok[i])
            continue;
        bool dup = false;
        for (size_t j = 0; j < i && !dup; j++) {
            if (p->region_file_ok[j] && strcmp(m->regions[j].file, r->file) == 0) {
                rep_add(rep, false, ri, "%s: the same file is already used by regions[%zu]", label,
                        j);
                dup = true;
            }
        }
        if (dup)
            continue;
        int rc = load(ctx, r->file, &l[i].data, &l[i].len);
        if (rc == -ENOENT) {
            rep_add(rep, false, ri, "%s: file not found next to manifest.json", label);
            continue;
        } else if (rc == -EFBIG || (rc == 0 && l[i].len > CATALOG_MAX_FILE_BYTES)) {
            rep_add(rep, false, ri, "%s: file is larger than %u MiB, the largest flash", label,
                    CATALOG_MAX_FILE_BYTES >> 20);
            continue;
        } else if (rc < 0) {
            l[i].data = NULL;
            rep_add(rep, false, ri, "%s: cannot read the file: %s", label, strerror(-rc));
            continue;
        } else if (l[i].len == 0) {
            rep_add(rep, false, ri, "%s: file is empty", label);
            continue;
        }
        l[i].ok = true;

        if (p->region_offset_ok[i]) {
            uint64_t end = (uint64_t)r->offset + l[i].len;
            if (m->flash_size && end > m->flash_size)
                rep_add(rep, false, ri,
                        "%s: does not fit the flash: %zu bytes at 0x%x end at 0x%llx, past the "
                        "end of the %u KiB flash (0x%x)",
                        label, l[i].len, r->offset, (unsigned long long)end, m->flash_size / 1024,
                        m->flash_size);
            else if (end > 0x100000000ULL)
                rep_add(rep, false, ri, "%s: %zu bytes at 0x%x run past the 4 GiB address space",
                        label, l[i].len, r->offset);
        }
        if (!p->region_kind_ok[i] || !chip)
            continue;
        if (r->kind == CATALOG_KIND_BOOTLOADER) {
            if (first_boot >= 0)
                rep_add(rep, false, ri, "%s: a second bootloader (the first is regions[%d])", label,
                        first_boot);
            else
                first_boot = ri;
            if (p->region_offset_ok[i] && r->offset != chip->bootloader_offset)
                rep_add(rep, false, ri, "%s: a bootloader for the %s must be at 0x%x, not at 0x%x",
                        label, chip->name, chip->bootloader_offset, r->offset);
        } else if (r->kind == CATALOG_KIND_APP && chip->chip != ESP_CHIP_ESP8266 &&
                   p->region_offset_ok[i] && r->offset == chip->bootloader_offset) {
            rep_add(rep, true, ri,
                    "%s: an app at the bootloader offset 0x%x; the ROM will start it as the "
                    "second-stage bootloader (declare it as kind \"bootloader\" if it is one)",
                    label, r->offset);
        }
        if (r->kind == CATALOG_KIND_BOOTLOADER || r->kind == CATALOG_KIND_APP) {
            const uint8_t *d = l[i].data;
            size_t n = l[i].len;
            bool esp8266 = chip->chip == ESP_CHIP_ESP8266;
            if (n >= 2 && d[0] == 0x1F && d[1] == 0x8B)
                check_gzip(p, i, chip, label, d, n, rep);
            else if (esp8266 && r->kind == CATALOG_KIND_APP && d[0] == 0xEA)
                check_v2(p, i, label, d, n, rep);
            else if (esp8266 && r->slot != CATALOG_SLOT_NONE)
                rep_add(rep, false, ri,
                        "%s: %s holds an SDK V2 image (first byte 0xea, from gen_appbin.py or "
                        "esptool elf2image --version 2); this file starts with 0x%02x",
                        label, catalog_slot_to_string(r->slot), d[0]);
            else
                check_image(chip, label, ri, d, n, rep);
        }
        if (r->kind == CATALOG_KIND_FILESYSTEM)
            check_filesystem(p, label, i, &first_fs, l[i].data, l[i].len, rep);
    }

    /* Overlaps, with the address ranges so the fix is obvious. */
    for (size_t j = 0; j < m->n_regions; j++) {
        if (!l[j].ok || !p->region_offset_ok[j])
            continue;
        uint64_t js = m->regions[j].offset, je = js + l[j].len;
        for (size_t i = 0; i < j; i++) {
            if (!l[i].ok || !p->region_offset_ok[i])
                continue;
            uint64_t is = m->regions[i].offset, ie = is + l[i].len;
            if (is < je && js < ie) {
                region_label(m, j, label, sizeof(label));
                region_label(m, i, other, sizeof(other));
                rep_add(rep, false, (int)j, "%s (0x%llx-0x%llx) overlaps %s (0x%llx-0x%llx)", label,
                        (unsigned long long)js, (unsigned long long)(je - 1), other,
                        (unsigned long long)is, (unsigned long long)(ie - 1));
            }
        }
    }
}

/*
 * Whole validation. On return *pp holds the parsed manifest (free with
 * catalog_manifest_free) and *lp the loaded files (free_loaded), both also on
 * error. Returns 0 if rep gained no errors, -EINVAL if it did, -ENOMEM.
 */
static int validate_core(const char *json, size_t len, catalog_load_fn load, void *ctx,
                         struct catalog_report *rep, struct parsed *p, struct loaded **lp)
{
    size_t errors_before = rep->n_errors;
    *lp = NULL;
    int rc = manifest_parse(json, len, p, rep);
    if (rc == -ENOMEM) {
        rep_add(rep, false, -1, "out of memory while reading the manifest");
        return rc;
    }
    if (rc == 0 && p->m->n_regions > 0) {
        *lp = calloc(p->m->n_regions, sizeof(**lp));
        if (!*lp) {
            rep_add(rep, false, -1, "out of memory while reading the files");
            return -ENOMEM;
        }
        check_files(p, load, ctx, *lp, rep);
    }
    return rep->n_errors != errors_before ? -EINVAL : 0;
}

int catalog_validate_mem(const char *manifest_json, size_t len, catalog_load_fn load, void *ctx,
                         struct catalog_report *rep)
{
    struct catalog_report local;
    if (!rep) {
        catalog_report_init(&local);
        rep = &local;
    }
    if (!manifest_json || !load)
        return -EINVAL;
    struct parsed p;
    struct loaded *l = NULL;
    int rc = validate_core(manifest_json, len, load, ctx, rep, &p, &l);
    free_loaded(l, p.m ? p.m->n_regions : 0);
    catalog_manifest_free(p.m);
    if (rep == &local)
        catalog_report_free(&local);
    return rc;
}

static int dir_load(void *ctx, const char *file, uint8_t **data, size_t *len)
{
    char *path = path_join((const char *)ctx, file);
    if (!path)
        return -ENOMEM;
    int rc = read_file(path, CATALOG_MAX_FILE_BYTES, data, len);
    free(path);
    return rc;
}

/* Reads <dir>/manifest.json; problems into rep. */
static int read_manifest(const char *dir, char **json, size_t *len, struct catalog_report *rep)
{
    char *path = path_join(dir, MANIFEST_FILE);
    if (!path)
        return -ENOMEM;
    uint8_t *buf = NULL;
    int rc = read_file(path, MANIFEST_MAX_BYTES, &buf, len);
    if (rc == -ENOENT)
        rep_add(rep, false, -1, "manifest.json: not found in %s", dir);
    else if (rc == -EFBIG)
        rep_add(rep, false, -1, "manifest.json: too large (at most %u bytes)", MANIFEST_MAX_BYTES);
    else if (rc < 0)
        rep_add(rep, false, -1, "manifest.json: cannot read %s: %s", path, strerror(-rc));
    free(path);
    *json = (char *)buf;
    return rc;
}

int catalog_validate_dir(const char *dir, struct catalog_report *rep)
{
    struct catalog_report local;
    if (!rep) {
        catalog_report_init(&local);
        rep = &local;
    }
    char *json = NULL;
    size_t len = 0;
    int rc = dir ? read_manifest(dir, &json, &len, rep) : -EINVAL;
    if (rc == 0)
        rc = catalog_validate_mem(json, len, dir_load, (void *)dir, rep);
    else if (rc != -ENOMEM)
        rc = -EINVAL;
    free(json);
    if (rep == &local)
        catalog_report_free(&local);
    return rc;
}

/* ---- catalog on disk ----------------------------------------------------------------- */

const char *catalog_root(const struct catalog *cat)
{
    return cat ? cat->root : NULL;
}

int catalog_open(const char *data_dir, struct catalog **out, char *err, size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    if (!out || !data_dir || !*data_dir)
        return -EINVAL;
    *out = NULL;
    struct catalog *cat = calloc(1, sizeof(*cat));
    if (!cat || !(cat->root = path_join(data_dir, "firmware"))) {
        free(cat);
        return -ENOMEM;
    }
    int rc = mkdir_p(cat->root);
    if (rc < 0) {
        if (err && errlen)
            snprintf(err, errlen, "firmware catalog %s: cannot create the directory: %s", cat->root,
                     strerror(-rc));
        catalog_close(cat);
        return rc;
    }
    /* Leftovers of interrupted imports/deletes: never visible, removed now. */
    DIR *d = opendir(cat->root);
    if (!d) {
        rc = -errno;
        if (err && errlen)
            snprintf(err, errlen, "firmware catalog %s: cannot read the directory: %s", cat->root,
                     strerror(-rc));
        catalog_close(cat);
        return rc;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, TMP_IMPORT, strlen(TMP_IMPORT)) != 0 &&
            strncmp(e->d_name, TMP_DELETE, strlen(TMP_DELETE)) != 0)
            continue;
        char *p = path_join(cat->root, e->d_name);
        if (p)
            rm_rf(p);
        free(p);
    }
    closedir(d);
    *out = cat;
    return 0;
}

void catalog_close(struct catalog *cat)
{
    if (!cat)
        return;
    free(cat->root);
    free(cat);
}

static int store_region(const char *tmp, const struct catalog_manifest_region *r,
                        const struct loaded *l, json_object *jregions, struct catalog_report *rep,
                        int ri)
{
    char sha[65], md5[33], zsha[65];
    uint8_t *z = NULL;
    size_t zlen = 0;
    enum zcompress_method zm = ZCOMPRESS_ZLIB9;
    if (digest_hex(EVP_sha256(), l->data, l->len, sha) < 0 ||
        digest_hex(EVP_md5(), l->data, l->len, md5) < 0 ||
        zcompress_best(l->data, l->len, ZCOMPRESS_ITERATIONS, &z, &zlen, &zm) < 0 ||
        digest_hex(EVP_sha256(), z, zlen, zsha) < 0) {
        free(z);
        rep_add(rep, false, ri, "regions[%d] %s: out of memory while hashing/compressing", ri,
                r->file);
        return -ENOMEM;
    }
    char zname[CATALOG_NAME_MAX + 3];
    snprintf(zname, sizeof(zname), "%s.z", r->file);
    char *p = path_join(tmp, r->file), *zp = path_join(tmp, zname);
    int rc = (!p || !zp) ? -ENOMEM : write_file_sync(p, l->data, l->len);
    if (rc < 0)
        rep_add(rep, false, ri, "regions[%d] %s: storing the file failed: %s", ri, r->file,
                strerror(-rc));
    if (rc == 0 && (rc = write_file_sync(zp, z, zlen)) < 0)
        rep_add(rep, false, ri, "regions[%d] %s: storing the compressed copy failed: %s", ri,
                r->file, strerror(-rc));
    free(p);
    free(zp);
    free(z);
    if (rc < 0)
        return rc;

    json_object *jr = json_object_new_object();
    if (!jr)
        return -ENOMEM;
    json_object_object_add(jr, "file", json_object_new_string(r->file));
    json_object_object_add(jr, "offset", json_object_new_int64(r->offset));
    json_object_object_add(jr, "kind", json_object_new_string(catalog_kind_to_string(r->kind)));
    if (r->slot != CATALOG_SLOT_NONE)
        json_object_object_add(jr, "slot", json_object_new_string(catalog_slot_to_string(r->slot)));
    json_object_object_add(jr, "size", json_object_new_int64((int64_t)l->len));
    json_object_object_add(jr, "sha256", json_object_new_string(sha));
    json_object_object_add(jr, "md5", json_object_new_string(md5));
    json_object_object_add(jr, "zsize", json_object_new_int64((int64_t)zlen));
    json_object_object_add(jr, "zsha256", json_object_new_string(zsha));
    json_object_object_add(jr, "zmethod", json_object_new_string(zcompress_method_to_string(zm)));
    json_object_array_add(jregions, jr);
    return 0;
}

static int dir_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Moves the finished temp dir to final; see catalog.h for the atomicity argument. */
static int install_dir(struct catalog *cat, const char *tmp, const char *final, bool replace)
{
    if (replace && dir_exists(final)) {
        if (renameat2(AT_FDCWD, tmp, AT_FDCWD, final, RENAME_EXCHANGE) == 0) {
            rm_rf(tmp); /* tmp now holds the old set */
            return 0;
        }
        if (errno != EINVAL && errno != ENOSYS)
            return -errno;
        /* No RENAME_EXCHANGE on this file system: two renames; a crash in
         * between loses the old set but never shows a half one. */
        char *del = path_join(cat->root, TMP_DELETE "XXXXXX");
        if (!del)
            return -ENOMEM;
        int rc = 0;
        if (!mkdtemp(del) || rename(final, del) != 0 || rename(tmp, final) != 0)
            rc = -errno;
        rm_rf(del);
        free(del);
        return rc;
    }
    if (renameat2(AT_FDCWD, tmp, AT_FDCWD, final, RENAME_NOREPLACE) == 0)
        return 0;
    if (errno == EEXIST || errno == ENOTEMPTY)
        return -EEXIST;
    if (errno != EINVAL && errno != ENOSYS)
        return -errno;
    if (dir_exists(final))
        return -EEXIST;
    return rename(tmp, final) == 0 ? 0 : -errno;
}

static int import_core(struct catalog *cat, const char *json, size_t len, catalog_load_fn load,
                       void *ctx, bool replace, struct catalog_report *rep)
{
    struct parsed p;
    struct loaded *l = NULL;
    int rc = validate_core(json, len, load, ctx, rep, &p, &l);
    struct catalog_manifest *m = p.m;
    char *tmp = NULL, *namedir = NULL, *final = NULL;
    json_object *index = NULL;
    if (rc < 0)
        goto out;

    namedir = path_join(cat->root, m->name);
    final = path_join3(cat->root, m->name, m->version);
    tmp = path_join(cat->root, TMP_IMPORT "XXXXXX");
    if (!namedir || !final || !tmp) {
        rc = -ENOMEM;
        goto out;
    }
    if (!replace && dir_exists(final)) {
        rep_add(rep, false, -1,
                "%s@%s is already in the catalog; delete it first or import with replace", m->name,
                m->version);
        rc = -EEXIST;
        goto out;
    }
    if (!mkdtemp(tmp)) {
        rc = -errno;
        rep_add(rep, false, -1, "cannot create a temporary directory in %s: %s", cat->root,
                strerror(-rc));
        free(tmp);
        tmp = NULL;
        goto out;
    }

    index = json_object_new_object();
    json_object *jregions = json_object_new_array();
    if (!index || !jregions) {
        json_object_put(jregions);
        rc = -ENOMEM;
        goto out;
    }
    json_object_object_add(index, "format", json_object_new_int(1));
    json_object_object_add(index, "name", json_object_new_string(m->name));
    json_object_object_add(index, "version", json_object_new_string(m->version));
    json_object_object_add(index, "chip", json_object_new_string(esp_chip_get(m->chip)->stub_name));
    json_object_object_add(index, "imported", json_object_new_int64((int64_t)time(NULL)));
    json_object_object_add(index, "regions", jregions);
    for (size_t i = 0; i < m->n_regions && rc == 0; i++)
        rc = store_region(tmp, &m->regions[i], &l[i], jregions, rep, (int)i);
    if (rc < 0)
        goto out;

    char *mpath = path_join(tmp, MANIFEST_FILE), *ipath = path_join(tmp, INDEX_FILE);
    const char *itext = json_object_to_json_string_ext(index, JSON_C_TO_STRING_PRETTY |
                                                                  JSON_C_TO_STRING_NOSLASHESCAPE);
    if (!mpath || !ipath || !itext)
        rc = -ENOMEM;
    if (rc == 0)
        rc = write_file_sync(mpath, json, len);
    if (rc == 0)
        rc = write_file_sync(ipath, itext, strlen(itext));
    free(mpath);
    free(ipath);
    if (rc == 0)
        rc = fsync_dir(tmp);
    if (rc == 0 && mkdir(namedir, 0755) != 0 && errno != EEXIST)
        rc = -errno;
    if (rc == 0)
        rc = fsync_dir(cat->root);
    if (rc < 0) {
        rep_add(rep, false, -1, "storing %s@%s in %s failed: %s", m->name, m->version, cat->root,
                strerror(-rc));
        goto out;
    }
    rc = install_dir(cat, tmp, final, replace);
    if (rc == -EEXIST)
        rep_add(rep, false, -1,
                "%s@%s is already in the catalog; delete it first or import with replace", m->name,
                m->version);
    else if (rc < 0)
        rep_add(rep, false, -1, "storing %s@%s in %s failed: %s", m->name, m->version, cat->root,
                strerror(-rc));
    if (rc == 0) {
        fsync_dir(namedir);
        free(tmp);
        tmp = NULL; /* renamed away */
    }

out:
    if (tmp)
        rm_rf(tmp);
    free(tmp);
    free(namedir);
    free(final);
    json_object_put(index);
    free_loaded(l, m ? m->n_regions : 0);
    catalog_manifest_free(m);
    return rc;
}

int catalog_import_mem(struct catalog *cat, const char *manifest_json, size_t len,
                       catalog_load_fn load, void *ctx, bool replace, struct catalog_report *rep)
{
    struct catalog_report local;
    if (!rep) {
        catalog_report_init(&local);
        rep = &local;
    }
    int rc = (!cat || !manifest_json || !load)
                 ? -EINVAL
                 : import_core(cat, manifest_json, len, load, ctx, replace, rep);
    if (rep == &local)
        catalog_report_free(&local);
    return rc;
}

int catalog_import(struct catalog *cat, const char *src_dir, bool replace,
                   struct catalog_report *rep)
{
    struct catalog_report local;
    if (!rep) {
        catalog_report_init(&local);
        rep = &local;
    }
    char *json = NULL;
    size_t len = 0;
    int rc = (!cat || !src_dir) ? -EINVAL : read_manifest(src_dir, &json, &len, rep);
    if (rc == 0)
        rc = import_core(cat, json, len, dir_load, (void *)src_dir, replace, rep);
    else if (rc != -ENOMEM)
        rc = -EINVAL;
    free(json);
    if (rep == &local)
        catalog_report_free(&local);
    return rc;
}

/* ---- listing ------------------------------------------------------------------------- */

static json_object *read_index(const char *dir)
{
    char *path = path_join(dir, INDEX_FILE);
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = path ? read_file(path, INDEX_MAX_BYTES, &buf, &len) : -ENOMEM;
    free(path);
    if (rc < 0)
        return NULL;
    json_object *root = json_tokener_parse((const char *)buf);
    free(buf);
    if (root && !json_object_is_type(root, json_type_object)) {
        json_object_put(root);
        return NULL;
    }
    return root;
}

static int entry_cmp(const void *a, const void *b)
{
    const struct catalog_entry *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : strverscmp(x->version, y->version);
}

void catalog_entries_free(struct catalog_entry *entries, size_t n)
{
    if (!entries)
        return;
    for (size_t i = 0; i < n; i++) {
        free(entries[i].name);
        free(entries[i].version);
    }
    free(entries);
}

static int list_versions(const char *root, const char *name, struct catalog_entry **es, size_t *n,
                         size_t *cap)
{
    char *ndir = path_join(root, name);
    if (!ndir)
        return -ENOMEM;
    DIR *d = opendir(ndir);
    if (!d) {
        free(ndir);
        return 0; /* not a directory, or vanished: not a set */
    }
    int rc = 0;
    struct dirent *e;
    while (rc == 0 && (e = readdir(d)) != NULL) {
        if (!catalog_name_valid(e->d_name))
            continue;
        char *vdir = path_join(ndir, e->d_name);
        json_object *idx = vdir ? read_index(vdir) : NULL;
        free(vdir);
        json_object *v, *regions;
        const char *chip_name = NULL;
        if (idx && json_object_object_get_ex(idx, "chip", &v))
            chip_name = json_str(v);
        const struct esp_chip_desc *chip = esp_chip_by_name(chip_name);
        if (!idx || !chip || !json_object_object_get_ex(idx, "regions", &regions) ||
            !json_object_is_type(regions, json_type_array)) {
            json_object_put(idx);
            continue; /* incomplete or foreign directory: not listed */
        }
        if (*n == *cap) {
            size_t ncap = *cap ? *cap * 2 : 16;
            struct catalog_entry *ne = realloc(*es, ncap * sizeof(*ne));
            if (!ne) {
                json_object_put(idx);
                rc = -ENOMEM;
                break;
            }
            *es = ne;
            *cap = ncap;
        }
        struct catalog_entry *ce = &(*es)[*n];
        memset(ce, 0, sizeof(*ce));
        ce->name = strdup(name);
        ce->version = strdup(e->d_name);
        ce->chip = chip->chip;
        ce->n_regions = json_object_array_length(regions);
        for (size_t i = 0; i < ce->n_regions; i++) {
            json_object *r = json_object_array_get_idx(regions, i), *sz;
            if (json_object_object_get_ex(r, "size", &sz))
                ce->total_bytes += (uint64_t)json_object_get_int64(sz);
        }
        (*n)++;
        if (!ce->name || !ce->version)
            rc = -ENOMEM;
        json_object_put(idx);
    }
    closedir(d);
    free(ndir);
    return rc;
}

int catalog_list(struct catalog *cat, struct catalog_entry **out, size_t *n_out)
{
    if (!cat || !out || !n_out)
        return -EINVAL;
    *out = NULL;
    *n_out = 0;
    DIR *d = opendir(cat->root);
    if (!d)
        return -errno;
    struct catalog_entry *es = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    struct dirent *e;
    while (rc == 0 && (e = readdir(d)) != NULL)
        if (catalog_name_valid(e->d_name))
            rc = list_versions(cat->root, e->d_name, &es, &n, &cap);
    closedir(d);
    if (rc < 0) {
        catalog_entries_free(es, n);
        return rc;
    }
    if (n > 1)
        qsort(es, n, sizeof(*es), entry_cmp);
    *out = es;
    *n_out = n;
    return 0;
}

/* ---- loading ------------------------------------------------------------------------- */

void catalog_free_set(struct catalog_set *set)
{
    if (!set)
        return;
    free(set->name);
    free(set->version);
    free(set->description);
    for (size_t i = 0; i < set->n_regions; i++) {
        free(set->regions[i].file);
        free(set->regions[i].data);
        free(set->regions[i].zdata);
    }
    free(set->regions);
    free(set);
}

static int set_err(char *err, size_t errlen, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int set_err(char *err, size_t errlen, int rc, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return rc;
}

static const char *idx_str(json_object *o, const char *key)
{
    json_object *v;
    return json_object_object_get_ex(o, key, &v) ? json_str(v) : NULL;
}

static bool idx_int(json_object *o, const char *key, int64_t *out)
{
    json_object *v;
    if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_int))
        return false;
    *out = json_object_get_int64(v);
    return true;
}

/* Loads and verifies one region of dir per its index entry. */
static int load_region(const char *dir, const char *id, json_object *jr,
                       const struct catalog_manifest_region *mr, struct catalog_region *r,
                       char *err, size_t errlen)
{
    static const char advice[] = "delete the set and import it again";
    const char *sha = idx_str(jr, "sha256"), *md5 = idx_str(jr, "md5"),
               *zsha = idx_str(jr, "zsha256");
    const char *file = idx_str(jr, "file");
    int64_t off, size, zsize;
    if (!sha || !md5 || !zsha || !file || strcmp(file, mr->file) != 0 ||
        !idx_int(jr, "offset", &off) || off != mr->offset || !idx_int(jr, "size", &size) ||
        !idx_int(jr, "zsize", &zsize))
        return set_err(err, errlen, -EBADMSG,
                       "firmware %s: index.json does not match manifest.json for %s; %s", id,
                       mr->file, advice);
    r->offset = mr->offset;
    r->kind = mr->kind;
    r->slot = mr->slot;
    if (!(r->file = strdup(mr->file)))
        return -ENOMEM;

    char zname[CATALOG_NAME_MAX + 3];
    snprintf(zname, sizeof(zname), "%s.z", mr->file);
    char *p = path_join(dir, mr->file), *zp = path_join(dir, zname);
    int rc = (!p || !zp) ? -ENOMEM : read_file(p, CATALOG_MAX_FILE_BYTES, &r->data, &r->size);
    if (rc == 0)
        rc = read_file(zp, CATALOG_MAX_FILE_BYTES + CATALOG_MAX_FILE_BYTES / 8, &r->zdata,
                       &r->zsize);
    free(p);
    free(zp);
    if (rc == -ENOMEM)
        return rc;
    if (rc < 0)
        return set_err(err, errlen, rc == -ENOENT ? -EBADMSG : -EIO,
                       "firmware %s: cannot read %s: %s; %s", id, mr->file, strerror(-rc), advice);
    char zcheck[65];
    if (digest_hex(EVP_sha256(), r->data, r->size, r->sha256) < 0 ||
        digest_hex(EVP_md5(), r->data, r->size, r->md5) < 0 ||
        digest_hex(EVP_sha256(), r->zdata, r->zsize, zcheck) < 0)
        return -ENOMEM;
    if ((int64_t)r->size != size || strcmp(r->sha256, sha) != 0 || strcmp(r->md5, md5) != 0)
        return set_err(err, errlen, -EBADMSG,
                       "firmware %s: %s is corrupted on disk (%s differs from the one recorded "
                       "at import); %s",
                       id, mr->file, (int64_t)r->size != size ? "size" : "checksum", advice);
    if ((int64_t)r->zsize != zsize || strcmp(zcheck, zsha) != 0)
        return set_err(err, errlen, -EBADMSG,
                       "firmware %s: the compressed copy of %s is corrupted on disk; %s", id,
                       mr->file, advice);
    r->gzip = r->size >= 2 && r->data[0] == 0x1F && r->data[1] == 0x8B;
    return 0;
}

int catalog_get(struct catalog *cat, const char *name, const char *version,
                struct catalog_set **out, char *err, size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    if (!cat || !out)
        return -EINVAL;
    *out = NULL;
    if (!catalog_name_valid(name) || !catalog_name_valid(version))
        return set_err(err, errlen, -EINVAL, "firmware name or version is not valid: %s",
                       name_rule);
    char id[2 * CATALOG_NAME_MAX + 2];
    snprintf(id, sizeof(id), "%s@%s", name, version);
    char *dir = path_join3(cat->root, name, version);
    if (!dir)
        return -ENOMEM;
    if (!dir_exists(dir)) {
        free(dir);
        return set_err(err, errlen, -ENOENT, "firmware %s is not in the catalog", id);
    }

    struct catalog_report rep;
    catalog_report_init(&rep);
    char *json = NULL;
    size_t len = 0;
    struct catalog_manifest *m = NULL;
    json_object *idx = NULL, *jregions = NULL;
    struct catalog_set *set = NULL;
    int rc = read_manifest(dir, &json, &len, &rep);
    if (rc == 0 && catalog_manifest_parse(json, len, &m, &rep) != 0)
        rc = -EBADMSG;
    if (rc < 0 && rc != -ENOMEM) {
        rc = set_err(err, errlen, -EBADMSG,
                     "firmware %s: manifest.json is damaged on disk (%s); delete the set and "
                     "import it again",
                     id, rep.n ? rep.items[0].message : "unreadable");
        goto out;
    }
    if (rc < 0)
        goto out;
    idx = read_index(dir);
    if (!idx || strcmp(m->name, name) != 0 || strcmp(m->version, version) != 0 ||
        !json_object_object_get_ex(idx, "regions", &jregions) ||
        !json_object_is_type(jregions, json_type_array) ||
        json_object_array_length(jregions) != m->n_regions) {
        rc = set_err(err, errlen, -EBADMSG,
                     "firmware %s: index.json is missing or does not match manifest.json; delete "
                     "the set and import it again",
                     id);
        goto out;
    }
    set = calloc(1, sizeof(*set));
    if (!set || !(set->regions = calloc(m->n_regions, sizeof(*set->regions)))) {
        rc = -ENOMEM;
        goto out;
    }
    set->n_regions = m->n_regions;
    set->chip = m->chip;
    set->flash_mode = m->flash_mode;
    set->flash_size = m->flash_size;
    set->flash_size_code = m->flash_size_code;
    set->flash_freq_code = m->flash_freq_code;
    set->name = strdup(name);
    set->version = strdup(version);
    if (!set->name || !set->version ||
        (m->description && !(set->description = strdup(m->description)))) {
        rc = -ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < m->n_regions && rc == 0; i++)
        rc = load_region(dir, id, json_object_array_get_idx(jregions, i), &m->regions[i],
                         &set->regions[i], err, errlen);

out:
    if (rc == -ENOMEM)
        set_err(err, errlen, rc, "firmware %s: out of memory while loading", id);
    if (rc == 0) {
        *out = set;
        set = NULL;
    }
    catalog_free_set(set);
    json_object_put(idx);
    catalog_manifest_free(m);
    free(json);
    catalog_report_free(&rep);
    free(dir);
    return rc;
}

int catalog_delete(struct catalog *cat, const char *name, const char *version)
{
    if (!cat || !catalog_name_valid(name) || !catalog_name_valid(version))
        return -EINVAL;
    char *namedir = path_join(cat->root, name);
    char *dir = path_join3(cat->root, name, version);
    char *del = path_join(cat->root, TMP_DELETE "XXXXXX");
    int rc = 0;
    if (!namedir || !dir || !del)
        rc = -ENOMEM;
    else if (!dir_exists(dir))
        rc = -ENOENT;
    else if (!mkdtemp(del))
        rc = -errno;
    else if (rename(dir, del) != 0) { /* onto the empty temp dir: atomic */
        rc = errno == ENOENT ? -ENOENT : -EIO;
        rmdir(del);
    } else {
        fsync_dir(namedir);
        rm_rf(del);
        rmdir(namedir); /* fails harmlessly while other versions remain */
    }
    free(namedir);
    free(dir);
    free(del);
    return rc;
}
