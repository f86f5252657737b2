/*
 * fuzz_config: config_load_string on arbitrary text. It must never crash or
 * leak; a success yields a config whose lookups work, a failure yields no
 * config and a one-line message that names the source. The same text is also
 * read as a profile changes file (<data_dir>/profiles.json:
 * config_overlay_check, then merged over the defaults as the daemon does).
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond)
{
    if (!cond)
        abort();
}

static void overlay(const uint8_t *data, size_t size)
{
    char err[512], *norm = NULL;
    int rc = config_overlay_check((const char *)data, size, "fuzz", &norm, err, sizeof(err));
    if (rc != 0) {
        check(rc == -EINVAL || rc == -ENOMEM);
        check(norm == NULL);
        check(strncmp(err, "fuzz: ", 6) == 0);
        for (const char *p = err; *p; p++)
            check((unsigned char)*p >= 0x20 && *p != 0x7f);
        return;
    }
    check(norm != NULL);
    struct config *cfg = NULL;
    rc = config_load_overlay(NULL, norm, &cfg, err, sizeof(err));
    check(rc == 0 ? cfg != NULL : (cfg == NULL && (rc == -EINVAL || rc == -ENOMEM)));
    if (cfg)
        check(cfg->active_profile == NULL || config_profile(cfg, NULL) != NULL);
    config_free(cfg);
    free(norm);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    overlay(data, size);
    char err[512];
    struct config *cfg = NULL;
    int rc = config_load_string((const char *)data, size, "fuzz", &cfg, err, sizeof(err));
    if (rc != 0) {
        check(rc == -EINVAL || rc == -ENOMEM);
        check(cfg == NULL);
        check(strncmp(err, "fuzz: ", 6) == 0);
        for (const char *p = err; *p; p++)
            check((unsigned char)*p >= 0x20 && *p != 0x7f); /* one printable line */
        return 0;
    }
    check(cfg != NULL && err[0] == '\0');
    check(cfg->data_dir && cfg->listen && cfg->listen_host && cfg->udev_tag);
    check(cfg->listen_port > 0 && cfg->max_parallel >= 1);
    for (size_t i = 0; i < cfg->n_slots; i++)
        check(config_slot_label(cfg, cfg->slots[i].id_path) == cfg->slots[i].label);
    for (size_t i = 0; i < cfg->n_bridges; i++)
        check(config_is_known_bridge(cfg, cfg->bridges[i].vid, cfg->bridges[i].pid));
    for (size_t i = 0; i < cfg->n_profiles; i++) {
        const struct config_profile *p = config_profile(cfg, cfg->profiles[i].name);
        check(p == &cfg->profiles[i]);
        check(p->baud >= 9600 && p->baud <= 5000000);
        check(!p->boot_check.enabled || p->boot_check.pattern != NULL);
        for (size_t j = 0; j < p->n_firmware; j++)
            check(config_profile_firmware(p, p->firmware[j].chip) == &p->firmware[j]);
    }
    check(cfg->active_profile == NULL || config_profile(cfg, NULL) != NULL);
    config_free(cfg);
    return 0;
}
