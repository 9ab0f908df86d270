#!/usr/bin/env bash
# `pnpm lint`: the linter (type-aware), the format check, the dependency rules (cycles, layers, the
# transport seam) and the unused-export check. Runs every check, then fails if any failed.
set -uo pipefail
cd "$(dirname "$0")/../.."
bin=tools/lint/node_modules/.bin
status=0
run() {
  local name=$1; shift
  echo "== $name"
  "$@" || { echo "$name: FAILED"; status=1; }
}
run eslint "$bin/eslint" -c tools/lint/eslint.config.mjs --max-warnings 0 .
run prettier "$bin/prettier" --config tools/lint/prettier.config.mjs --check --log-level warn "packages/**/*.ts" "test/**/*.ts" "bench/src/**/*.ts" "examples/**/*.ts" "tools/**/*.mjs"
run depcruise "$bin/depcruise" --config tools/lint/.dependency-cruiser.cjs packages/runtime/src
run knip "$bin/knip" --config tools/lint/knip.json --directory . --no-config-hints
exit $status
