#!/usr/bin/env bash
# test_import_builds: what the build tools write, flashed and imported as it is (issue 10
# part 1). Directory trees as ESP-IDF, PlatformIO (with and without idedata.json), the
# Arduino tools (separate files, merged), ESP Web Tools (two builds) and a merged factory
# image write them are built here from the real images in ../shared/fixtures/esp-images
# (used from there, never copied into the project). Then:
#   - `espstation flash --from` each against the virtual board: the result says what was
#     recognised, and the flash holds every file at its offset (the bootloader header with
#     the flash settings of flasher_args.json);
#   - `espstationd --import` each into the catalog (name and version from the build, or
#     --name/--fw-version), one set per ESP Web Tools build; the daemon then flashes an
#     imported ESP-IDF build and a merged image by profile;
#   - the REST upload of a tar and a zip of such a directory (and validate-only);
#   - a wrong chip family, a missing file and overlapping offsets are refused with a
#     message naming the file, by the CLI, the import and the REST upload.
source "${INTEG_LIB:?INTEG_LIB (tests/integration/lib.sh) must be set}"
source "$(dirname "$0")/daemon_lib.sh"
source "$(dirname "$0")/api_lib.sh"

# The folder: $ESP_IMAGES (CMake passes the one it found), else next to the repository, else
# /work/shared (a checkout or worktree elsewhere on a machine that has it).
FIX=
for dir in "${ESP_IMAGES:-}" "$(cd "$(dirname "$0")/../../.." && pwd)/shared/fixtures/esp-images" \
    /work/shared/fixtures/esp-images; do
    [ -n "$dir" ] && [ -f "$dir/bootloader_esp32.bin" ] && { FIX=$dir; break; }
done
if [ -z "$FIX" ]; then
    msg="the real ESP images are not there (../shared/fixtures/esp-images next to the repository"
    msg+=" or /work/shared; set ESP_IMAGES to their folder)"
    [ -z "${ESPSTATION_REQUIRE_ESP_IMAGES:-}" ] || fail "$msg; ESPSTATION_REQUIRE_ESP_IMAGES is set"
    log "SKIP: $msg"
    exit 77
fi
log "real ESP images: $FIX"
HW=$FIX/ram_helloworld

# ---- the trees ------------------------------------------------------------------------------
# ESP-IDF (ESP32): build/ as idf.py leaves it, 4MB in flasher_args.json (the bootloader header
# says 2MB: the station sets the header from flasher_args.json, as esptool does).
IDF=$WORK/proj/build
mkdir -p "$IDF/bootloader" "$IDF/partition_table" "$IDF/CMakeFiles"
cp "$FIX/bootloader_esp32.bin" "$IDF/bootloader/bootloader.bin"
cp "$FIX/partitions_singleapp.bin" "$IDF/partition_table/partition-table.bin"
cp "$HW/helloworld-esp32.bin" "$IDF/hello.bin"
echo "not flashed" >"$IDF/CMakeFiles/junk.txt"
idf_args() { # APP_OFFSET APP_FILE CHIP
    cat <<JSON
{
    "write_flash_args" : [ "--flash_mode", "dio", "--flash_size", "4MB", "--flash_freq", "40m" ],
    "flash_settings" : { "flash_mode": "dio", "flash_size": "4MB", "flash_freq": "40m" },
    "flash_files" : {
        "0x1000" : "bootloader/bootloader.bin",
        "$1" : "$2",
        "0x8000" : "partition_table/partition-table.bin"
    },
    "bootloader" : { "offset" : "0x1000", "file" : "bootloader/bootloader.bin", "encrypted" : "false" },
    "app" : { "offset" : "$1", "file" : "$2", "encrypted" : "false" },
    "partition-table" : { "offset" : "0x8000", "file" : "partition_table/partition-table.bin", "encrypted" : "false" },
    "extra_esptool_args" : { "after" : "hard_reset", "before" : "default_reset", "stub" : true, "chip" : "$3" }
}
JSON
}
idf_args 0x10000 hello.bin esp32 >"$IDF/flasher_args.json"
cat >"$IDF/project_description.json" <<'JSON'
{"project_name": "hello_world", "project_version": "v1.4.2", "target": "esp32"}
JSON
# The bootloader as the station writes it: header byte 3 = 4MB (code 2) << 4 | 40m (0).
python3 - "$IDF/bootloader/bootloader.bin" "$WORK/boot32-4mb.bin" <<'PY'
import sys
d = bytearray(open(sys.argv[1], 'rb').read()); d[3] = 0x20
open(sys.argv[2], 'wb').write(d)
PY

