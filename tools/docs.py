"""Write the docs site's pages into _mkdocs/ without Quarto (tools/docs.sh then renders them with mkdocs): nbdev's
processed notebooks (as `proc_nbs` makes them: show_doc rendered, hidden and exported cells dropped), each with the
outputs of running its notebook in nbs/ as `nbdev_test` does, and rewritten where Quarto and mkdocs-jupyter read a
notebook differently: front matter, `#|` directives, Pandoc's link attributes, links into the published site, headings."""
import json, multiprocessing, posixpath, re, shutil, sys, tempfile, time
from collections import Counter
from pathlib import Path
import yaml
from execnb.shell import CaptureShell
from fastcore.basics import defaults
from fastcore.parallel import parallel
from fastcore.xtras import working_directory
from markdown.extensions.toc import slugify
from nbdev.config import get_config
from nbdev.doclinks import nbglob
from nbdev.frontmatter import FrontmatterProc
from nbdev.process import NBProcessor
from nbdev import serve_drv
from nbdev.processors import FilterDefaults
from includes import expand, inline_png
from nbdev import showdoc
from fastcore.docments import DocmentTbl, can_render, _bold, _list2row, _maybe_nm

def md_text(s):
    "`s` as literal Markdown text, code spans and URLs kept: a docstring's `*` or `_` (`(n, *size) mask`) starts no emphasis"
    parts = re.split(r'(`[^`]*`|https?://[^\s)]+)', s)
    return ''.join(p if i%2 else re.sub(r'([\\*_])', r'\\\1', p) for i,p in enumerate(parts))

def cell_text(o):
    "`o` (a name, type, default or docment) as the literal text of a Markdown table's cell: `|` (`float|Callable`) ends none"
    return md_text(_maybe_nm(o)).replace('|', '\\|')

class ParamTable(DocmentTbl):
    "fastcore's table of parameters (type, default, docment), each cell's text literal (`cell_text`)"
    def _row(self, nm, props): return [cell_text(nm)] + [cell_text(props[c]) for c in self._columns]
    @property
    def return_str(self): return _list2row(['**Returns**'] + [_bold(cell_text(self.dm['return'][c])) for c in self._columns])

class TableRenderer(showdoc.BasicMarkdownRenderer):
    "nbdev's `show_doc` (fastcore's renders no table), with the docstring as literal text and a table of the parameters"
    def __init__(self, sym, **kwargs):
        super().__init__(sym, **kwargs)
        self.docs = md_text(self.docs)
    def _repr_markdown_(self):
        tbl = str(ParamTable(self.sym)) if can_render(self.sym) else ''
        return super()._repr_markdown_() + (f'\n\n{tbl}' if tbl else '')

cfg = get_config()
dest = cfg.config_path/'_mkdocs'
site = (cfg.doc_host + cfg.doc_baseurl).rstrip('/') + '/'  # where nbdev's links point: the published Quarto site

def proc_nb(fn):
    """nbdev's processed notebook `fn`, as `proc_nbs` makes it, but not in nbdev's _proc/: tools/readme.py processes
    into that too, with nbdev's own renderer (no tables), and may do so while the notebooks run"""
    with tempfile.TemporaryDirectory() as tmp:
        serve_drv.main((fn, Path(tmp)/fn.name, FilterDefaults))
        return json.loads((Path(tmp)/fn.name).read_text())

def run_nb(fn):
    "Outputs of running `fn` as `nbdev_test` does (the same cells skipped, in its folder), by cell id; or the error"
    # this worker was started by spawn, and a spawned process makes its own children the same way: every DataLoader
    # worker of the notebook would be a fresh interpreter importing torch and fastai, each epoch (the CLI notebook ran
    # several times longer than under nbdev_test). Its children are made as nbdev_test's and a user's are on Linux: by fork
    if 'fork' in multiprocessing.get_all_start_methods(): multiprocessing.set_start_method('fork', force=True)
    nb = NBProcessor(fn, procs=FrontmatterProc, process=True).nb
    flags = set(cfg.tst_flags.split())
    def skip(c):
        d = getattr(c, 'directives_', {}) or {}
        return (c.cell_type != 'code' or 'nbdev_export(' in c.source or flags & d.keys()
                or d.get('eval:', [''])[0].lower() == 'false')
    start,shell = time.time(),CaptureShell(fn, timeout=600)
    try:
        with working_directory(fn.parent): shell.run_all(nb, exc_stop=True, preproc=skip)
    except Exception: return shell.prettytb(fname=fn)
    print(f'docs: ran {fn.name} in {time.time()-start:.0f}s', file=sys.stderr)
    return {c.id: c.outputs for c in nb.cells if c.get('outputs')}

def directives(src):
    "Quarto's `#| key: value` lines at the top of a cell's `src`, and the source without them"
    lines = src.splitlines()
    n = next((i for i,l in enumerate(lines) if not l.startswith('#|')), len(lines))
    return yaml.safe_load('\n'.join(l[2:] for l in lines[:n])) or {}, '\n'.join(lines[n:])

def terminal(text):
    "Stream output as a terminal (and Jupyter) shows it: a carriage return starts its line again (progress bars)"
    return re.sub(r'^.*\r', '', re.sub(r'\r+\n', '\n', text), flags=re.M)

def front_matter(nb):
    "nbdev's front matter (title, description, output-file): the raw cell `proc_nbs` puts first"
    src = ''.join(nb['cells'][0]['source'])
    return yaml.safe_load(src.strip('-\n')) if nb['cells'][0]['cell_type'] == 'raw' and src.startswith('---') else {}

