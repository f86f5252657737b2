/*
 * test_catalog: firmware sets — validation of manifests and images (each
 * problem class gives its named message), import + load round trip (digests
 * checked against libcrypto, compressed copy inflated with zlib), replace and
 * delete, on-disk corruption detection, and recovery from an interrupted
 * import (temp dir left behind: never visible, removed on open).
 * The ESP images are built here (build_image), no tools needed.
 */
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <zlib.h>

#include "catalog.h"
#include "esp_loader.h"

/* ---- ESP images, built by hand (PROTOCOL-ROM.md §7) ----------------------------------- */

struct img {
    bool esp8266;   /* no extended header */
    int chip_id;    /* extended header chip id */
    bool hash;      /* append SHA-256 */
    unsigned n_seg; /* segments */
    uint32_t seg_len;
};

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

/* Builds an image into a malloc'd buffer: header, [extended header], segments, checksum, [SHA]. */
static uint8_t *build_image(const struct img *sp, size_t *len)
{
    size_t cap = 64 + sp->n_seg * (8 + sp->seg_len) + 16 + 32;
    uint8_t *out = calloc(1, cap);
    assert_non_null(out);
    size_t p = 0;
    out[p++] = 0xE9;
    out[p++] = (uint8_t)sp->n_seg;
    out[p++] = 2;    /* DIO */
    out[p++] = 0x20; /* 4MB, 40 MHz on the ESP32 family */
    put32(out + p, 0x40080404u);
    p += 4;
    if (!sp->esp8266) {
        out[p] = 0xEE;
        out[p + 4] = (uint8_t)sp->chip_id;
        out[p + 5] = (uint8_t)(sp->chip_id >> 8);
        out[p + 9] = 0xFF; /* max_rev_full 0xFFFF */
        out[p + 10] = 0xFF;
        out[p + 15] = sp->hash ? 1 : 0;
        p += 16;
    }
    uint8_t cks = 0xEF;
    for (unsigned s = 0; s < sp->n_seg; s++) {
        put32(out + p, 0x3FFB0000u + 0x1000 * s);
        put32(out + p + 4, sp->seg_len);
        p += 8;
        for (uint32_t i = 0; i < sp->seg_len; i++) {
            out[p] = (uint8_t)(i * 13 + s * 7 + 3);
            cks ^= out[p++];
        }
    }
    while (p % 16 != 15)
        out[p++] = 0;
    out[p++] = cks;
    if (sp->hash && !sp->esp8266) {
        unsigned int n = 0;
        assert_int_equal(EVP_Digest(out, p, out + p, &n, EVP_sha256(), NULL), 1);
        p += 32;
    }
    assert_true(p <= cap);
    *len = p;
    return out;
}

/* ---- a set in memory and on disk ------------------------------------------------------ */

struct file {
    const char *name;
    uint8_t *data;
    size_t len;
};

struct set {
    struct file files[8];
    size_t n;
};

static void set_add(struct set *s, const char *name, uint8_t *data, size_t len)
{
    assert_true(s->n < 8);
    s->files[s->n].name = name;
    s->files[s->n].data = data;
    s->files[s->n].len = len;
    s->n++;
}

static void set_add_image(struct set *s, const char *name, const struct img *sp)
{
    size_t len;
    uint8_t *d = build_image(sp, &len);
    set_add(s, name, d, len);
}

static void set_add_bytes(struct set *s, const char *name, size_t len, uint8_t fill)
{
    uint8_t *d = malloc(len ? len : 1);
    assert_non_null(d);
    for (size_t i = 0; i < len; i++)
        d[i] = (uint8_t)(fill + i / 7);
    set_add(s, name, d, len);
}

static struct file *set_find(struct set *s, const char *name)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->files[i].name, name) == 0)
            return &s->files[i];
    return NULL;
}

static void set_free(struct set *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->files[i].data);
    s->n = 0;
}

static int mem_load(void *ctx, const char *file, uint8_t **data, size_t *len)
{
    struct file *f = set_find(ctx, file);
    if (!f)
        return -ENOENT;
    *data = malloc(f->len ? f->len : 1);
    if (!*data)
        return -ENOMEM;
    memcpy(*data, f->data, f->len);
    *len = f->len;
    return 0;
}

static void write_file(const char *dir, const char *name, const void *data, size_t len)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static void set_write(struct set *s, const char *dir, const char *manifest)
{
    mkdir(dir, 0755);
    for (size_t i = 0; i < s->n; i++)
        write_file(dir, s->files[i].name, s->files[i].data, s->files[i].len);
    write_file(dir, "manifest.json", manifest, strlen(manifest));
}

static void rm_tree(const char *path)
{
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", path);
    assert_int_equal(system(cmd), 0);
}

static bool path_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static const struct img esp32_boot = {.chip_id = 0, .hash = true, .n_seg = 2, .seg_len = 256};
static const struct img esp32_app = {.chip_id = 0, .hash = true, .n_seg = 3, .seg_len = 4096};
static const struct img esp32c3_app = {.chip_id = 5, .hash = true, .n_seg = 2, .seg_len = 512};
static const struct img esp8266_app = {.esp8266 = true, .n_seg = 2, .seg_len = 1024};

/* The demo set of the issue: bootloader, partition table, app for an ESP32. */
static void demo_set(struct set *s)
{
    memset(s, 0, sizeof(*s));
    set_add_image(s, "bootloader.bin", &esp32_boot);
    set_add_bytes(s, "partitions.bin", 3072, 0xAA);
    set_add_image(s, "app.bin", &esp32_app);
}

static const char demo_manifest[] =
    "{\"name\":\"demo\",\"version\":\"1.0.0\",\"chip\":\"esp32\",\"flash_mode\":\"dio\","
    "\"flash_size\":\"4MB\",\"flash_freq\":\"40m\",\"regions\":["
    "{\"offset\":\"0x1000\",\"file\":\"bootloader.bin\",\"kind\":\"bootloader\"},"
    "{\"offset\":\"0x8000\",\"file\":\"partitions.bin\",\"kind\":\"data\"},"
    "{\"offset\":65536,\"file\":\"app.bin\",\"kind\":\"app\"}]}";

struct fixture {
    char root[64];  /* temp dir */
    char data[128]; /* <root>/data */
    char src[128];  /* <root>/src */
};

static int setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof(*fx));
    if (!fx)
        return -1;
    snprintf(fx->root, sizeof(fx->root), "/tmp/test_catalog.XXXXXX");
    if (!mkdtemp(fx->root))
        return -1;
    snprintf(fx->data, sizeof(fx->data), "%s/data", fx->root);
    snprintf(fx->src, sizeof(fx->src), "%s/src", fx->root);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *fx = *state;
    char cmd[200];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", fx->root);
    int rc = system(cmd);
    free(fx);
    return rc == 0 ? 0 : -1;
}

