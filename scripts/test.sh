#!/usr/bin/env bash
# The whole test suite: installs dependencies, builds twice (normal with gcc;
# ASan+UBSan with clang, which also builds the libFuzzer targets) and runs
# CTest on both. Exit status is non-zero if anything fails.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
"$ROOT/scripts/setup.sh" "$ROOT/build"
JOBS=$(nproc)
STUBS="$ROOT/build/stubs"

echo "== build: normal (gcc) =="
cmake -S . -B build/normal -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=gcc \
      -DESPSTATION_STUB_DIR="$STUBS" >/dev/null
cmake --build build/normal -j"$JOBS"

echo "== build: asan+ubsan (clang, fuzz targets) =="
cmake -S . -B build/asan -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_COMPILER=clang \
      -DESPSTATION_SANITIZE=ON -DESPSTATION_FUZZ=ON -DESPSTATION_STUB_DIR="$STUBS" >/dev/null
cmake --build build/asan -j"$JOBS"

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
status=0
echo "== ctest: normal =="
(cd build/normal && ctest --output-on-failure -j"$JOBS") || status=1
echo "== ctest: asan+ubsan =="
(cd build/asan && ctest --output-on-failure -j"$JOBS" -E '^format_check$') || status=1
if [ $status -eq 0 ]; then echo "all test runs passed"; else echo "TEST FAILURES (see above)"; fi
exit $status
