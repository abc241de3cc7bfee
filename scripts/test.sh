#!/usr/bin/env bash
# The README's test command: installs impax with its test extras and what the tests drive for real
# (Debian's Chromium + ChromeDriver for the HTML report's browser test; the CPU build of torch for
# the IM-NET-pytorch weight-importer test), then runs the test suite on 2 workers.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null
fi
python3 -m pip install -q -e ".[test]"
python3 -c "import torch" 2>/dev/null || python3 -m pip install -q "torch==2.13.0"
python3 -m pytest -n 2 "$@"
