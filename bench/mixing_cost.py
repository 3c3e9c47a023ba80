"""Per-batch mixing cost of fastai_cutmix's callbacks and of their peers (fastai, timm, torchvision, kornia).

    .venv/bin/python bench/mixing_cost.py [--quick] [--out bench/results]

Every method mixes the same batch, in one process, in interleaved rounds; each figure is the median time a training
step pays to turn a batch into the mixed input and the targets (or λ) its loss needs, beyond refilling the batch, and
that time as a multiple of one copy of the batch into a preallocated buffer. Writes mixing_cost.csv, .md and .png, and
the README's headline, mixing_cost_summary.md, to `--out`; prints and records PASS/MISS for the targets of issues 5 and 14
without failing. bench/README.md says why it is measured this way.
"""
from __future__ import annotations
import argparse, contextlib, csv, datetime, gc, math, os, platform, shlex, statistics, subprocess, sys, time, warnings
from dataclasses import dataclass, field
from pathlib import Path
import numpy as np
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT)) # time this checkout's library, whatever else is installed

@dataclass(frozen=True)
class Shape:
    size:tuple # The batch: (bs, channels, height, width), float32
    classes:int # Integer labels in [0, classes), int64
    warmup:int # Untimed rounds first: allocator, caches, lazy initialisation
    reps:int # Timed rounds
    profile:int = 8 # Steps profiled for each method behind a missed target (0: none)
    @property
    def name(self): return '×'.join(map(str, self.size))

FULL = [Shape((64, 3, 224, 224), 1000, warmup=5, reps=40), Shape((256, 3, 32, 32), 100, warmup=10, reps=100, profile=20)]
QUICK = [Shape((64, 3, 32, 32), 100, warmup=1, reps=3, profile=0)] # a smoke run for CI: seconds, not figures to quote

@dataclass
class Method:
    library:str
    name:str # As a user would write it
    op:str # What it does, to compare like with like: 'mixup', 'cutmix', 'fmix', ...; 'copy' is the unit
    mode:str # 'batch': one λ (and box) for the batch; 'sample': one per sample; '' for the unit
    make:callable # make(x, y, classes) -> step(buf) -> (mixed input, what the loss needs); may raise to skip
    ours:bool = False
    step:callable = None
    refill:list = field(default_factory=list) # ms of each timed refill before this method
    ms:list = field(default_factory=list) # ms of each timed step, beyond the refill
    host:list = field(default_factory=list) # on CUDA, ms the host spent launching the step
    error:str = ''
    sync:str = '' # on CUDA: 'PASS' (no host-device sync in a step) or 'FAIL: ...'
    @property
    def label(self): return f"{self.library}: {self.name}"

# ---------------------------------------------------------------- the methods

def _learner_step(cb, x, y, fresh):
    """A step as `fit` runs it: the batch typed as a DataBlock delivers it (`TensorImage`, `TensorCategory`) set on the
    learner, then the learner's own `before_batch` event, which runs every callback it has (fastai's `CastToTensor`,
    the mixer...). `fresh(learn)` readies the learner for its first batch"""
    from fastai.torch_core import TensorImage, TensorCategory
    from fastai.learner import Learner
    from fastai.losses import CrossEntropyLossFlat
    learn = Learner(None, torch.nn.Identity(), loss_func=CrossEntropyLossFlat(), cbs=cb)
    learn.xb,learn.yb,learn.epoch,learn.training,learn.pct_train = (TensorImage(x.clone()),),(TensorCategory(y),),0,True,0.
    fresh(learn)
    yc = TensorCategory(y)
    def step(buf):
        learn.xb,learn.yb = (TensorImage(buf),),(yc,)
        learn('before_batch')
        return learn.xb[0],cb
    return step

def _fastai_cutmix_step(cb, x, y, k):
    "This library's callback, through the learner's `before_batch` event (`mixing_learner` readies it as `fit` would)"
    from fastai_cutmix.core import mixing_learner
    def fresh(learn):
        cb._checked = cb._loss_checked = False
        cb.before_fit(); cb.before_train()
    return _learner_step(cb, x, y, fresh)

def _fastai_step(cb, x, y, k):
    "fastai's callbacks through the same event: `before_train` reads the loss's `y_int` and swaps the loss (fastai 2.8 has no `before_fit` here)"
    return _learner_step(cb, x, y, lambda learn: cb.before_train())

def _call_step(f):
    "Transforms called as `f(x, y)`, returning the mixed input and targets"
    return lambda x,y,k: (lambda buf: tuple(f(buf, y)))

def _timm(mode, cutmix, mixup=True):
    def make(x, y, k):
        from timm.data import Mixup
        if x.shape[0]%2: raise ValueError("timm's Mixup needs an even batch size")
        kw = (dict(mixup_alpha=.8, cutmix_alpha=1.) if cutmix and mixup else dict(mixup_alpha=0., cutmix_alpha=1.) if cutmix
              else dict(cutmix_alpha=0.))
        return _call_step(Mixup(mode=mode, num_classes=k, **kw))(x, y, k)
    return make

