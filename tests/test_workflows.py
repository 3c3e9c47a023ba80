"""fastai workflows that used to train silently wrong, each through a real `Learner` with the types a DataBlock gives:
regression and class-weighted / ignore_index losses (the loss of a mixed batch, by hand, and the plain loss when nothing
is mixed), keypoints and boxes (refused before anything trains), tabular batches with nothing to blend, epoch-level
training metrics, schedules that anneal mixing away, and exporting a learner for a machine without fastai_cutmix."""
import subprocess, sys
import numpy as np, pandas as pd, pytest, torch
import torch.nn as nn, torch.nn.functional as F
from sklearn.metrics import f1_score, roc_auc_score
from fastai.basics import (Learner, Callback, Datasets, Recorder, CategoryBlock, noop, set_seed, MSELossFlat, L1LossFlat,
                           CrossEntropyLossFlat, LabelSmoothingCrossEntropyFlat, TensorMask, TensorCategory, F1Score, RocAucBinary)
from fastai.callback.schedule import SchedCos
from fastai.vision.core import TensorPoint, TensorBBox
from fastai.tabular.all import TabularPandas, Categorify, FillMissing, tabular_learner
from fastai_cutmix.core import mixing_learner
from fastai_cutmix.all import MixUp, CutMix, FMix, RICAP, Cutout, fashion_mnist_dls, tiny_cnn
from helpers import quiet, one_thread

class Spy(Callback):
    "After each training loss: the batch as the loss saw it, the mixer's draws and the batch before mixing"
    order = 100
    def __init__(self, mixer): self.mixer,self.rows = mixer,[]
    def after_loss(self):
        if not self.training: return
        mx = self.mixer
        self.rows.append(dict(pred=self.learn.pred.detach().clone(), yb=tuple(y.clone() for y in self.learn.yb),
                              loss=self.learn.loss.detach().clone(), idx=None if mx.idx is None else mx.idx.clone(),
                              wgt=None if mx.wgt is None else mx.wgt.clone(),
                              src=None if mx.idx is None else tuple(y.clone() for y in mx.src_yb)))

def tensor_dls(x, y, bs=16, n_valid=16, tfm_y=noop):
    "`DataLoaders` over tensors `x`, `y`, the last `n_valid` for validation, the targets typed by `tfm_y`"
    n = len(x)
    splits = [list(range(n-n_valid)), list(range(n-n_valid, n))]
    dsets = Datasets(list(range(n)), tfms=[[lambda i: x[i]], [lambda i: tfm_y(y[i])]], splits=splits)
    return dsets.dataloaders(bs=bs, shuffle=False)

def fit_rows(dls, model, loss_func, mixer, n_epoch=1, seed=0, **kw):
    "Fit `model()` (made after seeding) on `dls`, with `mixer` and a `Spy` on it"
    set_seed(seed)
    learn = quiet(Learner(dls, model(), loss_func=loss_func, **kw))
    spy = Spy(mixer) if mixer is not None else None
    learn.fit(n_epoch, 1e-2, cbs=[o for o in (mixer, spy) if o is not None])
    return learn, spy

def mixed_target(y, idx, wgt): return sum(wgt[s].view(-1, *[1]*(y.ndim-1))*y[idx[s]] for s in range(idx.shape[0]))

# ---------------------------------------------------------------------------------------------------------------
# 1. Regression: float targets are mixed themselves, and `learn.yb` holds them

@pytest.fixture(scope='module')
def regression_dls():
    set_seed(0)
    x = torch.randn(96, 5)
    y = x @ torch.tensor([1., -2., .5, 0., 3.]) + .1*torch.randn(96)
    return tensor_dls(x, y[:, None])

@pytest.mark.parametrize('loss_func', [MSELossFlat(), L1LossFlat()], ids=['mse', 'l1'])
def test_regression_trains_on_mixed_targets(one_thread, regression_dls, loss_func):
    mixer = MixUp(alpha=1.)
    learn,spy = fit_rows(regression_dls, lambda: nn.Linear(5, 1), loss_func, mixer)
    assert len(spy.rows)==5
    for r in spy.rows:
        ym = mixed_target(r['src'][0], r['idx'], r['wgt'])
        torch.testing.assert_close(r['yb'][0], ym) # what callbacks and metrics read is what the loss saw
        torch.testing.assert_close(r['loss'], loss_func(r['pred'], ym))
        assert not torch.equal(ym, r['src'][0])

