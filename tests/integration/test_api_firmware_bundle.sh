#!/usr/bin/env bash
# test_api_firmware_bundle: firmware sets uploaded as one archive over real HTTP
# (POST /api/v1/firmware[/validate] with a tar, tar.gz or zip body): each format
# imports and is listed with the right hashes (files at the root or under one
# top-level directory; unused entries are warnings); validate-only imports
# nothing; a bad image is a 422 naming the region; path traversal, absolute
# paths, symlinks, hard links, devices/FIFOs, duplicates, a zip bomb, a gzip
# bomb, too many entries, no manifest and garbage are 400 naming the entry and
# the problem, and leave nothing in uploads/ or the catalog, and post no
# firmware.imported event (a refused bundle used to post one with an empty name);
# other content types stay 415; the body limit is still 413.
source "${INTEG_LIB:?INTEG_LIB (tests/integration/lib.sh) must be set}"
source "$(dirname "$0")/daemon_lib.sh"
source "$(dirname "$0")/api_lib.sh"

LIMIT=400000
TOKEN=bundle-token
CFG=$WORK/station.json
cat >"$CFG" <<JSON
{"api": {"token": "$TOKEN", "max_body_bytes": $LIMIT}}
JSON

# A good set (root layout) and a set with a C3 image in an ESP32 set.
GOOD=$WORK/good
mkdir -p "$GOOD"
make_image_esp esp32 20000 "$GOOD/bootloader.bin" 3
make_image_esp esp32 60000 "$GOOD/app.bin" 4
make_random 3072 "$GOOD/part.bin" 9
manifest() { # NAME VERSION
    cat <<JSON
{"name": "$1", "version": "$2", "chip": "esp32",
 "regions": [{"offset": "0x1000", "file": "bootloader.bin", "kind": "bootloader"},
             {"offset": "0x8000", "file": "part.bin", "kind": "data"},
             {"offset": "0x10000", "file": "app.bin", "kind": "app"}]}
JSON
}
manifest bt 1.0.0 >"$GOOD/manifest.json"
echo "release notes" >"$GOOD/README.txt"
BAD=$WORK/bad
mkdir -p "$BAD"
cp "$GOOD/bootloader.bin" "$GOOD/part.bin" "$BAD/"
make_image_esp esp32c3 20000 "$BAD/app.bin" 5
manifest badimg 1.0.0 >"$BAD/manifest.json"

start_api_daemon "$CFG"

# mkbundle OUT FORMAT [python statements over t (tarfile) / z (zipfile)]: builds an archive
# with python3 (tar/zip tools refuse to write the hostile entries this test needs).
mkbundle() {
    python3 - "$1" "$2" "$3" <<'PY' || fail "building $1 failed"
import io, sys, tarfile, time, zipfile
out, fmt, body = sys.argv[1], sys.argv[2], sys.argv[3]
def tfile(t, name, data, **kw):
    ti = tarfile.TarInfo(name); ti.size = len(data); ti.mtime = int(time.time()); ti.mode = 0o644
    for k, v in kw.items(): setattr(ti, k, v)
    t.addfile(ti, io.BytesIO(data))
def tspecial(t, name, type_, linkname=""):
    ti = tarfile.TarInfo(name); ti.type = type_; ti.linkname = linkname
    t.addfile(ti)
def rd(p): return open(p, "rb").read()
if fmt == "zip":
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        exec(body)
else:
    with tarfile.open(out, "w:gz" if fmt == "tgz" else "w") as t:
        exec(body)
PY
}

# post PATH FILE CONTENT-TYPE [curl args]: the archive as the raw body.
post() {
    local p=$1 f=$2 ct=$3
    shift 3
    apit POST "$p" -H "Content-Type: $ct" --data-binary "@$f" "$@"
}

nothing_left() { # CONTEXT: no upload temp dirs, catalog unchanged (names given in KEEP)
    [ -z "$(ls -A "$DATA_DIR/uploads" 2>/dev/null)" ] ||
        fail "$1: upload temp files left: $(find "$DATA_DIR/uploads" | head)"
    local have
    have=$(find "$DATA_DIR/firmware" -mindepth 1 -maxdepth 1 ! -name '.*' -printf '%f\n' | sort | tr '\n' ' ')
    [ "$have" = "$KEEP" ] || fail "$1: catalog holds '$have', expected '$KEEP'"
    # a refused upload announces nothing: the journal's firmware.imported events are the
    # imports so far (IMPORTED), none of them nameless
    local ev
    ev=$(db "SELECT count(*) FROM events WHERE kind = 'firmware.imported';")
    [ "$ev" = "$IMPORTED" ] ||
        fail "$1: $ev firmware.imported event(s), expected $IMPORTED: $(db "SELECT id, data FROM events WHERE kind = 'firmware.imported';")"
}
KEEP=""
IMPORTED=0

G="$GOOD"
ROOTFILES="for n in ('manifest.json', 'bootloader.bin', 'part.bin', 'app.bin', 'README.txt'): tfile(t, n, rd('$G/' + n))"