def _torchvision(cls):
    def make(x, y, k):
        from torchvision.transforms import v2
        return _call_step(getattr(v2, cls)(num_classes=k))(x, y, k)
    return make

def _kornia(cls, **kw):
    def make(x, y, k):
        import kornia.augmentation as K
        return _call_step(getattr(K, cls)(p=1., data_keys=['input', 'class'], **kw))(x, y, k)
    return make

def _event(x, y, k):
    "The learner's `before_batch` event with no mixer: what fastai's dispatch (and its `CastToTensor`) costs any callback"
    from fastai.callback.core import Callback
    return _learner_step(Callback(), x, y, lambda learn: None)

def _floor(x, y, k):
    """An in-place MixUp of the batch in plain PyTorch, with no framework and no checks: the partners gathered into a kept
    buffer, then one blend, with λ from Python's generator. On small samples, where a copy per sample costs more to
    launch than it moves, the least that mixing the learner's batch in place costs that we know of"""
    import random
    kept = torch.empty_like(x)
    def step(buf):
        perm = torch.randperm(buf.shape[0], device=buf.device)
        return buf.lerp_(torch.index_select(buf, 0, perm, out=kept), random.random()),None
    return step

def _copy(x, y, k):
    out = torch.empty_like(x)
    return lambda buf: (out.copy_(x), None)

def methods()->tuple:
    "Every method to time, and {library: why it is skipped} for peers that do not import"
    warnings.filterwarnings('ignore', message='.*torch.jit.script.* is deprecated') # from the peers' imports
    from fastai_cutmix.all import MixUp, CutMix, FMix, ResizeMix, RICAP, Cutout, CutMixUp
    from fastai.callback import mixup as fm
    ours = lambda name, op, mode, f: Method('fastai_cutmix', name, op, mode, lambda x,y,k: _fastai_cutmix_step(f(), x, y, k), ours=True)
    ms = [Method('unit', 'out.copy_(x)', 'copy', '', _copy),
          Method('unit', "learn('before_batch') with no mixer", 'event', '', _event),
          Method('unit', "x.lerp_(torch.index_select(x, 0, perm, out=kept), λ)", 'floor', '', _floor),
          ours('MixUp()', 'mixup', 'sample', MixUp),
          ours('MixUp(per_sample=False)', 'mixup', 'batch', lambda: MixUp(per_sample=False)),
          ours('CutMix()', 'cutmix', 'batch', CutMix),
          ours('CutMix(per_sample=True)', 'cutmix', 'sample', lambda: CutMix(per_sample=True)),
          ours('FMix()', 'fmix', 'batch', FMix),
          ours('FMix(per_sample=True)', 'fmix', 'sample', lambda: FMix(per_sample=True)),
          ours('ResizeMix()', 'resizemix', 'batch', ResizeMix),
          ours('ResizeMix(per_sample=True)', 'resizemix', 'sample', lambda: ResizeMix(per_sample=True)),
          ours('RICAP()', 'ricap', 'batch', RICAP),
          ours('RICAP(per_sample=True)', 'ricap', 'sample', lambda: RICAP(per_sample=True)),
          ours('Cutout()', 'cutout', 'batch', Cutout),
          ours('CutMixUp()', 'cutmixup', 'batch', CutMixUp),
          ours('CutMixUp(per_sample=True)', 'cutmixup', 'sample', lambda: CutMixUp(per_sample=True)),
          Method('fastai', 'MixUp()', 'mixup', 'sample', lambda x,y,k: _fastai_step(fm.MixUp(), x, y, k)),
          Method('fastai', 'CutMix()', 'cutmix', 'batch', lambda x,y,k: _fastai_step(fm.CutMix(), x, y, k))]
    peers = {'timm': [Method('timm', "Mixup(cutmix_alpha=0, mode='batch')", 'mixup', 'batch', _timm('batch', False)),
                      Method('timm', "Mixup(cutmix_alpha=0, mode='elem')", 'mixup', 'sample', _timm('elem', False)),
                      Method('timm', "Mixup(mixup_alpha=0, cutmix_alpha=1, mode='batch')", 'cutmix', 'batch', _timm('batch', True, False)),
                      Method('timm', "Mixup(mixup_alpha=0, cutmix_alpha=1, mode='elem')", 'cutmix', 'sample', _timm('elem', True, False)),
                      Method('timm', "Mixup(mixup_alpha=.8, cutmix_alpha=1., mode='batch')", 'cutmixup', 'batch', _timm('batch', True)),
                      Method('timm', "Mixup(mixup_alpha=.8, cutmix_alpha=1., mode='elem')", 'cutmixup', 'sample', _timm('elem', True))],
             'torchvision': [Method('torchvision', 'v2.MixUp(num_classes=k)', 'mixup', 'batch', _torchvision('MixUp')),
                             Method('torchvision', 'v2.CutMix(num_classes=k)', 'cutmix', 'batch', _torchvision('CutMix'))],
             'kornia': [Method('kornia', 'RandomMixUpV2(p=1.)', 'mixup', 'sample', _kornia('RandomMixUpV2')),
                        Method('kornia', 'RandomCutMixV2(p=1., use_correct_lambda=True)', 'cutmix', 'sample',
                               _kornia('RandomCutMixV2', use_correct_lambda=True))]}
    mods = {'timm': 'timm.data', 'torchvision': 'torchvision.transforms.v2', 'kornia': 'kornia.augmentation'}
    skipped = {}
    for lib,ps in peers.items():
        try: __import__(mods[lib])
        except Exception as e:
            skipped[lib] = f"does not import: {type(e).__name__}: {e}".splitlines()[0]
            continue
        ms += ps
    return ms,skipped

