"""Mixing in place (issue 14): no new tensor the size of the batch per step, and the same pixels as mixing out of place.

Allocations are counted with PyTorch's profiler: with `profile_memory=True` it records every allocation of the CPU
allocator as a '[memory]' event with its size. A batch step may allocate small things (λ, boxes, masks of one channel,
boxes' patches); what is counted is each allocation at least as large as the batch itself. Each mixer runs on two
shapes: samples large enough for the CPU's sample-by-sample walk along the permutation's cycles, and small ones, mixed
from partners gathered into a buffer kept between batches."""
import pytest, torch
from fastai.basics import Learner, CrossEntropyLossFlat, set_seed, TensorCategory, Tensor
from fastai.vision.core import TensorImage, TensorMask
from fastai.torch_core import TensorMultiCategory
from torch.profiler import profile, ProfilerActivity
from fastai_cutmix.core import mixing_learner, MixHandler
from fastai_cutmix.all import MixUp, CutMix, Cutout, FMix, ResizeMix, RICAP, CutMixUp, MixChoice
from helpers import one_thread

pytestmark = pytest.mark.usefixtures('one_thread')

LOOP,BUFFER = (8, 3, 96, 96),(8, 3, 32, 32) # 27,648 elements per sample (>= loop_numel, 16,384), and 3,072
assert LOOP[1]*LOOP[2]*LOOP[3] >= MixHandler.loop_numel > BUFFER[1]*BUFFER[2]*BUFFER[3]

def big_allocations(f, nbytes:int)->list:
    "Sizes of the allocations of at least `nbytes` that `f()` makes, from the profiler's memory events"
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as p: f()
    return [e.nbytes() for e in p.profiler.kineto_results.events() if e.name()=='[memory]' and e.nbytes()>=nbytes]

def test_the_counter_counts():
    "The counter sees a copy of the batch, and nothing for work done in place: a test that can fail"
    x = torch.randn(LOOP)
    assert len(big_allocations(lambda: x.clone(), x.nbytes))==1
    assert len(big_allocations(lambda: x.index_select(0, torch.randperm(8)).lerp_(x, .3), x.nbytes))==1
    assert big_allocations(lambda: x.mul_(2), x.nbytes)==[]

def batch(shape, seed):
    "An image batch and its labels, typed as a DataBlock makes them"
    g = torch.Generator().manual_seed(seed)
    return TensorImage(torch.randn(shape, generator=g)),TensorCategory(torch.randint(0, 10, shape[:1], generator=g))

# mixer factories, and the most full-size allocations a step may make: none for MixUp and CutMix in any mode and for
# every member's batch mode (RICAP tiles the batch from a copy kept between batches, ResizeMix shrinks it into one)
LIMITS = {
    'MixUp()':                    (lambda: MixUp(), 0),
    'MixUp(per_sample=False)':    (lambda: MixUp(per_sample=False), 0),
    'CutMix()':                   (lambda: CutMix(), 0),
    'CutMix(per_sample=True)':    (lambda: CutMix(per_sample=True), 0),
    'Cutout()':                   (lambda: Cutout(), 0),
    'Cutout(per_sample=True)':    (lambda: Cutout(per_sample=True), 0),
    'FMix()':                     (lambda: FMix(), 0),
    'ResizeMix()':                (lambda: ResizeMix(), 0),
    'RICAP()':                    (lambda: RICAP(), 0),
    'RICAP(per_sample=True)':     (lambda: RICAP(per_sample=True), {LOOP: 0, BUFFER: 2}), # small samples: a new batch, gathered by a 32-bit index per pixel
    'CutMixUp()':                 (lambda: CutMixUp(), 0),
    'CutMixUp(per_sample=True)':  (lambda: CutMixUp(per_sample=True), 0),
}

@pytest.mark.parametrize('shape', [LOOP, BUFFER], ids=['loop', 'buffer'])
@pytest.mark.parametrize('name', list(LIMITS))
def test_no_full_size_temporaries(name, shape):
    "After the first batch of a shape (which may allocate the kept buffer), no step allocates more full-size tensors than its limit"
    make,limit = LIMITS[name]
    if isinstance(limit, dict): limit = limit[shape]
    cb = make()
    set_seed(0)
    learn = mixing_learner(cb, *batch(shape, 0))
    for s in range(1, 6): # several batches: CutMixUp chooses a member per batch
        x,y = batch(shape, s)
        learn.xb,learn.yb = (x,),(y,)
        got = big_allocations(cb.before_batch, x.nbytes)
        assert cb.idx is not None # it mixed
        assert len(got)<=limit, f"{name} on {shape}: {len(got)} allocations of the batch's size or more: {got}"

def mixed(make, x, y, seed, in_place, loop_numel=None):
    "The batch `make()` mixes from (`x`, `y`), in place or not; and the mixer"
    cb = make()
    cb.in_place = in_place
    if loop_numel is not None: cb.loop_numel = loop_numel
    if isinstance(cb, MixChoice):
        for m in cb.mixers: m.loop_numel = cb.loop_numel
    set_seed(seed)
    xm = mixing_learner(cb, x, y).xb[0]
    return xm,cb

ALL = {**{k: v[0] for k,v in LIMITS.items()}, 'FMix(per_sample=True)': lambda: FMix(per_sample=True),
       'ResizeMix(per_sample=True)': lambda: ResizeMix(per_sample=True),
       'MixChoice([MixUp(), CutMix(per_sample=True)], per_sample=True)':
           lambda: MixChoice([MixUp(), CutMix(per_sample=True)], per_sample=True),
       'MixChoice([MixUp(), CutMix()], per_sample=True)': lambda: MixChoice([MixUp(), CutMix()], per_sample=True)}

