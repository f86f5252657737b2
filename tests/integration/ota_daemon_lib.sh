# shellcheck shell=bash
#
# ota_daemon_lib.sh: helpers for the daemon-side OTA tests (sourced after lib.sh,
# daemon_lib.sh and api_lib.sh, never run). Virtual boards with a network persona
# are esp_sim --net-bind (serial first flash, then the persona) or plain esp_netdev
# instances (network only, enrolled by check-in). Every process started here is
# stopped by its own pid on exit (lib.sh stops the sims).

ESP_NETDEV="${ESP_NETDEV:-$(dirname "$ESP_SIM")/netdev/esp_netdev}"
OTA_DRIVER="${OTA_DRIVER:-$(dirname "$ESP_SIM")/netdev/ota_driver}"
[ -x "$ESP_NETDEV" ] || fail "esp_netdev not found at $ESP_NETDEV"
NETDEV_PIDS=()
export NETDEV_PID=""

_ota_cleanup() {
    local rc=$? pid
    for pid in "${NETDEV_PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${NETDEV_PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    if [ "$rc" -eq 0 ]; then
        _daemon_cleanup
    else
        (exit "$rc") || _daemon_cleanup # _daemon_cleanup reads the status from $?
    fi
}
trap _ota_cleanup EXIT

# free_port: an unused TCP port for a server of the test (free_port.py: below the ephemeral
# range, so no outgoing connection of a test alongside takes it before the bind).
free_port() { python3 "$(dirname "${BASH_SOURCE[0]}")/free_port.py"; }

# Check-in credentials: a profile with $CHECKIN_AUTH_JSON (the profile key "checkin_auth")
# confirms the address of a board whose check-ins carry them, and the station pushes only
# to confirmed addresses. Netdevs started here send them (the sketch called the updater's
# setAuthorization) unless the test passes --checkin-auth itself (--checkin-auth none: a
# sketch that sends no credentials).
# shellcheck disable=SC2034 # used by the tests that source this file
CHECKIN_USER=station
CHECKIN_PASS=ci-checkin-pass
CHECKIN_AUTH_JSON="\"checkin_auth\": {\"user\": \"$CHECKIN_USER\", \"password\": \"$CHECKIN_PASS\"}"