# ---------------------------------------------------------------- clocks

class CPUClock:
    "Wall-clock time of the refill and of the step after it"
    name = 'cpu'
    def __call__(self, refill, step):
        t0 = time.perf_counter(); refill()
        t1 = time.perf_counter(); step()
        t2 = time.perf_counter()
        return (t1-t0)*1e3,(t2-t1)*1e3,(t2-t1)*1e3

class CUDAClock:
    "Device time of the refill and of the step (CUDA events), and the host's time launching the step"
    name = 'cuda'
    def __init__(self, hold_ms=20.):
        self.ev = [torch.cuda.Event(enable_timing=True) for _ in range(3)]
        self.cycles = self._cycles(hold_ms) if hasattr(torch.cuda, '_sleep') else 0

    def _cycles(self, ms):
        "GPU sleep cycles that last about `ms`"
        e0,e1 = self.ev[:2]
        torch.cuda.synchronize()
        e0.record(); torch.cuda._sleep(1_000_000); e1.record()
        torch.cuda.synchronize()
        return int(1_000_000*ms/max(e0.elapsed_time(e1), 1e-3))

    def __call__(self, refill, step):
        e0,e1,e2 = self.ev
        torch.cuda.synchronize()
        # the GPU sleeps while the host queues the refill and the step, so the events time the GPU's work rather than
        # the host's launches; a step that syncs waits for the queue there, and its device time shows the stall
        if self.cycles: torch.cuda._sleep(self.cycles)
        e0.record(); refill(); e1.record()
        t1 = time.perf_counter(); step(); t2 = time.perf_counter()
        e2.record()
        torch.cuda.synchronize()
        return e0.elapsed_time(e1),e1.elapsed_time(e2),(t2-t1)*1e3

    def sync_free(self, step, refill, tries=10)->str:
        "'PASS' if `tries` steps run under sync debug mode 'error' (several: some methods choose per batch)"
        for _ in range(tries):
            refill()
            torch.cuda.synchronize()
            torch.cuda.set_sync_debug_mode('error')
            try: step()
            except RuntimeError as e:
                if 'synchroniz' not in str(e): raise
                return 'FAIL: ' + str(e).splitlines()[0][:120]
            finally: torch.cuda.set_sync_debug_mode('default')
        torch.cuda.synchronize()
        return 'PASS'

# ---------------------------------------------------------------- measuring

def _check(m, out, x):
    "The step returned a mixed input like the batch and something for the loss"
    xm = out[0]
    if not (isinstance(xm, torch.Tensor) and xm.shape==x.shape and xm.dtype==x.dtype): raise ValueError(
        f"{m.label} returned {type(xm).__name__} {tuple(getattr(xm, 'shape', ()))} for a batch {tuple(x.shape)}")
    if len(out)<2: raise ValueError(f"{m.label} returned no targets or λ")

def _fail(m, e)->str:
    "Record why peer `m` failed (this library, or the unit, failing is a bug: raise)"
    if m.ours or m.op=='copy': raise e
    m.error = f"{type(e).__name__}: {e}".splitlines()[0][:200]
    print(f"  dropped {m.label}: {m.error}", flush=True)
    return 'error: ' + m.error

def _round(live, clock, refill, buf, rng, keep):
    "One step of each method in `live`, in a random order, each right after a refill; returns a peer that failed"
    for i in rng.permutation(len(live)):
        m = live[i]
        try: t = clock(refill, lambda: m.step(buf))
        except Exception as e:
            _fail(m, e)
            return m
        if keep: m.refill.append(t[0]); m.ms.append(t[1]); m.host.append(t[2])

