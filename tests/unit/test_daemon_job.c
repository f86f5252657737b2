/*
 * test_daemon_job: the "what will be written" MD5 the skip check relies on,
 * proved against the real engine and the virtual board: for an ESP32
 * bootloader whose header flash parameters the engine patches (SHA-256
 * re-computed), an ESP8266 image at 0 (patched, no digest) and a data region
 * whose length is not a multiple of 4, job_region_md5() must equal both the
 * chip's flash MD5 after esp_loader_flash() and the MD5 of the bytes in the
 * sim's flash.bin. Also the profile matching rule (station_choose_firmware)
 * on configs parsed from text.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "config.h"
#include "esp_image.h"
#include "esp_loader.h"
#include "job.h"
#include "station.h"

/* ---- a small valid image ------------------------------------------------------ */

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

/* One segment of seg_len bytes; ESP32 family: extended header + SHA-256. Returns length. */
static size_t make_image(uint8_t *buf, size_t cap, bool esp8266, size_t seg_len)
{
    size_t pos = 0;
    memset(buf, 0, cap);
    buf[0] = 0xE9;
    buf[1] = 1;
    buf[2] = 2;    /* DIO */
    buf[3] = 0x20; /* 4MB (ESP32 code) / 40 MHz */
    put32(buf + 4, 0x40080000);
    pos = 8;
    if (!esp8266) {
        buf[8] = 0xEE;
        buf[12] = 0; /* chip id ESP32 */
        buf[18] = 0xFF;
        buf[19] = 0xFF; /* max rev */
        buf[23] = 1;    /* hash appended */
        pos = 24;
    }
    put32(buf + pos, 0x40080000);
    put32(buf + pos + 4, (uint32_t)seg_len);
    pos += 8;
    uint8_t cks = 0xEF;
    for (size_t i = 0; i < seg_len; i++) {
        buf[pos + i] = (uint8_t)(i * 7 + 3);
        cks ^= buf[pos + i];
    }
    pos += seg_len;
    pos += 15 - pos % 16;
    buf[pos++] = cks;
    if (!esp8266) {
        unsigned int n = 32;
        EVP_Digest(buf, pos, buf + pos, &n, EVP_sha256(), NULL);
        pos += 32;
    }
    assert_true(pos <= cap);
    return pos;
}

/* ---- sim ------------------------------------------------------------------------------ */

struct sim {
    char dir[64];
    char tty[96];
    pid_t pid;
};

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static bool start_sim(struct sim *s, const char *chip)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n <= 0)
        return false;
    exe[n] = '\0';
    char simbin[PATH_MAX + 16];
    snprintf(simbin, sizeof(simbin), "%s/esp_sim", dirname(exe));
    if (access(simbin, X_OK) != 0)
        return false;
    snprintf(s->dir, sizeof(s->dir), "/tmp/test_daemon_job.XXXXXX");
    assert_non_null(mkdtemp(s->dir));
    snprintf(s->tty, sizeof(s->tty), "%s/tty", s->dir);
    s->pid = fork();
    assert_true(s->pid >= 0);
    if (s->pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, 1);
        dup2(devnull, 2);
        execl(simbin, "esp_sim", "--chip", chip, "--dir", s->dir, "--link-speed", "0", "--stub-dir",
              TEST_STUB_DIR, (char *)NULL);
        _exit(127);
    }
    char ready[128];
    snprintf(ready, sizeof(ready), "%s/ready", s->dir);
    for (int i = 0; i < 200; i++) {
        struct stat sb;
        if (stat(ready, &sb) == 0 && sb.st_size > 0)
            return true;
        struct timespec ts = {0, 25 * 1000000};
        nanosleep(&ts, NULL);
    }
    fail_msg("esp_sim not ready");
    return false;
}

