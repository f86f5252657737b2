#!/usr/bin/env bash
# test_package_deb: the Debian package (issue 10 part 3). From a fresh build dir configured
# as the README says (-DCMAKE_INSTALL_PREFIX=/usr -DESPSTATION_PACKAGE=ON, RelWithDebInfo),
# `cpack -G DEB` must make espstation_<version>_<arch>.deb with:
#  - control: name, version from project(), the host's architecture, section, maintainer,
#    library dependencies found by dpkg-shlibdeps (libc6, libserialport0, ...), adduser;
#  - files: both binaries (their built-in stub dir and web root are the installed ones),
#    every fetched flasher stub, the web root, the docs with copyright and changelog.gz, man
#    pages, udev rules, the systemd unit (systemd-analyze verify says nothing), the
#    sysusers.d entry for user and group espstation, /etc/espstation/espstation.json and
#    nothing else (no test binaries, nothing under /usr/local), all owned by root;
#  - conffiles: exactly /etc/espstation/espstation.json; that config says data_dir
#    /var/lib/espstation and listen 127.0.0.1:8080, and the packaged daemon starts with it
#    (data dir and port overridden) and serves the packaged status page;
#  - maintainer scripts (sh -n clean, 0755) that, run with stand-in commands on PATH (so
#    the host is never touched), create the user with
#    systemd-sysusers espstation.conf (adduser/addgroup without it), enable the unit with
#    deb-systemd-helper on a first install, keep an admin's disable on upgrades, start or
#    restart it and reload the udev rules only where systemd / udevd run, and mask / purge
#    the unit's state on remove / purge;
#  - as root with mount namespaces and overlayfs, a real dpkg -i / reinstall / -r / -P in a
#    chroot on a throwaway overlay of / (never on the host): user and group created, conffile
#    registered and an edit of it kept, unit enabled, the installed daemon runs as espstation
#    with the installed config, stubs and status page; purge removes config and unit state;
#  - lintian --fail-on error passes (its warnings are printed).
# A package is a release build: in the sanitizer build this test skips.
source "${INTEG_LIB:?INTEG_LIB (tests/integration/lib.sh) must be set}"

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
if grep -qs '^ESPSTATION_SANITIZE:BOOL=ON' "$(dirname "$ESP_SIM")/../CMakeCache.txt"; then
    log "SKIP: the package is built from a release configuration (the normal build runs this)"
    exit 77
fi
for tool in cmake cpack dpkg-deb dpkg-shlibdeps lintian systemd-analyze jq curl; do
    command -v "$tool" >/dev/null || fail "$tool not found (scripts/setup.sh installs it)"
done
[ -f "$STUB_DIR/esp32.json" ] || fail "no flasher stubs in $STUB_DIR (run scripts/setup.sh)"

VERSION=$(sed -n 's/^project(espstation VERSION \([0-9.]*\).*/\1/p' "$ROOT/CMakeLists.txt")
ARCH=$(dpkg --print-architecture)
[ -n "$VERSION" ] || fail "no version in project() of $ROOT/CMakeLists.txt"

# --- build -------------------------------------------------------------------------------
B=$WORK/build
cmake -S "$ROOT" -B "$B" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_INSTALL_PREFIX=/usr \
    -DESPSTATION_PACKAGE=ON -DESPSTATION_STUB_DIR="$STUB_DIR" >"$WORK/configure.log" 2>&1 ||
    fail "configure: $(tail -20 "$WORK/configure.log")"
grep -q '^ESPSTATION_TESTS:BOOL=OFF' "$B/CMakeCache.txt" || fail "a package build builds the tests"
timeout 540 cmake --build "$B" -j2 >"$WORK/build.log" 2>&1 || fail "build: $(tail -30 "$WORK/build.log")"
(cd "$B" && timeout 300 cpack -G DEB) >"$WORK/cpack.log" 2>&1 || fail "cpack: $(tail -30 "$WORK/cpack.log")"
DEB=$B/espstation_${VERSION}_${ARCH}.deb
[ -f "$DEB" ] || fail "no $(basename "$DEB"): $(ls "$B"/*.deb 2>&1)"
log "$(basename "$DEB"): $(stat -c %s "$DEB") bytes"

