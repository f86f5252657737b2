#!/usr/bin/env bash
# test_api_profiles_second: a second profile created through the API does not stop the
# line (issue 9, finding 5). The config file has one profile and no active_profile, so
# that one is active; PUT /api/v1/profiles/<new> answers 200, the first profile stays
# active (the API's changes now name it, profiles.json says so, the profile.changed event
# has "kept_active"), it survives a restart, and the next board plugged in is flashed
# with it. When the operator then chooses no profile at all (PUT /profiles/active
# {"name": null}), a board that arrives is identified and recorded, not flashed, and says
# why where the technician looks: its slot shows the reason and what to do (naming the
# profiles and the API call), a slot.no_profile event carries the same, the daemon logs
# a warning.
source "${INTEG_LIB:?INTEG_LIB (tests/integration/lib.sh) must be set}"
source "$(dirname "$0")/daemon_lib.sh"
source "$(dirname "$0")/api_lib.sh"

import_esp32_app 7
TOKEN=t0k3n
CFG=$WORK/station.json
cat >"$CFG" <<JSON
{"api": {"token": "$TOKEN"}, "profiles": {"line": {"firmware": {"esp32": "app@1.0"}, "baud": 460800}}}
JSON
start_api_daemon "$CFG"
api GET /api/v1/profiles
expect_jq '.active == "line"'

apij PUT /api/v1/profiles/second '{"firmware": {"esp32": "app@1.0"}}'
expect_status 200
api GET /api/v1/profiles
expect_jq '.active == "line" and ([.profiles[].name] | sort) == ["line", "second"]'
jq -e '.active_profile == "line"' "$DATA_DIR/profiles.json" >/dev/null ||
    fail "profiles.json does not keep the active profile: $(cat "$DATA_DIR/profiles.json")"
ev=$(db "SELECT data FROM events WHERE kind = 'profile.changed' ORDER BY id DESC LIMIT 1;")
[ "$(jq -c '[.name, .active, .kept_active]' <<<"$ev")" = '["second",false,"line"]' ] ||
    fail "profile.changed: $ev"
wait_log 'profile line was active as the only profile and stays active' 5
# a later change to the new profile changes nothing about that
apij PUT /api/v1/profiles/second '{"firmware": {"esp32": "app@1.0"}, "baud": 230400}'
expect_status 200
stop_daemon
start_api_daemon "$CFG"
api GET /api/v1/profiles
expect_jq '.active == "line"'

# the next board is flashed
start_sim esp32
S1=$SIM_DIR
apij POST /api/v1/ports "{\"uri\": \"$S1/tty\", \"label\": \"P1\"}"
expect_status 201
wait_sql "SELECT state || '|' || firmware FROM jobs WHERE kind = 'flash';" "passed|app@1.0" 90
flash_region_equals "$S1" 0x10000 "$FW/app.bin"

# --- no active profile, chosen on purpose: the board says why it is not flashed ------------
apij PUT /api/v1/profiles/active '{"name": null}'
expect_status 200
start_sim esp32
S2=$SIM_DIR
apij POST /api/v1/ports "{\"uri\": \"$S2/tty\", \"label\": \"P2\"}"
expect_status 201
wait_sql "SELECT count(*) FROM jobs WHERE kind = 'flash' AND slot = 'P2' AND state = 'skipped';" 1 60
api GET /api/v1/slots/P2
expect_status 200
expect_jq '.phase == "skipped"'
jqr .error.message | grepq '^no active profile: ESP32 identified and recorded, not flashed (2 profile(s) defined, none chosen)' ||
    fail "slot message: $RESP"
jqr .error.advice | grepq 'PUT /api/v1/profiles/active .*profiles: line, second' ||
    fail "slot advice: $RESP"
ev=$(db "SELECT slot || '|' || data FROM events WHERE kind = 'slot.no_profile';")
[ "$(wc -l <<<"$ev")" = 1 ] || fail "slot.no_profile events: $ev"
[ "${ev%%|*}" = P2 ] || fail "slot.no_profile slot: $ev"
[ "$(jq -c '[.chip, .profiles]' <<<"${ev#*|}")" = '["ESP32",["line","second"]]' ] ||
    fail "slot.no_profile data: $ev"
wait_log 'slot P2.*no active profile.*PUT /api/v1/profiles/active' 5

stop_daemon
integrity_ok
done_ok
