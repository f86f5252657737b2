#!/usr/bin/env bash
# test_daemon_zopfli: the catalog's cached copy is zopfli's (issue 11). Two sets of
# firmware-like images (mkespimage.py --text), an ESP32 app and an ESP8266 app, are
# imported: each index.json says zmethod "zopfli" and a zsize below what zlib level 9
# makes of the same file, and the .z file inflates back to the image. The daemon then
# flashes both boards: the flash holds the images, and the FLASH_DEFL_DATA payloads the
# boards received add up to exactly the cached stream's size (the wire carried
# zopfli's stream, which the stubs inflated).
source "${INTEG_LIB:?INTEG_LIB (tests/integration/lib.sh) must be set}"
source "$(dirname "$0")/daemon_lib.sh"

# zlib9_size FILE / inflates_to Z FILE
zlib9_size() { python3 -c 'import sys, zlib; print(len(zlib.compress(open(sys.argv[1], "rb").read(), 9)))' "$1"; }
inflates_to() {
    python3 -c 'import sys, zlib; sys.exit(zlib.decompress(open(sys.argv[1], "rb").read()) != open(sys.argv[2], "rb").read())' "$1" "$2"
}

declare -A ZSIZE
for chip in esp32 esp8266; do
    fw=$WORK/fw-$chip
    mkdir -p "$fw"
    python3 "$MKIMAGE" --chip "$chip" --size 120000 --text --seed 11 --out "$fw/app.bin" ||
        fail "mkespimage failed"
    off='"0x10000"'
    [ "$chip" = esp8266 ] && off=0
    cat >"$fw/manifest.json" <<JSON
{"name": "z$chip", "version": "1.0", "chip": "$chip",
 "regions": [{"offset": $off, "file": "app.bin", "kind": "app"}]}
JSON
    import_fw "$fw"
    set_dir=$DATA_DIR/firmware/z$chip/1.0
    [ "$(jq -r '.regions[0].zmethod' "$set_dir/index.json")" = zopfli ] ||
        fail "$chip: cached copy not zopfli's: $(cat "$set_dir/index.json")"
    zs=$(jq -r '.regions[0].zsize' "$set_dir/index.json")
    z9=$(zlib9_size "$fw/app.bin")
    [ "$zs" -lt "$z9" ] || fail "$chip: cached copy $zs bytes, zlib -9 $z9"
    [ "$(size_of "$set_dir/app.bin.z")" = "$zs" ] || fail "$chip: app.bin.z is not $zs bytes"
    inflates_to "$set_dir/app.bin.z" "$fw/app.bin" || fail "$chip: app.bin.z does not inflate to app.bin"
    log "$chip: $(size_of "$fw/app.bin") bytes, zlib -9 $z9, zopfli $zs"
    ZSIZE[$chip]=$zs
done

start_sim esp32
S32=$SIM_DIR
start_sim esp8266
S8=$SIM_DIR
CFG=$WORK/station.json
cat >"$CFG" <<JSON
{"ports": [{"uri": "$S32/tty", "label": "A1"}, {"uri": "$S8/tty", "label": "A2"}],
 "profiles": {"line": {"firmware": {"esp32": "zesp32@1.0", "esp8266": "zesp8266@1.0"},
                       "baud": 921600}}}
JSON
start_daemon "$CFG"
wait_sql "SELECT count(*) FROM jobs WHERE state = 'passed'" 2 90
flash_region_equals "$S32" 0x10000 "$WORK/fw-esp32/app.bin"
flash_region_equals "$S8" 0 "$WORK/fw-esp8266/app.bin"
for pair in "esp32 $S32" "esp8266 $S8"; do
    set -- $pair
    wire=$(grep -o 'cmd FLASH_DEFL_DATA seq=[0-9]* len=[0-9]*' "$2/sim.log" | sed 's/.*len=//' |
        paste -sd+ | bc)
    [ "$wire" = "${ZSIZE[$1]}" ] || fail "$1: FLASH_DEFL_DATA carried $wire bytes, the cached stream is ${ZSIZE[$1]}"
done
stop_daemon
done_ok
