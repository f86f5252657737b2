#!/usr/bin/env bash
# The newcomer's first run (issue 8 part 5): scripts/demo.sh, the README's main
# command, run non-interactively from an EMPTY build directory with shortened
# timings, as on a fresh machine, in a copy of the source tree as a clone has it
# (git's tracked and not-ignored files: no build/, no .cache/, nothing a full test
# build left behind; build/stubs added as scripts/setup.sh would fetch them). It must build everything it runs (esp_netdev
# included: without it no board ever checks in), pass every stage and leave the
# five boards on 1.1.0 after the network update; and a stage that fails must be
# named, with a non-zero exit:
#   1. fresh build dir: exit 0, the demo's own build has esp_netdev, every board
#      checked in over the network and reports 1.1.0 in the records (checked
#      here, not taken from the demo's word), no persona failed;
#   2. a persona program that does not exist (DEMO_NETDEV): exit 1, "demo
#      FAILED at stage 'boards online'" with esp_sim's reason (DIR/net/failed);
#   3. a build directory that cannot be created: exit 1, stage 'build'.
# The demo builds its own gcc binaries whatever build runs this test, so in the
# sanitizer build (same script, same binaries again) it skips; DEMO_TEST_ALWAYS=1
# runs it anyway. Needs the flasher stubs in build/stubs (scripts/test.sh and
# scripts/setup.sh fetch them); setup.sh itself is a quick no-op when every
# package is installed, so no root is needed.
source "${INTEG_LIB:?INTEG_LIB (tests/integration/lib.sh) must be set}"

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
if [ "${DEMO_TEST_ALWAYS:-0}" != 1 ] &&
    grep -qs '^ESPSTATION_SANITIZE:BOOL=ON' "$(dirname "$ESP_SIM")/../CMakeCache.txt"; then
    log "SKIP: the demo builds and runs its own gcc binaries; once per suite run (normal build) is enough"
    exit 77
fi
[ -f "$ROOT/build/stubs/esp32.json" ] || fail "no flasher stubs in $ROOT/build/stubs (run scripts/setup.sh)"

# The tree the demo runs in: what a fresh clone holds (outside a git checkout, the tree).
SRCDIR=$ROOT
if git -C "$ROOT" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    SRCDIR=$WORK/clone
    mkdir -p "$SRCDIR/build"
    (cd "$ROOT" && git ls-files -z --cached --others --exclude-standard |
        while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
        tar --null -T - -cf -) | tar -xf - -C "$SRCDIR" || fail "cannot copy the source tree"
    cp -r "$ROOT/build/stubs" "$SRCDIR/build/stubs"
    log "source tree as a clone has it: $(find "$SRCDIR" -type f | wc -l) files in $SRCDIR"
fi

# run_demo NAME [VAR=VALUE...]: scripts/demo.sh, non-interactive and quick, its
# output in $WORK/NAME.out and its exit status in DEMO_RC. The ctest build's
# binaries are kept out of its environment: it must use what it built.
run_demo() {
    local name=$1
    shift
    DEMO_RC=0
    env -u ESPSTATIOND -u ESP_SIM -u ESPSTATION -u STUB_DIR TMPDIR="$WORK" \
        DEMO_JOBS=2 DEMO_HOLD=0 DEMO_SPEED=0 DEMO_GAP=0 DEMO_CHECKIN_MS=300 DEMO_PORT=0 \
        DEMO_NET="$TNET" DEMO_TIMEOUT=60 DEMO_DIR="$WORK/$name" "$@" \
        timeout 540 bash "$SRCDIR/scripts/demo.sh" </dev/null >"$WORK/$name.out" 2>&1 || DEMO_RC=$?
    log "demo '$name' exited $DEMO_RC"
}
show() { tail -n 40 "$WORK/$1.out" >&2; }

BUILD=$WORK/build
[ ! -e "$BUILD" ] || fail "$BUILD exists before the demo"

log "1. the whole demo from an empty build directory (configure + build + run)"
t0=$SECONDS
run_demo ok DEMO_BUILD_DIR="$BUILD"
log "   took $((SECONDS - t0)) s"
[ "$DEMO_RC" -eq 0 ] || { show ok; fail "the demo failed (exit $DEMO_RC)"; }
DB=$WORK/ok/data/records.db
[ -f "$DB" ] || fail "no records at $DB"
q() { sqlite3 -cmd '.timeout 2000' "$DB" "$1"; }
n=$(q "SELECT count(*) FROM boards WHERE running_version = '1.1.0'")
[ "$n" -eq 5 ] || { show ok; fail "$n of 5 boards report 1.1.0"; }
n=$(q "SELECT count(*) FROM board_ota WHERE checkins > 0")
[ "$n" -eq 5 ] || fail "$n of 5 boards checked in over the network"
n=$(q "SELECT count(DISTINCT board_mac) FROM jobs WHERE kind = 'ota-pull' AND state = 'passed'
       AND firmware LIKE '%@1.1.0'")
[ "$n" -eq 5 ] || fail "$n of 5 boards pulled 1.1.0 over the network"
n=$(q "SELECT count(*) FROM jobs WHERE kind = 'flash' AND state = 'passed'")
[ "$n" -eq 5 ] || fail "$n of 5 serial flash jobs passed"
for i in 0 1 2 3 4; do
    d=$WORK/ok/board$i
    grep -q 'net: persona up' "$d/sim.log" || fail "board$i: no 'net: persona up' in its sim.log"
    ! grep -q 'net: persona failed' "$d/sim.log" || fail "board$i: $(grep 'persona failed' "$d/sim.log")"
    [ ! -e "$d/net/failed" ] || fail "board$i: net/failed: $(cat "$d/net/failed")"
done
for f in cli/espstation daemon/espstationd tests/esp_sim tests/netdev/esp_netdev; do
    [ -x "$BUILD/$f" ] || fail "the demo did not build $f in DEMO_BUILD_DIR"
done
grep -q '^demo passed' "$WORK/ok.out" || { show ok; fail "no 'demo passed' line"; }

log "2. a persona program that cannot run: the demo names the stage and exits 1"
run_demo broken DEMO_BUILD_DIR="$BUILD" DEMO_SETUP=0 DEMO_CLI=0 DEMO_BOARDS=2 \
    DEMO_NETDEV="$WORK/missing/esp_netdev"
[ "$DEMO_RC" -eq 1 ] || { show broken; fail "exit $DEMO_RC with a missing persona (want 1)"; }
grep -q "demo FAILED at stage 'boards online'" "$WORK/broken.out" ||
    { show broken; fail "the failed stage is not named 'boards online'"; }
grep -q "network persona failed: cannot run $WORK/missing/esp_netdev" "$WORK/broken.out" ||
    { show broken; fail "the boards' reason (net/failed) is not shown"; }
! grep -q 'demo passed' "$WORK/broken.out" || fail "'demo passed' printed by a failed demo"
[ -s "$WORK/broken/board0/net/failed" ] || fail "no board0/net/failed flag"

log "3. a build directory that cannot be made: stage 'build'"
: >"$WORK/not-a-dir"
run_demo nobuild DEMO_BUILD_DIR="$WORK/not-a-dir/build" DEMO_SETUP=0
[ "$DEMO_RC" -eq 1 ] || { show nobuild; fail "exit $DEMO_RC with an impossible build dir (want 1)"; }
grep -q "demo FAILED at stage 'build'" "$WORK/nobuild.out" ||
    { show nobuild; fail "the failed stage is not named 'build'"; }

log "PASS"
