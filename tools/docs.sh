#!/usr/bin/env bash
# Builds the docs site into _site/ without Quarto: tools/docs.py runs the notebooks and writes nbdev's processed
# notebooks, with their outputs, into _mkdocs/; mkdocs renders them (mkdocs.yml: material + mkdocs-jupyter),
# --strict, so that a warning fails the build. Check the site with
#   DOCS_SITE_REQUIRED=1 .venv/bin/python -m pytest tests/test_docs_site.py
# which also saves a screenshot of every page, to look at, in _site/screenshots/ (or $DOCS_SCREENSHOTS).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONWARNINGS=ignore MPLBACKEND=Agg NO_MKDOCS_2_WARNING=1
export PATH="$PWD/.venv/bin:$PATH"  # as for nbdev_test: what the notebooks run (`python`, the CLI) is the venv's
.venv/bin/python tools/docs.py
.venv/bin/mkdocs build --strict --quiet
echo "docs: built _site/ ($(ls _site/*.html | wc -l) pages); open _site/index.html"
