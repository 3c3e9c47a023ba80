#!/usr/bin/env bash
# Writes README.md from nbs/index.ipynb (see tools/readme.py); CI checks that it leaves README.md unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python tools/readme.py 2> >(grep -v -e 'Warning' -e 'warn' -e '^---$' >&2)
