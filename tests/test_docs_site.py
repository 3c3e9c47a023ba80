"""The docs site in _site/, as a reader's browser sees it: headless Chromium (Debian's, with its chromedriver)
crawls every page from a local server and checks that each loads, logs no error, fetches nothing from outside,
shows its pictures and its show_doc signatures, shows each table once and whole, with no Markdown left as text, and
that search finds a term; it saves a screenshot of every page, to be looked at (DOCS_SCREENSHOTS: where, by default
_site/screenshots/).

Skipped where the site is not built (`bash tools/docs.sh`) or Chromium is missing (`bash tools/setup.sh`);
tools/test.sh runs it after the build with DOCS_SITE_REQUIRED=1, which turns those skips into failures."""
import base64, functools, inspect, json, os, re, shutil, threading, urllib.request
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urldefrag, urlparse
import pytest
try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    from selenium.common.exceptions import TimeoutException
except ImportError: webdriver = None

root = Path(__file__).parents[1]
site = root/'_site'
driver_path = '/usr/bin/chromedriver'
pictures = [f'{n}.html' for n in ('index', '02_mixup', '03_cutmix', '04_show', '05_choice', '06_fmix', '07_resizemix', '08_ricap')]  # pages that draw mixed batches
wait_s = 20  # the bound on every wait: a page load, a script, a request, search results
window = 1280, 900  # a laptop's browser: material shows both sidebars, and the content column between them

def need(ok, why):
    "Skip unless `ok`; fail instead where DOCS_SITE_REQUIRED=1 (CI, right after building the site)"
    if not ok: (pytest.fail if os.environ.get('DOCS_SITE_REQUIRED') == '1' else pytest.skip)(why)

class Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args): pass  # no line per request

class Server(ThreadingHTTPServer):
    def handle_error(self, *args): pass  # a browser that drops a connection is no error of the site

@pytest.fixture(scope='module')
def base():
    "URL of _site/ served on a free local port"
    index = site/'index.html'
    need(index.exists(), f'{site} is not built: run `bash tools/docs.sh`')
    newer = [nb.name for nb in sorted((root/'nbs').glob('*.ipynb')) if nb.stat().st_mtime > index.stat().st_mtime]
    need(not newer, f'{site} is older than nbs/{newer[0] if newer else ""}: run `bash tools/docs.sh`')
    srv = Server(('127.0.0.1', 0), functools.partial(Quiet, directory=str(site)))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f'http://127.0.0.1:{srv.server_port}/'
    srv.shutdown()
    srv.server_close()

@pytest.fixture(scope='module')
def browser():
    "Headless Chromium that keeps the console and network logs, and makes no request of its own"
    need(webdriver, 'selenium is missing: run this in .venv, where tools/setup.sh installs it (dev_requirements)')
    need(shutil.which('chromium') and os.path.exists(driver_path),
         'Chromium is missing: `apt-get install -y chromium chromium-driver` (tools/setup.sh does it)')
    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which('chromium')
    for a in ['--headless=new', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
              '--disable-component-update', '--disable-sync', '--no-first-run', '--window-size={},{}'.format(*window)]:
        opts.add_argument(a)
    opts.set_capability('goog:loggingPrefs', {'browser': 'ALL', 'performance': 'ALL'})
    d = webdriver.Chrome(service=Service(driver_path), options=opts)  # a driver path: Selenium Manager never runs
    d.set_page_load_timeout(wait_s)
    d.set_script_timeout(wait_s)
    d.get('data:text/html,<script>console.error("probe")</script>')  # the logs work: else the checks prove nothing
    assert 'probe' in str(d.get_log('browser')) and requests_made(d)
    yield d
    d.quit()

def requests_made(d):
    "URLs the browser requested since the last call (from the performance log)"
    msgs = (json.loads(e['message'])['message'] for e in d.get_log('performance'))
    return [m['params']['request']['url'] for m in msgs if m['method'] == 'Network.requestWillBeSent']

def status(url):
    "HTTP status of `url`"
    try:
        with urllib.request.urlopen(url, timeout=wait_s) as r: return r.status
    except urllib.error.HTTPError as e: return e.code

