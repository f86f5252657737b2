/*
 * ota_fw.c: the OTA endpoint's image cache (firmware sets read once from the catalog,
 * referenced by the connections that serve them), the serving policy of a set (app and
 * filesystem), and a board's target (pinned, or the active profile's for its chip).
 * Loop thread only, except ota_fw_unref (any thread). Split from ota.c (connections and
 * requests), which it shares struct ota with through ota_priv.h.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "board_addr.h"
#include "catalog.h"
#include "line_fw.h"
#include "log.h"
#include "loop.h"
#include "ota_http.h"
#include "ota_image.h"
#include "mdns.h"
#include "ota_priv.h"
#include "ota_tls.h"
#include "slot.h"
#include "station.h"

void ota_errf(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* ---- image cache ---------------------------------------------------------------------- */

struct ota_fw *ota_fw_ref(struct ota_fw *fw)
{
    if (fw)
        atomic_fetch_add(&fw->refs, 1);
    return fw;
}

void ota_fw_unref(struct ota_fw *fw)
{
    if (!fw || atomic_fetch_sub(&fw->refs, 1) != 1)
        return;
    free(fw->data);
    free(fw->data2);
    free(fw->fs_data);
    free(fw);
}

static int split_ref(const char *ref, char *name, size_t nlen, char *version, size_t vlen)
{
    const char *at = ref ? strchr(ref, '@') : NULL;
    if (!at || at == ref || !at[1] || (size_t)(at - ref) >= nlen || strlen(at + 1) >= vlen)
        return -EINVAL;
    memcpy(name, ref, (size_t)(at - ref));
    name[at - ref] = '\0';
    snprintf(version, vlen, "%s", at + 1);
    return catalog_name_valid(name) && catalog_name_valid(version) ? 0 : -EINVAL;
}

