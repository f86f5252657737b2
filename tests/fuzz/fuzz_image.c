/*
 * fuzz_image: esp_image_parse on arbitrary files in both layouts, the chip
 * check against every chip, and esp_image_patch_header on a copy. A patch
 * that reports a change must leave an image that still parses.
 * Input: byte 0 picks the patch values, the rest is the file.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "esp_chip.h"
#include "esp_error.h"
#include "esp_image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond)
{
    if (!cond)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t sel = data[0];
    const uint8_t *img = data + 1;
    size_t len = size - 1;

    uint8_t *copy = malloc(len ? len : 1);
    if (!copy)
        return 0;

    for (int layout = 0; layout < 2; layout++) {
        bool esp8266 = layout == 1;
        struct esp_image_info info;
        struct esp_error err;
        esp_error_clear(&err);
        int rc = esp_image_parse(img, len, esp8266, &info, &err);
        check(rc == 0 || rc == -EINVAL || rc == -EBADMSG);
        check(rc == err.code);
        if (rc == 0) {
            check(info.segment_count >= 1 && info.segment_count <= ESP_IMAGE_MAX_SEGMENTS);
            check(info.image_length <= len && info.data_length % 16 == 0);
            for (unsigned s = 0; s < info.segment_count; s++)
                check(info.segments[s].file_offset + info.segments[s].length <= len);
            for (int c = 0; c < ESP_CHIP_COUNT; c++)
                esp_image_check_chip(&info, esp_chip_get((enum esp_chip)c),
                                     (int)(sel % 4) * 100 - 1, &err);
        }

        memcpy(copy, img, len);
        int mode = (sel & 3) == 3 ? -1 : (sel & 3);
        int size_code = (sel >> 2) & 7;
        int freq_code = (sel & 0x80) ? -1 : 0xF;
        if (size_code == 7)
            size_code = -1;
        int prc = esp_image_patch_header(copy, len, esp8266, mode, size_code, freq_code);
        if (rc != 0) {
            check(prc == -EINVAL);
            check(memcmp(copy, img, len) == 0);
        } else {
            check(prc == 0 || prc == 1);
            check(esp_image_parse(copy, len, esp8266, NULL, NULL) == 0);
            if (prc == 0)
                check(memcmp(copy, img, len) == 0);
        }
    }
    free(copy);
    return 0;
}
