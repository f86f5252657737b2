/*
 * records_journal: the file format of the records store's write-behind journal
 * (records_journal.c), split out so the unit tests and the fuzz target reach
 * the codec without a database.
 *
 * The file is text, one entry a line:
 *
 *   espstation-records-journal 1\n                       (header, once)
 *   <crc32 of payload, 8 lower-case hex> <payload>\n      (each entry)
 *
 * payload = op TAB seq TAB ts { TAB field }: op one letter (records_journal.c
 * lists them), seq the entry's number (1, 2, ... within the file), ts the unix
 * ms the write was made. A field "\N" is SQL NULL; otherwise backslash, tab,
 * LF and CR are written \\ \t \n \r (so no field holds a raw tab or newline).
 * A line without its newline (the process died while writing it), with a CRC
 * that does not match or that does not parse ends the good part of the file:
 * what is before it is kept, the rest is reported.
 */
#ifndef RECORDS_JOURNAL_H
#define RECORDS_JOURNAL_H

#include <stddef.h>
#include <stdint.h>

#define RJ_HEADER "espstation-records-journal 1\n"
#define RJ_MAX_FIELDS 20
#define RJ_LINE_MAX (64 * 1024) /* longer lines are refused when parsing */

struct rj_entry {
    char op;
    int64_t seq;
    int64_t ts;
    int nf;
    const char *f[RJ_MAX_FIELDS]; /* NULL = SQL NULL; parse: valid during the callback */
};

/* The entry as one line ("crc payload\n"), malloc'd; *len its length. NULL
 * when out of memory or nf is out of range. */
char *rj_encode(const struct rj_entry *e, size_t *len);

/* Called per good entry; 0 consumes it and goes on, non-zero stops before it
 * (it is not counted in *good). */
typedef int (*rj_entry_cb)(const struct rj_entry *e, void *ctx);

/*
 * Parses entries from buf[0..len) (no header: the caller skips it). *good gets
 * the length of the part consumed (whole lines the callback took). Returns the
 * entries delivered; -EBADMSG when a damaged entry ended the good part (msg:
 * "corrupt entry at byte N: <why>"), and when the buffer ends in a line without
 * its newline and `partial_ok` is 0 ("truncated last entry ..."); with
 * partial_ok (reading a file in chunks) such a line only ends the call.
 */
int rj_parse(const char *buf, size_t len, int partial_ok, rj_entry_cb cb, void *ctx, size_t *good,
             char *msg, size_t msg_size);

/*
 * The journal's state file (journal path + ".state", records_journal_state.c):
 * what a station needs to start while its database is unreachable. Text:
 *
 *   espstation-records-state 1\n
 *   station <name>\n          this station's name
 *   dsn <dsn>\n               the DSN without its password (the database's address)
 *   database <identity>\n     "<system id>:<oid>:<name>" as the server told it
 *   schema <n>\n              the schema version the database had
 *   ids <a>-<b> ...\n         the job ids reserved for an outage, not yet used
 *   crc <crc32 of everything before this line, 8 hex>\n
 *
 * Written whole to a temporary file, fsync'd and renamed over the old one.
 */
uint32_t rj_crc32(const char *p, size_t n); /* CRC-32 (IEEE), as the entries use */

#define RJ_STATE_HEADER "espstation-records-state 1\n"
#define RJ_STATE_TEXT 512

struct rj_state {
    char station[RJ_STATE_TEXT];
    char dsn[RJ_STATE_TEXT];
    char identity[RJ_STATE_TEXT];
    int schema;
    int64_t *ids; /* the caller's array of max_ids */
    int n_ids, max_ids;
};

/* 0; -ENOENT no file; -EBADMSG damaged or not a state file (msg says why);
 * other -errno unreadable. */
int rj_state_read(const char *path, struct rj_state *s, char *msg, size_t msg_size);
/* 0 or -errno (msg says why); durable when it returns. */
int rj_state_write(const char *path, const struct rj_state *s, char *msg, size_t msg_size);

#endif
