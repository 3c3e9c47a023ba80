#!/usr/bin/env bash
# Sets up everything the project needs on a fresh machine (Python 3.11, PyPI, Debian's packages); safe to re-run.
#   .venv         the authoring environment: the pinned nbdev 2 stack (settings.ini's dev_requirements), fastai 2.8.7
#   .venv-latest  the newest fastai release, on which the test suite runs too (LATEST=0 skips it)
#   Fashion-MNIST from Debian's `dataset-fashion-mnist`, and Chromium (for the docs' browser test), where apt is available
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python3}
# runs a command with pip's routine chatter filtered out; its own exit status is kept, so a failed install stops setup
quiet() { local rc=0; "$@" 2>&1 | { grep -v -e "^WARNING: Location" -e "is ignored: it is neither" -e "^  " -e "^$" -e "!!" || true; } || rc=$?
  [ "$rc" = 0 ] || echo "setup: failed (exit $rc): $*" >&2; return "$rc"; }

if [ ! -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] && command -v apt-get >/dev/null; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  echo "setup: installing Debian's dataset-fashion-mnist"
  $sudo apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 \
    || { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q dataset-fashion-mnist >/dev/null; } \
    || echo "setup: could not install dataset-fashion-mnist; see fastai_cutmix.data.find_fashion_mnist for other ways"
fi
# Headless Chromium and its driver, for the docs site's browser test (tests/test_docs_site.py)
if ! command -v chromium >/dev/null && command -v apt-get >/dev/null; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  echo "setup: installing Debian's chromium and chromium-driver"
  $sudo apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 \
    || { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q chromium chromium-driver >/dev/null; } \
    || echo "setup: could not install chromium; the docs site's browser test will be skipped"
fi

# Each environment holds torch with its CUDA libraries (about 6.5 GB): say so plainly rather than let pip fail midway
need=0; for d in .venv .venv-latest; do [ -x "$d/bin/python" ] || need=$((need+7)); done
[ "${LATEST:-1}" != 0 ] || [ -x .venv-latest/bin/python ] || need=$((need-7))
free=$(df -Pk . | awk 'NR==2 {print int($4/1048576)}')
if [ "$need" -gt 0 ] && [ "$free" -lt "$need" ]; then
  echo "setup: needs about $need GB free for its Python environments, but $(pwd) has $free GB; free some space and re-run" >&2
  exit 1
fi
venv() { # venv DIR PIP-ARGS...: create DIR if needed, then install
  local d=$1; shift
  [ -x "$d/bin/python" ] || "$py" -m venv "$d"
  quiet "$d/bin/pip" install -q --disable-pip-version-check "$@"
}
echo "setup: .venv (nbdev 2 authoring stack)"
venv .venv -e ".[dev,bench]"  # bench: the peer libraries the benchmark times (timm, kornia)
if [ "${LATEST:-1}" != 0 ]; then
  echo "setup: .venv-latest (newest fastai)"
  venv .venv-latest --upgrade fastai pytest hypothesis accelerate timm  # timm: the peer `compare` runs as timm-mixup/timm-cutmix
  quiet .venv-latest/bin/pip install -q --disable-pip-version-check --no-deps -e .
fi
.venv/bin/python -c "import fastai, nbdev; print(f'setup: .venv has fastai {fastai.__version__}, nbdev {nbdev.__version__}')"
[ ! -x .venv-latest/bin/python ] || .venv-latest/bin/python -c "import fastai, fastcore; print(f'setup: .venv-latest has fastai {fastai.__version__}, fastcore {fastcore.__version__}')"
