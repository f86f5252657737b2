/*
 * config: espstationd's configuration, loaded from one JSON file (json-c).
 *
 * Owns: the config file format (docs/CONFIG.md), its defaults and its
 * validation. A station must start with no file at all, so every key is
 * optional and config_load(NULL, ...) gives the defaults.
 *
 * Invariants:
 *  - Unknown keys are errors, never ignored: a typo ("bauds") must not make a
 *    production line silently flash at the default baud.
 *  - An error message names the file, the key path and the problem, e.g.
 *    `config /etc/espstation.json: profiles.line1.baud: must be an integer from
 *    9600 to 5000000 (got "fast")`. Only the first problem is reported.
 *  - A loaded struct config is immutable and self-contained: every string and
 *    array in it is owned by it and released by config_free(). There are no
 *    globals; a reload (SIGHUP) loads a new struct and swaps the pointer, and
 *    the old one is freed once nothing borrows from it.
 *  - Relative data_dir / stub_dir in a file are resolved against the directory
 *    of that file (systemd starts the daemon in /); from a string (tests) they
 *    are kept as given.
 */
#ifndef ESPSTATION_CONFIG_H
#define ESPSTATION_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "esp_chip.h"
#include "esp_loader.h"

#define CONFIG_DEFAULT_LISTEN "127.0.0.1:8080"
#define CONFIG_DEFAULT_MAX_PARALLEL 8
#define CONFIG_DEFAULT_UDEV_TAG "ESPSTATION"
#define CONFIG_DEFAULT_BAUD 921600u
#define CONFIG_DEFAULT_BOOT_TIMEOUT_MS 10000
#define CONFIG_DEFAULT_BOOT_BAUD 115200u
#define CONFIG_DEFAULT_BAUD_PROBE_AFTER 20
#define CONFIG_DEFAULT_MAX_BODY_BYTES (64u * 1024 * 1024)
#define CONFIG_DEFAULT_API_MAX_CONNECTIONS 1000
#define CONFIG_DEFAULT_API_IDLE_TIMEOUT_S 60
#define CONFIG_DEFAULT_OTA_MAX_CONNECTIONS 256
#define CONFIG_DEFAULT_OTA_IDLE_TIMEOUT_S 30

/* A USB-serial bridge whose ttys are ours (VID:PID as in udev ID_VENDOR_ID/ID_MODEL_ID). */
struct config_bridge {
    uint16_t vid, pid;
    char *name;        /* "CP210x"; may be NULL */
    uint32_t max_baud; /* highest reliable baud; 0 = the built-in table's (daemon/bridges.c) */
    int reset;         /* enum bridge_reset; -1 = the built-in table's */
};

/* A physical port (udev ID_PATH) with a human label ("A1"). */
struct config_slot {
    char *id_path;
    char *label;
};

/* A manually attached port: a transport URI (pty path, tcp://host:port, /dev/ttyUSB0). */
struct config_port {
    char *uri;
    char *label; /* may be NULL */
};

/* One "chip family -> firmware set" entry of a profile ("esp32": "demo@1.0.0"). */
struct config_firmware_ref {
    enum esp_chip chip;
    char *name;    /* catalog name, safe characters only */
    char *version; /* catalog version, safe characters only */
};

struct config_boot_check {
    bool enabled;     /* false when the profile has no boot_check */
    char *pattern;    /* POSIX extended regex, compiles with regcomp(REG_EXTENDED) */
    int timeout_ms;   /* 100 .. 600000 */
    uint32_t baud;    /* console baud after reset: 115200; 9600 .. 5000000 */
    char **capture;   /* names of the pattern's groups 1..n_capture (e.g. "version", "ip") */
    size_t n_capture; /* <= number of groups in pattern */
};

/* "per_board": a region whose bytes differ per board (ESP-IDF mfg_gen NVS images,
 * certificates, serial numbers): each board takes one file of the pool directory,
 * in name order, never given to another board (records pool_items). */
#define CONFIG_MAX_PER_BOARD 4
struct config_per_board {
    char *name;      /* pool name: [A-Za-z0-9_-], 1..32; the records key */
    char *dir;       /* directory of *.bin files */
    uint32_t offset; /* flash offset, 4 KiB aligned */
};

/* "serial": {"format": "ESP-%06u", "start": 1, "offset": "0x3ff000"}: a serial number
 * per board from one sequence per profile, shared by the stations of a line (records
 * serials); the text is available to boot_check ("{serial}" in its pattern) and, with
 * offset, written to the flash as a 4 KiB region (config_serial.c). */
struct config_serial {
    bool enabled;    /* false when the profile has no "serial" */
    char *format;    /* serial_fmt_check() holds */
    int64_t start;   /* 1; 0 .. RECORDS_SERIAL_MAX_NUMBER */
    bool has_offset; /* "offset" given */
    uint32_t offset; /* flash offset of the serial's sector, 4 KiB aligned */
};

