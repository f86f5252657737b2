/*
 * zcompress: the smallest zlib stream we can make of a flash image, for the
 * bytes that go over the wire in FLASH_DEFL_DATA.
 *
 * zopfli (Google's exhaustive deflate encoder) writes standard deflate inside
 * a zlib wrapper, so the flasher stubs and the ESP32 ROM inflate it exactly
 * like zlib's output, at the same cost on the chip; on real ESP images it is
 * 1.7-3.4 % smaller than zlib level 9 and 20-60 times slower to make. So it is used
 * where an image is compressed once and sent many times (the firmware catalog
 * at import, the CLI when asked with --zopfli), never per job.
 *
 * Linked by the daemon (catalog) and the CLI; protocols/ stays zlib-only.
 */
#ifndef ZCOMPRESS_H
#define ZCOMPRESS_H

#include <stddef.h>
#include <stdint.h>

/* zopfli iterations for catalog imports. Measured on a 2-core VM (bench/README.md,
 * "zopfli on the real images"): 1 MiB of real firmware takes about 1.1 s (0.9 s at
 * 1 iteration, 1.4 s at 10); 10 and 15 iterations make no smaller stream there. */
#define ZCOMPRESS_ITERATIONS 5

/* Below this many bytes of zlib -9 output zopfli is not tried: it would save a few
 * dozen bytes (under 1 ms at 921600 Bd), and on such highly repetitive data it
 * takes 0.1 s even for a few KB. */
#define ZCOMPRESS_MIN_ZLIB 1024

enum zcompress_method { ZCOMPRESS_ZLIB9, ZCOMPRESS_ZOPFLI };

const char *zcompress_method_to_string(enum zcompress_method m);

/*
 * Compresses data (len may be 0) into a zlib stream: zlib level 9, and where
 * that gives ZCOMPRESS_MIN_ZLIB bytes or more, zopfli with `iterations` (1..100)
 * as well; the smaller one that inflates back to exactly data is returned in
 * *out (owned, free()) with its length and, if method is not NULL, which
 * encoder made it. A zopfli stream that does not
 * inflate back (never seen; checked because the stream is cached and flashed
 * many times) is dropped for zlib's. Returns 0, -EINVAL or -ENOMEM.
 */
int zcompress_best(const uint8_t *data, size_t len, int iterations, uint8_t **out, size_t *out_len,
                   enum zcompress_method *method);

#endif
