# testnet.sh (sourced): a loopback /24 of this test's own, so tests that give
# virtual boards network addresses (127.x.0.y) can run in parallel (ctest -j)
# without two of them binding the same address and port (ArduinoOTA 3232,
# web form 80-style ports, TCP-OTA 65056 ...).
#
# claim_test_net sets TNET to "127.N.0" (N in 10..249) and holds an flock on
# $TMPDIR/espstation-net/N.lock for as long as this shell or any child that
# inherited the descriptor lives: the kernel releases it when the test ends,
# however it ends, so there are no stale claims. Addresses are then "$TNET.31"
# and so on. The search starts at a place derived from the test's name, so
# tests usually get the same /24 from run to run.
claim_test_net() {
    local dir=${TMPDIR:-/tmp}/espstation-net name=${1:-${TEST_NAME:-$0}} start n i fd
    mkdir -p "$dir"
    start=$(($(printf '%s' "$name" | cksum | cut -d' ' -f1) % 240))
    for i in $(seq 0 239); do
        n=$((10 + (start + i) % 240))
        exec {fd}>"$dir/$n.lock" || continue
        if flock -n "$fd"; then
            TNET=127.$n.0
            TNET_FD=$fd
            export TNET
            return 0
        fi
        exec {fd}>&-
    done
    echo "claim_test_net: no free loopback /24 under $dir (240 tests at once?)" >&2
    return 1
}
