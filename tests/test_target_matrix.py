"""The target matrix: every kind of target a DataBlock gives x the losses people use x every member of the family.
In every cell either the loss equals the mixed loss computed here by hand (from the mixer's `idx` and `wgt` only), or a
clear error comes before the loss of a mixed batch could train anything. What is expected of each cell is written out
below, in the test, not asked of the library."""
import os, zlib, pytest, torch
import torch.nn as nn, torch.nn.functional as F
from fastai.losses import (CrossEntropyLossFlat, LabelSmoothingCrossEntropyFlat, FocalLossFlat, BCEWithLogitsLossFlat,
                           MSELossFlat, L1LossFlat)
from fastai.torch_core import set_seed, TensorImage, TensorCategory, TensorMultiCategory, TensorMask
from fastai.vision.core import TensorPoint, TensorBBox
from fastai_cutmix.core import mixing_learner, MixLoss
from fastai_cutmix.cutmix import CutMix
from helpers import MEMBERS, one_thread

BS,C,H,W = 6,3,8,8
K = 4 # classes of per-sample labels
KM = 8 # classes of masks: more than BS, so that every sample's mask can be its own constant class (below)
IGN = 255
SALT = os.environ.get('MATRIX_SALT', '') # another set of draws: MATRIX_SALT=1 pytest ...
CLS_W = torch.linspace(.5, 2., KM) # class weights

# per-item losses written out by hand, class axis 1, targets of the same shape as the items: (value, mean's weight)
def int_items(name, pred, y):
    logp = F.log_softmax(pred.float(), 1)
    keep = y!=IGN
    yy = y.masked_fill(~keep, 0)
    nll = -logp.gather(1, yy.unsqueeze(1)).squeeze(1)
    one = torch.ones_like(nll)
    if name=='ce': return nll, one
    if name=='weighted_ce': return CLS_W[yy]*nll, CLS_W[yy]
    if name=='ignore_ce': return nll*keep, keep.float()
    if name=='label_smoothing': return -logp.sum(1)*.1/pred.shape[1] + .9*nll, one
    if name=='focal': return (1-torch.exp(-nll))**2*nll, one
    raise KeyError(name)

def plain_int(name, pred, y):
    "The loss of integer targets `y` without mixing, by hand"
    if name!='ls_weighted': return (lambda l,d: l.sum()/d.sum())(*int_items(name, pred, y))
    # fastai's LabelSmoothingCrossEntropy with weights: a plain mean of the smoothing term, a weighted one of the NLL
    logp = F.log_softmax(pred.float(), 1)
    nll,w = -logp.gather(1, y.unsqueeze(1)).squeeze(1),CLS_W[y]
    return -logp.sum(1).mean()*.1/pred.shape[1] + .9*(w*nll).sum()/w.sum()

def float_loss(name, pred, t):
    if name=='soft_ce': return -(t*F.log_softmax(pred, 1)).sum(1).mean()
    if name=='bce': return (pred.clamp(min=0) - pred*t + torch.log1p(torch.exp(-pred.abs()))).mean()
    if name=='mse': return ((pred-t)**2).mean()
    if name=='l1': return (pred-t).abs().mean()
    raise KeyError(name)

def loss_object(name, axis):
    return {'ce': lambda: CrossEntropyLossFlat(axis=axis),
            'weighted_ce': lambda: CrossEntropyLossFlat(weight=CLS_W[:KM if axis==1 else K], axis=axis),
            'ignore_ce': lambda: CrossEntropyLossFlat(ignore_index=IGN, axis=axis),
            'label_smoothing': lambda: LabelSmoothingCrossEntropyFlat(eps=.1, axis=axis),
            'focal': lambda: FocalLossFlat(gamma=2., axis=axis),
            'ls_weighted': lambda: LabelSmoothingCrossEntropyFlat(eps=.1, weight=CLS_W[:KM if axis==1 else K], axis=axis),
            'soft_ce': lambda: nn.CrossEntropyLoss(), 'bce': lambda: BCEWithLogitsLossFlat(),
            'mse': lambda: MSELossFlat(), 'l1': lambda: L1LossFlat()}[name]()

