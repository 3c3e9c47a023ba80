"""bfloat16 on the CPU with every member of the family: real fits under autocast, and bf16 input batches.

How bf16 is switched on: fastai's `learn.to_bf16()` (2.8.7 and 2.8.12 alike) adds `MixedPrecision`, which enters
`torch.autocast('cuda', ...)` whatever the device; without CUDA PyTorch warns and disables it, so on a CPU it trains in
float32. The fits here therefore run inside `torch.autocast('cpu', dtype=torch.bfloat16)`, which makes the model's
convolutions and linear layers (and so its predictions) bf16; `test_to_bf16_on_cpu` checks what `to_bf16` does in the
installed fastai and runs the same checks through it should it ever autocast on the CPU.

What must hold: no dtype errors; finite losses; the mixing weights (`wgt`) float32; float targets (one-hot, mixed by
the mixer itself for a loss that cannot skip its reduction) float32; the mixed loss equal to the per-source losses,
computed in float32 from the same predictions and weighed by `wgt`, within bf16's precision; and bf16 inputs mixed
into bf16."""
import math, warnings
import pytest, torch
import torch.nn.functional as F
from fastai_cutmix.all import *
# the star import brings fastcore's `test`, `test_eq`, `test_close`...: pytest would collect them as tests
for _n in [n for n in dir() if n.startswith('test')]: del globals()[_n]

from helpers import mk_learner, mixers_of, one_thread, MEMBERS, members

pytestmark = pytest.mark.usefixtures('one_thread')

BF16 = torch.bfloat16
RTOL = 2**-7 # two bf16 ulps (bf16 keeps 8 significant bits)

def bf16_autocast(enabled=True): return torch.autocast('cpu', dtype=BF16, enabled=enabled)

def soft_ce(pred, targ):
    "Cross-entropy against float (one-hot or mixed) targets, with no `reduction` to skip: the mixer mixes the targets"
    return F.cross_entropy(pred, targ)

def per_source_loss(pred, labels, idx, wgt):
    "The reference: each sample's cross-entropy against each source's label in float32, weighed by `wgt`, averaged"
    with bf16_autocast(False):
        p = pred.detach().as_subclass(Tensor).float()
        return sum(w*F.cross_entropy(p, labels[i], reduction='none') for i,w in zip(idx, wgt)).mean()

@pytest.fixture(scope='module')
def dls():
    "64 training and 32 validation images in batches of 32: 2 training batches and 1 validation batch an epoch"
    return fashion_mnist_dls(bs=32, n_train=64, n_valid=32, num_workers=0)

@pytest.fixture(scope='module')
def trained(dls, one_thread):
    """The weights of a `tiny_cnn` trained (in float32, unmixed) until it knows the training images: its loss against a
    sample's own label is then far from its loss against a partner's, so a mixed loss is far from an unmixed one"""
    set_seed(0)
    learn,_ = mk_learner(dls, metrics=[])
    learn.fit_one_cycle(25, 2e-2)
    preds,targs = learn.get_preds(ds_idx=0)
    assert (preds.argmax(1)==targs).float().mean() > .9
    return {k: v.clone() for k,v in learn.model.state_dict().items()}

def trained_cnn(state):
    model = tiny_cnn()
    model.load_state_dict(state)
    return model

# ---------------------------------------------------------------------------------------------------------------
# Callbacks around the mixer

class OneHot(Callback):
    "Before the mixer (and in validation): integer labels become one-hot float32 targets"
    order,run_valid = -6,True
    def before_batch(self): self.learn.yb = (F.one_hot(self.learn.yb[0].as_subclass(Tensor), 10).float(),)

class Tap(Callback):
    "Before the mixer: the targets of each training batch as they come, as integer labels"
    order,run_valid = -5,False
    def __init__(self): self.labels = []
    def before_batch(self):
        y = self.learn.yb[0].as_subclass(Tensor)
        self.labels.append(y.argmax(-1) if y.is_floating_point() else y.clone())

