"On a CUDA device: mixing and the mixing loss cause no host-device sync, and half-precision inputs keep their dtype."
from contextlib import contextmanager
from functools import partial
import pytest, torch
from fastai.losses import CrossEntropyLossFlat
from fastai.torch_core import set_seed
from fastai_cutmix.core import mixing_learner
from fastai_cutmix.mixup import MixUp
from fastai_cutmix.cutmix import CutMix

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

DEV = 'cuda'
BS,C,H,W,K = 8,3,16,12,5
MIXERS = {'mixup': MixUp, 'cutmix': CutMix, 'cutmix_ps': partial(CutMix, per_sample=True),
          'cutmix_minmax': partial(CutMix, minmax=(.2, .6)), 'cutmix_ps_minmax': partial(CutMix, per_sample=True, minmax=(.2, .6))}

@contextmanager
def no_sync():
    "Any host-device sync inside raises"
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode('error')
    try: yield
    finally: torch.cuda.set_sync_debug_mode('default')

def labels_batch(): return torch.randn(BS, C, H, W, device=DEV), torch.randint(0, K, (BS,), device=DEV)
def mask_batch(): return torch.randn(BS, C, H, W, device=DEV), torch.randint(0, K, (BS, H, W), device=DEV)

def check_mixed(cb, x, learn):
    "idx and wgt on the device, in their layout; MixUp's blend exact, CutMix's pixels from the sample or its partner"
    assert cb.idx.device.type==DEV and cb.wgt.device.type==DEV and cb.wgt.dtype==torch.float32
    assert torch.equal(cb.idx[0].cpu(), torch.arange(BS))
    torch.testing.assert_close(cb.wgt.sum(0).cpu(), torch.ones(BS), atol=1e-6, rtol=0)
    xm = learn.xb[0]
    assert xm.device.type==DEV and xm.shape==x.shape
    if isinstance(cb, MixUp):
        w = lambda j: cb.wgt[j].view(-1, 1, 1, 1)
        torch.testing.assert_close(xm, w(0)*x + w(1)*x[cb.perm], atol=1e-5, rtol=0)
    else:
        own = (xm==x).all(1)
        assert ((xm==x) | (xm==x[cb.perm])).all()
        moved = (cb.perm!=torch.arange(BS, device=DEV))
        torch.testing.assert_close((~own).float().flatten(1).mean(1)[moved], cb.wgt[1][moved], atol=1e-6, rtol=0)

@pytest.mark.parametrize('kind', list(MIXERS))
def test_labels_no_sync(kind):
    "before_batch and the mixing loss on a CUDA batch with integer labels, under sync debug mode 'error'"
    set_seed(0)
    cb = MIXERS[kind]()
    x,y = labels_batch()
    pred = torch.randn(BS, K, device=DEV)
    learn = mixing_learner(cb, x, y) # warm-up batch, outside the mode
    learn.loss_func(pred, *learn.yb)
    x,y = labels_batch()
    learn.xb,learn.yb = (x.clone(),),(y,)
    with no_sync():
        cb.before_batch()
        loss = learn.loss_func(pred, *learn.yb)
    check_mixed(cb, x, learn)
    assert loss.device.type==DEV and loss.ndim==0
    lf = CrossEntropyLossFlat(reduction='none')
    hand = (cb.wgt[0]*lf(pred, y[cb.idx[0]]) + cb.wgt[1]*lf(pred, y[cb.idx[1]])).mean()
    torch.testing.assert_close(loss, hand, atol=1e-5, rtol=1e-5)

@pytest.mark.parametrize('kind', ['mixup', 'cutmix', 'cutmix_ps'])
def test_masks_no_sync(kind):
    "Masks: cut by CutMix, per-pixel loss-mixed by MixUp, without a sync"
    set_seed(1)
    cb = MIXERS[kind]()
    lf = CrossEntropyLossFlat(axis=1)
    x,m = mask_batch()
    pred = torch.randn(BS, K, H, W, device=DEV)
    learn = mixing_learner(cb, x, m, loss_func=lf)
    learn.loss_func(pred, *learn.yb)
    x,m = mask_batch()
    learn.xb,learn.yb = (x.clone(),),(m.clone(),)
    with no_sync():
        cb.before_batch()
        loss = learn.loss_func(pred, *learn.yb)
    check_mixed(cb, x, learn)
    if kind=='mixup': assert torch.equal(learn.yb[0], m)
    else:
        cut = ~(learn.xb[0]==x).all(1)
        assert torch.equal(learn.yb[0], torch.where(cut, m[cb.perm], m))
        torch.testing.assert_close(loss, lf(pred, learn.yb[0]), atol=1e-5, rtol=1e-5)

@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
@pytest.mark.parametrize('kind', ['mixup', 'cutmix', 'cutmix_ps'])
def test_low_precision_inputs(dtype, kind):
    "fp16 and bf16 inputs: mixed x keeps the dtype, wgt stays float32"
    set_seed(2)
    x = torch.randn(BS, C, H, W, device=DEV).to(dtype)
    cb = MIXERS[kind]()
    learn = mixing_learner(cb, x.clone(), torch.randint(0, K, (BS,), device=DEV))
    xm = learn.xb[0]
    assert xm.dtype==dtype and xm.device.type==DEV
    assert cb.wgt.dtype==torch.float32 and cb.wgt.device.type==DEV
    if kind=='mixup':
        w = lambda j: cb.wgt[j].view(-1, 1, 1, 1)
        torch.testing.assert_close(xm.float(), w(0)*x.float() + w(1)*x[cb.perm].float(), atol=3e-2, rtol=2e-2)
    else: assert ((xm==x) | (xm==x[cb.perm])).all()
    # the mixing loss on half-precision predictions
    pred = torch.randn(BS, K, device=DEV).to(dtype)
    loss = learn.loss_func(pred, *learn.yb)
    assert torch.isfinite(loss.float()).all()
