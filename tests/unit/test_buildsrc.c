/*
 * test_buildsrc: recognising build outputs (protocols/buildsrc).
 *
 * The descriptor parsers on hand-written documents (each format, every refusal naming the
 * key), then whole directory trees built in a temporary directory from the real images in
 * ../shared/fixtures/esp-images (read from there, never copied into the project; those
 * cases are skipped with a message when the folder is absent): ESP-IDF, PlatformIO with and
 * without idedata.json, Arduino (separate and merged), ESP Web Tools with two builds, a
 * merged factory image, the ESP8266 single image; and the refusals: a wrong chip family, a
 * missing file, overlapping offsets, an app where the partition table has none, a path
 * leaving the directory, an encrypted part, a lone app image.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "buildsrc.h"

#ifndef TEST_SRC_DIR
#define TEST_SRC_DIR "."
#endif

static char fix[1024];
static char tmp[512];

/* ---- helpers --------------------------------------------------------------------------- */

static struct buildsrc *new_src(void)
{
    struct buildsrc *s = calloc(1, sizeof(*s));
    assert_non_null(s);
    return s;
}

static int parse(int (*fn)(const char *, size_t, const char *, struct buildsrc *,
                           struct esp_error *),
                 const char *json, struct buildsrc **out, struct esp_error *err)
{
    *out = new_src();
    esp_error_clear(err);
    return fn(json, strlen(json), "desc.json", *out, err);
}

static bool fixtures_skipped; /* a case was skipped: the run exits 77 (ctest: skipped) */
static char looked[3200];     /* the folders find_fixtures tried, for the messages */

static bool have_fixtures(void)
{
    char p[1100];
    snprintf(p, sizeof(p), "%s/bootloader_esp32.bin", fix);
    if (fix[0] && access(p, R_OK) == 0)
        return true;
    const char *req = getenv("ESPSTATION_REQUIRE_ESP_IMAGES");
    if (req && *req)
        fail_msg("the real ESP images are not in %s and ESPSTATION_REQUIRE_ESP_IMAGES is set",
                 looked);
    print_message("SKIP: the real ESP images are not in %s\n", looked);
    fixtures_skipped = true;
    return false;
}

/* The folder of the real ESP images: $ESP_IMAGES (CMake passes the one it found), next to
 * the repository, or /work/shared (a checkout or worktree elsewhere on a machine that has
 * it). "" when none holds them. */
static void find_fixtures(void)
{
    const char *env = getenv("ESP_IMAGES");
    char cand[3][1024];
    snprintf(cand[0], sizeof(cand[0]), "%s", env ? env : "");
    snprintf(cand[1], sizeof(cand[1]), "%s/../../shared/fixtures/esp-images", TEST_SRC_DIR);
    snprintf(cand[2], sizeof(cand[2]), "/work/shared/fixtures/esp-images");
    fix[0] = '\0';
    for (size_t i = 0; i < 3; i++) {
        char p[1100];
        snprintf(p, sizeof(p), "%s/bootloader_esp32.bin", cand[i]);
        if (cand[i][0] && access(p, R_OK) == 0) {
            snprintf(fix, sizeof(fix), "%s", cand[i]);
            return;
        }
        size_t n = strlen(looked);
        if (cand[i][0])
            snprintf(looked + n, sizeof(looked) - n, "%s%s", n ? ", " : "", cand[i]);
    }
}