# --- validate only ------------------------------------------------------------------------------
mkbundle "$WORK/good.tar" tar "$ROOTFILES"
post /api/v1/firmware/validate "$WORK/good.tar" application/x-tar
expect_status 200
expect_jq '.valid == true'
expect_jq '[.problems[] | select(.severity == "warning" and (.message | test("README.txt.*does not use")))] | length == 1'
api GET /api/v1/firmware
expect_jq '.firmware == []'
nothing_left "validate"

# --- tar (root layout) ------------------------------------------------------------------------------
post /api/v1/firmware "$WORK/good.tar" application/x-tar
expect_status 201
expect_jq '.imported.name == "bt" and .imported.version == "1.0.0" and (.imported.regions | length) == 3'
expect_jq '[.warnings[] | select(.message | test("README.txt"))] | length == 1'
KEEP="bt "
IMPORTED=1
nothing_left "tar import"
api GET /api/v1/firmware/bt/1.0.0
expect_status 200
expect_jq ".regions[2].file == \"app.bin\" and .regions[2].sha256 == \"$(sha256sum "$GOOD/app.bin" | cut -d' ' -f1)\""
expect_jq ".regions[1].md5 == \"$(md5sum "$GOOD/part.bin" | cut -d' ' -f1)\""
post /api/v1/firmware "$WORK/good.tar" application/x-tar
expect_error 409 exists

# --- tar.gz, one top-level directory, sniffed from application/octet-stream ---------------------------
manifest bgz 2.0.0 >"$WORK/m-bgz.json"
mkbundle "$WORK/good.tgz" tgz "
tspecial(t, 'fw-2.0.0', tarfile.DIRTYPE)
tfile(t, 'fw-2.0.0/manifest.json', rd('$WORK/m-bgz.json'))
for n in ('bootloader.bin', 'part.bin', 'app.bin'): tfile(t, './fw-2.0.0/' + n, rd('$G/' + n))
tfile(t, 'fw-2.0.0/docs/notes.txt', b'deeper, ignored')"
post /api/v1/firmware "$WORK/good.tgz" application/gzip
expect_status 201
expect_jq '.imported.name == "bgz" and (.imported.regions | length) == 3'
expect_jq '[.warnings[] | select(.message | test("fw-2.0.0/docs/notes.txt"))] | length == 1'
manifest bgz 2.0.1 >"$WORK/m-bgz.json"
mkbundle "$WORK/good2.tgz" tgz "
tfile(t, 'fw/manifest.json', rd('$WORK/m-bgz.json'))
for n in ('bootloader.bin', 'part.bin', 'app.bin'): tfile(t, 'fw/' + n, rd('$G/' + n))"
post /api/v1/firmware "$WORK/good2.tgz" application/octet-stream
expect_status 201
expect_jq '.imported.version == "2.0.1" and .warnings == []'
KEEP="bgz bt "
IMPORTED=3
nothing_left "tar.gz import"

# --- zip -----------------------------------------------------------------------------------------------------
manifest bzip 3.0.0 >"$WORK/m-zip.json"
mkbundle "$WORK/good.zip" zip "
z.write('$WORK/m-zip.json', 'manifest.json')
for n in ('bootloader.bin', 'part.bin', 'app.bin'): z.write('$G/' + n, n)
z.writestr('__MACOSX/._app.bin', b'mac junk')"
post /api/v1/firmware "$WORK/good.zip" application/zip
expect_status 201
expect_jq '.imported.name == "bzip" and .warnings == []'
KEEP="bgz bt bzip "
IMPORTED=4
nothing_left "zip import"
api GET /api/v1/firmware
expect_jq '[.firmware[] | "\(.name)@\(.version)"] == ["bgz@2.0.0", "bgz@2.0.1", "bt@1.0.0", "bzip@3.0.0"]'
api GET /api/v1/firmware/bzip/3.0.0
expect_jq ".regions[0].sha256 == \"$(sha256sum "$GOOD/bootloader.bin" | cut -d' ' -f1)\""

# --- a bad image: 422 naming the region (validate and import) --------------------------------------------------
mkbundle "$WORK/bad.zip" zip "
for n in ('manifest.json', 'bootloader.bin', 'part.bin', 'app.bin'): z.write('$BAD/' + n, n)"
post /api/v1/firmware/validate "$WORK/bad.zip" application/zip
expect_error 422 validation_failed
expect_jq '.valid == false'
expect_jq '[.error.problems[] | select(.region == 2 and .file == "app.bin" and .severity == "error" and (.message | test("ESP32-C3")))] | length == 1'
post /api/v1/firmware "$WORK/bad.zip" application/x-zip-compressed
expect_error 422 validation_failed
expect_jq '[.error.problems[] | select(.region == 2 and .file == "app.bin")] | length >= 1'
nothing_left "bad image"

