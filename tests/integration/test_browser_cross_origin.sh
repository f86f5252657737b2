#!/usr/bin/env bash
# test_browser_cross_origin: a page of another origin in a real browser (Debian's
# chromium through playwright-core) cannot change the station. espstationd runs
# with no api.token (the default: loopback clients are trusted) and a board on
# A1 (its chip has no firmware in the profile, so it idles); app@1.0 is in the
# catalog. tests/browser/cross-origin.spec.mjs serves an attack page as
# http://evil.example:P/ (mapped to 127.0.0.1 inside chromium) that tries no-cors
# fetches, form posts (urlencoded, multipart with a file, text/plain "JSON") and
# preflighted requests against the station; then the station must have started no
# job and kept app@1.0 and the active profile, the station's page under a rebound
# name must be refused, and the status page must still work from its own origin
# (it lists A1; a JSON POST and a multipart validate from it are accepted).
# Afterwards the records show no erase job and no firmware event.
#
# Needs node and chromium (as test_browser.sh): exits 77 (skipped) without them.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/browser_lib.sh"
browser_need test_browser_cross_origin

source "${INTEG_LIB:?INTEG_LIB (tests/integration/lib.sh) must be set}"
source "$HERE/daemon_lib.sh"
source "$HERE/api_lib.sh"

browser_npm
SHOTS=$(cd "$TEST_TMPDIR/.." && pwd)/screenshots/cross-origin
mkdir -p "$SHOTS"

import_esp32_app 51 # app@1.0, files in $FW
make_image_esp esp32 40000 "$WORK/evil.bin" 52 # what the page would replace it with
start_sim esp32 --mac 24:6f:28:00:00:51
CFG=$WORK/station.json
cat >"$CFG" <<JSON
{"ports": [{"uri": "$SIM_PORT", "label": "A1"}],
 "profiles": {"p1": {"firmware": {"esp8266": "app@1.0"}}}, "active_profile": "p1"}
JSON
start_api_daemon "$CFG" --web-root "$SRC/web/static"
wait_sql "SELECT count(*) FROM jobs WHERE ended_at IS NOT NULL;" 1 60
wait_api /api/v1/slots/A1 '.busy == false and .phase != "queued"' 60

rc=0
TEST_TMPDIR=$WORK timeout 300 node "$BROWSER_DIR/cross-origin.spec.mjs" --url "$API" --slot A1 \
    --fw-dir "$FW" --fw-name app --fw-version 1.0 --evil-bin "$WORK/evil.bin" --shots "$SHOTS" >"$WORK/spec.out" 2>&1 || rc=$?
cat "$WORK/spec.out" >&2
[ "$rc" -eq 0 ] || fail "cross-origin.spec.mjs failed (rc=$rc); screenshots in $SHOTS"
grep -Eq '^[0-9]+ passed, 0 failed$' "$WORK/spec.out" || fail "cross-origin.spec.mjs printed no summary"
# The records agree: no erase, nothing imported or deleted; only the page's own info job.
[ "$(db "SELECT count(*) FROM jobs WHERE kind = 'erase';")" = 0 ] ||
    fail "an erase job ran: $(db 'SELECT id, kind, state FROM jobs;')"
[ "$(db "SELECT count(*) FROM events WHERE kind LIKE 'firmware.%';")" = 0 ] ||
    fail "a firmware event: $(db "SELECT kind, data FROM events WHERE kind LIKE 'firmware.%';")"
[ "$(db "SELECT count(*) FROM jobs WHERE kind = 'info';")" = 1 ] ||
    fail "expected the page's own info job: $(db 'SELECT id, kind, state FROM jobs;')"
stop_daemon
done_ok
