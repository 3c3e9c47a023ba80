"""Lines `<!-- include: PATH -->` and `<!-- image: PATH -->` in the notebooks' Markdown: how measured figures
(bench/results/*, written by the benchmark commands) reach the README (tools/readme.py) and the docs site
(tools/docs.py) without being typed into either. PATH is relative to the repository."""
import base64, re, sys
from pathlib import Path

def expand(md:str, root:Path, image)->str:
    "`md` with each include replaced by its file, headings moved down two levels, and each image by `image(path)`"
    def include(m):
        f = Path(root)/m[1]
        if not f.exists(): sys.exit(f"{f} is missing: run the command that writes it (see bench/README.md)")
        return re.sub(r'^(#+) ', r'\1## ', f.read_text().strip(), flags=re.M)
    md = re.sub(r'<!-- include: (\S+) -->', include, md)
    return re.sub(r'<!-- image: (\S+) -->', lambda m: image(m[1]), md)

def inline_png(root:Path):
    "An `image` for `expand` that puts the PNG into the page itself: a page of the site needs no copy of bench/"
    def image(path):
        data = base64.b64encode((Path(root)/path).read_bytes()).decode()
        return f'![{Path(path).stem}](data:image/png;base64,{data})'
    return image