def measure(ms, shape, dev, clock, rng):
    "Interleaved rounds: each visits every method once, in a fresh random order, right after refilling the batch"
    x = torch.randn(shape.size, device=dev)
    y = torch.randint(0, shape.classes, shape.size[:1], device=dev)
    buf = torch.empty_like(x)
    refill = lambda: buf.copy_(x)
    live = []
    for m in ms:
        m.refill,m.ms,m.host,m.error,m.sync = [],[],[],'',''
        try:
            m.step = m.make(x, y, shape.classes)
            refill(); _check(m, m.step(buf), x)
            live.append(m)
        except Exception as e: _fail(m, e)
    for r in range(shape.warmup+shape.reps):
        # the collector runs between rounds, not inside one: its pauses would land on whichever step tripped it
        gc.collect(); gc.disable()
        try: failed = _round(live, clock, refill, buf, rng, keep=r>=shape.warmup)
        finally: gc.enable()
        live = [m for m in live if m is not failed]
    if isinstance(clock, CUDAClock):
        for m in live:
            try: m.sync = clock.sync_free(lambda: m.step(buf), refill)
            except Exception as e: m.sync = _fail(m, e)
    return x,y,buf

def med(v): return statistics.median(v) if v else math.nan
def quartiles(v): return tuple(float(q) for q in np.percentile(v, [25, 75])) if v else (math.nan, math.nan)

def summary(ms):
    "The unit (one batch copy, ms) and the rows of one shape"
    unit = med(next(m for m in ms if m.op=='copy').ms)
    rows = []
    for m in ms:
        if not m.ms: continue
        q1,q3 = quartiles(m.ms)
        rows.append(dict(library=m.library, method=m.name, op=m.op, mode=m.mode, median_ms=med(m.ms), iqr_ms=q3-q1, q1=q1, q3=q3,
                         copies=med(m.ms)/unit, refill_ms=med(m.refill), host_ms=med(m.host), reps=len(m.ms), sync_free=m.sync))
    return unit,rows

# ---------------------------------------------------------------- targets

OURS = {'mixup': 'MixUp', 'cutmix': 'CutMix', 'cutmixup': 'CutMixUp', 'fmix': 'FMix', 'resizemix': 'ResizeMix', 'ricap': 'RICAP',
        'cutout': 'Cutout'}

def best_peer(rows, op, mode=None):
    "The fastest peer row doing `op` (in `mode`, if given), or None"
    ps = [r for r in rows if r['library'] not in ('fastai_cutmix', 'unit') and r['op']==op and (mode is None or r['mode']==mode)]
    return min(ps, key=lambda r: r['median_ms']) if ps else None

def targets(rows, dev)->list:
    "Issues 5 and 14's targets on one shape: (target, value, limit, PASS/MISS, the methods to look into on a MISS)"
    ours = {(r['op'], r['mode']): r for r in rows if r['library']=='fastai_cutmix' and r['method']!='MixUp()'}
    ours[('mixup', 'sample')] = next(r for r in rows if r['library']=='fastai_cutmix' and r['method']=='MixUp()')
    res = []
    # the reference line (`floor_line`): fastai's event plus a bare in-place blend, about the least a callback pays
    event,floor = (next(r['copies'] for r in rows if r['op']==op) for op in ('event', 'floor'))
    ref = event+floor
    def add(name, value, limit, ok, look, note='', under=False):
        res.append(dict(target=name, value=value, limit=limit, result='PASS' if ok else 'MISS', look=look, note=note, under=under))
    def copies(name, o, limit):
        "A limit in batch copies; a miss says where the reference line alone is above the limit"
        under = o['copies']>limit and ref>limit
        add(name, f"{o['copies']:.2f}", f"{limit:g}", o['copies']<=limit, [o],
            f"the reference line alone is {ref:.2f} copies" if under else '', under)
    def faster(what, o, best):
        if best is None:
            res.append(dict(target=what, value='', limit='', result='n/a', look=[], note='no peer measured', under=False))
            return
        ratio = o['median_ms']/best['median_ms']
        close = o['q1']<=best['q3'] and best['q1']<=o['q3']
        # a miss against a peer called directly: what it would cost in a callback, paying fastai's event as this library does
        direct = ratio>=1 and best['library']!='fastai'
        add(what, f"{ratio:.2f}× {best['library']}'s {best['method']}", '< 1×', ratio<1, [o, best],
            '; '.join([n for n,c in (('the quartile ranges overlap: no clear difference', close), (f"the peer is called "
                       f"without fastai's event ({event:.2f} copies): {best['copies']+event:.2f} with it", direct)) if c]))
    cm,cs,mu = ours[('cutmix', 'batch')],ours[('cutmix', 'sample')],ours[('mixup', 'sample')]
    copies(f"CutMix() ≤ 1.5 batch copies beyond the refill ({dev})", cm, 1.5)
    copies(f"MixUp() ≤ 3 batch copies ({dev})", mu, 3)
    ratio = cs['median_ms']/cm['median_ms']
    add("CutMix(per_sample=True) ≤ 2.5 × CutMix()", f"{ratio:.2f}×", '2.5×', ratio<=2.5, [cs, cm])
    faster("MixUp() faster than the fastest peer MixUp (any λ mode)", mu, best_peer(rows, 'mixup'))
    faster("CutMix() faster than the fastest peer CutMix with one box per batch", cm, best_peer(rows, 'cutmix', 'batch'))
    faster("CutMix(per_sample=True) faster than the fastest peer CutMix with a box per sample", cs, best_peer(rows, 'cutmix', 'sample'))
    # issue 14
    faster("CutMixUp(per_sample=True) faster than timm's per-sample MixUp-or-CutMix (mode='elem')", ours[('cutmixup', 'sample')],
           best_peer(rows, 'cutmixup', 'sample'))
    faster("CutMixUp() faster than timm's per-batch MixUp-or-CutMix (mode='batch')", ours[('cutmixup', 'batch')],
           best_peer(rows, 'cutmixup', 'batch'))
    for op,name in OURS.items():
        b = ours.get((op, 'batch'))
        if b is None: continue
        copies(f"{b['method']} ≤ 3 batch copies ({dev})", b, 3)
        s_ = ours.get((op, 'sample'))
        if s_ is None: continue
        ratio = s_['median_ms']/b['median_ms']
        add(f"{s_['method']} ≤ 3 × {b['method']}", f"{ratio:.2f}×", '3×', ratio<=3, [s_, b])
    return res

