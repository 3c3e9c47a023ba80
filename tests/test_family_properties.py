"Property tests (hypothesis) for the rest of the family: FMix, ResizeMix, RICAP, Cutout, MixChoice and CutMixUp."
import pytest, torch
import torch.nn.functional as F
from hypothesis import given, settings, assume, HealthCheck, strategies as st
from fastai.losses import CrossEntropyLossFlat
from fastai.torch_core import set_seed
from fastai.callback.schedule import SchedLin
from fastai_cutmix.core import mixing_learner, MixLoss
from fastai_cutmix.mixup import MixUp
from fastai_cutmix.cutmix import CutMix, Cutout
from fastai_cutmix.fmix import FMix, fourier_mask
from fastai_cutmix.resizemix import ResizeMix, resize_into
from fastai_cutmix.ricap import RICAP
from fastai_cutmix.choice import MixChoice, CutMixUp

from helpers import SETTINGS, seeds, one_thread

@pytest.fixture(scope='module', autouse=True)
def _one_thread(one_thread): yield

# ---------------------------------------------------------------- helpers (copied from test_properties.py, extended)

MAX_SIDE = {1: 40, 2: 24, 3: 6}

@st.composite
def spatial_sizes(draw, nds=(1, 2, 3)):
    "Spatial size with a number of dims from `nds`, odd aspect ratios included (e.g. 1×12, 9×23)"
    nd = draw(st.sampled_from(nds))
    return tuple(draw(st.integers(1, MAX_SIDE[nd])) for _ in range(nd))

def ids_batch(bs, c, size):
    "Input in which every pixel of sample `i` holds the float `i`, and the matching integer mask"
    x = torch.arange(bs, dtype=torch.float32).view(bs, *[1]*(1+len(size))).expand(bs, c, *size).clone()
    m = torch.arange(bs).view(bs, *[1]*len(size)).expand(bs, *size).clone()
    return x, m

def coinciding_weight(idx, wgt, i, src):
    "Total weight of the sources of sample `i` that are sample `src` (a sample drawn as its own partner counts twice)"
    return wgt[:, i][idx[:, i]==src].double().sum().item()

def is_box(region):
    "Is the boolean `region` (spatial dims only) a box: the product of its projections on each axis?"
    nd = region.ndim
    proj = [region.any(dim=tuple(e for e in range(nd) if e!=d)) if nd>1 else region for d in range(nd)]
    outer = proj[0]
    for p in proj[1:]: outer = outer.unsqueeze(-1) & p
    return torch.equal(outer, region)

# name: (make the mixer from per_sample, spatial dims it handles)
METHODS = {
    'fmix':      (lambda ps: FMix(per_sample=ps), (1, 2, 3)),
    'resizemix': (lambda ps: ResizeMix(per_sample=ps), (1, 2, 3)),
    'ricap':     (lambda ps: RICAP(per_sample=ps), (2,)),
    'cutout':    (lambda ps: Cutout(per_sample=ps, fill=-1.), (1, 2, 3)),
    'choice':    (lambda ps: MixChoice([MixUp(), CutMix(per_sample=True), FMix(), RICAP()], per_sample=ps), (2,)),
    # members that all cut regions: masks can be cut even when choosing per sample
    'choice_region': (lambda ps: MixChoice([CutMix(per_sample=True), FMix(per_sample=True), RICAP(per_sample=True),
                                            ResizeMix()], per_sample=ps), (2,)),
    'cutmixup':  (lambda ps: CutMixUp(per_sample=ps), (1, 2, 3)),
}
CHOICES = ('choice', 'choice_region', 'cutmixup')
N_SOURCES = {'fmix': 2, 'resizemix': 2, 'ricap': 4, 'cutout': 1, 'cutmix': 2, 'mixup': 2}

def method_and_size(names=tuple(METHODS)):
    "A method's name and a spatial size it handles"
    return st.sampled_from(names).flatmap(lambda n: st.tuples(st.just(n), spatial_sizes(METHODS[n][1])))

def member_of(cb, i):
    "The mixer that mixed sample `i` (the callback itself, or the member a MixChoice picked for it)"
    if not isinstance(cb, MixChoice): return cb
    return cb.mixers[int(cb.choice[i])] if cb.per_sample else cb.cur