# PlatformIO (ESP32-C3) with idedata.json naming the build machine's absolute paths.
PIO=$WORK/pioproj/.pio/build/c3dev
mkdir -p "$PIO"
cp "$FIX/bootloader_esp32c3.bin" "$PIO/bootloader.bin"
cp "$FIX/partitions_singleapp.bin" "$PIO/partitions.bin"
cp "$HW/helloworld-esp32c3.bin" "$PIO/firmware.bin"
cat >"$PIO/idedata.json" <<'JSON'
{"env_name": "c3dev", "prog_path": "/home/dev/pioproj/.pio/build/c3dev/firmware.elf",
 "extra": {"flash_images": [
   {"path": "/home/dev/pioproj/.pio/build/c3dev/bootloader.bin", "offset": "0x0000"},
   {"path": "/home/dev/pioproj/.pio/build/c3dev/partitions.bin", "offset": "0x8000"}],
  "application_offset": "0x10000"}}
JSON
# PlatformIO (ESP32) without idedata.json: the family's usual offsets.
PION=$WORK/pio-noide/esp32dev
mkdir -p "$PION"
cp "$FIX/bootloader_esp32.bin" "$PION/bootloader.bin"
cp "$FIX/partitions_singleapp.bin" "$PION/partitions.bin"
cp "$HW/helloworld-esp32.bin" "$PION/firmware.bin"

# Arduino export (ESP32): the separate files and boot_app0.bin, and the merged one alone.
ARD=$WORK/blink-export
mkdir -p "$ARD"
cp "$FIX/bootloader_esp32.bin" "$ARD/blink.ino.bootloader.bin"
cp "$FIX/partitions_singleapp.bin" "$ARD/blink.ino.partitions.bin"
cp "$HW/helloworld-esp32.bin" "$ARD/blink.ino.bin"
make_random 8192 "$ARD/boot_app0.bin" 11
mkmerged() { # OUT BOOT BOOT_OFFSET APP
    python3 - "$@" <<'PY'
import sys
out, boot, boot_off, app = sys.argv[1], sys.argv[2], int(sys.argv[3], 0), sys.argv[4]
pt = sys.argv[5] if len(sys.argv) > 5 else None
img = bytearray(b'\xff' * 0x10000)
b = open(boot, 'rb').read(); img[boot_off:boot_off + len(b)] = b
p = open(pt, 'rb').read(); img[0x8000:0x8000 + len(p)] = p
img += open(app, 'rb').read()
open(out, 'wb').write(img)
PY
}
ARDM=$WORK/blink-merged
mkdir -p "$ARDM"
mkmerged "$ARDM/blink.ino.merged.bin" "$FIX/bootloader_esp32.bin" 0x1000 "$HW/helloworld-esp32.bin" \
    "$FIX/partitions_singleapp.bin"
# A merged factory image (ESP32-C3: the bootloader at 0x0).
mkmerged "$WORK/factory-c3.bin" "$FIX/bootloader_esp32c3.bin" 0x0 "$HW/helloworld-esp32c3.bin" \
    "$FIX/partitions_singleapp.bin"

# ESP Web Tools: one build per chip family, parts in subdirectories.
WT=$WORK/webtools
mkdir -p "$WT/esp32" "$WT/c3"
cp "$FIX/bootloader_esp32.bin" "$WT/esp32/bootloader.bin"
cp "$HW/helloworld-esp32.bin" "$WT/esp32/app.bin"
cp "$FIX/bootloader_esp32c3.bin" "$WT/c3/bootloader.bin"
cp "$HW/helloworld-esp32c3.bin" "$WT/c3/app.bin"
cp "$FIX/partitions_singleapp.bin" "$WT/partitions.bin"
cat >"$WT/manifest.json" <<'JSON'
{"name": "Hello World", "version": "2.0.1", "new_install_prompt_erase": true,
 "builds": [
  {"chipFamily": "ESP32", "parts": [{"path": "esp32/bootloader.bin", "offset": 4096},
     {"path": "partitions.bin", "offset": 32768}, {"path": "esp32/app.bin", "offset": 65536}]},
  {"chipFamily": "ESP32-C3", "parts": [{"path": "c3/bootloader.bin", "offset": 0},
     {"path": "partitions.bin", "offset": 32768}, {"path": "c3/app.bin", "offset": 65536}]}]}