struct config_profile {
    char *name;
    struct config_firmware_ref *firmware; /* at most one per chip family */
    size_t n_firmware;
    bool erase_all;       /* false */
    uint32_t baud;        /* 921600; 9600 .. 5000000 (0 when baud_auto) */
    bool baud_auto;       /* "baud": "auto": the adapter's highest reliable rate (bridges.h) */
    int baud_probe_after; /* 20; a slot held below the profile's rate by link errors tries one
                           * step up after this many clean jobs; 0 = never */
    bool stub;            /* true */
    bool stub_set;        /* "stub" given: it wins over a firmware set's esptool_args.stub */
    bool compress;        /* true */
    bool verify;          /* true */
    bool skip_if_same;    /* true: a board whose flash MD5s already match is not flashed */
    bool diff;            /* true: re-flash only the 4 KiB sectors that differ (esp_flash_opts) */
    struct config_boot_check boot_check;
    int retries;          /* 1; 0 .. 10 extra attempts per board */
    enum esp_after after; /* ESP_AFTER_HARD_RESET */
    bool after_set;       /* "after" given: it wins over a firmware set's esptool_args.after */
    /* Network OTA: the release boards of this profile should run, per chip family
     * ("ota_firmware"; a family without an entry falls back to "firmware"), its app
     * region is the OTA image. require_signed: only signed images (verified with
     * public_key, a PEM RSA key) are served or pushed. ota_password: ArduinoOTA. */
    struct config_firmware_ref *ota_firmware;
    size_t n_ota_firmware;
    bool require_signed;
    char *public_key;   /* NULL = none */
    char *ota_password; /* NULL = none */
    /* "checkin_auth": HTTP Basic credentials the boards' updaters send with their
     * check-ins (HTTPUpdate / ESP8266httpUpdate setAuthorization). A check-in with
     * them confirms the address it comes from (pushes go only to confirmed
     * addresses); wrong ones are refused; required: one without them too. */
    char *checkin_user;     /* NULL = no checkin_auth */
    char *checkin_password; /* set when checkin_user is */
    bool checkin_required;  /* false */
    struct config_per_board *per_board;
    size_t n_per_board;
    struct config_serial serial;
};

/* "tls": {"cert": PATH, "key": PATH} of a server (api.tls, ota.tls); cert NULL: plain
 * HTTP. The files are read and checked when the server starts (ota_tls.h), and again on a
 * reload (SIGHUP) when they changed: a good pair serves new connections, a bad one is
 * logged and the old one kept (web/http_tls.c, daemon/ota.c). */
struct config_tls {
    char *cert; /* PEM: the server certificate, then any intermediate CA certificates */
    char *key;  /* PEM: its private key, unencrypted */
};

/* "ota": the device-facing HTTP update endpoint (off unless listen is set). */
struct config_ota {
    bool enabled;        /* listen given */
    char *listen_host;   /* "0.0.0.0" */
    int listen_port;     /* 0 = any free port (written to <data_dir>/ota.port) */
    bool enrol_unknown;  /* true: an unknown MAC checking in gets a record; false: 404 */
    bool strict;         /* 403 for requests that are not from the ESP updaters */
    int espota_port;     /* local TCP port for ArduinoOTA connect-backs; 0 = ephemeral */
    int max_connections; /* 256; 1 .. 4096, lowered to the fd budget (fdbudget.h) */
    int idle_timeout_s;  /* a connection without I/O for this long is closed; 30, 1 .. 3600 */
    int mdns_interval_s; /* avahi-browse discovery period; 60, 0 = off */
    char *webform_user;  /* HTTP Basic user for web-form pushes; "admin" */
    /* HTTPS; its files re-read on a reload (SIGHUP) when they changed, kept on failure */
    struct config_tls tls;
    /* Enrolment by check-ins without credentials (unknown_boards "enrol"): at most
     * enrol_rate_per_min new boards a minute (a burst of as many), and at most
     * enrol_max boards known only that way (unconfirmed address, never flashed over
     * serial). Check-ins with the profile's checkin_auth are not limited. */
    int enrol_rate_per_min; /* 30; 1 .. 6000 */
    int enrol_max;          /* 500; 0 .. 1000000 (0: none) */
};

struct config_api {
    char *token;              /* bearer token for mutating calls; NULL = none configured */
    struct config_tls tls;    /* HTTPS (libmicrohttpd with GnuTLS); files re-read on SIGHUP */
    bool read_requires_token; /* false */
    size_t max_body_bytes;    /* 64 MiB; 1 KiB .. 1 GiB */
    int max_connections;      /* 1000; 1 .. 65536, lowered to the fd budget; at start only */
    int idle_timeout_s;       /* 60; 1 .. 3600; at start only */
    /* Host names (besides IP literals, localhost and this machine's name) that a
     * request's Host header may carry: a reverse proxy's or a DNS name of the
     * station. Lowercase, no port. Anything else is refused (DNS rebinding). */
    char **allowed_hosts;
    size_t n_allowed_hosts;
};

