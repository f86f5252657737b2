/*
 * buildsrc_priv.h: what the buildsrc*.c files share (not the library's interface; that is
 * buildsrc.h). buildsrc.c: descriptor parsers and JSON; buildsrc_util.c: small helpers;
 * buildsrc_check.c: reading the files and checking images, partition table and layout;
 * buildsrc_dir.c: recognising a directory, loading, picking a set.
 */
#ifndef ESPSTATION_BUILDSRC_PRIV_H
#define ESPSTATION_BUILDSRC_PRIV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buildsrc.h"
#include "esp_image.h"

#define PT_OFFSET 0x8000u        /* ESP-IDF's default partition table offset */
#define PT_MAX_BYTES 0xC00u      /* the table's sector: 95 entries and the MD5 entry */
#define PT_ENTRY 32u             /* bytes per entry */
#define BOOT_APP0_OFFSET 0xE000u /* Arduino's otadata (boot_app0.bin: boot from ota_0) */
#define APP_OFFSET_DEFAULT 0x10000u
#define APP_DESC_MAGIC 0xABCD5432u /* esp_app_desc_t, first bytes of the app's first segment */

/* The advice for a build that is not as its tool writes it. */
extern const char bsrc_adv_build[];

void bsrc_printable(char *s);
int bsrc_fail(struct esp_error *err, int code, const char *advice, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void bsrc_note(struct buildsrc *src, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
bool bsrc_has_suffix(const char *s, const char *suf);
const char *bsrc_base_name(const char *p);
char *bsrc_join(const char *a, const char *b);
bool bsrc_is_file(const char *path);
bool bsrc_is_dir(const char *path);
int bsrc_read_all(const char *path, size_t max, uint8_t **data, size_t *len);
json_object *bsrc_parse_json(const char *json, size_t len, const char *what, struct esp_error *err);
const char *bsrc_get_str(json_object *o, const char *key);
int bsrc_get_offset(json_object *v, uint32_t *out);
struct buildsrc_part *bsrc_add_part(struct buildsrc_set *set, uint32_t offset,
                                    enum buildsrc_role role, const char *path, const char *what,
                                    struct esp_error *err);
void bsrc_set_init(struct buildsrc_set *set);
int bsrc_load_parts(struct buildsrc *src, const char *what, struct esp_error *err);
int bsrc_identify(const uint8_t *d, size_t n, const struct esp_chip_desc *prefer,
                  struct esp_image_info *info, const struct esp_chip_desc **chip,
                  struct esp_error *err);
bool bsrc_pt_boot_app(const uint8_t *d, size_t n, uint32_t *off);
const char *bsrc_mode_str(int m);
void bsrc_size_str(uint32_t bytes, char *buf, size_t n);

#endif