def check_layout(cb, name, bs):
    "`idx` and `wgt` have the documented layout: (k, bs) long in [0, bs) and float32 shares summing to 1"
    idx,wgt = cb.idx,cb.wgt
    assert idx is not None and wgt is not None
    if name in CHOICES:
        ks = [N_SOURCES[type(m).__name__.lower()] for m in cb.mixers]
        k = max(ks) if cb.per_sample else N_SOURCES[type(cb.cur).__name__.lower()]
    else: k = N_SOURCES[name]
    assert idx.shape==(k, bs) and idx.dtype==torch.long, (idx.shape, idx.dtype)
    assert wgt.shape==(k, bs) and wgt.dtype==torch.float32, (wgt.shape, wgt.dtype)
    assert ((idx>=0) & (idx<bs)).all()
    assert ((wgt>=0) & (wgt<=1)).all()
    torch.testing.assert_close(wgt.sum(0), torch.ones(bs), atol=1e-6, rtol=0)
    ar = torch.arange(bs)
    if name=='cutout':
        assert torch.equal(idx, ar[None]) and torch.equal(wgt, torch.ones(1, bs))
    elif name in ('fmix', 'resizemix'):
        assert torch.equal(idx[0], ar) and torch.equal(idx[1].sort().values, ar)
    elif name=='ricap':
        for row in idx: assert torch.equal(row.sort().values, ar) # four random permutations
    if name in ('fmix', 'resizemix', 'ricap') and not cb.per_sample:
        assert (wgt==wgt[:, :1]).all() # one draw for the whole batch
    if name in CHOICES and cb.per_sample:
        for i in range(bs): # sources a member does not have are padded with weight 0
            kk = N_SOURCES[type(member_of(cb, i)).__name__.lower()]
            assert (wgt[kk:, i]==0).all()

# ---------------------------------------------------------------- 1-3, 8: pixels, weights, masks

@settings(max_examples=150, **SETTINGS)
@given(ms=method_and_size(), bs=st.integers(1, 16), c=st.integers(1, 3), per_sample=st.booleans(),
       mask_channel=st.booleans(), seed=seeds)
def test_pixel_shares_are_weights(ms, bs, c, per_sample, mask_channel, seed):
    "Each sample's share of pixels from each source is that source's weight; masks are cut exactly like the image"
    name,size = ms
    set_seed(seed)
    x,m = ids_batch(bs, c, size)
    if mask_channel: m = m.unsqueeze(1)
    cb = METHODS[name][0](per_sample)
    # masks cannot be cut for some samples and blended for others
    masks = not (name in ('choice', 'cutmixup') and per_sample)
    y = m.clone() if masks else torch.randint(0, 3, (bs,))
    learn = mixing_learner(cb, x.clone(), y, loss_func=CrossEntropyLossFlat(axis=1) if masks else None)
    check_layout(cb, name, bs)
    idx,wgt = cb.idx,cb.wgt
    xm,ym = learn.xb[0],learn.yb[0]
    assert xm.shape==(bs, c, *size) and xm.dtype==torch.float32
    assert ym.shape==y.shape and ym.dtype==torch.long
    cut_any = False
    for i in range(bs):
        mem = member_of(cb, i)
        if isinstance(mem, MixUp): # blended: every pixel is the weighted sum of the sources' ids
            expect = (wgt[:, i].double()*idx[:, i].double()).sum().item()
            assert (xm[i]-expect).abs().max().item() <= 1e-4, (i, expect, xm[i].flatten()[:4])
            continue
        assert (xm[i]==xm[i, :1]).all() # the region spans all channels
        px = xm[i, 0]
        if isinstance(mem, ResizeMix): # resampling a constant image gives the constant, up to float rounding
            assert (px-px.round()).abs().max().item() <= 1e-4
            px = px.round()
        if name=='cutout':
            assert torch.isin(px, torch.tensor([float(i), -1.])).all()
            erased = px==-1.
            assert is_box(erased)
            if not per_sample and i>0: assert torch.equal(erased, (xm[0, 0]==-1.))
            continue
        assert torch.isin(px, idx[:, i].float()).all() # only pixels of the sample's sources
        for src in idx[:, i].unique().tolist():
            share = (px==src).double().mean().item()
            assert abs(share - coinciding_weight(idx, wgt, i, src)) <= 1e-6, (i, src, share, idx[:, i], wgt[:, i])
        cut_any = True
    if not masks: return
    if name=='cutout' or (name in CHOICES and not cb.region): assert torch.equal(ym, y) # masks untouched
    else:
        assert cut_any
        # the mask is cut (tiled, resized) exactly like the image: pixel by pixel the same source
        assert torch.equal(ym.reshape(bs, *size), xm[:, 0].round().long())
        # the loss of a cut mask is the plain loss on it
        pred = torch.randn(bs, bs, *size) # one class per sample id
        lf = learn.loss_func
        assert isinstance(lf, MixLoss)
        torch.testing.assert_close(lf(pred, ym), CrossEntropyLossFlat(axis=1)(pred, ym), atol=1e-5, rtol=1e-5)

