/*
 * esp_stub: loads flasher-stub images from esp-flasher-stub JSON files.
 *
 * Owns: reading <dir>/<stub_name>.json, validating its keys (entry, text,
 * text_start, data, data_start; bss_start optional; anything else such as
 * plugins is ignored) and decoding the base64 segments.
 * Invariants: the file is untrusted input: every key is type- and
 * range-checked, base64 must be canonical (length multiple of 4, at most two
 * '=' and only at the end); an error names the offending key.
 */
#include "esp_stub.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>
#include <openssl/evp.h>

#define STUB_FILE_MAX (4u * 1024 * 1024)

static const char stub_advice[] = "re-fetch the stubs (scripts/fetch-stubs.sh)";

void esp_stub_free(struct esp_stub *stub)
{
    if (!stub)
        return;
    free(stub->text);
    free(stub->data);
    free(stub);
}

static int get_u32(struct json_object *root, const char *key, bool required, uint32_t *out,
                   struct esp_error *err)
{
    struct json_object *v = NULL;
    if (!json_object_object_get_ex(root, key, &v) || !v) {
        if (!required)
            return 0;
        return esp_error_set(err, -EINVAL, ESP_STAGE_STUB, stub_advice,
                             "stub file: missing key \"%s\"", key);
    }
    if (!json_object_is_type(v, json_type_int))
        return esp_error_set(err, -EINVAL, ESP_STAGE_STUB, stub_advice,
                             "stub file: key \"%s\" is not an integer", key);
    errno = 0;
    int64_t x = json_object_get_int64(v);
    if (errno != 0 || x < 0 || x > (int64_t)UINT32_MAX)
        return esp_error_set(err, -EINVAL, ESP_STAGE_STUB, stub_advice,
                             "stub file: key \"%s\" is out of range", key);
    *out = (uint32_t)x;
    return 0;
}

static int decode_b64(const char *key, const char *s, size_t n, uint8_t **out, size_t *out_len,
                      struct esp_error *err)
{
    *out = NULL;
    *out_len = 0;
    if (n % 4 != 0)
        return esp_error_set(err, -EINVAL, ESP_STAGE_STUB, stub_advice,
                             "stub file: key \"%s\" is not valid base64 (length %zu)", key, n);
    size_t pad = 0;
    if (n >= 1 && s[n - 1] == '=')
        pad++;
    if (n >= 2 && s[n - 2] == '=')
        pad++;
    for (size_t i = 0; i < n - pad; i++) {
        char c = s[i];
        bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                  c == '+' || c == '/';
        if (!ok)
            return esp_error_set(err, -EINVAL, ESP_STAGE_STUB, stub_advice,
                                 "stub file: key \"%s\" is not valid base64 (character %zu)", key,
                                 i);
    }
    if (n > INT_MAX)
        return esp_error_set(err, -EINVAL, ESP_STAGE_STUB, stub_advice,
                             "stub file: key \"%s\" is too long", key);
    uint8_t *buf = malloc(n / 4 * 3 + 1);
    if (!buf)
        return esp_error_set(err, -ENOMEM, ESP_STAGE_STUB, NULL, "out of memory");
    int got = n ? EVP_DecodeBlock(buf, (const unsigned char *)s, (int)n) : 0;
    if (got < 0 || (size_t)got != n / 4 * 3) {
        free(buf);
        return esp_error_set(err, -EINVAL, ESP_STAGE_STUB, stub_advice,
                             "stub file: key \"%s\" is not valid base64", key);
    }
    /* EVP_DecodeBlock decodes the '=' padding as zero bytes: drop them. */
    *out = buf;
    *out_len = (size_t)got - pad;
    return 0;
}

static int get_b64(struct json_object *root, const char *key, uint8_t **out, size_t *out_len,
                   struct esp_error *err)
{
    struct json_object *v = NULL;
    if (!json_object_object_get_ex(root, key, &v) || !v)
        return esp_error_set(err, -EINVAL, ESP_STAGE_STUB, stub_advice,
                             "stub file: missing key \"%s\"", key);
    if (!json_object_is_type(v, json_type_string))
        return esp_error_set(err, -EINVAL, ESP_STAGE_STUB, stub_advice,
                             "stub file: key \"%s\" is not a string", key);
    return decode_b64(key, json_object_get_string(v), (size_t)json_object_get_string_len(v), out,
                      out_len, err);
}

