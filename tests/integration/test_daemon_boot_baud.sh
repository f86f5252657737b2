#!/usr/bin/env bash
# test_daemon_boot_baud: the boot check reads the console at the profile's
# boot_check.baud. The virtual board prints its app lines at 74880 Bd
# (esp_sim --app-baud); a profile without boot_check.baud (115200) sees garbage
# and fails the boot check with "console output looks garbled at 115200 baud"
# and the hint to set boot_check.baud; switching to a profile with
# "baud": 74880 and reflashing passes, capturing the app's line.
source "${INTEG_LIB:?INTEG_LIB (tests/integration/lib.sh) must be set}"
source "$(dirname "$0")/daemon_lib.sh"
source "$(dirname "$0")/api_lib.sh"

import_esp32_app 7

start_sim esp32 --app-baud 74880
TOKEN=boot-baud-token
CFG=$WORK/station.json
PAT='esp_sim ([a-z0-9]+) app running'
cat >"$CFG" <<JSON
{"api": {"token": "$TOKEN"},
 "ports": [{"uri": "$SIM_DIR/tty", "label": "A1"}],
 "profiles": {
   "rom": {"firmware": {"esp32": "app@1.0"}, "retries": 0, "skip_if_same": false,
           "boot_check": {"pattern": "$PAT", "timeout_ms": 3000}},
   "app": {"firmware": {"esp32": "app@1.0"}, "retries": 0, "skip_if_same": false,
           "boot_check": {"pattern": "$PAT", "timeout_ms": 3000, "baud": 74880,
                          "capture": ["version"]}}},
 "active_profile": "rom"}
JSON
start_api_daemon "$CFG"

# 115200 (the default) against a 74880 Bd app: garbage, a clear failure
wait_sql "SELECT state FROM jobs WHERE id = 1" failed 60
msg=$(db "SELECT error_message FROM jobs WHERE id = 1")
case $msg in
*"pattern not seen within 3000 ms; console output looks garbled at 115200 baud"*) ;;
*) fail "boot check at the wrong baud: unexpected message: $msg" ;;
esac
db "SELECT error_advice FROM jobs WHERE id = 1" | grepq "set the profile's boot_check.baud" ||
    fail "no advice naming boot_check.baud: $(db "SELECT error_advice FROM jobs WHERE id = 1")"
sim_log_has 'reset -> boot' "$SIM_DIR" || fail "the board was not reset into its app"

api GET /api/v1/profiles/app
expect_status 200
expect_jq '.boot_check.baud == 74880'
api GET /api/v1/profiles/rom
expect_jq '.boot_check.baud == 115200'

# the profile with the app's rate passes
apij PUT /api/v1/profiles/active '{"name": "app"}'
expect_status 200
apij POST /api/v1/slots/A1/reflash '{"force": true}'
expect_status 202 "reflash"
wait_sql "SELECT state FROM jobs WHERE id = 2" passed 60
[ "$(db "SELECT count(*) FROM job_log WHERE job_id = 2 AND line LIKE 'boot check matched: %esp_sim esp32 app running%'")" = 1 ] ||
    fail "boot check did not match at 74880: $(db "SELECT line FROM job_log WHERE job_id = 2")"
[ "$(db "SELECT count(*) FROM job_log WHERE job_id = 2 AND line = 'boot check version = esp32'")" = 1 ] ||
    fail "capture missing: $(db "SELECT line FROM job_log WHERE job_id = 2")"

# validated like the other baud keys
apij PUT /api/v1/profiles/app '{"boot_check": {"pattern": "x", "baud": 1200}}'
expect_error 422 validation_failed
case $(jqr .error.message) in
*"profiles.app.boot_check.baud: must be an integer from 9600 to 5000000 (got 1200)"*) ;;
*) fail "unexpected message: $RESP" ;;
esac
stop_daemon
done_ok