static void hex_of(const EVP_MD *md, const uint8_t *d, size_t n, char *out)
{
    uint8_t dig[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    assert_int_equal(EVP_Digest(d, n, dig, &len, md, NULL), 1);
    for (unsigned i = 0; i < len; i++)
        sprintf(out + 2 * i, "%02x", dig[i]);
}

static bool report_has(const struct catalog_report *rep, bool warning, int region, const char *text)
{
    for (size_t i = 0; i < rep->n; i++)
        if (rep->items[i].warning == warning && rep->items[i].region == region &&
            strstr(rep->items[i].message, text))
            return true;
    return false;
}

static void dump(const struct catalog_report *rep)
{
    char buf[8192];
    print_message("%s", catalog_report_format(rep, buf, sizeof(buf)));
}

#define ASSERT_PROBLEM(rep, warning, region, text)                                                 \
    do {                                                                                           \
        if (!report_has((rep), (warning), (region), (text))) {                                     \
            dump(rep);                                                                             \
            fail_msg("expected %s for region %d: %s", (warning) ? "warning" : "error", (region),   \
                     (text));                                                                      \
        }                                                                                          \
    } while (0)

/* ---- tests --------------------------------------------------------------------------- */

static void test_import_and_load(void **state)
{
    struct fixture *fx = *state;
    struct set s;
    demo_set(&s);
    set_write(&s, fx->src, demo_manifest);

    struct catalog_report rep;
    catalog_report_init(&rep);
    assert_int_equal(catalog_validate_dir(fx->src, &rep), 0);
    assert_int_equal(rep.n_errors, 0);
    assert_int_equal(rep.n_warnings, 0);

    char err[512];
    struct catalog *cat = NULL;
    assert_int_equal(catalog_open(fx->data, &cat, err, sizeof(err)), 0);
    assert_int_equal(catalog_import(cat, fx->src, false, &rep), 0);
    if (rep.n)
        dump(&rep);
    assert_int_equal(rep.n_errors, 0);

    struct catalog_set *fs = NULL;
    assert_int_equal(catalog_get(cat, "demo", "1.0.0", &fs, err, sizeof(err)), 0);
    assert_string_equal(fs->name, "demo");
    assert_string_equal(fs->version, "1.0.0");
    assert_int_equal(fs->chip, ESP_CHIP_ESP32);
    assert_int_equal(fs->flash_mode, 2);
    assert_int_equal(fs->flash_size, 4u * 1024 * 1024);
    assert_int_equal(fs->flash_size_code, 2);
    assert_int_equal(fs->flash_freq_code, 0);
    assert_int_equal(fs->n_regions, 3);
    static const uint32_t offsets[] = {0x1000, 0x8000, 0x10000};
    static const enum catalog_kind kinds[] = {CATALOG_KIND_BOOTLOADER, CATALOG_KIND_DATA,
                                              CATALOG_KIND_APP};
    for (size_t i = 0; i < 3; i++) {
        const struct catalog_region *r = &fs->regions[i];
        const struct file *f = &s.files[i];
        assert_string_equal(r->file, f->name);
        assert_int_equal(r->offset, offsets[i]);
        assert_int_equal(r->kind, kinds[i]);
        assert_int_equal(r->size, f->len);
        assert_memory_equal(r->data, f->data, f->len);
        char sha[65], md5[33];
        hex_of(EVP_sha256(), f->data, f->len, sha);
        hex_of(EVP_md5(), f->data, f->len, md5);
        assert_string_equal(r->sha256, sha);
        assert_string_equal(r->md5, md5);
        /* The stored compressed copy inflates back to the data. */
        assert_non_null(r->zdata);
        assert_true(r->zsize > 0);
        uLongf out_len = (uLongf)f->len;
        uint8_t *out = malloc(f->len);
        assert_non_null(out);
        assert_int_equal(uncompress(out, &out_len, r->zdata, (uLong)r->zsize), Z_OK);
        assert_int_equal(out_len, f->len);
        assert_memory_equal(out, f->data, f->len);
        free(out);
        /* ... and the .z file sits next to the data. */
        char zpath[512];
        snprintf(zpath, sizeof(zpath), "%s/demo/1.0.0/%s.z", catalog_root(cat), f->name);
        assert_true(path_exists(zpath));
    }
    catalog_free_set(fs);

    struct catalog_entry *es = NULL;
    size_t n = 0;
    assert_int_equal(catalog_list(cat, &es, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(es[0].name, "demo");
    assert_string_equal(es[0].version, "1.0.0");
    assert_int_equal(es[0].chip, ESP_CHIP_ESP32);
    assert_int_equal(es[0].n_regions, 3);
    assert_int_equal(es[0].total_bytes, s.files[0].len + s.files[1].len + s.files[2].len);
    catalog_entries_free(es, n);

    /* Same name@version again: refused unless replace. */
    catalog_report_free(&rep);
    assert_int_equal(catalog_import(cat, fx->src, false, &rep), -EEXIST);
    ASSERT_PROBLEM(&rep, false, -1, "demo@1.0.0 is already in the catalog");
    catalog_report_free(&rep);

    /* Replace with a changed partition table: the new content is what loads. */
    s.files[1].data[0] ^= 0xFF;
    write_file(fx->src, "partitions.bin", s.files[1].data, s.files[1].len);
    assert_int_equal(catalog_import(cat, fx->src, true, &rep), 0);
    assert_int_equal(catalog_get(cat, "demo", "1.0.0", &fs, err, sizeof(err)), 0);
    assert_memory_equal(fs->regions[1].data, s.files[1].data, s.files[1].len);
    catalog_free_set(fs);

    /* A second version lists in version order. */
    char *m2 = strdup(demo_manifest);
    memcpy(strstr(m2, "1.0.0"), "1.10.", 5); /* "1.10." keeps the length */
    write_file(fx->src, "manifest.json", m2, strlen(m2));
    free(m2);
    assert_int_equal(catalog_import(cat, fx->src, false, &rep), 0);
    assert_int_equal(catalog_list(cat, &es, &n), 0);
    assert_int_equal(n, 2);
    assert_string_equal(es[0].version, "1.0.0");
    assert_string_equal(es[1].version, "1.10.");
    catalog_entries_free(es, n);

    /* Delete: gone from the list and from get, the other version stays. */
    assert_int_equal(catalog_delete(cat, "demo", "1.0.0"), 0);
    assert_int_equal(catalog_delete(cat, "demo", "1.0.0"), -ENOENT);
    assert_int_equal(catalog_delete(cat, "../demo", "1.0.0"), -EINVAL);
    assert_int_equal(catalog_get(cat, "demo", "1.0.0", &fs, err, sizeof(err)), -ENOENT);
    assert_null(fs);
    assert_string_equal(err, "firmware demo@1.0.0 is not in the catalog");
    assert_int_equal(catalog_list(cat, &es, &n), 0);
    assert_int_equal(n, 1);
    catalog_entries_free(es, n);
    assert_int_equal(catalog_delete(cat, "demo", "1.10."), 0);
    char namedir[256];
    snprintf(namedir, sizeof(namedir), "%s/demo", catalog_root(cat));
    assert_false(path_exists(namedir));

    catalog_report_free(&rep);
    catalog_close(cat);
    set_free(&s);
}

/* Validates manifest + s in memory, expects an error (or warning) naming region and text. */
static void expect_problem(struct set *s, const char *manifest, bool warning, int region,
                           const char *text)
{
    struct catalog_report rep;
    catalog_report_init(&rep);
    int rc = catalog_validate_mem(manifest, strlen(manifest), mem_load, s, &rep);
    if (!warning)
        assert_int_equal(rc, -EINVAL);
    ASSERT_PROBLEM(&rep, warning, region, text);
    catalog_report_free(&rep);
}

static void test_bad_manifests(void **state)
{
    (void)state;
    struct set s;
    demo_set(&s);
    static const struct {
        const char *manifest;
        int region;
        const char *text;
    } cases[] = {
        {"{\"version\":\"1\",\"chip\":\"esp32\",\"regions\":[{\"offset\":0,\"file\":"
         "\"partitions.bin\",\"kind\":\"data\"}]}",
         -1, "name: missing (e.g. \"demo\")"},
        {"{\"name\":\"demo\",\"version\":\"1\",\"chip\":\"esp32\",\"regions\":[{\"offset\":0,"
         "\"file\":\"partitions.bin\",\"kind\":\"data\"},{\"offset\":\"64k\",\"file\":\"app.bin\","
         "\"kind\":\"app\"}]}",
         1, "regions[1].offset: not a number or hex string (got \"64k\""},
        {"{\"name\":\"demo\",\"version\":\"1\",\"chip\":\"esp32\",\"regions\":[{\"offset\":0,"
         "\"file\":\"../x.bin\",\"kind\":\"data\"}]}",
         0, "regions[0].file: \"../x.bin\" is not allowed"},
        {"{\"name\":\"demo\",\"version\":\"1\",\"chip\":\"esp32\",\"regions\":[{\"offset\":0,"
         "\"file\":\"/etc/passwd\",\"kind\":\"data\"}]}",
         0, "regions[0].file: \"/etc/passwd\" is not allowed"},
        {"{\"name\":\"../../etc\",\"version\":\"1\",\"chip\":\"esp32\",\"regions\":[{\"offset\":0,"
         "\"file\":\"partitions.bin\",\"kind\":\"data\"}]}",
         -1, "name: \"../../etc\" is not allowed"},
        {"{\"name\":\"demo\",\"version\":\".hidden\",\"chip\":\"esp32\",\"regions\":[{\"offset\":"
         "0,\"file\":\"partitions.bin\",\"kind\":\"data\"}]}",
         -1, "version: \".hidden\" is not allowed"},
        {"{\"name\":\"demo\",\"version\":\"1\",\"chip\":\"esp33\",\"regions\":[{\"offset\":0,"
         "\"file\":\"partitions.bin\",\"kind\":\"data\"}]}",
         -1, "chip: unknown chip family (got \"esp33\"; known: esp8266, esp32"},
        {"{\"name\":\"demo\",\"version\":\"1\",\"chip\":\"esp32\",\"regions\":[{\"offset\":"
         "\"0x8002\",\"file\":\"partitions.bin\",\"kind\":\"data\"}]}",
         0, "regions[0].offset: 0x8002 is not a multiple of 4"},
        {"{\"name\":\"demo\",\"version\":\"1\",\"chip\":\"esp32\",\"regions\":[{\"offset\":"
         "-4,\"file\":\"partitions.bin\",\"kind\":\"data\"}]}",
         0, "regions[0].offset: must be from 0x0 to 0xffffffff (got -4)"},
        {"{\"name\":\"demo\",\"version\":\"1\",\"chip\":\"esp32\",\"regions\":[{\"offset\":"
         "0,\"file\":\"partitions.bin\",\"kind\":\"firmware\"}]}",
         0,
         "regions[0].kind: must be \"bootloader\", \"app\", \"data\" or \"filesystem\" (got "
         "\"firmware\")"},
        {"{\"name\":\"demo\",\"version\":\"1\",\"chip\":\"esp32\",\"regions\":[{\"offset\":"
         "0,\"file\":\"missing.bin\",\"kind\":\"data\"}]}",
         0, "regions[0] missing.bin: file not found next to manifest.json"},
        {"{\"name\":\"demo\",\"version\":\"1\",\"chip\":\"esp32\",\"regions\":[{\"offset\":"
         "0,\"file\":\"app.bin.z\",\"kind\":\"data\"}]}",
         0, "regions[0].file: \"app.bin.z\" is reserved by the catalog"},
        {"{\"name\":\"demo\",\"version\":\"1\",\"chip\":\"esp32\",\"regions\":[]}", -1,
         "regions: empty"},
        {"{\"name\":\"demo\",\"version\":\"1\",\"chip\":\"esp32\",\"flash_size\":\"3MB\","
         "\"regions\":[{\"offset\":0,\"file\":\"partitions.bin\",\"kind\":\"data\"}]}",
         -1, "flash_size: 3MB is not a flash size of the ESP32 (valid: 1MB, 2MB, 4MB"},
        {"{\"name\":\"demo\",\"version\":\"1\",\"chip\":\"esp32\",\"flash_mode\":\"fast\","
         "\"regions\":[{\"offset\":0,\"file\":\"partitions.bin\",\"kind\":\"data\"}]}",
         -1, "flash_mode: must be \"qio\", \"qout\", \"dio\", \"dout\" or \"keep\" (got \"fast\")"},
        {"{\"name\":\"demo\",\"version\":\"1\",\"chip\":\"esp32\",\"regoins\":[]}", -1,
         "regoins: unknown key"},
        {"{\"name\":\"demo\",\n \"version\":1.0.0}", -1,
         "manifest.json: JSON syntax error at line 2, column "},
        {"[1,2]", -1, "manifest.json: must be a JSON object { ... } (got a list)"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        expect_problem(&s, cases[i].manifest, false, cases[i].region, cases[i].text);
    }

    /* An unaligned but 4-byte aligned offset is only a warning. */
    expect_problem(&s,
                   "{\"name\":\"demo\",\"version\":\"1\",\"chip\":\"esp32\",\"regions\":[{"
                   "\"offset\":\"0x9004\",\"file\":\"partitions.bin\",\"kind\":\"data\"}]}",
                   true, 0,
                   "regions[0].offset: 0x9004 is not on a 4 KiB sector boundary; the flasher "
                   "erases whole sectors, so the bytes before it in sector 0x9000 are lost");

    /* The public parser refuses the same way and hands out nothing. */
    struct catalog_manifest *m = (struct catalog_manifest *)1;
    assert_int_equal(catalog_manifest_parse("{}", 2, &m, NULL), -EINVAL);
    assert_null(m);
    assert_int_equal(catalog_manifest_parse(demo_manifest, strlen(demo_manifest), &m, NULL), 0);
    assert_string_equal(m->regions[2].file, "app.bin");
    assert_int_equal(m->regions[2].offset, 0x10000);
    catalog_manifest_free(m);
    set_free(&s);
}

/* "esptool_args": a build's before/after/stub, each optional, esptool's names with '-' or
 * '_'; anything else is refused naming the key. */
static void test_esptool_args(void **state)
{
    (void)state;
    struct set s;
    demo_set(&s);
#define EA_MANIFEST(ea)                                                                            \
    "{\"name\":\"demo\",\"version\":\"1\",\"chip\":\"esp32\",\"esptool_args\":" ea                 \
    ",\"regions\":[{\"offset\":0,\"file\":\"partitions.bin\",\"kind\":\"data\"}]}"
    struct catalog_manifest *m = NULL;
    static const char all[] =
        EA_MANIFEST("{\"before\":\"no_reset\",\"after\":\"no-reset\",\"stub\":false}");
    assert_int_equal(catalog_manifest_parse(all, strlen(all), &m, NULL), 0);
    assert_true(m->esptool_args.has_before && m->esptool_args.has_after &&
                m->esptool_args.has_stub);
    assert_int_equal(m->esptool_args.before, ESP_BEFORE_NO_RESET);
    assert_int_equal(m->esptool_args.after, ESP_AFTER_NO_RESET);
    assert_false(m->esptool_args.stub);
    catalog_manifest_free(m);
    static const char some[] = EA_MANIFEST("{\"after\":\"soft-reset\"}");
    assert_int_equal(catalog_manifest_parse(some, strlen(some), &m, NULL), 0);
    assert_false(m->esptool_args.has_before || m->esptool_args.has_stub);
    assert_true(m->esptool_args.has_after);
    assert_int_equal(m->esptool_args.after, ESP_AFTER_SOFT_RESET);
    catalog_manifest_free(m);
    assert_int_equal(catalog_manifest_parse(demo_manifest, strlen(demo_manifest), &m, NULL), 0);
    assert_false(m->esptool_args.has_before || m->esptool_args.has_after ||
                 m->esptool_args.has_stub);
    catalog_manifest_free(m);
    static const struct {
        const char *manifest;
        const char *text;
    } cases[] = {
        {EA_MANIFEST("\"no-reset\""),
         "esptool_args: must be an object {\"before\": ..., \"after\": ..., \"stub\": ...} (got "
         "\"no-reset\")"},
        {EA_MANIFEST("{\"before\":\"manual\"}"),
         "esptool_args.before: must be \"default-reset\", \"usb-reset\", \"no-reset\" or "
         "\"no-reset-no-sync\" (got \"manual\")"},
        {EA_MANIFEST("{\"after\":\"reboot\"}"),
         "esptool_args.after: must be \"hard-reset\", \"soft-reset\", \"no-reset\" or "
         "\"no-reset-stub\" (got \"reboot\")"},
        {EA_MANIFEST("{\"stub\":\"false\"}"),
         "esptool_args.stub: must be true or false (false: the ROM loader only) (got \"false\")"},
        {EA_MANIFEST("{\"baud\":921600}"),
         "esptool_args.baud: unknown key (valid: before, after, stub)"},
    };
#undef EA_MANIFEST
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        expect_problem(&s, cases[i].manifest, false, -1, cases[i].text);
    set_free(&s);
}

static void test_every_problem_listed(void **state)
{
    (void)state;
    struct set s;
    demo_set(&s);
    static const char manifest[] =
        "{\"version\":\"1\",\"chip\":\"esp32\",\"flash_mode\":\"fast\",\"regions\":["
        "{\"offset\":\"0x1000\",\"file\":\"../boot.bin\",\"kind\":\"bootloader\"},"
        "{\"offset\":\"zz\",\"file\":\"partitions.bin\",\"kind\":\"data\"},"
        "{\"offset\":\"0x10000\",\"file\":\"nothere.bin\",\"kind\":\"app\"}]}";
    struct catalog_report rep;
    catalog_report_init(&rep);
    assert_int_equal(catalog_validate_mem(manifest, strlen(manifest), mem_load, &s, &rep), -EINVAL);
    ASSERT_PROBLEM(&rep, false, -1, "name: missing");
    ASSERT_PROBLEM(&rep, false, -1, "flash_mode: must be");
    ASSERT_PROBLEM(&rep, false, 0, "regions[0].file: \"../boot.bin\" is not allowed");
    ASSERT_PROBLEM(&rep, false, 1, "regions[1].offset: not a number or hex string");
    ASSERT_PROBLEM(&rep, false, 2, "regions[2] nothere.bin: file not found");
    assert_int_equal(rep.n_errors, 5);
    char buf[4096];
    catalog_report_format(&rep, buf, sizeof(buf));
    assert_non_null(strstr(buf, "error: name: missing"));
    catalog_report_free(&rep);
    set_free(&s);
}

static void test_wrong_chip_image(void **state)
{
    (void)state;
    struct set s;
    demo_set(&s);
    free(set_find(&s, "app.bin")->data);
    struct file *f = set_find(&s, "app.bin");
    f->data = build_image(&esp32c3_app, &f->len);
    expect_problem(&s, demo_manifest, false, 2,
                   "regions[2] app.bin: image is for ESP32-C3 (chip id 5) but this firmware set "
                   "is for ESP32");

    /* An ESP32 image in an ESP8266 set is named as such too. */
    static const char m8266[] =
        "{\"name\":\"blink\",\"version\":\"1\",\"chip\":\"esp8266\","
        "\"regions\":[{\"offset\":0,\"file\":\"app.bin\",\"kind\":\"app\"}]}";
    expect_problem(&s, m8266, false, 0,
                   "regions[0] app.bin: image is for ESP32-C3 (chip id 5) but this firmware set "
                   "is for ESP8266");
    /* ... and a real ESP8266 image is fine there. */
    free(f->data);
    f->data = build_image(&esp8266_app, &f->len);
    struct catalog_report rep;
    catalog_report_init(&rep);
    assert_int_equal(catalog_validate_mem(m8266, strlen(m8266), mem_load, &s, &rep), 0);
    assert_int_equal(rep.n, 0);
    catalog_report_free(&rep);
    set_free(&s);
}

static void test_overlap_and_fit(void **state)
{
    (void)state;
    struct set s;
    demo_set(&s);
    /* partitions.bin (3072 bytes) at 0xF800 runs into app.bin at 0x10000. */
    static const char overlap[] =
        "{\"name\":\"demo\",\"version\":\"1\",\"chip\":\"esp32\",\"regions\":["
        "{\"offset\":\"0x1000\",\"file\":\"bootloader.bin\",\"kind\":\"bootloader\"},"
        "{\"offset\":\"0x10000\",\"file\":\"app.bin\",\"kind\":\"app\"},"
        "{\"offset\":\"0xF800\",\"file\":\"partitions.bin\",\"kind\":\"data\"}]}";
    expect_problem(&s, overlap, false, 2,
                   "regions[2] partitions.bin (0xf800-0x103ff) overlaps regions[1] app.bin "
                   "(0x10000-0x");

    /* The app ends past a 1MB flash. */
    static const char nofit[] =
        "{\"name\":\"demo\",\"version\":\"1\",\"chip\":\"esp32\",\"flash_size\":\"1MB\","
        "\"regions\":[{\"offset\":\"0xFF000\",\"file\":\"app.bin\",\"kind\":\"app\"}]}";
    expect_problem(&s, nofit, false, 0, "regions[0] app.bin: does not fit the flash: ");
    expect_problem(&s, nofit, false, 0, "past the end of the 1024 KiB flash (0x100000)");
    set_free(&s);
}

static void test_corrupt_images(void **state)
{
    (void)state;
    struct set s;
    demo_set(&s);
    struct file *app = set_find(&s, "app.bin");

    /* Flip one segment byte: checksum (and SHA-256) no longer match. */
    app->data[24 + 8 + 10] ^= 0x01;
    expect_problem(&s, demo_manifest, false, 2,
                   "regions[2] app.bin: image is corrupted: image checksum mismatch");
    app->data[24 + 8 + 10] ^= 0x01;

    /* Header byte changed: checksum fine, SHA-256 wrong. */
    app->data[2] = 3;
    expect_problem(&s, demo_manifest, false, 2,
                   "regions[2] app.bin: image is corrupted: image SHA-256 mismatch");
    app->data[2] = 2;

    /* Truncated in the middle of a segment. */
    size_t full = app->len;
    app->len = 24 + 8 + 100;
    expect_problem(&s, demo_manifest, false, 2,
                   "regions[2] app.bin: not a valid ESP image: segment 0 at offset 0x18");
    app->len = full;

    /* Not an image at all. */
    app->data[0] = 0x00;
    expect_problem(&s, demo_manifest, false, 2,
                   "regions[2] app.bin: not a valid ESP image: not an ESP image: first byte is "
                   "0x00");
    app->data[0] = 0xE9;

    /* Empty file. */
    app->len = 0;
    expect_problem(&s, demo_manifest, false, 2, "regions[2] app.bin: file is empty");
    app->len = full;
    set_free(&s);
}

static void test_bootloader_offset(void **state)
{
    (void)state;
    struct set s;
    demo_set(&s);
    static const char at0[] =
        "{\"name\":\"demo\",\"version\":\"1\",\"chip\":\"esp32\",\"regions\":["
        "{\"offset\":0,\"file\":\"bootloader.bin\",\"kind\":\"bootloader\"},"
        "{\"offset\":\"0x10000\",\"file\":\"app.bin\",\"kind\":\"app\"}]}";
    expect_problem(&s, at0, false, 0,
                   "regions[0] bootloader.bin: a bootloader for the ESP32 must be at 0x1000, not "
                   "at 0x0");
    set_free(&s);
}

/* A filesystem region (SPIFFS/LittleFS/FAT image) is not an ESP image: any bytes are taken,
 * checked only for place, size and count; it imports and loads back with its kind. */
static void test_filesystem_region(void **state)
{
    struct fixture *fx = *state;
    struct set s;
    demo_set(&s);
    set_add_bytes(&s, "spiffs.bin", 3 * 4096, 0x20); /* not an ESP image at all */
    static const char ok[] =
        "{\"name\":\"fsdemo\",\"version\":\"1.0.0\",\"chip\":\"esp32\",\"flash_size\":\"4MB\","
        "\"regions\":["
        "{\"offset\":\"0x1000\",\"file\":\"bootloader.bin\",\"kind\":\"bootloader\"},"
        "{\"offset\":\"0x8000\",\"file\":\"partitions.bin\",\"kind\":\"data\"},"
        "{\"offset\":65536,\"file\":\"app.bin\",\"kind\":\"app\"},"
        "{\"offset\":\"0x290000\",\"file\":\"spiffs.bin\",\"kind\":\"filesystem\"}]}";
    struct catalog_report rep;
    catalog_report_init(&rep);
    assert_int_equal(catalog_validate_mem(ok, strlen(ok), mem_load, &s, &rep), 0);
    if (rep.n)
        dump(&rep);
    assert_int_equal(rep.n, 0);
    catalog_report_free(&rep);
    assert_string_equal(catalog_kind_to_string(CATALOG_KIND_FILESYSTEM), "filesystem");

    /* Import and load: the region keeps its kind, bytes and MD5. */
    set_write(&s, fx->src, ok);
    struct catalog *cat = NULL;
    char err[256];
    assert_int_equal(catalog_open(fx->data, &cat, err, sizeof(err)), 0);
    catalog_report_init(&rep);
    assert_int_equal(catalog_import(cat, fx->src, false, &rep), 0);
    catalog_report_free(&rep);
    struct catalog_set *set = NULL;
    assert_int_equal(catalog_get(cat, "fsdemo", "1.0.0", &set, err, sizeof(err)), 0);
    assert_int_equal(set->n_regions, 4);
    assert_int_equal(set->regions[3].kind, CATALOG_KIND_FILESYSTEM);
    assert_int_equal(set->regions[3].offset, 0x290000);
    struct file *fsf = set_find(&s, "spiffs.bin");
    assert_int_equal(set->regions[3].size, fsf->len);
    assert_memory_equal(set->regions[3].data, fsf->data, fsf->len);
    char md5[33];
    hex_of(EVP_md5(), fsf->data, fsf->len, md5);
    assert_string_equal(set->regions[3].md5, md5);
    catalog_free_set(set);
    catalog_close(cat);

    /* Off a sector: refused, naming the offset. */
    static const char unaligned[] =
        "{\"name\":\"fsdemo\",\"version\":\"1\",\"chip\":\"esp32\",\"regions\":["
        "{\"offset\":65536,\"file\":\"app.bin\",\"kind\":\"app\"},"
        "{\"offset\":\"0x290800\",\"file\":\"spiffs.bin\",\"kind\":\"filesystem\"}]}";
    expect_problem(&s, unaligned, false, 1,
                   "regions[1] spiffs.bin: a filesystem image must start on a 4 KiB flash sector, "
                   "not at 0x290800");
    /* Two filesystem images: refused. */
    set_add_bytes(&s, "fat.bin", 4096, 0x40);
    static const char two[] =
        "{\"name\":\"fsdemo\",\"version\":\"1\",\"chip\":\"esp32\",\"regions\":["
        "{\"offset\":65536,\"file\":\"app.bin\",\"kind\":\"app\"},"
        "{\"offset\":\"0x290000\",\"file\":\"spiffs.bin\",\"kind\":\"filesystem\"},"
        "{\"offset\":\"0x300000\",\"file\":\"fat.bin\",\"kind\":\"filesystem\"}]}";
    expect_problem(&s, two, false, 2,
                   "regions[2] fat.bin: a second filesystem image (the first is regions[1])");
    /* Does not fit the flash / overlaps the app: the usual region checks apply. */
    static const char nofit[] =
        "{\"name\":\"fsdemo\",\"version\":\"1\",\"chip\":\"esp32\",\"flash_size\":\"1MB\","
        "\"regions\":[{\"offset\":\"0xFE000\",\"file\":\"spiffs.bin\",\"kind\":\"filesystem\"}]}";
    expect_problem(&s, nofit, false, 0, "regions[0] spiffs.bin: does not fit the flash: ");
    static const char overlap[] =
        "{\"name\":\"fsdemo\",\"version\":\"1\",\"chip\":\"esp32\",\"regions\":["
        "{\"offset\":65536,\"file\":\"app.bin\",\"kind\":\"app\"},"
        "{\"offset\":\"0x10000\",\"file\":\"spiffs.bin\",\"kind\":\"filesystem\"}]}";
    expect_problem(&s, overlap, false, 1, "regions[1] spiffs.bin (0x10000-0x12fff) overlaps");
    /* Odd sizes and an app image declared as a filesystem: imported with a warning. */
    set_add_bytes(&s, "odd.bin", 5000, 0x60);
    static const char odd[] =
        "{\"name\":\"fsdemo\",\"version\":\"1\",\"chip\":\"esp32\",\"regions\":["
        "{\"offset\":\"0x290000\",\"file\":\"odd.bin\",\"kind\":\"filesystem\"}]}";
    expect_problem(&s, odd, true, 0, "regions[0] odd.bin: 5000 bytes is not a whole number");
    static const char appfs[] =
        "{\"name\":\"fsdemo\",\"version\":\"1\",\"chip\":\"esp32\",\"regions\":["
        "{\"offset\":\"0x290000\",\"file\":\"app.bin\",\"kind\":\"filesystem\"}]}";
    expect_problem(&s, appfs, true, 0, "starts like an ESP application image");
    /* A misspelt kind names the valid ones. */
    static const char badkind[] =
        "{\"name\":\"fsdemo\",\"version\":\"1\",\"chip\":\"esp32\",\"regions\":["
        "{\"offset\":\"0x290000\",\"file\":\"spiffs.bin\",\"kind\":\"spiffs\"}]}";
    expect_problem(&s, badkind, false, 0,
                   "regions[0].kind: must be \"bootloader\", \"app\", \"data\" or \"filesystem\"");
    set_free(&s);
}

/* ---- ESP8266 NONOS dual images (user1/user2) and gzip images ------------------------- */

/* An SDK "V2" image: EA 04 <DIO> <map<<4> <entry 0x40100004>, the irom0 segment (address
 * 0, irom_len bytes), a complete ESP8266 0xE9 image, a CRC word. */
static uint8_t *build_v2(unsigned map, uint32_t irom_len, size_t *len)
{
    size_t inner_len;
    uint8_t *inner = build_image(&esp8266_app, &inner_len);
    size_t n = 16 + irom_len + inner_len + 4;
    uint8_t *out = calloc(1, n);
    assert_non_null(out);
    out[0] = 0xEA;
    out[1] = 0x04;
    out[2] = 2;
    out[3] = (uint8_t)(map << 4);
    put32(out + 4, 0x40100004u);
    put32(out + 8, 0);
    put32(out + 12, irom_len);
    for (uint32_t i = 0; i < irom_len; i++)
        out[16 + i] = (uint8_t)(i * 7 + map);
    memcpy(out + 16 + irom_len, inner, inner_len);
    put32(out + n - 4, 0x12345678u);
    free(inner);
    *len = n;
    return out;
}

static void set_add_v2(struct set *s, const char *name, unsigned map, uint32_t irom_len)
{
    size_t len;
    uint8_t *d = build_v2(map, irom_len, &len);
    set_add(s, name, d, len);
}

static uint8_t *gzip_of(const uint8_t *d, size_t n, size_t *out_len)
{
    z_stream zs;
    memset(&zs, 0, sizeof(zs));
    assert_int_equal(deflateInit2(&zs, 9, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY), Z_OK);
    size_t cap = deflateBound(&zs, (uLong)n) + 64;
    uint8_t *out = malloc(cap);
    assert_non_null(out);
    zs.next_in = (Bytef *)(uintptr_t)d;
    zs.avail_in = (uInt)n;
    zs.next_out = out;
    zs.avail_out = (uInt)cap;
    assert_int_equal(deflate(&zs, Z_FINISH), Z_STREAM_END);
    *out_len = cap - zs.avail_out;
    deflateEnd(&zs);
    return out;
}

static void set_add_gzip(struct set *s, const char *name, const uint8_t *d, size_t n)
{
    size_t len;
    uint8_t *z = gzip_of(d, n, &len);
    set_add(s, name, z, len);
}

static void expect_ok(struct set *s, const char *manifest)
{
    struct catalog_report rep;
    catalog_report_init(&rep);
    int rc = catalog_validate_mem(manifest, strlen(manifest), mem_load, s, &rep);
    if (rc != 0 || rep.n)
        dump(&rep);
    assert_int_equal(rc, 0);
    assert_int_equal(rep.n, 0);
    catalog_report_free(&rep);
}

#define DUAL_HEAD(flash)                                                                           \
    "{\"name\":\"nonos\",\"version\":\"1.0.0\",\"chip\":\"esp8266\",\"flash_size\":\"" flash       \
    "\",\"regions\":[{\"offset\":0,\"file\":\"boot.bin\",\"kind\":\"bootloader\"},"

static const char dual_ok[] =
    DUAL_HEAD("1MB") "{\"offset\":\"0x1000\",\"file\":\"user1.bin\",\"kind\":\"app\",\"slot\":"
                     "\"user1\"},"
                     "{\"offset\":\"0x81000\",\"file\":\"user2.bin\",\"kind\":\"app\",\"slot\":"
                     "\"user2\"}]}";

static void dual_set(struct set *s)
{
    memset(s, 0, sizeof(*s));
    set_add_image(s, "boot.bin", &esp8266_app);
    set_add_v2(s, "user1.bin", 2, 4096);
    set_add_v2(s, "user2.bin", 2, 4096 + 512);
}

/* A dual set validates, imports and loads back with its slots; every layout mistake is
 * named. */
static void test_dual_images(void **state)
{
    struct fixture *fx = *state;
    struct set s;
    dual_set(&s);
    expect_ok(&s, dual_ok);
    assert_string_equal(catalog_slot_to_string(CATALOG_SLOT_USER2), "user2");

    set_write(&s, fx->src, dual_ok);
    struct catalog *cat = NULL;
    char err[256];
    assert_int_equal(catalog_open(fx->data, &cat, err, sizeof(err)), 0);
    struct catalog_report rep;
    catalog_report_init(&rep);
    assert_int_equal(catalog_import(cat, fx->src, false, &rep), 0);
    catalog_report_free(&rep);
    struct catalog_set *set = NULL;
    assert_int_equal(catalog_get(cat, "nonos", "1.0.0", &set, err, sizeof(err)), 0);
    assert_int_equal(set->n_regions, 3);
    assert_int_equal(set->regions[0].slot, CATALOG_SLOT_NONE);
    assert_int_equal(set->regions[1].slot, CATALOG_SLOT_USER1);
    assert_int_equal(set->regions[2].slot, CATALOG_SLOT_USER2);
    assert_int_equal(set->regions[2].offset, 0x81000);
    assert_false(set->regions[1].gzip);
    struct file *u2 = set_find(&s, "user2.bin");
    assert_int_equal(set->regions[2].size, u2->len);
    assert_memory_equal(set->regions[2].data, u2->data, u2->len);
    catalog_free_set(set);
    catalog_close(cat);

    /* 1 MiB slots (map 5/6) put user2 at 0x101000 */
    struct set big;
    memset(&big, 0, sizeof(big));
    set_add_v2(&big, "user1.bin", 6, 1024);
    set_add_v2(&big, "user2.bin", 6, 1024);
    static const char big_ok[] =
        "{\"name\":\"n\",\"version\":\"1\",\"chip\":\"esp8266\",\"flash_size\":\"4MB\",\"regions\":"
        "["
        "{\"offset\":\"0x1000\",\"file\":\"user1.bin\",\"kind\":\"app\",\"slot\":\"user1\"},"
        "{\"offset\":\"0x101000\",\"file\":\"user2.bin\",\"kind\":\"app\",\"slot\":\"user2\"}]}";
    expect_ok(&big, big_ok);
    /* ... and images built for 512 KiB slots do not belong there */
    static const char wrong_map[] =
        "{\"name\":\"n\",\"version\":\"1\",\"chip\":\"esp8266\",\"flash_size\":\"4MB\",\"regions\":"
        "["
        "{\"offset\":\"0x1000\",\"file\":\"user1.bin\",\"kind\":\"app\",\"slot\":\"user1\"},"
        "{\"offset\":\"0x101000\",\"file\":\"user2.bin\",\"kind\":\"app\",\"slot\":\"user2\"}]}";
    expect_problem(&s, wrong_map, false, 1,
                   "regions[1] user2.bin: built for flash size map 2 (512 KiB slots, user2 at "
                   "0x81000) but this set puts user2 at 0x101000");
    set_free(&big);

    static const char odd_user2[] = DUAL_HEAD(
        "4MB") "{\"offset\":\"0x1000\",\"file\":\"user1.bin\",\"kind\":\"app\",\"slot\":\"user1\"},"
               "{\"offset\":\"0x90000\",\"file\":\"user2.bin\",\"kind\":\"app\",\"slot\":"
               "\"user2\"}]}";
    expect_problem(&s, odd_user2, false, 2,
                   "regions[2]: user2 must be at 0x41000, 0x81000 or 0x101000");
    static const char odd_user1[] = DUAL_HEAD(
        "1MB") "{\"offset\":\"0x2000\",\"file\":\"user1.bin\",\"kind\":\"app\",\"slot\":\"user1\"},"
               "{\"offset\":\"0x81000\",\"file\":\"user2.bin\",\"kind\":\"app\",\"slot\":"
               "\"user2\"}]}";
    expect_problem(&s, odd_user1, false, 1, "regions[1]: user1 must be at 0x1000");
    static const char small_flash[] = DUAL_HEAD(
        "512KB") "{\"offset\":\"0x1000\",\"file\":\"user1.bin\",\"kind\":\"app\",\"slot\":"
                 "\"user1\"},"
                 "{\"offset\":\"0x81000\",\"file\":\"user2.bin\",\"kind\":\"app\",\"slot\":"
                 "\"user2\"}]}";
    expect_problem(&s, small_flash, false, 2,
                   "user2 at 0x81000 means two 512 KiB slots, which do not fit the 512 KiB flash");
    static const char no_user2[] = DUAL_HEAD("1MB") "{\"offset\":\"0x1000\",\"file\":\"user1.bin\","
                                                    "\"kind\":\"app\",\"slot\":\"user1\"}]}";
    expect_problem(&s, no_user2, false, -1,
                   "a dual-image set needs both a \"user1\" and a \"user2\" app region; user2 is "
                   "missing");
    static const char two_user1[] = DUAL_HEAD(
        "1MB") "{\"offset\":\"0x1000\",\"file\":\"user1.bin\",\"kind\":\"app\",\"slot\":\"user1\"},"
               "{\"offset\":\"0x81000\",\"file\":\"user2.bin\",\"kind\":\"app\",\"slot\":"
               "\"user1\"}]}";
    expect_problem(&s, two_user1, false, 2,
                   "regions[2].slot: a second user1 (the first is regions[1])");
    static const char bad_slot[] = DUAL_HEAD("1MB") "{\"offset\":\"0x1000\",\"file\":\"user1.bin\","
                                                    "\"kind\":\"app\",\"slot\":\"user3\"}]}";
    expect_problem(&s, bad_slot, false, 1, "regions[1].slot: must be \"user1\" or \"user2\"");
    static const char data_slot[] =
        DUAL_HEAD("1MB") "{\"offset\":\"0x1000\",\"file\":\"user1.bin\",\"kind\":\"data\",\"slot\":"
                         "\"user1\"},"
                         "{\"offset\":\"0x81000\",\"file\":\"user2.bin\",\"kind\":\"app\",\"slot\":"
                         "\"user2\"}]}";
    expect_problem(&s, data_slot, false, 1,
                   "regions[1].slot: only an app region has a slot (this one is kind \"data\")");
    static const char esp32_slot[] =
        "{\"name\":\"n\",\"version\":\"1\",\"chip\":\"esp32\",\"regions\":["
        "{\"offset\":\"0x10000\",\"file\":\"app.bin\",\"kind\":\"app\",\"slot\":\"user1\"}]}";
    struct set e32;
    demo_set(&e32);
    expect_problem(&e32, esp32_slot, false, 0,
                   "regions[0].slot: user1/user2 is the ESP8266 NONOS SDK dual-image layout; the "
                   "ESP32 has no such slots");
    set_free(&e32);
    static const char extra_app[] = DUAL_HEAD(
        "1MB") "{\"offset\":\"0x1000\",\"file\":\"user1.bin\",\"kind\":\"app\",\"slot\":\"user1\"},"
               "{\"offset\":\"0x81000\",\"file\":\"user2.bin\",\"kind\":\"app\",\"slot\":\"user2\"}"
               ","
               "{\"offset\":\"0xF0000\",\"file\":\"boot2.bin\",\"kind\":\"app\"}]}";
    set_add_image(&s, "boot2.bin", &esp8266_app);
    expect_problem(&s, extra_app, false, 3,
                   "regions[3]: an app without a slot in a dual-image set");

    /* An 0xE9 image in a slot: refused, naming the first byte. */
    static const char e9_slot[] = DUAL_HEAD(
        "1MB") "{\"offset\":\"0x1000\",\"file\":\"boot2.bin\",\"kind\":\"app\",\"slot\":\"user1\"},"
               "{\"offset\":\"0x81000\",\"file\":\"user2.bin\",\"kind\":\"app\",\"slot\":"
               "\"user2\"}]}";
    expect_problem(&s, e9_slot, false, 1,
                   "regions[1] boot2.bin: user1 holds an SDK V2 image (first byte 0xea");

    /* Broken V2 images: each header check and truncation is named. */
    struct file *u1 = set_find(&s, "user1.bin");
    put32(u1->data + 4, 0x40200000u);
    expect_problem(&s, dual_ok, false, 1,
                   "regions[1] user1.bin: entry address 0x40200000 is not in IRAM");
    put32(u1->data + 4, 0x40100004u);
    u1->data[1] = 0x03;
    expect_problem(&s, dual_ok, false, 1, "regions[1] user1.bin: V2 header byte 1 is 0x03");
    u1->data[1] = 0x04;
    size_t full = u1->len;
    u1->len = 2000;
    expect_problem(&s, dual_ok, false, 1,
                   "regions[1] user1.bin: the irom0 segment (4096 bytes) runs past the end");
    u1->len = full;
    u1->data[16 + 4096] = 0x00; /* the RAM part's magic */
    expect_problem(&s, dual_ok, false, 1,
                   "regions[1] user1.bin: the RAM part after the irom0 segment (at byte 4112) is "
                   "not a valid ESP8266 image");
    u1->data[16 + 4096] = 0xE9;
    expect_ok(&s, dual_ok);
    set_free(&s);

    /* Too large for its slot: 512 KiB less 20 KiB at most. */
    dual_set(&s);
    struct file *u2b = set_find(&s, "user2.bin");
    free(u2b->data);
    u2b->data = build_v2(2, 0x7B000, &u2b->len);
    expect_problem(&s, dual_ok, false, 2,
                   "regions[2] user2.bin: 505908 bytes is too large for a 512 KiB slot (at most "
                   "503808");
    set_free(&s);

    /* A V2 image as a plain app (no slot) is an app like any other. */
    memset(&s, 0, sizeof(s));
    set_add_v2(&s, "user1.bin", 2, 256);
    static const char single[] =
        "{\"name\":\"n\",\"version\":\"1\",\"chip\":\"esp8266\",\"regions\":["
        "{\"offset\":\"0x1000\",\"file\":\"user1.bin\",\"kind\":\"app\"}]}";
    expect_ok(&s, single);
    static const char as_boot[] =
        "{\"name\":\"n\",\"version\":\"1\",\"chip\":\"esp8266\",\"regions\":["
        "{\"offset\":0,\"file\":\"user1.bin\",\"kind\":\"bootloader\"}]}";
    expect_problem(&s, as_boot, false, 0, "is an application started by the SDK's boot_v1.x");
    set_free(&s);
}

/* gzip ESP8266 apps: inflated (bounded), the inner image checked; ESP32 refuses them. */
static void test_gzip_images(void **state)
{
    struct fixture *fx = *state;
    struct set s;
    memset(&s, 0, sizeof(s));
    size_t alen;
    uint8_t *app = build_image(&esp8266_app, &alen);
    set_add_gzip(&s, "app.bin.gz", app, alen);
    static const char ok[] =
        "{\"name\":\"gz\",\"version\":\"1.0.0\",\"chip\":\"esp8266\",\"regions\":["
        "{\"offset\":0,\"file\":\"app.bin.gz\",\"kind\":\"app\"}]}";
    expect_ok(&s, ok);

    set_write(&s, fx->src, ok);
    struct catalog *cat = NULL;
    char err[256];
    assert_int_equal(catalog_open(fx->data, &cat, err, sizeof(err)), 0);
    struct catalog_report rep;
    catalog_report_init(&rep);
    assert_int_equal(catalog_import(cat, fx->src, false, &rep), 0);
    catalog_report_free(&rep);
    struct catalog_set *set = NULL;
    assert_int_equal(catalog_get(cat, "gz", "1.0.0", &set, err, sizeof(err)), 0);
    assert_true(set->regions[0].gzip);
    struct file *gz = set_find(&s, "app.bin.gz");
    assert_int_equal(set->regions[0].size, gz->len); /* stored as is */
    assert_memory_equal(set->regions[0].data, gz->data, gz->len);
    catalog_free_set(set);
    catalog_close(cat);

    /* ESP32: refused, saying why. */
    static const char esp32[] =
        "{\"name\":\"gz\",\"version\":\"1\",\"chip\":\"esp32\",\"regions\":["
        "{\"offset\":\"0x10000\",\"file\":\"app.bin.gz\",\"kind\":\"app\"}]}";
    expect_problem(&s, esp32, false, 0,
                   "regions[0] app.bin.gz: a gzip-compressed image (first bytes 1f 8b); only "
                   "ESP8266 boards (Arduino Updater with eboot) take compressed images, the ESP32");
    /* Truncated and corrupt streams. */
    size_t full = gz->len;
    gz->len = full / 2;
    expect_problem(&s, ok, false, 0,
                   "regions[0] app.bin.gz: the gzip stream is corrupt (the stream is truncated)");
    gz->len = full;
    gz->data[full - 6] ^= 0xFF; /* CRC32 trailer */
    expect_problem(&s, ok, false, 0, "regions[0] app.bin.gz: the gzip stream is corrupt (");
    gz->data[full - 6] ^= 0xFF;
    expect_ok(&s, ok);
    /* A gzip of a corrupt image: the inner problem is named. */
    app[8 + 8 + 5] ^= 0x01;
    set_add_gzip(&s, "bad.gz", app, alen);
    static const char bad[] =
        "{\"name\":\"gz\",\"version\":\"1\",\"chip\":\"esp8266\",\"regions\":["
        "{\"offset\":0,\"file\":\"bad.gz\",\"kind\":\"app\"}]}";
    expect_problem(&s, bad, false, 0,
                   "regions[0] bad.gz (inflated): image is corrupted: image checksum mismatch");
    /* A gzip of something else. */
    static const uint8_t text[] = "not firmware at all";
    set_add_gzip(&s, "text.gz", text, sizeof(text));
    static const char txt[] =
        "{\"name\":\"gz\",\"version\":\"1\",\"chip\":\"esp8266\",\"regions\":["
        "{\"offset\":0,\"file\":\"text.gz\",\"kind\":\"app\"}]}";
    expect_problem(&s, txt, false, 0,
                   "regions[0] text.gz: the gzip stream inflates to 20 bytes that are not an "
                   "ESP8266 app image (first byte 0x6e, expected 0xe9)");
    /* A bomb: more than 16 MiB out. */
    size_t big = 17u * 1024 * 1024;
    uint8_t *zeros = calloc(1, big);
    assert_non_null(zeros);
    zeros[0] = 0xE9;
    set_add_gzip(&s, "bomb.gz", zeros, big);
    free(zeros);
    static const char bomb[] =
        "{\"name\":\"gz\",\"version\":\"1\",\"chip\":\"esp8266\",\"regions\":["
        "{\"offset\":0,\"file\":\"bomb.gz\",\"kind\":\"app\"}]}";
    expect_problem(&s, bomb, false, 0,
                   "regions[0] bomb.gz: the gzip stream inflates to more than 16 MiB");
    /* As a bootloader or in a slot: refused. */
    static const char boot[] =
        "{\"name\":\"gz\",\"version\":\"1\",\"chip\":\"esp8266\",\"regions\":["
        "{\"offset\":0,\"file\":\"app.bin.gz\",\"kind\":\"bootloader\"}]}";
    expect_problem(&s, boot, false, 0, "a gzip-compressed bootloader; the ROM cannot start");
    set_add_v2(&s, "user2.bin", 2, 512);
    static const char slot[] =
        "{\"name\":\"gz\",\"version\":\"1\",\"chip\":\"esp8266\",\"regions\":["
        "{\"offset\":\"0x1000\",\"file\":\"app.bin.gz\",\"kind\":\"app\",\"slot\":\"user1\"},"
        "{\"offset\":\"0x81000\",\"file\":\"user2.bin\",\"kind\":\"app\",\"slot\":\"user2\"}]}";
    expect_problem(&s, slot, false, 0,
                   "regions[0] app.bin.gz: a gzip-compressed image as user1; boot_v1.x and raw "
                   "TCP-OTA take only plain SDK V2 images");
    free(app);
    set_free(&s);
}

static void test_interrupted_import(void **state)
{
    struct fixture *fx = *state;
    char err[512];
    struct catalog *cat = NULL;
    assert_int_equal(catalog_open(fx->data, &cat, err, sizeof(err)), 0);

    /* What a crash mid-import leaves: a complete-looking temp dir. */
    struct set s;
    demo_set(&s);
    char tmp[256];
    snprintf(tmp, sizeof(tmp), "%s/.import-Ab12Cd", catalog_root(cat));
    set_write(&s, tmp, demo_manifest);
    static const char fake_index[] = "{\"chip\":\"esp32\",\"regions\":[]}";
    write_file(tmp, "index.json", fake_index, strlen(fake_index));
    /* ... and a half-deleted set. */
    char del[256];
    snprintf(del, sizeof(del), "%s/.delete-Xy34Zw", catalog_root(cat));
    set_write(&s, del, demo_manifest);

    struct catalog_entry *es = NULL;
    size_t n = 99;
    assert_int_equal(catalog_list(cat, &es, &n), 0);
    assert_int_equal(n, 0); /* never visible */
    struct catalog_set *fs = NULL;
    assert_int_equal(catalog_get(cat, ".import-Ab12Cd", "x", &fs, err, sizeof(err)), -EINVAL);
    catalog_close(cat);

    /* The next open cleans up. */
    assert_int_equal(catalog_open(fx->data, &cat, err, sizeof(err)), 0);
    assert_false(path_exists(tmp));
    assert_false(path_exists(del));

    /* A version directory without index.json (foreign or damaged) is not listed either. */
    char half[256];
    snprintf(half, sizeof(half), "%s/demo", catalog_root(cat));
    mkdir(half, 0755);
    snprintf(half, sizeof(half), "%s/demo/9.9", catalog_root(cat));
    set_write(&s, half, demo_manifest);
    assert_int_equal(catalog_list(cat, &es, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(catalog_get(cat, "demo", "9.9", &fs, err, sizeof(err)), -EBADMSG);
    assert_non_null(strstr(err, "index.json is missing"));

    /* A failed validation leaves nothing behind. */
    rm_tree(half);
    set_write(&s, fx->src,
              "{\"name\":\"demo\",\"version\":\"2\",\"chip\":\"esp32\",\"regions\":["
              "{\"offset\":0,\"file\":\"nope.bin\",\"kind\":\"data\"}]}");
    struct catalog_report rep;
    catalog_report_init(&rep);
    assert_int_equal(catalog_import(cat, fx->src, false, &rep), -EINVAL);
    catalog_report_free(&rep);
    DIR *d = opendir(catalog_root(cat));
    assert_non_null(d);
    struct dirent *e;
    int entries = 0;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            entries++;
    closedir(d);
    assert_int_equal(entries, 1); /* just the empty demo/ left by this test */
    catalog_close(cat);
    set_free(&s);
}

static void test_corruption_on_disk(void **state)
{
    struct fixture *fx = *state;
    struct set s;
    demo_set(&s);
    set_write(&s, fx->src, demo_manifest);
    char err[512];
    struct catalog *cat = NULL;
    assert_int_equal(catalog_open(fx->data, &cat, err, sizeof(err)), 0);
    assert_int_equal(catalog_import(cat, fx->src, false, NULL), 0);

    char path[512];
    snprintf(path, sizeof(path), "%s/demo/1.0.0/app.bin", catalog_root(cat));
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    fseek(f, 100, SEEK_SET);
    fputc(0x5A, f);
    fclose(f);
    struct catalog_set *fs = NULL;
    assert_int_equal(catalog_get(cat, "demo", "1.0.0", &fs, err, sizeof(err)), -EBADMSG);
    assert_null(fs);
    assert_string_equal(err, "firmware demo@1.0.0: app.bin is corrupted on disk (checksum differs "
                             "from the one recorded at import); delete the set and import it "
                             "again");

    /* Re-import over it, then damage the compressed copy instead. */
    assert_int_equal(catalog_import(cat, fx->src, true, NULL), 0);
    assert_int_equal(catalog_get(cat, "demo", "1.0.0", &fs, err, sizeof(err)), 0);
    catalog_free_set(fs);
    snprintf(path, sizeof(path), "%s/demo/1.0.0/bootloader.bin.z", catalog_root(cat));
    assert_int_equal(truncate(path, 10), 0);
    assert_int_equal(catalog_get(cat, "demo", "1.0.0", &fs, err, sizeof(err)), -EBADMSG);
    assert_non_null(strstr(err, "the compressed copy of bootloader.bin is corrupted on disk"));

    /* A missing file. */
    snprintf(path, sizeof(path), "%s/demo/1.0.0/partitions.bin", catalog_root(cat));
    assert_int_equal(unlink(path), 0);
    assert_int_equal(catalog_get(cat, "demo", "1.0.0", &fs, err, sizeof(err)), -EBADMSG);
    catalog_close(cat);
    set_free(&s);
}

/* An ESP32 app of firmware-like bytes: each segment is code-like words from a small
 * vocabulary picked by an LCG (zlib -9 leaves about a sixth; zopfli does better). */
static uint8_t *build_text_image(uint32_t seg_len, size_t *len)
{
    static const char *const words[] = {
        "esp_wifi_", "nvs_get_", "httpd_",   "0x3ffb",      "\x24\x41", "\x36\x41\x00", "ret",
        "_init",     "ok; ",     "\x0c\x02", "E (%d) %s: ", "mbedtls_", "\x81\xf9\xff", "gpio_"};
    struct img sp = {.chip_id = 0, .hash = true, .n_seg = 2, .seg_len = seg_len};
    uint8_t *out = build_image(&sp, len);
    uint32_t x = 12345;
    size_t p = 24; /* after the common and extended headers */
    uint8_t cks = 0xEF;
    for (unsigned s = 0; s < sp.n_seg; s++) {
        p += 8;
        for (uint32_t i = 0; i < seg_len;) {
            x = x * 1103515245u + 12345u;
            const char *w = words[(x >> 16) % (sizeof(words) / sizeof(words[0]))];
            for (size_t k = 0; w[k] && i < seg_len; k++, i++) {
                out[p] = (uint8_t)w[k];
                cks ^= out[p++];
            }
        }
    }
    while (p % 16 != 15)
        p++;
    out[p++] = cks;
    unsigned int n = 0;
    assert_int_equal(EVP_Digest(out, p, out + p, &n, EVP_sha256(), NULL), 1);
    assert_int_equal(p + 32, *len);
    return out;
}

/* Issue 11: the cached copy is made once at import with zopfli, so it is smaller than
 * zlib -9's on firmware-like data, is a zlib stream that inflates back to the image
 * exactly (what the stub does with FLASH_DEFL_DATA), and index.json says which
 * encoder made it. Tiny, highly repetitive files keep zlib -9 (zopfli not tried). */
static void test_zopfli_copy(void **state)
{
    struct fixture *fx = *state;
    struct set s;
    memset(&s, 0, sizeof(s));
    size_t len = 0;
    uint8_t *app = build_text_image(24000, &len);
    set_add(&s, "app.bin", app, len);
    set_add_bytes(&s, "part.bin", 3072, 0xAA);
    static const char manifest[] =
        "{\"name\":\"z\",\"version\":\"1\",\"chip\":\"esp32\",\"regions\":["
        "{\"offset\":\"0x8000\",\"file\":\"part.bin\",\"kind\":\"data\"},"
        "{\"offset\":\"0x10000\",\"file\":\"app.bin\",\"kind\":\"app\"}]}";
    set_write(&s, fx->src, manifest);
    struct catalog *cat = NULL;
    char err[256];
    assert_int_equal(catalog_open(fx->data, &cat, err, sizeof(err)), 0);
    struct catalog_report rep;
    catalog_report_init(&rep);
    int rc = catalog_import(cat, fx->src, false, &rep);
    if (rc < 0)
        dump(&rep);
    assert_int_equal(rc, 0);
    catalog_report_free(&rep);
    struct catalog_set *fs = NULL;
    assert_int_equal(catalog_get(cat, "z", "1", &fs, err, sizeof(err)), 0);
    for (size_t i = 0; i < 2; i++) {
        const struct catalog_region *r = &fs->regions[i];
        uint8_t *z9 = NULL;
        size_t z9len = 0;
        assert_int_equal(esp_region_compress(r->data, r->size, &z9, &z9len), 0);
        if (strcmp(r->file, "app.bin") == 0) {
            print_message("app.bin: %zu bytes, zlib -9 %zu, cached %zu\n", r->size, z9len,
                          r->zsize);
            assert_true(r->zsize < z9len);
        } else {
            assert_int_equal(r->zsize, z9len); /* under 1 KiB of zlib: zopfli not tried */
            assert_memory_equal(r->zdata, z9, z9len);
        }
        free(z9);
        uLongf out_len = (uLongf)r->size;
        uint8_t *out = malloc(r->size);
        assert_non_null(out);
        assert_int_equal(uncompress(out, &out_len, r->zdata, (uLong)r->zsize), Z_OK);
        assert_int_equal(out_len, r->size);
        assert_memory_equal(out, r->data, r->size);
        free(out);
    }
    catalog_free_set(fs);
    char path[512];
    snprintf(path, sizeof(path), "%s/z/1/index.json", catalog_root(cat));
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char idx[4096];
    size_t n = fread(idx, 1, sizeof(idx) - 1, f);
    fclose(f);
    idx[n] = '\0';
    const char *zm = strstr(idx, "\"zmethod\"");
    assert_non_null(zm);
    assert_non_null(strstr(zm + 1, "\"zmethod\"")); /* one per region */
    assert_non_null(strstr(idx, "\"zopfli\""));
    assert_non_null(strstr(idx, "\"zlib-9\""));
    catalog_close(cat);
    set_free(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_import_and_load, setup, teardown),
        cmocka_unit_test(test_bad_manifests),
        cmocka_unit_test(test_esptool_args),
        cmocka_unit_test(test_every_problem_listed),
        cmocka_unit_test(test_wrong_chip_image),
        cmocka_unit_test(test_overlap_and_fit),
        cmocka_unit_test(test_corrupt_images),
        cmocka_unit_test(test_bootloader_offset),
        cmocka_unit_test_setup_teardown(test_filesystem_region, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dual_images, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gzip_images, setup, teardown),
        cmocka_unit_test_setup_teardown(test_interrupted_import, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corruption_on_disk, setup, teardown),
        cmocka_unit_test_setup_teardown(test_zopfli_copy, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
