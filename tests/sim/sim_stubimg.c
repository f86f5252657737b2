/*
 * sim_stubimg: --stub-dir check. When a stub directory is given, the RAM
 * image uploaded with MEM_BEGIN/MEM_DATA must equal the text and data
 * segments of <dir>/<stub_name>.json (loaded with the protocol library's
 * esp_stub_load), otherwise MEM_END fails and no OHAI is sent.
 */
#include <string.h>

#include "esp_chip.h"
#include "esp_error.h"
#include "esp_stub.h"
#include "sim.h"

static bool segment_matches(const struct sim *s, const char *what, uint32_t addr,
                            const uint8_t *want, size_t len)
{
    if (len == 0)
        return true;
    for (size_t i = 0; i < s->n_mem; i++) {
        const struct sim_mem_seg *m = &s->mem[i];
        if (m->addr != addr)
            continue;
        if (m->size != len) {
            sim_log("stub mismatch: %s at 0x%08x is %u bytes, expected %zu", what, addr, m->size,
                    len);
            return false;
        }
        for (size_t j = 0; j < len; j++) {
            if (m->data[j] != want[j]) {
                sim_log("stub mismatch: %s differs at 0x%08zx", what, addr + j);
                return false;
            }
        }
        return true;
    }
    sim_log("stub mismatch: no %s segment uploaded at 0x%08x", what, addr);
    return false;
}

bool sim_stub_image_ok(struct sim *s)
{
    if (!s->stub_dir)
        return true;
    const struct esp_chip_desc *desc = esp_chip_by_name(s->chip->lib_name);
    struct esp_stub *st = NULL;
    struct esp_error err;
    memset(&err, 0, sizeof(err));
    int rc = desc ? esp_stub_load(s->stub_dir, desc, &st, &err) : -1;
    if (rc != 0 || !st) {
        sim_log("stub check: cannot load %s stub from %s (%d %s)", s->chip->name, s->stub_dir, rc,
                err.message);
        return false;
    }
    bool ok = segment_matches(s, "text", st->text_start, st->text, st->text_len) &&
              segment_matches(s, "data", st->data_start, st->data, st->data_len);
    if (ok)
        sim_log("stub image matches %s.json", desc->stub_name);
    esp_stub_free(st);
    return ok;
}
