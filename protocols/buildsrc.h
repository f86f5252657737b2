/*
 * buildsrc: recognises what a build tool wrote and turns it into firmware sets
 * (flash offset, file, role) with the chip family and flash settings.
 *
 * Recognised, by the files present (never by a flag the user must give):
 *   esp-idf        a build/ directory or its flasher_args.json: flash_files (offset -> path
 *                  relative to the build dir), flash_settings, extra_esptool_args.chip, and
 *                  the bootloader / app / partition-table / otadata entries naming the roles
 *   platformio     .pio/build/<env>/ (firmware.bin, bootloader.bin, partitions.bin): offsets
 *                  from idedata.json (extra.flash_images, extra.application_offset); without
 *                  it the family's usual offsets, stated in the notes
 *   arduino        <sketch>.ino.bin, .ino.bootloader.bin, .ino.partitions.bin (boot_app0.bin
 *                  at 0xe000 where present), or the single <sketch>.ino.merged.bin at 0x0
 *   esp-web-tools  manifest.json with builds[] (chipFamily, parts[] {path, offset}): one set
 *                  per build
 *   merged-image   one file at 0x0 holding bootloader, partition table and app (or, on the
 *                  ESP8266, one image at 0x0)
 *
 * The chip family, the regions and the flash settings come from the files; every ESP image
 * is parsed and checked against the set (chip id, minimum revision, flash mode/size/freq in
 * its header), a partition table must be one, offsets must not overlap. Every error names
 * the file (path as the source names it) and says what to do.
 *
 * Paths in descriptors are untrusted: a relative path may not contain "..", an absolute one
 * (PlatformIO writes the build machine's) is looked up by its base name in the source
 * directory; nothing outside the source directory is ever read.
 *
 * Pure parsing and file reading: no globals, no logging, no knowledge of the catalog, the
 * daemon or HTTP. The JSON parsers are exposed for the fuzz target and unit tests.
 */
#ifndef BUILDSRC_H
#define BUILDSRC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#include "esp_chip.h"
#include "esp_error.h"
#include "esp_image.h"
#include "esp_loader.h"

#define BUILDSRC_MAX_PARTS 32
#define BUILDSRC_MAX_SETS 16
#define BUILDSRC_MAX_FILE_BYTES (128u * 1024 * 1024)
#define BUILDSRC_MAX_JSON_BYTES (4u * 1024 * 1024)
#define BUILDSRC_MAX_NOTES 16

enum buildsrc_format {
    BUILDSRC_ESP_IDF = 0,
    BUILDSRC_PLATFORMIO,
    BUILDSRC_ARDUINO,
    BUILDSRC_WEB_TOOLS,
    BUILDSRC_MERGED,
};
const char *buildsrc_format_to_string(enum buildsrc_format f); /* "esp-idf", ... */

enum buildsrc_role {
    BUILDSRC_ROLE_BOOTLOADER = 0,
    BUILDSRC_ROLE_PARTITION_TABLE,
    BUILDSRC_ROLE_OTADATA,
    BUILDSRC_ROLE_APP,
    BUILDSRC_ROLE_DATA,
    BUILDSRC_ROLE_MERGED, /* bootloader + partition table + app in one file at 0x0 */
};
const char *buildsrc_role_to_string(enum buildsrc_role r); /* "bootloader", "partition-table" */

struct buildsrc_part {
    uint32_t offset;
    enum buildsrc_role role;
    char *path;     /* as the descriptor names it (messages, results); owned */
    char *resolved; /* the file read, below the source directory; owned, NULL before loading */
    bool encrypted; /* esp-idf "encrypted": "true" */
    uint8_t *data;  /* owned */
    size_t len;
    bool is_image; /* an ESP image was found (whole file, or inside a merged image) */
    struct esp_image_info image;
};

