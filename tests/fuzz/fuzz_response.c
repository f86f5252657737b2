/*
 * fuzz_response: esp_response_parse on arbitrary frames for every responder
 * and the expected data lengths in use (0, 12, 16, 20, 32). Aborts if a
 * parsed response points outside the frame or contradicts itself.
 */
#include <stdint.h>
#include <stdlib.h>

#include "esp_cmd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond)
{
    if (!cond)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const size_t expected[] = {0, 12, 16, 20, 32};
    static const enum esp_responder who[] = {ESP_RESPONDER_ROM_8266, ESP_RESPONDER_ROM_ESP32,
                                             ESP_RESPONDER_STUB};
    for (size_t w = 0; w < sizeof(who) / sizeof(who[0]); w++) {
        for (size_t e = 0; e < sizeof(expected) / sizeof(expected[0]); e++) {
            struct esp_response r;
            int rc = esp_response_parse(data, size, who[w], expected[e], &r);
            if (rc != 0)
                continue;
            check(size >= 10);
            check(r.data == data + 8);
            check(r.size == size - 8);
            check(r.data_len == expected[e] || (r.failed && r.data_len == 0));
            check(r.data_len + 2 <= r.size);
            check(r.failed == (r.status != 0));
            check(r.failed || (r.device_code == 0 && !r.unsupported));
            volatile uint8_t sum = 0;
            for (size_t i = 0; i < r.data_len; i++)
                sum ^= r.data[i];
            (void)sum;
        }
    }
    return 0;
}