JSON

# Broken trees: a wrong chip family (the ESP32-S2 app in an ESP32 build), a missing file,
# overlapping offsets.
BADCHIP=$WORK/badchip/build
mkdir -p "$BADCHIP"
cp -r "$IDF/bootloader" "$IDF/partition_table" "$BADCHIP/"
cp "$FIX/esp_idf_blink_esp32s2.bin" "$BADCHIP/blink.bin"
idf_args 0x10000 blink.bin esp32 >"$BADCHIP/flasher_args.json"
MISSING=$WORK/missing/build
mkdir -p "$MISSING"
cp -r "$IDF/partition_table" "$IDF/hello.bin" "$MISSING/"
idf_args 0x10000 hello.bin esp32 >"$MISSING/flasher_args.json"
OVERLAP=$WORK/overlap/build
mkdir -p "$OVERLAP"
cp -r "$IDF/bootloader" "$IDF/partition_table" "$IDF/hello.bin" "$OVERLAP/"
idf_args 0x2000 hello.bin esp32 >"$OVERLAP/flasher_args.json"
# ESP-IDF with CONFIG_ESPTOOLPY_AFTER_NORESET, CONFIG_ESPTOOLPY_NO_STUB and
# CONFIG_ESPTOOLPY_FLASHSIZE_DETECT: flasher_args.json says "after": "no_reset", "stub": false
# (idf.py flash hands both to esptool) and "flash_size": "detect" (the chip's: 4MB on esp_sim).
NORST=$WORK/norst/build
mkdir -p "$NORST"
cp -r "$IDF/bootloader" "$IDF/partition_table" "$IDF/hello.bin" "$NORST/"
idf_args 0x10000 hello.bin esp32 |
    sed 's/"after" : "hard_reset"/"after" : "no_reset"/; s/"stub" : true/"stub" : false/;
         s/"flash_size": "4MB"/"flash_size": "detect"/' >"$NORST/flasher_args.json"
[ "$(grep -c '"stub" : false\|"flash_size": "detect"' "$NORST/flasher_args.json")" = 2 ] ||
    fail "no-stub tree not made: $(cat "$NORST/flasher_args.json")"
WTBAD=$WORK/webtools-bad
cp -r "$WT" "$WTBAD"
sed -i 's/"ESP32-C3"/"ESP32-S3"/' "$WTBAD/manifest.json"

# ---- the CLI: flash --from ----------------------------------------------------------------
start_sim esp32
S32=$SIM_DIR P32=$SIM_PORT

# ESP-IDF, pointed at the project directory (its build/ is found).
sim_log_mark "$S32"
expect_exit 0 -p "$P32" --json flash --from "$WORK/proj"
assert_ok_result flash
assert_json '.source.format' esp-idf
assert_json '.source.esptool_args | tostring' '{"before":"default-reset","after":"hard-reset","stub":true}'
assert_json '.stub' true
sim_log_new_has 'reset -> boot' "$S32" || fail "extra_esptool_args.after hard_reset: the board was not reset"
assert_json '.source.descriptor' flasher_args.json
assert_json '.source.chip' ESP32
assert_json '.source.name' hello_world
assert_json '.source.version' v1.4.2
assert_json '.source.flash_size' 4MB
assert_json '.source.image_header.flash_size' 2MB
assert_json '[.source.regions[] | [.offset, .file, .role]] | tostring' \
    '[[4096,"bootloader/bootloader.bin","bootloader"],[32768,"partition_table/partition-table.bin","partition-table"],[65536,"hello.bin","app"]]'
