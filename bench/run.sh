#!/usr/bin/env bash
# Runs the flashing benchmark (bench_flash) against the virtual board with
# realistic baud pacing and prints the table. Not part of CTest.
#
# Usage: bench/run.sh [--build DIR] [--quick] [bench_flash options...]
#   --build DIR  build tree holding bench/bench_flash and tests/esp_sim
#                (default: $BUILD_DIR, else build/normal, else the newest
#                build/*/ that has both)
# Environment: ESP_SIM, STUB_DIR override the paths found in the build tree;
# FIXTURES the real-image directory of the zopfli table.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD_DIR:-}
args=()
while [ $# -gt 0 ]; do
    case $1 in
    --build) BUILD=$2; shift 2 ;;
    *) args+=("$1"); shift ;;
    esac
done
if [ -z "$BUILD" ]; then
    if [ -x "$ROOT/build/normal/bench/bench_flash" ]; then
        BUILD=$ROOT/build/normal
    else
        BUILD=$(ls -dt "$ROOT"/build/*/ 2>/dev/null | while read -r d; do
            [ -x "$d/bench/bench_flash" ] && [ -x "$d/tests/esp_sim" ] && { echo "${d%/}"; break; }
        done)
    fi
fi
[ -n "$BUILD" ] && [ -x "$BUILD/bench/bench_flash" ] || {
    echo "run.sh: bench_flash not built; build first, e.g.:" >&2
    echo "  cmake -S $ROOT -B $ROOT/build/normal -DCMAKE_BUILD_TYPE=RelWithDebInfo && cmake --build $ROOT/build/normal -j" >&2
    exit 1
}
export ESP_SIM=${ESP_SIM:-$BUILD/tests/esp_sim}
if [ -z "${STUB_DIR:-}" ]; then
    STUB_DIR=$(sed -n 's/^ESPSTATION_STUB_DIR:PATH=//p' "$BUILD/CMakeCache.txt" 2>/dev/null || true)
    [ -n "$STUB_DIR" ] || STUB_DIR=$ROOT/build/stubs
fi
export STUB_DIR
[ -f "$STUB_DIR/esp32.json" ] || echo "run.sh: no stubs in $STUB_DIR (scripts/fetch-stubs.sh $STUB_DIR); stub rows will fail or be skipped" >&2
tmp=$(mktemp -d "${TMPDIR:-/tmp}/espstation-bench.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# The whole-CLI rows time the build's espstation; the zopfli table reads the shared
# fixture images (never copied into the project) when they are there.
extra=()
[ -x "$BUILD/cli/espstation" ] && extra+=(--cli "$BUILD/cli/espstation")
FIXTURES=${FIXTURES:-$(cd "$ROOT/.." && pwd)/shared/fixtures/esp-images}
[ -d "$FIXTURES" ] && extra+=(--fixtures "$FIXTURES")
echo "bench: $BUILD/bench/bench_flash (sim $ESP_SIM, stubs $STUB_DIR), $(nproc) CPUs"
"$BUILD/bench/bench_flash" --sim "$ESP_SIM" --stub-dir "$STUB_DIR" --tmp "$tmp" "${extra[@]}" "${args[@]}"
