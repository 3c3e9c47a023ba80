#!/usr/bin/env bash
# Builds the package as PyPI and its mirrors will, and checks it as a user gets it:
#   1. `python -m build`: the sdist, then a wheel built from that sdist (not from the tree), into dist/
#   2. the sdist holds what setup.py and PyPI need (settings.ini, LICENSE, README.md, CHANGELOG.md)
#   3. `twine check --strict` on both (the metadata), and the README rendered as PyPI renders it: every picture and
#      link absolute
#   4. the wheel installed into a fresh virtual environment, where pip resolves the newest fastai from the index;
#      there `fastai_cutmix.all` imports, one tiny batch trains with `CutMix`, and `fastai_cutmix --help` answers
# Uses .venv's `build`, `twine` and `readme-renderer[md]` (settings.ini's dev_requirements); the fresh environment
# is deleted at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
py=.venv/bin/python
name=$($py -c "from configparser import ConfigParser as C; c=C(delimiters=['=']); c.read('settings.ini'); print(c['DEFAULT']['lib_name'], c['DEFAULT']['version'])")
read -r lib version <<<"$name"

rm -rf dist
# without --sdist/--wheel, build makes the sdist, then the wheel from it; its log only where it fails
log=$($py -m build --outdir dist . 2>&1) || { echo "$log" >&2; echo "FAIL: python -m build (log above)" >&2; exit 1; }
sdist=dist/$lib-$version.tar.gz
wheel=$(ls dist/"$lib"-"$version"-*.whl)
echo "package: built $sdist and $wheel (the wheel from the sdist)"

listing=$(tar tzf "$sdist")
for f in settings.ini LICENSE README.md CHANGELOG.md; do
  grep -qx "$lib-$version/$f" <<<"$listing" \
    || { echo "FAIL: $sdist lacks $f: a wheel built from it would lack it or fail; list it in MANIFEST.in" >&2; exit 1; }
done
echo "package: $sdist holds settings.ini, LICENSE, README.md, CHANGELOG.md"

.venv/bin/twine check --strict dist/*
# twine passes any Markdown; PyPI renders it with readme_renderer (cmarkgfm), where only absolute URLs work
$py -W ignore - "$wheel" <<'PY'
import re, sys, zipfile
from email import message_from_bytes
from readme_renderer.markdown import render
with zipfile.ZipFile(sys.argv[1]) as z:
    meta = message_from_bytes(z.read(next(n for n in z.namelist() if n.endswith('.dist-info/METADATA'))))
html = render(meta.get_payload(), variant='GFM')
if html is None: sys.exit("FAIL: readme_renderer could not render the long description (is readme-renderer[md] installed?)")
urls = re.findall(r'<(?:a|img)\b[^>]*?(?:href|src)="([^"]*)"', html)
if bad := [u for u in urls if not u.startswith(('https://', 'http://', '#'))]: sys.exit(f"FAIL: the long description links to {bad}, which fail on PyPI")
print(f"package: the long description renders as on PyPI: {html.count('<img')} picture(s) and {len(urls)} links, all absolute")
PY

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"${PYTHON:-python3}" -m venv "$tmp/venv"  # as tools/setup.sh makes its environments
start=$SECONDS
"$tmp/venv/bin/pip" install -q --disable-pip-version-check "$wheel" 2>&1 | { grep -v -e "^WARNING: Location" || true; }
echo "package: installed the wheel into a fresh environment in $((SECONDS-start))s:" \
     "$("$tmp/venv/bin/python" -c 'import fastai, torch; print(f"fastai {fastai.__version__}, torch {torch.__version__}")')"
cd "$tmp"  # away from the tree, so that `import fastai_cutmix` can only find the installed wheel
MPLBACKEND=Agg PYTHONWARNINGS=ignore "$tmp/venv/bin/python" -c "
import math, fastai_cutmix
from fastai_cutmix.all import *
assert fastai_cutmix.__version__ == '$version', fastai_cutmix.__version__
x = TensorImage(torch.randn(8, 3, 16, 16))
y = TensorCategory(torch.randint(0, 2, (8,)))
items = list(zip(x, y))
dls = DataLoaders(TfmdDL(items, bs=8), TfmdDL(items, bs=8))
model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
learn = Learner(dls, model, loss_func=CrossEntropyLossFlat(), cbs=CutMix())
with learn.no_logging(), learn.no_bar(): learn.fit(1)
loss = learn.recorder.losses[-1].item()
assert len(learn.recorder.losses) == 1 and math.isfinite(loss), learn.recorder.losses
print(f'package: fastai_cutmix {fastai_cutmix.__version__} imported from {fastai_cutmix.__file__}; one CutMix batch trained, loss {loss:.3f}')
"
"$tmp/venv/bin/fastai_cutmix" --help >/dev/null
echo "package: fastai_cutmix --help answers; passed"
