#!/usr/bin/env bash
# Headless Chromium from Debian, for the browser tests (tests/compiler/test_dashboard.py, tests/graph/test_view.py),
# and a Chinese font so zh graph labels render. Needs root (CI machines run as root); a no-op
# when both are there.
set -euo pipefail
if { command -v chromium > /dev/null || command -v chromium-browser > /dev/null; } && fc-list :lang=zh | grep -q .; then
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get > /dev/null; then
    echo "setup-browser: need root and apt-get to install chromium; the dashboard browser test will skip" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium fonts-wqy-microhei > /dev/null
command -v chromium