def test_regression_p0_is_plain_training(one_thread, regression_dls):
    "Nothing mixed: the same losses, step by step, as without a mixer"
    plain,_ = fit_rows(regression_dls, lambda: nn.Linear(5, 1), MSELossFlat(), None)
    mixed,_ = fit_rows(regression_dls, lambda: nn.Linear(5, 1), MSELossFlat(), MixUp(p=0.))
    torch.testing.assert_close(torch.stack(list(mixed.recorder.losses)), torch.stack(list(plain.recorder.losses)))

# ---------------------------------------------------------------------------------------------------------------
# 2. Losses whose mean is not a plain mean: class weights, ignore_index (segmentation)

@pytest.fixture(scope='module')
def seg_dls():
    "Random images with a three-class brightness mask, 255 (ignored) on the top and bottom rows"
    set_seed(1)
    x = torch.rand(80, 1, 16, 16)
    m = (x[:, 0]*3).long().clamp(0, 2)
    m[:, 0] = m[:, -1] = 255
    return tensor_dls(x, m, tfm_y=TensorMask)

def seg_model(): return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3, 3, padding=1))

LOSSES = {'weighted': lambda: CrossEntropyLossFlat(axis=1, weight=torch.tensor([3., 1., .2]), ignore_index=255),
          'ignore': lambda: CrossEntropyLossFlat(axis=1, ignore_index=255)}

def by_hand(r, w=None):
    "Sum over sources and pixels of wgt * w[y] * nll, over the same sum of wgt * w[y], y=255 left out"
    num = den = 0.
    logp = F.log_softmax(r['pred'], 1)
    for s in range(r['idx'].shape[0]):
        y = r['src'][0][r['idx'][s]]
        keep = y!=255
        yy = y.masked_fill(~keep, 0)
        cw = (torch.ones(3) if w is None else w)[yy]*keep
        nll = -logp.gather(1, yy[:, None])[:, 0]
        ws = r['wgt'][s].view(-1, 1, 1)
        num,den = num + (ws*cw*nll).sum(),den + (ws*cw).sum()
    return num/den

@pytest.mark.parametrize('name', list(LOSSES))
def test_segmentation_weighted_and_ignored_mixup(one_thread, seg_dls, name):
    mixer = MixUp(alpha=1.)
    learn,spy = fit_rows(seg_dls, seg_model, LOSSES[name](), mixer)
    w = LOSSES[name]().func.weight
    for r in spy.rows: torch.testing.assert_close(r['loss'], by_hand(r, w), atol=1e-5, rtol=1e-5)

@pytest.mark.parametrize('name', list(LOSSES))
@pytest.mark.parametrize('make', [lambda: MixUp(p=0.), lambda: CutMix(p=0.), lambda: RICAP(p=0.)], ids=['mixup', 'cutmix', 'ricap'])
def test_weighted_losses_p0_is_plain_training(one_thread, seg_dls, name, make):
    plain,_ = fit_rows(seg_dls, seg_model, LOSSES[name](), None)
    mixed,_ = fit_rows(seg_dls, seg_model, LOSSES[name](), make())
    torch.testing.assert_close(torch.stack(list(mixed.recorder.losses)), torch.stack(list(plain.recorder.losses)))

def test_weighted_classes(one_thread):
    "Class weights with integer labels (fastai's Categorize gives TensorCategory): the loss by hand, batch by batch"
    dls = fashion_mnist_dls(bs=32, n_train=96, n_valid=32)
    w = torch.linspace(.2, 3., 10)
    mixer = MixUp(alpha=1.)
    learn,spy = fit_rows(dls, tiny_cnn, CrossEntropyLossFlat(weight=w), mixer)
    for r in spy.rows:
        logp = F.log_softmax(r['pred'], 1)
        num = den = 0.
        for s in range(2):
            y = r['src'][0][r['idx'][s]]
            num = num + (r['wgt'][s]*w[y]*-logp.gather(1, y[:, None])[:, 0]).sum()
            den = den + (r['wgt'][s]*w[y]).sum()
        torch.testing.assert_close(r['loss'], num/den, atol=1e-5, rtol=1e-5)