struct config {
    char *path;        /* file it came from; NULL for defaults or a string */
    char *data_dir;    /* $XDG_STATE_HOME/espstation, else ./espstation-data */
    char *listen;      /* "127.0.0.1:8080" as written */
    char *listen_host; /* "127.0.0.1", "::1" (brackets removed), "0.0.0.0" */
    uint16_t listen_port;
    int max_parallel; /* 8; 1 .. 256 */
    struct config_bridge *bridges;
    size_t n_bridges;
    char *udev_tag; /* "ESPSTATION" */
    struct config_slot *slots;
    size_t n_slots;
    struct config_port *ports;
    size_t n_ports;
    char *stub_dir; /* NULL = the build's default */
    struct config_api api;
    struct config_ota ota;
    struct config_profile *profiles;
    size_t n_profiles;
    char *active_profile; /* NULL = none: boards are identified and recorded, not flashed */
    /* "station": this station's name in a line ([A-Za-z0-9._-], 1..63); NULL = the
     * host name (characters outside the set become '-'). Read at start only. */
    char *station;
    /* "records": where the history lives. Read at start only. */
    struct config_records {
        bool postgresql; /* "backend": "postgresql"; false = "sqlite" (<data_dir>/records.db) */
        char *dsn;       /* libpq connection string, with postgresql only */
    } records;
    /* "line": this station in a line of stations (daemon/line.c). Read at start only. */
    struct config_line {
        int heartbeat_s;  /* 5; 1 .. 3600: how often the station writes its heartbeat */
        int gone_after_s; /* 3 x heartbeat_s; heartbeat_s + 1 .. 86400: a station whose
                             heartbeat is older is gone (its jobs are interrupted) */
        char *address;    /* this station's REST base URL for the line view; NULL = from
                             listen and the host's name */
    } line;
};

/*
 * Loads path (NULL = no file: defaults only). On success *out is a new config
 * owned by the caller (config_free) and 0 is returned. On failure *out is NULL,
 * err (if errlen > 0) holds one line naming the file, key and problem, and the
 * return is -ENOENT/-EACCES/-EIO (file), -EINVAL (content) or -ENOMEM.
 */
int config_load(const char *path, struct config **out, char *err, size_t errlen);

/*
 * config_load() with an overlay merged over the file's JSON before validation:
 * overlay is a JSON object text with optional "profiles" (name -> profile,
 * each replacing or adding that profile) and "active_profile" (a name or
 * null). The REST API keeps its profile changes this way, so they are
 * validated exactly like the file and survive a reload. overlay NULL is
 * config_load().
 */
int config_load_overlay(const char *path, const char *overlay, struct config **out, char *err,
                        size_t errlen);

/*
 * The REST API's profile changes as the daemon keeps them on disk
 * (<data_dir>/profiles.json): {"format": CONFIG_OVERLAY_FORMAT, "version": 1,
 * "profiles": {name: profile, ...}, "active_profile": name | null} (profiles
 * and active_profile optional). config_overlay_check() checks the shape of
 * len bytes of such text (untrusted: the file may be damaged) and on success
 * sets *norm (if norm; caller frees) to the overlay text for
 * config_load_overlay(); the profiles' contents are validated there. 0,
 * -EINVAL (err: one line, after origin, NULL = "profiles") or -ENOMEM.
 */
#define CONFIG_OVERLAY_FORMAT "espstation-profiles"
int config_overlay_check(const char *text, size_t len, const char *origin, char **norm, char *err,
                         size_t errlen);

/*
 * Same for JSON text in memory (len bytes, need not be NUL-terminated). origin
 * names the source in messages (NULL: "config"); relative paths stay as given.
 */
int config_load_string(const char *json, size_t len, const char *origin, struct config **out,
                       char *err, size_t errlen);

void config_free(struct config *cfg); /* NULL allowed */

/* Profile by name; name NULL = the active profile. NULL if none. Borrowed from cfg. */
const struct config_profile *config_profile(const struct config *cfg, const char *name);

/* The firmware a profile puts on chip, NULL if none. Borrowed. */
const struct config_firmware_ref *config_profile_firmware(const struct config_profile *p,
                                                          enum esp_chip chip);

/* The OTA release of a profile for chip: its ota_firmware entry, else its firmware
 * entry; NULL if neither. Borrowed. */
const struct config_firmware_ref *config_profile_ota_firmware(const struct config_profile *p,
                                                              enum esp_chip chip);

/* Label of the slot at udev ID_PATH id_path, NULL if it has none. Borrowed. */
const char *config_slot_label(const struct config *cfg, const char *id_path);

/* True if vid:pid is one of the configured bridges. */
bool config_is_known_bridge(const struct config *cfg, uint16_t vid, uint16_t pid);

#endif
