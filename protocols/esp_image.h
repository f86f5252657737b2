/*
 * esp_image: the ESP application/bootloader image format (magic 0xE9).
 *
 * Parses and validates the common header, the ESP32-family extended header,
 * segments, the XOR checksum and the optional appended SHA-256; patches flash
 * mode/size/frequency in the header (as done at the bootloader offset) and
 * recomputes the appended SHA-256. Input is untrusted file data: every length
 * is checked, nothing is asserted.
 */
#ifndef ESP_IMAGE_H
#define ESP_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "esp_chip.h"
#include "esp_error.h"

#define ESP_IMAGE_MAGIC 0xE9
#define ESP_IMAGE_MAX_SEGMENTS 16

struct esp_image_segment {
    uint32_t load_addr;
    uint32_t length;
    size_t file_offset; /* offset of the segment data in the file */
};

struct esp_image_info {
    uint8_t segment_count;
    uint8_t flash_mode;      /* 0 QIO, 1 QOUT, 2 DIO, 3 DOUT */
    uint8_t flash_size_code; /* high nibble of byte 3 */
    uint8_t flash_freq_code; /* low nibble of byte 3 */
    uint32_t entry;

    bool has_extended_header; /* ESP32 family */
    uint8_t wp_pin;
    uint16_t chip_id;
    uint8_t min_rev;       /* legacy major-only (minor on C3) */
    uint16_t min_rev_full; /* major*100+minor */
    uint16_t max_rev_full; /* 0xFFFF = no limit */
    bool hash_appended;

    struct esp_image_segment segments[ESP_IMAGE_MAX_SEGMENTS];

    size_t data_length; /* bytes up to and including the checksum byte (multiple of 16) */
    uint8_t checksum_stored;
    uint8_t checksum_computed;
    bool sha256_valid;   /* only meaningful if hash_appended */
    size_t image_length; /* data_length + 32 if hash appended */
};

/*
 * Parses buf as an image. esp8266 selects the ESP8266 layout (no extended header).
 * Returns 0 for a valid image; -EINVAL for a malformed one (bad magic, too many
 * segments, segment past the end, bad extended header); -EBADMSG when it parses
 * but the checksum or SHA-256 is wrong. *info is filled as far as parsing got.
 * err (optional) gets a message naming the problem (segment index, offsets).
 */
int esp_image_parse(const uint8_t *buf, size_t len, bool esp8266, struct esp_image_info *info,
                    struct esp_error *err);

/*
 * Patches flash mode/size/frequency in the header at buf (an image written at the
 * chip's bootloader offset). Each of mode, size_code, freq_code is -1 to keep.
 * If the image has an appended SHA-256 (non-ESP8266), it is recomputed over the
 * patched [0, data_length) and rewritten; anything after the digest is kept.
 * Returns 1 if something changed, 0 if nothing to do, -EINVAL if buf does not
 * parse as a valid image (it is then left untouched).
 */
int esp_image_patch_header(uint8_t *buf, size_t len, bool esp8266, int mode, int size_code,
                           int freq_code);

/*
 * Safety check before writing an image to a chip: chip id matches and the
 * chip revision (major*100+minor, -1 unknown = not checked) lies within
 * [min_rev_full, max_rev_full]. Returns 0 or -EINVAL with a clear message in err.
 */
int esp_image_check_chip(const struct esp_image_info *info, const struct esp_chip_desc *chip,
                         int chip_revision, struct esp_error *err);

#endif