assert_json '[.regions[].verified] | all' true
json_log_has 'Recognised an ESP-IDF build'
flash_region_equals "$S32" 0x1000 "$WORK/boot32-4mb.bin"
flash_region_equals "$S32" 0x8000 "$IDF/partition_table/partition-table.bin"
flash_region_equals "$S32" 0x10000 "$IDF/hello.bin"
log "esp-idf: flashed, bootloader header set to 4MB"

# extra_esptool_args after no_reset and stub false: the ROM loader only, and the board stays
# in the loader (one reset into it, none out); --after on the command line wins. "detect" on
# a board with 8MB: the bootloader header says 8MB (byte 3: 8MB code 3 << 4 | 40m 0).
start_sim esp32 --flash-size 8MB
S8=$SIM_DIR P8=$SIM_PORT
python3 -c "
import sys
d = bytearray(open(sys.argv[1], 'rb').read()); d[3] = 0x30
open(sys.argv[2], 'wb').write(d)" "$IDF/bootloader/bootloader.bin" "$WORK/boot32-8mb.bin"
sim_log_mark "$S8"
expect_exit 0 -p "$P8" --json --no-diff flash --from "$NORST"
assert_ok_result flash
assert_json '.source.esptool_args | tostring' '{"before":"default-reset","after":"no-reset","stub":false}'
assert_json '.source.flash_size' detect
assert_json '.stub' false
flash_region_equals "$S8" 0x1000 "$WORK/boot32-8mb.bin" # detect: the chip's 8MB in the header
json_log_has 'flasher_args.json: reset default-reset, leave no-reset, ROM loader only' ||
    fail "no log line for the build's reset and stub"
! sim_log_new_has 'cmd MEM_BEGIN' "$S8" || fail "\"stub\": false but the stub was loaded"
[ "$(sim_log_new "$S8" | grep -c 'EN low')" = 1 ] || fail "\"after\": \"no_reset\" but the board was reset again"
! sim_log_new_has 'reset -> boot' "$S8" || fail "\"after\": \"no_reset\" but the board booted its app"
flash_region_equals "$S8" 0x10000 "$IDF/hello.bin"
sim_log_mark "$S8"
expect_exit 0 -p "$P8" --json --no-diff --after hard-reset flash --from "$NORST"
assert_json '.stub' false
sim_log_new_has 'reset -> boot' "$S8" || fail "--after hard-reset did not win over the build's no_reset"
# "keep": the header's own 2MB stays, on the same 8MB board.
KEEP=$WORK/keep/build
mkdir -p "$KEEP"
cp -r "$IDF/bootloader" "$IDF/partition_table" "$IDF/hello.bin" "$KEEP/"
idf_args 0x10000 hello.bin esp32 | sed 's/"flash_size": "4MB"/"flash_size": "keep"/' >"$KEEP/flasher_args.json"
expect_exit 0 -p "$P8" --json --no-diff flash --from "$KEEP"
assert_json '.source.flash_size' keep
flash_region_equals "$S8" 0x1000 "$IDF/bootloader/bootloader.bin"
log "esp-idf: extra_esptool_args before/after/stub followed; flash_size detect and keep"

# Arduino, the separate files (boot_app0.bin at 0xe000); the offsets are stated.
expect_exit 0 -p "$P32" --json --no-diff flash --from "$ARD"
assert_ok_result flash
assert_json '.source.format' arduino
assert_json '.source.name' blink
assert_json '[.source.regions[] | .offset] | tostring' '[4096,32768,57344,65536]'
assert_json_true '.source.notes | any(test("usual ESP32 layout"))'
flash_region_equals "$S32" 0x1000 "$ARD/blink.ino.bootloader.bin"
flash_region_equals "$S32" 0x8000 "$ARD/blink.ino.partitions.bin"
flash_region_equals "$S32" 0xe000 "$ARD/boot_app0.bin"
flash_region_equals "$S32" 0x10000 "$ARD/blink.ino.bin"

# Arduino's merged image, then PlatformIO without idedata.json.
expect_exit 0 -p "$P32" --json flash --from "$ARDM"
assert_json '.source.format' arduino
assert_json '.source.regions[0].role' merged
assert_json '.source.regions[0].offset' 0
flash_region_equals "$S32" 0x0 "$ARDM/blink.ino.merged.bin"
expect_exit 0 -p "$P32" --json --no-diff flash --from "$PION"
assert_json '.source.format' platformio
assert_json '.source.descriptor' null
assert_json_true '.source.notes | any(test("no idedata.json"))'
flash_region_equals "$S32" 0x1000 "$PION/bootloader.bin"
flash_region_equals "$S32" 0x10000 "$PION/firmware.bin"

