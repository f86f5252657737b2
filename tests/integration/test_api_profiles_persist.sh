#!/usr/bin/env bash
# test_api_profiles_persist: profile changes made through the REST API are kept in
# <data_dir>/profiles.json (mode 0600, it holds the ota_password) and survive a
# SIGKILL: after a restart GET shows them and a board plugged in then is flashed
# with the API-created, API-activated profile's firmware. DELETE reverts an edited
# profile to the config file's version, removes an API-created one (its active
# choice with it) and drops the active choice; with nothing left the file is
# removed. Changes a SIGHUP'd config file no longer fits are dropped and the file is
# moved aside. An unusable file (bad JSON; a profile the config validator refuses; unreadable)
# does not stop the daemon: it logs the file and what to do, moves it aside
# (profiles.json.bad-<time>) and starts with the config file's profiles.
source "${INTEG_LIB:?INTEG_LIB (tests/integration/lib.sh) must be set}"
source "$(dirname "$0")/daemon_lib.sh"
source "$(dirname "$0")/api_lib.sh"

# --- two firmware sets for the ESP32 ------------------------------------------------------------
for v in a:1.0:4 b:2.0:5; do
    IFS=: read -r n ver seed <<<"$v"
    mkdir -p "$WORK/fw-$n"
    make_image_esp esp32 60000 "$WORK/fw-$n/app.bin" "$seed"
    cat >"$WORK/fw-$n/manifest.json" <<JSON
{"name": "$n", "version": "$ver", "chip": "esp32", "flash_size": "4MB",
 "regions": [{"offset": "0x10000", "file": "app.bin", "kind": "app"}]}
JSON
    import_fw "$WORK/fw-$n"
done

TOKEN=persist-token
CFG=$WORK/station.json
cat >"$CFG" <<JSON
{"api": {"token": "$TOKEN"},
 "profiles": {"base": {"firmware": {"esp32": "a@1.0"}, "baud": 460800},
              "other": {"firmware": {"esp32": "a@1.0"}}},
 "active_profile": "base"}
JSON
PF=$DATA_DIR/profiles.json
start_api_daemon "$CFG"

api GET /api/v1/profiles
expect_status 200
expect_jq ".persistence == \"data_dir\" and .overlay_file == \"$PF\" and .overlay.profiles == [] and .overlay.active == false"
[ ! -e "$PF" ] || fail "$PF exists before any change"

# --- changes through the API --------------------------------------------------------------------
apij PUT /api/v1/profiles/line9 '{"firmware": {"esp32": "b@2.0"}, "baud": 230400, "ota_password": "pw-line9"}'
expect_status 200
apij PUT /api/v1/profiles/base '{"firmware": {"esp32": "a@1.0"}, "baud": 115200}'
expect_status 200
apij PUT /api/v1/profiles/active '{"name": "line9"}'
expect_status 200
# a refused change leaves the file alone
cp "$PF" "$WORK/pf.before"
apij PUT /api/v1/profiles/base '{"baud": "fast"}'
expect_error 422 validation_failed baud
cmp -s "$PF" "$WORK/pf.before" || fail "a refused change rewrote $PF"

[ "$(stat -c %a "$PF")" = 600 ] || fail "$PF mode $(stat -c %a "$PF"), expected 600"
jq -e '.format == "espstation-profiles" and .version == 1 and .active_profile == "line9"
       and .profiles.line9.ota_password == "pw-line9" and .profiles.base.baud == 115200
       and (.profiles | has("other") | not)' "$PF" >/dev/null || fail "unexpected $PF: $(cat "$PF")"
api GET /api/v1/profiles
expect_jq '.active == "line9" and (.overlay.profiles | sort) == ["base", "line9"] and .overlay.active'

# --- SIGKILL, restart: the changes are back --------------------------------------------------------
kill9_daemon
start_api_daemon "$CFG"
wait_log "profile changes made through the API loaded from $PF: profiles .*line9.*; active profile line9" 5
api GET /api/v1/profiles
expect_jq '.active == "line9" and (.profiles | length == 3)'
expect_jq '.profiles[] | select(.name == "line9") | .firmware.esp32 == "b@2.0" and .baud == 230400 and .active'
expect_jq '.profiles[] | select(.name == "base") | .baud == 115200 and (.active | not)'
grep -q 'pw-line9' "$WORK/resp" && fail "GET /profiles shows the ota_password"
ls "$DATA_DIR"/profiles.json.tmp-* >/dev/null 2>&1 && fail "temp files left in $DATA_DIR"

# a board plugged in now is flashed by the API's profile: firmware b@2.0
start_sim esp32
apij POST /api/v1/ports "{\"uri\": \"$SIM_DIR/tty\", \"label\": \"P1\"}"
expect_status 201
wait_sql "SELECT state || '|' || firmware FROM jobs" "passed|b@2.0" 90
flash_region_equals "$SIM_DIR" 0x10000 "$WORK/fw-b/app.bin"

