#!/usr/bin/env bash
# The README's test command: installs impax with its test extras and what the tests drive for real
# (Debian's Chromium + ChromeDriver for the HTML report's browser test; torch 2.13.0 for the
# IM-NET-pytorch weight-importer test), then runs the test suite on 2 workers. Nothing it needs lies
# outside the checkout; IMPAX_TEST_STRICT=1 makes a missing optional test dependency a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null
fi
python3 -m pip install -q -e ".[test]"
# torch: the CPU build (2.13.0+cpu) where the configured indexes offer it (PyTorch's CPU index, a
# local wheel folder); otherwise PyPI's torch 2.13.0, which on x86-64 Linux is the CUDA build (~GBs).
if ! python3 -c "import torch" 2>/dev/null; then
  if ! python3 -m pip install -q "torch==2.13.0+cpu" 2>/dev/null; then
    echo "scripts/test.sh: no CPU build of torch 2.13.0 on the configured indexes;" \
         "installing PyPI's torch==2.13.0 (the CUDA build on x86-64 Linux)" >&2
    python3 -m pip install -q "torch==2.13.0"
  fi
fi
python3 -c "import torch; print(f'scripts/test.sh: torch {torch.__version__}')"
IMPAX_TEST_STRICT=1 python3 -m pytest -n 2 "$@"