def test_label_smoothing_with_class_weights_refused(one_thread):
    "fastai's LabelSmoothingCrossEntropy with weights has no per-item mean: refused at the first mixed loss, nothing trained"
    dls = fashion_mnist_dls(bs=32, n_train=64, n_valid=32)
    set_seed(0)
    learn = quiet(Learner(dls, tiny_cnn(), loss_func=LabelSmoothingCrossEntropyFlat(weight=torch.linspace(.2, 3., 10)), cbs=MixUp()))
    before = [p.detach().clone() for p in learn.model.parameters()]
    with pytest.raises(ValueError, match=r"cannot mix the loss .*label_smoothing"): learn.fit(1, 1e-2)
    assert all(torch.equal(a, b) for a,b in zip(before, learn.model.parameters()))
    assert type(learn.loss_func).__name__!='MixLoss'

# ---------------------------------------------------------------------------------------------------------------
# 3. Keypoints and boxes

def geo_dls(kind):
    set_seed(2)
    x = torch.rand(48, 3, 16, 16)
    y = torch.rand(48, 4 if kind is TensorBBox else 3, 4 if kind is TensorBBox else 2)*2-1
    return tensor_dls(x, y, tfm_y=kind)

def geo_model(n): return nn.Sequential(nn.Flatten(), nn.Linear(3*16*16, n), nn.Unflatten(1, (-1, 4 if n==16 else 2)))

@pytest.mark.parametrize('kind,make,why', [
    (TensorPoint, CutMix, 'TensorPoint.*keypoints'), (TensorPoint, FMix, 'keypoints'), (TensorPoint, RICAP, 'keypoints'),
    (TensorBBox, CutMix, 'TensorBBox.*boxes cannot be mixed'), (TensorBBox, MixUp, 'TensorBBox.*boxes cannot be mixed'),
    (TensorPoint, lambda: CutMix(p=.0), 'keypoints')]) # refused even when the first batches would not be mixed
def test_points_and_boxes_refused_before_training(one_thread, kind, make, why):
    dls = geo_dls(kind)
    assert isinstance(dls.one_batch()[1], kind)
    learn = quiet(Learner(dls, geo_model(16 if kind is TensorBBox else 6), loss_func=MSELossFlat(), cbs=make()))
    before = [p.detach().clone() for p in learn.model.parameters()]
    with pytest.raises(ValueError, match=why): learn.fit(1, 1e-2)
    assert all(torch.equal(a, b) for a,b in zip(before, learn.model.parameters()))
    assert type(learn.loss_func).__name__!='MixLoss'

@pytest.mark.parametrize('kind', [TensorPoint, TensorBBox])
def test_cutout_keeps_points_and_boxes(one_thread, kind):
    "Cutout erases pixels and moves nothing: points and boxes still describe the image, and are kept as they are"
    mixer = Cutout()
    learn,spy = fit_rows(geo_dls(kind), lambda: geo_model(16 if kind is TensorBBox else 6), MSELossFlat(), mixer)
    for r in spy.rows: assert torch.equal(r['yb'][0], r['src'][0])

def test_mixup_mixes_points_as_targets(one_thread):
    mixer = MixUp(alpha=1.)
    learn,spy = fit_rows(geo_dls(TensorPoint), lambda: geo_model(6), MSELossFlat(), mixer)
    for r in spy.rows:
        torch.testing.assert_close(r['yb'][0], mixed_target(r['src'][0], r['idx'], r['wgt']))
        assert isinstance(r['src'][0], TensorPoint) # as the DataLoader gave it (fastai's CastToTensor makes it a Tensor later)

# ---------------------------------------------------------------------------------------------------------------
# 4. Tabular: a batch with no continuous columns has nothing to blend

def tab_dls(conts):
    rng = np.random.default_rng(0)
    df = pd.DataFrame({'a': rng.choice(list('xyz'), 200), 'b': rng.choice(list('pq'), 200), 'c': rng.normal(size=200),
                       'y': rng.choice(['no', 'yes'], 200)})
    to = TabularPandas(df, procs=[Categorify, FillMissing], cat_names=['a', 'b'], cont_names=['c'] if conts else [],
                       y_names='y', y_block=CategoryBlock(), splits=(list(range(160)), list(range(160, 200))))
    return to.dataloaders(bs=32)

def test_tabular_without_continuous_columns_refused(one_thread):
    learn = quiet(tabular_learner(tab_dls(conts=False), layers=[8], cbs=MixUp()))
    xb = learn.dls.one_batch()[:2]
    assert xb[0].dtype==torch.int64 and xb[1].shape[1]==0
    with pytest.raises(ValueError, match="no input it can mix.*only the targets would be mixed"): learn.fit(1)
    assert type(learn.loss_func).__name__!='MixLoss'

