#!/usr/bin/env bash
# Rebuild src/impax/report/vendor/impax-three.min.js: three.js core + OrbitControls + GLTFLoader as
# ONE classic (IIFE) script for the HTML report's 3D viewers (Chromium does not load ES modules or
# fetch() from file://). Pinned versions from the npm registry; the same versions give the same
# bytes. Needs node and npm; writes only the vendor folder (bundle, three's LICENSE, checksum).
set -euo pipefail
THREE_VERSION=0.187.0
ESBUILD_VERSION=0.28.2
cd "$(dirname "$0")/.."
REPO=$PWD
VENDOR=$REPO/src/impax/report/vendor
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cat >"$WORK/package.json" <<JSON
{"name": "impax-three-bundle", "private": true,
 "dependencies": {"three": "$THREE_VERSION", "esbuild": "$ESBUILD_VERSION"}}
JSON
cp "$REPO/scripts/three_bundle_entry.js" "$WORK/entry.js"
(cd "$WORK" && npm install --no-audit --no-fund --loglevel=error >/dev/null)
test "$(node -p "require('$WORK/node_modules/three/package.json').version")" = "$THREE_VERSION"
"$WORK/node_modules/.bin/esbuild" "$WORK/entry.js" --bundle --format=iife --minify --target=es2020 \
  --legal-comments=eof --charset=utf8 --log-level=warning --outfile="$WORK/impax-three.min.js"
mkdir -p "$VENDOR"
cp "$WORK/impax-three.min.js" "$VENDOR/impax-three.min.js"
cp "$WORK/node_modules/three/LICENSE" "$VENDOR/LICENSE"
(cd "$VENDOR" && sha256sum impax-three.min.js >impax-three.min.js.sha256)
echo "built $VENDOR/impax-three.min.js ($(wc -c <"$VENDOR/impax-three.min.js") bytes): three $THREE_VERSION, esbuild $ESBUILD_VERSION"
