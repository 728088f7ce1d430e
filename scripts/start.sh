#!/usr/bin/env bash
# The main job on the embedded sample (second half of `npm start`, after scripts/setup.sh):
# generate the sample apps and the sample base, then build, sign and check the sample Omie.
set -euo pipefail
cd "$(dirname "$0")/.."
omie() { node scripts/omie.mjs "$@"; }

omie doctor
mapfile -t yamls < <(find device prebuilt-apps overlays -name '*.yaml' ! -name 'partitions.yaml' | sort)
omie validate "${yamls[@]}"
omie sample-apps
omie keys init omie-sample-partner
[ -f .omie/sample-base/factory.zip ] || omie sample-base .omie/sample-base
omie build device/omie/tablet/products/omie-tablet.yaml --out out/omie-tablet
echo
echo "The sample Omie is in out/omie-tablet (conformance report: out/omie-tablet/check/report.html)."
