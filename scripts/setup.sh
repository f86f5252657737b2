#!/usr/bin/env bash
# Installs what espstation needs on Debian 12 (apt-get for libraries and
# tools, npm for the flasher stubs), skipping what is already there.
# Usage: scripts/setup.sh [BUILD_ROOT]   (stubs go to BUILD_ROOT/stubs, default build/)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD_ROOT=${1:-$ROOT/build}

PKGS=(build-essential cmake pkg-config clang clang-format libclang-rt-14-dev
      libserialport-dev zlib1g-dev libssl-dev libjson-c-dev libsqlite3-dev
      libmicrohttpd-dev libarchive-dev libudev-dev libzopfli-dev libcmocka-dev umockdev libumockdev-dev jq openssl sqlite3 python3 curl wrk chromium nodejs fonts-dejavu-core
      avahi-daemon avahi-utils dbus iproute2
      dpkg-dev lintian systemd prometheus)

# ser2net: the real serial server in front of the virtual board for the RFC 2217 tests
# (tests/integration/test_rfc2217_ser2net*.sh), which run private instances.
PKGS+=(ser2net)
# libpq-dev: the records' PostgreSQL backend (daemon/records_pg.c); postgresql: the tests
# run private PostgreSQL 15 servers in temporary directories (tests/integration/pg_lib.sh).
PKGS+=(libpq-dev postgresql)

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
# avahi-daemon is for tests/integration/test_daemon_mdns_avahi.sh only, which runs
# private instances (own netns, dbus, /run): when installed here, keep the system
# service off, else every daemon test's avahi-browse would see the LAN's boards.
if [[ " ${missing[*]} " == *" avahi-daemon "* ]]; then
    if [ -d /run/systemd/system ]; then
        $SUDO systemctl disable --now avahi-daemon.service avahi-daemon.socket >/dev/null 2>&1 || true
    elif [ -x /etc/init.d/avahi-daemon ]; then
        $SUDO /etc/init.d/avahi-daemon stop >/dev/null 2>&1 || true
        $SUDO update-rc.d avahi-daemon disable >/dev/null 2>&1 || true
    fi
fi
# dpkg-dev (dpkg-shlibdeps), lintian and systemd (systemd-analyze) are for the Debian
# package test (tests/integration/test_package_deb.sh); prometheus only for its promtool
# (test_metrics_promtool.sh): keep its server off, as avahi-daemon's.
if [[ " ${missing[*]} " == *" prometheus "* ]]; then
    if [ -d /run/systemd/system ]; then
        $SUDO systemctl disable --now prometheus.service >/dev/null 2>&1 || true
    elif [ -x /etc/init.d/prometheus ]; then
        $SUDO /etc/init.d/prometheus stop >/dev/null 2>&1 || true
        $SUDO update-rc.d prometheus disable >/dev/null 2>&1 || true
    fi
fi

# Debian's postgresql package creates and starts a cluster (15/main on port 5432); the
# tests bring their own servers, so keep the system one off when freshly installed here.
if [[ " ${missing[*]} " == *" postgresql "* ]]; then
    if [ -d /run/systemd/system ]; then
        $SUDO systemctl disable --now postgresql.service >/dev/null 2>&1 || true
    else
        $SUDO pg_ctlcluster 15 main stop >/dev/null 2>&1 || true
        [ -x /etc/init.d/postgresql ] && $SUDO update-rc.d postgresql disable >/dev/null 2>&1 || true
    fi
fi

# Debian's ser2net starts a system service serving /dev/ttyS* on localhost ports
# (/etc/ser2net.yaml); keep it off, the tests bring their own configuration.
if [[ " ${missing[*]} " == *" ser2net "* ]]; then
    if [ -d /run/systemd/system ]; then
        $SUDO systemctl disable --now ser2net.service >/dev/null 2>&1 || true
    elif [ -x /etc/init.d/ser2net ]; then
        $SUDO /etc/init.d/ser2net stop >/dev/null 2>&1 || true
        $SUDO update-rc.d ser2net disable >/dev/null 2>&1 || true
    fi
fi

"$ROOT/scripts/fetch-stubs.sh" "$BUILD_ROOT/stubs"
