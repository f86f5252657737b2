#!/usr/bin/env bash
# The main job, without hardware: installs what is missing (scripts/setup.sh),
# builds what the demo runs (espstation, espstationd, esp_sim and its network
# persona esp_netdev), starts the station daemon espstationd and plugs in a
# handful of virtual boards of mixed chips (tests/sim, realistic serial timing)
# one after another; the daemon flashes each by profile with a bundled demo
# firmware set, verifies and resets it, and records it; the boards boot, check
# in at the station's OTA endpoint and go online, and a release uploaded over
# the REST API reaches them over the network. Then shows the CLI flashing a
# board directly, as a test bench would.
#
# Every stage is checked (setup, build, firmware import, daemon start, boards
# flashed, boards online, update to 1.1.0, cli flash): the first that fails is
# named ("demo FAILED at stage '...'") with where to look, and the exit status
# is 1. After the network update, when stdin is a terminal, the daemon keeps
# running for the status page until Enter is pressed (DEMO_HOLD=0: never wait).
#
# Environment (all optional):
#   DEMO_BUILD_DIR  build directory               (default build/normal)
#   DEMO_JOBS       parallel build jobs           (default nproc)
#   DEMO_SETUP=0    skip scripts/setup.sh (dependencies and flasher stubs)
#   DEMO_CLI=0      skip the CLI part
#   DEMO_HOLD=0     do not wait for Enter at the end
#   and daemon/demo.sh's: DEMO_BOARDS (5), DEMO_GAP (2 s), DEMO_SPEED (1 = real
#   serial timing, 0 = unpaced), DEMO_DIR, DEMO_PORT (8080), DEMO_NET,
#   DEMO_CHECKIN_MS, DEMO_TIMEOUT, DEMO_NETDEV.
# Non-interactive and quick, e.g. (tests/integration/test_demo.sh):
#   DEMO_BUILD_DIR=/tmp/b DEMO_HOLD=0 DEMO_SPEED=0 DEMO_GAP=0 DEMO_CHECKIN_MS=300 \
#   DEMO_PORT=0 scripts/demo.sh </dev/null
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
BUILD=$(realpath -m "${DEMO_BUILD_DIR:-$ROOT/build/normal}")
JOBS=${DEMO_JOBS:-$(nproc)}
STUBS="$ROOT/build/stubs"

failed() { # stage message...
    local stage=$1
    shift
    printf '\ndemo FAILED at stage %s: %s\n' "'$stage'" "$*" >&2
    exit 1
}

if [ "${DEMO_SETUP:-1}" != 0 ]; then
    "$ROOT/scripts/setup.sh" "$ROOT/build" ||
        failed setup "scripts/setup.sh could not install the dependencies or fetch the flasher stubs (see above)"
fi

# The demo runs these four and nothing else; esp_netdev is the boards' network
# persona (esp_sim --net-bind spawns it), without it no board ever checks in.
TARGETS=(espstation espstationd esp_sim esp_netdev)
echo "== build: ${TARGETS[*]} in $BUILD =="
mkdir -p "$BUILD" || failed build "cannot create the build directory $BUILD"
BUILD_LOG="$BUILD/demo-build.log"
if ! { cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=gcc \
    -DESPSTATION_STUB_DIR="$STUBS" &&
    cmake --build "$BUILD" -j"$JOBS" --target "${TARGETS[@]}"; } >"$BUILD_LOG" 2>&1; then
    tail -n 30 "$BUILD_LOG" >&2
    failed build "cmake could not configure or build ${TARGETS[*]} (log: $BUILD_LOG)"
fi
CLI=$BUILD/cli/espstation
SIM=$BUILD/tests/esp_sim
for f in "$CLI" "$BUILD/daemon/espstationd" "$SIM" "$BUILD/tests/netdev/esp_netdev"; do
    [ -x "$f" ] || failed build "$f was not built (log: $BUILD_LOG)"
done

export ESPSTATIOND=$BUILD/daemon/espstationd ESP_SIM=$SIM
export STUB_DIR=$STUBS
echo "== espstationd: virtual boards plugged in one after another =="
# daemon/demo.sh names its own failed stage and exits 1.
"$ROOT/daemon/demo.sh" || exit $?

if [ "${DEMO_CLI:-1}" = 0 ]; then
    echo "demo passed: build, daemon start, boards flashed, boards online, update to 1.1.0"
    exit 0
fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/espstation-cli-demo.XXXXXX")
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
echo
echo "== The CLI, as a test bench uses it: flash 1 MiB at 921600 baud onto a virtual ESP32 =="
"$SIM" --chip esp32 --dir "$WORK/esp32" --link-speed "${DEMO_SPEED:-1}" --strict-reset &
pids+=($!)
for _ in $(seq 100); do [ -f "$WORK/esp32/ready" ] && break; sleep 0.1; done
[ -f "$WORK/esp32/ready" ] || failed "cli flash" "the virtual ESP32 did not start (see $WORK/esp32/sim.log)"
IMG="$WORK/app.bin"
for i in $(seq 0 15); do
    if [ $((i % 2)) -eq 0 ]; then
        (yes "espstation demo firmware block $i: printf(\"hello from ESP\");" || true) | head -c 65536
    else
        (openssl enc -aes-128-ctr -nosalt -pass pass:"demo$i" </dev/zero 2>/dev/null || true) | head -c 65536
    fi
done >"$IMG"
"$CLI" -p "$WORK/esp32/tty" -b 921600 flash 0x10000 "$IMG" ||
    failed "cli flash" "espstation flash exited $? (board log: $WORK/esp32/sim.log)"
"$CLI" -p "$WORK/esp32/tty" -b 921600 --json verify 0x10000 "$IMG" | tail -n 1 ||
    failed "cli flash" "espstation verify failed (board log: $WORK/esp32/sim.log)"
echo "(the board's event log: $WORK/esp32/sim.log)"
echo
echo "demo passed: every stage (build, daemon start, boards flashed, boards online, update to 1.1.0, cli flash)"
