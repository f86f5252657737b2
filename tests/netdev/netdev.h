/*
 * netdev.h: private to esp_netdev (tests/netdev/esp_netdev.c and netdev_*.c): the virtual
 * board's state and the helpers its protocol files share. Not an API of the station.
 */
#ifndef ESPSTATION_NETDEV_H
#define ESPSTATION_NETDEV_H

#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include <arpa/inet.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>

#define MAX_IMAGE (16u * 1024u * 1024u)
#define TCP_OTA_FIRMWARE_SIZE 503808u

enum chip { CHIP_ESP8266, CHIP_ESP32 };
enum fault {
    FAULT_NONE,
    FAULT_NO_ANSWER,
    FAULT_WRONG_PASSWORD,
    FAULT_NO_SPACE,
    FAULT_STALL,
    FAULT_GLUED_OK,
    FAULT_ERROR_LINE,
    FAULT_NO_CONNECT_BACK,
    FAULT_NO_VERDICT
};

struct netdev {
    enum chip chip;
    char mac[18];
    char bind_ip[INET_ADDRSTRLEN];
    char dir[PATH_MAX];
    char version[64];
    char password[64];
    bool pbkdf2;
    bool pbkdf2_md5; /* --auth pbkdf2-md5: H = MD5 hex of the password (setPasswordHash) */
    int ota_port, http_port, tcpota_port; /* -1 disabled */
    char web_user[32];
    enum fault fault;
    uint64_t stall_bytes;
    char checkin_host[64];
    int checkin_port;
    char checkin_path[256];
    bool checkin_tls;       /* an https:// URL */
    char ca_file[PATH_MAX]; /* --ca: setCACert / setTrustAnchors */
    uint8_t pin_sha1[20];   /* --fingerprint: ESP8266 setFingerprint */
    bool pin;
    bool tls_ip_san; /* --tls-ip-san: an IP host matches iPAddress SANs */
    bool tls13;      /* --tls-max 1.3 */
    int interval_ms;
    bool checkin_once;      /* --interval once: one check-in at boot, none after */
    char checkin_auth[200]; /* --checkin-auth "Authorization" value ("Basic ..."), "" none */
    uint64_t free_space, chip_size; /* chip_size: --chip-size, the real flash size */
    bool no_current_version;        /* --no-current-version: no x-…-version header */
    char flash_path[PATH_MAX];
    uint64_t flash_offset;
    uint64_t user2_offset; /* TCP-OTA: flash address of user2 (0: at flash_offset) */
    bool fs_offset_given;
    uint64_t fs_offset;
    uint64_t fs_size; /* 0: no limit */
    int rcvbuf;       /* ArduinoOTA connect-back receive window; 0: the kernel's; -1: per chip */
    int erase_ms;     /* per 4 KiB sector erase */
    int drain_ms;     /* ESP8266 Update.write(client): returns after this long without data */

    int udp_fd, http_fd, tcpota_fd;
    int images;
    int running_slot; /* TCP-OTA: 1 or 2 */
    char sketch_md5[33];
    uint64_t sketch_size;
    unsigned nonce_counter;
    FILE *log;
    /* ArduinoOTA state */
    bool waitauth;
    int cmd;
    unsigned port;
    uint64_t size;
    char md5[33];
    char nonce[65];
    struct sockaddr_in inv_src;
};

/* esp_netdev.c: the board (signals, log, applying an image) and main */
extern volatile sig_atomic_t nd_stop_flag;
int64_t nd_now_ms(void);
void nd_sleep_ms(int ms);
void nd_logf(struct netdev *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void nd_hex(const unsigned char *b, size_t n, char *out);
void nd_digest_hex(const EVP_MD *md, const void *data, size_t len, char *out);
void nd_write_file(const char *path, const void *data, size_t len);
void nd_apply_image(struct netdev *d, const char *how, bool fs, const uint8_t *img, size_t len);
void nd_sector_done(struct netdev *d, size_t *sector, bool last);
/* ESP8266 Updater::_verifyEnd (core, non-FLASH_MAP builds), run by Update.end() for every
 * way in (ArduinoOTA, the web form, HTTP pull): an 0xE9 app image whose header byte 3 high
 * nibble names a flash larger than ESP.getFlashChipRealSize() (--chip-size) is refused,
 * UPDATE_ERROR_NEW_FLASH_CONFIG (9), after every byte was written. nd_esp8266_header_flash:
 * the size that nibble names (ESP.magicFlashChipSize), 0 for other images and unknown
 * nibbles (which fit). nd_esp8266_flash_refusal: when d refuses img, writes the Updater's
 * printError text ("ERROR[9]: new Flash config wrong, real size: N", no newline) to out and
 * returns true. */
uint64_t nd_esp8266_header_flash(const uint8_t *img, size_t len);
bool nd_esp8266_flash_refusal(const struct netdev *d, bool fs, const uint8_t *img, size_t len,
                              char *out, size_t cap);

/* netdev_io.c: sockets, reads and writes (through the check-in's TLS session on its fd) */
extern SSL *nd_tls_ssl;
extern int nd_tls_fd;
int nd_listen_on(struct netdev *d, int type, int port);
int nd_bound_port(int fd);
int nd_wait_fd(int fd, short ev, int timeout_ms);
int nd_send_all(int fd, const void *buf, size_t len);
int nd_send_str(int fd, const char *s);
int nd_recv_exact(int fd, uint8_t *buf, size_t len, int timeout_ms);
int nd_recv_line(int fd, char *buf, size_t cap, int timeout_ms);
int nd_recv_head(int fd, char *buf, size_t cap, int timeout_ms);
const char *nd_header_value(const char *head, const char *name, char *out, size_t cap);

/* the protocols: one session (or one check-in) each, blocking */
void nd_ota_udp(struct netdev *d);                /* netdev_espota.c */
void nd_web_session(struct netdev *d, int fd);    /* netdev_webform.c */
void nd_tcpota_session(struct netdev *d, int fd); /* netdev_tcpota.c */
bool nd_want_fs(const struct netdev *d);          /* netdev_pull.c */
void nd_checkin(struct netdev *d, bool fs);       /* netdev_pull.c */

#endif