# --- unsafe or unreadable bundles: 400 naming the entry ------------------------------------------------------------
refused() { # FILE CONTENT-TYPE REGEX CONTEXT
    post /api/v1/firmware "$1" "$2"
    expect_error 400 bad_request "" "$4"
    jq -e --arg re "$3" '.error.message | test($re)' >/dev/null <<<"$RESP" ||
        fail "$4: message does not match /$3/: $RESP"
    log "$4: $(jqr .error.message)"
    nothing_left "$4"
}
FILES="for n in ('manifest.json', 'bootloader.bin', 'part.bin', 'app.bin'): tfile(t, n, rd('$G/' + n))"
mkbundle "$WORK/dotdot.tar" tar "$FILES
tfile(t, '../evil.bin', b'x' * 10)"
refused "$WORK/dotdot.tar" application/x-tar '"\.\./evil\.bin".*\.\.' "path traversal"
[ ! -e "$DATA_DIR/evil.bin" ] && [ ! -e "$DATA_DIR/uploads/evil.bin" ] || fail "traversal wrote a file"
mkbundle "$WORK/dotdot.zip" zip "
z.write('$G/manifest.json', 'manifest.json')
z.writestr('fw/../../evil.bin', b'x' * 10)"
refused "$WORK/dotdot.zip" application/zip 'evil\.bin.*\.\.' "zip path traversal"
mkbundle "$WORK/abs.tar" tar "$FILES
tfile(t, '/tmp/evil-abs.bin', b'x')"
refused "$WORK/abs.tar" application/x-tar '"/tmp/evil-abs\.bin" is an absolute path' "absolute path"
[ ! -e /tmp/evil-abs.bin ] || fail "absolute path written"
mkbundle "$WORK/symlink.tar" tar "
tspecial(t, 'app.bin', tarfile.SYMTYPE, '/etc/passwd')
$FILES"
refused "$WORK/symlink.tar" application/x-tar '"app\.bin" is a symbolic link.*/etc/passwd' "symlink"
mkbundle "$WORK/hardlink.tar" tar "$FILES
tspecial(t, 'copy.bin', tarfile.LNKTYPE, 'app.bin')"
refused "$WORK/hardlink.tar" application/x-tar '"copy\.bin" is a hard link' "hard link"
mkbundle "$WORK/fifo.tar" tar "$FILES
tspecial(t, 'pipe', tarfile.FIFOTYPE)"
refused "$WORK/fifo.tar" application/x-tar '"pipe" is a device, FIFO or socket' "fifo"
mkbundle "$WORK/dup.tar" tar "$FILES
tfile(t, './app.bin', b'second copy')"
refused "$WORK/dup.tar" application/x-tar '"app\.bin" appears twice' "duplicate"
mkbundle "$WORK/many.tgz" tgz "
for i in range(1001): tfile(t, 'f%d' % i, b'')"
refused "$WORK/many.tgz" application/gzip 'more than 1000 entries' "too many entries"
mkbundle "$WORK/nomanifest.zip" zip "z.write('$G/app.bin', 'app.bin')"
refused "$WORK/nomanifest.zip" application/zip 'no manifest\.json' "no manifest"
mkbundle "$WORK/twomanifests.tar" tar "
tfile(t, 'a/manifest.json', rd('$G/manifest.json'))
tfile(t, 'b/manifest.json', rd('$G/manifest.json'))"
refused "$WORK/twomanifests.tar" application/x-tar 'two manifests' "two manifests"
# Bombs: a few KiB that unpack past the limit (counted as decompressed, refused mid-way).
mkbundle "$WORK/bomb.zip" zip "
z.write('$G/manifest.json', 'manifest.json')
z.writestr('app.bin', b'\0' * (4 * $LIMIT))"
[ "$(size_of "$WORK/bomb.zip")" -lt $((LIMIT / 50)) ] || fail "the zip bomb is not small"
refused "$WORK/bomb.zip" application/zip '"app\.bin".*unpacks to more than 400000 bytes.*bomb' "zip bomb"
mkbundle "$WORK/bomb.tgz" tgz "$FILES
tfile(t, 'pad.bin', b'\0' * (4 * $LIMIT))"
refused "$WORK/bomb.tgz" application/gzip '"pad\.bin".*unpacks to more than' "gzip bomb"
head -c 5000 /dev/urandom >"$WORK/garbage.bin"
refused "$WORK/garbage.bin" application/octet-stream 'not a readable tar, tar\.gz or zip archive' "garbage"
head -c 700 "$WORK/good.tgz" >"$WORK/truncated.tgz"
post /api/v1/firmware "$WORK/truncated.tgz" application/gzip
expect_error 400 bad_request
log "truncated: $(jqr .error.message)"
nothing_left "truncated"

# --- content types and limits --------------------------------------------------------------------------------------------
post /api/v1/firmware "$WORK/good.tar" text/plain
expect_error 415 unsupported_media_type
expect_jq '.error.message | test("tar")'
api POST /api/v1/firmware -H 'Content-Type: application/x-tar' --data-binary "@$WORK/good.tar"
expect_error 401 unauthorized
make_random $((LIMIT + 1000)) "$WORK/big.bin" 1
mkbundle "$WORK/big.tar" tar "$FILES
tfile(t, 'big.bin', rd('$WORK/big.bin'))"
post /api/v1/firmware "$WORK/big.tar" application/x-tar -H 'Expect: 100-continue'
expect_error 413 payload_too_large
nothing_left "oversized"

stop_daemon
done_ok