@settings(max_examples=40, **SETTINGS)
@given(bs=st.integers(1, 16), per_sample=st.booleans(), seed=seeds)
def test_choice_per_sample_rejects_masks_with_mixed_members(bs, per_sample, seed):
    "Choosing per sample between a blending and a cutting member cannot handle masks; per batch it can"
    set_seed(seed)
    x,m = ids_batch(bs, 2, (5, 7))
    cb = CutMixUp(per_sample=per_sample)
    if per_sample:
        with pytest.raises(ValueError, match='per_sample=False'):
            mixing_learner(cb, x, m, loss_func=CrossEntropyLossFlat(axis=1))
    else: # per batch: the mask is cut when CutMix is drawn, left alone when MixUp is
        learn = mixing_learner(cb, x, m.clone(), loss_func=CrossEntropyLossFlat(axis=1))
        if isinstance(cb.cur, CutMix): assert torch.equal(learn.yb[0], learn.xb[0][:, 0].long())
        else: assert isinstance(cb.cur, MixUp) and torch.equal(learn.yb[0], m)

def code_batch(bs, c, size):
    "Input and mask that name each pixel: mask = sample*N + flat position; channel `ch` of the input is 4*mask + ch"
    N = 1
    for s in size: N *= s
    m = torch.arange(bs*N).view(bs, *size)
    x = torch.stack([(4*m+ch).float() for ch in range(c)], 1)
    return x, m, N

# methods that copy pixels as they are (no resampling): name: (make from per_sample, spatial dims)
COPIERS = {
    'fmix': METHODS['fmix'],
    'ricap': METHODS['ricap'],
    'choice_copy': (lambda ps: MixChoice([CutMix(per_sample=True), FMix(per_sample=True), RICAP(per_sample=True), CutMix()],
                                         per_sample=ps), (2,)),
}

@settings(max_examples=60, **SETTINGS)
@given(ms=st.sampled_from(list(COPIERS)).flatmap(lambda n: st.tuples(st.just(n), spatial_sizes(COPIERS[n][1]))), bs=st.integers(1, 16), c=st.integers(1, 3), per_sample=st.booleans(),
       mask_channel=st.booleans(), seed=seeds)
