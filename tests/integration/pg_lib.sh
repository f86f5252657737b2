# shellcheck shell=bash
#
# pg_lib.sh: a private PostgreSQL 15 server for the tests (sourced, never run).
#
#   pg_start DIR   initdb + pg_ctl start in DIR (created, must not exist or be
#                  empty): unix socket in DIR, TCP on 127.0.0.1 at a free port,
#                  no fsync (a test server: the data dir is thrown away).
#                  Sets PG_HOST (the socket dir), PG_PORT, PG_DSN (libpq
#                  keyword/value form, database "postgres", superuser).
#   pg_stop        stops it (fast shutdown) and removes DIR unless KEEP_TMP=1.
#
# PostgreSQL refuses to run as root, so as root initdb and the server run as
# PG_USER (default "nobody") via runuser, in a DIR that user owns.
# When the server cannot start, pg_start says why (with the server's log) and
# returns non-zero: the caller FAILS, it does not skip — a CI that lost its
# PostgreSQL must not look green.
#
# Knobs: PG_BINDIR (default /usr/lib/postgresql/15/bin), PG_USER.

: "${PG_BINDIR:=/usr/lib/postgresql/15/bin}"
: "${PG_USER:=nobody}"

_pg_as() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u "$PG_USER" -- "$@"
    else
        "$@"
    fi
}

_pg_free_port() {
    python3 "$(dirname "${BASH_SOURCE[0]}")/free_port.py" 2>/dev/null || echo $((20000 + RANDOM % 10000))
}

pg_start() {
    PG_DIR=$1
    if [ ! -x "$PG_BINDIR/initdb" ] || [ ! -x "$PG_BINDIR/pg_ctl" ]; then
        echo "pg_lib: PostgreSQL 15 not installed ($PG_BINDIR/initdb missing):" \
            "apt-get install postgresql (scripts/setup.sh does)" >&2
        return 1
    fi
    mkdir -p "$PG_DIR"
    if [ "$(id -u)" = 0 ]; then
        chown "$PG_USER" "$PG_DIR" || return 1
        chmod 0700 "$PG_DIR"
    fi
    if ! _pg_as "$PG_BINDIR/initdb" -D "$PG_DIR/data" -U postgres --auth=trust --no-locale \
        -E UTF8 --no-sync >"$PG_DIR/initdb.log" 2>&1; then
        echo "pg_lib: initdb failed in $PG_DIR/data:" >&2
        cat "$PG_DIR/initdb.log" >&2
        return 1
    fi
    local try
    for try in 1 2 3; do
        PG_PORT=$(_pg_free_port)
        if _pg_as "$PG_BINDIR/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 30 \
            -o "-k $PG_DIR -p $PG_PORT -h 127.0.0.1 -c fsync=off -c full_page_writes=off" \
            start >/dev/null 2>&1; then
            PG_HOST=$PG_DIR
            PG_DSN="host=$PG_HOST port=$PG_PORT user=postgres dbname=postgres"
            export PG_DIR PG_HOST PG_PORT PG_DSN
            return 0
        fi
    done
    echo "pg_lib: PostgreSQL did not start in $PG_DIR (last port $PG_PORT); server log:" >&2
    cat "$PG_DIR/server.log" >&2 2>/dev/null
    return 1
}

pg_stop() {
    [ -n "${PG_DIR:-}" ] || return 0
    if [ -f "$PG_DIR/data/postmaster.pid" ]; then
        _pg_as "$PG_BINDIR/pg_ctl" -D "$PG_DIR/data" -m fast -w -t 30 stop >/dev/null 2>&1 || true
    fi
    if [ "${KEEP_TMP:-0}" != 1 ]; then
        rm -rf "$PG_DIR"
    fi
    PG_DIR=
}

# pg_stop_then CLEANUP: for an EXIT trap, `trap 'pg_stop_then _daemon_cleanup' EXIT`: stops
# the server, then runs CLEANUP with the script's exit status in $? (the test libraries'
# cleanups read it and end with `exit`, so a pg_stop written after them never ran and the
# server outlived the test).
pg_stop_then() {
    local rc=$?
    pg_stop
    if [ "$rc" -eq 0 ]; then
        "$@"
    else
        (exit "$rc") || "$@"
    fi
}

# pg_test_db DBNAME: for a test: a private server in a fresh dir under $TEST_TMPDIR (PGD), a
# database DBNAME on it, DSN naming it, pgq SQL (one query, unaligned rows). A server that
# cannot start FAILS the test (fail from lib.sh), never skips it.
pg_test_db() {
    PGD=$(mktemp -d "$TEST_TMPDIR/pg.XXXXXX")
    rmdir "$PGD"
    pg_start "$PGD" ||
        fail "PostgreSQL 15 could not be started (see above); this test needs it: apt-get install postgresql (scripts/setup.sh)"
    psql -X -q -v ON_ERROR_STOP=1 "$PG_DSN" -c "CREATE DATABASE $1" >/dev/null ||
        fail "cannot create the test database $1"
    DSN="host=$PG_HOST port=$PG_PORT user=postgres dbname=$1"
}
pgq() { psql -X -At -v ON_ERROR_STOP=1 "$DSN" -c "$1"; }