def links(md, pages, here):
    "Pandoc's `[text](url){attrs}` as HTML; nbdev's links into the published site as links to this site's pages"
    md = re.sub(r'\[([^\]]+)\]\(([^)\s]+)\)\{([^}]*)\}', r'<a href="\2" \3>\1</a>', md)
    def local(m):  # the anchor as this site's ids are made (mkdocs' slugify: `MixHandler.lf` -> `mixhandlerlf`)
        if m[1] not in pages: return m[0]
        return posixpath.relpath(pages[m[1]], here) + ('#' + slugify(m[2], '-') if m[2] else '')
    return re.sub(re.escape(site) + r'([\w./-]+\.html)(?:#([\w.-]+))?', local, md)

def unlink_code(md):
    "`md` without nbdev's links in its fenced code: `add_links` links names in show_doc's signature too, shown as text there"
    parts = re.split(r'(```.*?```)', md, flags=re.S)
    return ''.join(re.sub(r'\[(`[^`]+`)\]\([^)\s]*\)', r'\1', p) if i%2 else p for i,p in enumerate(parts))

def headings(cells):
    """Headings as mkdocs-jupyter's table of contents reads them: code spans as HTML (it drops Markdown's), and,
    before a repeated heading, an anchor with the id the table gives it (`name_1`), which nbconvert's HTML lacks"""
    seen = Counter()
    def heading(m):
        text = re.sub(r'`([^`]+)`', r'<code>\1</code>', m[2])
        slug = slugify(re.sub(r'<[^>]+>|\]\([^)]*\)', '', text), '-')  # of the text alone: no tags, no link targets
        n,seen[slug] = seen[slug],seen[slug]+1
        return (f'<a id="{slug}_{n}"></a>\n\n' if n else '') + f'{m[1]} {text}'
    for c in cells:
        if c['cell_type'] != 'markdown': continue
        parts = re.split(r'(```.*?```)', c['source'], flags=re.S)  # no headings in fenced code
        c['source'] = ''.join(p if i%2 else re.sub(r'^(#{1,6}) +(.+?)$', heading, p, flags=re.M) for i,p in enumerate(parts))

def md_cell(c, src): return dict(cell_type='markdown', id=c.get('id'), metadata={}, source=src)

def to_mkdocs(nb, outs, pages, here):
    "The processed notebook `nb` with outputs `outs` (by cell id), as mkdocs-jupyter should render it at `here`"
    if fm := front_matter(nb):  # the title as the page's first heading: mkdocs-jupyter takes it for the page's title
        nb['cells'][0] = md_cell(nb['cells'][0], f"# {fm['title']}\n\n> {fm.get('description', '')}")
    for i,c in enumerate(nb['cells']):
        if c['cell_type'] == 'code':
            d,c['source'] = directives(''.join(c['source']))
            c['outputs'] = [] if d.get('output') is False else c.get('outputs') or outs.get(c.get('id'), [])
            for o in c['outputs']:
                if o['output_type'] == 'stream': o['text'] = terminal(''.join(o['text']))
            if d.get('output') == 'asis':  # markdown output is part of the page, as in Quarto (show_doc's)
                c = nb['cells'][i] = md_cell(c, '\n'.join(
                    ''.join(o['data']['text/markdown']) for o in c['outputs'] if 'text/markdown' in o.get('data', {})))
            elif d.get('echo') is False: c['metadata']['tags'] = ['remove_input']  # see mkdocs.yml
        if c['cell_type'] == 'markdown':
            md = expand(''.join(c['source']), cfg.config_path, inline_png(cfg.config_path))
            c['source'] = unlink_code(links(md, pages, here))
    headings(nb['cells'])
    return nb

if __name__ == '__main__':
    import docs  # `parallel` pickles `run_nb` by this name: running a notebook replaces the worker's `__main__`
    # `show_doc` reads the renderer when it runs, in `proc_nb` (in this process). Patched here, once: this file runs
    # twice, as `__main__` and as `docs`, and a patch at the top would subclass the first run's renderer (two tables)
    showdoc.BasicMarkdownRenderer = TableRenderer
    nbs = Path(cfg.nbs_path)
    rels = sorted(fn.relative_to(nbs) for fn in nbglob(nbs, func=Path))
    procd = {r: proc_nb(nbs/r) for r in rels}
    # fresh interpreters: a fork of this process, which has run the notebooks' exported cells (threads and all), can hang
    outs = parallel(docs.run_nb, [nbs/r for r in rels], n_workers=defaults.cpus, pause=0.01, method='spawn')
    if fails := [(r, o) for r,o in zip(rels, outs) if isinstance(o, str)]:
        for r,err in fails: print(f'docs: {r} failed:\n{err}', file=sys.stderr)
        sys.exit(1)
    # nbdev's page names (`output-file`, which its links use) -> the notebooks' names, which keep their order
    pages = {(r.parent/front_matter(nb).get('output-file', r.stem + '.html')).as_posix(): r.with_suffix('.html').as_posix()
             for r,nb in procd.items()}
    shutil.rmtree(dest, ignore_errors=True)
    for (r,nb),o in zip(procd.items(), outs):
        (dest/r).parent.mkdir(parents=True, exist_ok=True)
        (dest/r).write_text(json.dumps(to_mkdocs(nb, o, pages, r.parent.as_posix()), indent=1))
    shutil.copy(Path(__file__).with_name('docs.css'), dest)  # mkdocs.yml's extra_css: it must be among the pages
    print(f'docs: wrote {len(rels)} notebooks to {dest.name}/', file=sys.stderr)
