#!/usr/bin/env bash
# Installs what espstation needs on Debian 12 (apt-get for libraries and
# tools, npm for the flasher stubs), skipping what is already there.
# Usage: scripts/setup.sh [BUILD_ROOT]   (stubs go to BUILD_ROOT/stubs, default build/)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD_ROOT=${1:-$ROOT/build}

PKGS=(build-essential cmake pkg-config clang clang-format libclang-rt-14-dev
      libserialport-dev zlib1g-dev libssl-dev libjson-c-dev libsqlite3-dev
      libmicrohttpd-dev libudev-dev libcmocka-dev umockdev libumockdev-dev jq openssl sqlite3 python3 curl wrk chromium nodejs fonts-dejavu-core)

missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
command -v npm >/dev/null || missing+=(npm)

SUDO=
[ "$(id -u)" -ne 0 ] && SUDO=sudo
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

"$ROOT/scripts/fetch-stubs.sh" "$BUILD_ROOT/stubs"
