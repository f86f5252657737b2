/*
 * fuzz_records_journal_state: the journal's state file reader (rj_state_read,
 * records_journal.h) on whatever a damaged disk could hold. The input is the
 * file's text before its checksum line; half the runs append the right
 * "crc ..." line so the fields behind the checksum are reached too. Aborts if
 * an accepted file breaks an invariant: more ids than the caller's array, an
 * id <= 0, a field without its NUL, or a file that does not read back the same
 * after rj_state_write.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "records_journal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_IDS 64

static void check(int cond)
{
    if (!cond)
        abort();
}

static char dir[64];

static int write_file(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t w = fwrite(p, 1, n, f);
    fclose(f);
    return w == n ? 0 : -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[128], path2[128], msg[512];
    if (!dir[0]) {
        snprintf(dir, sizeof(dir), "/tmp/fuzz_rj_state.XXXXXX");
        if (!mkdtemp(dir))
            abort();
    }
    snprintf(path, sizeof(path), "%s/state", dir);
    snprintf(path2, sizeof(path2), "%s/state2", dir);
    bool add_crc = size > 0 && (data[0] & 1);
    if (size > 0) {
        data++;
        size--;
    }
    char *buf = malloc(size + 32);
    check(buf != NULL);
    memcpy(buf, data, size);
    size_t n = size;
    if (add_crc)
        n += (size_t)snprintf(buf + n, 32, "crc %08" PRIx32 "\n", rj_crc32(buf, size));
    if (write_file(path, buf, n) < 0)
        abort();
    free(buf);

    int64_t ids[MAX_IDS], ids2[MAX_IDS];
    struct rj_state s = {.ids = ids, .max_ids = MAX_IDS};
    if (rj_state_read(path, &s, msg, sizeof(msg)) != 0)
        return 0;
    check(s.n_ids >= 0 && s.n_ids <= MAX_IDS);
    for (int i = 0; i < s.n_ids; i++)
        check(ids[i] > 0);
    check(memchr(s.station, '\0', sizeof(s.station)) && memchr(s.dsn, '\0', sizeof(s.dsn)) &&
          memchr(s.identity, '\0', sizeof(s.identity)));
    /* what was accepted writes and reads back the same */
    if (rj_state_write(path2, &s, msg, sizeof(msg)) != 0)
        return 0; /* e.g. a field the writer refuses: fine, it was never written by us */
    struct rj_state t = {.ids = ids2, .max_ids = MAX_IDS};
    check(rj_state_read(path2, &t, msg, sizeof(msg)) == 0);
    check(strcmp(s.station, t.station) == 0 && strcmp(s.dsn, t.dsn) == 0 &&
          strcmp(s.identity, t.identity) == 0 && s.schema == t.schema && s.n_ids == t.n_ids);
    check(memcmp(ids, ids2, (size_t)s.n_ids * sizeof(ids[0])) == 0);
    return 0;
}
