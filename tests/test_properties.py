"Property tests (hypothesis): what CutMix and MixUp do to inputs, masks, targets and the loss, for random shapes and seeds."
import math
import pytest, torch
import torch.nn as nn, torch.nn.functional as F
from hypothesis import given, settings, assume, HealthCheck, strategies as st
from fastai.losses import (CrossEntropyLossFlat, LabelSmoothingCrossEntropyFlat, FocalLossFlat,
                           BCEWithLogitsLossFlat, MSELossFlat)
from fastai.torch_core import set_seed
from fastai_cutmix.core import mixing_learner, MixLoss
from fastai_cutmix.mixup import MixUp
from fastai_cutmix.cutmix import CutMix

from helpers import SETTINGS, seeds, one_thread

@pytest.fixture(scope='module', autouse=True)
def _one_thread(one_thread): yield

@st.composite
def spatial_sizes(draw):
    "Spatial size of 1, 2 or 3 dims, odd aspect ratios included (e.g. 1×12)"
    nd = draw(st.integers(1, 3))
    hi = {1: 40, 2: 12, 3: 6}[nd]
    return tuple(draw(st.integers(1, hi)) for _ in range(nd))

@st.composite
def minmaxes(draw):
    "None, or a (min, max) pair of shares in [0, 1] with min <= max"
    if draw(st.booleans()): return None
    a,b = draw(st.floats(0, 1)), draw(st.floats(0, 1))
    return (min(a, b), max(a, b))

def ids_batch(bs, c, size):
    "Input in which every pixel of sample `i` holds the float `i`, and the matching integer mask"
    x = torch.arange(bs, dtype=torch.float32).view(bs, *[1]*(1+len(size))).expand(bs, c, *size).clone()
    m = torch.arange(bs).view(bs, *[1]*len(size)).expand(bs, *size).clone()
    return x, m

def check_pairs(cb, bs):
    "`idx` and `wgt` have the documented layout"
    idx,wgt = cb.idx,cb.wgt
    assert idx.shape==(2, bs) and idx.dtype==torch.long
    assert wgt.shape==(2, bs) and wgt.dtype==torch.float32
    assert torch.equal(idx[0], torch.arange(bs))
    assert torch.equal(idx[1], cb.perm)
    assert torch.equal(idx[1].sort().values, torch.arange(bs)) # a permutation
    assert ((wgt>=0) & (wgt<=1)).all()
    torch.testing.assert_close(wgt.sum(0), torch.ones(bs), atol=1e-6, rtol=0)

def coinciding_weight(idx, wgt, i, src):
    "Total weight of the sources of sample `i` that are sample `src` (a sample drawn as its own partner counts twice)"
    return wgt[:, i][idx[:, i]==src].double().sum().item()

# ---------------------------------------------------------------- CutMix

@settings(max_examples=150, **SETTINGS)
@given(bs=st.integers(1, 16), c=st.integers(1, 3), size=spatial_sizes(), per_sample=st.booleans(),
       minmax=minmaxes(), alpha=st.sampled_from([.2, 1., 3.]), mask_channel=st.booleans(), by_box=st.booleans(), seed=seeds)
def test_cutmix_pixel_shares_are_weights(bs, c, size, per_sample, minmax, alpha, mask_channel, by_box, seed):
    "Each sample's share of pixels from each source is that source's weight; the mask is cut with the same box"
    set_seed(seed)
    x,m = ids_batch(bs, c, size)
    if mask_channel: m = m.unsqueeze(1)
    cb = CutMix(alpha=alpha, per_sample=per_sample, minmax=minmax)
    cb.loop_numel = 0 if by_box else 2**62 # per_sample: box by box (large CPU inputs), or one masked kernel
    learn = mixing_learner(cb, x, m)
    check_pairs(cb, bs)
    idx,wgt = cb.idx,cb.wgt
    xm,ym = learn.xb[0],learn.yb[0]
    assert xm.shape==(bs, c, *size) and xm.dtype==torch.float32
    assert ym.shape==m.shape and ym.dtype==torch.long
    if not per_sample: assert (wgt==wgt[:, :1]).all() # one box, one λ for the whole batch
    foreign = []
    for i in range(bs):
        # the box spans all channels
        assert (xm[i]==xm[i, :1]).all()
        px = xm[i, 0]
        # only the sample's own pixels and its partner's
        assert torch.isin(px, idx[:, i].float()).all()
        for src in idx[:, i].unique().tolist():
            share = (px==src).double().mean().item()
            assert abs(share - coinciding_weight(idx, wgt, i, src)) <= 1e-6, (i, src, share, wgt[:, i])
        # the mask is cut exactly like the image: pixel by pixel the same source
        assert torch.equal(ym[i].reshape(size), px.long())
        if idx[1, i]!=i:
            box = px!=i
            foreign.append(box)
            # the pasted region is a box: the product of its projections on each axis
            proj = [box.any(dim=tuple(e for e in range(len(size)) if e!=d)) for d in range(len(size))]
            outer = proj[0]
            for p in proj[1:]: outer = outer.unsqueeze(-1) & p
            assert torch.equal(outer, box)
            if minmax is not None:
                sides = [int(p.sum()) for p in proj]
                if box.any():
                    for s,side in zip(size, sides):
                        assert s*minmax[0]-.5-1e-4 <= side <= s*minmax[1]+.5+1e-4, (size, sides, minmax)
                else: assert any(s*minmax[0] <= .5+1e-4 for s in size) # a side rounded to 0
    if not per_sample and foreign: # batch mode: the same box everywhere
        for f in foreign[1:]: assert torch.equal(f, foreign[0])