# the kinds of target, as a DataBlock types them, with the losses each is trained with
INT_LOSSES = ['ce', 'weighted_ce', 'ignore_ce', 'label_smoothing', 'focal', 'ls_weighted']
KINDS = {'category': INT_LOSSES, 'onehot': ['soft_ce', 'bce', 'mse'], 'multilabel': ['bce'], 'regression': ['mse', 'l1'],
         'mask': INT_LOSSES, 'float_map': ['bce', 'mse', 'l1'], 'points': ['mse', 'l1'], 'bbox': ['mse', 'l1']}
LAID_OUT = {'mask', 'float_map'} # like the image: cut by methods that move regions

def batch(kind, loss):
    "(y, pred) of one kind; masks hold one class per sample (its number), so a cut mask tells each pixel's source"
    ign = loss=='ignore_ce'
    if kind=='category':
        y = torch.randint(0, K, (BS,))
        if ign: y[::3] = IGN
        return TensorCategory(y),torch.randn(BS, K)
    if kind=='onehot': return TensorMultiCategory(F.one_hot(torch.randint(0, K, (BS,)), K).float()),torch.randn(BS, K)
    if kind=='multilabel': return TensorMultiCategory((torch.rand(BS, K)<.5).float()),torch.randn(BS, K)
    if kind=='regression': return torch.randn(BS, 2)*3,torch.randn(BS, 2)
    if kind=='mask':
        y = torch.arange(BS).view(BS, 1, 1).expand(BS, H, W).clone()
        if ign: y[0] = IGN
        return TensorMask(y),torch.randn(BS, KM, H, W)
    if kind=='float_map': return TensorMask(torch.arange(BS).float().div(BS).view(BS, 1, 1, 1).expand(BS, 1, H, W).clone()),torch.randn(BS, 1, H, W)
    if kind=='points': return TensorPoint(torch.rand(BS, 3, 2)*2-1),torch.randn(BS, 3, 2)
    if kind=='bbox': return TensorBBox(torch.rand(BS, 2, 4)*2-1),torch.randn(BS, 2, 4)

MOVES_REGIONS = {n for n in MEMBERS if not n.startswith(('mixup', 'cutout'))} # every member but MixUp and Cutout
PER_SAMPLE_CHOICE_OF_CUT_AND_BLEND = {'cutmixup_per_sample', 'choice_per_sample'}

def refusal(member, kind):
    "The error a cell must raise while mixing, before any loss: None where it must mix"
    if kind=='bbox' and member!='cutout': return 'boxes cannot be mixed'
    if kind=='points' and member in MOVES_REGIONS: return 'keypoints'
    if kind in LAID_OUT and member in PER_SAMPLE_CHOICE_OF_CUT_AND_BLEND: return 'cannot be cut for some samples'
    return None

def sources_of(y_cut, kind, y):
    "For a cut mask: which sample each pixel came from"
    if kind=='float_map': return (y_cut[:, 0]*BS).round().long()
    return torch.where(y_cut==IGN, 0, y_cut)

CELLS = [pytest.param(m, k, l, id=f'{m}-{k}-{l}') for m in MEMBERS for k,ls in KINDS.items() for l in ls]