def test_cut_pixels_move_with_their_mask_labels(ms, bs, c, per_sample, mask_channel, seed):
    "With every pixel distinct: the mask takes, pixel by pixel, the label of the very pixel the image takes"
    name,size = ms
    set_seed(seed)
    x,m,N = code_batch(bs, c, size)
    if mask_channel: m = m.unsqueeze(1)
    cb = COPIERS[name][0](per_sample)
    learn = mixing_learner(cb, x.clone(), m.clone(), loss_func=CrossEntropyLossFlat(axis=1))
    xm,ym = learn.xb[0],learn.yb[0].reshape(bs, *size)
    for ch in range(c): assert torch.equal(xm[:, ch], (4*ym+ch).float()) # channels and mask move together
    src,pos = ym.flatten(1)//N,ym.flatten(1)%N
    for i in range(bs): assert torch.isin(src[i], cb.idx[:, i]).all()
    mem = [member_of(cb, i) for i in range(bs)]
    for i in range(bs):
        if isinstance(mem[i], RICAP): # each tile is a crop: one source, shifted by one offset, over a box
            H,W = size
            r,cc = torch.arange(H).view(H, 1).expand(H, W),torch.arange(W).view(1, W).expand(H, W)
            sr,sc = pos[i].view(H, W)//W,pos[i].view(H, W)%W
            keys = torch.stack([src[i].view(H, W), sr-r, sc-cc], -1).view(-1, 3).unique(dim=0)
            assert len(keys)<=4
            k = i if mem[i].per_sample else 0
            h,w = int(mem[i].h[k]),int(mem[i].w[k]) # the boundary point: the four tiles are the quadrants around it
            quads = [(r<h) & (cc<w), (r<h) & (cc>=w), (r>=h) & (cc<w), (r>=h) & (cc>=w)]
            for key in keys:
                region = (src[i].view(H, W)==key[0]) & (sr-r==key[1]) & (sc-cc==key[2])
                # within each tile a box; two tiles may share a key (one source, the same shift: with bs=1, say)
                for q in quads:
                    if (region & q).any(): assert is_box(region & q) and torch.equal(region & q, q)
        else: assert torch.equal(pos[i], torch.arange(N)) # FMix, CutMix: pixels stay put

@pytest.mark.parametrize('size', [(7, 9), (32, 32)]) # both gathered as a whole (samples under `loop_numel` elements)
def test_ricap_per_sample_tiles_are_the_drawn_crops(size):
    "A split per sample: tile k of sample i, image and mask alike, is the crop of sample perms[k, i] at (oy, ox), of the tile's size"
    H,W = size
    bs = 6
    set_seed(1)
    x,m = torch.randn(bs, 3, H, W),torch.randint(0, 5, (bs, H, W))
    cb = RICAP(per_sample=True)
    learn = mixing_learner(cb, x.clone(), m.clone(), loss_func=CrossEntropyLossFlat(axis=1))
    xm,ym = learn.xb[0],learn.yb[0]
    for i in range(bs):
        h,w = int(cb.h[i]),int(cb.w[i])
        for k,(y0,x0,th,tw) in enumerate([(0, 0, h, w), (0, w, h, W-w), (h, 0, H-h, w), (h, w, H-h, W-w)]):
            j,oy,ox = int(cb.perms[k, i]),int(cb.oy[k, i]),int(cb.ox[k, i])
            assert torch.equal(xm[i, :, y0:y0+th, x0:x0+tw], x[j, :, oy:oy+th, ox:ox+tw]), (i, k)
            assert torch.equal(ym[i, y0:y0+th, x0:x0+tw], m[j, oy:oy+th, ox:ox+tw]), (i, k)
        torch.testing.assert_close(cb.wgt[:, i], torch.tensor([h*w, h*(W-w), (H-h)*w, (H-h)*(W-w)])/(H*W))

@pytest.mark.parametrize('per_sample', [True, False]) # False once resized masks with floor(p*in/out): shifted
@settings(max_examples=40, **SETTINGS)
@given(bs=st.integers(1, 8), size=spatial_sizes(), axis=st.integers(0, 2), seed=seeds)
def test_resizemix_masks_aligned_with_images(per_sample, bs, size, axis, seed):
    "On a ramp, each mask pixel in the box is the nearest source label to where the image was sampled: within .5"
    axis = axis % len(size)
    shape = [1]*len(size); shape[axis] = size[axis]
    ramp = torch.arange(size[axis]).view(shape).expand(size)
    x = ramp.float().expand(bs, 1, *size).clone()
    m = ramp.expand(bs, *size).clone()
    set_seed(seed)
    cb = ResizeMix(per_sample=per_sample)
    learn = mixing_learner(cb, x, m, loss_func=CrossEntropyLossFlat(axis=1))
    diff = (learn.yb[0].float()-learn.xb[0][:, 0]).abs().max().item()
    assert diff <= .5+1e-4, (size, axis, cb.lo, cb.side, diff)

