"""The mixers inside real fastai training on real Fashion-MNIST: whole fits, export and inference, interruptions
(Ctrl-C and fastai's Cancel exceptions) and what the learner looks like afterwards, two mixers on one learner,
`p` and `stop_pct`, reproducibility, plain PyTorch losses and awkward batch sizes."""
import math, random
import numpy as np, pytest, torch
import torch.nn.functional as F
import matplotlib.pyplot as plt
from fastai_cutmix.all import *
from fastai.callback.mixup import MixUp as FastaiMixUp
from fastcore.test import test_close as assert_close
# the star import brings fastcore's `test`, `test_eq`, `test_close`...: pytest would collect them as tests
for _n in [n for n in dir() if n.startswith('test')]: del globals()[_n]

MIXERS = {'cutmix': lambda: CutMix(), 'cutmix_per_sample': lambda: CutMix(per_sample=True), 'mixup': lambda: MixUp()}

# ---------------------------------------------------------------------------------------------------------------
# Helpers

from helpers import quiet, mk_learner, mixers_of, model_inputs

def unwrap(lf):
    "How many `MixLoss` are wrapped around the innermost loss, and that loss"
    depth = 0
    while isinstance(lf, MixLoss): depth,lf = depth+1,lf.loss_func
    return depth,lf

class Probe(Callback):
    "Runs after the mixer; for every batch (training and validation) records what the mixer did and the loss in use"
    order,run_valid = 10,True
    def __init__(self): self.rows = []
    def after_loss(self):
        ms = mixers_of(self.learn)
        wgt = ms[0].wgt if ms else None
        depth,inner = unwrap(self.learn.loss_func)
        self.rows.append(dict(epoch=self.learn.epoch, iter=self.learn.iter, training=self.learn.training,
            lf=self.learn.loss_func, depth=depth, inner=inner, bs=find_bs(self.learn.yb),
            wgt=None if wgt is None else wgt.detach().clone(), loss=self.learn.loss.float().mean().item()))
    def train_rows(self): return [r for r in self.rows if r['training']]
    def valid_rows(self): return [r for r in self.rows if not r['training']]

class Tap(Callback):
    "Runs before the mixer: keeps a copy of each training batch as the DataLoader gave it"
    order,run_valid = -5,False
    def __init__(self): self.xs = []
    def before_batch(self): self.xs.append(self.learn.xb[0].detach().clone())

class Interrupt(Callback):
    "Raises `exc` at `event` of training batch `at_iter` of epoch `at_epoch`, after noting the learner's state then"
    order,run_valid = 20,False
    def __init__(self, event, exc=KeyboardInterrupt, at_iter=3, at_epoch=0):
        store_attr('event,exc,at_iter,at_epoch')
        self.fired,self.lf_then,self.mixed_then = False,None,None
    def _maybe(self, event):
        if event!=self.event or self.fired or self.learn.epoch!=self.at_epoch or self.learn.iter!=self.at_iter: return
        self.fired,self.lf_then = True,self.learn.loss_func
        self.mixed_then = any(m.wgt is not None for m in mixers_of(self.learn))
        raise self.exc()
    def after_pred(self): self._maybe('after_pred')
    def after_loss(self): self._maybe('after_loss')
    def before_step(self): self._maybe('before_step')

def twin_of(learn):
    "An identical learner that never mixed: same data, same weights (copied now), its own fresh loss"
    twin,_ = mk_learner(learn.dls, model=tiny_cnn())
    twin.model.load_state_dict(learn.model.state_dict())
    return twin

def record_finite(learn):
    "The last epoch's train loss, valid loss and metric are all finite numbers"
    vals = learn.recorder.values[-1]
    assert len(vals)==3 and all(math.isfinite(float(v)) for v in vals), vals
    return vals

@pytest.fixture(scope='module')
def test_image():
    "A real 28×28 `uint8` Fashion-MNIST test image that is in none of the fixture's sets"
    img = fashion_mnist()['test'][0][1000]
    assert img.dtype==torch.uint8 and img.shape==(28, 28)
    return img

@pytest.fixture(scope='module')
def small_dls():
    "256 training and 64 validation images: enough for the resnet18 runs, which are slow on two CPU cores"
    return fashion_mnist_dls(bs=64, n_train=256, n_valid=64)

@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close('all')

# ---------------------------------------------------------------------------------------------------------------
# 1. Real training, export, inference

