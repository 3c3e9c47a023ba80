"""Lines `<!-- include: PATH -->` and `<!-- image: PATH -->` in the notebooks' Markdown: how measured figures
(bench/results/*, written by the benchmark commands) reach the README (tools/readme.py) and the docs site
(tools/docs.py) without being typed into either. PATH is relative to the repository. `<!-- include: PATH rows=A,B -->`
keeps, of each Markdown table in the file, its header and the rows whose first cell is A or B: a headline out of a
full report."""
import base64, re, sys
from pathlib import Path

def pick_rows(md:str, rows:list)->str:
    "`md` with its tables' body rows cut to those whose first cell is in `rows`"
    lines = md.splitlines()
    rule = lambda l: re.fullmatch(r'\|[-:| ]+\|', l) is not None
    def keep(i, l):
        if not l.startswith('|') or rule(l): return True
        if i+1 < len(lines) and rule(lines[i+1]): return True  # the table's header
        return l.strip('|').split('|')[0].strip() in rows
    return '\n'.join(l for i,l in enumerate(lines) if keep(i, l))

def expand(md:str, root:Path, image)->str:
    "`md` with each include replaced by its file, headings moved down two levels, and each image by `image(path)`"
    def include(m):
        f = Path(root)/m[1]
        if not f.exists(): sys.exit(f"{f} is missing: run the command that writes it (see bench/README.md)")
        text = f.read_text().strip()
        if m[2]: text = pick_rows(text, m[2].split(','))
        return re.sub(r'^(#+) ', r'\1## ', text, flags=re.M)
    md = re.sub(r'<!-- include: (\S+)(?: rows=(\S+))? -->', include, md)
    return re.sub(r'<!-- image: (\S+) -->', lambda m: image(m[1]), md)

def inline_png(root:Path):
    "An `image` for `expand` that puts the PNG into the page itself: a page of the site needs no copy of bench/"
    def image(path):
        data = base64.b64encode((Path(root)/path).read_bytes()).decode()
        return f'![{Path(path).stem}](data:image/png;base64,{data})'
    return image
