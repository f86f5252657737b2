#!/usr/bin/env bash
# Fails when any C source or header differs from .clang-format.
set -euo pipefail
CF=${1:-clang-format}
cd "$(dirname "$0")/.."
mapfile -t files < <(git ls-files --cached --others --exclude-standard '*.c' '*.h' 2>/dev/null || find protocols cli daemon web tests bench -name '*.[ch]')
[ ${#files[@]} -eq 0 ] && mapfile -t files < <(find protocols cli daemon web tests bench -name '*.[ch]')
"$CF" --dry-run -Werror "${files[@]}"
echo "format ok: ${#files[@]} files"