# ESP Web Tools: the build for the board's chip family.
expect_exit 0 -p "$P32" --json --no-diff flash --from "$WT/manifest.json"
assert_json '.source.format' esp-web-tools
assert_json '.source.chip' ESP32
assert_json '.source.chip_family' ESP32
assert_json '.source.name' Hello-World
flash_region_equals "$S32" 0x1000 "$WT/esp32/bootloader.bin"
flash_region_equals "$S32" 0x10000 "$WT/esp32/app.bin"

# Errors, each naming the file; the board is not written.
cp "$S32/flash.bin" "$WORK/before-errors.bin"
expect_exit 6 -p "$P32" --json flash --from "$BADCHIP"
assert_json_true '.error.message | test("blink\\.bin: image is for ESP32-S2.*flasher_args\\.json is for ESP32")'
expect_exit 6 -p "$P32" --json flash --from "$MISSING"
assert_json_true '.error.message | test("bootloader/bootloader\\.bin.*missing")'
expect_exit 6 -p "$P32" --json flash --from "$OVERLAP"
assert_json_true '.error.message | test("hello\\.bin \\(0x2000-0x207f\\) overlaps bootloader/bootloader\\.bin")'
expect_exit 6 -p "$P32" --json flash --from "$WTBAD"
assert_json_true '.error.message | test("ESP32-S3 build: c3/bootloader\\.bin: image is for ESP32-C3")'
expect_exit 6 -p "$P32" --json flash --from "$FIX/ram_helloworld/helloworld-esp32.bin"
assert_json_true '.error.message | test("helloworld-esp32\\.bin: not a merged image")'
expect_exit 6 -p "$P32" --json flash --from "$WORK/nowhere"
expect_exit 1 -p "$P32" flash --from "$IDF" 0x1000 "$IDF/hello.bin"
cmp -s "$S32/flash.bin" "$WORK/before-errors.bin" || fail "a refused build changed the flash"
log "cli: refusals name the file"

# ESP32-C3: PlatformIO with idedata.json, the Web Tools C3 build, a merged factory image.
start_sim esp32c3
SC3=$SIM_DIR PC3=$SIM_PORT
expect_exit 0 -p "$PC3" --json flash --from "$WORK/pioproj"
assert_ok_result flash
assert_json '.source.format' platformio
assert_json '.source.descriptor' idedata.json
assert_json '.source.chip' ESP32-C3
assert_json '[.source.regions[] | [.offset, .file]] | tostring' \
    '[[0,"bootloader.bin"],[32768,"partitions.bin"],[65536,"firmware.bin"]]'
flash_region_equals "$SC3" 0x0 "$PIO/bootloader.bin"
flash_region_equals "$SC3" 0x8000 "$PIO/partitions.bin"
flash_region_equals "$SC3" 0x10000 "$PIO/firmware.bin"
expect_exit 0 -p "$PC3" --json --no-diff flash --from "$WT"
assert_json '.source.chip' ESP32-C3
flash_region_equals "$SC3" 0x0 "$WT/c3/bootloader.bin"
flash_region_equals "$SC3" 0x10000 "$WT/c3/app.bin"
expect_exit 0 -p "$PC3" --json --no-diff flash --from "$WORK/factory-c3.bin"
assert_json '.source.format' merged-image
assert_json '.source.chip' ESP32-C3
flash_region_equals "$SC3" 0x0 "$WORK/factory-c3.bin"

# ESP8266: a single image at 0x0.
start_sim esp8266
expect_exit 0 -p "$SIM_PORT" --json flash --from "$FIX/esp8266_deepsleep.bin"
assert_json '.source.chip' ESP8266
assert_json '.source.regions[0].role' app
flash_region_equals "$SIM_DIR" 0x0 "$FIX/esp8266_deepsleep.bin"
log "cli: every format flashed"