@pytest.mark.parametrize('name', list(MIXERS))
def test_short_fit_then_export_and_predict(fmnist_dls, tmp_path, test_image, name):
    learn,lf = mk_learner(fmnist_dls, MIXERS[name]())
    probe = Probe()
    learn.fit_one_cycle(1, 1e-2, cbs=probe)
    _,_,acc = record_finite(learn)
    assert acc > .2, f"one epoch with {name} should beat chance (.1) clearly, got accuracy {acc}"
    assert learn.loss_func is lf
    tr,va = probe.train_rows(), probe.valid_rows()
    assert len(tr)==16 and len(va)==4
    assert all(r['depth']==1 and r['inner'] is lf and r['wgt'] is not None for r in tr), "every training batch mixed, under one MixLoss"
    assert all(r['lf'] is lf for r in va), "validation runs on the learner's own loss"
    assert all(math.isfinite(r['loss']) for r in probe.rows)

    fn = tmp_path/'mixed.pkl'
    learn.export(fn)
    assert learn.loss_func is lf
    learn2 = load_learner(fn)
    assert isinstance(learn2.loss_func, CrossEntropyLossFlat) and not isinstance(learn2.loss_func, MixLoss)
    (m2,) = mixers_of(learn2)
    assert type(m2) is type(mixers_of(learn)[0]) and m2.learn is learn2

    cls,idx,probs = learn.predict(test_image)
    cls2,idx2,probs2 = learn2.predict(test_image)
    assert cls in FMNIST_CLASSES and cls==cls2 and cls==FMNIST_CLASSES[int(idx)]
    assert int(idx)==int(idx2)
    assert_close(probs, probs2, eps=1e-6)
    assert_close(probs.sum(), 1., eps=1e-5)
    assert learn.loss_func is lf and unwrap(learn2.loss_func)[0]==0

def test_resnet_fit_one_cycle_and_fine_tune(small_dls, tmp_path):
    learn = quiet(vision_learner(small_dls, resnet18, pretrained=False, n_in=1, metrics=accuracy, cbs=CutMix(per_sample=True)))
    learn.path = tmp_path
    lf = learn.loss_func
    probe = Probe(); learn.add_cb(probe)
    learn.fit_one_cycle(1)
    record_finite(learn)
    assert learn.loss_func is lf
    assert all(r['depth']==1 and r['inner'] is lf and r['wgt'] is not None for r in probe.train_rows())
    probe.rows = []
    learn.fine_tune(1)
    record_finite(learn)
    assert learn.loss_func is lf
    tr = probe.train_rows()
    assert {r['epoch'] for r in tr}=={0} and len(tr)==2*len(small_dls.train), "fine_tune(1): a frozen fit, then an unfrozen one"
    assert all(r['depth']==1 and r['inner'] is lf and r['wgt'] is not None for r in tr)
    assert all(r['lf'] is lf for r in probe.valid_rows())

def test_resnet_lr_find_then_fit(small_dls, tmp_path):
    learn = quiet(vision_learner(small_dls, resnet18, pretrained=False, n_in=1, metrics=accuracy, cbs=MixUp()))
    learn.path = tmp_path # LRFinder saves the model under learn.path/models
    lf = learn.loss_func
    probe = Probe(); learn.add_cb(probe)
    before = {k: v.clone() for k,v in learn.model.state_dict().items()}
    res = learn.lr_find(num_it=8, show_plot=False)
    assert math.isfinite(res.valley) and res.valley > 0
    assert learn.loss_func is lf
    tr = probe.train_rows()
    assert 1 < len(tr) <= 8 and all(r['depth']==1 and r['inner'] is lf and r['wgt'] is not None for r in tr)
    after = learn.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "lr_find puts the weights back"
    probe.rows = []
    learn.fit_one_cycle(1, res.valley)
    record_finite(learn)
    assert learn.loss_func is lf
    assert len(probe.train_rows())==len(small_dls.train)
    assert all(r['depth']==1 and r['wgt'] is not None for r in probe.train_rows())

# ---------------------------------------------------------------------------------------------------------------
# 2. Interruption: the learner afterwards behaves exactly like one that never mixed

def _interrupted(dls, attach, event, mixer):
    "A learner whose mixer (attached at construction or passed to `fit`) was interrupted by Ctrl-C at `event`"
    learn,lf = mk_learner(dls, mixer if attach=='init' else None)
    boom = Interrupt(event)
    with pytest.raises(KeyboardInterrupt): learn.fit(2, 1e-2, cbs=[boom] if attach=='init' else [mixer, boom])
    assert boom.fired and boom.mixed_then, "the interrupt hit a mixed batch"
    assert unwrap(boom.lf_then)==(1, lf), "and hit it while the learner's loss was swapped"
    if attach=='fit': assert mixer not in learn.cbs and mixer.learn is None
    return learn,lf