@settings(max_examples=60, **SETTINGS)
@given(bs=st.integers(1, 12), size=spatial_sizes(), per_sample=st.booleans(), by_box=st.booleans(), seed=seeds)
def test_cutmix_random_images_and_masks(bs, size, per_sample, by_box, seed):
    "With random pixels, each pixel of the mixed image and mask is that of the sample or of its partner, at the same place"
    set_seed(seed)
    x = torch.randn(bs, 2, *size)
    m = torch.randint(0, 5, (bs, *size))
    cb = CutMix(per_sample=per_sample)
    cb.loop_numel = 0 if by_box else 2**62
    learn = mixing_learner(cb, x.clone(), m.clone())
    xm,ym = learn.xb[0],learn.yb[0]
    perm = cb.perm
    own = (xm==x).all(1) # pixels left alone, over all channels
    theirs = (xm==x[perm]).all(1)
    assert (own | theirs).all()
    # the mask takes its partner's label exactly where the image takes its partner's pixels
    expect = torch.where(~own, m[perm], m)
    assert torch.equal(ym, expect)
    # share of pixels cut = partner's weight (ties between x and x[perm] are measure zero with randn)
    cut_share = (~own).double().flatten(1).mean(1)
    moved = perm!=torch.arange(bs)
    torch.testing.assert_close(cut_share[moved].float(), cb.wgt[1][moved], atol=1e-6, rtol=0)

# ---------------------------------------------------------------- MixUp

@st.composite
def shapes(draw):
    "A batch shape of 2 to 5 dims, batch size 1 included"
    nd = draw(st.integers(2, 5))
    return (draw(st.integers(1, 16)),) + tuple(draw(st.integers(1, 5)) for _ in range(nd-1))

@settings(max_examples=120, **SETTINGS)
@given(shape=shapes(), max_lam=st.booleans(), alpha=st.sampled_from([.1, .4, 1., 5.]), seed=seeds)
def test_mixup_blends_exactly(shape, max_lam, alpha, seed):
    "Mixed x is wgt[0]*x + wgt[1]*x[perm]; integer inputs and the targets are left alone"
    set_seed(seed)
    bs = shape[0]
    x = torch.randn(shape)*3
    ints = torch.randint(0, 10, (bs, 3))
    y = torch.randint(0, 4, (bs,))
    cb = MixUp(alpha=alpha, max_lam=max_lam)
    learn = mixing_learner(cb, (x.clone(), ints.clone()), y)
    check_pairs(cb, bs)
    idx,wgt = cb.idx,cb.wgt
    if max_lam: assert (wgt[0]>=.5).all()
    w = lambda j: wgt[j].view(-1, *[1]*(len(shape)-1))
    expect = w(0)*x[idx[0]] + w(1)*x[idx[1]]
    xm,im = learn.xb
    assert xm.shape==x.shape and xm.dtype==x.dtype
    torch.testing.assert_close(xm, expect, atol=1e-5, rtol=0)
    assert torch.equal(im, ints)
    assert torch.equal(learn.yb[0], y)
    if bs==1: torch.testing.assert_close(xm, x, atol=1e-6, rtol=0)