# --- control -----------------------------------------------------------------------------
field() { dpkg-deb -f "$DEB" "$1"; }
[ "$(field Package)" = espstation ] || fail "Package: $(field Package)"
[ "$(field Version)" = "$VERSION" ] || fail "Version: $(field Version)"
[ "$(field Architecture)" = "$ARCH" ] || fail "Architecture: $(field Architecture)"
[ "$(field Section)" = electronics ] || fail "Section: $(field Section)"
[[ "$(field Maintainer)" =~ ^[^\<]+\ \<[^@\>]+@[^\>]+\>$ ]] || fail "Maintainer: $(field Maintainer)"
DEPENDS=$(field Depends)
for dep in libc6 libserialport0 libjson-c5 libsqlite3-0 libmicrohttpd12 libudev1 adduser; do
    [[ ", $DEPENDS," == *", $dep"[\ ,]* ]] || fail "Depends lacks $dep: $DEPENDS"
done

# --- files -------------------------------------------------------------------------------
dpkg-deb -c "$DEB" >"$WORK/contents" || fail "dpkg-deb -c"
awk '{ print $6 }' "$WORK/contents" | sed 's|^\./|/|; s|/$||' | grep -v '^$' | sort >"$WORK/files"
log "package: $(awk '$1 !~ /^d/' "$WORK/contents" | wc -l) files ($(wc -l <"$WORK/files") entries with the directories)"
want=(/usr/bin/espstation /usr/bin/espstationd
    /usr/share/espstation/web/index.html /usr/share/espstation/web/app.js
    /usr/share/doc/espstation/copyright /usr/share/doc/espstation/changelog.gz
    /usr/share/doc/espstation/README.md /usr/share/doc/espstation/CONFIG.md
    /usr/share/doc/espstation/UDEV.md /usr/share/doc/espstation/API.md
    /usr/share/man/man1/espstation.1.gz /usr/share/man/man8/espstationd.8.gz
    /usr/lib/udev/rules.d/60-espstation.rules /usr/lib/systemd/system/espstationd.service
    /usr/lib/sysusers.d/espstation.conf /etc/espstation/espstation.json)
for s in "$STUB_DIR"/*.json; do want+=("/usr/share/espstation/stubs/$(basename "$s")"); done
for f in "${want[@]}"; do
    grep -qxF "$f" "$WORK/files" || fail "the package lacks $f: $(cat "$WORK/contents")"
done
stray=$(grep -Ev '^/(etc/espstation|usr/bin|usr/share/(espstation|doc/espstation|man/man[18])|usr/lib/(udev/rules\.d|systemd/system|sysusers\.d))(/|$)' "$WORK/files" |
    grep -Evx '/etc|/usr|/usr/share|/usr/lib|/usr/lib/udev|/usr/lib/systemd|/usr/share/doc|/usr/share/man' || true)
[ -z "$stray" ] || fail "unexpected files in the package: $stray"
[ "$(grep -c '^/usr/bin/' "$WORK/files")" = 2 ] || fail "binaries: $(grep '^/usr/bin/' "$WORK/files")"
notroot=$(awk '$2 != "root/root"' "$WORK/contents")
[ -z "$notroot" ] || fail "files not owned by root: $notroot"

X=$WORK/root
dpkg-deb -x "$DEB" "$X" || fail "dpkg-deb -x"
C=$WORK/control
dpkg-deb -e "$DEB" "$C" || fail "dpkg-deb -e"

# conffiles and the default configuration
[ "$(cat "$C/conffiles")" = /etc/espstation/espstation.json ] || fail "conffiles: $(cat "$C/conffiles")"
[ "$(stat -c %a "$X/etc/espstation/espstation.json")" = 644 ] || fail "config mode"
cfg=$(sed 's|^ *//.*||' "$X/etc/espstation/espstation.json") # the daemon takes comments, jq does not
[ "$(jq -r .data_dir <<<"$cfg")" = /var/lib/espstation ] || fail "config data_dir: $cfg"
[ "$(jq -r .listen <<<"$cfg")" = 127.0.0.1:8080 ] || fail "config listen: $cfg"
grep -qx 'u espstation - .* /var/lib/espstation /usr/sbin/nologin' "$X/usr/lib/sysusers.d/espstation.conf" ||
    fail "sysusers.d: $(cat "$X/usr/lib/sysusers.d/espstation.conf")"