# start_netdev DIR ARGS...: esp_netdev in the background; waits for DIR/ready. Sets NETDEV_PID.
# Functional tests run fast: --erase-ms 0 (instant flash erase) unless given.
start_netdev() {
    local dir=$1 a speed=(--erase-ms 0) auth=(--checkin-auth "$CHECKIN_USER:$CHECKIN_PASS")
    local args=()
    shift
    for a in "$@"; do [ "$a" != --erase-ms ] || speed=(); done
    while [ $# -gt 0 ]; do
        if [ "$1" = --checkin-auth ]; then
            auth=()
            [ "$2" = none ] || auth=(--checkin-auth "$2")
            shift 2
            continue
        fi
        args+=("$1")
        shift
    done
    set -- "${args[@]}" "${auth[@]}"
    mkdir -p "$dir"
    "$ESP_NETDEV" --dir "$dir" "${speed[@]}" "$@" >"$dir/stdout" 2>"$dir/stderr" &
    local pid=$!
    NETDEV_PIDS+=("$pid")
    NETDEV_PID=$pid # for callers
    local deadline=$((SECONDS + 10))
    until [ -s "$dir/ready" ]; do
        kill -0 "$pid" 2>/dev/null || fail "esp_netdev $* exited: $(cat "$dir/stderr")"
        [ $SECONDS -lt $deadline ] || fail "esp_netdev not ready"
        sleep 0.05
    done
}

# fw_set DIR NAME VERSION CHIP SIZE SEED [with-bootloader]: writes a firmware set
# (app at 0x10000, or 0x0 for esp8266) whose app carries ESPSIM_VERSION=VERSION.
fw_set() {
    local dir=$1 name=$2 ver=$3 chip=$4 size=$5 seed=$6 boot=${7:-}
    mkdir -p "$dir"
    python3 "$MKIMAGE" --chip "$chip" --size "$size" --out "$dir/app.bin" --seed "$seed" \
        --version "$ver" || fail "mkespimage failed"
    local off=0x10000
    [ "$chip" = esp8266 ] && off=0x0
    if [ -n "$boot" ]; then
        python3 "$MKIMAGE" --chip "$chip" --size 20000 --out "$dir/bootloader.bin" --seed $((seed + 500)) ||
            fail "mkespimage failed"
        cat >"$dir/manifest.json" <<JSON
{"name": "$name", "version": "$ver", "chip": "$chip", "flash_size": "4MB",
 "regions": [{"offset": "0x1000", "file": "bootloader.bin", "kind": "bootloader"},
             {"offset": "$off", "file": "app.bin", "kind": "app"}]}
JSON
    else
        cat >"$dir/manifest.json" <<JSON
{"name": "$name", "version": "$ver", "chip": "$chip",
 "regions": [{"offset": "$off", "file": "app.bin", "kind": "app"}]}
JSON
    fi
}

# upload_fw DIR: POST /api/v1/firmware (multipart) with the bearer token.
upload_fw() {
    local dir=$1 f args=()
    args+=(-F "manifest=@$dir/manifest.json")
    for f in "$dir"/*.bin; do
        args+=(-F "$(basename "$f")=@$f")
    done
    apit POST /api/v1/firmware "${args[@]}"
    [ "$HTTP_STATUS" = 201 ] || [ "$HTTP_STATUS" = 200 ] || fail "firmware upload: $HTTP_STATUS $RESP"
}

# ota_port_of_daemon: the OTA endpoint's port (written to DATA_DIR/ota.port).
ota_port_of_daemon() {
    local deadline=$((SECONDS + 10))
    until [ -s "$DATA_DIR/ota.port" ]; do
        [ $SECONDS -lt $deadline ] || fail "no $DATA_DIR/ota.port"
        sleep 0.05
    done
    tr -d '\n' <"$DATA_DIR/ota.port"
}

# board_col MAC COLUMN: one column of the boards table.
board_col() {
    db "SELECT $2 FROM boards WHERE mac = '$1';"
}

# wait_ready FILE SECONDS WHAT [ERRFILE]: waits for FILE (the mark a helper script started in
# the background writes once it listens); fails "WHAT did not start" (with ERRFILE's text).
wait_ready() {
    local deadline=$((SECONDS + $2))
    until [ -e "$1" ]; do
        [ $SECONDS -lt $deadline ] || fail "$3 did not start${4:+: $(cat "$4" 2>/dev/null)}"
        sleep 0.05
    done
}

# fw_set_fs DIR NAME VERSION SIZE SEED FS_BYTES: an ESP32 firmware set with its app at
# 0x10000 (carrying ESPSIM_VERSION=VERSION) and a filesystem image (FS_BYTES bytes of
# seeded noise, not an ESP image) at 0x290000, kind "filesystem". FS_OFF is that offset.
FS_OFF=0x290000
fw_set_fs() {
    local dir=$1 name=$2 ver=$3 size=$4 seed=$5 fsb=$6
    mkdir -p "$dir"
    python3 "$MKIMAGE" --chip esp32 --size "$size" --out "$dir/app.bin" --seed "$seed" \
        --version "$ver" || fail "mkespimage failed"
    python3 -c 'import random,sys; r=random.Random(int(sys.argv[1])); sys.stdout.buffer.write(bytes(r.getrandbits(8) for _ in range(int(sys.argv[2]))))' \
        "$seed" "$fsb" >"$dir/spiffs.bin" || fail "cannot write $dir/spiffs.bin"
    cat >"$dir/manifest.json" <<JSON
{"name": "$name", "version": "$ver", "chip": "esp32", "flash_size": "4MB",
 "regions": [{"offset": "0x10000", "file": "app.bin", "kind": "app"},
             {"offset": "$FS_OFF", "file": "spiffs.bin", "kind": "filesystem"}]}
JSON
}
