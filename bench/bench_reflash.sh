#!/usr/bin/env bash
# bench_reflash: the whole `espstation flash` command (connect, stub, compare,
# write, verify, reset) on a virtual ESP32 with realistic pacing (esp_sim
# --link-speed 1) when the board already holds most of the image: the re-flash
# of only the changed 4 KiB sectors against a full write. Figures only, never
# pass/fail on time. Not part of CTest.
#
# Usage: bench/bench_reflash.sh [--build DIR] [--baud B] [--runs N] [--chip C]
#   --build DIR  build tree with cli/espstation and tests/esp_sim (default:
#                $BUILD_DIR, else build/normal, else the newest build/*/ with both)
#   --baud B     flashing baud (default 921600)
#   --runs N     runs per row, the median is printed (default 3)
#   --chip C     esp32 (default) or esp8266
# Environment: ESP_SIM, ESPSTATION, STUB_DIR override the paths found.
#
# Rows (the image: bench/mkbenchset.py's 1 MiB app at 0x10000, half text, half
# random 4 KiB blocks, like a real app; each run on a fresh board prefilled
# with what it held before):
#   fresh board          flash erased (the diff costs one sector's MD5)
#   full write           board holds the old image, --no-diff (the old way)
#   same image           board holds this very image
#   1 sector (text)      one byte changed in a text sector (compresses to ~150 B)
#   1 sector (random)    one byte changed in a random-data sector (~4.1 KB on the wire)
#   rebuild (3 sectors)  the first, a middle and the last sector changed
#   other firmware       every sector differs (the diff gives up at the quarter level)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD_DIR:-}
BAUD=921600
RUNS=3
CHIP=esp32
while [ $# -gt 0 ]; do
    case $1 in
    --build) BUILD=$2; shift 2 ;;
    --baud) BAUD=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --chip) CHIP=$2; shift 2 ;;
    -h | --help) sed -n '2,27p' "$0"; exit 0 ;;
    *) echo "bench_reflash: unknown argument $1" >&2; exit 2 ;;
    esac
