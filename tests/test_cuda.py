"On a CUDA device: mixing and the mixing loss cause no host-device sync, and half-precision inputs keep their dtype."
from contextlib import contextmanager
from functools import partial
import pytest, torch
from fastai.losses import CrossEntropyLossFlat
from fastai.torch_core import set_seed
from fastai_cutmix.core import mixing_learner
from fastai_cutmix.mixup import MixUp
from fastai_cutmix.cutmix import CutMix, Cutout
from fastai_cutmix.fmix import FMix
from fastai_cutmix.resizemix import ResizeMix
from fastai_cutmix.ricap import RICAP
from fastai_cutmix.choice import MixChoice, CutMixUp

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

DEV = 'cuda'
BS,C,H,W,K = 8,3,16,12,5
MIXERS = {'mixup': MixUp, 'cutmix': CutMix, 'cutmix_ps': partial(CutMix, per_sample=True),
          'cutmix_minmax': partial(CutMix, minmax=(.2, .6)), 'cutmix_ps_minmax': partial(CutMix, per_sample=True, minmax=(.2, .6))}
# the rest of the family, checked by the generic invariants below
FAMILY = {'cutout': Cutout, 'cutout_ps': partial(Cutout, per_sample=True), 'fmix': FMix, 'fmix_ps': partial(FMix, per_sample=True),
          'resizemix': ResizeMix, 'resizemix_ps': partial(ResizeMix, per_sample=True),
          'ricap': RICAP, 'ricap_ps': partial(RICAP, per_sample=True),
          'cutmixup': CutMixUp, 'cutmixup_ps': partial(CutMixUp, per_sample=True),
          'choice_ps': lambda: MixChoice([CutMix(per_sample=True), FMix(per_sample=True), RICAP(per_sample=True), ResizeMix()], per_sample=True)}
REGION = {'fmix', 'fmix_ps', 'resizemix', 'resizemix_ps', 'ricap', 'ricap_ps', 'choice_ps'}

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


def ids_batch():
    "Every pixel of sample i holds i; the mask holds i too"
    x = torch.arange(BS, device=DEV, dtype=torch.float32).view(BS, 1, 1, 1).expand(BS, C, H, W).contiguous()
    return x, x[:, 0].long()

@pytest.mark.parametrize('kind', list(FAMILY))
def test_family_no_sync(kind):
    "The rest of the family: before_batch and the loss without a sync; shares sum to 1; the loss is the weighted lerp"
    set_seed(3)
    cb = FAMILY[kind]()
    x,y = labels_batch()
    pred = torch.randn(BS, K, device=DEV)
    learn = mixing_learner(cb, x.clone(), y) # warm-up, outside the mode
    learn.loss_func(pred, *learn.yb)
    x,y = labels_batch()
    learn.xb,learn.yb = (x.clone(),),(y,)
    with no_sync():
        cb.before_batch()
        loss = learn.loss_func(pred, *learn.yb)
    assert cb.idx.device.type==DEV and cb.wgt.device.type==DEV and cb.wgt.dtype==torch.float32
    torch.testing.assert_close(cb.wgt.sum(0).cpu(), torch.ones(BS), atol=1e-6, rtol=0)
    assert learn.xb[0].shape==x.shape and learn.xb[0].device.type==DEV
    lf = CrossEntropyLossFlat(reduction='none')
    hand = sum(w*lf(pred, y[i]) for i,w in zip(cb.idx, cb.wgt)).mean()
    torch.testing.assert_close(loss, hand, atol=1e-5, rtol=1e-5)

@pytest.mark.parametrize('kind', sorted(REGION))
def test_family_masks_no_sync(kind):
    "Region methods cut masks exactly like the image, and each source's pixel share is its weight, without a sync"
    set_seed(4)
    cb = FAMILY[kind]()
    lf = CrossEntropyLossFlat(axis=1)
    x,m = ids_batch()
    mixing_learner(cb, x.clone(), m.clone(), loss_func=lf)
    x,m = ids_batch()
    learn = cb.learn
    learn.xb,learn.yb = (x.clone(),),(m.clone(),)
    with no_sync(): cb.before_batch()
    xm = learn.xb[0].round()
    assert torch.equal(learn.yb[0], xm[:, 0].long())
    for i in range(BS):
        src = cb.idx[:, i]
        for j in range(src.shape[0]):
            share = (xm[i]==src[j]).float().mean()
            torch.testing.assert_close(share, cb.wgt[:, i][src==src[j]].sum(), atol=1e-6, rtol=0)

@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
@pytest.mark.parametrize('kind', list(FAMILY))
def test_family_low_precision(dtype, kind):
    "fp16/bf16 inputs keep their dtype through every member; shares stay float32; the loss is finite"
    set_seed(5)
    x = torch.randn(BS, C, H, W, device=DEV).to(dtype)
    cb = FAMILY[kind]()
    learn = mixing_learner(cb, x.clone(), torch.randint(0, K, (BS,), device=DEV))
    assert learn.xb[0].dtype==dtype and cb.wgt.dtype==torch.float32
    loss = learn.loss_func(torch.randn(BS, K, device=DEV).to(dtype), *learn.yb)
    assert torch.isfinite(loss.float()).all()
