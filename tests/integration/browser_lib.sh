# shellcheck shell=bash
# browser_lib.sh: what the browser tests (test_browser*.sh) share (sourced).
#
#   browser_need NAME  before lib.sh: sets SRC, BROWSER_DIR, CHROMIUM; exits 77 (CTest's
#                      SKIP_RETURN_CODE) with a SKIP line when node or chromium is not
#                      installed (only then: a failure to start anything else fails).
#   browser_npm        after lib.sh: installs tests/browser's npm dependencies
#                      (playwright-core from package-lock.json; never a browser download)
#                      when node_modules lacks them, one test at a time (flock).

browser_need() {
    SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
    BROWSER_DIR=$SRC/tests/browser
    CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
    if ! command -v node >/dev/null 2>&1; then
        echo "SKIP: $1 needs node (apt-get install nodejs npm)"
        exit 77
    fi
    if [ ! -x "$CHROMIUM" ]; then
        echo "SKIP: $1 needs chromium at $CHROMIUM (apt-get install chromium)"
        exit 77
    fi
}

browser_npm() {
    [ ! -f "$BROWSER_DIR/node_modules/playwright-core/package.json" ] || return 0
    command -v npm >/dev/null || fail "npm is needed to install playwright-core (apt-get install npm)"
    log "installing tests/browser npm dependencies (npm ci)"
    (
        flock -w 300 9 || exit 1
        [ -f "$BROWSER_DIR/node_modules/playwright-core/package.json" ] ||
            PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 timeout 300 npm ci --prefix "$BROWSER_DIR" \
                --no-audit --no-fund --loglevel=error
    ) 9>"${TMPDIR:-/tmp}/espstation-browser-npm.lock" >"$WORK/npm.log" 2>&1 ||
        fail "npm ci in tests/browser failed: $(tail -n 20 "$WORK/npm.log")"
}
