#!/usr/bin/env bash
# Starts berth in the foreground with its default configuration (/etc/berth/berth.toml and berth.d/ when
# present), installing first what it needs. Run as root on Debian 12. Extra arguments go to `berth run`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
# A node needs a pod network: install berth's bridge network only when no CNI config exists yet.
if ! ls /etc/cni/net.d/*.conf /etc/cni/net.d/*.conflist /etc/cni/net.d/*.json >/dev/null 2>&1; then
  install -d -m 0755 /etc/cni/net.d
  install -m 0644 deploy/cni/10-berth-bridge.conflist deploy/cni/99-loopback.conf /etc/cni/net.d/
  echo "installed the default CNI network config in /etc/cni/net.d"
fi
exec node bin/berth run "$@"
