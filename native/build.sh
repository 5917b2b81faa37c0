#!/usr/bin/env bash
# Builds berth's native helpers: a static pause (native/build/pause), only when missing or older than its source.
# Idempotent and quick. Needs gcc and libc6-dev (libc.a for -static).
set -euo pipefail
cd "$(dirname "$0")"

if [[ -x build/pause && ! pause.c -nt build/pause && ! build.sh -nt build/pause ]]; then
  exit 0
fi
if ! command -v gcc >/dev/null; then
  echo "native/build.sh: gcc not found (apt-get install gcc libc6-dev)" >&2
  exit 1
fi
mkdir -p build
# Build beside the target and rename: a running pause keeps its binary busy (ETXTBSY), and two concurrent
# builds must not interleave their output.
tmp="build/.pause.$$"
trap 'rm -f "$tmp"' EXIT
if ! gcc -static -Os -s -Wall -Wextra -Werror -o "$tmp" pause.c; then
  echo "native/build.sh: static build of pause.c failed (libc.a missing? apt-get install libc6-dev)" >&2
  exit 1
fi
mv -f "$tmp" build/pause