grep -q 'GROUP="espstation", MODE="0660"' "$X/usr/lib/udev/rules.d/60-espstation.rules" || fail "udev rules"
cmp -s "$X/usr/share/espstation/stubs/esp32.json" "$STUB_DIR/esp32.json" || fail "stub esp32.json differs"
grep -q 'License: Apache-2.0' "$X/usr/share/doc/espstation/copyright" || fail "copyright: no stub licence"
zcat "$X/usr/share/doc/espstation/changelog.gz" | head -1 | grepq "^espstation ($VERSION) " ||
    fail "changelog: $(zcat "$X/usr/share/doc/espstation/changelog.gz" | head -1)"

# the unit: the package's paths, systemd-analyze verify silent (ExecStart pointed at the
# unpacked binary, which the check wants to exist)
U=$X/usr/lib/systemd/system/espstationd.service
grep -q '^ExecStart=/usr/bin/espstationd --config /etc/espstation/espstation.json --web-root /usr/share/espstation/web$' "$U" ||
    fail "unit ExecStart: $(grep ExecStart "$U")"
for line in User=espstation Group=espstation StateDirectory=espstation LimitNOFILE=65536 \
    WantedBy=multi-user.target; do
    grep -qx "$line" "$U" || fail "the unit lacks $line"
done
mkdir -p "$WORK/unit"
sed "s|=/usr/bin/espstationd|=$X/usr/bin/espstationd|" "$U" >"$WORK/unit/espstationd.service"
out=$(systemd-analyze verify "$WORK/unit/espstationd.service" 2>&1) || fail "systemd-analyze verify: $out"
[ -z "$out" ] || fail "systemd-analyze verify: $out"

# the binaries: built-in stub dir and web root are where the package puts them
"$X/usr/bin/espstation" --help 2>&1 | grepq 'else /usr/share/espstation/stubs' ||
    fail "the CLI's default stub dir is not the packaged one: $("$X/usr/bin/espstation" --help 2>&1 | grep -A1 stub-dir)"
help=$("$X/usr/bin/espstationd" --help)
grep -q '\$ESPSTATION_STUB_DIR, /usr/share/espstation/stubs)' <<<"$help" || fail "espstationd stub default: $help"
grep -q 'default: /usr/share/espstation/web)' <<<"$help" || fail "espstationd web root default: $help"

# the packaged daemon with the packaged config (own data dir and port: nothing of the host's)
DPID=""
trap 'rc=$?; [ -z "$DPID" ] || kill "$DPID" 2>/dev/null; (exit $rc); _cleanup' EXIT
env -u ESPSTATION_STUB_DIR "$X/usr/bin/espstationd" --config "$X/etc/espstation/espstation.json" \
    --data-dir "$WORK/data" --listen 127.0.0.1:0 --port-file "$WORK/port" --no-udev \
    --web-root "$X/usr/share/espstation/web" >"$WORK/daemon.log" 2>&1 &