def _same_preds(learn, twin, **kwargs):
    a,b = learn.get_preds(**kwargs),twin.get_preds(**kwargs)
    assert len(a)==len(b)
    for x,y in zip(a,b): assert torch.equal(x, y), kwargs

def _inference_probe(learn, lf, probe):
    "Inside the call (from its `before_fit` on) the learner already ran on its own loss, unmixed"
    assert len(probe.rows)==4 and all(not r['training'] and r['lf'] is lf and r['wgt'] is None for r in probe.rows)

def _check_get_preds(learn, twin, lf, **_):
    probe = Probe()
    a,b = learn.get_preds(cbs=probe),twin.get_preds()
    _inference_probe(learn, lf, probe)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
def _check_get_preds_loss(learn, twin, lf, **_):
    _same_preds(learn, twin, with_decoded=True, with_loss=True) # preds, targets, decoded, losses
def _check_predict(learn, twin, lf, img, **_):
    a,b = learn.predict(img),twin.predict(img)
    assert a[0]==b[0] and int(a[1])==int(b[1])
    assert torch.equal(a[2], b[2])
def _check_validate(learn, twin, lf, **_):
    probe = Probe()
    a,b = learn.validate(cbs=probe),twin.validate()
    _inference_probe(learn, lf, probe)
    assert len(a)==2
    assert_close(a, b, eps=1e-7)
def _check_show_results(learn, twin, lf, **_):
    learn.show_results(max_n=4)
    assert plt.get_fignums()
def _check_interp(learn, twin, lf, **_):
    a,b = ClassificationInterpretation.from_learner(learn),ClassificationInterpretation.from_learner(twin)
    assert torch.equal(a.losses, b.losses)
    ca,cb = a.confusion_matrix(),b.confusion_matrix()
    assert ca.shape==(10, 10) and ca.sum()==256 and np.array_equal(ca, cb)
def _check_export(learn, twin, lf, img, tmp, **_):
    learn.export(tmp/'after_interrupt.pkl')
    loaded = load_learner(tmp/'after_interrupt.pkl')
    # the loaded learner's first call: its losses, predictions and targets on the validation set are the clean ones
    _same_preds(loaded, twin, dl=twin.dls.valid, with_loss=True)
    assert unwrap(loaded.loss_func)==(0, loaded.loss_func), "the loaded learner ends up with a plain loss"
    a,b = loaded.predict(img),twin.predict(img)
    assert a[0]==b[0] and torch.equal(a[2], b[2])

CHECKS = dict(get_preds=_check_get_preds, get_preds_loss=_check_get_preds_loss, predict=_check_predict,
              validate=_check_validate, show_results=_check_show_results, interp=_check_interp, export=_check_export)

def _run_checks(order, learn, lf, img, tmp):
    twin = twin_of(learn)
    for name in order:
        CHECKS[name](learn, twin, lf, img=img, tmp=tmp)
        # export fires no event: a mixer attached at construction heals the loss at the next before_fit, as documented
        if name=='export' and isinstance(learn.loss_func, MixLoss): continue
        assert learn.loss_func is lf, f"after {name}: the learner's own loss object is back"
        assert all(m.idx is None and m.wgt is None for m in mixers_of(learn))

INTERRUPTS = [('after_pred', 'mixup'), ('after_loss', 'cutmix'), ('before_step', 'cutmix_per_sample')]

@pytest.mark.parametrize('attach', ['init', 'fit'])
@pytest.mark.parametrize('event,name', INTERRUPTS)
def test_interrupt_then_inference_matches_clean_learner(fmnist_dls, tmp_path, test_image, attach, event, name):
    learn,lf = _interrupted(fmnist_dls, attach, event, MIXERS[name]())
    if attach=='fit': assert learn.loss_func is lf, "a mixer passed to fit gives the loss back as fastai detaches it"
    _run_checks(['get_preds', 'get_preds_loss', 'predict', 'validate', 'show_results', 'interp', 'export'],
                learn, lf, test_image, tmp_path)

# The first thing done after Ctrl-C must already see the clean learner: the mixer attached at construction only
# heals the loss at the next `before_fit`, so each entry point is tried first.
FIRSTS = CHECKS

