/*
 * esp_stub: flasher stub images (RAM programs uploaded to speed up flashing).
 *
 * Loaded at run time from a directory holding esp-flasher-stub JSON files
 * (<stub_name>.json with keys text, text_start, data, data_start, entry,
 * bss_start; text/data base64), as shipped in the esptool-js npm package
 * under lib/targets/stub_flasher/. The files are never compiled in.
 */
#ifndef ESP_STUB_H
#define ESP_STUB_H

#include <stddef.h>
#include <stdint.h>

#include "esp_chip.h"
#include "esp_error.h"

struct esp_stub {
    uint32_t entry;
    uint32_t text_start;
    uint8_t *text;
    size_t text_len;
    uint32_t data_start; /* data_len may be 0 */
    uint8_t *data;
    size_t data_len;
    uint32_t bss_start;
};

/*
 * Loads <dir>/<chip->stub_name>.json. Returns 0 and an owned *out;
 * -ENOENT when dir is NULL/empty or the file is absent (caller falls back to ROM);
 * -EINVAL for a malformed file (err names the key); -ENOMEM.
 */
int esp_stub_load(const char *dir, const struct esp_chip_desc *chip, struct esp_stub **out,
                  struct esp_error *err);

/* Parses a stub JSON document held in memory (same rules as esp_stub_load). */
int esp_stub_parse(const char *json, size_t len, struct esp_stub **out, struct esp_error *err);

void esp_stub_free(struct esp_stub *stub); /* NULL allowed */

#endif