# Read from each page: its images (and those not loaded), its show_doc blocks (a heading, then the signature),
# its navigation and table of contents, its links and its elements' ids, and what a reader should not see: a table
# twice in a row, Markdown left as text, a table cut off at the content column's right edge, code on the benchmarks page
page_js = """const art = document.querySelector('article.md-content__inner'), code = 'code, pre, .highlight, script, style';
const texts = e => { // the text nodes of `e` a reader sees as prose: none in code, none hidden (a copy button's)
  const prose = n => !n.parentElement.closest(code) && n.parentElement.checkVisibility(), res = [];
  const w = document.createTreeWalker(e, NodeFilter.SHOW_TEXT,
    {acceptNode: n => prose(n) ? NodeFilter.FILTER_ACCEPT : NodeFilter.FILTER_REJECT});
  for (let n; (n = w.nextNode());) res.push(n);
  return res };
const first = e => { // the first text of `e`, in code or not
  const w = document.createTreeWalker(e, NodeFilter.SHOW_TEXT, {acceptNode: n =>
    n.data.trim() ? NodeFilter.FILTER_ACCEPT : NodeFilter.FILTER_SKIP});
  return w.nextNode() };
const tables = [...art.querySelectorAll('table')], col = art.getBoundingClientRect(), r = document.createRange();
return {
  imgs: document.images.length,
  broken: [...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src.slice(0, 80)),
  show_docs: [...document.querySelectorAll('.jp-RenderedMarkdown h3')].filter(h => h.nextElementSibling
    && h.nextElementSibling.matches('div.highlight') && /^(def|class) /.test(h.nextElementSibling.textContent.trim()))
    .map(h => { // the signature, and whether a table of parameters follows before the next show_doc
      let sig = h.nextElementSibling.textContent.trim(), e = h.nextElementSibling.nextElementSibling, tbl = false;
      for (; e && !e.matches('h1, h2, h3, hr'); e = e.nextElementSibling) tbl = tbl || e.matches('table') || !!e.querySelector('table');
      return [h.textContent.trim(), sig, tbl] }),
  nav: [...document.querySelectorAll('.md-nav--primary > .md-nav__list > .md-nav__item > a.md-nav__link')]
    .map(a => [a.getAttribute('href'), a.textContent.trim()]),
  toc: [...document.querySelectorAll('nav.md-nav--secondary a.md-nav__link')].map(a => { // depth: lists it is in
    let d = 0;
    for (let e = a; !e.matches('nav.md-nav--secondary'); e = e.parentElement) d += e.matches('ul');
    return [d, a.textContent.trim()] }),
  links: [...document.querySelectorAll('a[href]')].map(a => a.href),
  ids: [...document.querySelectorAll('[id]')].map(e => e.id),
  twice: tables.filter((t, i) => { // the same table as the one before, with nothing between them
    const p = tables[i-1];
    if (!p || p.contains(t) || p.textContent != t.textContent) return false;
    r.setStartAfter(p); r.setEndBefore(t);
    return !r.toString().trim() && !r.cloneContents().querySelector('img') })
    .map(t => t.textContent.trim().slice(0, 80)),
  markdown: [ // markers Markdown should have turned into formatting: in prose, outside code
    ...texts(art).map(n => n.data).filter(s => /\\*\\*|`|#\\|/.test(s)),
    ...[...art.querySelectorAll('p, li, td, th, h1, h2, h3, h4, h5, h6, blockquote')].map(first)
      .filter(n => n && !n.parentElement.closest(code) && n.data.trim().startsWith('*')).map(n => n.data),
    ...[...art.querySelectorAll('pre')].map(e => e.textContent) // a link in code (nbdev's: [`name`](url))
      .filter(s => /\\[`[^`\\]]+`\\]\\(/.test(s))]
    .map(s => s.trim().slice(0, 80)),
  cut: tables.filter(t => { // past the column's right edge, or in a box that scrolls or clips it
    if (!t.getClientRects().length) return false;
    for (let e = t; e !== art; e = e.parentElement)
      if (e.scrollWidth > e.clientWidth + 1 && getComputedStyle(e).overflowX != 'visible') return true;
    return [...t.querySelectorAll('th, td')].some(c => c.getBoundingClientRect().right > col.right + 1) })
    .map(t => [t.rows[0].textContent.replace(/\\s+/g, " ").trim().slice(0, 60), `${t.scrollWidth} px in ${col.width|0}`]),
  code_shown: [...art.querySelectorAll('.jp-CodeCell .jp-InputArea')].filter(e => e.getClientRects().length)
    .map(e => e.textContent.trim().slice(0, 60))}"""