DPID=$!
deadline=$((SECONDS + 20))
until [ -s "$WORK/port" ]; do
    kill -0 "$DPID" 2>/dev/null || fail "the packaged daemon exited: $(cat "$WORK/daemon.log")"
    [ $SECONDS -lt $deadline ] || fail "the packaged daemon did not listen: $(cat "$WORK/daemon.log")"
    sleep 0.05
done
timeout 10 curl -sS -o "$WORK/page" "http://127.0.0.1:$(cat "$WORK/port")/" || true
kill -TERM "$DPID"
rc=0
wait "$DPID" || rc=$?
DPID=""
[ "$rc" = 0 ] || fail "the packaged daemon exited $rc on SIGTERM: $(cat "$WORK/daemon.log")"
cmp -s "$WORK/page" "$X/usr/share/espstation/web/index.html" ||
    fail "the packaged status page was not served: $(head -c 300 "$WORK/page")"
grep -q "flasher stubs from /usr/share/espstation/stubs (the build's default)" "$WORK/daemon.log" ||
    fail "the daemon did not take the packaged stubs: $(cat "$WORK/daemon.log")"

# --- maintainer scripts ------------------------------------------------------------------
for s in postinst prerm postrm; do
    [ "$(stat -c %a "$C/$s")" = 755 ] || fail "$s mode $(stat -c %a "$C/$s")"
    sh -n "$C/$s" || fail "$s: syntax"
done
grep -q 'systemd-sysusers espstation.conf' "$C/postinst" || fail "postinst does not run systemd-sysusers"
grep -q 'udevadm control --reload-rules' "$C/postinst" || fail "postinst does not reload the udev rules"

# Stand-ins on an otherwise empty PATH record what the scripts call. WAS_ENABLED=1: the
# admin disabled the unit (deb-systemd-helper was-enabled fails).
FAKE=$WORK/fakebin
mkdir -p "$FAKE"
for cmd in systemd-sysusers addgroup adduser getent udevadm deb-systemd-helper deb-systemd-invoke systemctl; do
    cat >"$FAKE/$cmd" <<EOF
#!/bin/sh
echo "$cmd \$*" >>"\$CALLS"
case "$cmd \$*" in
getent*) exit 2 ;;
*was-enabled*) exit \${WAS_ENABLED:-0} ;;
esac
exit 0
EOF
    chmod +x "$FAKE/$cmd"
done
# run_script NAME [args...]: the control script with only the stand-ins on PATH; its calls in $WORK/calls.
run_script() {
    local s=$1
    shift
    : >"$WORK/calls"
    env -i PATH="$FAKE" CALLS="$WORK/calls" WAS_ENABLED="${WAS_ENABLED:-0}" /bin/sh "$C/$s" "$@" \
        >"$WORK/script.out" 2>&1 || fail "$s $* exited $?: $(cat "$WORK/script.out")"
}
# expect_calls WHAT LINE...: the calls recorded, in order, are exactly these lines.
expect_calls() {
    local what=$1
    shift
    local want
    want=$(printf '%s\n' "$@" | grep -v '^$' || true)
    [ "$(cat "$WORK/calls")" = "$want" ] ||
        fail "$what: calls
$(cat "$WORK/calls")
--- wanted:
$want"
}
SYSTEMD=0
UDEV=0
[ -d /run/systemd/system ] && SYSTEMD=1
[ -d /run/udev ] && UDEV=1
udev_calls=()
[ $UDEV = 1 ] && udev_calls=("udevadm control --reload-rules" "udevadm trigger --subsystem-match=tty --action=change")
U1=espstationd.service
enable_calls=("deb-systemd-helper unmask $U1" "deb-systemd-helper --quiet was-enabled $U1")
start=() restart=() stop=() reload=()
if [ $SYSTEMD = 1 ]; then
    start=("systemctl --system daemon-reload" "deb-systemd-invoke start $U1")
    restart=("systemctl --system daemon-reload" "deb-systemd-invoke try-restart $U1")
    stop=("deb-systemd-invoke stop $U1")
    reload=("systemctl --system daemon-reload")
