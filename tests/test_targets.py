"Each kind of target the mixers support, with its loss checked against a hand computation, in training and out of it."
import pytest, torch
import torch.nn as nn, torch.nn.functional as F
from fastai.losses import (CrossEntropyLossFlat, LabelSmoothingCrossEntropyFlat, FocalLossFlat,
                           BCEWithLogitsLossFlat, MSELossFlat, L1LossFlat)
from fastai.torch_core import TensorMultiCategory
from fastai.torch_core import set_seed
from fastai_cutmix.core import mixing_learner, MixLoss
from fastai_cutmix.mixup import MixUp
from fastai_cutmix.cutmix import CutMix

BS,K = 6,4

def close(a, b, tol=1e-5): torch.testing.assert_close(torch.as_tensor(a).float(), torch.as_tensor(b).float(), atol=tol, rtol=tol)

# per-sample losses written out by hand
def ce(pred, y): return -F.log_softmax(pred, -1).gather(-1, y.unsqueeze(-1)).squeeze(-1)
def ls_ce(pred, y, eps=.1):
    logp = F.log_softmax(pred, -1)
    return (1-eps)*-logp.gather(-1, y.unsqueeze(-1)).squeeze(-1) + eps*-logp.mean(-1)
def focal(pred, y, gamma=2.):
    l = ce(pred, y)
    return (1-torch.exp(-l))**gamma * l
def soft_ce_rows(pred, y): return -(y*F.log_softmax(pred, -1)).sum(-1)
def bce(pred, y): return pred.clamp(min=0) - pred*y + torch.log1p(torch.exp(-pred.abs())) # (bs, k)

def mixed_by_hand(per_sample, y, cb):
    "sum_j wgt[j] * loss(y[idx[j]]), per sample; `per_sample(y)` gives (bs, ...) losses"
    ls = [per_sample(y[i]) for i in cb.idx]
    w = lambda j: cb.wgt[j].view(-1, *[1]*(ls[0].ndim-1))
    return w(0)*ls[0] + w(1)*ls[1]

def run(cb, x, y, loss_func, pred, per_sample, reduce=torch.mean):
    "Mix, check the mixing loss against the hand computation, then the plain loss outside training"
    learn = mixing_learner(cb, x, y, loss_func=loss_func)
    assert cb.idx is not None and isinstance(learn.loss_func, MixLoss)
    assert (cb.idx[0]!=cb.idx[1]).any() and (cb.wgt[1]>1e-3).any() # the batch really was mixed
    out = learn.loss_func(pred, *learn.yb)
    close(out, reduce(mixed_by_hand(lambda t: per_sample(pred, t), y, cb)))
    learn.training = False
    close(learn.loss_func(pred, *learn.yb), reduce(per_sample(pred, y)))
    close(learn.loss_func(pred, *learn.yb), loss_func(pred, y))
    return learn, out

@pytest.fixture
def labels():
    set_seed(1)
    return torch.randn(BS, 5), torch.randint(0, K, (BS,)), torch.randn(BS, K)

# ------------------------------------------------------------------ integer labels

@pytest.mark.parametrize('name,loss_func,per_sample', [
    ('CrossEntropyLossFlat', CrossEntropyLossFlat(), ce),
    ('LabelSmoothingCrossEntropyFlat', LabelSmoothingCrossEntropyFlat(eps=.1), ls_ce),
    ('FocalLossFlat', FocalLossFlat(gamma=2.), focal),
    ('nn.CrossEntropyLoss', nn.CrossEntropyLoss(), ce),
])
def test_integer_labels(labels, name, loss_func, per_sample):
    x,y,pred = labels
    learn,_ = run(MixUp(), x, y, loss_func, pred, per_sample)
    assert torch.equal(learn.yb[0], y) # loss mixing leaves integer labels alone
    assert loss_func.reduction=='mean'

def test_integer_labels_cutmix(labels):
    "CutMix on images with integer labels: the labels' loss is weighted by the box's share"
    _,y,pred = labels
    x = torch.randn(BS, 3, 8, 8)
    cb = CutMix(alpha=1.)
    learn,_ = run(cb, x, y, CrossEntropyLossFlat(), pred, ce)
    assert torch.equal(learn.yb[0], y)