class Probe(Callback):
    "After the mixer, on each training batch: dtypes, the loss, the mixer's draws and the reference loss"
    order,run_valid = 10,False
    def __init__(self, tap): self.tap,self.rows = tap,[]
    def after_loss(self):
        (m,) = mixers_of(self.learn)
        labels = self.tap.labels[-1]
        self.rows.append(dict(
            x=self.learn.xb[0].dtype, pred=self.learn.pred.dtype, y=self.learn.yb[0].as_subclass(Tensor).detach().clone(),
            idx=m.idx, wgt=m.wgt, lf=self.learn.loss_func, loss=self.learn.loss.detach().clone(), labels=labels,
            ref=per_source_loss(self.learn.pred, labels, m.idx, m.wgt),
            # the control: the loss against the batch's own labels, as if nothing had been mixed
            plain=per_source_loss(self.learn.pred, labels, torch.arange(len(labels))[None], torch.ones(1, len(labels)))))

def check_rows(rows, onehot, mixer, pred=BF16):
    "Every training batch of a fit under bf16 autocast: dtypes, finite loss, and the loss against the float32 reference"
    assert len(rows)==2
    for r in rows:
        assert r['pred']==pred, "the model ran under bf16 autocast"
        assert r['x']==torch.float32, "float32 inputs stay float32 through the mixer"
        assert r['wgt'] is not None and r['wgt'].dtype==torch.float32 and r['idx'].dtype==torch.int64
        torch.testing.assert_close(r['wgt'].sum(0), torch.ones(r['wgt'].shape[1]), atol=1e-6, rtol=0)
        assert isinstance(r['lf'], MixLoss)
        assert r['loss'].dtype==torch.float32 and torch.isfinite(r['loss']).all()
        torch.testing.assert_close(r['loss'], r['ref'], rtol=RTOL, atol=1e-4)
        if onehot:
            y,lab = r['y'],r['labels']
            assert y.dtype==torch.float32 and y.shape==(len(lab), 10), "mixed float targets stay float32"
            torch.testing.assert_close(y.sum(-1), torch.ones(len(lab)), atol=1e-6, rtol=0)
            expected = sum(w[:, None]*F.one_hot(lab[i], 10).float() for i,w in zip(r['idx'], r['wgt']))
            torch.testing.assert_close(y, expected, atol=1e-6, rtol=0)
        else: assert r['y'].dtype==torch.int64, "integer labels are left alone: the loss is mixed instead"
    if not isinstance(mixer, Cutout): # the control: the tolerance above tells the mixed loss from the unmixed one
        assert any(abs(float(r['ref']-r['plain'])) > 4*RTOL*float(r['ref']) for r in rows)

def _fit(dls, state, make, onehot, to_bf16=False):
    """A one-epoch fit with the mixer `make()` and one-hot targets if `onehot`: inside bf16 autocast, or with fastai's
    `to_bf16` instead; also the dtypes the model's head put out"""
    mixer = make()
    lf = soft_ce if onehot else CrossEntropyLossFlat()
    learn,_ = mk_learner(dls, mixer, model=trained_cnn(state), loss_func=lf, metrics=[] if onehot else accuracy)
    if to_bf16: learn.to_bf16()
    tap = Tap()
    probe = Probe(tap)
    head = []
    h = learn.model[-1].register_forward_hook(lambda m, a, out: head.append(out.dtype))
    try:
        with bf16_autocast(not to_bf16), warnings.catch_warnings():
            warnings.simplefilter('ignore', UserWarning) # to_bf16 on a CPU: "CUDA is not available ... Disabling autocast"
            learn.fit(1, 1e-3, cbs=[tap, probe] + ([OneHot()] if onehot else []))
    finally: h.remove()
    return learn,lf,mixer,probe,set(head)

# ---------------------------------------------------------------------------------------------------------------
# 1. Real fits under bf16 autocast

@pytest.mark.parametrize('onehot', [False, True], ids=['labels', 'onehot'])
@pytest.mark.parametrize('make', members())
def test_bf16_autocast_fit(dls, trained, make, onehot):
    learn,lf,mixer,probe,head = _fit(dls, trained, make, onehot)
    assert head=={BF16}, "the model's head ran in bf16, in training and validation"
    check_rows(probe.rows, onehot, mixer)
    assert all(math.isfinite(float(v)) for v in learn.recorder.values[-1]), learn.recorder.values[-1]
    assert learn.loss_func is lf and mixer.idx is None and mixer.wgt is None
    assert all(p.dtype==torch.float32 for p in learn.model.parameters()), "autocast leaves the weights in float32"

