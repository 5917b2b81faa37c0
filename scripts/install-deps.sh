#!/usr/bin/env bash
# Installs what berth needs on Debian 12 (as root), then its npm dependencies, then builds it.
#   scripts/install-deps.sh          what the daemon needs
#   scripts/install-deps.sh --test   also what the test suite needs
# Idempotent and quick when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

# The daemon: OCI runtimes, the container monitor, CNI plugins, iptables (portmap), namespace tools, zstd (zstd
# layers), gcc + libc6-dev (the static pause process that holds a pod's PID namespace).
packages=(runc crun conmon containernetworking-plugins iptables iproute2 util-linux ca-certificates zstd gcc libc6-dev)
if [[ "${1:-}" == "--test" ]]; then
  # Tests: a real registry, busybox for image content, python3 (htpasswd bcrypt, sd_notify receiver), openssl (TLS),
  # and two gRPC clients besides grpc-js to call the CRI socket with: grpc-go (the kubelet's and crictl's library,
  # built from Debian's source) and gRPC C-core (python3-grpcio).
  packages+=(docker-registry busybox-static python3 openssl procps golang-go golang-google-grpc-dev python3-grpcio)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# npm ci only when the lock file changed since the last install.
if [[ ! -f node_modules/.berth-installed || package-lock.json -nt node_modules/.berth-installed ]]; then
  npm ci --no-audit --no-fund
  touch node_modules/.berth-installed
fi
bash native/build.sh
npm run --silent build
if [[ "${1:-}" == "--test" ]]; then bash scripts/build-interop.sh; fi
