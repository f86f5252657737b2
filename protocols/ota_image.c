/*
 * ota_image: image kind detection, gzip integrity, ESP8266 signed framing and
 * the signature policy (PROTOCOL-OTA.md §7).
 *
 * Owns: reading the trailer u32 (LE) as the signature length, EVP_DigestVerify
 * with SHA-256 and the RSA default (PKCS#1 v1.5) padding, streaming zlib
 * inflate of gzip payloads into a scratch buffer (output discarded).
 * Invariant: never trusts a length from the file without bounds checks.
 */
#include "ota_image.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <zlib.h>

static const char *const kind_names[OTA_IMAGE_KIND_COUNT] = {
    [OTA_IMAGE_UNKNOWN] = "unknown",
    [OTA_IMAGE_ESP] = "esp-app",
    [OTA_IMAGE_USERBIN] = "userbin",
    [OTA_IMAGE_GZIP] = "gzip",
};

const char *ota_image_kind_to_string(enum ota_image_kind kind)
{
    if ((unsigned)kind >= OTA_IMAGE_KIND_COUNT)
        return "unknown";
    return kind_names[kind];
}

static const char *const sig_names[OTA_SIG_COUNT] = {
    [OTA_SIG_UNSIGNED] = "unsigned",
    [OTA_SIG_UNVERIFIED] = "signed-unverified",
    [OTA_SIG_VALID] = "signed-valid",
    [OTA_SIG_INVALID] = "signed-invalid",
};

const char *ota_sig_status_to_string(enum ota_sig_status status)
{
    if ((unsigned)status >= OTA_SIG_COUNT)
        return "unknown";
    return sig_names[status];
}

bool ota_image_is_gzip(const uint8_t *buf, size_t len)
{
    return len >= 2 && buf[0] == 0x1F && buf[1] == 0x8B;
}

uint64_t ota_image_esp8266_flash_size(const uint8_t *img, size_t len)
{
    static const uint16_t kb[16] = {512, 256, 1024, 2048, 4096, 0, 0, 0, 8192, 16384};
    if (!img || len < 4 || img[0] != 0xE9)
        return 0;
    return (uint64_t)kb[img[3] >> 4] * 1024u;
}

void ota_image_flash_mismatch_text(uint64_t header_flash, uint64_t chip_size, char *out, size_t cap)
{
    snprintf(out, cap,
             "the image header declares a %" PRIu64 " KB flash, the board's chip has %" PRIu64
             " KB",
             header_flash / 1024, chip_size / 1024);
}

uint64_t ota_image_refusal_real_size(const char *device_text)
{
    const char *p = device_text ? strcasestr(device_text, "real size:") : NULL;
    if (!p)
        return 0;
    p += strlen("real size:");
    while (*p == ' ')
        p++;
    uint64_t v = 0;
    for (; *p >= '0' && *p <= '9' && v < UINT64_MAX / 10; p++)
        v = v * 10 + (uint64_t)(*p - '0');
    return v;
}

int ota_image_mode_md5(const uint8_t *img, size_t len, char out[4][33])
{
    if (!img || len < 4 || img[0] != 0xE9)
        return -EINVAL;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx)
        return -ENOMEM;
    int rc = 0;
    for (uint8_t mode = 0; mode < 4 && rc == 0; mode++) {
        const uint8_t head[3] = {img[0], img[1], mode};
        unsigned char d[EVP_MAX_MD_SIZE];
        unsigned int n = 0;
        if (EVP_DigestInit_ex(ctx, EVP_md5(), NULL) != 1 || EVP_DigestUpdate(ctx, head, 3) != 1 ||
            EVP_DigestUpdate(ctx, img + 3, len - 3) != 1 || EVP_DigestFinal_ex(ctx, d, &n) != 1 ||
            n != 16) {
            rc = -EIO;
            break;
        }
        for (unsigned i = 0; i < 16; i++) {
            out[mode][2 * i] = "0123456789abcdef"[d[i] >> 4];
            out[mode][2 * i + 1] = "0123456789abcdef"[d[i] & 15];
        }
        out[mode][32] = '\0';
    }
    EVP_MD_CTX_free(ctx);
    return rc;
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static enum ota_image_kind kind_of(const uint8_t *p, size_t len)
{
    if (ota_image_is_gzip(p, len))
        return OTA_IMAGE_GZIP;
    if (len >= 1 && p[0] == 0xE9)
        return OTA_IMAGE_ESP;
    if (len >= 2 && p[0] == 0xEA && p[1] == 0x04)
        return OTA_IMAGE_USERBIN;
    return OTA_IMAGE_UNKNOWN;
}

/* Trailer length if the file ends in "sig ‖ u32 LE len" with len == want (0: any of 256/384/512).
 */
