#!/usr/bin/env bash
# Sets up (tools/setup.sh) and runs every check CI runs:
#   1. nbs/ and the generated files agree: nbdev_export, nbdev_clean and tools/readme.sh change nothing
#   2. the notebooks' tests, on the pinned authoring stack (fastai 2.8.7)
#   3. the pytest suite on the newest fastai release, then on fastai 2.8.7 (less the soak, the fault matrix, the
#      command's subprocess runs and DDP)
#   4. the package: sdist, a wheel from it, twine check, and the wheel in a fresh environment with the newest fastai
#      (tools/package.sh, run beside 2 and 3)
#   5. the docs site: built (tools/docs.sh), then checked in headless Chromium (tests/test_docs_site.py)
#   6. a seconds-long smoke run of the benchmark (bench/mixing_cost.py --quick); its figures are not checked
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONWARNINGS=ignore MPLBACKEND=Agg
bash tools/setup.sh
export PATH="$PWD/.venv/bin:$PATH"  # nbdev's commands shell out to `pip`/`python`: keep them in the venv

state() { git status --porcelain=v1 --untracked-files=all -- nbs fastai_cutmix README.md images; git diff -- nbs fastai_cutmix README.md images | sha1sum; }
before=$(state)
nbdev_export
nbdev_clean
bash tools/readme.sh
if [ "$(state)" != "$before" ]; then
  echo "FAIL: nbs/ and the generated files disagree. Run nbdev_export, nbdev_clean and tools/readme.sh, and commit:"
  git status --short -- nbs fastai_cutmix README.md images; git --no-pager diff --stat -- nbs fastai_cutmix README.md images
  exit 1
fi
echo "sync: nbdev_export, nbdev_clean and tools/readme.sh leave nbs/, fastai_cutmix/, README.md and images/ as they are"

# the package check spends minutes installing torch into a fresh environment, mostly waiting on the disk: it runs
# beside the tests, and its log is shown (and its status checked) once they are done
pkg_log=$(mktemp)
bash tools/package.sh >"$pkg_log" 2>&1 & pkg=$!
trap 'kill "$pkg" 2>/dev/null || true' EXIT  # not left running if a step below fails

echo "== notebook tests (fastai $(python -c 'import fastai; print(fastai.__version__)'))"
nbdev_test --n_workers 2 --timing
for env in .venv-latest .venv; do
  [ -x "$env/bin/python" ] || continue
  # the soak (2,000 batches per member), the fault matrix (3 faults x 5 points x every member), the command run in
  # subprocesses and the two-process DDP runs take minutes and exercise this library's code the same way on either
  # fastai: they run once, on the newest release (the notebooks' tests, above, run the command's functions on 2.8.7)
  skip=(); [ "$env" = .venv ] && skip=(--ignore tests/test_soak.py --ignore tests/test_faults.py --ignore tests/test_cli.py
                                       --ignore tests/test_distributed.py)
  echo "== pytest on fastai $($env/bin/python -c 'import fastai; print(fastai.__version__)') ($env) ${skip[*]}"
  "$env/bin/python" -m pytest -q -p no:randomly tests "${skip[@]}"
done
echo "== package: build (sdist, then a wheel from it), twine check, install into a fresh environment"
if wait "$pkg"; then cat "$pkg_log"; else cat "$pkg_log"; echo "FAIL: tools/package.sh (log above)"; exit 1; fi
echo "== docs site: build, then check in headless Chromium"
bash tools/docs.sh
DOCS_SITE_REQUIRED=1 .venv/bin/python -m pytest -q -p no:randomly tests/test_docs_site.py  # no skipping here
echo "== benchmark smoke run (figures not checked: benchmarks are not tests)"
.venv/bin/python bench/mixing_cost.py --quick --out "$(mktemp -d)"
.venv/bin/python bench/against.py HEAD --shape 8x3x8x8 --warmup 1 --reps 3 --out "$(mktemp -d)/against.md" >/dev/null
