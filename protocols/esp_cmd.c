/*
 * esp_cmd: request builders and the response parser of the ROM/stub protocol.
 *
 * Owns: the request packet layout (direction 0, op, size, checksum, body) and
 * the one status-byte rule shared by all responders: the status bytes follow
 * the command's expected data, status = body[n], error = body[n + 1].
 * Invariant: nothing here does I/O or keeps state; parsed responses point
 * into the caller's frame.
 */
#include "esp_cmd.h"

#include <errno.h>
#include <string.h>

const uint8_t esp_sync_body[ESP_SYNC_BODY_LEN] = {
    0x07, 0x07, 0x12, 0x20, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55,
    0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55,
    0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55,
};

const char *esp_op_to_string(uint8_t op)
{
    switch (op) {
    case ESP_OP_FLASH_BEGIN:
        return "FLASH_BEGIN";
    case ESP_OP_FLASH_DATA:
        return "FLASH_DATA";
    case ESP_OP_FLASH_END:
        return "FLASH_END";
    case ESP_OP_MEM_BEGIN:
        return "MEM_BEGIN";
    case ESP_OP_MEM_END:
        return "MEM_END";
    case ESP_OP_MEM_DATA:
        return "MEM_DATA";
    case ESP_OP_SYNC:
        return "SYNC";
    case ESP_OP_WRITE_REG:
        return "WRITE_REG";
    case ESP_OP_READ_REG:
        return "READ_REG";
    case ESP_OP_SPI_SET_PARAMS:
        return "SPI_SET_PARAMS";
    case ESP_OP_SPI_ATTACH:
        return "SPI_ATTACH";
    case ESP_OP_READ_FLASH_SLOW:
        return "READ_FLASH_SLOW";
    case ESP_OP_CHANGE_BAUDRATE:
        return "CHANGE_BAUDRATE";
    case ESP_OP_FLASH_DEFL_BEGIN:
        return "FLASH_DEFL_BEGIN";
    case ESP_OP_FLASH_DEFL_DATA:
        return "FLASH_DEFL_DATA";
    case ESP_OP_FLASH_DEFL_END:
        return "FLASH_DEFL_END";
    case ESP_OP_SPI_FLASH_MD5:
        return "SPI_FLASH_MD5";
    case ESP_OP_GET_SECURITY_INFO:
        return "GET_SECURITY_INFO";
    case ESP_OP_ERASE_FLASH:
        return "ERASE_FLASH";
    case ESP_OP_ERASE_REGION:
        return "ERASE_REGION";
    case ESP_OP_READ_FLASH:
        return "READ_FLASH";
    case ESP_OP_RUN_USER_CODE:
        return "RUN_USER_CODE";
    default:
        return "UNKNOWN";
    }
}

uint8_t esp_checksum(const uint8_t *data, size_t len)
{
    uint8_t c = ESP_CHECKSUM_SEED;
    for (size_t i = 0; i < len; i++)
        c ^= data[i];
    return c;
}

static void put_header(uint8_t *out, uint8_t op, size_t body_len, uint32_t checksum)
{
    out[0] = 0x00;
    out[1] = op;
    out[2] = (uint8_t)body_len;
    out[3] = (uint8_t)(body_len >> 8);
    esp_put_u32(out + 4, checksum);
}

static int check_room(size_t body_len, size_t cap)
{
    if (body_len > 0xFFFF)
        return -EINVAL;
    if (cap < ESP_CMD_HEADER_LEN || cap - ESP_CMD_HEADER_LEN < body_len)
        return -ENOSPC;
    return 0;
}

int esp_cmd_build(uint8_t op, const uint8_t *body, size_t body_len, uint32_t checksum, uint8_t *out,
                  size_t cap)
{
    int rc = check_room(body_len, cap);
    if (rc < 0)
        return rc;
    if (body_len && !body)
        return -EINVAL;
    put_header(out, op, body_len, checksum);
    if (body_len)
        memmove(out + ESP_CMD_HEADER_LEN, body, body_len);
    return (int)(ESP_CMD_HEADER_LEN + body_len);
}