# ---- espstationd --import ------------------------------------------------------------------
import_ok() { # ARGS...
    timeout 60 "$ESPSTATIOND" --data-dir "$DATA_DIR" "$@" >"$WORK/import.out" 2>"$WORK/import.err" ||
        fail "espstationd $* failed: $(cat "$WORK/import.err")"
    ! grep -q Sanitizer "$WORK/import.err" || fail "sanitizer report during import"
}
set_manifest() { # NAME VERSION -> the imported manifest.json
    local m="$DATA_DIR/firmware/$1/$2/manifest.json"
    [ -f "$m" ] || fail "$1@$2 is not in the catalog ($(ls -R "$DATA_DIR/firmware" 2>&1 | head -20))"
    cat "$m"
}
import_ok --import "$IDF"
grep -q 'recognised esp-idf (flasher_args.json)' "$WORK/import.err" || fail "no recognition line"
M=$(set_manifest hello_world v1.4.2)
[ "$(jq -c '[.chip, .flash_mode, .flash_size, .flash_freq]' <<<"$M")" = '["esp32","dio","4096KB","40m"]' ] ||
    fail "imported settings: $M"
[ "$(jq -c '[.regions[] | [.offset, .file, .kind]]' <<<"$M")" = \
    '[["0x1000","bootloader.bin","bootloader"],["0x8000","partition-table.bin","data"],["0x10000","hello.bin","app"]]' ] ||
    fail "imported regions: $M"
cmp -s "$DATA_DIR/firmware/hello_world/v1.4.2/hello.bin" "$IDF/hello.bin" || fail "app not stored as is"
set_manifest hello_world v1.4.2 |
    jq -e '.esptool_args == {"before": "default-reset", "after": "hard-reset", "stub": true}' >/dev/null ||
    fail "the build's esptool_args are not in the set: $(set_manifest hello_world v1.4.2)"
import_ok --import "$NORST" --name norst --fw-version 1
grep -q 'flasher_args.json asks for reset default-reset, leave no-reset, no stub: kept in the set' \
    "$WORK/import.err" || fail "the import does not state the build's reset/stub: $(cat "$WORK/import.err")"
set_manifest norst 1 |
    jq -e '.esptool_args == {"before": "default-reset", "after": "no-reset", "stub": false}' >/dev/null ||
    fail "no-stub/no-reset not kept in the set: $(set_manifest norst 1)"
import_ok --import "$PIO" --name c3-line --fw-version 7
set_manifest c3-line 7 | jq -e '.chip == "esp32c3" and (.regions | length) == 3' >/dev/null ||
    fail "platformio import"
import_ok --import "$WT"
set_manifest Hello-World-esp32 2.0.1 | jq -e '.chip == "esp32"' >/dev/null || fail "web tools esp32"
set_manifest Hello-World-esp32c3 2.0.1 | jq -e '.chip == "esp32c3"' >/dev/null || fail "web tools c3"
import_ok --import "$WORK/factory-c3.bin" --fw-version 1
set_manifest factory-c3 1 | jq -e '.regions == [{"offset": "0x0", "file": "factory-c3.bin", "kind": "data"}]' \
    >/dev/null || fail "merged import"
# The station's own set directory still imports through --import.
import_esp32_app 5
[ -f "$DATA_DIR/firmware/app/1.0/manifest.json" ] || fail "a station set did not import"
# Refusals: exit 1, the log names the file; nothing imported.
for bad in "$BADCHIP:blink\.bin: image is for ESP32-S2" "$MISSING:bootloader/bootloader\.bin.*missing" \
    "$OVERLAP:hello\.bin \(0x2000-0x207f\) overlaps"; do
    rc=0
    timeout 60 "$ESPSTATIOND" --data-dir "$DATA_DIR" --import "${bad%%:*}" --name refused \
        >/dev/null 2>"$WORK/import.err" || rc=$?
    [ "$rc" = 1 ] || fail "import of ${bad%%:*}: exit $rc, expected 1"
    grep -Eq "${bad#*:}" "$WORK/import.err" || fail "import log lacks /${bad#*:}/: $(cat "$WORK/import.err")"
done
[ ! -e "$DATA_DIR/firmware/refused" ] || fail "a refused build reached the catalog"
log "daemon: --import of every format"

