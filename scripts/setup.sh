#!/usr/bin/env bash
# First of the two commands (`npm start` runs this): installs missing host tools from Debian
# packages (as root; otherwise prints the exact command), then the npm dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=$(node -e '
  const fs = require("node:fs");
  const { execFileSync } = require("node:child_process");
  const t = JSON.parse(fs.readFileSync("scripts/host/tools.json", "utf8"));
  const has = (c) => { try { execFileSync("sh", ["-c", `command -v "${c}"`], { stdio: "ignore" }); return true; } catch { return false; } };
  const multiarch = { x64: "x86_64-linux-gnu", arm64: "aarch64-linux-gnu", arm: "arm-linux-gnueabihf", ia32: "i386-linux-gnu", riscv64: "riscv64-linux-gnu" }[process.arch] ?? `${process.arch}-linux-gnu`;
  const pk = new Set();
  for (const x of t.tools) if (!has(x.name)) pk.add(x.debianPackage);
  for (const f of t.files) if (!fs.existsSync(f.path.replace("$MULTIARCH", multiarch))) pk.add(f.debianPackage);
  process.stdout.write([...pk].join(" "));
')

if [ -n "$missing" ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
    echo "setup: installing Debian packages: $missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $missing
  else
    echo "setup: missing host tools. Run as root:" >&2
    echo "  apt-get update && apt-get install -y --no-install-recommends $missing" >&2
    exit 3
  fi
else
  echo "setup: all host tools present"
fi

# Native modules must load, not just be present: `usb` (libusb) comes as a prebuilt binary for
# common platforms and is compiled by node-gyp elsewhere.
native_ok() { node -e 'require("usb")' >/dev/null 2>&1; }
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ] || ! native_ok; then
  echo "setup: npm ci"
  npm ci --no-audit --no-fund
fi
if ! native_ok; then
  echo "setup: the usb package does not load: $(node -e 'require("usb")' 2>&1 | grep -m1 -i error)" >&2
  echo "  it needs libudev (Debian: libudev1) and, where no prebuilt binary fits this platform," >&2
  echo "  a compiler to build it: apt-get install build-essential python3 libudev-dev, then npm rebuild usb" >&2
  exit 3
fi

# The CLI bundled into one module graph (.omie/cli): commands start ~0.5 s faster than through
# tsx. A cache only: the launcher runs the sources whenever they differ from what was bundled.
node scripts/cli/bundle.mjs
