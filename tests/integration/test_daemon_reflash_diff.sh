#!/usr/bin/env bash
# test_daemon_reflash_diff: espstationd re-flashes a board that holds an older
# build by writing only the sectors that changed (issue 11 item 4), and the job
# record says how many bytes it did not send: a job log line, the
# job.finished event's skipped_bytes and the job's own skipped_bytes (in the
# records, schema 9, and GET /api/v1/jobs/{id}). A new build (app@1.1: other version string,
# so the first sector and the checksum/SHA-256 sector differ; same partition
# data) writes just those sectors; the profile's "diff": false writes every
# region whole.
source "${INTEG_LIB:?INTEG_LIB (tests/integration/lib.sh) must be set}"
source "$(dirname "$0")/daemon_lib.sh"
source "$(dirname "$0")/api_lib.sh"

make_set() { # make_set VERSION: app@VERSION in $WORK/fw-VERSION, imported
    local d=$WORK/fw-$1
    mkdir -p "$d"
    python3 "$MKIMAGE" --chip esp32 --size 200000 --out "$d/app.bin" --seed 11 --version "$1" ||
        fail "mkespimage failed"
    make_random 3072 "$d/part.bin" 12
    cat >"$d/manifest.json" <<JSON
{"name": "app", "version": "$1", "chip": "esp32", "flash_size": "4MB",
 "regions": [{"offset": "0x8000", "file": "part.bin", "kind": "data"},
             {"offset": "0x10000", "file": "app.bin", "kind": "app"}]}
JSON
    import_fw "$d"
}
make_set 1.0
make_set 1.1
A10=$WORK/fw-1.0/app.bin
A11=$WORK/fw-1.1/app.bin
APP=$(size_of "$A11")
TOTAL=$((APP + 3072))
# The 4 KiB sectors of the app that differ between the builds, as "size@offset" writes.
want=$({ cmp -l "$A10" "$A11" || true; } | awk -v n="$APP" '{ s = int(($1 - 1) / 4096)
        if (!(s in seen)) { seen[s] = 1; len = (s + 1) * 4096 > n ? n - s * 4096 : 4096
                            printf "%d@0x%08x\n", len, 65536 + s * 4096 } }')
nsec=$(printf '%s\n' "$want" | grep -c .)
if [ "$nsec" -lt 1 ] || [ "$nsec" -gt 3 ]; then
    fail "the two builds differ in $nsec sectors (expected 1-3)"
fi
diffbytes=$(printf '%s\n' "$want" | awk -F@ '{ s += $1 } END { print s }')

begins() { # the writes sim.log shows since the mark, as "size@offset" lines
    sim_log_new | awk '$3 == "FLASH_DEFL_BEGIN" || $3 == "FLASH_BEGIN" {
        sub("size=", "", $5); sub("offset=", "", $6); print $5 "@" $6 }'
}

start_sim esp32
CFG=$WORK/station.json
config() { # config VERSION DIFF
    cat >"$CFG" <<JSON
{"ports": [{"uri": "$SIM_DIR/tty", "label": "A1"}],
 "profiles": {"line": {"firmware": {"esp32": "app@$1"}, "diff": $2}}}
JSON
}
job_sql() { # job_sql N COLUMN-EXPR: of the N-th job
    db "SELECT $2 FROM jobs WHERE id = (SELECT id FROM jobs ORDER BY id LIMIT 1 OFFSET $(($1 - 1)))"
}
job_id() { job_sql "$1" id; }
api_skipped() { # api_skipped N: skipped_bytes of the N-th job in GET /api/v1/jobs/{id}
    api GET "/api/v1/jobs/$(job_id "$1")"
    expect_status 200
    jq -r '.skipped_bytes' <<<"$RESP"
}
event_skipped() { # event_skipped N: job.finished's skipped_bytes of the N-th job
    db "SELECT json_extract(e.data, '$.skipped_bytes') FROM events e WHERE e.kind = 'job.finished'
        AND e.job_id = (SELECT id FROM jobs ORDER BY id LIMIT 1 OFFSET $(($1 - 1)))"
}

# --- 1.0 on a fresh board: everything written, nothing skipped ------------------------
config 1.0 true
start_api_daemon "$CFG"
wait_sql "SELECT count(*) FROM jobs WHERE state = 'passed'" 1 90
[ "$(api_skipped 1)" = 0 ] || fail "fresh board: the job's skipped_bytes = '$(api_skipped 1)'"
stop_daemon 0
[ "$(event_skipped 1)" = 0 ] || fail "fresh board: job.finished skipped_bytes = '$(event_skipped 1)'"
flash_region_equals "$SIM_DIR" 0x10000 "$A10"

# --- 1.1 over 1.0: only the changed sectors --------------------------------------------
config 1.1 true
sim_log_mark
start_api_daemon "$CFG"
wait_sql "SELECT count(*) FROM jobs WHERE state = 'passed'" 2 90
skipped=$((TOTAL - diffbytes))
[ "$(api_skipped 2)" = $skipped ] ||
    fail "GET /api/v1/jobs/{id} skipped_bytes = '$(api_skipped 2)', expected $skipped: $RESP"
stop_daemon 0
[ "$(job_sql 2 skipped_bytes)" = $skipped ] || fail "jobs.skipped_bytes = '$(job_sql 2 skipped_bytes)'"
flash_region_equals "$SIM_DIR" 0x10000 "$A11"
flash_region_equals "$SIM_DIR" 0x8000 "$WORK/fw-1.1/part.bin"
[ "$(begins)" = "$want" ] || fail "1.1 over 1.0 wrote: $(begins | xargs) (expected: $(xargs <<<"$want"))"
[ "$(event_skipped 2)" = $skipped ] || fail "job.finished skipped_bytes = '$(event_skipped 2)', expected $skipped"
n=$(db "SELECT count(*) FROM job_log WHERE job_id = (SELECT id FROM jobs ORDER BY id LIMIT 1 OFFSET 1)
        AND line = 're-flashed only what changed: $skipped of $TOTAL bytes were already on the board and not sent'")
[ "$n" = 1 ] || fail "no 'only what changed' line in the job log: $(db 'SELECT line FROM job_log')"
[ "$(job_sql 2 bytes)" = $TOTAL ] || fail "job bytes: $(job_sql 2 bytes)"
# The partition data matched as a whole (the compare's MD5 is reused: no second ask).
sim_log_new | grepq 'SPI_FLASH_MD5 len=16 addr=0x00008000' || fail "the partition data was not compared"
[ "$(sim_log_new | grep -c 'SPI_FLASH_MD5 len=16 addr=0x00008000')" = 1 ] ||
    fail "the partition data's MD5 was asked for more than once"

# --- "diff": false: back to 1.0, every region written whole -----------------------------
config 1.0 false
sim_log_mark
start_api_daemon "$CFG"
wait_sql "SELECT count(*) FROM jobs WHERE state = 'passed'" 3 90
[ "$(api_skipped 3)" = 0 ] || fail "diff off: the job's skipped_bytes = '$(api_skipped 3)'"
stop_daemon 0
[ "$(begins | xargs)" = "3072@0x00008000 $(size_of "$A10")@0x00010000" ] ||
    fail "diff off wrote: $(begins | xargs)"
[ "$(event_skipped 3)" = 0 ] || fail "diff off: job.finished skipped_bytes = '$(event_skipped 3)'"
flash_region_equals "$SIM_DIR" 0x10000 "$A10"
integrity_ok
done_ok