@pytest.mark.parametrize('first', FIRSTS)
def test_interrupt_then_first_call_sees_clean_learner(fmnist_dls, tmp_path, test_image, first):
    learn,lf = _interrupted(fmnist_dls, 'init', 'after_loss', MixUp())
    _run_checks(dict.fromkeys([first, 'get_preds']), learn, lf, test_image, tmp_path) # the full list is run above

@pytest.mark.parametrize('attach', ['init', 'fit'])
def test_fit_after_interrupt_trains_normally(fmnist_dls, attach):
    mixer = MixUp()
    learn,lf = _interrupted(fmnist_dls, attach, 'after_loss', mixer)
    probe = Probe()
    learn.fit(1, 1e-2, cbs=[probe] if attach=='init' else [mixer, probe])
    record_finite(learn)
    assert learn.loss_func is lf
    tr = probe.train_rows()
    assert len(tr)==16 and all(r['depth']==1 and r['inner'] is lf and r['wgt'] is not None for r in tr)
    assert all(math.isfinite(r['loss']) for r in tr)
    assert all(r['lf'] is lf for r in probe.valid_rows()) and len(probe.valid_rows())==4

@pytest.mark.parametrize('attach', ['init', 'fit'])
@pytest.mark.parametrize('exc', [CancelFitException, CancelEpochException, CancelTrainException, CancelBatchException])
def test_fastai_cancel_exceptions(fmnist_dls, attach, exc):
    mixer = CutMix(per_sample=True)
    learn,lf = mk_learner(fmnist_dls, mixer if attach=='init' else None)
    probe,stop = Probe(),Interrupt('after_loss', exc=exc, at_iter=3, at_epoch=0)
    learn.fit(2, 1e-2, cbs=[probe, stop] if attach=='init' else [mixer, probe, stop]) # fastai catches its own
    assert stop.fired and stop.mixed_then and unwrap(stop.lf_then)==(1, lf)
    assert learn.loss_func is lf
    assert all(r['depth']<=1 and r['inner'] is lf for r in probe.rows), "never a MixLoss around a MixLoss"
    tr,va = probe.train_rows(),probe.valid_rows()
    assert all(r['depth']==1 and r['wgt'] is not None for r in tr), "every training batch mixed"
    assert all(r['lf'] is lf for r in va), "validation always on the learner's own loss"
    per_epoch = [(len([r for r in tr if r['epoch']==e]), len([r for r in va if r['epoch']==e])) for e in (0, 1)]
    expected = {CancelFitException: [(4, 0), (0, 0)],    # the fit ends at batch 3
                CancelEpochException: [(4, 0), (16, 4)], # epoch 0 loses the rest of training and its validation
                CancelTrainException: [(4, 4), (16, 4)], # epoch 0 loses the rest of training only
                CancelBatchException: [(16, 4), (16, 4)]}[exc]
    assert per_epoch==expected
    if exc is not CancelFitException: assert all(math.isfinite(r['loss']) for r in probe.rows)
    twin = twin_of(learn)
    _same_preds(learn, twin, with_loss=True, with_decoded=True)
    assert learn.loss_func is lf

# ---------------------------------------------------------------------------------------------------------------
# 3. The defect of fastai's own MixUp that this library fixes

def test_fastai_mixup_keeps_swapped_loss_after_interrupt(fmnist_dls):
    fmix = FastaiMixUp()
    learn,lf = mk_learner(fmnist_dls, fmix)
    with pytest.raises(KeyboardInterrupt): learn.fit(1, 1e-2, cbs=Interrupt('after_loss'))
    learn.get_preds()
    if learn.loss_func is lf: pytest.skip("this fastai's MixUp gives the loss back after an interrupt")
    assert getattr(learn.loss_func, '__self__', None) is fmix, "fastai's learner is left with MixUp.lf as its loss"
    # ours, in the same spot, gives the loss back
    ours,lf2 = _interrupted(fmnist_dls, 'init', 'after_loss', MixUp())
    ours.get_preds()
    assert ours.loss_func is lf2

# ---------------------------------------------------------------------------------------------------------------
# 4. Two mixers on one learner