# --- DELETE ----------------------------------------------------------------------------------------
api DELETE /api/v1/profiles/base
expect_error 401 unauthorized
apit DELETE /api/v1/profiles/base
expect_status 200
expect_jq '.name == "base" and .result == "reverted" and .profile.baud == 460800 and .active == "line9"'
apit DELETE /api/v1/profiles/base
expect_error 409 not_changed profile
apit DELETE /api/v1/profiles/other
expect_error 409 not_changed profile
apit DELETE /api/v1/profiles/nope
expect_error 404 not_found profile
# the API-created profile, active through the API: removed, the config file's choice is back
apit DELETE /api/v1/profiles/line9
expect_status 200
expect_jq '.name == "line9" and .result == "removed" and .profile == null and .active == "base"'
[ ! -e "$PF" ] || fail "$PF left with no changes: $(cat "$PF")"
apit DELETE /api/v1/profiles/active
expect_error 409 not_changed profile
apij PUT /api/v1/profiles/active '{"name": "other"}'
expect_status 200
jq -e '.active_profile == "other"' "$PF" >/dev/null || fail "active choice not saved: $(cat "$PF")"
apit DELETE /api/v1/profiles/active
expect_status 200
expect_jq '.result == "reverted" and .active == "base"'
[ ! -e "$PF" ] || fail "$PF left after dropping the active choice"
api PATCH /api/v1/profiles/base
expect_error 405 method_not_allowed
grep -qi '^allow: GET, PUT, DELETE' "$WORK/resp.headers" || fail "Allow: $(cat "$WORK/resp.headers")"
stop_daemon

start_api_daemon "$CFG"
api GET /api/v1/profiles
expect_jq '.active == "base" and (.profiles | length == 2) and .overlay.profiles == []'
expect_jq '.profiles[] | select(.name == "base") | .baud == 460800'
stop_daemon

# --- an unusable file is moved aside, the daemon starts with the config file's profiles --------------
printf '{"format": "espstation-profiles", "version": 1, "profiles": {"x": ' >"$PF"
cp "$PF" "$WORK/corrupt"
start_api_daemon "$CFG"
wait_log "profile changes file $PF is unusable \(.*JSON syntax error.*\): moved aside to $PF\.bad-[0-9-]+; using the config file's profiles" 5
[ ! -e "$PF" ] || fail "$PF still there"
bad=$(ls "$PF".bad-*) || fail "no $PF.bad-* file"
[ "$(echo "$bad" | wc -l)" = 1 ] || fail "expected one moved-aside file: $bad"
cmp -s "$bad" "$WORK/corrupt" || fail "the moved-aside file is not the corrupt one"
api GET /api/v1/profiles
expect_jq '.active == "base" and (.profiles | length == 2)'
# the API works on (and saves a fresh file)
apij PUT /api/v1/profiles/active '{"name": "other"}'
expect_status 200
jq -e '.active_profile == "other"' "$PF" >/dev/null || fail "no fresh $PF"
rm -f "$PF".bad-*
# SIGHUP with a config file the changes no longer fit ("other" is gone): dropped, moved aside
cp "$CFG" "$WORK/station.full.json"
cat >"$CFG" <<JSON
{"api": {"token": "$TOKEN"},
 "profiles": {"base": {"firmware": {"esp32": "a@1.0"}, "baud": 460800}},
 "active_profile": "base"}
JSON
kill -HUP "$DAEMON_PID"
wait_log "profile changes made through the API do not fit the reloaded configuration and are dropped: .*active_profile: no profile named \"other\"" 10
wait_log "profile changes file $PF is unusable \(its profiles do not fit the reloaded config file\): moved aside" 5
[ ! -e "$PF" ] || fail "$PF still there after the SIGHUP drop"
ls "$PF".bad-* >/dev/null 2>&1 || fail "not moved aside on SIGHUP"
api GET /api/v1/profiles
expect_jq '.active == "base" and (.profiles | length == 1) and .overlay.active == false'
stop_daemon
cp "$WORK/station.full.json" "$CFG"
rm -f "$PF".bad-*

# a well-formed file whose profile the config validator refuses
echo '{"format": "espstation-profiles", "version": 1, "profiles": {"base": {"baud": "fast"}}}' >"$PF"
start_api_daemon "$CFG"
wait_log "profile changes file $PF is unusable \(its profiles do not fit the config file: .*profiles\.base\.baud: must be an integer.*\): moved aside" 5
ls "$PF".bad-* >/dev/null 2>&1 || fail "not moved aside"
api GET /api/v1/profiles
expect_jq '.active == "base" and (.profiles[] | select(.name == "base") | .baud == 460800)'
stop_daemon
rm -rf "$PF".bad-*

# a file that cannot be read (here: a directory, which root cannot read either) is moved
# aside too, so the next change through the API does not replace what it holds
mkdir "$PF"
echo keep >"$PF/marker"
start_api_daemon "$CFG"
wait_log "profile changes file $PF is unusable \(cannot read it: Is a directory\): moved aside to $PF\.bad-[0-9-]+" 5
bad=$(ls -d "$PF".bad-*) || fail "not moved aside"
[ "$(cat "$bad/marker")" = keep ] || fail "what it held is gone"
apij PUT /api/v1/profiles/active '{"name": "other"}'
expect_status 200
jq -e '.active_profile == "other"' "$PF" >/dev/null || fail "no fresh $PF"
[ "$(cat "$bad/marker")" = keep ] || fail "the API change replaced the unreadable file"
stop_daemon
stop_sim
done_ok