int ota_fw_get(struct ota *o, const char *ref, struct ota_fw **out, char *err, size_t errlen)
{
    *out = NULL;
    for (struct ota_fw *f = o->cache; f; f = f->next)
        if (strcmp(f->ref, ref) == 0) {
            *out = ota_fw_ref(f);
            return 0;
        }
    char name[RECORDS_NAME_LEN], version[RECORDS_NAME_LEN];
    if (split_ref(ref, name, sizeof(name), version, sizeof(version)) < 0) {
        ota_errf(err, errlen, "firmware must be \"name@version\" of a catalog set (got \"%s\")",
                 ref ? ref : "");
        return -EINVAL;
    }
    struct catalog_set *set = NULL;
    char cerr[256] = "";
    int rc = catalog_get(station_catalog(o->st), name, version, &set, cerr, sizeof(cerr));
    if (rc == -ENOENT) {
        /* Another station of the line may hold it: fetched in the background (line_fw.h);
         * -EAGAIN until it is here (a check-in is told to come back: 503). */
        char lerr[600] = "";
        int lrc = line_fw_need(station_line_fw(o->st), name, version, NULL, NULL, 0, NULL, 0, lerr,
                               sizeof(lerr));
        if (lrc != 0) {
            ota_errf(err, errlen, "%s", lerr);
            return lrc > 0 ? -EAGAIN : lrc;
        }
    }
    if (rc < 0) {
        ota_errf(err, errlen, "%s", cerr[0] ? cerr : strerror(-rc));
        return rc;
    }
    const struct catalog_region *app = NULL, *app2 = NULL;
    for (size_t i = 0; i < set->n_regions; i++) {
        const struct catalog_region *r = &set->regions[i];
        if (r->kind != CATALOG_KIND_APP)
            continue;
        if (r->slot == CATALOG_SLOT_USER1 || (!app && r->slot == CATALOG_SLOT_NONE))
            app = r;
        else if (r->slot == CATALOG_SLOT_USER2 || (!app2 && r->slot == CATALOG_SLOT_NONE))
            app2 = r;
    }
    if (!app && set->n_regions == 1 && set->regions[0].kind != CATALOG_KIND_FILESYSTEM)
        app = &set->regions[0];
    if (!app) {
        catalog_free_set(set);
        ota_errf(err, errlen,
                 "%s has no application region: network OTA needs the set's app (mark the "
                 "app region \"kind\": \"app\" in the manifest; a filesystem image goes beside "
                 "it as \"kind\": \"filesystem\")",
                 ref);
        return -EINVAL;
    }
    const struct catalog_region *fsr = NULL;
    for (size_t i = 0; i < set->n_regions && !fsr; i++)
        if (set->regions[i].kind == CATALOG_KIND_FILESYSTEM)
            fsr = &set->regions[i];
    struct ota_fw *fw = calloc(1, sizeof(*fw));
    uint8_t *data = fw ? malloc(app->size ? app->size : 1) : NULL;
    uint8_t *fs_data = fw && fsr ? malloc(fsr->size ? fsr->size : 1) : NULL;
    if (!fw || !data || (fsr && !fs_data)) {
        free(fw);
        free(data);
        free(fs_data);
        catalog_free_set(set);
        ota_errf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    memcpy(data, app->data, app->size);
    if (fsr) {
        memcpy(fs_data, fsr->data, fsr->size);
        fw->fs_data = fs_data;
        fw->fs_size = fsr->size;
        fw->fs_offset = fsr->offset;
        snprintf(fw->fs_md5, sizeof(fw->fs_md5), "%s", fsr->md5);
    }
    if (app2) {
        fw->data2 = malloc(app2->size ? app2->size : 1);
        if (fw->data2) {
            memcpy(fw->data2, app2->data, app2->size);
            fw->size2 = app2->size;
            snprintf(fw->md5_2, sizeof(fw->md5_2), "%s", app2->md5);
            fw->dual = app->slot == CATALOG_SLOT_USER1 && app2->slot == CATALOG_SLOT_USER2;
        }
    }
    atomic_init(&fw->refs, 1);
    snprintf(fw->ref, sizeof(fw->ref), "%s@%s", name, version);
    snprintf(fw->name, sizeof(fw->name), "%s", name);
    snprintf(fw->version, sizeof(fw->version), "%s", version);
    fw->chip = set->chip;
    fw->data = data;
    fw->size = app->size;
    snprintf(fw->md5, sizeof(fw->md5), "%s", app->md5);
    fw->gzip = ota_image_is_gzip(data, app->size);
    if (set->chip == ESP_CHIP_ESP8266 && !fw->dual) {
        fw->header_flash = ota_image_esp8266_flash_size(data, app->size);
        fw->have_mode_md5 = ota_image_mode_md5(data, app->size, fw->mode_md5) == 0;
    }
    fw->policy_rc = 1; /* not evaluated */
    catalog_free_set(set);
    fw->next = o->cache;
    o->cache = fw; /* the cache's reference */
    *out = ota_fw_ref(fw);
    return 0;
}

void ota_invalidate(struct ota *o)
{
    if (!o)
        return;
    while (o->cache) {
        struct ota_fw *f = o->cache;
        o->cache = f->next;
        f->next = NULL;
        ota_fw_unref(f);
    }
}

static char *read_small_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = malloc(65537);
    size_t n = buf ? fread(buf, 1, 65536, f) : 0;
    fclose(f);
    if (buf)
        buf[n] = '\0';
    return buf;
}

enum ota_chip ota_chip_of(const char *chip_name)
{
    return chip_name && strcasecmp(chip_name, "ESP8266") == 0 ? OTA_CHIP_ESP8266 : OTA_CHIP_ESP32;
}

int ota_fw_policy(struct ota *o, struct ota_fw *fw, char *err, size_t errlen)
{
    const struct config_profile *p = config_profile(station_config(o->st), NULL);
    bool req = p && p->require_signed;
    const char *key = p ? p->public_key : NULL;
    char pk[sizeof(fw->policy_key)];
    snprintf(pk, sizeof(pk), "%d|%s", req, key ? key : "");
    if (fw->policy_rc <= 0 && strcmp(pk, fw->policy_key) == 0) {
        ota_errf(err, errlen, "%s", fw->policy_msg);
        return fw->policy_rc;
    }
    char *pem = NULL;
    int rc = 0;
    fw->policy_msg[0] = '\0';
    if (key && !(pem = read_small_file(key))) {
        rc = req ? -EINVAL : 0;
        snprintf(fw->policy_msg, sizeof(fw->policy_msg),
                 "cannot read the profile's public_key %s: %s", key, strerror(errno));
    }
    if (rc == 0 && (req || pem)) {
        struct ota_image_policy pol = {.require_signed = req,
                                       .pem_pubkey = pem,
                                       .chip = fw->chip == ESP_CHIP_ESP8266 ? OTA_CHIP_ESP8266
                                                                            : OTA_CHIP_ESP32};
        struct ota_image_info info;
        struct ota_error oe;
        ota_error_clear(&oe);
        rc = ota_image_check(fw->data, fw->size, &pol, &info, &oe);
        if (rc < 0)
            snprintf(fw->policy_msg, sizeof(fw->policy_msg), "%s: %s%s%s", fw->ref, oe.message,
                     oe.advice[0] ? " — " : "", oe.advice);
    }
    free(pem);
    snprintf(fw->policy_key, sizeof(fw->policy_key), "%s", pk);
    fw->policy_rc = rc;
    ota_errf(err, errlen, "%s", fw->policy_msg);
    return rc;
}

