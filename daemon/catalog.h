/*
 * catalog: the firmware catalog under <data_dir>/firmware/.
 *
 * A firmware set is a manifest (manifest.json: name, version, chip family,
 * flash parameters, regions with offsets, files and kinds) plus its files.
 * On disk, one directory per set:
 *
 *   <data_dir>/firmware/<name>/<version>/manifest.json   the manifest as imported
 *                                        /index.json      sizes, SHA-256, MD5 per region
 *                                        /<file>          the region data, unmodified
 *                                        /<file>.z        zlib stream of <file>, made once
 *                                                         (zopfli, or zlib -9 if smaller)
 *
 * Invariants:
 *  - Only validated sets get in (catalog_validate_*): every problem of a set is
 *    reported at once, each naming the field or region and the problem in words
 *    a technician understands.
 *  - An import is atomic: files are written into <data_dir>/firmware/.import-*,
 *    fsynced, and the directory is renamed into place (renameat2 NOREPLACE, or
 *    EXCHANGE for a replace). A crash leaves at most a dot-directory, which is
 *    never listed and is removed by the next catalog_open().
 *  - Names and versions (and file names) hold letters, digits, '.', '_' and '-'
 *    only, never start with '.', never contain "..": no path can escape the
 *    catalog, and the dot-directories can never collide with a set.
 *  - Loading a set re-hashes every file and compressed copy; on-disk corruption
 *    is an error naming the file, never silently flashed.
 * No globals; a struct catalog holds only its root path, so several threads may
 * each call into it (the file system serialises the renames).
 */
#ifndef ESPSTATION_CATALOG_H
#define ESPSTATION_CATALOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "esp_chip.h"
#include "esp_loader.h"

#define CATALOG_NAME_MAX 64
#define CATALOG_MAX_REGIONS 32
#define CATALOG_MAX_FILE_BYTES (128u * 1024 * 1024)

enum catalog_kind {
    CATALOG_KIND_BOOTLOADER = 0, /* 2nd-stage bootloader: an ESP image at the chip's offset */
    CATALOG_KIND_APP,            /* application: an ESP image */
    CATALOG_KIND_DATA,           /* anything else (partition table, NVS, ...) */
    CATALOG_KIND_FILESYSTEM,     /* a SPIFFS/LittleFS/FAT image: not an ESP image; at most one
                                    per set, on a 4 KiB sector; the network OTA filesystem image */
};

/* Bytes of a flash sector: a filesystem region starts on one. */
#define CATALOG_SECTOR_BYTES 4096u

const char *catalog_kind_to_string(enum catalog_kind kind);

/*
 * ESP8266 NONOS SDK dual-image layout (boot_v1.x, "user1"/"user2"): an app
 * region may name its slot ("slot": "user1" | "user2" in the manifest). A set
 * with slots holds exactly one user1 app at 0x1000 and one user2 app at
 * 0x1000 + the slot size (0x41000, 0x81000 or 0x101000 for 256, 512 or
 * 1024 KiB slots; the size map in the image header must agree), both SDK "V2"
 * images (first bytes EA 04), each at most the slot size minus 20 KiB.
 */
enum catalog_slot {
    CATALOG_SLOT_NONE = 0,
    CATALOG_SLOT_USER1,
    CATALOG_SLOT_USER2,
};

const char *catalog_slot_to_string(enum catalog_slot slot); /* "", "user1", "user2" */

/* Flash address of user1 in the dual-image layout. */
#define CATALOG_USER1_OFFSET 0x1000u

/*
 * ESP8266 gzip-compressed app images (first bytes 1F 8B, Arduino Updater/eboot,
 * PROTOCOL-OTA.md §7) are accepted as kind "app" of ESP8266 sets without a slot:
 * the stream must inflate (at most this many bytes) to a valid ESP8266 image.
 * They are network-OTA images: serial flashing refuses a set holding one (the
 * ROM cannot boot a compressed image).
 */
#define CATALOG_GZIP_MAX_INFLATED (16u * 1024 * 1024)