@pytest.fixture(scope='module')
def pages(base, browser):
    "Every page reachable from the index by links within the site, by name: what `page_js` reads, the errors logged, the requests made"
    res,todo = {},['index.html']
    while todo:
        name = todo.pop(0)
        if name in res: continue
        url = base + name
        if (st := status(url)) != 200:  # test_links_load reports it
            res[name] = dict(status=st, links=[], ids=[], broken=[], errors=[], requests=[])
            continue
        browser.get(url)
        WebDriverWait(browser, wait_s).until(lambda d: d.execute_script(
            "return document.readyState == 'complete' && [...document.images].every(i => i.complete)"))
        res[name] = p = {'status': st, **browser.execute_script(page_js)}
        p['errors'] = [e['message'] for e in browser.get_log('browser') if e['level'] == 'SEVERE']
        p['requests'] = requests_made(browser)
        todo += [n for l in p['links'] if (n := page_name(l, base)) and n.endswith('.html')]
    return res

def page_name(url, base):
    "The path of `url` in the site (`index.html` for its root), or None for a link elsewhere"
    if not url.startswith(base): return None
    path = urlparse(urldefrag(url).url).path.lstrip('/')
    return path + 'index.html' if path == '' or path.endswith('/') else path

def title(nb):
    "The notebook's first `# Title` heading"
    md = '\n'.join(''.join(c['source']) for c in json.loads(nb.read_text())['cells'] if c['cell_type'] == 'markdown')
    return re.search(r'^# (.+)$', md, re.M)[1].strip()

def test_nav_lists_every_notebook(pages):
    "The navigation lists a page for each notebook in nbs/, index first, then in file-name order, titled by its heading"
    nbs = sorted((root/'nbs').glob('[!_.]*.ipynb'), key=lambda p: (p.stem != 'index', p.name))
    assert pages['index.html']['nav'] == [[nb.stem + '.html', title(nb)] for nb in nbs]

def test_links_load(base, pages):
    "Every link within the site answers 200 (pages were fetched when crawled) and finds its anchor on its page"
    bad = []
    for n,p in pages.items():
        for link in p['links']:
            if not (target := page_name(link, base)): continue
            anchor = unquote(urldefrag(link).fragment)
            st = pages[target]['status'] if target in pages else status(base + target)
            if st != 200: bad.append(f'{n}: {link} answers {st}')
            elif anchor and target in pages and anchor not in pages[target]['ids']: bad.append(f'{n}: {link}: no such anchor')
    assert bad == []

def test_no_console_errors(pages):
    "No page logs an error in the console: no failed request, no script error"
    assert {n: p['errors'] for n,p in pages.items() if p['errors']} == {}

def test_no_request_leaves_the_machine(base, pages):
    "Nothing fetched from elsewhere (fonts, scripts from a CDN): the site works offline"
    outside = {n: [u for u in p['requests'] if not u.startswith((base, 'data:', 'blob:'))] for n,p in pages.items()}
    assert {n: us for n,us in outside.items() if us} == {}

def test_images_load(pages):
    "Every image has loaded, and the pages with pictures have some"
    assert {n: p['broken'] for n,p in pages.items() if p['broken']} == {}
    for n in pictures: assert pages[n]['imgs'] > 0, f'{n} shows no picture'

def test_show_doc_on_module_pages(pages):
    "Each notebook that exports a public function or class documents it: show_doc's heading and signature"
    def exports_api(nb):
        srcs = [''.join(c['source']) for c in json.loads(nb.read_text())['cells'] if c['cell_type'] == 'code']
        return any(re.match(r'#\|\s*export\s*$', s, re.M) and re.search(r'^(def|class) [^_]', s, re.M) for s in srcs)
    api = [nb.stem + '.html' for nb in sorted((root/'nbs').glob('[!_.]*.ipynb')) if exports_api(nb)]
    assert api, 'no notebook exports a public function or class'
    assert {n: pages[n]['show_docs'] for n in api if not pages[n]['show_docs']} == {}