static size_t trailer_sig_len(const uint8_t *img, size_t len, size_t want)
{
    if (len < 4)
        return 0;
    uint32_t n = le32(img + len - 4);
    if (want ? n != want : (n != 256 && n != 384 && n != 512))
        return 0;
    if ((size_t)n + 4 >= len) /* needs a non-empty payload */
        return 0;
    return n;
}

static int load_key(const char *pem, EVP_PKEY **out, struct ota_error *err)
{
    BIO *bio = BIO_new_mem_buf(pem, -1);
    if (!bio)
        return ota_error_set(err, -ENOMEM, OTA_STAGE_IMAGE, NULL, "out of memory reading key");
    EVP_PKEY *key = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
    BIO_free(bio);
    if (!key)
        return ota_error_set(err, -EINVAL, OTA_STAGE_IMAGE,
                             "give the PEM public key (-----BEGIN PUBLIC KEY-----) that matches "
                             "the firmware's public.key",
                             "the signing public key could not be read");
    if (EVP_PKEY_get_base_id(key) != EVP_PKEY_RSA) {
        EVP_PKEY_free(key);
        return ota_error_set(err, -ENOTSUP, OTA_STAGE_IMAGE,
                             "use an RSA key (RSA-2048 is what the ESP8266 signing tools make)",
                             "only RSA signing keys are supported");
    }
    *out = key;
    return 0;
}

static int verify_with(EVP_PKEY *key, const uint8_t *img, size_t len, struct ota_error *err)
{
    size_t want = (size_t)EVP_PKEY_get_size(key);
    size_t sig_len = trailer_sig_len(img, len, want);
    if (sig_len == 0)
        return ota_error_set(err, -ENOENT, OTA_STAGE_IMAGE,
                             "sign the image (payload, then the signature, then its length as a "
                             "little-endian u32), e.g. with the core's signing.py",
                             "the image is not signed (no %zu-byte signature trailer)", want);
    size_t payload = len - 4 - sig_len;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx)
        return ota_error_set(err, -ENOMEM, OTA_STAGE_IMAGE, NULL, "out of memory");
    int ok = EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, key) == 1 &&
             EVP_DigestVerify(ctx, img + payload, sig_len, img, payload) == 1;
    EVP_MD_CTX_free(ctx);
    if (!ok)
        return ota_error_set(err, -EBADMSG, OTA_STAGE_IMAGE,
                             "the image was signed with another key or changed after signing; "
                             "re-sign it with the private key matching the board's public.key",
                             "the image signature does not verify (RSA PKCS#1 v1.5 SHA-256)");
    return 0;
}

int ota_image_verify(const uint8_t *img, size_t len, const char *pem_pubkey, struct ota_error *err)
{
    if (!img || len == 0)
        return ota_error_set(err, -EINVAL, OTA_STAGE_IMAGE, NULL, "the image is empty");
    if (!pem_pubkey)
        return ota_error_set(err, -EINVAL, OTA_STAGE_IMAGE, "configure the signing public key",
                             "no public key to verify the signature with");
    EVP_PKEY *key = NULL;
    int rc = load_key(pem_pubkey, &key, err);
    if (rc < 0)
        return rc;
    rc = verify_with(key, img, len, err);
    EVP_PKEY_free(key);
    return rc;
}

/* Inflates a gzip payload, discarding output; fills isize/first byte. 0 ok or -EBADMSG. */
static int check_gzip(const uint8_t *p, size_t len, struct ota_image_info *info)
{
    if (len < 18)
        return -EBADMSG;
    info->gzip_isize = le32(p + len - 4);
    z_stream zs;
    memset(&zs, 0, sizeof(zs));
    if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK)
        return -ENOMEM;
    uint8_t out[16384];
    uint64_t total = 0;
    int rc = Z_OK;
    zs.next_in = (Bytef *)(uintptr_t)p;
    size_t left = len;
    while (rc != Z_STREAM_END) {
        if (zs.avail_in == 0) {
            uInt chunk = left > 1u << 30 ? 1u << 30 : (uInt)left;
            if (chunk == 0)
                break;
            zs.avail_in = chunk;
            left -= chunk;
        }
        zs.next_out = out;
        zs.avail_out = sizeof(out);
        rc = inflate(&zs, Z_NO_FLUSH);
        size_t got = sizeof(out) - zs.avail_out;
        if (total == 0 && got > 0)
            info->inflated_first = out[0];
        total += got;
        if (rc != Z_OK && rc != Z_STREAM_END)
            break;
        if (total > OTA_IMAGE_MAX_INFLATED) {
            rc = Z_DATA_ERROR;
            break;
        }
    }
    size_t trailing = zs.avail_in + left;
    inflateEnd(&zs);
    if (rc != Z_STREAM_END || trailing != 0 || (uint32_t)total != info->gzip_isize)
        return -EBADMSG;
    info->gzip_ok = true;
    return 0;
}

