#!/usr/bin/env bash
# Builds berth's native helpers, each only when missing or older than its source: a static pause
# (native/build/pause, it runs inside pod namespaces), berth-stream-helper (exec/attach/port-forward relays, runs
# on the host) and berth-pod-ns (makes and pins a pod's namespaces in one process). Idempotent and quick. Needs
# gcc and libc6-dev (libc.a for -static).
set -euo pipefail
cd "$(dirname "$0")"

# build <output> <source> <gcc flags...>
build() {
  local out="build/$1" src="$2"
  shift 2
  if [[ -x $out && ! $src -nt $out && ! build.sh -nt $out ]]; then
    return 0
  fi
  if ! command -v gcc >/dev/null; then
    echo "native/build.sh: gcc not found (apt-get install gcc libc6-dev)" >&2
    exit 1
  fi
  mkdir -p build
  # Build beside the target and rename: a running binary stays busy (ETXTBSY), and two concurrent builds must not
  # interleave their output.
  tmp="build/.$1.$$"
  if ! gcc "$@" -Wall -Wextra -Werror -o "$tmp" "$src"; then
    echo "native/build.sh: build of $src failed (libc.a missing? apt-get install libc6-dev)" >&2
    exit 1
  fi
  mv -f "$tmp" "$out"
}

tmp=""
trap 'if [[ -n $tmp ]]; then rm -f "$tmp"; fi' EXIT

build pause pause.c -static -Os -s
build berth-stream-helper stream-helper.c -O2 -s
build berth-pod-ns pod-ns.c -O2 -s
