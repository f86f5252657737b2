/*
 * fuzz_mdns: the avahi-browse --parsable line parser and the ArduinoOTA
 * hostname -> MAC mapping. The input is split into lines; each is parsed, and
 * the host and name of records go through mdns_mac_tail / mdns_match. Aborts
 * if texts are not terminated or results are out of range.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mdns.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond)
{
    if (!cond)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const macs[] = {"24:6f:28:00:0c:01", "5c:cf:7f:0a:1b:2c",
                                       "a0:20:a6:0a:1b:2c", "24:6f:28:aa:bb:cc"};
    const char *p = (const char *)data, *end = p + size;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
        struct mdns_record r;
        int rc = mdns_parse_line(p, len, &r);
        check(rc == 1 || rc == 0 || rc < 0);
        if (rc == 1) {
            check(memchr(r.name, 0, sizeof(r.name)) != NULL);
            check(memchr(r.host, 0, sizeof(r.host)) != NULL);
            check(memchr(r.address, 0, sizeof(r.address)) != NULL);
            check(memchr(r.board, 0, sizeof(r.board)) != NULL);
            check(r.port >= 0 && r.port <= 65535);
            check(r.auth_upload >= -1 && r.auth_upload <= 1);
            const char *names[2] = {r.host, r.name};
            for (int i = 0; i < 2; i++) {
                uint8_t tail[6];
                int n = mdns_mac_tail(names[i], tail);
                check(n == 0 || n == 3 || n == 6);
                if (n) {
                    int m = mdns_match(tail, n, macs, 4);
                    check(m >= -2 && m < 4);
                }
            }
        }
        p += len + 1;
    }
    return 0;
}
