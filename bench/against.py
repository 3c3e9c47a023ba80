"""This checkout's callbacks against another commit's, timed in the same interleaved rounds: is a change faster?

    .venv/bin/python bench/against.py REV [--shape 256x3x32x32] [--reps 300] [--out bench/results/against.md]

A change to a step's fixed costs (a few dozen microseconds) is smaller than the drift between two runs of
mixing_cost.py on a shared machine (about ±10% on small batches). Here both versions of each method run in the same
rounds, each round in a fresh random order, so drift lands on both alike: for each method the report gives each
version's median, and the median over rounds of the ratio of the two steps timed in the same round (below 1: this
checkout is faster), with its quartiles. REV's package is taken with `git archive` into a temporary folder under
another name; nothing is checked out. bench/README.md says more.
"""
from __future__ import annotations
import argparse, importlib, io, os, re, shlex, statistics, subprocess, sys, tarfile, tempfile
from pathlib import Path
import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import mixing_cost as mc # its steps, rounds, clock and machine line: measured exactly as there
ROOT = mc.ROOT

# the family in each mode, as mixing_cost.py times it
CALLS = ['MixUp()', 'MixUp(per_sample=False)', 'CutMix()', 'CutMix(per_sample=True)', 'FMix()', 'FMix(per_sample=True)',
         'ResizeMix()', 'ResizeMix(per_sample=True)', 'RICAP()', 'RICAP(per_sample=True)', 'Cutout()', 'CutMixUp()',
         'CutMixUp(per_sample=True)']

def load(rev:str, into:Path):
    "The package `fastai_cutmix` as it is at commit `rev`, imported under another name"
    sha = subprocess.run(['git', 'rev-parse', '--short', rev], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    name = f'fastai_cutmix_{sha}'
    tar = subprocess.run(['git', 'archive', sha, 'fastai_cutmix'], cwd=ROOT, capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(tar)) as t: t.extractall(into, filter='data')
    pkg = into/name
    (into/'fastai_cutmix').rename(pkg)
    for f in pkg.rglob('*.py'): # its absolute imports of itself (`fastai_cutmix.show`...) name the copy
        f.write_text(re.sub(r'\bfastai_cutmix\b', name, f.read_text()))
    sys.path.insert(0, str(into))
    return sha,importlib.import_module(f'{name}.all')

def methods(then, sha):
    "Each call of `CALLS` in this checkout and at `sha`, and the unit (one batch copy)"
    import fastai_cutmix.all as now
    ms = [mc.Method('unit', 'out.copy_(x)', 'copy', '', mc._copy)]
    for call in CALLS:
        for lib,mod in (('now', now), (sha, then)):
            f = lambda mod=mod, call=call: eval(call, vars(mod))
            ms.append(mc.Method(lib, call, call, '', lambda x,y,k,f=f: mc._fastai_cutmix_step(f(), x, y, k), ours=True))
    return ms

def report(ms, sha, shape, mi, cmd, dev)->str:
    "Markdown: each method's median in both versions, and the median and quartiles of the per-round ratio"
    unit = statistics.median(ms[0].ms)
    q = lambda v: np.quantile(v, [.25, .5, .75])
    lines = [f"# This checkout against {sha}", "",
             f"Each method of the family in this checkout (`now`) and at commit {sha}, through the learner's `before_batch` "
             "event as in mixing_cost.py, both in the same interleaved rounds. `ratio`: the median over rounds of now's step "
             "over then's, timed in the same round (quartiles in brackets); below 1, this checkout is faster. "
             "Copies: the median in batch copies (`out.copy_(x)`, timed in the same rounds).", "",
             f"Machine: {mc.machine_line(mi)}", "", f"Command: `{cmd}`", "",
             f"Batch {shape.name}, float32, {shape.classes} classes, on {dev}" + (" (timed with CUDA events)" if dev=='cuda' else '')
             + f": {shape.reps} timed rounds after {shape.warmup} "
             f"warm-up rounds; one batch copy {unit:.3f} ms.", "",
             "| method | now ms | " + sha + " ms | now copies | " + sha + " copies | ratio (quartiles) |", "|---|---:|---:|---:|---:|---:|"]
    for a,b in zip(ms[1::2], ms[2::2]):
        r = q(np.array(a.ms)/np.array(b.ms))
        ma,mb = statistics.median(a.ms),statistics.median(b.ms)
        lines.append(f"| {a.name} | {ma:.3f} | {mb:.3f} | {ma/unit:.2f} | {mb/unit:.2f} | **{r[1]:.3f}** ({r[0]:.3f}–{r[2]:.3f}) |")
    return '\n'.join(lines) + '\n'

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('rev', help='the commit to compare with (anything `git rev-parse` reads: HEAD~1, a hash, a tag)')
    ap.add_argument('--shape', default='256x3x32x32', help='the batch, BSxCxHxW (default: the small one of mixing_cost.py)')
    ap.add_argument('--classes', type=int, default=100)
    ap.add_argument('--reps', type=int, default=300, help='timed rounds')
    ap.add_argument('--warmup', type=int, default=20, help='untimed rounds first')
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--out', type=Path, default=HERE/'results'/'against.md', help='the Markdown report (default: bench/results/against.md)')
    args = ap.parse_args(argv)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    shape = mc.Shape(tuple(int(s) for s in args.shape.lower().split('x')), args.classes, args.warmup, args.reps)
    with tempfile.TemporaryDirectory() as tmp:
        sha,then = load(args.rev, Path(tmp))
        ms = methods(then, sha)
        dev = 'cuda' if torch.cuda.is_available() else 'cpu'
        mi = mc.machine(dev)
        print(f"{len(ms)} steps on {shape.name} ({dev}): {shape.warmup} warm-up + {shape.reps} timed rounds", flush=True)
        mc.measure(ms, shape, dev, mc.CUDAClock() if dev=='cuda' else mc.CPUClock(), rng)
    mi['load_after'] = os.getloadavg()[0]
    cmd = shlex.join([os.path.relpath(sys.executable) if not os.path.relpath(sys.executable).startswith('..') else sys.executable,
                      os.path.relpath(__file__)] + (sys.argv[1:] if argv is None else list(argv)))
    md = report(ms, sha, shape, mi, cmd, dev)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(md)
    print(md)
    print(f"Wrote {args.out}")
    return 0

if __name__ == '__main__': sys.exit(main())
