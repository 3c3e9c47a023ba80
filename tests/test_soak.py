"""Soak: 2,000 consecutive batches through each member of the family, on one long-lived `Learner` per configuration.

Every batch has a random batch size (1 to 64), a random aspect ratio (H and W drawn independently in 4..32), 1 to 3
channels, and a target kind drawn from those the member's configuration supports: integer labels, soft or one-hot
probabilities (with a loss that has `reduction` or one without), multi-label, regression, segmentation masks. Each batch takes fastai's path for a training step, driven by hand (a full `fit` would cost ten times more): the
learner's `xb`/`yb` set, the callback's `before_batch`, the learner's swapped loss on a prediction, `backward` (on one
batch in four). Batches come in "fits" of 1 to 16 sharing a loss (fastai's flattened one or PyTorch's, with reduction
'mean', 'sum' or 'none'): `before_fit`, `before_train`, the batches, `after_train`, `after_fit`.

On every batch:
- sample `i` of the input is the constant `i`, so each mixed pixel names its source: the number of pixels taken from
  each source is the source's weight times the pixel count, exactly, sample by sample; blended (MixUp) samples are the
  weights' lerp of their sources' ids; Cutout keeps one source of weight 1 and erases a box;
- `idx`/`wgt` have the member's layout (sources, permutations, one draw per batch unless per sample) and each sample's
  weights sum to 1; `source_targets()` gives each source's targets;
- integer labels: the loss equals the weights' lerp of the per-source losses computed by hand, sample by sample; cut
  masks: the plain loss on the cut mask; float targets are mixed themselves (the weights' lerp of the sources' targets,
  probability rows summing to 1) and the loss is the plain loss on them;
- targets keep their shape and dtype; masks are cut exactly like the image (pixel by pixel, the source's class), and
  left alone by members that do not cut them (MixUp, Cutout).
Over the run: no error, and no growth after a warm-up in live objects, live tensors, resident memory and (over the last
quarter) Python's allocations (tracemalloc): see the bounds at the end.

Seeds: batch `b` of member number `m` is drawn with `seed = (SOAK_SEED*100 + m)*10_000 + b` (PyTorch's generator, which
the mixers draw from, and the batch's own `random.Random`). A failing batch reports the member, configuration, batch,
shapes, target kind, loss, reduction and seed, with a `replay(...)` call that reruns that batch alone.
`SOAK_BATCHES` and `SOAK_SEED` (environment) change the length and the seeds.
"""
import ctypes, gc, os, random, sys, time, tracemalloc
import pytest, torch
import torch.nn as nn, torch.nn.functional as F
from fastai.basics import Learner
from fastai.losses import CrossEntropyLossFlat, BCEWithLogitsLossFlat, MSELossFlat
from fastai_cutmix.core import MixLoss
from fastai_cutmix.mixup import MixUp
from fastai_cutmix.cutmix import CutMix, Cutout
from fastai_cutmix.fmix import FMix, fourier_band, _band_on
from fastai_cutmix.resizemix import ResizeMix
from fastai_cutmix.ricap import RICAP
from fastai_cutmix.choice import MixChoice, CutMixUp

from helpers import one_thread

@pytest.fixture(scope='module', autouse=True)
def _one_thread(one_thread): yield

