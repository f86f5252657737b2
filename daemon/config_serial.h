/*
 * config_serial: the profile key "serial" (struct config_serial, config.h),
 * parsed apart from config.c so that file stays a table of keys. config.c
 * calls config_serial_parse() and reports its error under its key path.
 */
#ifndef ESPSTATION_CONFIG_SERIAL_H
#define ESPSTATION_CONFIG_SERIAL_H

#include <stddef.h>

#include "config.h"

struct json_object;

/*
 * Fills s from v (an object: "format" required, "start" default 1, "offset"
 * optional). 0, or -EINVAL with the failing sub-key in key ("" for v itself)
 * and why; -ENOMEM. s owns its strings either way (config_serial_free).
 */
int config_serial_parse(struct json_object *v, struct config_serial *s, char *key, size_t keylen,
                        char *why, size_t whylen);

/* The profile-level checks that need other keys: the serial offset against the
 * per_board offsets, "{serial}" in boot_check without "serial". 0 or -EINVAL
 * with the key (relative to the profile) and why. */
int config_serial_check_profile(const struct config_profile *p, char *key, size_t keylen, char *why,
                                size_t whylen);

/* The boot_check pattern as regcomp() will see it for a board: "{serial}"
 * replaced by sample (escaped). 0 or -ENAMETOOLONG. */
int config_serial_pattern_sample(const char *pattern, char *out, size_t outlen);

void config_serial_free(struct config_serial *s);

#endif
