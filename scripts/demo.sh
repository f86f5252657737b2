#!/usr/bin/env bash
# The main job, without hardware: builds espstation, plugs in a virtual ESP32
# board (tests/sim) with a realistic serial link at 921600 baud, flashes a
# firmware-like image with the CLI (stub + compression), verifies it, and shows
# that the board's flash now holds exactly the image. Then does the same for a
# virtual ESP8266 through its ROM loader.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
"$ROOT/scripts/setup.sh" "$ROOT/build"
cmake -S . -B build/normal -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=gcc \
      -DESPSTATION_STUB_DIR="$ROOT/build/stubs" >/dev/null
cmake --build build/normal -j"$(nproc)" --target espstation esp_sim >/dev/null

CLI=build/normal/cli/espstation
SIM=build/normal/tests/esp_sim
WORK=$(mktemp -d "${TMPDIR:-/tmp}/espstation-demo.XXXXXX")
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

start_board() { # chip dir
    "$SIM" --chip "$1" --dir "$2" --link-speed 1 --strict-reset &
    pids+=($!)
    for _ in $(seq 100); do [ -f "$2/ready" ] && return 0; sleep 0.1; done
    echo "demo: virtual board did not start" >&2; exit 1
}

# A 1 MiB firmware-like image: half text-like (compressible), half random.
IMG="$WORK/app.bin"
for i in $(seq 0 15); do
    if [ $((i % 2)) -eq 0 ]; then
        yes "espstation demo firmware block $i: printf(\"hello from ESP\");" | head -c 65536
    else
        openssl enc -aes-128-ctr -nosalt -pass pass:demo$i </dev/zero 2>/dev/null | head -c 65536
    fi
done >"$IMG"

echo
echo "== 1. A virtual ESP32 is plugged in at $WORK/esp32/tty (strict reset: it only enters"
echo "      download mode after a correct DTR/RTS sequence, like a real dev board) =="
start_board esp32 "$WORK/esp32"
"$CLI" -p "$WORK/esp32/tty" -b 921600 info

echo
echo "== 2. Flash 1 MiB at 0x10000 at 921600 baud (stub + compression), verify by MD5 =="
"$CLI" -p "$WORK/esp32/tty" -b 921600 flash 0x10000 "$IMG"
if cmp -s "$IMG" <(tail -c +$((0x10000 + 1)) "$WORK/esp32/flash.bin" | head -c "$(stat -c %s "$IMG")"); then
    echo "   -> the board's flash ($WORK/esp32/flash.bin) holds exactly the image"
else
    echo "   -> MISMATCH between the image and the board's flash" >&2; exit 1
fi

echo
echo "== 3. A virtual ESP8266 without a stub: ROM loader only, 115200 baud, 256 KiB =="
start_board esp8266 "$WORK/esp8266"
head -c 262144 "$IMG" >"$WORK/small.bin"
"$CLI" -p "$WORK/esp8266/tty" -b 115200 --no-stub flash 0x0 "$WORK/small.bin"
cmp -s "$WORK/small.bin" <(head -c 262144 "$WORK/esp8266/flash.bin") \
    && echo "   -> ESP8266 flash holds exactly the image"

echo
echo "== 4. Machine-readable result for a test bench (--json, last line) =="
"$CLI" -p "$WORK/esp32/tty" -b 921600 --json verify 0x10000 "$IMG" | tail -n 1

echo
echo "Virtual boards' event logs: $WORK/*/sim.log"
