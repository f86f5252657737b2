/*
 * fuzz_ota_http_headers: the HTTP pull request-head parser on arbitrary
 * bytes, then the decision and the serializer on whatever parsed. Aborts if
 * the parser claims a head longer than the input or the limit, or if a
 * serialized response is not NUL-terminated within its buffer.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ota_http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond)
{
    if (!cond)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ota_http_request req;
    struct ota_error err;
    ota_error_clear(&err);
    int n = ota_http_parse_request((const char *)data, size, &req, &err);
    check(n <= (int)size && n <= OTA_HTTP_MAX_HEAD);
    if (n < 0) {
        check(err.code == n && err.message[0]);
        return 0;
    }
    if (n == 0)
        return 0;
    check(strlen(req.method) < sizeof(req.method) && strlen(req.version) < sizeof(req.version));
    static const struct ota_http_image img = {
        .version = "2.0.0", .md5 = "00112233445566778899aabbccddeeff", .size = 1234};
    struct ota_http_board board = {.known = true,
                                   .target = &img,
                                   .fs_target = &img,
                                   .served_md5 = (size & 1) ? img.md5 : NULL,
                                   .served_from_sketch_md5 = (size & 2) ? req.sketch_md5 : NULL};
    struct ota_http_policy pol = {.strict = size & 4, .unknown = (size & 8) ? 1 : 0};
    struct ota_http_decision d;
    ota_http_decide(&req, (size & 16) ? NULL : &board, &pol, &d);
    char out[1024];
    int len = ota_http_format_response(&d, out, sizeof(out));
    check(len < (int)sizeof(out));
    if (len > 0)
        check(strlen(out) == (size_t)len);
    ota_http_decide_plain(&req, (size & 32) ? NULL : &img, &d);
    len = ota_http_format_response(&d, out, sizeof(out));
    check(len < (int)sizeof(out));
    (void)ota_http_userbin_from_uri(req.uri);
    return 0;
}