/* True if s is a safe name/version/file name (see the invariants above). */
bool catalog_name_valid(const char *s);

/* ---- validation reports ------------------------------------------------------------ */

struct catalog_problem {
    bool warning;      /* false: the set is refused; true: imported, but worth a look */
    int region;        /* index into regions[], -1 for the manifest as a whole */
    char message[384]; /* "regions[2] app.bin: image is for ESP32-C3 (chip id 5) but ..." */
};

struct catalog_report {
    struct catalog_problem *items; /* owned; n entries */
    size_t n;
    size_t n_errors;
    size_t n_warnings;
    size_t n_dropped; /* problems not stored (cap reached or out of memory) */
};

void catalog_report_init(struct catalog_report *rep);
void catalog_report_free(struct catalog_report *rep); /* leaves an empty, reusable report */

/* All messages, one per line ("error: ..." / "warning: ..."), into buf. Returns buf. */
char *catalog_report_format(const struct catalog_report *rep, char *buf, size_t len);

/* ---- manifests ---------------------------------------------------------------------- */

struct catalog_manifest_region {
    uint32_t offset;
    char *file;
    enum catalog_kind kind;
    enum catalog_slot slot; /* NONE unless the manifest says "slot" */
};

/*
 * How a build wants the board driven (manifest "esptool_args", ESP-IDF's extra_esptool_args
 * before/after/stub, docs/CONFIG.md): has_* false = the manifest does not say (the station's
 * defaults, or the profile's, apply). before is never ESP_BEFORE_MANUAL.
 */
struct catalog_esptool_args {
    bool has_before, has_after, has_stub;
    enum esp_before before;
    enum esp_after after;
    bool stub;
};

struct catalog_manifest {
    char *name;
    char *version;
    char *description; /* optional, may be NULL */
    enum esp_chip chip;
    int flash_mode;          /* -1 keep, else 0..3 (QIO, QOUT, DIO, DOUT) */
    uint32_t flash_size;     /* bytes; 0 keep */
    int flash_size_code;     /* header nibble for chip; -1 keep */
    unsigned flash_freq_mhz; /* 0 keep */
    int flash_freq_code;     /* header nibble for chip; -1 keep */
    struct catalog_esptool_args esptool_args;
    struct catalog_manifest_region *regions;
    size_t n_regions;
};

/*
 * Parses and checks manifest JSON (len bytes, need not be NUL-terminated):
 * syntax, types, names, chip family, flash parameters, offsets. Every problem
 * goes into rep. Returns 0 and *out (owned, catalog_manifest_free) when there is
 * no error; -EINVAL (and *out NULL) otherwise; -ENOMEM.
 */
int catalog_manifest_parse(const char *json, size_t len, struct catalog_manifest **out,
                           struct catalog_report *rep);
void catalog_manifest_free(struct catalog_manifest *m); /* NULL allowed */

/*
 * Supplies the content of a file of the set. On success returns 0 with *data a
 * malloc'd buffer (ownership passes to the caller) of *len bytes; -ENOENT when
 * there is no such file, another -errno on failure. file is already checked
 * with catalog_name_valid().
 */
typedef int (*catalog_load_fn)(void *ctx, const char *file, uint8_t **data, size_t *len);

/*
 * Full validation of a set: the manifest, then every file (present, non-empty,
 * images valid for the chip, bootloader at the chip's offset, no overlaps, fits
 * the flash size). Returns 0 when rep has no errors (warnings allowed), -EINVAL
 * when it has, -ENOMEM.
 */
int catalog_validate_mem(const char *manifest_json, size_t len, catalog_load_fn load, void *ctx,
                         struct catalog_report *rep);

/* Same for a directory holding manifest.json and the files. */
int catalog_validate_dir(const char *dir, struct catalog_report *rep);

/* ---- the catalog on disk ----------------------------------------------------------- */

struct catalog;

/*
 * Opens (creating if needed) <data_dir>/firmware and removes what interrupted
 * imports and deletes left behind. *out is owned by the caller (catalog_close).
 * Returns 0 or -errno with a message in err.
 */