def test_tabular_with_continuous_columns_trains(one_thread):
    mixer = MixUp(alpha=1.)
    learn = quiet(tabular_learner(tab_dls(conts=True), layers=[8]))
    spy = Spy(mixer)
    learn.fit(1, cbs=[mixer, spy])
    assert all(r['idx'] is not None for r in spy.rows)

# ---------------------------------------------------------------------------------------------------------------
# 5. Epoch-level training metrics

def f1_macro(): return F1Score(average='macro')

def train_metric(learn, name):
    rec = learn.recorder
    names = list(rec.metric_names[1:-1])
    return rec.values[-1][names.index(f'train_{name}')]

@pytest.mark.parametrize('metric', [f1_macro, RocAucBinary], ids=['f1', 'rocauc'])
def test_epoch_metrics_unmixed_equal_plain(one_thread, metric):
    "MixUp(p=0.) gives exactly the training F1 (and ROC AUC) of training without a mixer"
    res = []
    for mixer in (None, MixUp(p=0.)):
        set_seed(0)
        dls = fashion_mnist_dls(bs=32, n_train=128, n_valid=32) # made after seeding: the same shuffles; for ROC AUC a binary task (ShoeTargets)
        learn = quiet(Learner(dls, tiny_cnn(n_out=10 if metric is f1_macro else 2), loss_func=CrossEntropyLossFlat(),
                              metrics=metric(), cbs=Recorder(train_metrics=True)))
        if metric is RocAucBinary: learn.add_cb(ShoeTargets())
        learn.fit(1, 1e-2, cbs=mixer)
        res.append(train_metric(learn, learn.metrics[0].name))
    assert res[0]==res[1]

class ShoeTargets(Callback):
    "Turn Fashion-MNIST's ten classes into two: shoe or not"
    order = -10
    def before_batch(self): self.learn.yb = (TensorCategory((self.learn.yb[0]>=5) & (self.learn.yb[0]!=6) & (self.learn.yb[0]!=8)).long(),)

def test_epoch_f1_is_the_weighted_confusion(one_thread):
    "With mixing: the training F1 of the epoch counts every sample once per source, weighed by its share"
    dls = fashion_mnist_dls(bs=32, n_train=128, n_valid=32)
    mixer = MixUp(alpha=1.)
    set_seed(0)
    learn = quiet(Learner(dls, tiny_cnn(), loss_func=CrossEntropyLossFlat(), metrics=f1_macro(), cbs=Recorder(train_metrics=True)))
    spy = Spy(mixer)
    learn.fit(1, 1e-2, cbs=[mixer, spy])
    ys,ps,ws = [],[],[]
    for r in spy.rows:
        p = r['pred'].argmax(1)
        for s in range(2): ys.append(r['src'][0][r['idx'][s]]); ps.append(p); ws.append(r['wgt'][s])
    want = f1_score(torch.cat(ys), torch.cat(ps), average='macro', sample_weight=torch.cat(ws))
    plain = f1_score(torch.cat(ys[::2]), torch.cat(ps[::2]), average='macro')
    got = train_metric(learn, 'f1_score')
    assert abs(got-want) < 1e-6 and abs(want-plain) > 1e-3

# ---------------------------------------------------------------------------------------------------------------
# 6. A schedule that anneals mixing away ends without mixing

def test_annealed_alpha_stops_mixing_at_the_end(one_thread):
    sched = SchedCos(.4, 0.)
    x,y = torch.randn(512, 5),torch.randint(0, 3, (512,))
    for pct in (.97, .99, .999):
        cb = MixUp(alpha=sched)
        mixing_learner(cb, x, y, pct_train=pct)
        assert float(sched(pct)) < 2e-3
        assert (cb.wgt==.5).sum()==0 # torch's own Beta sampler gives 0.5 here, for many of the draws
        assert (cb.wgt[0]>.99).float().mean() > .9 # Beta(a, a) for tiny a: nearly every sample stays itself
    a = torch.full((512,), float(sched(.99)))
    assert (torch.distributions.Beta(a, a).sample()==.5).float().mean() > .1

# ---------------------------------------------------------------------------------------------------------------
# 7. Exporting a learner for a machine without fastai_cutmix