int esp_stub_parse(const char *json, size_t len, struct esp_stub **out, struct esp_error *err)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!json || len == 0 || len > INT_MAX)
        return esp_error_set(err, -EINVAL, ESP_STAGE_STUB, stub_advice, "stub file is empty");

    struct json_tokener *tok = json_tokener_new();
    if (!tok)
        return esp_error_set(err, -ENOMEM, ESP_STAGE_STUB, NULL, "out of memory");
    struct json_object *root = json_tokener_parse_ex(tok, json, (int)len);
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    size_t used = json_tokener_get_parse_end(tok);
    json_tokener_free(tok);
    if (!root || jerr != json_tokener_success) {
        json_object_put(root);
        return esp_error_set(
            err, -EINVAL, ESP_STAGE_STUB, stub_advice, "stub file is not valid JSON: %s",
            jerr == json_tokener_continue ? "unexpected end" : json_tokener_error_desc(jerr));
    }
    for (size_t i = used; i < len; i++) {
        char c = json[i];
        if (c != ' ' && c != '\n' && c != '\r' && c != '\t' && c != '\0') {
            json_object_put(root);
            return esp_error_set(err, -EINVAL, ESP_STAGE_STUB, stub_advice,
                                 "stub file is not valid JSON: trailing data at byte %zu", i);
        }
    }
    if (!json_object_is_type(root, json_type_object)) {
        json_object_put(root);
        return esp_error_set(err, -EINVAL, ESP_STAGE_STUB, stub_advice,
                             "stub file is not a JSON object");
    }

    struct esp_stub *s = calloc(1, sizeof(*s));
    if (!s) {
        json_object_put(root);
        return esp_error_set(err, -ENOMEM, ESP_STAGE_STUB, NULL, "out of memory");
    }
    int rc = get_u32(root, "entry", true, &s->entry, err);
    if (rc == 0)
        rc = get_u32(root, "text_start", true, &s->text_start, err);
    if (rc == 0)
        rc = get_b64(root, "text", &s->text, &s->text_len, err);
    if (rc == 0 && s->text_len == 0)
        rc = esp_error_set(err, -EINVAL, ESP_STAGE_STUB, stub_advice,
                           "stub file: key \"text\" is empty");
    if (rc == 0)
        rc = get_u32(root, "data_start", true, &s->data_start, err);
    if (rc == 0)
        rc = get_b64(root, "data", &s->data, &s->data_len, err);
    if (rc == 0)
        rc = get_u32(root, "bss_start", false, &s->bss_start, err);
    json_object_put(root);
    if (rc < 0) {
        esp_stub_free(s);
        return rc;
    }
    *out = s;
    return 0;
}

int esp_stub_load(const char *dir, const struct esp_chip_desc *chip, struct esp_stub **out,
                  struct esp_error *err)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!dir || !*dir)
        return esp_error_set(err, -ENOENT, ESP_STAGE_STUB, NULL, "no stub directory configured");
    if (!chip || !chip->stub_name)
        return esp_error_set(err, -ENOENT, ESP_STAGE_STUB, NULL, "no flasher stub for this chip");

    char path[4096];
    int pn = snprintf(path, sizeof(path), "%s/%s.json", dir, chip->stub_name);
    if (pn < 0 || (size_t)pn >= sizeof(path))
        return esp_error_set(err, -ENOENT, ESP_STAGE_STUB, NULL, "stub path too long");
    FILE *f = fopen(path, "rb");
    if (!f) {
        int e = errno;
        /* Absent: fall back to the ROM. Unreadable: an unusable stub, same fallback. */
        return esp_error_set(err, e == ENOENT ? -ENOENT : -EINVAL, ESP_STAGE_STUB, stub_advice,
                             "cannot open %s: %s", path, strerror(e));
    }
    char *buf = malloc(STUB_FILE_MAX + 1);
    if (!buf) {
        fclose(f);
        return esp_error_set(err, -ENOMEM, ESP_STAGE_STUB, NULL, "out of memory");
    }
    size_t n = fread(buf, 1, STUB_FILE_MAX + 1, f);
    bool ioerr = ferror(f) != 0;
    fclose(f);
    if (ioerr || n > STUB_FILE_MAX) {
        free(buf);
        return esp_error_set(err, -EINVAL, ESP_STAGE_STUB, stub_advice, "%s: %s", path,
                             ioerr ? "read error" : "file too large");
    }
    buf[n] = '\0';
    int rc = esp_stub_parse(buf, n, out, err);
    free(buf);
    if (rc < 0 && err) {
        /* Name the file as well as the key. */
        char msg[sizeof(err->message)];
        snprintf(msg, sizeof(msg), "%s", err->message);
        snprintf(err->message, sizeof(err->message), "%.100s: %.150s", path, msg);
    }
    return rc;
}
