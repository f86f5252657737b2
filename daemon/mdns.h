/*
 * mdns: optional discovery of ArduinoOTA devices (_arduino._tcp) through
 * avahi, on the loop thread.
 *
 * The parser and the hostname -> MAC matching are pure functions (unit tested
 * and fuzzed). The runner, when avahi-browse is on PATH and ota.mdns_interval_s
 * is not 0, runs "avahi-browse --parsable --resolve --terminate _arduino._tcp"
 * as a child process every interval (stdout read through a non-blocking pipe
 * in the loop, the child reaped with waitpid, killed after a timeout) and hands
 * every advertisement that maps to exactly one known board to ota_seen_mdns().
 * Without avahi-browse it logs one INFO line and does nothing else; when
 * avahi-browse fails (avahi-daemon not running) it logs once per change.
 */
#ifndef ESPSTATION_MDNS_H
#define ESPSTATION_MDNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ota;

#define MDNS_NAME_LEN 256
#define MDNS_ADDR_LEN 64
#define MDNS_BOARD_LEN 64

/* One resolved advertisement ("=" line of avahi-browse --parsable). */
struct mdns_record {
    char iface[32];
    bool ipv6;                /* protocol "IPv6" */
    char name[MDNS_NAME_LEN]; /* service name, avahi escapes (\DDD, \.) undone */
    char host[MDNS_NAME_LEN]; /* "esp32-246f28000c01.local" */
    char address[MDNS_ADDR_LEN];
    int port;
    char board[MDNS_BOARD_LEN]; /* TXT board=... unescaped, outer quotes dropped; "" none */
    int auth_upload;            /* TXT auth_upload: 1 yes, 0 no, -1 absent */
};

/* Parses one line (without or with its trailing newline). 1 = a resolved
 * record in *out, 0 = a line to skip ("+" / "-" lines, blank), -EINVAL =
 * malformed. */
int mdns_parse_line(const char *line, size_t len, struct mdns_record *out);

/* Hostname (or service name; ".local" and any later labels ignored, case
 * insensitive) to a MAC tail: "esp8266-XXXXXX" -> 3 bytes, "esp32-XXXXXXXXXXXX"
 * -> 6 bytes. Returns the number of bytes (3 or 6) written to tail, 0 when the
 * name is not an Arduino default hostname. */
int mdns_mac_tail(const char *hostname, uint8_t tail[6]);

/* Matches a tail against known MACs ("aa:bb:cc:dd:ee:ff"). Returns the index
 * of the only MAC that ends with it, -1 none, -2 ambiguous (more than one). */
int mdns_match(const uint8_t *tail, int n_tail, const char *const *macs, size_t n_macs);

/* The runner. */
struct mdns;
/* Starts discovery for o (interval_s 0 = off). NULL when off or not possible
 * (logged). */
struct mdns *mdns_start(struct ota *o, int interval_s);
/* Kills and reaps a running child. NULL allowed. */
void mdns_free(struct mdns *m);

#endif
