#!/usr/bin/env bash
#
# pg_with.sh CMD [ARGS...]: runs CMD with a private PostgreSQL 15 server
# (pg_lib.sh) and ESPSTATION_TEST_PG_DSN set to it, then stops the server.
# CTest runs the records unit tests a second time through this, so both
# backends pass the same suite. Exits non-zero when the server cannot start
# (a failure, never a skip) or with CMD's status.
set -uo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/pg_lib.sh"

root=${TEST_TMPDIR:-${TMPDIR:-/tmp}}
mkdir -p "$root"
dir=$(mktemp -d "$root/pg.XXXXXX") || exit 1
rmdir "$dir"
trap pg_stop EXIT
if ! pg_start "$dir"; then
    echo "pg_with: FAIL: cannot start PostgreSQL for the test (see above)" >&2
    exit 1
fi
export ESPSTATION_TEST_PG_DSN=$PG_DSN
"$@"