fi
rm_udev=()
[ $UDEV = 1 ] && rm_udev=("udevadm control --reload-rules")

run_script postinst configure
expect_calls "postinst configure (first install)" "systemd-sysusers espstation.conf" "${udev_calls[@]}" \
    "${enable_calls[@]}" "deb-systemd-helper enable $U1" "${start[@]}"
WAS_ENABLED=1 run_script postinst configure 0.0.9
expect_calls "postinst configure 0.0.9 (upgrade, unit disabled by the admin)" \
    "systemd-sysusers espstation.conf" "${udev_calls[@]}" "${enable_calls[@]}" \
    "deb-systemd-helper update-state $U1" "${restart[@]}"
rm "$FAKE/systemd-sysusers"
run_script postinst configure
expect_calls "postinst configure without systemd-sysusers" "getent group espstation" \
    "addgroup --system --quiet espstation" "getent passwd espstation" \
    "adduser --system --quiet --ingroup espstation --no-create-home --home /var/lib/espstation --shell /usr/sbin/nologin --gecos espstation flashing station espstation" \
    "${udev_calls[@]}" "${enable_calls[@]}" "deb-systemd-helper enable $U1" "${start[@]}"
run_script prerm remove
expect_calls "prerm remove" "${stop[@]}"
run_script prerm upgrade 0.1.1
expect_calls "prerm upgrade"
run_script postrm remove
expect_calls "postrm remove" "deb-systemd-helper mask $U1" "${reload[@]}" "${rm_udev[@]}"
run_script postrm purge
expect_calls "postrm purge" "deb-systemd-helper purge $U1" "deb-systemd-helper unmask $U1" \
    "${reload[@]}" "${rm_udev[@]}"
run_script postrm upgrade 0.1.1
expect_calls "postrm upgrade"

# --- a real install, in a throwaway root --------------------------------------------------
# As root with mount namespaces and overlayfs: dpkg -i in a chroot whose root is an overlay
# of / with its changes in a tmpfs that vanishes with the namespace (the host's own files,
# users and dpkg database are never written). Elsewhere this part is not run (logged).
throwaway_root() {
    [ "$(id -u)" = 0 ] || return 1
    command -v unshare >/dev/null && command -v chroot >/dev/null || return 1
    mkdir -p "$WORK/ovl"
    timeout 20 unshare --mount --propagation private sh -c '
        mount -t tmpfs tmpfs "$1" && mkdir "$1/u" "$1/w" "$1/m" &&
        mount -t overlay overlay -o "lowerdir=/,upperdir=$1/u,workdir=$1/w" "$1/m"' sh "$WORK/ovl" \
        >/dev/null 2>&1
}
if throwaway_root; then
    cat >"$WORK/inside.sh" <<'INSIDE'
# Runs in the throwaway root. Each step prints "ok: ..." or fails (set -e).
set -eu
deb=$1
step() { echo "ok: $*"; }
dpkg -i "$deb" >/tmp/dpkg-i.log 2>&1 || { cat /tmp/dpkg-i.log; exit 1; }
step "dpkg -i"
[ "$(getent passwd espstation | cut -d: -f6,7)" = /var/lib/espstation:/usr/sbin/nologin ]
[ "$(id -gn espstation)" = espstation ]
step "user and group espstation"
dpkg-query -W -f='${Conffiles}\n' espstation | grep -q '^ /etc/espstation/espstation.json [0-9a-f]\{32\}$'
step "conffile registered"
[ -L /etc/systemd/system/multi-user.target.wants/espstationd.service ]
step "unit enabled"
# what StateDirectory= does under systemd, then the service's command as its user, on a free port
install -d -o espstation -g espstation -m 0750 /var/lib/espstation
setpriv --reuid espstation --regid espstation --init-groups /usr/bin/espstationd \
    --config /etc/espstation/espstation.json --listen 127.0.0.1:0 --port-file /tmp/port \
    --no-udev >/tmp/daemon.log 2>&1 &