int catalog_open(const char *data_dir, struct catalog **out, char *err, size_t errlen);
void catalog_close(struct catalog *cat); /* NULL allowed */

/* Root directory of the catalog (<data_dir>/firmware). Borrowed. */
const char *catalog_root(const struct catalog *cat);

/*
 * Validates the set in src_dir (manifest.json + files) and imports it
 * atomically, with per-region SHA-256, MD5 and the compressed copy.
 * Returns 0; -EINVAL when validation failed (problems in rep); -EEXIST when
 * name@version exists and replace is false; -EIO/-ENOSPC/... on storage errors
 * (also described in rep). Warnings are in rep on success too.
 */
int catalog_import(struct catalog *cat, const char *src_dir, bool replace,
                   struct catalog_report *rep);

/* Same from a manifest in memory and a file loader (REST uploads). */
int catalog_import_mem(struct catalog *cat, const char *manifest_json, size_t len,
                       catalog_load_fn load, void *ctx, bool replace, struct catalog_report *rep);

struct catalog_entry {
    char *name;
    char *version;
    enum esp_chip chip;
    size_t n_regions;
    uint64_t total_bytes; /* sum of region sizes */
};

/* All sets, sorted by name then version (strverscmp). *out owned (catalog_entries_free). */
int catalog_list(struct catalog *cat, struct catalog_entry **out, size_t *n);
void catalog_entries_free(struct catalog_entry *entries, size_t n);

/* A loaded region: ready for esp_region (offset, data/size, zdata/zsize). */
struct catalog_region {
    uint32_t offset;
    enum catalog_kind kind;
    enum catalog_slot slot; /* user1/user2 of the ESP8266 dual layout, else NONE */
    bool gzip;              /* the file is a gzip stream (ESP8266 OTA image, not for serial) */
    char *file;
    uint8_t *data;
    size_t size;
    uint8_t *zdata; /* zlib stream of data (zcompress_best: zopfli or zlib -9) */
    size_t zsize;
    char sha256[65]; /* of data, lowercase hex */
    char md5[33];    /* of data, lowercase hex (the file as stored: the engine pads to 4
                        bytes and patches bootloader headers before its flash MD5) */
};

/*
 * A loaded set. Immutable once returned: it may be shared read-only between
 * worker threads; whoever frees it (catalog_free_set) must know all are done.
 */
struct catalog_set {
    char *name;
    char *version;
    char *description; /* may be NULL */
    enum esp_chip chip;
    int flash_mode;                           /* -1 keep */
    uint32_t flash_size;                      /* 0 keep */
    int flash_size_code;                      /* -1 keep */
    int flash_freq_code;                      /* -1 keep */
    struct catalog_esptool_args esptool_args; /* the manifest's, has_* false where it is silent */
    struct catalog_region *regions;
    size_t n_regions;
};

/*
 * Loads name@version, verifying the SHA-256 and MD5 of every file and the
 * SHA-256 of every compressed copy. Returns 0 and *out (owned); -ENOENT not in
 * the catalog; -EBADMSG corrupted on disk; -EINVAL bad name; -ENOMEM/-EIO.
 * err gets a technician-grade message.
 */
int catalog_get(struct catalog *cat, const char *name, const char *version,
                struct catalog_set **out, char *err, size_t errlen);
void catalog_free_set(struct catalog_set *set); /* NULL allowed */

/*
 * The esptool_args of name@version from its manifest alone (no file is read or hashed):
 * what a job must know before it connects (the reset into the loader). 0, -ENOENT, -EINVAL
 * (bad name or a manifest that no longer parses).
 */
int catalog_get_esptool_args(struct catalog *cat, const char *name, const char *version,
                             struct catalog_esptool_args *out);

/* Removes name@version (atomically invisible first, then deleted). 0, -ENOENT, -EINVAL, -EIO. */
int catalog_delete(struct catalog *cat, const char *name, const char *version);

#endif