int esp_cmd_build_words(uint8_t op, const uint32_t *words, size_t n_words, uint8_t *out, size_t cap)
{
    if (n_words > 0xFFFF / 4)
        return -EINVAL;
    size_t body_len = n_words * 4;
    int rc = check_room(body_len, cap);
    if (rc < 0)
        return rc;
    if (n_words && !words)
        return -EINVAL;
    put_header(out, op, body_len, 0);
    for (size_t i = 0; i < n_words; i++)
        esp_put_u32(out + ESP_CMD_HEADER_LEN + 4 * i, words[i]);
    return (int)(ESP_CMD_HEADER_LEN + body_len);
}

int esp_cmd_build_data(uint8_t op, uint32_t seq, const uint8_t *data, size_t len, uint8_t *out,
                       size_t cap)
{
    if (len > 0xFFFF - ESP_DATA_HEADER_LEN)
        return -EINVAL;
    size_t body_len = ESP_DATA_HEADER_LEN + len;
    int rc = check_room(body_len, cap);
    if (rc < 0)
        return rc;
    if (len && !data)
        return -EINVAL;
    put_header(out, op, body_len, esp_checksum(data, len));
    uint8_t *b = out + ESP_CMD_HEADER_LEN;
    esp_put_u32(b, (uint32_t)len);
    esp_put_u32(b + 4, seq);
    esp_put_u32(b + 8, 0);
    esp_put_u32(b + 12, 0);
    if (len)
        memmove(b + ESP_DATA_HEADER_LEN, data, len);
    return (int)(ESP_CMD_HEADER_LEN + body_len);
}

const char *esp_responder_to_string(enum esp_responder who)
{
    switch (who) {
    case ESP_RESPONDER_ROM_8266:
        return "esp8266-rom";
    case ESP_RESPONDER_ROM_ESP32:
        return "esp32-rom";
    case ESP_RESPONDER_STUB:
        return "stub";
    default:
        return "unknown";
    }
}

int esp_response_parse(const uint8_t *frame, size_t len, enum esp_responder who,
                       size_t expected_data_len, struct esp_response *r)
{
    struct esp_response tmp;
    if (!r)
        r = &tmp;
    memset(r, 0, sizeof(*r));

    if (!frame || len < ESP_CMD_HEADER_LEN || frame[0] != 0x01)
        return -EPROTO;
    if (who != ESP_RESPONDER_ROM_8266 && who != ESP_RESPONDER_ROM_ESP32 &&
        who != ESP_RESPONDER_STUB)
        return -EPROTO;

    size_t size = esp_get_u16(frame + 2);
    if (size != len - ESP_CMD_HEADER_LEN)
        return -EPROTO;

    const uint8_t *body = frame + ESP_CMD_HEADER_LEN;
    r->op = frame[1];
    r->size = (uint16_t)size;
    r->value = esp_get_u32(frame + 4);
    r->data = body;

    bool full = expected_data_len <= SIZE_MAX - 2 && size >= expected_data_len + 2;
    if (full) {
        r->status = body[expected_data_len];
        r->error = body[expected_data_len + 1];
        r->data_len = expected_data_len;
    } else {
        /*
         * Too short for data + status: only acceptable as a failure reply
         * without its data, the status bytes then sit at the end of the body.
         */
        size_t at;
        if (who == ESP_RESPONDER_ROM_ESP32 && size >= 4)
            at = size - 4;
        else if (size >= 2)
            at = size - 2;
        else
            return -EPROTO;
        if (body[at] == 0)
            return -EPROTO;
        r->status = body[at];
        r->error = body[at + 1];
        r->data_len = 0;
    }

    r->failed = r->status != 0;
    if (r->failed) {
        if (who == ESP_RESPONDER_STUB) {
            r->device_code = r->status;
            r->unsupported = r->status == 0xFF;
        } else {
            r->device_code = r->error;
            r->unsupported = r->error == 0x05;
        }
    }
    return 0;
}
