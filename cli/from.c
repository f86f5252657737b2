/*
 * from: `flash --from PATH`, a build's output (protocols/buildsrc) as the files to flash.
 *
 * The build is recognised and checked before the port is touched; the set is picked once
 * the chip is known (an ESP Web Tools manifest has one build per chip family). The files
 * become struct cli_file entries (copies: the engine patches bootloader headers in place),
 * the flash settings the build names become the defaults of --flash-mode/size/freq, and
 * what was recognised is logged and put into the result as "source".
 */
#include "cli.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "buildsrc.h"

int cli_from_load(const char *path, struct buildsrc **src, struct esp_error *err)
{
    return buildsrc_load(path, src, err);
}

void cli_from_free(struct buildsrc *src)
{
    buildsrc_free(src);
}

uint32_t cli_from_flash_size(const struct buildsrc *src)
{
    return src && src->n_sets == 1 && !src->sets[0].flash_size_detect ? src->sets[0].flash_size : 0;
}

void cli_from_esptool_args(struct cli_output *out, const struct buildsrc *src,
                           struct cli_options *opt)
{
    if (!src->has_before && !src->has_after && !src->has_stub)
        return;
    const char *d = src->descriptor ? src->descriptor : "the build";
    if (src->has_before && !opt->before_given)
        opt->before = src->before;
    if (src->has_after && !opt->after_given)
        opt->after = src->after;
    bool stub_kept = src->has_stub && src->stub && opt->no_stub; /* --no-stub wins */
    if (src->has_stub && !src->stub)
        opt->no_stub = true;
    cli_logf(out, ESP_LOG_INFO, "%s: reset %s, leave %s, %s%s", d,
             esp_before_to_string(opt->before), esp_after_to_string(opt->after),
             opt->no_stub ? "ROM loader only (no stub)" : "with the flasher stub",
             (src->has_before && opt->before_given) || (src->has_after && opt->after_given) ||
                     stub_kept
                 ? " (the command line's options win over the build's)"
                 : "");
}

static const char *format_title(enum buildsrc_format f)
{
    switch (f) {
    case BUILDSRC_ESP_IDF:
        return "an ESP-IDF build";
    case BUILDSRC_PLATFORMIO:
        return "a PlatformIO build";
    case BUILDSRC_ARDUINO:
        return "an Arduino export";
    case BUILDSRC_WEB_TOOLS:
        return "an ESP Web Tools manifest";
    case BUILDSRC_MERGED:
        return "a merged image";
    }
    return "a build";
}

int cli_from_files(struct cli_output *out, const struct buildsrc *src,
                   const struct esp_chip_desc *chip, json_object *res, struct cli_file **files,
                   size_t *n, struct cli_from_settings *fs, struct esp_error *err)
{
    *files = NULL;
    *n = 0;
    memset(fs, 0, sizeof(*fs));
    /* One set: take it (the engine's chip check refuses a wrong one, --force overrides);
     * several: the one for this chip. */
    const struct buildsrc_set *set =
        src->n_sets == 1 ? &src->sets[0] : buildsrc_pick(src, chip, err);
    if (!set)
        return err->code;

    json_object *o = buildsrc_to_json(src);
    json_object_object_del(o, "sets");
    json_object *so = buildsrc_set_to_json(set);
    json_object_object_foreach(so, key, val)
    {
        json_object_object_add(o, key, json_object_get(val));
    }
    json_object_put(so);
    json_object_object_add(res, "source", o);

    cli_logf(out, ESP_LOG_INFO, "Recognised %s in %s%s%s%s: %s, %zu region%s, %s@%s",
             format_title(src->format), src->dir, src->descriptor ? " (" : "",
             src->descriptor ? src->descriptor : "", src->descriptor ? ")" : "",
             set->chip ? set->chip->name : "?", set->n_parts, set->n_parts == 1 ? "" : "s",
             src->name, src->version);
    for (size_t i = 0; i < src->n_notes; i++)
        cli_logf(out, ESP_LOG_INFO, "%s", src->notes[i]);

    if (set->flash_mode >= 0)
        snprintf(fs->mode, sizeof(fs->mode), "%s", esp_flash_mode_to_string(set->flash_mode));
    if (set->flash_size_detect)
        snprintf(fs->size, sizeof(fs->size), "detect");
    else if (set->flash_size)
        snprintf(fs->size, sizeof(fs->size), "%" PRIu32 "KB", set->flash_size / 1024);
    if (set->flash_freq_mhz)
        snprintf(fs->freq, sizeof(fs->freq), "%um", set->flash_freq_mhz);

    struct cli_file *f = calloc(set->n_parts ? set->n_parts : 1, sizeof(*f));
    if (!f)
        return esp_error_set(err, -ENOMEM, ESP_STAGE_PREPARE, NULL, "out of memory");
    *files = f;
    for (size_t i = 0; i < set->n_parts; i++) {
        const struct buildsrc_part *p = &set->parts[i];
        f[i].offset = p->offset;
        f[i].path = p->path; /* borrowed from src, which outlives the files */
        f[i].data = malloc(p->len);
        if (!f[i].data) {
            *n = i;
            return esp_error_set(err, -ENOMEM, ESP_STAGE_PREPARE, NULL, "out of memory");
        }
        memcpy(f[i].data, p->data, p->len);
        f[i].len = p->len;
        cli_md5(f[i].data, f[i].len, f[i].md5);
        cli_logf(out, ESP_LOG_DEBUG, "%s: %zu bytes for 0x%08" PRIx32 " (%s)", p->path, p->len,
                 p->offset, buildsrc_role_to_string(p->role));
    }
    *n = set->n_parts;
    return 0;
}