def test_resizemix_batch_box_mask_on_a_ramp():
    "The concrete case: a 16-wide ramp shrunk into a 4-wide box"
    x = torch.arange(16.).view(1, 1, 1, 16).expand(2, 1, 4, 16).clone()
    m = torch.arange(16).view(1, 1, 16).expand(2, 4, 16).clone()
    set_seed(3)
    cb = ResizeMix(scale=(.25, .25), per_sample=False)
    learn = mixing_learner(cb, x, m, loss_func=CrossEntropyLossFlat(axis=1))
    assert cb.side[0].tolist()==[1, 4]
    r,a = cb.lo[0].tolist() # the box's one row, and its first column
    torch.testing.assert_close(learn.xb[0][0, 0, r, a:a+4], torch.tensor([1.5, 5.5, 9.5, 13.5]))
    # got [0, 4, 8, 12]: the labels of the pixels 1.5 pixels to the left of where the image was sampled
    assert torch.equal(learn.yb[0][0, r, a:a+4], torch.tensor([2, 6, 10, 14])) # nearest to 1.5, 5.5, ...

REGION = ('fmix', 'resizemix', 'ricap', 'cutout', 'choice_region')

@settings(max_examples=60, **SETTINGS)
@given(ms=method_and_size(REGION), bs=st.integers(1, 16), c=st.integers(1, 3), per_sample=st.booleans(), seed=seeds)
def test_uint8_inputs_keep_dtype(ms, bs, c, per_sample, seed):
    "Integer images stay uint8 and are cut exactly as float ones (ResizeMix: nearest vs. bilinear of constants)"
    name,size = ms
    x,_ = ids_batch(bs, c, size)
    x = x*10+5 # away from Cutout's fill and from 0
    mk = lambda ps: Cutout(per_sample=ps, fill=1.) if name=='cutout' else METHODS[name][0](ps)
    outs = []
    for t in (x, x.to(torch.uint8)):
        set_seed(seed)
        cb = mk(per_sample)
        learn = mixing_learner(cb, t.clone(), torch.randint(0, 3, (bs,)))
        outs.append((learn.xb[0], cb.idx, cb.wgt))
    (xf,i0,w0),(xu,i1,w1) = outs
    assert xu.dtype==torch.uint8 and xu.shape==x.shape
    assert xf.dtype==torch.float32 and xf.shape==x.shape
    assert torch.equal(i0, i1) and torch.equal(w0, w1)
    assert torch.equal(xu.float(), xf.round())

# ---------------------------------------------------------------- 4: the loss

@settings(max_examples=80, **SETTINGS)
@given(ms=method_and_size(), bs=st.integers(1, 16), k=st.integers(2, 6), per_sample=st.booleans(), seed=seeds)
def test_loss_is_weighted_per_sample(ms, bs, k, per_sample, seed):
    "Mixing loss = mean over samples of sum_j wgt[j,i]*CE(pred[i], y[idx[j,i]]); integer targets are left alone"
    name,size = ms
    set_seed(seed)
    x = torch.randn(bs, 2, *size)
    y = torch.randint(0, k, (bs,))
    cb = METHODS[name][0](per_sample)
    learn = mixing_learner(cb, x, y.clone())
    check_layout(cb, name, bs)
    assert isinstance(learn.loss_func, MixLoss)
    assert torch.equal(learn.yb[0], y)
    pred = torch.randn(bs, k)
    idx,wgt = cb.idx,cb.wgt
    per = torch.stack([F.cross_entropy(pred, y[i], reduction='none') for i in idx]) # (k, bs)
    expect = (wgt*per).sum(0).mean()
    torch.testing.assert_close(learn.loss_func(pred, *learn.yb), expect, rtol=1e-5, atol=1e-6)
    # the sources as the metrics see them
    srcs = cb.source_targets()
    assert len(srcs)==idx.shape[0]
    for s,i in zip(srcs, idx): assert torch.equal(s[0], y[i])

# ---------------------------------------------------------------- 5: targets mixed themselves

def soft_ce(p, t):
    "A loss without a `reduction` argument or attribute: mixing must mix its float targets"
    return -(t*F.log_softmax(p, 1)).sum(1).mean()