static void stop_sim(struct sim *s)
{
    kill(s->pid, SIGTERM);
    waitpid(s->pid, NULL, 0);
    nftw(s->dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

static void md5_of_flash(const struct sim *s, uint32_t off, uint32_t len, uint8_t out[16])
{
    char path[128];
    snprintf(path, sizeof(path), "%s/flash.bin", s->dir);
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    uint8_t *buf = malloc(len);
    assert_non_null(buf);
    assert_int_equal(pread(fd, buf, len, off), (ssize_t)len);
    close(fd);
    unsigned int n = 16;
    EVP_Digest(buf, len, out, &n, EVP_md5(), NULL);
    free(buf);
}

static void run_engine_case(const char *chip, bool esp8266, uint32_t img_off)
{
    struct sim s;
    if (!start_sim(&s, chip)) {
        skip();
        return;
    }
    static uint8_t img[8192];
    size_t img_len = make_image(img, sizeof(img), esp8266, 3000);
    static uint8_t data[1001]; /* not a multiple of 4: padded with 0xFF */
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (uint8_t)(i ^ 0x5A);
    struct esp_region regs[2] = {
        {.offset = img_off, .data = img, .len = img_len, .name = "boot"},
        {.offset = 0x8000, .data = data, .len = sizeof(data), .name = "data"},
    };
    struct esp_flash_opts opts;
    esp_flash_opts_init(&opts);
    opts.flash_mode = 0;                    /* QIO: differs from the image's DIO */
    opts.flash_size_code = esp8266 ? 3 : 2; /* 2MB (ESP8266) / 4MB */
    opts.flash_freq_code = 0xF;             /* 80 MHz */

    struct transport *t = NULL;
    struct esp_error err;
    esp_error_clear(&err);
    assert_int_equal(transport_open(s.tty, 115200, &t, &err), 0);
    struct esp_loader_config cfg;
    esp_loader_config_init(&cfg);
    cfg.stub_dir = TEST_STUB_DIR;
    struct esp_loader *l = esp_loader_new(t, &cfg);
    assert_non_null(l);
    if (esp_loader_connect(l, &err) < 0 || esp_loader_identify(l, &err) < 0 ||
        esp_loader_start(l, &err) < 0)
        fail_msg("engine: %s", err.message);
    const struct esp_chip_info *ci = esp_loader_info(l);
    assert_int_equal(esp_loader_flash(l, regs, 2, &opts, &err), 0);

    for (int i = 0; i < 2; i++) {
        uint8_t want[16], chipmd5[16], filemd5[16];
        uint32_t len4 = 0;
        assert_int_equal(job_region_md5(ci->chip, false, &regs[i], &opts, want, &len4), 0);
        assert_int_equal(len4, (regs[i].len + 3) / 4 * 4);
        int rc = esp_loader_flash_md5(l, regs[i].offset, len4, chipmd5, &err);
        assert_int_equal(rc, 0);
        md5_of_flash(&s, regs[i].offset, len4, filemd5);
        assert_memory_equal(want, chipmd5, 16);
        assert_memory_equal(want, filemd5, 16);
    }
    /* The patch matters: without it (or with secure boot on) the MD5 is the file's. */
    uint8_t plain[16], patched[16], secure[16];
    uint32_t len4;
    struct esp_flash_opts keep = opts;
    keep.flash_mode = keep.flash_size_code = keep.flash_freq_code = -1;
    job_region_md5(ci->chip, false, &regs[0], &keep, plain, &len4);
    job_region_md5(ci->chip, false, &regs[0], &opts, patched, &len4);
    job_region_md5(ci->chip, true, &regs[0], &opts, secure, &len4);
    assert_memory_not_equal(plain, patched, 16);
    assert_memory_equal(plain, secure, 16);
    /* Not at the bootloader offset: never patched. */
    struct esp_region moved = regs[0];
    moved.offset = 0x20000;
    uint8_t mv[16];
    job_region_md5(ci->chip, false, &moved, &opts, mv, &len4);
    assert_memory_equal(mv, plain, 16);

    esp_loader_free(l);
    transport_close(t);
    stop_sim(&s);
}

static void test_md5_esp32(void **state)
{
    (void)state;
    run_engine_case("esp32", false, 0x1000);
}

static void test_md5_esp8266(void **state)
{
    (void)state;
    run_engine_case("esp8266", true, 0x0);
}

/* ---- profile matching ------------------------------------------------------------------ */

static struct config *cfg_from(const char *json)
{
    struct config *c = NULL;
    char err[256];
    if (config_load_string(json, strlen(json), "test", &c, err, sizeof(err)) < 0)
        fail_msg("config: %s", err);
    return c;
}

static void test_choose(void **state)
{
    (void)state;
    struct config *c = cfg_from(
        "{\"profiles\": {\"line1\": {\"firmware\": {\"esp32\": \"a@1\", \"ESP32-C3\": \"c3@2\"}},"
        " \"line2\": {\"firmware\": {\"esp8266\": \"e@3\"}}}, \"active_profile\": \"line1\"}");
    const struct config_firmware_ref *ref;
    char msg[256], adv[256];
    assert_int_equal(station_choose_firmware(c, esp_chip_get(ESP_CHIP_ESP32), 0, &ref, msg,
                                             sizeof(msg), adv, sizeof(adv)),
                     1);
    assert_string_equal(ref->name, "a");
    assert_string_equal(ref->version, "1");
    assert_int_equal(station_choose_firmware(c, esp_chip_get(ESP_CHIP_ESP32C3), 0, &ref, msg,
                                             sizeof(msg), adv, sizeof(adv)),
                     1);
    assert_string_equal(ref->name, "c3");
    /* a family the active profile does not name (line2 has it; it is not active) */
    assert_int_equal(station_choose_firmware(c, esp_chip_get(ESP_CHIP_ESP8266), 0, &ref, msg,
                                             sizeof(msg), adv, sizeof(adv)),
                     0);
    assert_null(ref);
    assert_string_equal(msg, "no firmware configured for ESP8266 in profile line1");
    assert_string_equal(adv, "add \"esp8266\": \"name@version\" to profiles.line1.firmware in the "
                             "config");
    assert_int_equal(station_choose_firmware(c, esp_chip_get(ESP_CHIP_ESP32S3), 0, &ref, msg,
                                             sizeof(msg), adv, sizeof(adv)),
                     0);
    assert_string_equal(msg, "no firmware configured for ESP32-S3 in profile line1");
    assert_int_equal(
        station_choose_firmware(c, NULL, 0xdeadbeef, &ref, msg, sizeof(msg), adv, sizeof(adv)),
        -ENOTSUP);
    assert_string_equal(msg, "unknown chip (magic 0xDEADBEEF)");
    config_free(c);

    /* two profiles, none active: identify and record only */
    c = cfg_from("{\"profiles\": {\"a\": {}, \"b\": {}}}");
    assert_int_equal(station_choose_firmware(c, esp_chip_get(ESP_CHIP_ESP32), 0, &ref, msg,
                                             sizeof(msg), adv, sizeof(adv)),
                     0);
    assert_string_equal(msg, "no active profile: ESP32 identified and recorded, not flashed (2 "
                             "profile(s) defined, none chosen)");
    assert_non_null(strstr(adv, "PUT /api/v1/profiles/active"));
    assert_non_null(strstr(adv, "(profiles: a, b)"));
    config_free(c);

    /* exactly one profile: it is the active one */
    c = cfg_from("{\"profiles\": {\"only\": {\"firmware\": {\"esp32s3\": \"s@1\"}}}}");
    assert_int_equal(station_choose_firmware(c, esp_chip_get(ESP_CHIP_ESP32S3), 0, &ref, msg,
                                             sizeof(msg), adv, sizeof(adv)),
                     1);
    assert_string_equal(ref->name, "s");
    config_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_md5_esp32),
        cmocka_unit_test(test_md5_esp8266),
        cmocka_unit_test(test_choose),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
