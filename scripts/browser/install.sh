#!/usr/bin/env bash
# Installs Debian's Chromium and ChromeDriver for the playground's browser test (as root, with
# apt-get), unless both are already there. Idempotent; exits non-zero with the reason when it
# cannot install them, so the test command fails loudly instead of skipping the test.
set -euo pipefail
if [[ -x /usr/bin/chromium && -x /usr/bin/chromedriver ]]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "browser/install.sh: apt-get not found; install chromium and chromedriver by hand" >&2
  exit 1
fi
SUDO=""
if [[ "$(id -u)" != 0 ]]; then
  command -v sudo >/dev/null 2>&1 || { echo "browser/install.sh: need root or sudo to apt-get install chromium" >&2; exit 1; }
  SUDO=sudo
fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null
[[ -x /usr/bin/chromium && -x /usr/bin/chromedriver ]] || { echo "browser/install.sh: chromium or chromedriver missing after apt-get install" >&2; exit 1; }
