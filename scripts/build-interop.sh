#!/usr/bin/env bash
# Builds the gRPC interop clients the tests drive (test/integration/grpc-interop.test.ts):
#   build/interop/grpc-go-client   grpc-go 1.33 (the kubelet's and crictl's gRPC stack), from Debian's
#                                  golang-go + golang-google-grpc-dev, in GOPATH mode: no Go module proxy needed.
# The gRPC C-core client (test/interop/grpc-c-client.py) needs no build, only python3-grpcio for /usr/bin/python3;
# this script checks it is there.
# Idempotent: skips the Go build while the binary is newer than its source.
set -euo pipefail
cd "$(dirname "$0")/.."

src=test/interop/grpc-go-client
out=build/interop/grpc-go-client
gocode=/usr/share/gocode

if ! command -v go >/dev/null; then
  echo "build-interop: no go toolchain (apt-get install golang-go golang-google-grpc-dev)" >&2
  exit 1
fi
if [[ ! -d $gocode/src/google.golang.org/grpc ]]; then
  echo "build-interop: no grpc-go source in $gocode (apt-get install golang-google-grpc-dev)" >&2
  exit 1
fi
if ! /usr/bin/python3 -c 'import grpc' 2>/dev/null; then
  echo "build-interop: /usr/bin/python3 cannot import grpc (apt-get install python3-grpcio)" >&2
  exit 1
fi

if [[ -x $out && $out -nt $src/main.go ]]; then
  exit 0
fi

mkdir -p "$(dirname "$out")"
echo "build-interop: building $out"
# GOPATH mode against Debian's packaged sources; an explicit GOCACHE (HOME may be unset in CI) kept outside the work
# tree; CGO off for a static binary and no C toolchain in the build.
# Into a temp name first, so an interrupted build never leaves a binary that looks up to date.
(
  cd "$src"
  env GO111MODULE=off GOFLAGS= GOPATH="$gocode" CGO_ENABLED=0 \
    GOCACHE="${BERTH_GOCACHE:-/tmp/berth-interop-gocache}" \
    go build -trimpath -o "../../../$out.tmp" .
)
mv -f "$out.tmp" "$out"
