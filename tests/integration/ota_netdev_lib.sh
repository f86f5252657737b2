# shellcheck shell=bash
#
# ota_netdev_lib.sh: helpers for the protocol-level OTA tests that push with
# ota_driver to bare esp_netdev instances (sourced after lib.sh, never run).
# Every esp_netdev started here is registered in SIM_PIDS/SIM_DIRS, so lib.sh
# stops it on exit.

NETDEV_DIR=$(dirname "$ESP_SIM")/netdev
NETDEV=$NETDEV_DIR/esp_netdev
DRV=$NETDEV_DIR/ota_driver
[ -x "$NETDEV" ] && [ -x "$DRV" ] || fail "esp_netdev/ota_driver not built in $NETDEV_DIR"

# start_netdev NAME ARGS...: starts esp_netdev in $WORK/NAME, waits for its ready file,
# sets ND_DIR, ND_UDP, ND_HTTP, ND_TCP (empty for a listener it does not run).
# Functional tests run fast: --erase-ms 0 (instant flash erase) unless given; the
# receive window stays the device's real one.
start_netdev() {
    local name=$1 a speed=(--erase-ms 0)
    shift
    for a in "$@"; do [ "$a" != --erase-ms ] || speed=(); done
    ND_DIR=$WORK/$name
    mkdir -p "$ND_DIR"
    "$NETDEV" --dir "$ND_DIR" "${speed[@]}" "$@" 2>"$ND_DIR/stderr" &
    SIM_PIDS+=($!)
    SIM_DIRS+=("$ND_DIR")
    for _ in $(seq 1 100); do
        [ -s "$ND_DIR/ready" ] && break
        sleep 0.05
    done
    [ -s "$ND_DIR/ready" ] || fail "esp_netdev $name did not start: $(cat "$ND_DIR/stderr")"
    # shellcheck disable=SC2034 # ND_* are read by the test that sources this
    ND_UDP=$(sed -n 's/.*udp=\([0-9-]*\).*/\1/p' "$ND_DIR/ready")
    # shellcheck disable=SC2034
    ND_HTTP=$(sed -n 's/.*http=\([0-9-]*\).*/\1/p' "$ND_DIR/ready")
    # shellcheck disable=SC2034
    ND_TCP=$(sed -n 's/.*tcpota=\([0-9-]*\).*/\1/p' "$ND_DIR/ready")
}

# drv ARGS...: runs ota_driver; DRV_OUT = its stdout line, DRV_RC = exit code.
drv() {
    DRV_RC=0
    timeout -k 5 120 "$DRV" "$@" >"$WORK/drv.out" 2>"$WORK/drv.err" || DRV_RC=$?
    DRV_OUT=$(cat "$WORK/drv.out")
    log "ota_driver $1 -> rc=$DRV_RC: $DRV_OUT"
    if grep -q Sanitizer "$WORK/drv.err" || [ "$DRV_RC" -gt 2 ]; then
        cat "$WORK/drv.err" >&2
        fail "ota_driver crashed or hung (rc $DRV_RC)"
    fi
}