def overview(rows)->list:
    "Issue 14's summary, one row per member and mode: this library's cost, the best peer's doing the same, and the ratio"
    out = []
    for op,name in OURS.items():
        for mode in ('batch', 'sample'):
            o = [r for r in rows if r['library']=='fastai_cutmix' and r['op']==op and r['mode']==mode]
            if not o: continue
            o = o[0]
            best = best_peer(rows, op, mode) or best_peer(rows, op)
            out.append(dict(method=o['method'], mode=mode, ours=o, peer=best, ratio=o['median_ms']/best['median_ms'] if best else math.nan))
    return out

def overview_md(rows, unit)->list:
    "The summary table: copies as median (quartiles), the best peer, and the ratio of medians"
    spread = lambda r: f"{r['copies']:.2f} ({r['q1']/unit:.2f}–{r['q3']/unit:.2f})"
    L = ['| method | mode | fastai_cutmix, copies (quartiles) | best peer, copies (quartiles) | ratio |', '|---|---|---:|---|---:|']
    for o in overview(rows):
        p = o['peer']
        L.append(f"| {o['method']} | {o['mode']} | **{spread(o['ours'])}** | " +
                 (f"{spread(p)}: {p['library']} `{p['method']}`{'' if p['mode']==o['mode'] else ' (' + p['mode'] + ')'} | {o['ratio']:.2f}× |" if p else "no peer | |"))
    return L

@contextlib.contextmanager
def _quiet_stderr():
    "Silence the C++ profiler's own log lines (start, stop, no GPU), which bypass Python's `sys.stderr`"
    sys.stderr.flush()
    saved,null = os.dup(2),os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    try: yield
    finally:
        os.dup2(saved, 2)
        os.close(saved); os.close(null)

def profile(m, x, n, dev)->str:
    "torch.profiler's table of `n` steps of `m`, each on a batch refilled beforehand (so the refills stay out of it)"
    from torch.profiler import profile as prof, ProfilerActivity
    bufs = [x.clone() for _ in range(n)]
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev=='cuda' else [])
    with _quiet_stderr(), prof(activities=acts) as p:
        for b in bufs: m.step(b)
        if dev=='cuda': torch.cuda.synchronize()
    key = 'self_device_time_total' if dev=='cuda' else 'self_cpu_time_total'
    return p.key_averages().table(sort_by=key, row_limit=14, max_name_column_width=48)

# ---------------------------------------------------------------- writing

