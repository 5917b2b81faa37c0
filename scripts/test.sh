#!/usr/bin/env bash
# Runs the whole test suite, installing first what the tests need. Run as root on Debian 12.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh --test
npx eslint .
npx jest --ci "$@"