class MyLoss:
    "A user's own loss: squared error on the true class's probability, with a `reduction` attribute"
    def __init__(self, reduction='mean'): self.reduction = reduction
    def __call__(self, pred, y):
        l = (1 - pred.softmax(-1).gather(1, y[:, None])[:, 0])**2
        return {'mean': l.mean(), 'sum': l.sum(), 'none': l}[self.reduction]

def my_per_sample(pred, y): return (1 - pred.softmax(-1)[torch.arange(len(y)), y])**2

def test_integer_labels_own_loss_class(labels):
    x,y,pred = labels
    lf = MyLoss()
    run(MixUp(), x, y, lf, pred, my_per_sample)
    assert lf.reduction=='mean'

def test_own_loss_class_reduction_sum(labels):
    "A loss with reduction='sum' is reduced by sum, mixing or not"
    x,y,pred = labels
    lf = MyLoss('sum')
    _,out = run(MixUp(), x, y, lf, pred, my_per_sample, reduce=torch.sum)
    assert lf.reduction=='sum'

def test_flat_loss_reduction_sum(labels):
    x,y,pred = labels
    run(CutMix(per_sample=True), torch.randn(BS, 3, 7, 9), y, CrossEntropyLossFlat(reduction='sum'), pred, ce,
        reduce=torch.sum)

def test_flat_loss_reduction_none(labels):
    "reduction='none' gives back the mixed loss of each sample"
    x,y,pred = labels
    run(MixUp(), x, y, CrossEntropyLossFlat(reduction='none'), pred, ce, reduce=lambda t: t)

def test_function_loss_with_sum_default(labels):
    x,y,pred = labels
    def ce_sum(pred, y, reduction='sum'): return F.cross_entropy(pred, y, reduction=reduction)
    run(MixUp(), x, y, ce_sum, pred, ce, reduce=torch.sum)

def test_function_loss_with_reduction_argument(labels):
    "A plain function taking `reduction` (default 'mean') is loss-mixed: labels stay, losses are weighted"
    x,y,pred = labels
    def ce_fn(pred, y, reduction='mean'): return F.cross_entropy(pred, y, reduction=reduction)
    learn,_ = run(MixUp(), x, y, ce_fn, pred, ce)
    assert torch.equal(learn.yb[0], y)

def test_scalar_none_output_raises(labels):
    "A loss that ignores reduction='none' and returns a scalar gets a clear error, not a silent wrong loss"
    x,y,pred = labels
    class Stubborn:
        reduction = 'mean'
        def __call__(self, pred, y): return F.cross_entropy(pred, y)
    learn = mixing_learner(MixUp(), x, y, loss_func=Stubborn())
    with pytest.raises(ValueError, match=r"reduction='none' the loss .* returned shape \(\), but mixing needs one "
                                         r"value per sample \(or per sample and pixel\) for the batch of 6"):
        learn.loss_func(pred, *learn.yb)
    assert learn.loss_func.loss_func.reduction=='mean' # given back even though it raised

def test_kwargs_loss_returning_scalar_raises(labels):
    x,y,pred = labels
    def lf(pred, y, **kwargs): return F.cross_entropy(pred, y)
    learn = mixing_learner(MixUp(), x, y, loss_func=lf)
    with pytest.raises(ValueError, match=r"returned shape \(\)"): learn.loss_func(pred, *learn.yb)

def test_integer_labels_with_loss_without_reduction_raise(labels):
    x,y,pred = labels
    def lf(pred, y): return F.cross_entropy(pred, y)
    with pytest.raises(ValueError, match="integer targets need one loss per sample.*cannot skip its reduction"):
        mixing_learner(MixUp(), x, y, loss_func=lf)

# ------------------------------------------------------------------ float targets: mixed as targets

def mixed_target(y, cb):
    "sum_j wgt[j, i] * y[idx[j, i]], written out sample by sample"
    return torch.stack([sum(float(cb.wgt[j, i])*y[int(cb.idx[j, i])] for j in range(cb.idx.shape[0])) for i in range(y.shape[0])])