N_BATCHES = int(os.environ.get('SOAK_BATCHES', 2000))
WARMUP = min(100, N_BATCHES//4) # batches before the memory baseline: first-call caches, lazy imports, allocator pools
BASE_SEED = int(os.environ.get('SOAK_SEED', 0))
FILL = -1. # Cutout's fill: no sample id is negative

# ---------------------------------------------------------------- the members and their configurations

# member: [(configuration name, factory, can it take masks)]. Choosing per sample between members that cut masks and
# members that do not is refused for masks (documented, and tested in test_family_properties.py): no masks there.
CONFIGS = {
    'MixUp': [('default', lambda: MixUp(), True),
              ('alpha1_no_max_lam', lambda: MixUp(alpha=1., max_lam=False), True),
              ('p.7', lambda: MixUp(p=.7), True)],
    'CutMix': [('batch', lambda: CutMix(), True),
               ('per_sample', lambda: CutMix(per_sample=True), True),
               ('minmax_per_sample', lambda: CutMix(per_sample=True, minmax=(.2, .8)), True),
               ('alpha.3_p.7', lambda: CutMix(alpha=.3, p=.7), True)],
    'Cutout': [('batch', lambda: Cutout(fill=FILL), True),
               ('per_sample', lambda: Cutout(per_sample=True, fill=FILL), True),
               ('minmax', lambda: Cutout(minmax=(.1, .5), fill=FILL), True)],
    'CutMixUp': [('batch', lambda: CutMixUp(), True),
                 ('per_sample', lambda: CutMixUp(per_sample=True), False),
                 ('switch.8_minmax', lambda: CutMixUp(switch_prob=.8, minmax=(.2, .6)), True)],
    'MixChoice': [('all_batch', lambda: MixChoice([MixUp(), CutMix(per_sample=True), Cutout(fill=FILL), FMix(),
                                                   ResizeMix(per_sample=True), RICAP()]), True),
                  ('region_per_sample', lambda: MixChoice([CutMix(per_sample=True), FMix(per_sample=True),
                                                           RICAP(per_sample=True), ResizeMix()],
                                                          weights=[1, 1, 2, 1], per_sample=True), True),
                  ('mixed_per_sample_p.8', lambda: MixChoice([MixUp(max_lam=False), CutMix(),
                                                              Cutout(per_sample=True, fill=FILL), RICAP(per_sample=True)],
                                                             per_sample=True, p=.8), False)],
    'FMix': [('batch', lambda: FMix(), True),
             ('per_sample', lambda: FMix(per_sample=True), True),
             ('decay1.5_alpha.5', lambda: FMix(decay_power=1.5, alpha=.5), True)],
    'ResizeMix': [('batch', lambda: ResizeMix(), True),
                  ('per_sample', lambda: ResizeMix(per_sample=True), True),
                  ('scale.05-.95_per_sample', lambda: ResizeMix(scale=(.05, .95), per_sample=True), True)],
    'RICAP': [('batch', lambda: RICAP(), True),
              ('per_sample', lambda: RICAP(per_sample=True), True),
              ('alpha1', lambda: RICAP(alpha=1.), True)],
}
MEMBERS = list(CONFIGS)
N_SOURCES = {MixUp: 2, CutMix: 2, Cutout: 1, FMix: 2, ResizeMix: 2, RICAP: 4}
# how a member fills a sample: blends it, copies pixels, resamples (constant images stay constant), or erases a box
MODE = {MixUp: 'blend', CutMix: 'copy', FMix: 'copy', RICAP: 'copy', ResizeMix: 'resize', Cutout: 'erase'}

# ---------------------------------------------------------------- target kinds, their losses and per-sample losses by hand

def soft_ce(pred, y):
    "A loss without `reduction`: float targets are mixed themselves, as with any loss"
    return -(y*F.log_softmax(pred, -1)).sum(-1).mean()

def _ce(pred, y): return -F.log_softmax(pred, -1).gather(-1, y.unsqueeze(-1)).squeeze(-1)
def _soft(pred, y): return -(y*F.log_softmax(pred, -1)).sum(-1)
def _bce(pred, y): return pred.clamp(min=0) - pred*y + torch.log1p(torch.exp(-pred.abs()))
def _mse(pred, y): return (pred-y)**2
def _pix_ce(pred, y): # (bs, [1,] H, W) masks
    y = y.reshape(y.shape[0], *pred.shape[2:])
    return -F.log_softmax(pred, 1).gather(1, y.unsqueeze(1)).squeeze(1)

# kind: (fastai's flattened loss, a plain PyTorch loss (either from the reduction), reductions run, per-sample loss by
# hand). Each fit takes fastai's loss or PyTorch's where the kind has both.
KINDS = {
    'label':      (lambda r: CrossEntropyLossFlat(reduction=r), lambda r: nn.CrossEntropyLoss(reduction=r),
                   ('mean', 'sum', 'none'), _ce),
    'soft':       (None, lambda r: nn.CrossEntropyLoss(reduction=r), ('mean', 'sum', 'none'), _soft), # targets mixed
    'soft_mixed': (None, lambda r: soft_ce, ('mean',), _soft), # no `reduction`: the targets are mixed
    'multilabel': (lambda r: BCEWithLogitsLossFlat(reduction=r), lambda r: nn.BCEWithLogitsLoss(reduction=r),
                   ('mean', 'sum', 'none'), _bce),
    'regression': (lambda r: MSELossFlat(reduction=r), lambda r: nn.MSELoss(reduction=r), ('mean', 'sum', 'none'), _mse),
    'mask':       (lambda r: CrossEntropyLossFlat(axis=1, reduction=r), lambda r: nn.CrossEntropyLoss(reduction=r),
                   ('mean', 'sum', 'none'), _pix_ce),
}
def make_loss(kind, flat, red): return KINDS[kind][0 if flat else 1](red)

def make_batch(rng, kind, mask_channel):
    "Input of random size in which sample `i` is the constant `i`; targets of `kind`; a prediction for them"
    bs,c,H,W = rng.randint(1, 64),rng.randint(1, 3),rng.randint(4, 32),rng.randint(4, 32)
    x = torch.arange(bs, dtype=torch.float32).view(bs, 1, 1, 1).expand(bs, c, H, W).clone()
    k = rng.randint(2, 10)
    if kind=='label': y,pshape = torch.randint(0, k, (bs,)),(bs, k)
    elif kind in ('soft', 'soft_mixed'):
        y = torch.rand(bs, k).softmax(-1) if rng.random()<.5 else F.one_hot(torch.randint(0, k, (bs,)), k).float()
        pshape = (bs, k)
    elif kind=='multilabel': y,pshape = (torch.rand(bs, k)<.4).float(),(bs, k)
    elif kind=='regression':
        y = torch.randn(bs)*3 if rng.random()<.5 else torch.randn(bs, 2)*3
        pshape = y.shape
    else: # one random class per sample: a cut mask must hold, pixel by pixel, the class of the input's source there
        y = torch.randint(0, k, (bs, 1, 1)).expand(bs, H, W).clone()
        if mask_channel: y = y.unsqueeze(1)
        pshape = (bs, k, H, W)
    return x,y,torch.randn(pshape)

# ---------------------------------------------------------------- checks

def members_of(cb, bs):
    "The mixer that mixed each sample (the callback, or the member a `MixChoice` drew for the batch or sample)"
    if not isinstance(cb, MixChoice): return [cb]*bs
    if not cb.per_sample: return [cb.cur]*bs
    return [cb.mixers[j] for j in cb.choice.tolist()]

def check_layout(cb, mems, bs):
    "`idx` (k, bs) long in [0, bs), `wgt` (k, bs) float32 in [0, 1], each sample's weights summing to 1"
    idx,wgt = cb.idx,cb.wgt
    if isinstance(cb, MixChoice): k = max(N_SOURCES[type(m)] for m in cb.mixers) if cb.per_sample else N_SOURCES[type(cb.cur)]
    else: k = N_SOURCES[type(cb)]
    assert idx.shape==(k, bs) and idx.dtype==torch.long, f"idx {idx.dtype} {tuple(idx.shape)}, want (k={k}, bs)"
    assert wgt.shape==(k, bs) and wgt.dtype==torch.float32, f"wgt {wgt.dtype} {tuple(wgt.shape)}, want (k={k}, bs)"
    assert ((idx>=0) & (idx<bs)).all(), f"idx out of range: {idx}"
    assert ((wgt>=0) & (wgt<=1)).all(), f"weights outside [0, 1]: {wgt}"
    err = (wgt.double().sum(0)-1).abs().max().item()
    assert err<=1e-6, f"weights do not sum to 1 (off by {err}): {wgt}"
    ar = torch.arange(bs)
    if isinstance(cb, MixChoice): # sources a member does not have are padded with weight 0
        pad = torch.arange(k)[:, None] >= torch.tensor([N_SOURCES[type(m)] for m in mems])
        assert (wgt[pad]==0).all(), f"padded sources with weights: {wgt}"
        return
    if isinstance(cb, Cutout): assert torch.equal(idx, ar[None]) and torch.equal(wgt, torch.ones(1, bs)), (idx, wgt)
    elif isinstance(cb, RICAP):
        for row in idx: assert torch.equal(row.sort().values, ar), f"RICAP sources not permutations: {idx}"
    else: assert torch.equal(idx[0], ar) and torch.equal(idx[1].sort().values, ar), f"not (self, permutation): {idx}"
    if not getattr(cb, 'per_sample', True): assert (wgt==wgt[:, :1]).all(), f"one draw per batch, but {wgt}"

def is_box(region):
    "(n, H, W) boolean: is each region a box, the product of its projections on the two axes?"
    outer = region.any(2)[:, :, None] & region.any(1)[:, None, :]
    return torch.equal(outer, region)

def check_pixels(x, xm, idx, wgt, mems):
    "Pixel counts per source are the weights times the pixel count, exactly; returns each pixel's source (cut samples)"
    bs,c,H,W = x.shape
    N = H*W
    assert xm.shape==x.shape and xm.dtype==x.dtype, f"mixed input {xm.dtype} {tuple(xm.shape)}"
    assert torch.equal(xm, xm[:, :1].expand_as(xm)), "a region or blend that does not span all channels"
    px = xm[:, 0].reshape(bs, N)
    modes = [MODE.get(type(m), 'copy') for m in mems]
    if len(set(modes))==1: groups = {modes[0]: slice(None)} # one mixer for the whole batch: no indexing
    else: groups = {md: torch.tensor([i for i,m in enumerate(modes) if m==md]) for md in set(modes)}
    ids = px.round()
    for mode,g in groups.items():
        p,ig,wg = px[g],idx[:, g],wgt[:, g]
        if mode=='blend': # each pixel is the weights' lerp of its sources' ids, which gives the weights back
            err = (p-(wg.double()*ig).sum(0)[:, None]).abs().max().item()
            assert err<=1e-4, f"blended samples off the weights' lerp of their sources by {err}"
            continue
        if mode=='erase': # Cutout: the sample itself (weight 1) and erased pixels, which form one box
            own = torch.arange(bs)[g]
            assert torch.equal(ig[0], own) and (wg[0]==1).all(), f"Cutout sources {ig} {wg}"
            erased = p==FILL
            assert ((p==own[:, None]) | erased).all(), "Cutout: pixels neither the sample's own nor the fill"
            assert is_box(erased.view(-1, H, W)), "Cutout: erased pixels are not a box"
            continue
        if mode=='resize': # a constant image resampled is the constant, up to float rounding
            err = (p-ids[g]).abs().max().item()
            assert err<=1e-4, f"resized pixels off an integer source id by {err}"
        else: assert torch.equal(p, ids[g]), "copied pixels that are not a source id"
        eq = ids[g][None]==ig[:, :, None] # (k, n, N): the pixel comes from the source in slot j
        assert eq.any(0).all(), "pixels from no source of their sample"
        count = eq.sum(2)
        # a sample drawn as its own partner (or twice, in RICAP) owns the weights of all its slots
        want = ((ig[:, None]==ig[None])*wg[None].double()).sum(1)*N
        off = (count-want).abs().amax(0)
        if off.max().item()>1e-3:
            j = int(off.argmax()) # the worst sample, numbered within the batch
            i = j if isinstance(g, slice) else int(g[j])
            raise AssertionError(f"{type(mems[i]).__name__}: sample {i} of {bs} takes {count[:, j].tolist()} of its {N} "
                                 f"pixels from sources {ig[:, j].tolist()}, whose weights {wg[:, j].tolist()} ask "
                                 f"for {want[:, j].tolist()}")
    return ids.view(bs, H, W)

def hand_loss(kind, red, pred, y, ym, idx, wgt, cut):
    "The mixing loss by hand: integer labels, the weights' lerp of the per-source losses, per sample; cut masks and mixed float targets scored plainly"
    per = KINDS[kind][3]
    with torch.no_grad():
        if idx is None: l = per(pred, y)
        elif cut or y.is_floating_point(): l = per(pred, ym) # the loss of the target as cut or mixed
        else:
            ls = [per(pred, y[i]) for i in idx]
            l = sum(w.view(-1, *[1]*(t.ndim-1))*t for w,t in zip(wgt, ls))
    return l

def close(got, want, what, tol=1e-5):
    "`got` and `want` agree to `tol`, relative to the size of `want`"
    got,want = got.detach().double(),want.double()
    if got.shape==want.shape and torch.allclose(got, want, rtol=tol, atol=tol): return
    raise AssertionError(f"{what}: got {got.flatten()[:6].tolist()} {tuple(got.shape)}, "
                         f"want {want.flatten()[:6].tolist()} {tuple(want.shape)}")

def run_batch(learn, cb, lf, kind, red, mask_channel, rng):
    "One training step as fastai takes it, and every invariant of it"
    x,y,pred = make_batch(rng, kind, mask_channel)
    bs = x.shape[0]
    learn.xb,learn.yb = (x.clone(),),(y.clone(),)
    learn.pct_train = rng.random()
    cb.before_batch()
    xm,(ym,) = learn.xb,learn.yb
    (xm,) = xm
    assert isinstance(learn.loss_func, MixLoss) and learn.loss_func.loss_func is lf, f"loss in use: {learn.loss_func!r}"
    assert ym.shape==y.shape and ym.dtype==y.dtype, f"targets became {ym.dtype} {tuple(ym.shape)}"
    idx,wgt = cb.idx,cb.wgt
    cut = False
    if idx is None: # not mixed this batch (p < 1): all left alone
        assert wgt is None
        assert torch.equal(xm, x) and torch.equal(ym, y), "a batch not mixed was changed"
        srcs = cb.source_targets()
        assert len(srcs)==1 and torch.equal(srcs[0][0], y)
    else:
        mems = members_of(cb, bs)
        check_layout(cb, mems, bs)
        ids = check_pixels(x, xm, idx, wgt, mems)
        cut = bool(cb.cut[0])
        region = all(m is not None and m.region for m in mems)
        assert cut==(kind=='mask' and region), f"mask cut: {cut}, but kind {kind} and members {set(map(type, mems))}"
        if cut: # pixel by pixel, the mask's class is that of the sample the input's pixel came from
            assert torch.equal(ym.view(bs, -1), y.view(bs, -1)[:, 0][ids.long().flatten(1)]), "the mask is not cut like the image"
        elif y.is_floating_point(): # float targets are mixed by the weights; rows of probabilities still sum to 1
            close(ym, sum(w.view(-1, *[1]*(y.ndim-1))*y[i] for i,w in zip(idx, wgt)), 'mixed targets', 1e-6)
            if kind in ('soft', 'soft_mixed'): close(ym.sum(1), torch.ones(bs), 'mixed targets row sums', 1e-6)
        else: assert torch.equal(ym, y), f"{kind} targets changed, but the loss mixes"
        srcs = cb.source_targets() # the targets of each source, as the training metrics see them
        assert len(srcs)==idx.shape[0]
        for s,i in zip(srcs, idx): assert torch.equal(s[0], ym if cut else y[i]), "source_targets"
    # the loss, as the learner computes it, and (a batch in four: it costs a tenth of the run) its gradient
    grad = rng.random()<.25
    pred.requires_grad_(grad)
    out = learn.loss_func(pred, *learn.yb)
    hand = hand_loss(kind, red, pred, y, ym, idx, wgt, cut)
    if red=='none': # per item, in the loss's own order: compare each sample's total
        assert out.numel()==hand.numel(), f"reduction='none' gave {tuple(out.shape)}, want {hand.numel()} values"
        close(out.reshape(bs, -1).sum(1), hand.reshape(bs, -1).sum(1), "loss per sample (reduction='none')")
        out = out.sum()
    else: close(out, hand.sum() if red=='sum' else hand.mean(), f'loss (reduction={red!r})')
    assert getattr(lf, 'reduction', red)==red, f"the loss's reduction was left at {lf.reduction!r}"
    if grad:
        out.backward()
        assert pred.grad is not None and pred.grad.shape==pred.shape, "no gradient"

# ---------------------------------------------------------------- the soak

def new_learner(cb, lf):
    learn = Learner(None, nn.Identity(), loss_func=lf, cbs=cb)
    learn.epoch,learn.training = 0,True
    return learn

def plan(member, n):
    "The run: fits of 1 to 16 batches, each with a configuration, a target kind, a loss and its reduction"
    rng,out,b = random.Random(f'{BASE_SEED}-{member}'),[],0
    cfgs = CONFIGS[member]
    while b<n:
        ci = rng.randrange(len(cfgs))
        kinds = [k for k in KINDS if k!='mask' or cfgs[ci][2]]
        kind = rng.choice(kinds)
        red = rng.choice(KINDS[kind][2])
        flat = KINDS[kind][0] is not None and rng.random()<.4 # fastai's flattened loss, or PyTorch's
        ln = min(rng.randint(1, 16), n-b)
        out.append((b, ln, ci, kind, red, flat, flat and rng.random()<.3)) # masks with a channel axis: fastai's loss
        b += ln
    return out

def seed_of(member, b): return (BASE_SEED*100 + MEMBERS.index(member))*10_000 + b

def one_fit(learn, cb, member, fit):
    "Batches `start` to `start+n` of the plan on `learn`: before_fit, before_train, the batches, after_train, after_fit"
    start,n,ci,kind,red,flat,mask_channel = fit
    lf = make_loss(kind, flat, red)
    learn.loss_func = lf
    cb.before_fit(); cb.before_train()
    for b in range(start, start+n):
        seed = seed_of(member, b)
        torch.default_generator.manual_seed(seed) # the mixers draw from it; `set_seed` would queue CUDA seeding too
        rng = random.Random(seed)
        try: run_batch(learn, cb, lf, kind, red, mask_channel, rng)
        except Exception as e:
            x,y,_ = make_batch(random.Random(seed), kind, mask_channel)
            raise AssertionError(
                f"{member} [{CONFIGS[member][ci][0]}] batch {b}: x {tuple(x.shape)}, target kind {kind!r} "
                f"{y.dtype} {tuple(y.shape)}, loss {lf!r} reduction {red!r}, seed {seed}\n  {type(e).__name__}: {e}\n"
                f"  rerun alone: cd tests; python -c \"import test_soak as t; t.replay({member!r}, {ci}, {kind!r}, "
                f"{red!r}, {flat}, {mask_channel}, {seed})\"") from e
    cb.after_train(); cb.after_fit()
    assert learn.loss_func is lf, f"loss not given back after the fit: {learn.loss_func!r}"

def replay(member, ci, kind, red, flat, mask_channel, seed):
    "Rerun one batch of the soak alone, with a fresh learner (the mixers carry no randomness across batches)"
    cb,lf = CONFIGS[member][ci][1](),make_loss(kind, flat, red)
    learn = new_learner(cb, lf)
    cb.before_fit(); cb.before_train()
    torch.default_generator.manual_seed(seed)
    run_batch(learn, cb, lf, kind, red, mask_channel, random.Random(seed))

def n_tensors(objs): return sum(issubclass(type(o), torch.Tensor) for o in objs) # not isinstance: no lazy `__class__`

def rss():
    "Resident memory in bytes (Linux, after giving freed heap back to the system), None elsewhere"
    try:
        ctypes.CDLL('libc.so.6').malloc_trim(0) # glibc keeps freed memory mapped: resident memory would be noise
        with open('/proc/self/statm') as f: return int(f.read().split()[1])*os.sysconf('SC_PAGE_SIZE')
    except (OSError, ValueError, AttributeError): return None

def measure():
    gc.collect()
    traced = tracemalloc.get_traced_memory()[0] if tracemalloc.is_tracing() else 0 # before the list below
    objs = gc.get_objects()
    res = dict(objects=len(objs), tensors=n_tensors(objs), rss=rss(), traced=traced)
    del objs
    return res

def settle(learners, lf):
    """One fixed batch through every learner (through every member of a `MixChoice`, each forced in turn): what the
    callbacks keep of their last batch is then the same at each measure, and Python's type cache is emptied"""
    # FMix's band caches hold up to 8 sizes (bounded: the live-tensor check sees it if not). Emptied here, so each measure
    # sees the settle batch's one size, like for like, and not which 8 random sizes the last fits happened to leave
    fourier_band.cache_clear(); _band_on.cache_clear()
    for learn,cb in learners:
        choice = isinstance(cb, MixChoice)
        for j in range(len(cb.mixers) if choice else 1):
            if choice: saved,cb.weights,cb.p = (cb.weights,cb.p),F.one_hot(torch.tensor(j), len(cb.mixers)).float(),1.
            learn.loss_func = lf # the same loss each time: a new one would be new memory
            cb.before_fit(); cb.before_train()
            torch.default_generator.manual_seed(SETTLE_SEED)
            run_batch(learn, cb, lf, 'label', 'mean', False, random.Random(SETTLE_SEED))
            cb.after_train(); cb.after_fit()
            if choice: cb.weights,cb.p = saved
    # Python's type cache keeps (strong references to) the names of the last 4,096 attribute lookups. fastai's flattened
    # losses churn it with short strings (CrossEntropyLossFlat alone on random shapes: 70 KB "growth" over 5,000 calls
    # when tracemalloc starts late, as traced names replace untraced ones; none once the cache is emptied)
    sys._clear_type_cache()
    gc.collect()

# Growth allowed. Live objects, live tensors (gc) and resident memory are measured from the end of the warm-up to the end
# (about 1,900 batches); tracemalloc over the last quarter (500 batches: it slows Python down by two thirds). `settle`
# before each measure makes the noise nil: -1 to 0 objects, 0 tensors, under 1 MiB resident, under 2 KiB traced (a
# constant, whatever the length of the window).
# - live objects and tensors: a container or a tensor kept per batch is 1,900 more;
# - tracemalloc sees Python's allocations, including what gc does not track (a float appended to a list each batch is
#   32 bytes), but not tensor storage: anything kept per batch is 16 KiB or more;
# - resident memory sees tensor storage (freed heap given back first): one input kept per batch is 80 KB on average,
#   150 MB in all.
MAX_OBJECTS,MAX_TENSORS,MAX_TRACED,MAX_RSS = 20,2,8*2**10,32*2**20
SETTLE_SEED = 12345

@pytest.mark.parametrize('member', MEMBERS)
def test_soak(member):
    # one long-lived learner and callback per configuration, as in a long training run; all made before the baseline
    learners = [(new_learner(cb, CrossEntropyLossFlat()), cb) for cb in (mk() for _,mk,_ in CONFIGS[member])]
    settle_lf = CrossEntropyLossFlat()
    fits = plan(member, N_BATCHES)
    if N_BATCHES>=1000: # every configuration, and every target kind, is exercised
        assert {f[2] for f in fits}=={*range(len(CONFIGS[member]))}
        assert {f[3] for f in fits}==set(KINDS)
    t0,base,mid,tracing = time.perf_counter(),None,None,tracemalloc.is_tracing()
    try:
        for fit in fits:
            start = fit[0]
            if base is None and start>=WARMUP: settle(learners, settle_lf); base,b0 = measure(),start
            if mid is None and start>=N_BATCHES*3//4:
                tracemalloc.start()
                settle(learners, settle_lf) # traced: the end's `settle` replaces what this one leaves, like for like
                snap = tracemalloc.take_snapshot() # kept to the end, so the growth below does not count it
                mid,b1 = tracemalloc.get_traced_memory()[0],start
            learn,cb = learners[fit[2]]
            one_fit(learn, cb, member, fit)
            del learn,cb
        settle(learners, settle_lf)
        end = measure()
        if mid is not None and end['traced']-mid>MAX_TRACED: # where it grew, for the failure's message
            growth = [d for d in tracemalloc.take_snapshot().compare_to(snap, 'lineno') if d.size_diff>0][:8]
    finally:
        if not tracing: tracemalloc.stop()
    dt = time.perf_counter()-t0
    if base is None or mid is None: pytest.skip(f"SOAK_BATCHES={N_BATCHES}: too few fits to measure memory")
    grew = {k: end[k]-base[k] for k in ('objects', 'tensors', 'rss') if end[k] is not None}
    grew['traced'] = end['traced']-mid
    print(f"\n{member}: {N_BATCHES} batches in {dt:.1f}s; growth over the last {N_BATCHES-b0} batches: "
          f"{grew['objects']} objects, {grew['tensors']} tensors, {grew.get('rss', 0)/2**20:.2f} MiB resident; "
          f"over the last {N_BATCHES-b1}: {grew['traced']} bytes traced")
    assert grew['objects']<=MAX_OBJECTS, f"{member}: {grew['objects']} more live objects after {N_BATCHES-b0} batches"
    assert grew['tensors']<=MAX_TENSORS, f"{member}: {grew['tensors']} more live tensors after {N_BATCHES-b0} batches"
    assert grew['traced']<=MAX_TRACED, (f"{member}: Python memory grew by {grew['traced']} bytes over {N_BATCHES-b1} batches, "
                                        "most at:\n" + '\n'.join(map(str, growth)))
    if 'rss' in grew: assert grew['rss']<=MAX_RSS, f"{member}: resident memory grew by {grew['rss']/2**20:.1f} MiB"

def test_fmix_caches_bounded():
    "`settle` empties FMix's band caches, so the soak cannot see them grow: here, batches of 20 sizes keep at most 8 each"
    fourier_band.cache_clear(); _band_on.cache_clear()
    cb = FMix()
    learn = new_learner(cb, CrossEntropyLossFlat())
    cb.before_fit(); cb.before_train()
    for s in range(8, 28):
        learn.xb,learn.yb = (torch.randn(4, 3, s, s+1),),(torch.randint(0, 10, (4,)),)
        cb.before_batch()
    assert fourier_band.cache_info().currsize==8 and _band_on.cache_info().currsize==8
    assert fourier_band.cache_info().misses>=20
    cb.after_train(); cb.after_fit()
