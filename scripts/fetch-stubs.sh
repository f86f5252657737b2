#!/usr/bin/env bash
# Fetches the flasher stubs (esp-flasher-stub JSONs shipped in the esptool-js
# npm package, Apache-2.0) into DEST. Never committed; loaded at run time.
# Usage: scripts/fetch-stubs.sh DEST
set -euo pipefail
VERSION=0.7.0
DEST=${1:?usage: fetch-stubs.sh DEST}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE="$ROOT/.cache/npm"
if [ -f "$DEST/esp32.json" ] && [ -f "$DEST/.version" ] && [ "$(cat "$DEST/.version")" = "$VERSION" ]; then
    exit 0
fi
mkdir -p "$CACHE" "$DEST"
TGZ="$CACHE/esptool-js-$VERSION.tgz"
if [ ! -s "$TGZ" ]; then
    command -v npm >/dev/null || { echo "fetch-stubs: npm not found (scripts/setup.sh installs it)" >&2; exit 1; }
    (cd "$CACHE" && npm pack --silent "esptool-js@$VERSION" >/dev/null)
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
tar -xzf "$TGZ" -C "$tmp" package/lib/targets/stub_flasher package/LICENSE
cp "$tmp"/package/lib/targets/stub_flasher/*.json "$DEST/"
cp "$tmp/package/LICENSE" "$DEST/LICENSE.esptool-js"
echo "$VERSION" > "$DEST/.version"
echo "fetch-stubs: $(ls "$DEST"/*.json | wc -l) stubs from esptool-js@$VERSION in $DEST"