def test_mixup_max_lam_false_keeps_small_lambdas():
    "Without max_lam the sample's own weight is λ as drawn, below .5 about half the time"
    set_seed(0)
    cb = MixUp(alpha=.4, max_lam=False)
    mixing_learner(cb, torch.randn(512, 3))
    frac = (cb.wgt[0]<.5).float().mean().item()
    assert .4 < frac < .6

# ---------------------------------------------------------------- targets mixed themselves

def soft_ce(pred, y):
    "A loss without a `reduction` argument or attribute: mixing must mix its float targets"
    return -(y*F.log_softmax(pred, -1)).sum(-1).mean()

def make_mixer(kind):
    return {'mixup': lambda: MixUp(), 'cutmix': lambda: CutMix(), 'cutmix_ps': lambda: CutMix(per_sample=True)}[kind]()

@settings(max_examples=60, **SETTINGS)
@given(bs=st.integers(1, 16), k=st.integers(2, 7), kind=st.sampled_from(['mixup', 'cutmix', 'cutmix_ps']),
       soft=st.booleans(), seed=seeds)
def test_float_targets_are_mixed_when_loss_cannot_skip_reduction(bs, k, kind, soft, seed):
    "One-hot or soft targets are mixed by the weights; each mixed row still sums to 1; the loss is the loss on them"
    set_seed(seed)
    x = torch.randn(bs, 3, 5, 6)
    y = torch.rand(bs, k).softmax(-1) if soft else F.one_hot(torch.randint(0, k, (bs,)), k).float()
    cb = make_mixer(kind)
    learn = mixing_learner(cb, x, y.clone(), loss_func=soft_ce)
    idx,wgt = cb.idx,cb.wgt
    ym = learn.yb[0]
    assert ym.shape==(bs, k)
    expect = wgt[0].view(-1, 1)*y[idx[0]] + wgt[1].view(-1, 1)*y[idx[1]]
    torch.testing.assert_close(ym, expect, atol=1e-6, rtol=0)
    torch.testing.assert_close(ym.sum(1), torch.ones(bs), atol=1e-5, rtol=0)
    pred = torch.randn(bs, k)
    torch.testing.assert_close(learn.loss_func(pred, *learn.yb), soft_ce(pred, expect), atol=1e-5, rtol=1e-5)

# ---------------------------------------------------------------- the mixing loss

def _lbl(bs, k): return torch.randint(0, k, (bs,))
# name: (loss with reduction r, make targets, make predictions)
LOSSES = {
    'CrossEntropyLossFlat': (lambda r: CrossEntropyLossFlat(reduction=r), _lbl, lambda bs, k: torch.randn(bs, k)),
    'LabelSmoothingCrossEntropyFlat': (lambda r: LabelSmoothingCrossEntropyFlat(reduction=r), _lbl,
                                       lambda bs, k: torch.randn(bs, k)),
    'FocalLossFlat': (lambda r: FocalLossFlat(reduction=r), _lbl, lambda bs, k: torch.randn(bs, k)),
    'nn.CrossEntropyLoss': (lambda r: nn.CrossEntropyLoss(reduction=r), _lbl, lambda bs, k: torch.randn(bs, k)),
    'BCEWithLogitsLossFlat': (lambda r: BCEWithLogitsLossFlat(reduction=r),
                              lambda bs, k: (torch.rand(bs, k)<.4).float(), lambda bs, k: torch.randn(bs, k)),
    'MSELossFlat': (lambda r: MSELossFlat(reduction=r), lambda bs, k: torch.randn(bs, 2),
                    lambda bs, k: torch.randn(bs, 2)),
}

def mixed_losses(loss, y, pred, x, mixer, seed):
    "The mixing loss with reductions 'none', 'mean', 'sum' (each on the same draw), and the reference per-sample loss"
    outs,draws = {},[]
    for r in ('none', 'mean', 'sum'):
        set_seed(seed)
        cb = mixer()
        learn = mixing_learner(cb, x.clone(), y.clone(), loss_func=loss(r))
        assert isinstance(learn.loss_func, MixLoss)
        ym = sum(w.view(-1, *[1]*(y.ndim-1))*y[i] for i,w in zip(cb.idx, cb.wgt))
        # integer labels are untouched (their losses are mixed); float targets are mixed themselves
        if y.is_floating_point(): torch.testing.assert_close(learn.yb[0], ym, atol=1e-6, rtol=0)
        else: assert torch.equal(learn.yb[0], y)
        outs[r] = learn.loss_func(pred, *learn.yb)
        assert learn.loss_func.loss_func.reduction==r # reduction given back after the 'none' pass
        draws.append((cb.idx, cb.wgt))
    idx,wgt = draws[0]
    for i,w in draws[1:]: assert torch.equal(i, idx) and torch.equal(w, wgt) # same seed, same draw
    bs = y.shape[0]
    ref = loss('none')
    if y.is_floating_point(): return outs, ref(pred, ym).reshape(bs, -1) # the loss of the mixed target
    per = [ref(pred, y[i]).reshape(bs, -1) for i in idx]
    hand = wgt[0].view(-1, 1)*per[0] + wgt[1].view(-1, 1)*per[1] # (bs, values per sample)
    return outs, hand