static uint8_t *read_fix(const char *name, size_t *len)
{
    char p[1100];
    snprintf(p, sizeof(p), "%s/%s", fix, name);
    FILE *f = fopen(p, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *d = malloc((size_t)n + 1);
    assert_non_null(d);
    assert_int_equal(fread(d, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return d;
}

static void put(const char *rel, const void *data, size_t len)
{
    char p[1024];
    snprintf(p, sizeof(p), "%s/%s", tmp, rel);
    for (char *s = strchr(p + strlen(tmp) + 1, '/'); s; s = strchr(s + 1, '/')) {
        *s = '\0';
        mkdir(p, 0700);
        *s = '/';
    }
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    fclose(f);
}

static void put_str(const char *rel, const char *s)
{
    put(rel, s, strlen(s));
}

static void put_fix(const char *rel, const char *name)
{
    size_t n;
    uint8_t *d = read_fix(name, &n);
    put(rel, d, n);
    free(d);
}

/* A merged image: 0xFF to 0x10000, the bootloader at boot_off, the table at 0x8000, the app. */
static void put_merged(const char *rel, const char *boot, uint32_t boot_off, const char *app)
{
    size_t nb, np, na;
    uint8_t *b = read_fix(boot, &nb), *p = read_fix("partitions_singleapp.bin", &np),
            *a = read_fix(app, &na);
    size_t n = 0x10000 + na;
    uint8_t *img = malloc(n);
    assert_non_null(img);
    memset(img, 0xFF, 0x10000);
    memcpy(img + boot_off, b, nb);
    memcpy(img + 0x8000, p, np);
    memcpy(img + 0x10000, a, na);
    put(rel, img, n);
    free(img);
    free(b);
    free(p);
    free(a);
}

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static int setup_dir(void **state)
{
    (void)state;
    const char *t = getenv("TMPDIR");
    snprintf(tmp, sizeof(tmp), "%s/test_buildsrc.XXXXXX", t && *t ? t : "/tmp");
    assert_non_null(mkdtemp(tmp));
    return 0;
}

static int teardown_dir(void **state)
{
    (void)state;
    nftw(tmp, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

static struct buildsrc *load_ok(const char *rel)
{
    char p[1024];
    snprintf(p, sizeof(p), "%s%s%s", tmp, rel[0] ? "/" : "", rel);
    struct buildsrc *s = NULL;
    struct esp_error err;
    esp_error_clear(&err);
    int rc = buildsrc_load(p, &s, &err);
    if (rc != 0)
        fail_msg("buildsrc_load(%s): %d %s", rel, rc, err.message);
    return s;
}

static int load_err(const char *rel, struct esp_error *err)
{
    char p[1024];
    snprintf(p, sizeof(p), "%s%s%s", tmp, rel[0] ? "/" : "", rel);
    struct buildsrc *s = NULL;
    esp_error_clear(err);
    int rc = buildsrc_load(p, &s, err);
    assert_null(s);
    assert_true(rc < 0);
    assert_int_equal(err->stage, ESP_STAGE_PREPARE);
    assert_true(err->advice[0] != '\0');
    return rc;
}

static void expect_msg(const struct esp_error *err, const char *needle)
{
    if (!strstr(err->message, needle))
        fail_msg("message \"%s\" lacks \"%s\"", err->message, needle);
}

static const char idf_json[] =
    "{\"flash_settings\": {\"flash_mode\": \"dio\", \"flash_size\": \"%s\", \"flash_freq\": "
    "\"40m\"},\n"
    " \"flash_files\": {\"0x1000\": \"bootloader/bootloader.bin\", \"%s\": \"%s\",\n"
    "                 \"0x8000\": \"partition_table/partition-table.bin\"},\n"
    " \"bootloader\": {\"offset\": \"0x1000\", \"file\": \"bootloader/bootloader.bin\", "
    "\"encrypted\": \"false\"},\n"
    " \"app\": {\"offset\": \"%s\", \"file\": \"%s\", \"encrypted\": \"%s\"},\n"
    " \"partition-table\": {\"offset\": \"0x8000\", \"file\": "
    "\"partition_table/partition-table.bin\", \"encrypted\": \"false\"},\n"
    " \"extra_esptool_args\": {\"after\": \"hard_reset\", \"before\": \"default_reset\", "
    "\"stub\": true, \"chip\": \"%s\"}}";

/* An ESP-IDF build/ for the ESP32 in tmp/<dir>. */
static void idf_tree(const char *dir, const char *size, const char *app_off, const char *app,
                     const char *app_fix, const char *encrypted)
{
    char rel[256], json[2048];
    snprintf(rel, sizeof(rel), "%s/bootloader/bootloader.bin", dir);
    put_fix(rel, "bootloader_esp32.bin");
    snprintf(rel, sizeof(rel), "%s/partition_table/partition-table.bin", dir);
    put_fix(rel, "partitions_singleapp.bin");
    if (app_fix) {
        snprintf(rel, sizeof(rel), "%s/%s", dir, app);
        put_fix(rel, app_fix);
    }
    snprintf(json, sizeof(json), idf_json, size, app_off, app, app_off, app, encrypted, "esp32");
    snprintf(rel, sizeof(rel), "%s/flasher_args.json", dir);
    put_str(rel, json);
}

/* ---- the parsers ----------------------------------------------------------------------- */

static void test_parse_flasher_args(void **state)
{
    (void)state;
    char json[2048];
    snprintf(json, sizeof(json), idf_json, "detect", "0x10000", "app.bin", "0x10000", "app.bin",
             "false", "esp32s3");
    struct buildsrc *s;
    struct esp_error err;
    assert_int_equal(parse(buildsrc_parse_flasher_args, json, &s, &err), 0);
    assert_int_equal(s->format, BUILDSRC_ESP_IDF);
    assert_int_equal(s->n_sets, 1);
    const struct buildsrc_set *set = &s->sets[0];
    assert_ptr_equal(set->chip, esp_chip_get(ESP_CHIP_ESP32S3));
    assert_int_equal(set->flash_mode, 2);
    assert_true(set->flash_size_detect);
    assert_int_equal(set->flash_size, 0);
    assert_int_equal(set->flash_freq_mhz, 40);
    assert_int_equal(set->n_parts, 3);
    for (size_t i = 0; i < set->n_parts; i++) {
        const struct buildsrc_part *p = &set->parts[i];
        if (p->offset == 0x1000)
            assert_int_equal(p->role, BUILDSRC_ROLE_BOOTLOADER);
        else if (p->offset == 0x8000)
            assert_int_equal(p->role, BUILDSRC_ROLE_PARTITION_TABLE);
        else
            assert_int_equal(p->role, BUILDSRC_ROLE_APP);
        assert_false(p->encrypted);
    }
    buildsrc_free(s);

    /* encrypted "true" is carried; the check refuses it. */
    snprintf(json, sizeof(json), idf_json, "4MB", "0x10000", "app.bin", "0x10000", "app.bin",
             "true", "esp32");
    assert_int_equal(parse(buildsrc_parse_flasher_args, json, &s, &err), 0);
    bool enc = false;
    for (size_t i = 0; i < s->sets[0].n_parts; i++)
        enc |= s->sets[0].parts[i].encrypted;
    assert_true(enc);
    assert_int_equal(s->sets[0].flash_size, 4u << 20);
    buildsrc_free(s);
}

/* extra_esptool_args besides chip: before / after / stub, as ESP-IDF writes them (and with
 * '-', esptool 5's spelling); absent keys stay unset, the JSON says what was given. */
static void test_parse_esptool_args(void **state)
{
    (void)state;
    char json[2048];
    snprintf(json, sizeof(json), idf_json, "4MB", "0x10000", "app.bin", "0x10000", "app.bin",
             "false", "esp32");
    struct buildsrc *s;
    struct esp_error err;
    assert_int_equal(parse(buildsrc_parse_flasher_args, json, &s, &err), 0);
    assert_true(s->has_before && s->has_after && s->has_stub);
    assert_int_equal(s->before, ESP_BEFORE_DEFAULT_RESET);
    assert_int_equal(s->after, ESP_AFTER_HARD_RESET);
    assert_true(s->stub);
    json_object *j = buildsrc_to_json(s), *e;
    assert_true(json_object_object_get_ex(j, "esptool_args", &e));
    assert_string_equal(json_object_to_json_string_ext(e, JSON_C_TO_STRING_PLAIN),
                        "{\"before\":\"default-reset\",\"after\":\"hard-reset\",\"stub\":true}");
    json_object_put(j);
    buildsrc_free(s);

    assert_int_equal(parse(buildsrc_parse_flasher_args,
                           "{\"flash_files\": {\"0x0\": \"a.bin\"}, \"extra_esptool_args\": "
                           "{\"before\": \"no_reset\", \"after\": \"no-reset\", \"stub\": false}}",
                           &s, &err),
                     0);
    assert_int_equal(s->before, ESP_BEFORE_NO_RESET);
    assert_int_equal(s->after, ESP_AFTER_NO_RESET);
    assert_true(s->has_stub);
    assert_false(s->stub);
    buildsrc_free(s);

    assert_int_equal(parse(buildsrc_parse_flasher_args,
                           "{\"flash_files\": {\"0x0\": \"a.bin\"}, \"extra_esptool_args\": "
                           "{\"chip\": \"esp32\", \"before\": \"usb_reset\", \"stub\": \"false\"}}",
                           &s, &err),
                     0);
    assert_int_equal(s->before, ESP_BEFORE_USB_RESET);
    assert_false(s->has_after);
    assert_false(s->stub);
    j = buildsrc_to_json(s);
    assert_true(json_object_object_get_ex(j, "esptool_args", &e));
    assert_string_equal(json_object_to_json_string_ext(e, JSON_C_TO_STRING_PLAIN),
                        "{\"before\":\"usb-reset\",\"stub\":false}");
    json_object_put(j);
    buildsrc_free(s);

    /* None given: nothing set, no esptool_args in the JSON. */
    assert_int_equal(
        parse(buildsrc_parse_flasher_args, "{\"flash_files\": {\"0x0\": \"a.bin\"}}", &s, &err), 0);
    assert_false(s->has_before || s->has_after || s->has_stub);
    j = buildsrc_to_json(s);
    assert_false(json_object_object_get_ex(j, "esptool_args", &e));
    json_object_put(j);
    buildsrc_free(s);
}

static void test_parse_refusals(void **state)
{
    (void)state;
    static const struct {
        int (*fn)(const char *, size_t, const char *, struct buildsrc *, struct esp_error *);
        const char *json, *needle;
    } cases[] = {
        {buildsrc_parse_flasher_args, "{", "not valid JSON"},
        {buildsrc_parse_flasher_args, "[1]", "not a JSON object"},
        {buildsrc_parse_flasher_args, "{} x", "not valid JSON"},
        {buildsrc_parse_flasher_args, "{\"flash_settings\": {}}", "flash_files"},
        {buildsrc_parse_flasher_args, "{\"flash_files\": {}}", "flash_files is empty"},
        {buildsrc_parse_flasher_args, "{\"flash_files\": {\"boot\": \"a.bin\"}}",
         "\"boot\" is not a flash offset"},
        {buildsrc_parse_flasher_args, "{\"flash_files\": {\"0x123456789\": \"a.bin\"}}",
         "not a flash offset"},
        {buildsrc_parse_flasher_args, "{\"flash_files\": {\"0x0\": 5}}", "not a file name"},
        {buildsrc_parse_flasher_args,
         "{\"flash_files\": {\"0x0\": \"a.bin\"}, \"extra_esptool_args\": {\"chip\": \"z80\"}}",
         "\"z80\""},
        {buildsrc_parse_flasher_args,
         "{\"flash_files\": {\"0x0\": \"a.bin\"}, \"extra_esptool_args\": {\"before\": \"kick\"}}",
         "extra_esptool_args.before \"kick\""},
        {buildsrc_parse_flasher_args,
         "{\"flash_files\": {\"0x0\": \"a.bin\"}, \"extra_esptool_args\": {\"before\": "
         "\"manual\"}}",
         "extra_esptool_args.before \"manual\""},
        {buildsrc_parse_flasher_args,
         "{\"flash_files\": {\"0x0\": \"a.bin\"}, \"extra_esptool_args\": {\"after\": 1}}",
         "extra_esptool_args.after \"\""},
        {buildsrc_parse_flasher_args,
         "{\"flash_files\": {\"0x0\": \"a.bin\"}, \"extra_esptool_args\": {\"stub\": \"yes\"}}",
         "extra_esptool_args.stub is not true or false"},
        {buildsrc_parse_flasher_args,
         "{\"flash_files\": {\"0x0\": \"a.bin\"}, \"flash_settings\": {\"flash_mode\": \"fast\"}}",
         "flash_mode \"fast\""},
        {buildsrc_parse_flasher_args,
         "{\"flash_files\": {\"0x0\": \"a.bin\"}, \"flash_settings\": {\"flash_size\": \"big\"}}",
         "flash_size \"big\""},
        {buildsrc_parse_flasher_args,
         "{\"flash_files\": {\"0x0\": \"a.bin\"}, \"app\": {\"offset\": \"0x0\", \"file\": "
         "\"b.bin\"}}",
         "\"app\" names b.bin at 0x0"},
        {buildsrc_parse_idedata, "{\"env_name\": \"x\"}", "no \"extra\""},
        {buildsrc_parse_idedata, "{\"extra\": {\"flash_images\": {}}}", "not a list"},
        {buildsrc_parse_idedata, "{\"extra\": {\"flash_images\": [{\"path\": \"b.bin\"}]}}",
         "flash_images[0] needs"},
        {buildsrc_parse_idedata, "{\"extra\": {\"application_offset\": \"ten\"}}",
         "application_offset"},
        {buildsrc_parse_web_tools, "{\"name\": \"x\"}", "no \"builds\""},
        {buildsrc_parse_web_tools, "{\"builds\": []}", "no \"builds\""},
        {buildsrc_parse_web_tools, "{\"builds\": [{\"parts\": []}]}", "no \"chipFamily\""},
        {buildsrc_parse_web_tools, "{\"builds\": [{\"chipFamily\": \"Z80\", \"parts\": []}]}",
         "\"Z80\" is not a chip family"},
        {buildsrc_parse_web_tools, "{\"builds\": [{\"chipFamily\": \"ESP32\"}]}",
         "has no \"parts\""},
        {buildsrc_parse_web_tools,
         "{\"builds\": [{\"chipFamily\": \"ESP32\", \"parts\": [{\"path\": \"a.bin\"}]}]}",
         "parts[0] needs"},
        {buildsrc_parse_web_tools,
         "{\"builds\": [{\"chipFamily\": \"ESP32\", \"parts\": [{\"path\": "
         "\"https://x/a.bin\", \"offset\": 0}]}]}",
         "is a URL"},
        {buildsrc_parse_web_tools,
         "{\"builds\": [{\"chipFamily\": \"ESP32\", \"parts\": [{\"path\": \"a\", \"offset\": "
         "0}]}, {\"chipFamily\": \"esp32\", \"parts\": [{\"path\": \"b\", \"offset\": 0}]}]}",
         "both for ESP32"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct buildsrc *s;
        struct esp_error err;
        int rc = parse(cases[i].fn, cases[i].json, &s, &err);
        if (rc != -EINVAL || !strstr(err.message, cases[i].needle))
            fail_msg("case %zu (%s): rc %d, message \"%s\", expected \"%s\"", i, cases[i].json, rc,
                     err.message, cases[i].needle);
        assert_non_null(strstr(err.message, "desc.json"));
        buildsrc_free(s);
    }
}

static void test_parse_idedata(void **state)
{
    (void)state;
    struct buildsrc *s;
    struct esp_error err;
    const char *j = "{\"prog_path\": \"C:\\\\p\\\\.pio\\\\build\\\\e\\\\fw.elf\", \"extra\": "
                    "{\"flash_images\": [{\"path\": \"/h/.pio/build/e/bootloader.bin\", "
                    "\"offset\": \"0x1000\"}, {\"path\": \"/h/.pio/build/e/partitions.bin\", "
                    "\"offset\": \"0x8000\"}, {\"path\": \"/pk/boot_app0.bin\", \"offset\": "
                    "\"0xe000\"}], \"application_offset\": \"0x20000\"}}";
    assert_int_equal(parse(buildsrc_parse_idedata, j, &s, &err), 0);
    const struct buildsrc_set *set = &s->sets[0];
    assert_int_equal(set->n_parts, 4);
    assert_int_equal(set->parts[0].role, BUILDSRC_ROLE_BOOTLOADER);
    assert_int_equal(set->parts[1].role, BUILDSRC_ROLE_PARTITION_TABLE);
    assert_int_equal(set->parts[2].role, BUILDSRC_ROLE_OTADATA);
    assert_int_equal(set->parts[3].role, BUILDSRC_ROLE_APP);
    assert_int_equal(set->parts[3].offset, 0x20000);
    assert_null(set->chip); /* idedata.json names no chip: the images do */
    /* prog_path's last component is taken whatever the separator; "\\" is not one here, so
     * the app is the whole name with .elf replaced. */
    assert_non_null(strstr(set->parts[3].path, ".bin"));
    buildsrc_free(s);
}

static void test_parse_web_tools(void **state)
{
    (void)state;
    struct buildsrc *s;
    struct esp_error err;
    const char *j = "{\"name\": \"My Firmware!\", \"version\": \"1.0 beta\", \"builds\": ["
                    "{\"chipFamily\": \"ESP32-C3\", \"parts\": [{\"path\": \"c3.bin\", "
                    "\"offset\": 0}]},"
                    "{\"chipFamily\": \"ESP8266\", \"parts\": [{\"path\": \"e.bin\", \"offset\": "
                    "\"0x0\"}]}]}";
    assert_int_equal(parse(buildsrc_parse_web_tools, j, &s, &err), 0);
    assert_int_equal(s->n_sets, 2);
    assert_ptr_equal(s->sets[0].chip, esp_chip_get(ESP_CHIP_ESP32C3));
    assert_string_equal(s->sets[0].label, "ESP32-C3");
    assert_ptr_equal(s->sets[1].chip, esp_chip_get(ESP_CHIP_ESP8266));
    assert_string_equal(s->name, "My-Firmware");
    assert_string_equal(s->version, "1.0-beta");
    assert_ptr_equal(buildsrc_pick(s, esp_chip_get(ESP_CHIP_ESP8266), NULL), &s->sets[1]);
    assert_null(buildsrc_pick(s, esp_chip_get(ESP_CHIP_ESP32), &err));
    expect_msg(&err, "ESP32-C3, ESP8266");
    buildsrc_free(s);
}

static void test_safe_name(void **state)
{
    (void)state;
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"hello_world", "hello_world"},
        {"..x", "x"},
        {"a..b", "a.b"},
        {"a/b c", "a-b-c"},
        {"-x-", "-x"},
        {"v5.0-dirty", "v5.0-dirty"},
        {"\xc3\xa9t\xc3\xa9", "-t"},
        {"...", ""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char out[16];
        buildsrc_safe_name(cases[i].in, out, sizeof(out));
        if (strcmp(out, cases[i].out) != 0)
            fail_msg("safe_name(%s) = \"%s\", expected \"%s\"", cases[i].in, out, cases[i].out);
    }
    char out[8];
    buildsrc_safe_name("abcdefghijkl", out, sizeof(out));
    assert_string_equal(out, "abcdefg");
}

/* ---- whole trees from the real images ------------------------------------------------- */

static void test_idf_tree(void **state)
{
    (void)state;
    if (!have_fixtures())
        skip();
    idf_tree("proj/build", "4MB", "0x10000", "hello.bin", "ram_helloworld/helloworld-esp32.bin",
             "false");
    put_str("proj/build/project_description.json",
            "{\"project_name\": \"hello world\", \"project_version\": \"1.2\"}");
    struct buildsrc *s = load_ok("proj"); /* the project directory: its build/ is found */
    assert_int_equal(s->format, BUILDSRC_ESP_IDF);
    assert_string_equal(s->descriptor, "flasher_args.json");
    assert_string_equal(s->name, "hello-world");
    assert_string_equal(s->version, "1.2");
    const struct buildsrc_set *set = &s->sets[0];
    assert_ptr_equal(set->chip, esp_chip_get(ESP_CHIP_ESP32));
    assert_int_equal(set->n_parts, 3);
    assert_int_equal(set->parts[0].offset, 0x1000); /* sorted by offset */
    assert_string_equal(set->parts[0].path, "bootloader/bootloader.bin");
    assert_int_equal(set->parts[0].len, 7888);
    assert_int_equal(set->parts[2].offset, 0x10000);
    /* The header says DIO 40m 2MB (README), flasher_args.json 4MB: noted, set applied. */
    assert_int_equal(set->header_mode, 2);
    assert_int_equal(set->header_size, 2u << 20);
    assert_int_equal(set->header_freq_mhz, 40);
    assert_int_equal(set->flash_size, 4u << 20);
    assert_int_equal(s->n_notes, 1);
    assert_non_null(strstr(s->notes[0], "flash size 4MB"));
    assert_non_null(strstr(s->notes[0], "bootloader/bootloader.bin says 2MB"));
    json_object *j = buildsrc_to_json(s);
    assert_string_equal(json_object_to_json_string_ext(j, JSON_C_TO_STRING_PLAIN),
                        json_object_to_json_string_ext(j, JSON_C_TO_STRING_PLAIN));
    json_object *v;
    assert_true(json_object_object_get_ex(j, "format", &v));
    assert_string_equal(json_object_get_string(v), "esp-idf");
    json_object_put(j);
    buildsrc_free(s);
}

static void test_idf_refusals(void **state)
{
    (void)state;
    if (!have_fixtures())
        skip();
    struct esp_error err;
    /* A wrong chip family: the ESP32-S2 app in an ESP32 build. */
    idf_tree("chip", "2MB", "0x10000", "blink.bin", "esp_idf_blink_esp32s2.bin", "false");
    assert_int_equal(load_err("chip", &err), -EINVAL);
    expect_msg(&err, "blink.bin: image is for ESP32-S2 while flasher_args.json is for ESP32");
    /* A missing file. */
    idf_tree("miss", "2MB", "0x10000", "hello.bin", NULL, "false");
    assert_int_equal(load_err("miss", &err), -EINVAL);
    expect_msg(&err, "flasher_args.json names hello.bin at 0x10000, but that file is missing");
    /* Overlapping offsets. */
    idf_tree("ovl", "2MB", "0x2000", "hello.bin", "ram_helloworld/helloworld-esp32.bin", "false");
    assert_int_equal(load_err("ovl", &err), -EINVAL);
    expect_msg(&err, "hello.bin (0x2000-0x207f) overlaps bootloader/bootloader.bin");
    /* An app where the partition table has no app partition. */
    idf_tree("nopart", "2MB", "0x20000", "hello.bin", "ram_helloworld/helloworld-esp32.bin",
             "false");
    assert_int_equal(load_err("nopart", &err), -EINVAL);
    expect_msg(&err, "hello.bin at 0x20000: partition_table/partition-table.bin has no app "
                     "partition there");
    /* A path leaving the build directory. */
    idf_tree("escape", "2MB", "0x10000", "../../etc/hello.bin", NULL, "false");
    assert_int_equal(load_err("escape", &err), -EINVAL);
    expect_msg(&err, "leaves the build directory");
    /* Encrypted parts: the station does not encrypt. */
    idf_tree("enc", "2MB", "0x10000", "hello.bin", "ram_helloworld/helloworld-esp32.bin", "true");
    assert_int_equal(load_err("enc", &err), -ENOTSUP);
    expect_msg(&err, "hello.bin (0x10000) is marked \"encrypted\"");
    /* Past the flash the build is for. */
    idf_tree("big", "1MB", "0x10000", "hello.bin", "ram_helloworld/helloworld-esp32.bin", "false");
    put_str("big/data.bin", "x");
    char json[2048];
    snprintf(json, sizeof(json), idf_json, "1MB", "0x100000", "data.bin", "0x10000", "hello.bin",
             "false", "esp32");
    put_str("big/flasher_args.json", json);
    assert_int_equal(load_err("big", &err), -EINVAL);
    /* Nothing to recognise. */
    put_str("empty/readme.txt", "x");
    assert_int_equal(load_err("empty", &err), -ENOTSUP);
    expect_msg(&err, "no build recognised");
    assert_int_equal(load_err("nonexistent", &err), -ENOENT);
}

static void test_pio_trees(void **state)
{
    (void)state;
    if (!have_fixtures())
        skip();
    /* With idedata.json (absolute paths of the build machine): the files next to it. */
    put_fix("p/.pio/build/c3/bootloader.bin", "bootloader_esp32c3.bin");
    put_fix("p/.pio/build/c3/partitions.bin", "partitions_singleapp.bin");
    put_fix("p/.pio/build/c3/firmware.bin", "ram_helloworld/helloworld-esp32c3.bin");
    put_str("p/.pio/build/c3/idedata.json",
            "{\"prog_path\": \"/home/u/p/.pio/build/c3/firmware.elf\", \"extra\": "
            "{\"flash_images\": [{\"path\": \"/home/u/p/.pio/build/c3/bootloader.bin\", "
            "\"offset\": \"0x0\"}, {\"path\": \"/home/u/p/.pio/build/c3/partitions.bin\", "
            "\"offset\": \"0x8000\"}], \"application_offset\": \"0x10000\"}}");
    struct buildsrc *s = load_ok("p");
    assert_int_equal(s->format, BUILDSRC_PLATFORMIO);
    assert_string_equal(s->name, "c3");
    assert_ptr_equal(s->sets[0].chip, esp_chip_get(ESP_CHIP_ESP32C3));
    assert_string_equal(s->sets[0].parts[0].path, "bootloader.bin");
    assert_int_equal(s->sets[0].flash_mode, -1); /* keep: the header's */
    assert_int_equal(s->n_notes, 0);
    assert_int_equal(strncmp(s->version, "build-", 6), 0);
    buildsrc_free(s);

    /* boot_app0.bin named by idedata.json but not copied: the error says where it is. */
    put_str("q/idedata.json", "{\"extra\": {\"flash_images\": [{\"path\": "
                              "\"/pk/tools/partitions/boot_app0.bin\", \"offset\": \"0xe000\"}]}}");
    put_fix("q/firmware.bin", "ram_helloworld/helloworld-esp32.bin");
    struct esp_error err;
    assert_int_equal(load_err("q", &err), -EINVAL);
    expect_msg(&err, "boot_app0.bin at 0xe000, but that file is missing");
    assert_non_null(strstr(err.advice, "framework"));

    /* Without idedata.json: the usual offsets, stated. */
    put_fix("n/bootloader.bin", "bootloader_esp32.bin");
    put_fix("n/partitions.bin", "partitions_singleapp.bin");
    put_fix("n/firmware.bin", "ram_helloworld/helloworld-esp32.bin");
    s = load_ok("n");
    assert_null(s->descriptor);
    assert_int_equal(s->sets[0].parts[0].offset, 0x1000);
    assert_int_equal(s->sets[0].parts[2].offset, 0x10000);
    assert_int_equal(s->n_notes, 1);
    assert_non_null(strstr(s->notes[0], "usual ESP32 layout"));
    buildsrc_free(s);

    /* Two environments: which one is unclear. */
    put_fix("two/.pio/build/a/firmware.bin", "ram_helloworld/helloworld-esp32.bin");
    put_fix("two/.pio/build/b/firmware.bin", "ram_helloworld/helloworld-esp32.bin");
    assert_int_equal(load_err("two", &err), -EINVAL);
    expect_msg(&err, "2 PlatformIO environments");

    /* Files of two chips. */
    put_fix("mix/bootloader.bin", "bootloader_esp32.bin");
    put_fix("mix/firmware.bin", "ram_helloworld/helloworld-esp32c3.bin");
    assert_int_equal(load_err("mix", &err), -EINVAL);
    expect_msg(&err, "firmware.bin: image is for ESP32-C3 while bootloader.bin is for ESP32");
}

static void test_arduino_trees(void **state)
{
    (void)state;
    if (!have_fixtures())
        skip();
    put_fix("a/blink.ino.bootloader.bin", "bootloader_esp32.bin");
    put_fix("a/blink.ino.partitions.bin", "partitions_singleapp.bin");
    put_fix("a/blink.ino.bin", "ram_helloworld/helloworld-esp32.bin");
    uint8_t app0[8192];
    memset(app0, 0xFF, sizeof(app0));
    put("a/boot_app0.bin", app0, sizeof(app0));
    put_merged("a/blink.ino.merged.bin", "bootloader_esp32.bin", 0x1000,
               "ram_helloworld/helloworld-esp32.bin");
    struct buildsrc *s = load_ok("a"); /* both exported: the separate files */
    assert_int_equal(s->format, BUILDSRC_ARDUINO);
    assert_string_equal(s->name, "blink");
    assert_int_equal(s->sets[0].n_parts, 4);
    assert_int_equal(s->sets[0].parts[2].offset, 0xE000);
    assert_int_equal(s->sets[0].parts[2].role, BUILDSRC_ROLE_OTADATA);
    buildsrc_free(s);

    s = load_ok("a/blink.ino.merged.bin"); /* the merged one, named */
    assert_int_equal(s->sets[0].n_parts, 1);
    assert_int_equal(s->sets[0].parts[0].role, BUILDSRC_ROLE_MERGED);
    assert_int_equal(s->sets[0].parts[0].offset, 0);
    assert_ptr_equal(s->sets[0].chip, esp_chip_get(ESP_CHIP_ESP32));
    assert_int_equal(s->sets[0].header_size, 2u << 20);
    buildsrc_free(s);

    put_fix("b/x.ino.bin", "ram_helloworld/helloworld-esp32.bin");
    put_fix("b/y.ino.bin", "ram_helloworld/helloworld-esp32.bin");
    struct esp_error err;
    assert_int_equal(load_err("b", &err), -EINVAL);
    expect_msg(&err, "2 sketches");
}

static void test_web_tools_tree(void **state)
{
    (void)state;
    if (!have_fixtures())
        skip();
    put_fix("w/esp32/boot.bin", "bootloader_esp32.bin");
    put_fix("w/esp32/app.bin", "ram_helloworld/helloworld-esp32.bin");
    put_fix("w/pt.bin", "partitions_singleapp.bin");
    put_merged("w/c3/factory.bin", "bootloader_esp32c3.bin", 0,
               "ram_helloworld/helloworld-esp32c3.bin");
    put_str("w/manifest.json",
            "{\"name\": \"fw\", \"builds\": ["
            "{\"chipFamily\": \"ESP32\", \"parts\": [{\"path\": \"esp32/boot.bin\", \"offset\": "
            "4096}, {\"path\": \"pt.bin\", \"offset\": 32768}, {\"path\": \"esp32/app.bin\", "
            "\"offset\": 65536}]},"
            "{\"chipFamily\": \"ESP32-C3\", \"parts\": [{\"path\": \"c3/factory.bin\", "
            "\"offset\": 0}]}]}");
    struct buildsrc *s = load_ok("w");
    assert_int_equal(s->format, BUILDSRC_WEB_TOOLS);
    assert_int_equal(s->n_sets, 2);
    assert_int_equal(s->sets[0].parts[0].role, BUILDSRC_ROLE_BOOTLOADER);
    assert_int_equal(s->sets[0].parts[1].role, BUILDSRC_ROLE_PARTITION_TABLE);
    assert_int_equal(s->sets[0].parts[2].role, BUILDSRC_ROLE_APP);
    assert_int_equal(s->sets[1].parts[0].role, BUILDSRC_ROLE_MERGED);
    assert_ptr_equal(buildsrc_pick(s, esp_chip_get(ESP_CHIP_ESP32C3), NULL), &s->sets[1]);
    buildsrc_free(s);

    /* The station's own manifest.json is not a build. */
    put_str("own/manifest.json", "{\"name\": \"x\", \"regions\": []}");
    struct esp_error err;
    assert_int_equal(load_err("own", &err), -ENOTSUP);
    expect_msg(&err, "espstation firmware set");
}

static void test_single_images(void **state)
{
    (void)state;
    if (!have_fixtures())
        skip();
    /* The ESP8266's single image at 0x0. */
    put_fix("e/sleep.bin", "esp8266_deepsleep.bin");
    struct buildsrc *s = load_ok("e");
    assert_int_equal(s->format, BUILDSRC_MERGED);
    assert_ptr_equal(s->sets[0].chip, esp_chip_get(ESP_CHIP_ESP8266));
    assert_int_equal(s->sets[0].parts[0].role, BUILDSRC_ROLE_APP);
    assert_int_equal(s->sets[0].header_size, 4u << 20);
    buildsrc_free(s);
    /* A C3 factory image. */
    put_merged("f/factory.bin", "bootloader_esp32c3.bin", 0,
               "ram_helloworld/helloworld-esp32c3.bin");
    s = load_ok("f/factory.bin");
    assert_ptr_equal(s->sets[0].chip, esp_chip_get(ESP_CHIP_ESP32C3));
    assert_string_equal(s->name, "factory");
    buildsrc_free(s);
    /* A merged image whose app is for another chip. */
    put_merged("g/mixed.bin", "bootloader_esp32.bin", 0x1000,
               "ram_helloworld/helloworld-esp32c3.bin");
    struct esp_error err;
    assert_int_equal(load_err("g/mixed.bin", &err), -EINVAL);
    expect_msg(&err, "mixed.bin (app at 0x10000): image is for ESP32-C3");
    /* An app alone: its offset is unknown. */
    put_fix("h/app.bin", "ram_helloworld/helloworld-esp32.bin");
    assert_int_equal(load_err("h/app.bin", &err), -EINVAL);
    expect_msg(&err, "app.bin: not a merged image");
    assert_int_equal(load_err("h", &err), -ENOTSUP); /* found in a directory: a guess */
}

/* The minimum chip revision comes from the images (and max_rev_full 0 means none). */
static void test_min_revision(void **state)
{
    (void)state;
    if (!have_fixtures())
        skip();
    size_t n;
    uint8_t *d = read_fix("ram_helloworld/helloworld-esp32c3.bin", &n);
    struct esp_image_info info;
    assert_int_equal(esp_image_parse(d, n, false, &info, NULL), 0);
    assert_true(info.hash_appended);
    d[8 + 7] = 3; /* min_rev_full v0.3 */
    unsigned int dl = 32;
    assert_int_equal(EVP_Digest(d, info.data_length, d + info.data_length, &dl, EVP_sha256(), NULL),
                     1);
    put("r/firmware.bin", d, n);
    put_fix("r/bootloader.bin", "bootloader_esp32c3.bin");
    free(d);
    struct buildsrc *s = load_ok("r");
    assert_int_equal(s->sets[0].min_rev_full, 3);
    json_object *j = buildsrc_set_to_json(&s->sets[0]), *v;
    assert_true(json_object_object_get_ex(j, "min_chip_revision", &v));
    assert_string_equal(json_object_get_string(v), "v0.3");
    json_object_put(j);
    buildsrc_free(s);
}

int main(void)
{
    find_fixtures();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_flasher_args),
        cmocka_unit_test(test_parse_esptool_args),
        cmocka_unit_test(test_parse_refusals),
        cmocka_unit_test(test_parse_idedata),
        cmocka_unit_test(test_parse_web_tools),
        cmocka_unit_test(test_safe_name),
        cmocka_unit_test_setup_teardown(test_idf_tree, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_idf_refusals, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_pio_trees, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_arduino_trees, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_web_tools_tree, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_single_images, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_min_revision, setup_dir, teardown_dir),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    if (rc == 0 && fixtures_skipped) {
        print_message("SKIP: the cases on real ESP images did not run (see above)\n");
        return 77;
    }
    return rc;
}