def machine(dev)->dict:
    "What ran the benchmark: devices, threads, versions, date, commit"
    def ver(mod):
        try: return __import__(mod).__version__
        except Exception: return 'not installed'
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        cpu = next((l.split(':', 1)[1].strip() for l in Path('/proc/cpuinfo').read_text().splitlines() if l.startswith('model name')), cpu)
    try: commit = subprocess.run(['git', 'describe', '--always', '--dirty'], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    except OSError: commit = ''
    # glibc's defaults give each big temporary fresh pages (and page faults); a tuned or preloaded allocator changes the figures
    alloc = ' '.join(f"{k}={v}" for k,v in sorted(os.environ.items()) if k.startswith('MALLOC_') or k=='LD_PRELOAD') or 'default'
    return dict(date=datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC'), cpu=cpu, cores=os.cpu_count(),
                allocator=alloc, load=os.getloadavg()[0],
                threads=torch.get_num_threads(), device=torch.cuda.get_device_name() if dev=='cuda' else 'cpu',
                python=platform.python_version(), commit=commit or 'unknown',
                **{m: ver(m) for m in ('torch', 'fastai', 'fastai_cutmix', 'timm', 'torchvision', 'kornia')})

def machine_line(mi):
    libs = ', '.join(f"{m} {mi[m]}" for m in ('torch', 'fastai', 'fastai_cutmix', 'timm', 'torchvision', 'kornia'))
    load = f"load average {mi['load']:.2f} before, {mi['load_after']:.2f} after" if 'load_after' in mi else f"load average {mi['load']:.2f}"
    return (f"{mi['date']}; {mi['cpu']} ({mi['cores']} cores, torch threads {mi['threads']}, {load}); device {mi['device']}; "
            f"allocator {mi['allocator']}; "
            f"Python {mi['python']}; {libs}; commit {mi['commit']}")

CSV_COLS = ['library', 'method', 'mode', 'shape', 'median_ms', 'iqr_ms', 'copies', 'op', 'refill_ms', 'host_ms', 'reps', 'device', 'sync_free']

def write_csv(path, results, dev):
    with open(path, 'w', newline='') as f:
        w = csv.DictWriter(f, CSV_COLS)
        w.writeheader()
        for shape,res in results.items():
            for r in res['rows']:
                w.writerow({**{k: r[k] for k in CSV_COLS if k in r}, 'shape': shape.name.replace('×', 'x'), 'device': dev,
                            **{k: f"{r[k]:.4f}" for k in ('median_ms', 'iqr_ms', 'copies', 'refill_ms', 'host_ms')}})

def floor_line(rows)->str:
    "The event and the plain in-place MixUp added up: on small samples, about the least a callback mixing the learner's batch pays"
    e,f = (next(r['copies'] for r in rows if r['op']==op) for op in ('event', 'floor'))
    return (f"Reference: fastai's `before_batch` event with no mixer ({e:.2f} copies) plus an in-place MixUp in plain PyTorch, "
            f"with no checks (`x.lerp_(torch.index_select(x, 0, perm, out=kept), λ)`, {f:.2f}): {e+f:.2f} batch copies. On "
            "small samples this is about the least a callback that mixes the learner's batch pays; on large ones this "
            "library's walk along the permutation's cycles moves less (see bench/README.md).")

def write_md(path, results, mi, dev, cmd, skipped, quick):
    L = [f"# Mixing cost per batch{' (quick smoke run: too few repetitions to quote)' if quick else ''}", '',
         "The time a training step pays to turn a batch into the mixed input and what the loss needs (targets, λ), "
         "beyond refilling the batch: median over interleaved rounds, and as a multiple of one copy of the batch into a "
         "preallocated buffer (`out.copy_(x)`, timed in the same rounds). Mode: `batch` draws one λ (and box) per batch, "
         "`sample` one per sample. See bench/README.md.", '',
         f"Machine: {machine_line(mi)}", '', f"Command: `{cmd}`", '']
    if skipped: L += [f"Skipped: {'; '.join(f'{k} ({v})' for k,v in skipped.items())}", '']
    if dev=='cpu' and mi['load']>=mi['cores']/2: L += [
        f"**Other jobs were running** (load average {mi['load']:.2f} on {mi['cores']} cores before the run started): with "
        f"{mi['threads']} torch threads, every parallel operation may wait for a time slice, so short steps come out as "
        "multiples of the scheduler's slice and copies mean less. Interleaving spreads that over all methods alike; "
        "rerun on an idle machine for figures to quote.", '']
    gpu = dev=='cuda'
    L += ['## Summary', '',
          "Each member of the family in each mode against the fastest peer doing the same (the same mode where a peer has it), "
          "in batch copies beyond the refill: median over the rounds, with the quartiles, the spread over rounds. Ratio: this "
          "library's median over the peer's; below 1 is faster. Every step goes through a learner's `before_batch` event with "
          "the batch typed as a DataBlock delivers it (`TensorImage`, `TensorCategory`), and so includes what fastai's "
          "dispatch of the event costs any callback (the row `learn('before_batch') with no mixer` in the tables below); timm, "
          "torchvision and kornia are called directly, as in a plain PyTorch loop, and do not pay it. On small batches the "
          "fixed costs of a step (that event, the mixer's checks, drawing λ and the permutation) are most of this library's "
          "figure: see bench/README.md.", '']
    if not gpu: L += ["No GPU was lent for this run: the CUDA table (timed with `torch.cuda.Event`) and the check that no step "
                      "synchronises with the host (`torch.cuda.set_sync_debug_mode('error')`) are written when this command runs "
                      "on a machine with CUDA.", '']
    for shape,res in results.items():
        miss = [t['target'] for t in res['targets'] if t['result']=='MISS']
        under = sum(t['under'] for t in res['targets'])
        L += [f"### {shape.name}", ''] + overview_md(res['rows'], res['unit']) + ['', floor_line(res['rows']), '',
              f"Targets: {sum(t['result']=='PASS' for t in res['targets'])} of {len(res['targets'])} met"
              + (f"; missed: {'; '.join(miss)} (profiles below)." if miss else '.')
              + (f" Misses at a limit that the reference line is already above: {under} (noted in the table of targets)."
                 if under else ''), '']
    for shape,res in results.items():
        unit,rows = res['unit'],res['rows']
        refills = [r['refill_ms'] for r in rows]
        L += [f"## {shape.name}, float32, {shape.classes} classes", '',
              f"One batch copy: {unit:.3f} ms ({np.prod(shape.size)*4/2**20:.1f} MiB); the refill before each step: median "
              f"{med(refills):.3f} ms across methods. {shape.reps} timed rounds after {shape.warmup} warm-up rounds.", '']
        head = ['library', 'method', 'mode', 'median ms', 'IQR ms', 'batch copies'] + (['host ms', 'sync-free'] if gpu else [])
        L += ['| ' + ' | '.join(head) + ' |', '|' + '---|'*3 + '---:|'*(len(head)-3-gpu) + ('---|' if gpu else '')]
        order = ['copy', 'event', 'floor', 'mixup', 'cutmix', 'cutmixup', 'fmix', 'resizemix', 'ricap', 'cutout']
        for r in sorted(rows, key=lambda r: (order.index(r['op']), r['mode']!='batch', r['library']!='fastai_cutmix', r['median_ms'])):
            name = f"**{r['method']}**" if r['library']=='fastai_cutmix' else f"`{r['method']}`"
            cells = [r['library'], name, r['mode'], f"{r['median_ms']:.3f}", f"{r['iqr_ms']:.3f}", f"{r['copies']:.2f}"]
            L.append('| ' + ' | '.join(cells + ([f"{r['host_ms']:.3f}", r['sync_free']] if gpu else [])) + ' |')
        L += ['', '| target | value | limit | result |', '|---|---|---|---|']
        L += [f"| {t['target']} | {t['value']} | {t['limit']} | {t['result']}{' ('+t['note']+')' if t['note'] else ''} |" for t in res['targets']]
        if res['errors']: L += ['', 'Not measured (or dropped part-way): ' + '; '.join(f"{k}: {v}" for k,v in res['errors'].items())]
        if gpu:
            bad = [r['method'] for r in rows if r['library']=='fastai_cutmix' and r['sync_free']!='PASS']
            L += ['', f"No host-device sync in this library's steps: {'PASS' if not bad else 'FAIL for ' + ', '.join(bad)}"]
        L.append('')
        for label,table in res['profiles'].items():
            L += [f"### Profile of {label} on {shape.name} (a target above missed)", '', '```', table.rstrip(), '```', '']
    Path(path).write_text('\n'.join(L))

def write_summary(csv_path, path):
    """The README's lines, from the CSV alone (so `--summary` rewrites it without timing anything): on the first shape,
    this library's CutMix, MixUp and per-sample CutMixUp against fastai's and the fastest peer doing the same, in batch copies"""
    with open(csv_path, newline='') as f: rows = list(csv.DictReader(f))
    shape = rows[0]['shape']
    rows = [r for r in rows if r['shape']==shape]
    def row(what, name, op, mode):
        ours = next(r for r in rows if r['library']=='fastai_cutmix' and r['method']==name)
        fastai = next((r for r in rows if r['library']=='fastai' and r['op']==op), None)
        peers = [r for r in rows if r['library'] not in ('fastai_cutmix', 'fastai', 'unit') and r['op']==op
                 and (mode is None or r['mode']==mode)]
        best = min(peers, key=lambda r: float(r['median_ms'])) if peers else None
        cells = [f"**{float(ours['copies']):.2f}**", f"{float(fastai['copies']):.2f}" if fastai else 'n/a',
                 f"{float(best['copies']):.2f} ({best['library']})" if best else 'n/a']
        return f"| {what} | " + ' | '.join(cells) + ' |'
    Path(path).write_text('\n'.join([
        f"Time to mix one {shape.replace('x', '×')} float32 batch on {rows[0]['device'].upper()}, in copies of the batch (lower is better):", '',
        '| method | fastai_cutmix | fastai | fastest peer |', '|---|---:|---:|---:|',
        row('CutMix, one box per batch', 'CutMix()', 'cutmix', 'batch'), row('MixUp', 'MixUp()', 'mixup', None),
        row('MixUp or CutMix, chosen per sample (DeiT)', 'CutMixUp(per_sample=True)', 'cutmixup', 'sample'),
        row('MixUp or CutMix, chosen per batch', 'CutMixUp()', 'cutmixup', 'batch')]) + '\n')

def write_png(path, results, mi):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    colours = {'fastai_cutmix': 'tab:blue', 'fastai': 'tab:orange', 'timm': 'tab:green', 'torchvision': 'tab:red',
               'kornia': 'tab:purple', 'unit': 'tab:gray'}
    hs = [len(res['rows']) for res in results.values()]
    fig,axs = plt.subplots(len(results), 1, figsize=(10, 1.2+.28*sum(hs)), gridspec_kw=dict(height_ratios=hs), squeeze=False,
                           layout='constrained')
    for ax,(shape,res) in zip(axs[:, 0], results.items()):
        unit,rows = res['unit'],sorted(res['rows'], key=lambda r: -r['copies'])
        ys = range(len(rows))
        err = [[(r['median_ms']-r['q1'])/unit for r in rows], [(r['q3']-r['median_ms'])/unit for r in rows]]
        ax.barh(ys, [r['copies'] for r in rows], xerr=err,
                color=[colours.get(r['library'], 'k') for r in rows], error_kw=dict(lw=.8, capsize=2))
        ax.set_yticks(list(ys), [f"{r['library']}: {r['method']}" + (f" [{r['mode']}]" if r['mode'] else '') for r in rows], fontsize=7)
        ax.axvline(1, color='k', lw=.8, ls='--')
        cs = [r['copies'] for r in rows if r['copies']>0]
        if cs and max(cs)/min(cs)>30: ax.set_xscale('log')
        ax.set_title(f"{shape.name}: one batch copy = {unit:.3f} ms", fontsize=9)
        ax.set_xlabel('cost beyond the refill, in batch copies (median; whiskers: quartiles; dashed: one copy)', fontsize=8)
        ax.grid(axis='x', alpha=.3)
    fig.suptitle(f"Per-batch mixing cost, {mi['device']} ({mi['cpu']}, {mi['threads']} threads), {mi['date']}", fontsize=9)
    fig.savefig(path, dpi=110)
    plt.close(fig)

# ---------------------------------------------------------------- main

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--quick', action='store_true', help='a seconds-long smoke run: one small shape, a few rounds (for CI)')
    ap.add_argument('--out', type=Path, default=HERE/'results', help='folder for mixing_cost.{csv,md,png} (default: bench/results)')
    ap.add_argument('--reps', type=int, help="timed rounds for every shape (default: each shape's own)")
    ap.add_argument('--threads', type=int, help="torch threads (default: torch's own); 1 steadies the figures on a machine other jobs share")
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--summary', action='store_true', help='only rewrite mixing_cost_summary.md from the mixing_cost.csv in --out')
    args = ap.parse_args(argv)
    if args.summary:
        write_summary(args.out/'mixing_cost.csv', args.out/'mixing_cost_summary.md')
        return 0
    t_start = time.perf_counter()
    if args.threads: torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    dev = 'cuda' if torch.cuda.is_available() else 'cpu'
    shapes = QUICK if args.quick else FULL
    if args.reps: shapes = [Shape(s.size, s.classes, s.warmup, args.reps, s.profile) for s in shapes]
    clock = CUDAClock() if dev=='cuda' else CPUClock()
    ms,skipped = methods()
    mi = machine(dev)
    print(f"Mixing cost per batch on {dev}: {machine_line(mi)}", flush=True)
    for k,v in skipped.items(): print(f"  skipped {k}: {v}")
    results = {}
    for shape in shapes:
        t0 = time.perf_counter()
        print(f"{shape.name}: {len(ms)} methods, {shape.warmup} warm-up + {shape.reps} timed rounds", flush=True)
        x,_,_ = measure(ms, shape, dev, clock, rng)
        unit,rows = summary(ms)
        tgts = targets(rows, dev)
        for t in tgts: print(f"  {t['result']:4}  {t['target']}: {t['value']} (limit {t['limit']})")
        look = {(r['library'], r['method']) for t in tgts if t['result']=='MISS' for r in t['look']}
        profs = {m.label: profile(m, x, shape.profile, dev) for m in ms
                 if shape.profile and m.ours and (m.library, m.name) in look and m.step is not None}
        results[shape] = dict(unit=unit, rows=rows, targets=tgts, profiles=profs, errors={m.label: m.error for m in ms if m.error})
        for m in ms: m.step = None # free each method's learner and buffers before the next shape
        del x
        print(f"  {time.perf_counter()-t0:.0f} s", flush=True)
    mi['load_after'] = os.getloadavg()[0]
    args.out.mkdir(parents=True, exist_ok=True)
    exe = os.path.relpath(sys.executable) if not os.path.relpath(sys.executable).startswith('..') else sys.executable
    cmd = shlex.join([exe, os.path.relpath(__file__)] + (sys.argv[1:] if argv is None else list(argv)))
    write_csv(args.out/'mixing_cost.csv', results, dev)
    write_md(args.out/'mixing_cost.md', results, mi, dev, cmd, skipped, args.quick)
    write_png(args.out/'mixing_cost.png', results, mi)
    write_summary(args.out/'mixing_cost.csv', args.out/'mixing_cost_summary.md')
    print(f"Wrote {', '.join(str(args.out/f'mixing_cost{e}') for e in ('.csv', '.md', '.png', '_summary.md'))} in {time.perf_counter()-t_start:.0f} s")
    return 0

if __name__ == '__main__': sys.exit(main())