@pytest.mark.parametrize('where', ['init', 'fit', 'both'])
def test_two_mixers_raise_and_leave_learner_usable(fmnist_dls, where):
    mu,cm = MixUp(),CutMix()
    init = {'init': [mu, cm], 'fit': None, 'both': mu}[where]
    extra = {'init': None, 'fit': [mu, cm], 'both': cm}[where]
    learn,lf = mk_learner(fmnist_dls, init)
    with pytest.raises(ValueError, match="One mixing callback"): learn.fit(1, 1e-2, cbs=extra)
    assert learn.loss_func is lf
    if where=='init': learn.remove_cb(CutMix)
    assert cm not in learn.cbs and all(m.learn is None for m in (mu, cm) if m not in learn.cbs)
    probe = Probe()
    learn.fit(1, 1e-2, cbs=probe if where!='fit' else [mu, probe])
    record_finite(learn)
    assert learn.loss_func is lf
    tr = probe.train_rows()
    assert len(tr)==16 and all(r['depth']==1 and r['lf'].mixer is mu and r['wgt'] is not None for r in tr)

# ---------------------------------------------------------------------------------------------------------------
# 5. p and stop_pct

@pytest.mark.parametrize('name', ['mixup', 'cutmix'])
def test_p_zero_mixes_nothing(fmnist_dls, name):
    mixer = {'mixup': lambda: MixUp(p=0.), 'cutmix': lambda: CutMix(p=0.)}[name]()
    learn,lf = mk_learner(fmnist_dls, mixer)
    seen,h = model_inputs(learn.model)
    tap,probe = Tap(),Probe()
    try: learn.fit(1, 1e-2, cbs=[tap, probe])
    finally: h.remove()
    tr = probe.train_rows()
    assert len(tr)==len(tap.xs)==len(seen)==16
    assert all(r['wgt'] is None for r in tr) and mixer.idx is None
    assert all(torch.equal(a, b) for a,b in zip(tap.xs, seen)), "the model sees the DataLoader's batches untouched"
    assert learn.loss_func is lf

def test_p_one_mixes_every_input(fmnist_dls):
    "The control for the test above: the same taps do see a difference when batches are mixed"
    learn,lf = mk_learner(fmnist_dls, MixUp())
    seen,h = model_inputs(learn.model)
    tap = Tap()
    try: learn.fit(1, 1e-2, cbs=tap)
    finally: h.remove()
    assert len(tap.xs)==len(seen)==16
    assert not any(torch.equal(a, b) for a,b in zip(tap.xs, seen))

@pytest.mark.parametrize('name', ['mixup', 'cutmix_per_sample'])
# (.125, 3, 6): fastai's `pct_train`, a sum of 1/48s, is 0.12499999999999999 after the 6th batch: one more would be mixed
@pytest.mark.parametrize('stop_pct,n_epoch,n_mixed', [(.5, 2, 16), (.25, 1, 4), (.125, 3, 6)])
def test_stop_pct(fmnist_dls, name, stop_pct, n_epoch, n_mixed):
    mixer = {'mixup': lambda: MixUp(stop_pct=stop_pct), 'cutmix_per_sample': lambda: CutMix(per_sample=True, stop_pct=stop_pct)}[name]()
    learn,lf = mk_learner(fmnist_dls, mixer)
    probe = Probe()
    learn.fit(n_epoch, 1e-2, cbs=probe)
    mixed = [r['wgt'] is not None for r in probe.train_rows()]
    assert mixed==[True]*n_mixed + [False]*(16*n_epoch-n_mixed)
    if n_epoch==2: assert all(r['wgt'] is not None for r in probe.train_rows() if r['epoch']==0)
    assert learn.loss_func is lf
    record_finite(learn)

def test_p_half_mixes_some_batches(fmnist_dls):
    mixer = MixUp(p=.5)
    learn,lf = mk_learner(fmnist_dls, mixer)
    seen,h = model_inputs(learn.model)
    tap,probe = Tap(),Probe()
    try: learn.fit(2, 1e-2, cbs=[tap, probe])
    finally: h.remove()
    mixed = [r['wgt'] is not None for r in probe.train_rows()]
    assert len(mixed)==32 and 4 <= sum(mixed) <= 28, sum(mixed)
    # a batch reaches the model untouched exactly when it was not mixed
    assert [not torch.equal(a, b) for a,b in zip(tap.xs, seen)]==mixed
    assert learn.loss_func is lf

# ---------------------------------------------------------------------------------------------------------------
# 6. Reproducibility