def run_float(cb, x, y, loss_func, pred):
    "Mix; `learn.yb` holds the mixed targets, and the loss is `loss_func` on them, in training and out of it"
    learn = mixing_learner(cb, x, y.clone(), loss_func=loss_func)
    assert (cb.idx[0]!=cb.idx[1]).any() and (cb.wgt[1]>1e-3).any() # the batch really was mixed
    ym = mixed_target(y, cb)
    close(learn.yb[0], ym, 1e-6)
    assert type(learn.yb[0]) is type(y) and learn.yb[0].dtype==y.dtype
    out = learn.loss_func(pred, *learn.yb)
    close(out, loss_func(pred, ym))
    learn.training = False
    close(learn.loss_func(pred, y), loss_func(pred, y))
    return learn, out, ym

@pytest.fixture
def onehot():
    set_seed(2)
    y = torch.randint(0, K, (BS,))
    return torch.randn(BS, 5), y, F.one_hot(y, K).float(), torch.randn(BS, K)

def test_onehot_targets_mixed(onehot):
    "One-hot targets are mixed themselves; for cross-entropy that equals mixing the integer labels' losses"
    x,yi,y1,pred = onehot
    cb = MixUp()
    learn,out,ym = run_float(cb, x, y1, nn.CrossEntropyLoss(), pred)
    close(ym.sum(1), torch.ones(BS), 1e-6)
    close(out, mixed_by_hand(lambda t: ce(pred, t), yi, cb).mean())

def test_soft_targets_mixed(onehot):
    x,_,_,pred = onehot
    run_float(CutMix(), torch.randn(BS, 2, 6, 6), torch.rand(BS, K).softmax(-1), nn.CrossEntropyLoss(), pred)

def test_onehot_targets_mixed_when_loss_has_no_reduction(onehot):
    "A loss without `reduction` needs nothing of the loss: rows still sum to 1, each on its two classes"
    x,_,y1,pred = onehot
    def lf(pred, y): return soft_ce_rows(pred, y).mean()
    cb = MixUp()
    learn,_,ym = run_float(cb, x, y1, lf, pred)
    for i in range(BS):
        a,b = y1[i].argmax(), y1[cb.perm[i]].argmax()
        if a==b: close(ym[i, a], 1.)
        else: close(ym[i, a], cb.wgt[0, i]); close(ym[i, b], cb.wgt[1, i])

def test_multilabel_bce():
    "Multi-label targets are mixed; BCE is linear in its target, so this equals mixing the losses"
    set_seed(3)
    x,pred = torch.randn(BS, 5),torch.randn(BS, K)
    y = TensorMultiCategory((torch.rand(BS, K)<.5).float())
    cb = MixUp()
    _,out,_ = run_float(cb, x, y, BCEWithLogitsLossFlat(), pred)
    close(out, mixed_by_hand(lambda t: bce(pred, t), y, cb).mean())

def test_multilabel_bce_cutmix_integer_targets():
    "Multi-label targets stored as integers: the flat loss floatifies them, mixing weighs the losses"
    set_seed(4)
    pred = torch.randn(BS, K)
    y = (torch.rand(BS, K)<.5).long()
    run(CutMix(per_sample=True), torch.randn(BS, 3, 6, 6), y, BCEWithLogitsLossFlat(), pred, lambda p, t: bce(p, t.float()))

@pytest.mark.parametrize('loss_func', [MSELossFlat(), L1LossFlat()], ids=['mse', 'l1'])
def test_regression(loss_func):
    "Regression: the loss of the mixed target, not the mix of the losses (for MSE those differ by lam(1-lam)|ya-yb|^2)"
    set_seed(5)
    x,pred,y = torch.randn(BS, 5),torch.randn(BS),torch.randn(BS)*3
    cb = MixUp()
    _,out,ym = run_float(cb, x, y, loss_func, pred)
    if isinstance(loss_func.func, nn.MSELoss):
        mixed_losses = mixed_by_hand(lambda t: (pred-t)**2, y, cb).mean()
        close(mixed_losses - out, (cb.wgt[0]*cb.wgt[1]*(y-y[cb.perm])**2).mean())
        assert mixed_losses - out > 1e-3