@settings(max_examples=60, **SETTINGS)
@given(ms=method_and_size(), bs=st.integers(1, 16), k=st.integers(2, 7), per_sample=st.booleans(),
       soft=st.booleans(), seed=seeds)
def test_float_targets_are_mixed_when_loss_cannot_skip_reduction(ms, bs, k, per_sample, soft, seed):
    "One-hot or soft targets are mixed by the weights; each row still sums to 1; the loss is the loss on them"
    name,size = ms
    assume(size!=(k,)) # a (bs, k) target would be laid out like a 1-D input of length k: a mask
    set_seed(seed)
    x = torch.randn(bs, 2, *size)
    y = torch.rand(bs, k).softmax(-1) if soft else F.one_hot(torch.randint(0, k, (bs,)), k).float()
    cb = METHODS[name][0](per_sample)
    learn = mixing_learner(cb, x, y.clone(), loss_func=soft_ce)
    check_layout(cb, name, bs)
    idx,wgt = cb.idx,cb.wgt
    ym = learn.yb[0]
    assert ym.shape==(bs, k) and ym.dtype==torch.float32
    expect = sum(w.view(-1, 1)*y[i] for i,w in zip(idx, wgt))
    torch.testing.assert_close(ym, expect, atol=1e-6, rtol=0)
    torch.testing.assert_close(ym.sum(1), torch.ones(bs), atol=1e-5, rtol=0)
    pred = torch.randn(bs, k)
    torch.testing.assert_close(learn.loss_func(pred, *learn.yb), soft_ce(pred, expect), atol=1e-5, rtol=1e-5)

# ---------------------------------------------------------------- 6: the helpers

@settings(max_examples=60, **SETTINGS)
@given(n=st.integers(1, 16), size=spatial_sizes(), decay_power=st.sampled_from([1., 2., 3., 5.]), seed=seeds)
def test_fourier_mask_share(n, size, decay_power, seed):
    "round((1-λ)·N) pixels are True; the returned keep is the False share, within 1/(2N) of λ"
    set_seed(seed)
    lam = torch.rand(n)
    lam[0] = float(torch.randint(0, 2, ()).item()) # the ends included
    m,keep = fourier_mask(lam, size, decay_power)
    N = 1
    for s in size: N *= s
    assert m.shape==(n, *size) and m.dtype==torch.bool
    assert keep.shape==(n,) and keep.dtype==torch.float32
    n_true = m.flatten(1).sum(1)
    assert ((n_true - (1-lam.double())*N).abs() <= .5+1e-4).all() # round((1-λ)·N), up to float32 ties
    false_share = (~m).flatten(1).double().mean(1)
    torch.testing.assert_close(keep.double(), false_share, atol=1e-6, rtol=0)
    assert ((keep.double()-lam.double()).abs() <= .5/N+1e-6).all()

@settings(max_examples=60, **SETTINGS)
@given(bs=st.integers(1, 6), c=st.integers(1, 3), size=spatial_sizes(), ints=st.booleans(), seed=seeds)
def test_resize_into_full_box_is_identity(bs, c, size, ints, seed):
    "A box covering the whole input resamples it onto itself, for signals, images and volumes, float or integer"
    set_seed(seed)
    t = torch.randint(0, 50, (bs, *size)) if ints else torch.randn(bs, c, *size)
    lo = torch.zeros(bs, len(size), dtype=torch.long)
    side = torch.tensor([list(size)]*bs)
    r = resize_into(t, lo, side, size)
    assert r.shape==t.shape and r.dtype==t.dtype
    if ints: assert torch.equal(r, t)
    else: torch.testing.assert_close(r, t, atol=1e-5, rtol=1e-5)

# ---------------------------------------------------------------- 7: schedules

SCHED_MAKERS = {
    'fmix': lambda a, ps: FMix(alpha=a, per_sample=ps),
    'ricap': lambda a, ps: RICAP(alpha=a, per_sample=ps),
    'cutout': lambda a, ps: Cutout(alpha=a, per_sample=ps),
    'choice': lambda a, ps: MixChoice([MixUp(alpha=a), CutMix(alpha=a, per_sample=True), FMix(alpha=a), RICAP(alpha=a)],
                                      per_sample=ps),
    'cutmixup': lambda a, ps: CutMixUp(mixup_alpha=a, cutmix_alpha=a, per_sample=ps),
}

