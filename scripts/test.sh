#!/usr/bin/env bash
# Installs impax with its test extras and runs the test suite (the README's test command).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q -e ".[test]"
python3 -m pytest -n 2 "$@"