@pytest.mark.parametrize('member,kind,loss', CELLS)
def test_cell(one_thread, member, kind, loss):
    set_seed(zlib.crc32(f'{member}-{kind}-{loss}{SALT}'.encode())) # a seed of the cell's own, the same in every run
    cb = MEMBERS[member]()
    x = TensorImage(torch.randn(BS, C, H, W))
    y,pred = batch(kind, loss)
    lf = loss_object(loss, 1 if kind=='mask' else -1)
    why = refusal(member, kind)
    if why:
        with pytest.raises(ValueError, match=why): mixing_learner(cb, x, y.clone(), loss_func=lf)
        return
    learn = mixing_learner(cb, x, y.clone(), loss_func=lf)
    assert isinstance(learn.loss_func, MixLoss) and cb.idx is not None
    idx,wgt = cb.idx,cb.wgt
    assert type(wgt) is torch.Tensor and type(idx) is torch.Tensor # plain tensors, whatever the input's type
    torch.testing.assert_close(wgt.sum(0), torch.ones(BS))
    n_src = idx.shape[0]
    # is the mask cut with the image? For the members that move regions; for CutMixUp per batch, when CutMix was drawn
    cut = kind in LAID_OUT and (isinstance(cb.cur, CutMix) if member=='cutmixup' else member in MOVES_REGIONS)
    yb = learn.yb[0]
    if cut:
        src = sources_of(yb, kind, y)
        for i in range(BS):
            for j in idx[:, i].unique():
                share = (src[i]==j).float().mean()
                torch.testing.assert_close(share, wgt[idx[:, i]==j, i].sum(), atol=1e-6, rtol=0)
        want = float_loss(loss, pred, yb) if kind=='float_map' else plain_int(loss, pred, yb) # the cut mask is the target
    elif kind in ('category', 'mask'):
        assert torch.equal(yb, y) # integer labels are never averaged
        if loss=='ls_weighted' and n_src>1:
            with pytest.raises(ValueError, match='cannot mix the loss'): learn.loss_func(pred, *learn.yb)
            assert not isinstance(learn.loss_func, MixLoss) # the learner has its own loss back
            return
        num = den = 0.
        if n_src==1: num,den = plain_int(loss, pred, y),1. # Cutout: the sample alone, weight 1
        else:
          for s in range(n_src):
            l,d = int_items(loss, pred, y[idx[s]])
            w = wgt[s].view(BS, *[1]*(l.ndim-1))
            num,den = num + (w*l).sum(),den + (w*d).sum()
        want = num/den
    else:
        ym = torch.stack([sum(wgt[s, i]*y[idx[s, i]] for s in range(n_src)) for i in range(BS)])
        torch.testing.assert_close(yb, ym, atol=1e-6, rtol=0) # learn.yb holds the mixed target
        assert isinstance(yb, type(y)) and yb.dtype==y.dtype
        want = float_loss(loss, pred, ym)
    got = learn.loss_func(pred, *learn.yb)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)

@pytest.mark.parametrize('kind', ['category', 'mask'])
@pytest.mark.parametrize('loss', ['ce', 'weighted_ce', 'ignore_ce', 'label_smoothing', 'focal'])
def test_nothing_mixed_is_the_plain_loss(one_thread, kind, loss):
    "Every source weighing 1 on the sample itself: the mixing loss is the loss without a mixer, whatever its mean divides by"
    from fastai_cutmix.mixup import MixUp
    class Keep(MixUp):
        def draw(self, x): return self.pairs(torch.ones(x.shape[0]))
    set_seed(3)
    y,pred = batch(kind, loss)
    lf = loss_object(loss, 1 if kind=='mask' else -1)
    learn = mixing_learner(Keep(), TensorImage(torch.randn(BS, C, H, W)), y, loss_func=lf)
    assert cb_mixed(learn)
    torch.testing.assert_close(learn.loss_func(pred, *learn.yb), lf(pred, y), atol=1e-6, rtol=1e-6)

def cb_mixed(learn): return any(getattr(cb, 'idx', None) is not None for cb in learn.cbs)

def test_measured_scales():
    "The issue's measurements: with class weights and with ignored rows, a batch mixed with itself keeps the plain scale"
    from fastai_cutmix.mixup import MixUp
    class Keep(MixUp):
        def draw(self, x): return self.pairs(torch.ones(x.shape[0]))
    set_seed(0)
    pred,y = torch.randn(8, 3),torch.tensor([0, 1, 2, 2, 1, 0, 2, 1])
    for lf in (CrossEntropyLossFlat(weight=torch.tensor([10., 1., .1])), CrossEntropyLossFlat(ignore_index=2)):
        learn = mixing_learner(Keep(), torch.randn(8, 5), y, loss_func=lf)
        plain,mixed = lf(pred, y),learn.loss_func(pred, *learn.yb)
        with_items_mean = F.cross_entropy(pred, y, weight=getattr(lf.func, 'weight', None), ignore_index=lf.func.ignore_index, reduction='none').mean()
        assert abs(float(plain-with_items_mean)) > .1 # what dividing by the number of items gave
        torch.testing.assert_close(mixed, plain)