@pytest.mark.parametrize('path', ['loop', 'buffer'])
@pytest.mark.parametrize('name', list(ALL))
@pytest.mark.parametrize('seed', [0, 1, 2])
def test_in_place_mixes_as_out_of_place(name, path, seed):
    "Both in-place paths give the pixels of the out-of-place one, and `in_place=False` leaves the batch as it was"
    x,y = batch((6, 2, 9, 11), seed)
    keep = x.clone()
    want,c0 = mixed(ALL[name], x, y, seed, in_place=False)
    assert torch.equal(x, keep), "in_place=False changed the batch"
    got,c1 = mixed(ALL[name], x.clone(), y, seed, in_place=True, loop_numel=0 if path=='loop' else 2**62)
    assert torch.equal(c0.idx, c1.idx) and torch.equal(c0.wgt, c1.wgt) # the same draws
    # per-sample ResizeMix resamples large samples one at a time with `interpolate` and the batch with `grid_sample`: the
    # same coordinates and weights, equal up to float rounding
    tol = 1e-5 if name=='ResizeMix(per_sample=True)' else 1e-6
    torch.testing.assert_close(got.as_subclass(Tensor), want.as_subclass(Tensor), rtol=tol, atol=tol)

def test_in_place_changes_the_learners_batch_only():
    "In place means the learner's own batch: MixUp returns that tensor, blended, and the partners' buffer is kept"
    x,y = batch(BUFFER, 0)
    cb = MixUp()
    learn = mixing_learner(cb, x, y)
    assert learn.xb[0] is x and isinstance(learn.xb[0], TensorImage)
    buf = cb._bufs[(x.dtype, x.device)]
    learn.xb,learn.yb = batch(BUFFER, 1)[:1],(y,)
    cb.before_batch()
    assert cb._bufs[(x.dtype, x.device)] is buf # the same memory, batch after batch
    cb.after_fit()
    assert cb._bufs is None # freed when the fit ends

@pytest.mark.parametrize('path', ['loop', 'buffer'])
@pytest.mark.parametrize('seed', range(4))
def test_per_sample_choice_is_each_members_mix(path, seed):
    "CutMixUp(per_sample=True): each sample is exactly MixUp's blend or CutMix's paste, with its partner and share"
    bs,size = 16,(12, 10)
    x = torch.arange(bs).float().view(bs, 1, 1, 1).expand(bs, 2, *size).contiguous() # pixels hold their sample's number
    x = x + torch.rand(bs, 1, *size)*1e-3 # and differ from pixel to pixel, the same in both channels
    cb = CutMixUp(per_sample=True)
    for m in cb.mixers: m.loop_numel = 0 if path=='loop' else 2**62
    set_seed(seed)
    xm = mixing_learner(cb, TensorImage(x.clone()), TensorCategory(torch.arange(bs))).xb[0].as_subclass(Tensor)
    idx,wgt = cb.idx,cb.wgt
    assert set(cb.choice.tolist())=={0, 1} or seed>0 # both members drawn (seed 0 draws both)
    for i in range(bs):
        j,lam = int(idx[1, i]),float(wgt[0, i])
        if cb.choice[i]==0: # MixUp: λ·own + (1-λ)·partner, everywhere
            torch.testing.assert_close(xm[i], lam*x[i] + (1-lam)*x[j], rtol=0, atol=1e-5)
        else: # CutMix: each pixel its own or its partner's, the partner's share its weight
            own,theirs = (xm[i]==x[i]).all(0),(xm[i]==x[j]).all(0)
            assert (own | theirs).all()
            if j!=i: assert abs(float(theirs.float().mean()) - float(wgt[1, i]))<1e-6

def test_fit_with_in_place_mixers():
    "A real fit: every member trains on fashion_mnist batches with in-place mixing, and the data set's tensors stay as they were"
    from fastai_cutmix.data import fashion_mnist_dls, tiny_cnn
    dls = fashion_mnist_dls(bs=32, n_train=128, n_valid=64)
    first = dls.train_ds[0][0].clone()
    for make in (lambda: MixUp(), lambda: CutMix(), lambda: CutMixUp(per_sample=True), lambda: FMix(per_sample=True)):
        learn = Learner(dls, tiny_cnn(), loss_func=CrossEntropyLossFlat(), cbs=make())
        learn.fit(1, 1e-3)
        assert all(torch.isfinite(torch.tensor(v[0])) for v in learn.recorder.values)
    assert torch.equal(dls.train_ds[0][0], first)

@pytest.mark.parametrize('in_place', [True, False])
@pytest.mark.parametrize('name', list(ALL))
def test_mixed_batch_keeps_its_types(name, in_place):
    "The mixer runs on PyTorch's own dispatch (`_plain_ops`), yet the learner gets the batch back as fastai typed it"
    cb = ALL[name]()
    cb.in_place = in_place
    x = TensorImage(torch.randn(6, 2, 9, 11))
    # a mask where every member cuts regions (or keeps targets whole); otherwise one-hot float targets, mixed as tensors
    cuts = all(m.region or not m.mixes_targets for m in getattr(cb, 'mixers', [cb]))
    y = (TensorMask(torch.randint(0, 3, (6, 9, 11))) if cuts else
         TensorMultiCategory(torch.nn.functional.one_hot(torch.randint(0, 3, (6,)), 3).float()))
    set_seed(0)
    learn = mixing_learner(cb, x.clone(), y.clone(), loss_func=CrossEntropyLossFlat(axis=1))
    assert cb.idx is not None # it mixed
    assert type(learn.xb[0]) is TensorImage and type(learn.yb[0]) is type(y), (type(learn.xb[0]), type(learn.yb[0]))
    assert not torch.equal(learn.xb[0].as_subclass(Tensor), x.as_subclass(Tensor)) # and changed the pixels
