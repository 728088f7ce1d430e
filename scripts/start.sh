#!/usr/bin/env bash
# The main job on the embedded sample (second half of `npm start`, after scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
omie() { node scripts/omie.mjs "$@"; }

omie doctor
mapfile -t yamls < <(find device prebuilt-apps overlays -name '*.yaml' ! -name 'partitions.yaml' | sort)
omie validate "${yamls[@]}"
omie sample-apps
if [ -f scripts/cli/commands/build.ts ]; then
  omie keys init omie-sample-partner >/dev/null
  omie sample-base .omie/sample-base
  omie build device/omie/tablet/products/omie-tablet.yaml --out out/omie-tablet
fi
