#!/usr/bin/env bash
# Headless Chromium from Debian, for the dashboard's browser test (tests/test_dashboard.py).
# Needs root (CI machines run as root); a no-op when chromium is already there.
set -euo pipefail
if command -v chromium > /dev/null || command -v chromium-browser > /dev/null; then
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get > /dev/null; then
    echo "setup-browser: need root and apt-get to install chromium; the dashboard browser test will skip" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium > /dev/null
command -v chromium