# ---- the daemon flashes imported builds by profile --------------------------------------
start_sim esp32
J32=$SIM_DIR
start_sim esp32c3
JC3=$SIM_DIR
CFG=$WORK/line.json
cat >"$CFG" <<JSON
{"ports": [{"uri": "$J32/tty", "label": "A1"}, {"uri": "$JC3/tty", "label": "A2"}],
 "profiles": {"line": {"firmware": {"esp32": "hello_world@v1.4.2", "esp32c3": "factory-c3@1"}}}}
JSON
start_daemon "$CFG"
wait_sql "SELECT count(*) FROM jobs WHERE state = 'passed'" 2 90
flash_region_equals "$J32" 0x1000 "$WORK/boot32-4mb.bin" # the set's 4MB in the header
flash_region_equals "$J32" 0x8000 "$IDF/partition_table/partition-table.bin"
flash_region_equals "$J32" 0x10000 "$IDF/hello.bin"
flash_region_equals "$JC3" 0x0 "$WORK/factory-c3.bin"
# hello_world says stub true / hard_reset: the stub is loaded and the app started.
sim_log_mark "$J32" && SIM_LOG_MARK=0
sim_log_new_has 'cmd MEM_BEGIN' "$J32" || fail "default build: the daemon did not load the stub"
sim_log_new_has 'reset -> boot' "$J32" || fail "default build: the daemon did not reset into the app"
stop_daemon
log "daemon: imported builds flashed by profile"

# The no-stub/no-reset build, flashed by the daemon: ROM loader only (no MEM_BEGIN), and the
# board is left in its loader (no reset into the app: one EN pulse, the one into the loader).
start_sim esp32 --flash-size 8MB
JN=$SIM_DIR
cat >"$WORK/norst.json" <<JSON
{"ports": [{"uri": "$JN/tty", "label": "N1"}],
 "profiles": {"line": {"firmware": {"esp32": "norst@1"}}}}
JSON
start_daemon "$WORK/norst.json"
wait_sql "SELECT count(*) FROM jobs WHERE state = 'passed' AND firmware = 'norst@1'" 1 90
flash_region_equals "$JN" 0x10000 "$IDF/hello.bin"
SIM_LOG_MARK=0
! sim_log_new_has 'cmd MEM_BEGIN' "$JN" || fail "\"stub\": false in the set, but the daemon loaded the stub"
! sim_log_new_has 'reset -> boot' "$JN" || fail "\"after\": \"no-reset\" in the set, but the daemon reset the board into its app"
[ "$(sim_log_new "$JN" | grep -c 'EN low')" = 1 ] || fail "\"after\": \"no-reset\": the board was reset again"
grep -q 'norst@1 asks for ROM loader only (no stub), leave no-reset (esptool_args of the build)' \
    "$DAEMON_LOG" || fail "the job log does not say it follows the set's esptool_args"
stop_daemon
# The profile's own "after" and "stub" win over the set's.
cat >"$WORK/norst.json" <<JSON
{"ports": [{"uri": "$JN/tty", "label": "N1"}],
 "profiles": {"line": {"firmware": {"esp32": "norst@1"}, "after": "hard-reset", "stub": true,
                       "skip_if_same": false}}}
JSON
sim_log_mark "$JN"
start_daemon "$WORK/norst.json"
wait_sql "SELECT count(*) FROM jobs WHERE state = 'passed' AND firmware = 'norst@1'" 2 90
sim_log_new_has 'cmd MEM_BEGIN' "$JN" || fail "profile \"stub\": true did not win over the set's"
sim_log_new_has 'reset -> boot' "$JN" || fail "profile \"after\": \"hard-reset\" did not win over the set's"
stop_daemon
log "daemon: a set's esptool_args (no stub, no reset) followed; the profile's win"