@pytest.mark.parametrize('make', members(['cutmix_per_sample', 'cutmixup']))
def test_to_bf16_on_cpu(dls, trained, make):
    "fastai's own switch: if it autocasts on the CPU, the family trains under it as under `torch.autocast`"
    learn,lf,mixer,probe,head = _fit(dls, trained, make, False, to_bf16=True)
    if BF16 not in head:
        assert head=={torch.float32}
        pytest.skip("this fastai's to_bf16 autocasts for 'cuda' only: on the CPU it trains in float32")
    check_rows(probe.rows, False, mixer, pred=torch.float32) # MixedPrecision hands the loss float32 predictions
    assert learn.loss_func is lf and mixer.idx is None

# ---------------------------------------------------------------------------------------------------------------
# 2. bf16 input batches through each member's before_batch

@pytest.fixture(scope='module')
def batch(dls):
    "One real training batch: float32 images (normalised) and integer labels"
    x,y = dls.one_batch()
    return x.as_subclass(Tensor).clone(),y.as_subclass(Tensor).clone()

@pytest.mark.parametrize('onehot', [False, True], ids=['labels', 'onehot'])
@pytest.mark.parametrize('autocast', [False, True], ids=['plain', 'autocast'])
@pytest.mark.parametrize('make', members())
def test_bf16_inputs(batch, make, autocast, onehot):
    x,lab = batch
    xb = x.to(BF16)
    set_seed(0)
    cb = make()
    y = F.one_hot(lab, 10).float() if onehot else lab
    with bf16_autocast(autocast):
        learn = mixing_learner(cb, xb.clone(), y.clone(), loss_func=soft_ce if onehot else CrossEntropyLossFlat())
    xm = learn.xb[0]
    assert xm.dtype==BF16 and xm.shape==xb.shape, "bf16 inputs are mixed into bf16"
    assert cb.idx is not None and cb.wgt.dtype==torch.float32 and cb.idx.dtype==torch.int64
    torch.testing.assert_close(cb.wgt.sum(0), torch.ones(len(lab)), atol=1e-6, rtol=0)
    assert torch.isfinite(xm.float()).all()
    lo,hi = min(float(xb.min()), 0.),float(xb.max()) # 0: Cutout's fill
    tol = RTOL*max(-lo, hi) # bf16 rounding of a blend or an interpolation: within one unit in the last place
    assert float(xm.min()) >= lo-tol and float(xm.max()) <= hi+tol, "blends, copies, resizes and fills stay in range"
    if isinstance(cb, MixUp): # a blend in bf16 of the bf16 batch: within bf16's rounding of the float32 blend
        w = lambda j: cb.wgt[j].view(-1, 1, 1, 1)
        torch.testing.assert_close(xm.float(), w(0)*xb.float() + w(1)*xb[cb.perm].float(), rtol=RTOL, atol=RTOL)
    elif type(cb) in (CutMix, FMix): # pixels copied, not blended: exactly the sample's or its partner's
        assert ((xm==xb) | (xm==xb[cb.perm])).all()
    if onehot:
        ym = learn.yb[0]
        assert ym.dtype==torch.float32, "float targets stay float32 though the inputs are bf16"
        torch.testing.assert_close(ym, sum(w[:, None]*y[i] for i,w in zip(cb.idx, cb.wgt)), atol=1e-6, rtol=0)
    else: assert torch.equal(learn.yb[0], lab)
    # the loss on bf16 predictions: float32, finite, the per-source losses weighed
    pred = torch.randn(len(lab), 10).to(BF16)
    with bf16_autocast(autocast): loss,plain = learn.loss_func(pred, *learn.yb),CrossEntropyLossFlat()(pred, lab)
    # Cutout's samples keep their own labels whole: its loss is the plain loss, in the dtype the loss gives
    assert loss.dtype==(plain.dtype if isinstance(cb, Cutout) and not onehot else torch.float32) and torch.isfinite(loss)
    torch.testing.assert_close(loss.float(), per_source_loss(pred, lab, cb.idx, cb.wgt), rtol=RTOL, atol=1e-4)