@pytest.mark.parametrize('name', list(LOSSES))
@settings(max_examples=40, **SETTINGS)
@given(bs=st.integers(1, 16), k=st.integers(2, 6), kind=st.sampled_from(['mixup', 'cutmix', 'cutmix_ps']), seed=seeds)
def test_mixing_loss_is_weighted_sum_per_sample(name, bs, k, kind, seed):
    "Integer labels: mixing loss = sum_j wgt[j]*L_none(pred, y[idx[j]]), per sample, then the loss's own reduction; float targets: L(pred, mixed y)"
    loss,targ,preds = LOSSES[name]
    set_seed(seed)
    y,pred = targ(bs, k),preds(bs, k)
    x = torch.randn(bs, 3, 4, 5)
    outs,hand = mixed_losses(loss, y, pred, x, lambda: make_mixer(kind), seed)
    torch.testing.assert_close(outs['none'].reshape(bs, -1), hand, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(outs['mean'], hand.mean(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(outs['sum'], hand.sum(), atol=1e-4, rtol=1e-5)

@settings(max_examples=50, **SETTINGS)
@given(bs=st.integers(1, 12), k=st.integers(2, 5), h=st.integers(1, 6), w=st.integers(1, 6), seed=seeds)
def test_mixup_mask_loss_is_weighted_per_pixel_per_sample(bs, k, h, w, seed):
    "MixUp on masks: each pixel's loss is weighted by its sample's weights; 'mean' is over samples and pixels"
    set_seed(seed)
    y = torch.randint(0, k, (bs, h, w))
    pred = torch.randn(bs, k, h, w)
    x = torch.randn(bs, 3, h, w)
    outs,hand = mixed_losses(lambda r: CrossEntropyLossFlat(axis=1, reduction=r), y, pred, x, MixUp, seed)
    assert hand.shape==(bs, h*w)
    # independent per-pixel check of the reference
    logp = F.log_softmax(pred, 1)
    set_seed(seed); cb = MixUp(); mixing_learner(cb, x.clone(), y)
    per = [-logp.gather(1, y[i].unsqueeze(1)).squeeze(1) for i in cb.idx] # (bs, h, w) each
    manual = cb.wgt[0].view(-1, 1, 1)*per[0] + cb.wgt[1].view(-1, 1, 1)*per[1]
    # fastai's flat loss moves the class axis last by swapping it with the last axis: pixels come out (w, h)-ordered
    manual = manual.transpose(1, 2)
    torch.testing.assert_close(hand, manual.reshape(bs, -1), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(outs['none'].reshape(bs, -1), hand, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(outs['mean'], manual.mean(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(outs['sum'], manual.sum(), atol=1e-4, rtol=1e-5)

# ---------------------------------------------------------------- reproducibility

@settings(max_examples=40, **SETTINGS)
@given(kind=st.sampled_from(['mixup', 'cutmix', 'cutmix_ps', 'cutmix_minmax']), bs=st.integers(1, 16),
       size=spatial_sizes(), seed=seeds)
def test_same_seed_same_batch(kind, bs, size, seed):
    "set_seed(n) twice: identical mixed inputs, masks, idx and wgt"
    x = torch.randn(bs, 2, *size)
    m = torch.randint(0, 3, (bs, *size))
    mk = lambda: CutMix(minmax=(.2, .7)) if kind=='cutmix_minmax' else make_mixer(kind)
    res = []
    for _ in range(2):
        set_seed(seed)
        cb = mk()
        learn = mixing_learner(cb, x.clone(), m.clone())
        res.append((learn.xb[0], learn.yb[0], cb.idx, cb.wgt))
    for a,b in zip(*res): assert torch.equal(a, b)

# ---------------------------------------------------------------- low-precision inputs (CPU; CUDA in test_cuda.py)

@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
@pytest.mark.parametrize('kind', ['mixup', 'cutmix', 'cutmix_ps'])
def test_low_precision_inputs_cpu(dtype, kind):
    "Mixed x keeps its dtype, wgt stays float32, and the values are the weighted mix to the dtype's precision"
    set_seed(3)
    x = torch.randn(8, 3, 6, 5).to(dtype)
    cb = make_mixer(kind)
    learn = mixing_learner(cb, x.clone())
    xm = learn.xb[0]
    assert xm.dtype==dtype and cb.wgt.dtype==torch.float32
    if kind=='mixup':
        w = lambda j: cb.wgt[j].view(-1, 1, 1, 1)
        expect = (w(0)*x.float() + w(1)*x[cb.perm].float())
        torch.testing.assert_close(xm.float(), expect, atol=3e-2, rtol=2e-2)
    else:
        own = (xm==x).all(1)
        assert ((xm==x) | (xm==x[cb.perm])).all()
        moved = cb.perm!=torch.arange(8)
        torch.testing.assert_close((~own).float().flatten(1).mean(1)[moved], cb.wgt[1][moved], atol=1e-6, rtol=0)

# ---------------------------------------------------------------- the helpers

@settings(max_examples=60, **SETTINGS)
@given(n=st.integers(1, 32), size=spatial_sizes(), minmax=minmaxes(), seed=seeds)
def test_rand_box_mask_share(n, size, minmax, seed):
    "Boxes lie inside the input; unclipped ones have the side λ (or minmax) asks for; mask and share agree"
    from fastai_cutmix.cutmix import rand_box, box_mask, box_share
    set_seed(seed)
    lam = torch.rand(n)
    lo,hi = rand_box(lam, size, minmax)
    assert lo.shape==hi.shape==(n, len(size)) and lo.dtype==hi.dtype==torch.long
    sz = torch.tensor(size)
    assert ((0<=lo) & (lo<=hi) & (hi<=sz)).all()
    side = hi-lo
    for d,s in enumerate(size):
        if minmax is None:
            want = (s*(1-lam).pow(1/len(size))).round().long()
            inner = (lo[:, d]>0) & (hi[:, d]<s) # not clipped on either end
            assert (side[:, d]<=want).all()
            assert torch.equal(side[inner, d], want[inner])
        else: # never clipped: the side is s*u for some u in [min, max], rounded
            assert ((side[:, d]>=s*minmax[0]-.5-1e-4) & (side[:, d]<=s*minmax[1]+.5+1e-4)).all()
    m = box_mask(lo, hi, size)
    assert m.shape==(n, *size) and m.dtype==torch.bool
    share = box_share(lo, hi, size)
    assert share.dtype==torch.float32
    torch.testing.assert_close(m.flatten(1).double().mean(1).float(), share, atol=1e-6, rtol=0)
    for i in range(n): # the mask is exactly the box
        ref = torch.zeros(size, dtype=torch.bool)
        ref[tuple(slice(a, b) for a,b in zip(lo[i].tolist(), hi[i].tolist()))] = True
        assert torch.equal(m[i], ref)

@settings(max_examples=60, **SETTINGS)
@given(n=st.integers(1, 16), c=st.integers(1, 3), size=spatial_sizes(), fill=st.booleans(), seed=seeds)
def test_paste_boxes_is_the_masked_paste(n, c, size, fill, seed):
    "Box by box (CPU, large inputs) and one masked kernel (elsewhere) paste exactly the same pixels"
    from fastai_cutmix.cutmix import rand_box, box_mask, paste_boxes
    from fastai_cutmix.core import paste
    set_seed(seed)
    t = torch.randn(n, c, *size)
    lo,hi = rand_box(torch.rand(n), size)
    perm = torch.randperm(n)
    src = t.new_full((), -7.) if fill else t[perm]
    want = paste(t.clone(), box_mask(lo, hi, size), src)
    got = paste_boxes(t.clone(), lo.tolist(), hi.tolist(), -7. if fill else perm.tolist())
    assert torch.equal(got, want)
    m = torch.randint(0, 9, (n, *size)) # masks without a channel dimension too
    if not fill: assert torch.equal(paste_boxes(m.clone(), lo.tolist(), hi.tolist(), perm.tolist()),
                                    paste(m.clone(), box_mask(lo, hi, size), m[perm]))

@settings(max_examples=60, **SETTINGS)
@given(size=spatial_sizes(), minmax=minmaxes(), lam=st.floats(0, 1), seed=seeds)
def test_host_box(size, minmax, lam, seed):
    "The one box of batch mode, drawn in Python numbers: inside the input, with the side λ (or minmax) asks for"
    from fastai_cutmix.cutmix import host_box
    set_seed(seed)
    lo,hi = host_box(lam, size, minmax)
    assert all(type(v) is int for v in lo+hi) and len(lo)==len(hi)==len(size)
    for a,b,s in zip(lo, hi, size):
        assert 0<=a<=b<=s
        if minmax is None:
            want = math.floor(s*(1-lam)**(1/len(size)) + .5) # half a pixel rounds up (Python's round would go to even)
            assert b-a<=want and (a==0 or b==s or b-a==want) # clipped only at an edge
        else: assert s*minmax[0]-.5-1e-4 <= b-a <= s*minmax[1]+.5+1e-4

def test_host_box_spread():
    "host_box's corners and minmax sides cover their ranges uniformly, as rand_box's do"
    from fastai_cutmix.cutmix import host_box
    set_seed(0)
    boxes = [host_box(.5, (200, 100), (.2, .6)) for _ in range(3000)]
    lo,hi = torch.tensor([b[0] for b in boxes]),torch.tensor([b[1] for b in boxes])
    side = (hi-lo).float()/torch.tensor([200., 100.])
    torch.testing.assert_close(side.mean(0), torch.tensor([.4, .4]), atol=.01, rtol=0)
    assert (side.min(0).values<.21).all() and (side.max(0).values>.59).all()
    frac = lo[:, 0].float()/(200-(hi-lo)[:, 0]).clamp(min=1)
    assert frac.min()<.02 and frac.max()>.98 and abs(frac.mean().item()-.5)<.03
    centre = [host_box(.75, (100,), None) for _ in range(3000)] # side 25: the centre is uniform over [0, 100)
    mid = torch.tensor([(a+b)/2 for (a,),(b,) in centre])
    assert abs(mid.mean().item()-50)<2.5

def test_minmax_sides_spread_over_range():
    "With minmax, each side is drawn uniformly in [min, max] of the input's side"
    from fastai_cutmix.cutmix import rand_box
    set_seed(0)
    lo,hi = rand_box(torch.rand(4000), (200, 100), (.2, .6))
    side = (hi-lo).float()/torch.tensor([200., 100.])
    assert (side>=.2-1e-6).all() and (side<=.6+1e-6).all()
    torch.testing.assert_close(side.mean(0), torch.tensor([.4, .4]), atol=.01, rtol=0)
    assert (side.min(0).values<.21).all() and (side.max(0).values>.59).all()
    # the corner is uniform over the positions where the box fits
    frac = lo[:, 0].float()/(200-(hi-lo)[:, 0]).clamp(min=1)
    assert frac.min()<.02 and frac.max()>.98

@pytest.mark.parametrize('alpha', [.2, 1., 4.])
def test_sample_lam_is_beta(alpha):
    "sample_lam draws Beta(alpha, alpha): mean .5, variance 1/(4(2alpha+1))"
    from fastai_cutmix.core import sample_lam
    set_seed(0)
    lam = sample_lam(alpha, 20000)
    assert lam.shape==(20000,) and lam.dtype==torch.float32 and ((lam>=0) & (lam<=1)).all()
    assert abs(lam.mean().item()-.5) < .01
    assert abs(lam.var().item() - 1/(4*(2*alpha+1))) < .01

def test_weigh_and_reduce_loss():
    from fastai_cutmix.core import weigh, reduce_loss
    a,b = torch.arange(6.).view(3, 2),torch.ones(3, 2)
    wgt = torch.tensor([[1., .5, 0.], [0., .5, 1.]])
    torch.testing.assert_close(weigh([a, b], wgt), torch.tensor([[0., 1.], [1.5, 2.], [1., 1.]]))
    l = torch.tensor([[1., 2.], [3., 6.]])
    assert reduce_loss(l, 'mean')==3. and reduce_loss(l, 'sum')==12. and reduce_loss(l, 'batchmean')==6.
    assert reduce_loss(l, 'none') is l
    with pytest.raises(ValueError, match=r"reduction must be 'mean', 'sum', 'batchmean' or 'none', got 'avg'"):
        reduce_loss(l, 'avg')