int ota_image_inspect(const uint8_t *img, size_t len, const char *pem_pubkey,
                      struct ota_image_info *info, struct ota_error *err)
{
    memset(info, 0, sizeof(*info));
    if (!img || len == 0)
        return ota_error_set(err, -EINVAL, OTA_STAGE_IMAGE, "choose a non-empty firmware file",
                             "the image is empty");
    info->total_len = len;
    info->payload_len = len;
    if (ota_md5_hex(img, len, info->md5) < 0)
        return ota_error_set(err, -EIO, OTA_STAGE_IMAGE, NULL, "MD5 computation failed");
    if (pem_pubkey) {
        EVP_PKEY *key = NULL;
        int rc = load_key(pem_pubkey, &key, err);
        if (rc < 0)
            return rc;
        size_t want = (size_t)EVP_PKEY_get_size(key);
        info->sig_len = trailer_sig_len(img, len, want);
        if (info->sig_len) {
            struct ota_error verr;
            ota_error_clear(&verr);
            info->sig = verify_with(key, img, len, &verr) == 0 ? OTA_SIG_VALID : OTA_SIG_INVALID;
        } else if (trailer_sig_len(img, len, 0)) {
            /* A trailer of another key size: signed, but not by a key of this size. */
            info->sig_len = trailer_sig_len(img, len, 0);
            info->sig = OTA_SIG_INVALID;
        }
        EVP_PKEY_free(key);
    } else {
        info->sig_len = trailer_sig_len(img, len, 0);
        info->sig = info->sig_len ? OTA_SIG_UNVERIFIED : OTA_SIG_UNSIGNED;
    }
    if (info->sig_len)
        info->payload_len = len - 4 - info->sig_len;
    info->kind = kind_of(img, info->payload_len);
    if (info->kind == OTA_IMAGE_GZIP)
        (void)check_gzip(img, info->payload_len, info);
    return 0;
}

int ota_image_check(const uint8_t *img, size_t len, const struct ota_image_policy *policy,
                    struct ota_image_info *info, struct ota_error *err)
{
    if (policy->require_signed && !policy->pem_pubkey)
        return ota_error_set(err, -EINVAL, OTA_STAGE_IMAGE,
                             "configure the public key that matches the boards' signing key",
                             "signed images are required but no public key is configured");
    int rc = ota_image_inspect(img, len, policy->pem_pubkey, info, err);
    if (rc < 0)
        return rc;
    if (info->sig == OTA_SIG_INVALID)
        return ota_error_set(err, -EBADMSG, OTA_STAGE_IMAGE,
                             "the image was signed with another key or changed after signing; "
                             "re-sign it with the private key matching the board's public.key",
                             "the image is signed but the signature does not verify");
    if (policy->require_signed && info->sig != OTA_SIG_VALID)
        return ota_error_set(err, -EPERM, OTA_STAGE_IMAGE,
                             "this profile requires signed firmware: sign the image (signing.py "
                             "or openssl dgst -sha256 -sign) and upload the signed file",
                             "refusing an unsigned image: signatures are required");
    if (info->kind == OTA_IMAGE_GZIP) {
        if (policy->chip == OTA_CHIP_ESP32)
            return ota_error_set(err, -ENOTSUP, OTA_STAGE_IMAGE,
                                 "serve the uncompressed .bin to ESP32 boards",
                                 "ESP32 boards do not accept gzip-compressed images (first byte "
                                 "must be 0xE9)");
        if (!info->gzip_ok)
            return ota_error_set(err, -EBADMSG, OTA_STAGE_IMAGE,
                                 "re-create it with gzip -9 from the plain .bin",
                                 "the gzip image is corrupt (inflate, CRC or size check failed)");
        if (info->inflated_first != 0xE9)
            return ota_error_set(err, -EINVAL, OTA_STAGE_IMAGE,
                                 "compress the firmware .bin itself (gzip -9 firmware.bin)",
                                 "the gzip image does not contain an ESP image (first inflated "
                                 "byte 0x%02X, expected 0xE9)",
                                 info->inflated_first);
    } else if (info->kind == OTA_IMAGE_UNKNOWN) {
        return ota_error_set(err, -EINVAL, OTA_STAGE_IMAGE,
                             "choose the application .bin (first byte 0xE9), not an ELF, HEX, "
                             "HTML or merged factory image",
                             "not a firmware image the device accepts (first byte 0x%02X)", img[0]);
    }
    return 0;
}