int ota_fw_fs_policy(struct ota *o, const struct ota_fw *fw, char *err, size_t errlen)
{
    if (!fw->fs_data) {
        ota_errf(err, errlen,
                 "%s has no filesystem image (add the SPIFFS/LittleFS/FAT image to its manifest "
                 "as a region with \"kind\": \"filesystem\" and import the set again)",
                 fw->ref);
        return -ENOENT;
    }
    const struct config_profile *p = config_profile(station_config(o->st), NULL);
    if (p && p->require_signed) {
        ota_errf(err, errlen,
                 "refusing %s's filesystem image: profile %s requires signed images and the "
                 "station cannot verify a filesystem image (update the filesystem over serial, "
                 "or turn require_signed off)",
                 fw->ref, p->name);
        return -EPERM;
    }
    return 0;
}

int ota_target_of(struct ota *o, const struct records_board *b, char *ref, size_t len, bool *pinned)
{
    ref[0] = '\0';
    if (pinned)
        *pinned = false;
    if (b->target_firmware[0]) {
        snprintf(ref, len, "%s", b->target_firmware);
        if (pinned)
            *pinned = true;
        return 0;
    }
    const struct esp_chip_desc *chip = esp_chip_by_name(b->chip);
    if (!chip)
        return 0;
    const struct config_profile *p = config_profile(station_config(o->st), NULL);
    const struct config_firmware_ref *f = config_profile_ota_firmware(p, chip->chip);
    if (f)
        snprintf(ref, len, "%s@%s", f->name, f->version);
    return 0;
}

int ota_board_target(struct ota *o, const char *mac, char *buf, size_t len, bool *pinned)
{
    struct records_board b;
    if (records_board_get(station_records(o->st), mac, &b, NULL) < 0)
        return -ENOENT;
    return ota_target_of(o, &b, buf, len, pinned);
}

int ota_set_target(struct ota *o, const char *mac, const char *firmware, char *err, size_t errlen)
{
    struct records_board b;
    struct records_error re;
    if (records_board_get(station_records(o->st), mac, &b, &re) < 0) {
        ota_errf(err, errlen, "no board %s in the records", mac);
        return -ENOENT;
    }
    if (firmware && *firmware) {
        struct ota_fw *fw = NULL;
        int rc = ota_fw_get(o, firmware, &fw, err, errlen);
        if (rc < 0)
            return rc;
        const struct esp_chip_desc *chip = esp_chip_by_name(b.chip);
        if (chip && ota_chip_of(b.chip) !=
                        (fw->chip == ESP_CHIP_ESP8266 ? OTA_CHIP_ESP8266 : OTA_CHIP_ESP32)) {
            ota_errf(err, errlen, "%s is built for %s but board %s is an %s", fw->ref,
                     esp_chip_get(fw->chip)->name, b.mac, b.chip);
            ota_fw_unref(fw);
            return -EINVAL;
        }
        rc = ota_fw_policy(o, fw, err, errlen);
        ota_fw_unref(fw);
        if (rc < 0)
            return rc;
    }
    int rc = records_board_set_target(station_records(o->st), b.mac, firmware, &re);
    if (rc < 0) {
        ota_errf(err, errlen, "%s", re.message);
        return rc;
    }
    char data[256];
    snprintf(data, sizeof(data), "{\"target\":\"%s\"}", firmware ? firmware : "");
    station_post_event(o->st, "board.target", NULL, b.mac, 0, data);
    log_board(LOG_LEVEL_INFO, NULL, b.mac, "target firmware %s",
              firmware && *firmware ? firmware : "unpinned (profile)");
    return 0;
}
