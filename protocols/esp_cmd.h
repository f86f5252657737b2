/*
 * esp_cmd: the ROM/stub command layer, without I/O.
 *
 * Builds request packets (unescaped; the caller SLIP-encodes) and parses
 * response frames (already SLIP-decoded) with the real differences between
 * responders:
 *   - ESP8266 ROM: 2 status bytes [status, error]
 *   - ESP32-family ROM: 4 status bytes [status, error, 0, 0]
 *   - flasher stub: 2 status bytes, the stub code in the FIRST byte (0xC0..0xCB, 0xFF)
 * The status bytes sit right after the command's expected response data.
 * The header `value` field is parsed but is stale garbage except for READ_REG
 * (and SYNC, where stub replies carry 0); callers must not use it otherwise.
 */
#ifndef ESP_CMD_H
#define ESP_CMD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum esp_op {
    ESP_OP_FLASH_BEGIN = 0x02,
    ESP_OP_FLASH_DATA = 0x03,
    ESP_OP_FLASH_END = 0x04,
    ESP_OP_MEM_BEGIN = 0x05,
    ESP_OP_MEM_END = 0x06,
    ESP_OP_MEM_DATA = 0x07,
    ESP_OP_SYNC = 0x08,
    ESP_OP_WRITE_REG = 0x09,
    ESP_OP_READ_REG = 0x0A,
    ESP_OP_SPI_SET_PARAMS = 0x0B,
    ESP_OP_SPI_ATTACH = 0x0D,
    ESP_OP_READ_FLASH_SLOW = 0x0E,
    ESP_OP_CHANGE_BAUDRATE = 0x0F,
    ESP_OP_FLASH_DEFL_BEGIN = 0x10,
    ESP_OP_FLASH_DEFL_DATA = 0x11,
    ESP_OP_FLASH_DEFL_END = 0x12,
    ESP_OP_SPI_FLASH_MD5 = 0x13,
    ESP_OP_GET_SECURITY_INFO = 0x14,
    ESP_OP_ERASE_FLASH = 0xD0,
    ESP_OP_ERASE_REGION = 0xD1,
    ESP_OP_READ_FLASH = 0xD2,
    ESP_OP_RUN_USER_CODE = 0xD3,
};

/* "FLASH_BEGIN", ... ; "UNKNOWN" for anything else. */
const char *esp_op_to_string(uint8_t op);

#define ESP_CMD_HEADER_LEN 8
#define ESP_DATA_HEADER_LEN 16 /* len, seq, 0, 0 before the payload of *_DATA */
#define ESP_CHECKSUM_SEED 0xEF

/* SYNC body: 07 07 12 20 + 32 x 0x55. */
#define ESP_SYNC_BODY_LEN 36
extern const uint8_t esp_sync_body[ESP_SYNC_BODY_LEN];

/* XOR of data bytes starting from 0xEF. */
uint8_t esp_checksum(const uint8_t *data, size_t len);

/* Little-endian helpers. */
static inline void esp_put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}
static inline uint32_t esp_get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static inline uint16_t esp_get_u16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

/*
 * Writes a request (direction 0, op, size, checksum, body) into out.
 * Returns the packet length, -EINVAL if body_len > 0xFFFF, -ENOSPC if cap is too small.
 */
int esp_cmd_build(uint8_t op, const uint8_t *body, size_t body_len, uint32_t checksum, uint8_t *out,
                  size_t cap);

/* Request whose body is a list of u32 words (FLASH_BEGIN, READ_REG, ...). */
int esp_cmd_build_words(uint8_t op, const uint32_t *words, size_t n_words, uint8_t *out,
                        size_t cap);

/* *_DATA request: body = len, seq, 0, 0, data; checksum over data. */
int esp_cmd_build_data(uint8_t op, uint32_t seq, const uint8_t *data, size_t len, uint8_t *out,
                       size_t cap);

enum esp_responder {
    ESP_RESPONDER_ROM_8266 = 0, /* 2 status bytes, error in 2nd */
    ESP_RESPONDER_ROM_ESP32,    /* 4 status bytes, error in 2nd */
    ESP_RESPONDER_STUB,         /* 2 status bytes, code in 1st */
};

const char *esp_responder_to_string(enum esp_responder who);

struct esp_response {
    uint8_t op;          /* echoed opcode */
    uint16_t size;       /* body size from header */
    uint32_t value;      /* header value: meaningful only for READ_REG (and SYNC stub detection) */
    const uint8_t *data; /* response data before the status bytes; points into the frame */
    size_t data_len;     /* == expected data length on success */
    uint8_t status;      /* first status byte as sent */
    uint8_t error;       /* second status byte as sent */
    bool failed;         /* device reported failure (first status byte != 0) */
    uint8_t device_code; /* ROM: error byte; stub: first status byte; 0 if !failed */
    bool unsupported;    /* ROM error 0x05 (unknown/unsupported command) or stub 0xFF */
};

/*
 * Parses one decoded frame as a response.
 * expected_data_len: bytes of data before the status bytes (0 for most commands,
 * 32 for ROM SPI_FLASH_MD5, 16 for stub SPI_FLASH_MD5, 20 or 12 for GET_SECURITY_INFO).
 * Returns 0 when the frame is a well-formed response (check r->failed for a
 * device-reported failure), -EPROTO when it is not a response at all (direction
 * != 1, shorter than a header, size field disagreeing with the frame length,
 * or too short to hold expected data + 2 status bytes).
 * A failure reply may be shorter than expected_data_len + status; it is then
 * parsed with the status bytes at the end of the body and r->failed set.
 */
int esp_response_parse(const uint8_t *frame, size_t len, enum esp_responder who,
                       size_t expected_data_len, struct esp_response *r);

#endif