pid=$!
i=0
until [ -s /tmp/port ]; do
    i=$((i + 1))
    [ $i -lt 200 ] && kill -0 $pid || { cat /tmp/daemon.log; exit 1; }
    sleep 0.05
done
[ "$(curl -sS -o /dev/null -w '%{http_code}' "http://127.0.0.1:$(cat /tmp/port)/")" = 200 ]
kill -TERM $pid
wait $pid
grep -q 'flasher stubs from /usr/share/espstation/stubs' /tmp/daemon.log
[ "$(stat -c %U /var/lib/espstation/records.db)" = espstation ]
step "the installed daemon runs as espstation with the installed config"
echo '{"data_dir": "/var/lib/espstation", "listen": "127.0.0.1:8081"}' >/etc/espstation/espstation.json
dpkg -i "$deb" >/tmp/dpkg-i2.log 2>&1 || { cat /tmp/dpkg-i2.log; exit 1; }
grep -q 8081 /etc/espstation/espstation.json
step "reinstall keeps the edited conffile"
dpkg -r espstation >/dev/null 2>&1
[ ! -e /usr/bin/espstationd ] && [ -e /etc/espstation/espstation.json ]
step "remove keeps the configuration"
dpkg -P espstation >/dev/null 2>&1
[ ! -e /etc/espstation ] && [ ! -e /etc/systemd/system/multi-user.target.wants/espstationd.service ]
[ -d /var/lib/espstation ] && getent passwd espstation >/dev/null
step "purge removes configuration and unit state, keeps the data and the user"
INSIDE
    cp "$DEB" "$WORK/ovl.deb"
    rc=0
    timeout 300 unshare --mount --propagation private sh -c '
        set -e
        o=$1 w=$2
        mount -t tmpfs tmpfs "$o"
        mkdir "$o/u" "$o/w" "$o/m"
        mount -t overlay overlay -o "lowerdir=/,upperdir=$o/u,workdir=$o/w" "$o/m"
        mount -t proc proc "$o/m/proc"
        mount --rbind /dev "$o/m/dev"
        mount -t tmpfs tmpfs "$o/m/run"
        mount -t tmpfs tmpfs "$o/m/tmp"
        cp "$w/ovl.deb" "$o/m/tmp/espstation.deb"
        cp "$w/inside.sh" "$o/m/tmp/inside.sh"
        env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
            chroot "$o/m" sh /tmp/inside.sh /tmp/espstation.deb' sh "$WORK/ovl" "$WORK" \
        >"$WORK/inside.out" 2>&1 || rc=$?
    sed 's/^/    /' "$WORK/inside.out" >&2
    [ "$rc" = 0 ] || fail "install in the throwaway root failed (exit $rc) after: $(grep '^ok:' "$WORK/inside.out" | tail -1)"
    [ "$(grep -c '^ok:' "$WORK/inside.out")" = 8 ] || fail "throwaway install: steps missing"
else
    log "not run: dpkg -i in a throwaway root (needs root, unshare and overlayfs); nothing is installed on this host"
fi

# --- lintian -----------------------------------------------------------------------------
rc=0
timeout 300 lintian --fail-on error --display-info --tag-display-limit 0 "$DEB" >"$WORK/lintian.out" 2>&1 || rc=$?
grep -E '^[EWI]: ' "$WORK/lintian.out" >&2 || true
[ "$rc" -eq 0 ] || fail "lintian --fail-on error exited $rc: $(cat "$WORK/lintian.out")"
! grep -q '^E: ' "$WORK/lintian.out" || fail "lintian errors"
log "lintian: $(grep -c '^E: ' "$WORK/lintian.out") errors, $(grep -c '^W: ' "$WORK/lintian.out") warnings, $(grep -c '^I: ' "$WORK/lintian.out") info"

done_ok