@pytest.mark.parametrize('name', list(SCHED_MAKERS))
@settings(max_examples=15, **SETTINGS)
@given(bs=st.integers(1, 12), per_sample=st.booleans(), seed=seeds)
def test_alpha_schedules(name, bs, per_sample, seed):
    "alpha=SchedLin(1., 0.): mixing at .5 with alpha .5; a schedule at 0 and the end of training leave the batch alone"
    x = torch.randn(bs, 2, 6, 7)
    y = torch.randint(0, 3, (bs,))
    mk = SCHED_MAKERS[name]
    members = lambda cb: [cb.cur] if not cb.per_sample else cb.mixers
    # halfway: mixed, alpha .5
    set_seed(seed)
    cb = mk(SchedLin(1., 0.), per_sample)
    mixing_learner(cb, x.clone(), y, pct_train=.5)
    assert cb.idx is not None
    check_layout(cb, name, bs)
    if name in CHOICES:
        for m in members(cb): assert m.cur_alpha==.5 and m.idx is not None
    else: assert cb.cur_alpha==.5
    # the end of training: not mixed
    set_seed(seed)
    cb = mk(SchedLin(1., 0.), per_sample)
    learn = mixing_learner(cb, x.clone(), y, pct_train=1.)
    assert cb.idx is None and cb.wgt is None
    assert torch.equal(learn.xb[0], x)
    pred = torch.randn(bs, 3)
    torch.testing.assert_close(learn.loss_func(pred, y), F.cross_entropy(pred, y))
    # a schedule at 0 turns mixing off while training goes on
    set_seed(seed)
    cb = mk(SchedLin(0., 1.), per_sample)
    learn = mixing_learner(cb, x.clone(), y, pct_train=0.)
    assert torch.equal(learn.xb[0], x)
    if name in CHOICES: # the choice still draws which member, which then declines: one source, itself, weight 1
        assert cb.idx is None or (torch.equal(cb.idx, torch.arange(bs)[None]) and torch.equal(cb.wgt, torch.ones(1, bs)))
        for m in cb.mixers: assert m.idx is None
    else: assert cb.idx is None
    torch.testing.assert_close(learn.loss_func(pred, y), F.cross_entropy(pred, y))

def test_resizemix_has_no_alpha():
    "ResizeMix's boxes come from `scale`: alpha, scheduled or not, is refused"
    with pytest.raises(TypeError, match='not from `alpha`'): ResizeMix(alpha=SchedLin(1., 0.))
    with pytest.raises(TypeError, match='not from `alpha`'): ResizeMix(alpha=1.)
    set_seed(0)
    cb = ResizeMix()
    mixing_learner(cb, torch.randn(4, 2, 6, 7), torch.randint(0, 3, (4,)), pct_train=.5)
    assert cb.idx is not None # mixes without one

@pytest.mark.parametrize('tau', [.2, .7]) # a box whose sides add up to 128 or less (rows first), and a larger one (torch's kernel)
@pytest.mark.parametrize('in_place', [True, False])
def test_resizemix_batch_box_is_the_interpolated_partner(tau, in_place):
    "One box for the batch, on the CPU: inside it each sample holds its partner as `F.interpolate` shrinks it, outside its own pixels"
    x = torch.randn(5, 3, 96, 96)
    cb = ResizeMix(scale=(tau, tau))
    cb.in_place = in_place
    set_seed(1)
    got = mixing_learner(cb, x.clone(), torch.arange(5)).xb[0].as_subclass(torch.Tensor)
    (y0,x0),(h,w) = cb.lo[0].tolist(),cb.side[0].tolist()
    assert (h,w)==(round(tau*96),)*2 and (sum((h,w))<=128)==(tau<.5)
    want = x.clone()
    want[..., y0:y0+h, x0:x0+w] = F.interpolate(x[cb.perm], size=(h, w), mode='bilinear', align_corners=False)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert not torch.equal(got, x)