def _one_epoch(dls, make_mixer, init, seed):
    "One epoch from weights `init` after `set_seed(seed)`, with the DataLoader's own shuffling fixed as well"
    old_rng = dls.train.rng
    set_seed(seed)
    dls.train.rng = random.Random(0) # the DataLoader keeps its own `random.Random`, which `set_seed` does not reach
    try:
        model = tiny_cnn(); model.load_state_dict(init)
        learn,_ = mk_learner(dls, make_mixer(), model=model)
        learn.fit(1, 1e-2)
        return {k: v.detach().clone() for k,v in learn.model.state_dict().items()}
    finally: dls.train.rng = old_rng

@pytest.mark.parametrize('name', ['cutmix_per_sample', 'mixup'])
def test_same_seed_same_weights(fmnist_dls, name):
    init = {k: v.clone() for k,v in tiny_cnn().state_dict().items()}
    a = _one_epoch(fmnist_dls, MIXERS[name], init, 1)
    b = _one_epoch(fmnist_dls, MIXERS[name], init, 1)
    assert all(torch.equal(a[k], b[k]) for k in a)
    c = _one_epoch(fmnist_dls, MIXERS[name], init, 2) # only the mixer's draws differ
    assert not all(torch.equal(a[k], c[k]) for k in a)

# ---------------------------------------------------------------------------------------------------------------
# 7. Integer labels under a plain PyTorch loss

class CheckLoss(Callback):
    "After the mixer: the loss of each mixed batch equals the per-source cross-entropies weighed by `wgt`"
    order,run_valid = 10,False
    def __init__(self): self.n = 0
    def after_loss(self):
        (m,) = mixers_of(self.learn)
        if m.idx is None: return
        pred,y = self.learn.pred.as_subclass(Tensor),self.learn.yb[0].as_subclass(Tensor)
        assert not y.is_floating_point()
        ls = [F.cross_entropy(pred, y[i], reduction='none') for i in m.idx]
        assert_close(self.learn.loss, sum(w*l for w,l in zip(m.wgt, ls)).mean(), eps=1e-4)
        self.n += 1

@pytest.mark.parametrize('name', ['mixup', 'cutmix'])
def test_plain_cross_entropy_with_integer_labels(fmnist_dls, name):
    lf = nn.CrossEntropyLoss()
    assert not hasattr(lf, 'y_int')
    learn,_ = mk_learner(fmnist_dls, MIXERS[name](), loss_func=lf)
    check = CheckLoss()
    learn.fit(1, 1e-2, cbs=check)
    assert check.n==16
    record_finite(learn)
    assert learn.loss_func is lf
    preds,targs = learn.get_preds()
    assert preds.shape==(256, 10) and targs.dtype==torch.int64

def test_fastai_mixup_crashes_on_plain_cross_entropy(fmnist_dls):
    "The contrast: fastai's MixUp lerps integer targets when the loss has no `y_int`"
    learn,_ = mk_learner(fmnist_dls, FastaiMixUp(), loss_func=nn.CrossEntropyLoss())
    try: learn.fit(1, 1e-2)
    except RuntimeError: return
    pytest.skip("this fastai's MixUp trains with nn.CrossEntropyLoss")

# ---------------------------------------------------------------------------------------------------------------
# 8. Batch size 1 and odd batch sizes

@pytest.fixture(scope='module')
def odd_dls():
    "23 training images in batches of 5, the last one kept: batches of 5, 5, 5, 5 and 3"
    return fashion_mnist_dls(bs=5, n_train=23, n_valid=7, drop_last=False)

@pytest.fixture(scope='module')
def bs1_dls():
    return fashion_mnist_dls(bs=1, n_train=6, n_valid=3)

@pytest.mark.parametrize('name', list(MIXERS))
@pytest.mark.parametrize('which', ['odd', 'bs1'])
def test_small_and_odd_batches(odd_dls, bs1_dls, name, which):
    dls = odd_dls if which=='odd' else bs1_dls
    learn,lf = mk_learner(dls, MIXERS[name]())
    probe = Probe()
    learn.fit(2, 1e-3, cbs=probe)
    tr = probe.train_rows()
    sizes = sorted(r['bs'] for r in tr)
    assert sizes==(sorted([5, 5, 5, 5, 3]*2) if which=='odd' else [1]*12)
    for r in tr:
        assert r['wgt'] is not None and r['wgt'].shape==(2, r['bs'])
        assert_close(r['wgt'].sum(0), torch.ones(r['bs']), eps=1e-6)
        assert math.isfinite(r['loss'])
    assert learn.loss_func is lf
    record_finite(learn)
