/*
 * ota_image: what the station must know about an OTA image before serving or
 * pushing it (PROTOCOL-OTA.md §7).
 *
 *  - kind by first byte: 0xE9 ESP app image, 0xEA NONOS user1/user2 image,
 *    1F 8B gzip (ESP8266 compressed image; the inflated stream is checked for
 *    CRC/ISIZE and an 0xE9 first byte);
 *  - ESP8266 signed framing: payload ‖ signature ‖ u32 LE signature length,
 *    signature = RSASSA-PKCS1-v1_5 over SHA-256 of the payload (which may be
 *    the gzip stream), verified with libcrypto against a PEM public key;
 *  - policy: require_signed refuses unsigned images, a signature that does
 *    not verify is always refused; ESP32 never gets gzip.
 *
 * Limitation: the signed framing is recognised by its trailer (the u32 must
 * equal the key's modulus length, 256 for RSA-2048). Without a key, a
 * trailer of 256/384/512 is reported as "signed, not verified". An unsigned
 * image whose last 4 bytes happen to read 256/384/512 would be taken as
 * signed; ESP images end in a checksum/SHA-256 so this is unlikely.
 */
#ifndef OTA_IMAGE_H
#define OTA_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ota_common.h"

enum ota_image_kind {
    OTA_IMAGE_UNKNOWN = 0, /* first byte none of the below */
    OTA_IMAGE_ESP,         /* 0xE9: ESP8266 Arduino / ESP32 app image */
    OTA_IMAGE_USERBIN,     /* 0xEA 0x04: NONOS SDK user1/user2 image (raw TCP-OTA) */
    OTA_IMAGE_GZIP,        /* 1F 8B: gzip of an image (ESP8266 only) */
    OTA_IMAGE_KIND_COUNT
};

const char *ota_image_kind_to_string(enum ota_image_kind kind);

enum ota_sig_status {
    OTA_SIG_UNSIGNED = 0, /* no signature trailer */
    OTA_SIG_UNVERIFIED,   /* trailer present, no key given */
    OTA_SIG_VALID,        /* verified against the key */
    OTA_SIG_INVALID,      /* trailer present (or expected) but verification failed */
    OTA_SIG_COUNT
};

const char *ota_sig_status_to_string(enum ota_sig_status status);

#define OTA_IMAGE_MAX_INFLATED (32u * 1024u * 1024u)

struct ota_image_info {
    enum ota_image_kind kind; /* of the payload (signature excluded) */
    size_t total_len;         /* whole file */
    size_t payload_len;       /* without signature and its length word */
    size_t sig_len;           /* 0 when unsigned */
    enum ota_sig_status sig;  /* see above */
    bool gzip_ok;             /* gzip: stream inflates, CRC and ISIZE match */
    uint32_t gzip_isize;      /* gzip: ISIZE trailer (uncompressed size mod 2^32) */
    uint8_t inflated_first;   /* gzip: first byte of the inflated image */
    char md5[33];             /* MD5 of the whole file (what x-MD5 / espota carry) */
};

/*
 * Inspects img. pem_pubkey (NUL-terminated PEM, may be NULL) enables the
 * signature check. Returns 0 with *info filled even when the signature is
 * invalid (info->sig says so); -EINVAL for an empty image, -ENOTSUP for a
 * key type other than RSA, -EINVAL for an unreadable key.
 */
int ota_image_inspect(const uint8_t *img, size_t len, const char *pem_pubkey,
                      struct ota_image_info *info, struct ota_error *err);

/*
 * Verifies the RSA PKCS#1 v1.5 SHA-256 signature of the signed framing.
 * Returns 0 valid; -EBADMSG invalid signature; -ENOENT unsigned (no trailer
 * of the key's size); -EINVAL/-ENOTSUP key problems.
 */
int ota_image_verify(const uint8_t *img, size_t len, const char *pem_pubkey, struct ota_error *err);

struct ota_image_policy {
    bool require_signed;    /* refuse unsigned images */
    const char *pem_pubkey; /* key to verify with (required when require_signed) */
    enum ota_chip chip;     /* target chip: ESP32 refuses gzip */
};

/*
 * Inspects img and applies the policy: 0 acceptable (info filled), else a
 * clear error: -EPERM unsigned while signatures are required, -EBADMSG
 * signature invalid or gzip corrupt, -ENOTSUP gzip for an ESP32,
 * -EINVAL not an image the device would take.
 */
int ota_image_check(const uint8_t *img, size_t len, const struct ota_image_policy *policy,
                    struct ota_image_info *info, struct ota_error *err);

/* True if buf starts with the gzip magic 1F 8B. */
bool ota_image_is_gzip(const uint8_t *buf, size_t len);

/*
 * ESP8266 app image (0xE9) header facts the Arduino updaters act on (PROTOCOL-OTA.md §2.2, §7).
 * ota_image_esp8266_flash_size: the flash size (bytes) byte 3's high nibble declares, as
 * ESP.magicFlashChipSize reads it (0 512 KB, 1 256 KB, 2 1 MB, 3 2 MB, 4 4 MB, 8 8 MB,
 * 9 16 MB); 0 when not an 0xE9 image or a nibble it does not know (those always fit).
 * ESP8266httpUpdate refuses a larger one than the chip (-107) before writing anything.
 * ota_image_mode_md5: MD5s of img with its flash-mode byte (2) set to 0..3 (QIO, QOUT, DIO,
 * DOUT): the Updater writes the running mode there, so the board's x-ESP8266-sketch-md5 can
 * equal one of them. -EINVAL when img is not an 0xE9 image.
 */
uint64_t ota_image_esp8266_flash_size(const uint8_t *img, size_t len);

/*
 * The same check is in the ESP8266 core's Updater (Updater::_verifyEnd, non-FLASH_MAP builds),
 * run by Update.end() for ArduinoOTA and the web form too: the whole image is taken, then
 * refused with UPDATE_ERROR_NEW_FLASH_CONFIG, "ERROR[9]: new Flash config wrong, real size: N".
 * ota_image_flash_mismatch_text: "the image header declares a H KB flash, the board's chip
 * has C KB" into out. ota_image_refusal_real_size: N from such a device text (case-
 * insensitive "real size:"), 0 when absent. OTA_ADVICE_FLASH_SIZE: what to do.
 */
#define OTA_ADVICE_FLASH_SIZE                                                                      \
    "build the image for the board's real flash size (Arduino IDE: Tools > Flash Size; "           \
    "PlatformIO: board_build.ldscript), or push a firmware set made for this board"
void ota_image_flash_mismatch_text(uint64_t header_flash, uint64_t chip_size, char *out,
                                   size_t cap);
uint64_t ota_image_refusal_real_size(const char *device_text);
int ota_image_mode_md5(const uint8_t *img, size_t len, char out[4][33]);

#endif