def test_regression_l1_gradient():
    "L1: the gradient is that of |pred - mixed target|, which mixing the losses would not give"
    set_seed(11)
    x,y = torch.randn(BS, 5),torch.randn(BS)*3
    pred = torch.zeros(BS, requires_grad=True)
    cb = MixUp()
    learn = mixing_learner(cb, x, y, loss_func=L1LossFlat())
    learn.loss_func(pred, *learn.yb).backward()
    close(pred.grad, -torch.sign(mixed_target(y, cb))/BS)

def test_regression_mse_several_outputs():
    set_seed(6)
    x,pred,y = torch.randn(BS, 3, 5, 5),torch.randn(BS, 2),torch.randn(BS, 2)
    run_float(CutMix(), x, y, MSELossFlat(), pred)

# ------------------------------------------------------------------ segmentation masks

H,W = 7,9
def pix_ce(pred, y): return -F.log_softmax(pred, 1).gather(1, y.unsqueeze(1)).squeeze(1) # (bs, h, w)

@pytest.mark.parametrize('per_sample', [False, True])
def test_masks_cutmix(per_sample):
    "CutMix cuts the mask with the image's box; the loss is then the plain per-pixel loss on the cut mask"
    set_seed(7)
    x = torch.randn(BS, 3, H, W)
    m = torch.randint(0, K, (BS, H, W))
    pred = torch.randn(BS, K, H, W)
    cb = CutMix(per_sample=per_sample)
    lf = CrossEntropyLossFlat(axis=1)
    learn = mixing_learner(cb, x.clone(), m.clone(), loss_func=lf)
    if per_sample: box = cb.mask
    else:
        box = torch.zeros(H, W, dtype=torch.bool); box[cb.box] = True
        box = box.expand(BS, H, W)
    assert box.any()
    expect_m = torch.where(box, m[cb.perm], m)
    expect_x = torch.where(box[:, None], x[cb.perm], x)
    assert torch.equal(learn.yb[0], expect_m) and torch.equal(learn.xb[0], expect_x)
    close(box.float().flatten(1).mean(1), cb.wgt[1], 1e-6)
    out = learn.loss_func(pred, *learn.yb)
    close(out, pix_ce(pred, expect_m).mean())
    close(out, lf(pred, expect_m))
    learn.training = False
    close(learn.loss_func(pred, *learn.yb), pix_ce(pred, expect_m).mean())
    close(learn.loss_func(pred, m), pix_ce(pred, m).mean())

def test_masks_with_channel_cutmix():
    "A (bs, 1, H, W) mask is cut like the image too"
    set_seed(8)
    x = torch.randn(BS, 3, H, W)
    m = torch.randint(0, K, (BS, 1, H, W))
    cb = CutMix(per_sample=True)
    learn = mixing_learner(cb, x, m.clone(), loss_func=CrossEntropyLossFlat(axis=1))
    assert torch.equal(learn.yb[0], torch.where(cb.mask[:, None], m[cb.perm], m))

def test_masks_mixup():
    "MixUp leaves masks alone and weighs each pixel's loss by its sample's weights"
    set_seed(9)
    x = torch.randn(BS, 3, H, W)
    m = torch.randint(0, K, (BS, H, W))
    pred = torch.randn(BS, K, H, W)
    learn,out = run(MixUp(), x, m, CrossEntropyLossFlat(axis=1), pred, pix_ce)
    assert torch.equal(learn.yb[0], m)

def test_masks_mixup_sum():
    set_seed(10)
    x,m,pred = torch.randn(BS, 3, H, W),torch.randint(0, K, (BS, H, W)),torch.randn(BS, K, H, W)
    run(MixUp(), x, m, CrossEntropyLossFlat(axis=1, reduction='sum'), pred, pix_ce, reduce=torch.sum)

def test_not_mixed_batch_gives_plain_loss(labels):
    "When the batch isn't mixed (past stop_pct), the loss is the plain loss even while training"
    x,y,pred = labels
    cb = MixUp(stop_pct=.5)
    learn = mixing_learner(cb, x.clone(), y, pct_train=.5)
    assert cb.idx is None and cb.wgt is None
    assert torch.equal(learn.xb[0], x)
    close(learn.loss_func(pred, *learn.yb), ce(pred, y).mean())