done
if [ -z "$BUILD" ]; then
    if [ -x "$ROOT/build/normal/cli/espstation" ]; then
        BUILD=$ROOT/build/normal
    else
        BUILD=$(ls -dt "$ROOT"/build/*/ 2>/dev/null | while read -r d; do
            [ -x "$d/cli/espstation" ] && [ -x "$d/tests/esp_sim" ] && { echo "${d%/}"; break; }
        done)
    fi
fi
ESPSTATION=${ESPSTATION:-$BUILD/cli/espstation}
ESP_SIM=${ESP_SIM:-$BUILD/tests/esp_sim}
[ -x "$ESPSTATION" ] && [ -x "$ESP_SIM" ] || { echo "bench_reflash: build first (no espstation/esp_sim in '$BUILD')" >&2; exit 1; }
if [ -z "${STUB_DIR:-}" ]; then
    STUB_DIR=$(sed -n 's/^ESPSTATION_STUB_DIR:PATH=//p' "$BUILD/CMakeCache.txt" 2>/dev/null || true)
    [ -n "$STUB_DIR" ] || STUB_DIR=$ROOT/build/stubs
fi
command -v jq >/dev/null || { echo "bench_reflash: jq is needed" >&2; exit 1; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/espstation-bench-reflash.XXXXXX")
SIM_PID=""
cleanup() {
    [ -z "$SIM_PID" ] || { kill -TERM "$SIM_PID" 2>/dev/null || true; wait "$SIM_PID" 2>/dev/null || true; }
    rm -rf "$tmp"
}
trap cleanup EXIT

python3 "$ROOT/bench/mkbenchset.py" --out "$tmp/set" >/dev/null
NEW=$tmp/set/app.bin
SIZE=$(stat -c %s "$NEW")
# change ONE byte at OFFSET of a copy of the image
changed() { # changed OUT OFFSET...
    local out=$1 off
    shift
    cp "$NEW" "$out"
    for off in "$@"; do
        printf '\xa5' | dd of="$out" bs=1 seek="$off" conv=notrunc status=none
    done
}
changed "$tmp/text.bin" $((128 * 4096 + 100))        # block 128: text
changed "$tmp/random.bin" $((129 * 4096 + 100))      # block 129: random
changed "$tmp/rebuild.bin" 40 $((77 * 4096 + 5)) $((SIZE - 20))
# another firmware of the same size and compressibility: every byte XOR 0x5A
python3 -c 'import sys; d = open(sys.argv[1], "rb").read(); open(sys.argv[2], "wb").write(bytes(b ^ 0x5A for b in d))' \
    "$NEW" "$tmp/other.bin"

# one_run OLD FLAGS: fresh sim holding OLD at 0x10000 ("" = erased), time the CLI
one_run() {
    local old=$1 flags=$2 dir t0 t1
    dir=$(mktemp -d "$tmp/sim.XXXX")
    "$ESP_SIM" --chip "$CHIP" --dir "$dir" --link-speed 1 --stub-dir "$STUB_DIR" \
        >"$dir/sim.out" 2>&1 &
    SIM_PID=$!
    for _ in $(seq 1 200); do [ -s "$dir/ready" ] && break; sleep 0.05; done
    [ -s "$dir/ready" ] || { echo "bench_reflash: esp_sim not ready" >&2; exit 1; }
    [ -z "$old" ] || dd if="$old" of="$dir/flash.bin" bs=4096 seek=16 conv=notrunc status=none
    t0=$(date +%s.%N)
    # shellcheck disable=SC2086
    "$ESPSTATION" -p "$dir/tty" -b "$BAUD" --stub-dir "$STUB_DIR" --json flash $flags \
        0x10000 "$NEW" >"$dir/out.json" 2>"$dir/err.txt" || {
        echo "bench_reflash: flash failed (see below)" >&2
        tail -5 "$dir/err.txt" "$dir/out.json" >&2
        exit 1
    }
    t1=$(date +%s.%N)
    cmp -s -i 65536:0 -n "$SIZE" "$dir/flash.bin" "$NEW" || { echo "bench_reflash: flash differs from the image" >&2; exit 1; }
    local res
    res=$(jq -c 'select(.event == "result")' "$dir/out.json")
    printf '%s %s %s %s\n' "$(echo "$t1 - $t0" | bc -l)" \
        "$(jq -r '.skipped_bytes' <<<"$res")" "$(jq -r '.wire_bytes' <<<"$res")" \
        "$(grep -c 'cmd SPI_FLASH_MD5' "$dir/sim.log" || true)"
    kill -TERM "$SIM_PID" 2>/dev/null || true
    wait "$SIM_PID" 2>/dev/null || true
    SIM_PID=""
}

row() { # row NAME OLD FLAGS
    local name=$1 old=$2 flags=$3 i line times=() skipped wire md5s
    for i in $(seq 1 "$RUNS"); do
        line=$(one_run "$old" "$flags")
        read -r t skipped wire md5s <<<"$line"
        times+=("$t")
    done
    local sorted med min
    sorted=$(printf '%s\n' "${times[@]}" | sort -g)
    min=$(head -n1 <<<"$sorted")
    med=$(sed -n "$(((RUNS + 1) / 2))p" <<<"$sorted")
    printf '%-22s %8.2f %8.2f %10s %10s %5s\n' "$name" "$med" "$min" "$skipped" "$wire" "$md5s"
}

echo "bench_reflash: $CHIP, ${SIZE}-byte image at 0x10000, $BAUD baud, esp_sim --link-speed 1,"
echo "  whole CLI command, median of $RUNS runs ($BUILD, $(nproc) CPUs)"
printf '%-22s %8s %8s %10s %10s %5s\n' row wall_s min_s skipped wire_tx md5s
row "fresh board" "" ""
row "full write (--no-diff)" "$tmp/text.bin" "--no-diff"
row "same image" "$NEW" ""
row "1 sector (text)" "$tmp/text.bin" ""
row "1 sector (random)" "$tmp/random.bin" ""
row "rebuild (3 sectors)" "$tmp/rebuild.bin" ""
row "other firmware" "$tmp/other.bin" ""
