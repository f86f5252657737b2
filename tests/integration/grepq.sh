# shellcheck shell=bash
# Sourced by tests/integration/lib.sh and tests/umock/udev_lib.sh.

# grepq GREP-ARGS...: `grep -q` for the end of a pipe. It reads its input to the end, so the
# writer never dies of SIGPIPE after an early match (with pipefail that failed the pipe: a CI
# run lost test_package_deb to `espstation --help | grep -q`).
grepq() {
    local rc=0
    grep -q "$@" || rc=$?
    cat >/dev/null
    return "$rc"
}
