#!/usr/bin/env bash
# The main job, without hardware: builds espstation, starts the station daemon
# espstationd and plugs in a handful of virtual boards of mixed chips
# (tests/sim, realistic serial timing) one after another; the daemon flashes
# each by profile with a bundled demo firmware set, verifies and resets it, and
# records it; the boards boot, check in at the station's OTA endpoint and go
# online, and a release uploaded over the REST API reaches them over the network.
# Then shows the CLI flashing a board directly, as a test bench would.
#   DEMO_BOARDS=N (default 5), DEMO_GAP=seconds between plug-ins (default 2).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
"$ROOT/scripts/setup.sh" "$ROOT/build"
cmake -S . -B build/normal -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=gcc \
      -DESPSTATION_STUB_DIR="$ROOT/build/stubs" >/dev/null
cmake --build build/normal -j"$(nproc)" --target espstation esp_sim espstationd >/dev/null

export ESPSTATIOND=build/normal/daemon/espstationd ESP_SIM=build/normal/tests/esp_sim
export STUB_DIR="$ROOT/build/stubs"
echo "== espstationd: virtual boards plugged in one after another =="
"$ROOT/daemon/demo.sh"

CLI=build/normal/cli/espstation
SIM=build/normal/tests/esp_sim
WORK=$(mktemp -d "${TMPDIR:-/tmp}/espstation-cli-demo.XXXXXX")
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
echo
echo "== The CLI, as a test bench uses it: flash 1 MiB at 921600 baud onto a virtual ESP32 =="
"$SIM" --chip esp32 --dir "$WORK/esp32" --link-speed 1 --strict-reset &
pids+=($!)
for _ in $(seq 100); do [ -f "$WORK/esp32/ready" ] && break; sleep 0.1; done
IMG="$WORK/app.bin"
for i in $(seq 0 15); do
    if [ $((i % 2)) -eq 0 ]; then
        (yes "espstation demo firmware block $i: printf(\"hello from ESP\");" || true) | head -c 65536
    else
        (openssl enc -aes-128-ctr -nosalt -pass pass:demo$i </dev/zero 2>/dev/null || true) | head -c 65536
    fi
done >"$IMG"
"$CLI" -p "$WORK/esp32/tty" -b 921600 flash 0x10000 "$IMG"
"$CLI" -p "$WORK/esp32/tty" -b 921600 --json verify 0x10000 "$IMG" | tail -n 1
echo "(the board's event log: $WORK/esp32/sim.log)"