# ---- REST upload of a tar and a zip ---------------------------------------------------------
TOKEN=builds-token
CFG=$WORK/station.json
echo "{\"api\": {\"token\": \"$TOKEN\"}}" >"$CFG"
start_api_daemon "$CFG"
(cd "$WORK" && tar -cf "$WORK/blink.tar" blink-export)
(cd "$IDF" && python3 -c "
import zipfile
with zipfile.ZipFile('$WORK/idf.zip', 'w') as z:
    for f in ('flasher_args.json', 'project_description.json', 'bootloader/bootloader.bin',
              'partition_table/partition-table.bin', 'hello.bin'):
        z.write(f, f)")
(cd "$WORK/pioproj" && tar -czf "$WORK/pio.tgz" .pio)
(cd "$WT" && tar -cf "$WORK/wt.tar" .)
(cd "$WORK/badchip" && tar -cf "$WORK/badchip.tar" build)
(cd "$WORK/missing" && tar -cf "$WORK/missing.tar" build)
(cd "$WORK/overlap" && tar -cf "$WORK/overlap.tar" build)
post() { # PATH FILE TYPE
    apit POST "$1" -H "Content-Type: $3" --data-binary "@$2"
}
post /api/v1/firmware/validate "$WORK/blink.tar" application/x-tar
expect_status 200 "validate a build"
expect_jq '.valid == true and .source.format == "arduino"'
[ ! -e "$DATA_DIR/firmware/blink" ] || fail "validate imported"
post '/api/v1/firmware?version=9.9' "$WORK/blink.tar" application/x-tar
expect_status 201 "arduino tar"
expect_jq '.imported.name == "blink" and .imported.version == "9.9" and .source.format == "arduino"'
expect_jq '.source.sets[0].chip == "ESP32" and (.source.sets[0].regions | length) == 4'
post /api/v1/firmware "$WORK/idf.zip" application/zip
expect_error 409 exists version # imported by --import above
expect_jq '.error.message | test("hello_world@v1\\.4\\.2")'
post '/api/v1/firmware?replace=true' "$WORK/idf.zip" application/zip
expect_status 201 "esp-idf zip"
expect_jq '.imported.name == "hello_world" and .source.descriptor == "flasher_args.json"'
expect_jq '.source.esptool_args == {"before": "default-reset", "after": "hard-reset", "stub": true}'
post /api/v1/firmware "$WORK/pio.tgz" application/gzip
expect_status 201 "platformio tgz"
expect_jq '.imported.name == "c3dev" and .source.sets[0].chip == "ESP32-C3"'
post '/api/v1/firmware?name=wt' "$WORK/wt.tar" application/x-tar
expect_status 201 "web tools tar"
expect_jq '[.sets[].name] == ["wt-esp32", "wt-esp32c3"]'
apit GET /api/v1/firmware
expect_jq '[.firmware[].name] | index("wt-esp32c3") != null'
# The catalog shows what a set keeps of the build's esptool_args (none for Web Tools).
expect_jq '(.firmware[] | select(.name == "norst") | .esptool_args) == {"before": "default-reset", "after": "no-reset", "stub": false}'
expect_jq '(.firmware[] | select(.name == "hello_world") | .esptool_args.stub) == true'
expect_jq '(.firmware[] | select(.name == "wt-esp32c3") | has("esptool_args")) == false'
apit GET /api/v1/firmware/norst/1
expect_jq '.esptool_args == {"before": "default-reset", "after": "no-reset", "stub": false}'
post /api/v1/firmware "$WORK/badchip.tar" application/x-tar
expect_error 422 validation_failed
expect_jq '.error.message | test("blink\\.bin: image is for ESP32-S2")'
post /api/v1/firmware "$WORK/missing.tar" application/x-tar
expect_error 422 validation_failed
expect_jq '.error.message | test("bootloader/bootloader\\.bin.*missing")'
post /api/v1/firmware "$WORK/overlap.tar" application/x-tar
expect_error 422 validation_failed
expect_jq '.error.message | test("hello\\.bin \\(0x2000-0x207f\\) overlaps bootloader/bootloader\\.bin")'
python3 -c "
import zipfile
with zipfile.ZipFile('$WORK/nothing.zip', 'w') as z: z.writestr('notes.txt', 'hello')"
post /api/v1/firmware "$WORK/nothing.zip" application/zip
expect_error 400 bad_request
expect_jq '.error.message | test("no manifest\\.json.*no build the station recognises")'
[ -z "$(ls -A "$DATA_DIR/uploads")" ] || fail "uploads left behind: $(ls "$DATA_DIR/uploads")"
stop_daemon
log "rest: tar, tgz and zip of builds imported; refusals name the file"
done_ok