LOAD = """
import sys
sys.modules['fastai_cutmix'] = None # not installed
from fastai.vision.all import load_learner
print(load_learner(sys.argv[1]).predict(sys.argv[2])[0])
"""

@pytest.fixture(scope='module')
def folder_dls(tmp_path_factory):
    "An image folder, as users have them: two classes of Fashion-MNIST PNGs, read by fastai's own DataBlock"
    from PIL import Image
    import fastai, pickle
    from fastai.vision.all import ImageDataLoaders
    from fastai_cutmix.data import fashion_mnist
    root = tmp_path_factory.mktemp('images')
    (x,y),_ = fashion_mnist().values()
    for c in (0, 1):
        (root/str(c)).mkdir()
        for k,i in enumerate((y==c).nonzero()[:24, 0].tolist()): Image.fromarray(x[i].numpy()).save(root/str(c)/f'{k}.png')
    dls = ImageDataLoaders.from_folder(root, valid_pct=.25, seed=0, bs=16, num_workers=0)
    try: pickle.dumps(dls.new_empty())
    except TypeError as e: pytest.skip(f"fastai {fastai.__version__} cannot export image DataLoaders here, mixer or not ({e}: "
                                       "its transforms are dispatching functions of fasttransform); the newest fastai can")
    return dls, root/'0'/'0.png'

@pytest.mark.parametrize('how', ['remove_cb', 'fit_cbs', 'kept'])
def test_export_without_the_mixer(one_thread, tmp_path, folder_dls, how):
    "As the docs say: pass the mixer to fit(cbs=...) or remove it before export, and the learner loads without this library"
    dls,img = folder_dls
    mixer = CutMix()
    learn = quiet(Learner(dls, tiny_cnn(n_in=3, n_out=2), loss_func=CrossEntropyLossFlat(), cbs=None if how=='fit_cbs' else mixer))
    learn.fit(1, 1e-2, cbs=mixer if how=='fit_cbs' else None)
    if how=='remove_cb': learn.remove_cb(mixer)
    learn.logger = print # `quiet`'s `noop` is a dispatching function that cannot be pickled
    learn.export(tmp_path/'model.pkl')
    r = subprocess.run([sys.executable, '-c', LOAD, str(tmp_path/'model.pkl'), str(img)], capture_output=True, text=True)
    assert (r.returncode==0)==(how!='kept'), r.stderr[-1500:]
    if how!='kept': assert r.stdout.strip() in ('0', '1')

# ---------------------------------------------------------------------------------------------------------------
# What fastai's own callbacks do in the same cases (the README's comparison)

from fastai.callback.mixup import MixUp as FastaiMixUp, CutMix as FastaiCutMix

def test_fastai_weighted_loss_divides_by_items(one_thread):
    "fastai's MixUp with class weights: the lerp of the per-item losses over the number of items, not over the weights"
    dls = fashion_mnist_dls(bs=32, n_train=64, n_valid=32)
    w = torch.linspace(.2, 3., 10)
    mixer = FastaiMixUp(1.)
    set_seed(0)
    learn = quiet(Learner(dls, tiny_cnn(), loss_func=CrossEntropyLossFlat(weight=w)))
    rows = []
    class Grab(Callback):
        order = 100
        def after_loss(self):
            if self.training: rows.append((self.learn.pred.detach(), mixer.yb1[0].clone(), self.learn.yb[0].clone(), mixer.lam.clone(), self.learn.loss.detach()))
    learn.fit(1, 1e-2, cbs=[mixer, Grab()])
    for pred,y1,y,lam,loss in rows:
        l = lambda t: F.cross_entropy(pred, t, weight=w, reduction='none')
        torch.testing.assert_close(loss, torch.lerp(l(y1), l(y), lam.view(-1)).mean())

def test_fastai_mixup_crashes_on_tabular(one_thread):
    learn = quiet(tabular_learner(tab_dls(conts=True), layers=[8]))
    with pytest.raises(Exception): learn.fit(1, cbs=FastaiMixUp())

def test_fastai_cutmix_trains_on_keypoints(one_thread):
    "fastai's CutMix trains on TensorPoint targets without a word, though the keypoints no longer describe the image"
    learn = quiet(Learner(geo_dls(TensorPoint), geo_model(6), loss_func=MSELossFlat()))
    learn.fit(1, 1e-2, cbs=FastaiCutMix())
    assert np.isfinite(learn.recorder.values[-1][0])