struct buildsrc_set {
    const struct esp_chip_desc *chip; /* NULL until known */
    const char *chip_from;            /* who named the chip: the descriptor or a file (borrowed) */
    char *label;                      /* web tools: the chipFamily as written; owned, may be NULL */
    /* Flash settings to apply (the header of the bootloader is patched when written):
     * -1 / 0 / 0 keep what the bootloader header says. */
    int flash_mode;
    uint32_t flash_size;
    bool flash_size_detect; /* "detect": the flasher reads the chip's size */
    unsigned flash_freq_mhz;
    /* What the bootloader's (or the single image's) header holds: -1 / 0 / 0 unknown. */
    int header_mode;
    uint32_t header_size;
    unsigned header_freq_mhz;
    int min_rev_full; /* highest minimum chip revision of the images (major*100+minor), 0 none */
    struct buildsrc_part parts[BUILDSRC_MAX_PARTS];
    size_t n_parts;
    char app_name[33];    /* from the app description (esp_app_desc_t), "" unknown */
    char app_version[33]; /* same */
};

struct buildsrc {
    enum buildsrc_format format;
    char *dir;        /* the source directory (paths are relative to it); owned */
    char *descriptor; /* the file that described it ("flasher_args.json"), or NULL; owned */
    char *name;       /* suggested set name (safe characters), owned */
    char *version;    /* suggested version (safe characters), owned */
    struct buildsrc_set sets[BUILDSRC_MAX_SETS];
    size_t n_sets;
    char *notes[BUILDSRC_MAX_NOTES]; /* "no idedata.json: PlatformIO's usual ESP32 offsets" */
    size_t n_notes;
    /* ESP-IDF extra_esptool_args besides chip (idf.py flash hands them to esptool): how the
     * board is reset into the loader and left, and whether the flasher stub runs. has_*
     * false: the descriptor does not say (the flasher's defaults apply). */
    bool has_before, has_after, has_stub;
    enum esp_before before; /* default-reset, usb-reset, no-reset, no-reset-no-sync */
    enum esp_after after;   /* hard-reset, soft-reset, no-reset, no-reset-stub */
    bool stub;
};

/*
 * Recognises the build at path (a directory or one of the files above), reads every file
 * it names and checks the sets. Returns 0 and *out (owned, buildsrc_free); -ENOENT when
 * path does not exist; -ENOTSUP when nothing recognisable is there; -EINVAL for a
 * recognised source with a problem (bad descriptor, missing file, wrong chip, overlap,
 * bad image); -ENOMEM/-EIO. err (stage PREPARE) names the file and what to do.
 */
int buildsrc_load(const char *path, struct buildsrc **out, struct esp_error *err);
void buildsrc_free(struct buildsrc *src); /* NULL allowed */

/*
 * Set of src for a connected chip: the only set, or the web-tools build whose chip family
 * is chip. NULL (err set) when there is none.
 */
const struct buildsrc_set *buildsrc_pick(const struct buildsrc *src,
                                         const struct esp_chip_desc *chip, struct esp_error *err);

/* JSON description of what was recognised (format, descriptor, sets with regions, notes). */
json_object *buildsrc_to_json(const struct buildsrc *src);
json_object *buildsrc_set_to_json(const struct buildsrc_set *set);

/*
 * A safe name (letters, digits, '.', '_', '-'; at most max-1 characters; never starting with
 * '.', never containing "..") made from s: other characters become '-'. "" when nothing is left.
 */
void buildsrc_safe_name(const char *s, char *out, size_t max);

/* ---- the descriptor parsers (no file access; exposed for tests and fuzzing) ---------------- */

/*
 * Each fills src (already zeroed, format set by the parser) with the parts (offset, role,
 * path, encrypted) and what the descriptor says about the chip and the flash settings;
 * data is not loaded. what names the descriptor in messages. Returns 0, -EINVAL (err says
 * which key), -ENOMEM.
 */
int buildsrc_parse_flasher_args(const char *json, size_t len, const char *what,
                                struct buildsrc *src, struct esp_error *err);
int buildsrc_parse_idedata(const char *json, size_t len, const char *what, struct buildsrc *src,
                           struct esp_error *err);
int buildsrc_parse_web_tools(const char *json, size_t len, const char *what, struct buildsrc *src,
                             struct esp_error *err);

/*
 * Checks the loaded parts of every set (images, chip, overlaps, partition table, settings)
 * and fills chip, header settings, min_rev_full, app_name/app_version. Returns 0 or -EINVAL.
 */
int buildsrc_check(struct buildsrc *src, struct esp_error *err);

#endif