def test_show_doc_has_parameter_tables(pages):
    "Under every show_doc signature that takes parameters, a table of them (type, default, details), as nbdev's sites have"
    docs = [(n, name, sig, tbl) for n,p in pages.items() for name,sig,tbl in p.get('show_docs', [])]
    assert len(docs) > 20
    # parameters of this library's own: a fastai `Transform`, a `Callback` (its events) or an exception that keeps its
    # base's `__init__` has none
    from fastai.callback.core import Callback
    inherited = {'enc', 'dec', 'split_idx', 'order', '*args', '**kwargs', *inspect.signature(Callback).parameters}
    def params(sig):
        "The parameters' names in a signature as show_doc writes it (with docments as `# comments`)"
        s = re.sub(r'#.*', '', sig)
        return set(re.findall(r'(?:^|,)\s*(\*{0,2}[A-Za-z_]\w*)\s*(?=[:=,]|$)', s[s.find('(')+1:s.rfind(')')]))
    with_params = [d for d in docs if params(d[2]) - inherited]
    assert {(n, name) for n,name,_,tbl in with_params if not tbl} == set()

def test_search_finds_ricap(base, browser):
    "Material's search, which indexes the notebook pages' text, finds RICAP and links to its page"
    browser.get(base + 'index.html')
    box = browser.find_element(By.CSS_SELECTOR, 'input.md-search__input')
    box.click()
    box.send_keys('RICAP')
    # The results list is re-rendered as each key lands ('R', 'RI', ...), so an element found for one prefix can be
    # gone by the time it is read: read every hit's address in one script, in the page, and wait for the RICAP page.
    hrefs = "return [...document.querySelectorAll('.md-search-result__item a[href]')].map(a => a.href)"
    try: WebDriverWait(browser, wait_s).until(lambda d: any('08_ricap.html' in h for h in d.execute_script(hrefs)))
    except TimeoutException: pytest.fail(f"search for RICAP never linked 08_ricap.html; hits: {browser.execute_script(hrefs)}")

def test_tables_render_once(pages):
    "No table follows an identical one: show_doc's table of parameters is rendered once"
    assert {n: p['twice'] for n,p in pages.items() if p.get('twice')} == {}

def test_no_markdown_left_as_text(pages):
    "In prose, no `**`, backtick or `#|` directive, and no paragraph, item or cell that starts with `*`; in code, no link"
    assert {n: p['markdown'] for n,p in pages.items() if p.get('markdown')} == {}

def test_tables_fit_the_content_column(pages):
    "At 1280x900 every table, its last column included, is within the content column and needs no scrolling"
    assert {n: p['cut'] for n,p in pages.items() if p.get('cut')} == {}

def test_index_toc_has_two_levels(pages):
    "The index page's table of contents nests its entries two deep at most (sections and their subsections)"
    toc = pages['index.html']['toc']
    assert toc and [e for e in toc if e[0] > 2] == []

def test_bench_page_shows_reports_not_code(pages):
    "The benchmark and accuracy pages show the reports (tables and charts), not the code that displays or checks them"
    assert pages['10_bench.html']['code_shown'] == [] and pages['10_bench.html']['imgs'] >= 1 # the speed report's chart
    p = pages['12_accuracy.html']
    assert p['code_shown'] == [] and p['imgs'] >= 2 # the curves and the gains

def test_screenshots(base, browser, pages):
    "A screenshot of every page, whole, at the window's width: to look at (the CI artifact), in DOCS_SCREENSHOTS"
    out = Path(os.environ.get('DOCS_SCREENSHOTS') or site/'screenshots')
    out.mkdir(parents=True, exist_ok=True)
    for n,p in pages.items():
        if p['status'] != 200: continue
        browser.get(base + n)
        WebDriverWait(browser, wait_s).until(lambda d: d.execute_script(
            "return document.readyState == 'complete' && [...document.images].every(i => i.complete)"))
        h = browser.execute_script('return document.documentElement.scrollHeight')
        png = browser.execute_cdp_cmd('Page.captureScreenshot', {'format': 'png', 'captureBeyondViewport': True,
            'clip': {'x': 0, 'y': 0, 'width': window[0], 'height': h, 'scale': 1}})['data']
        f = out/n.replace('/', '_').replace('.html', '.png')
        f.write_bytes(base64.b64decode(png))
        assert f.stat().st_size > 10_000, f'{f} is nearly empty'
