"""Every member of the mixing family inside real fastai training on real Fashion-MNIST (and on the colour, non-square
photos of `photo_dls`): short fits, Ctrl-C in the middle of a batch, honest training metrics computed by hand,
schedules, `cb.show`, export and inference, two mixers on one learner, and DeiT's CutMixUp + label smoothing recipe."""
import math, re
import numpy as np, pytest, torch
import torch.nn.functional as F
import matplotlib.pyplot as plt
from sklearn.metrics import f1_score
from fastai_cutmix.all import *
from fastcore.test import test_close as assert_close
# the star import brings fastcore's `test`, `test_eq`, `test_close`...: pytest would collect them as tests
for _n in [n for n in dir() if n.startswith('test')]: del globals()[_n]

# ---------------------------------------------------------------------------------------------------------------
# Helpers

from helpers import quiet, mk_learner, mixers_of, MEMBERS, members

# the members that take segmentation masks: all but the per-sample choices between a method that cuts masks and one
# that weighs them whole, which refuse them (a clear error, tested below)
MASKS = [n for n in MEMBERS if n not in ('cutmixup_per_sample', 'choice_per_sample')]

def col(learn, name):
    "The value of column `name` (e.g. 'train_accuracy') in the last epoch the `Recorder` recorded"
    names = list(learn.recorder.metric_names)
    assert name in names, names
    return float(learn.recorder.values[-1][names.index(name)-1]) # `values` has no 'epoch' column

class Probe(Callback):
    "After the mixer, on every training batch: what the mixer did and the loss in use"
    order,run_valid = 10,False
    def __init__(self): self.rows = []
    def after_loss(self):
        (m,) = mixers_of(self.learn)
        self.rows.append(dict(iter=self.learn.iter, lf=self.learn.loss_func, loss=float(self.learn.loss),
                              mixed=m.idx is not None, pct=float(self.learn.pct_train),
                              cur_alpha=getattr(m, 'cur_alpha', None)))

class StopAfter(Callback):
    "Ends the fit (fastai's `CancelFitException`) after training batch `n`"
    order = 90
    def __init__(self, n): self.n = n
    def after_batch(self):
        if self.training and self.iter>=self.n: raise CancelFitException()

class Interrupt(Callback):
    "Ctrl-C at `event` of training batch `at_iter` (the third by default), after noting the learner's state then"
    order,run_valid = 20,False
    def __init__(self, event='after_loss', at_iter=2): self.event,self.at_iter,self.fired = event,at_iter,False
    def _maybe(self, event):
        if event!=self.event or self.fired or self.iter!=self.at_iter: return
        (m,) = mixers_of(self.learn)
        self.fired,self.lf_then,self.wgt_then = True,self.learn.loss_func,m.wgt
        self.mets_then = list(self.learn.metrics)
        raise KeyboardInterrupt()
    def after_loss(self): self._maybe('after_loss')
    def before_backward(self): self._maybe('before_backward')

@pytest.fixture(scope='module')
def test_image():
    "A real 28×28 `uint8` Fashion-MNIST test image that is in none of the fixture's sets"
    img = fashion_mnist()['test'][0][1000]
    assert img.dtype==torch.uint8 and img.shape==(28, 28)
    return img

@pytest.fixture(scope='module')
def photos(): return photo_dls()

@pytest.fixture(scope='module')
def photo_masks(): return photo_dls(masks=True)

@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close('all')

# ---------------------------------------------------------------------------------------------------------------
# 1. A real short fit with every member

@pytest.mark.parametrize('make', members())
def test_member_trains(fmnist_dls, make):
    mixer = make()
    learn,lf = mk_learner(fmnist_dls, mixer)
    probe = Probe()
    learn.fit(1, 1e-2, cbs=probe)
    train_loss,valid_loss,acc = learn.recorder.values[-1]
    assert all(math.isfinite(float(v)) for v in (train_loss, valid_loss, acc))
    assert len(probe.rows)==16 and all(math.isfinite(r['loss']) for r in probe.rows)
    assert all(r['mixed'] for r in probe.rows), "every training batch mixed"
    assert all(isinstance(r['lf'], MixLoss) and r['lf'].loss_func is lf and r['lf'].mixer is mixer for r in probe.rows)
    assert learn.loss_func is lf, "the learner's own loss object is back after the fit"
    assert mixer.idx is None and mixer.wgt is None
    vl,va = learn.validate()
    assert_close(float(valid_loss), float(vl), eps=1e-6)
    assert_close(float(acc), float(va), eps=1e-6)
    assert learn.loss_func is lf

@pytest.mark.parametrize('make', members(['cutmix', 'cutmixup', 'cutmixup_per_sample', 'choice_per_sample']) + [
    pytest.param(lambda: CutMixUp(mixup_alpha=SchedLin(.8, .2), cutmix_alpha=SchedLin(1., .5)), id='cutmixup_scheduled')])
def test_member_trains_two_epochs(fmnist_dls, make):
    """The second epoch's batches are laid out as the first's, which were checked, so they are not checked again; they
    are mixed all the same, by a choice's members too, whose learner `after_train` took from them (a member's schedule
    reads the training's progress off it)"""
    mixer = make()
    learn,lf = mk_learner(fmnist_dls, mixer)
    probe = Probe()
    learn.fit(2, 1e-2, cbs=probe)
    assert len(probe.rows)==32 and all(r['mixed'] and math.isfinite(r['loss']) for r in probe.rows)
    assert [r['iter'] for r in probe.rows]==list(range(16))*2
    assert learn.loss_func is lf and mixer.idx is None

# ---------------------------------------------------------------------------------------------------------------
# 2. Ctrl-C in the middle of a mixed batch

def _interrupted(dls, mixer, attach, event='after_loss'):
    "A learner whose `mixer` (attached at construction or passed to `fit`) was interrupted by Ctrl-C mid-batch"
    learn,lf = mk_learner(dls, mixer if attach=='init' else None, metrics=[accuracy, error_rate])
    learn.recorder.train_metrics = True # so that the mixer wraps the metrics, and must unwrap them
    mets,cbs = list(learn.metrics),list(learn.cbs)
    boom = Interrupt(event)
    with pytest.raises(KeyboardInterrupt): learn.fit(1, 1e-2, cbs=[boom] if attach=='init' else [mixer, boom])
    assert boom.fired and boom.wgt_then is not None, "the interrupt hit a mixed batch"
    assert isinstance(boom.lf_then, MixLoss) and boom.lf_then.loss_func is lf, "while the loss was swapped"
    assert all(isinstance(m, MixMetric) for m in boom.mets_then), "and the metrics wrapped"
    assert len(learn.cbs)==len(cbs) and all(a is b for a,b in zip(learn.cbs, cbs)), "the callbacks are as before"
    return learn,lf,mets,cbs

def _same(xs, ys): return len(xs)==len(ys) and all(a is b for a,b in zip(xs, ys))

def _refit(learn, lf, mets, cbs, mixer, attach, n=None):
    "A second fit on the interrupted learner trains normally, and leaves it as it was"
    probe = Probe()
    extra = [probe] + ([StopAfter(n-1)] if n else [])
    learn.fit(1, 1e-2, cbs=extra if attach=='init' else [mixer]+extra)
    assert len(probe.rows)==ifnone(n, 16) and all(r['mixed'] and r['lf'].loss_func is lf for r in probe.rows)
    assert all(math.isfinite(r['loss']) for r in probe.rows)
    if not n: assert all(math.isfinite(float(v)) for v in learn.recorder.values[-1])
    assert learn.loss_func is lf and _same(learn.metrics, mets) and _same(learn.cbs, cbs)

@pytest.mark.parametrize('make', members())
def test_interrupt_fit_attached_then_refit(fmnist_dls, make):
    "A mixer passed to `fit(cbs=...)`: fastai detaches it in a `finally`, and the learner is whole at once"
    mixer = make()
    learn,lf,mets,cbs = _interrupted(fmnist_dls, mixer, 'fit')
    assert learn.loss_func is lf and _same(learn.metrics, mets)
    assert mixer.learn is None and mixer.idx is None and mixer.wgt is None
    _refit(learn, lf, mets, cbs, mixer, 'fit', n=4)

@pytest.mark.parametrize('make', members())
def test_interrupt_init_attached_then_refit(fmnist_dls, make):
    """A mixer attached at construction: Ctrl-C leaves `fit` without any event, so (as documented) the learner's loss
    may stay wrapped until its next entry point; the wrapper is transparent there, and then gone"""
    mixer = make()
    learn,lf,mets,cbs = _interrupted(fmnist_dls, mixer, 'init')
    assert learn.loss_func is lf or (isinstance(learn.loss_func, MixLoss) and learn.loss_func.loss_func is lf)
    twin,_ = mk_learner(fmnist_dls, metrics=[accuracy, error_rate])
    twin.model.load_state_dict(learn.model.state_dict())
    a,b = learn.validate(),twin.validate()
    assert [float(v) for v in a]==[float(v) for v in b], "the first call after Ctrl-C sees a learner that never mixed"
    assert learn.loss_func is lf and _same(learn.metrics, mets) and _same(learn.cbs, cbs)
    assert mixer.learn is learn and mixer.idx is None and mixer.wgt is None
    _refit(learn, lf, mets, cbs, mixer, 'init')

@pytest.mark.parametrize('make', members(['cutmixup_per_sample', 'choice_per_sample', 'ricap']))
def test_interrupt_before_backward_then_refit(fmnist_dls, make):
    mixer = make()
    learn,lf,mets,cbs = _interrupted(fmnist_dls, mixer, 'fit', event='before_backward')
    assert learn.loss_func is lf and _same(learn.metrics, mets) and mixer.learn is None
    _refit(learn, lf, mets, cbs, mixer, 'fit', n=4)

# ---------------------------------------------------------------------------------------------------------------
# 3. Honest training metrics, checked by hand against what the model saw and what it was asked to predict

class KeepTargets(Callback):
    "Before the mixer: a copy of each training batch's targets as the DataLoader gave them"
    order,run_valid = -5,False
    def __init__(self): self.ys = []
    def before_batch(self): self.ys.append(self.learn.yb[0].detach().clone())

class KeepMix(Callback):
    "After the mixer: each training batch's predictions and the mixer's `idx` and `wgt`"
    order,run_valid = 10,False
    def __init__(self): self.rows = []
    def after_loss(self):
        (m,) = mixers_of(self.learn)
        assert m.idx is not None
        self.rows.append((self.learn.pred.detach().clone(), m.idx.detach().clone(), m.wgt.detach().clone()))

def _recorded_fit(dls, mixer, metrics):
    learn,lf = mk_learner(dls, mixer, metrics=metrics)
    learn.recorder.train_metrics = True
    keep_y,keep = KeepTargets(),KeepMix()
    learn.fit(1, 1e-2, cbs=[keep_y, keep])
    assert len(keep_y.ys)==len(keep.rows)==16
    return learn,lf,[(p, i, w, y) for (p,i,w),y in zip(keep.rows, keep_y.ys)]

@pytest.mark.parametrize('make,n_src', [pytest.param(MixUp, 2, id='mixup'), pytest.param(CutMix, 2, id='cutmix'),
                                        pytest.param(lambda: RICAP(per_sample=True), 4, id='ricap_per_sample')])
def test_train_accuracy_by_hand(fmnist_dls, make, n_src):
    learn,lf,rows = _recorded_fit(fmnist_dls, make(), [accuracy])
    hit,plain,n = 0.,0.,0
    for pred,idx,wgt,y in rows:
        assert idx.shape==wgt.shape==(n_src, len(y))
        assert_close(wgt.sum(0), torch.ones(len(y)), eps=1e-5)
        ok = pred.argmax(-1)[None]==y[idx] # (n_src, bs): is each sample's prediction each source's class?
        hit += float((wgt*ok).double().sum())
        plain += float((pred.argmax(-1)==y).sum())
        n += len(y)
    expected = hit/n
    got = col(learn, 'train_accuracy')
    assert abs(got-expected) < 1e-6, (got, expected)
    assert abs(plain/n-expected) > 1e-3, "the control: the unmixed targets would give another accuracy"
    rec_va = col(learn, 'valid_accuracy') # read before `validate` resets the Recorder
    assert abs(rec_va-float(learn.validate()[1])) < 1e-6, "validation is untouched"
    assert learn.loss_func is lf and not any(isinstance(m, MixMetric) for m in learn.metrics)

@pytest.mark.parametrize('make', [pytest.param(MixUp, id='mixup'), pytest.param(CutMix, id='cutmix'),
                                  pytest.param(lambda: RICAP(per_sample=True), id='ricap_per_sample'),
                                  pytest.param(MEMBERS['choice_per_sample'], id='choice_per_sample')])
def test_train_f1_macro_by_hand(fmnist_dls, make):
    """F1 needs the whole epoch: every sample counts once per source, weighed by that source's share of it (sklearn's
    `sample_weight`), in one F1 of the epoch: a λ-weighted confusion matrix, not a mean of batch values"""
    mixer = make()
    learn,lf,rows = _recorded_fit(fmnist_dls, mixer, [accuracy, F1Score(average='macro')])
    ys,ps,ws = [],[],[]
    for pred,idx,wgt,y in rows:
        p = pred.argmax(-1)
        for i,w in zip(idx, wgt): ys.append(y[i]); ps.append(p); ws.append(w)
    want = f1_score(torch.cat(ys).numpy(), torch.cat(ps).numpy(), average='macro', sample_weight=torch.cat(ws).numpy())
    got = col(learn, 'train_f1_score')
    assert abs(got-want) < 1e-6, (got, want)
    plain = f1_score(torch.cat([y for *_,y in rows]).numpy(), torch.cat([pred.argmax(-1) for pred,*_ in rows]).numpy(), average='macro')
    assert abs(plain-want) > 1e-3, "the control: the unmixed targets would give another F1"
    rec_va,rec_vf = col(learn, 'valid_accuracy'),col(learn, 'valid_f1_score') # before `validate` resets the Recorder
    _,va,vf = learn.validate()
    assert abs(rec_va-float(va)) < 1e-6 and abs(rec_vf-float(vf)) < 1e-6, "validation is untouched"

# ---------------------------------------------------------------------------------------------------------------
# 4. Schedules in real fits

def test_alpha_schedule_follows_training(fmnist_dls):
    mixer = MixUp(alpha=SchedLin(1., 0.))
    learn,lf = mk_learner(fmnist_dls, mixer)
    probe = Probe()
    learn.fit_one_cycle(1, 1e-2, cbs=probe)
    assert len(probe.rows)==16 and all(r['mixed'] for r in probe.rows)
    for i,r in enumerate(probe.rows):
        assert abs(r['pct']-i/16) < 1e-9
        assert abs(r['cur_alpha']-(1-r['pct'])) < 1e-6, (i, r)
    assert probe.rows[0]['cur_alpha']==1. and probe.rows[-1]['cur_alpha'] < .07
    assert all(math.isfinite(r['loss']) for r in probe.rows) and learn.loss_func is lf

def test_p_schedule_of_zero_never_mixes(fmnist_dls):
    mixer = CutMix(p=SchedLin(0., 0.))
    learn,lf = mk_learner(fmnist_dls, mixer)
    probe = Probe()
    learn.fit(1, 1e-2, cbs=probe)
    assert len(probe.rows)==16 and not any(r['mixed'] for r in probe.rows)
    assert all(math.isfinite(r['loss']) for r in probe.rows) and learn.loss_func is lf

def test_negative_alpha_schedule_raises_past_the_middle(fmnist_dls):
    mixer = MixUp(alpha=SchedLin(1., -1.))
    learn,lf = mk_learner(fmnist_dls, mixer)
    probe = Probe()
    with pytest.raises(ValueError, match=r"alpha \(from the schedule"): learn.fit(1, 1e-2, cbs=probe)
    # batches 0..7 mix, batch 8 (pct_train .5, alpha 0) runs unmixed, batch 9 (alpha -.125) raises
    assert [r['mixed'] for r in probe.rows]==[True]*8 + [False]
    # an exception leaves `fit` without any event: as documented, the loss may stay wrapped (transparently) until
    # the learner's next entry point puts it back
    assert learn.loss_func is lf or (isinstance(learn.loss_func, MixLoss) and learn.loss_func.loss_func is lf)
    twin,_ = mk_learner(fmnist_dls)
    twin.model.load_state_dict(learn.model.state_dict())
    assert [float(v) for v in learn.validate()]==[float(v) for v in twin.validate()]
    assert learn.loss_func is lf and mixer.idx is None
    probe2 = Probe()
    learn.fit(1, 1e-2, cbs=[probe2, StopAfter(3)]) # the same learner trains again until the schedule turns negative
    assert [r['mixed'] for r in probe2.rows]==[True]*4 and learn.loss_func is lf

# ---------------------------------------------------------------------------------------------------------------
# 5. `cb.show`

PART = re.compile(r'^(\d+)% (.+)$')

def check_titles(fig, n_axes, labels=None, bs=None):
    "Every title reads 'P% label / P% label ...', shares decreasing and summing to ~100%, labels known"
    assert isinstance(fig, plt.Figure) and len(fig.axes)==n_axes
    titles = [ax.get_title().replace('\n', ' / ') for ax in fig.axes] # a title line holds two sources (RICAP has four)
    assert all(titles), titles
    for t in titles:
        parts = [PART.match(p) for p in t.split(' / ')]
        assert all(parts), t
        pcts,names = [int(p[1]) for p in parts],[p[2] for p in parts]
        assert pcts==sorted(pcts, reverse=True) and 98 <= sum(pcts) <= 102, t
        assert len(set(names))==len(names), t
        for k in names:
            if labels is not None: assert k in labels, (k, t)
            else:
                m = re.fullmatch(r'image (\d+)', k)
                assert m and int(m[1]) < bs, (k, t)
    return titles

@pytest.mark.parametrize('make', members())
def test_show_fmnist_and_photos(fmnist_dls, photos, make):
    mixer = make()
    titles = check_titles(mixer.show(fmnist_dls, nrows=2, ncols=3, seed=0), 6, labels=list(fmnist_dls.vocab))
    if not isinstance(mixer, Cutout): assert any(' / ' in t for t in titles), "some sample shows two classes"
    else: assert all(t.startswith('100% ') for t in titles)
    fig = mixer.show(photos, nrows=3, ncols=2)
    check_titles(fig, 6, labels=list(photos.vocab))
    assert mixer.learn is None and mixer.idx is None

@pytest.mark.parametrize('make', members(MASKS))
def test_show_masks(photo_masks, make):
    """Every member that takes masks draws each sample's mask over its image (as cut, or the sample's own where whole
    masks are weighed, as MixUp's are), and names the sources by image: a mask has no short name"""
    mixer = make()
    fig = mixer.show(photo_masks, nrows=2, ncols=2, seed=0)
    titles = check_titles(fig, 4, bs=photo_masks.bs)
    assert [len(ax.images) for ax in fig.axes]==[2]*4, "each axis: the image, then its mask over it"
    if isinstance(mixer, Cutout): assert all(t.startswith('100% image ') for t in titles), titles
    else: assert any(' / ' in t for t in titles), titles
    assert mixer.learn is None

def test_show_masks_refused_by_per_sample_choice_of_region_and_blend(photo_masks):
    with pytest.raises(ValueError, match='per_sample=False'): CutMixUp(per_sample=True).show(photo_masks)

class ShowDuring(Callback):
    "After batch `at` (once the `Recorder` has it): `mixer.show(learn)`, noting the learner before and after"
    order,run_valid = 60,False
    def __init__(self, at=2): self.at,self.seen = at,None
    def after_batch(self):
        if self.iter!=self.at: return
        (m,) = mixers_of(self.learn)
        lf0 = self.learn.loss_func
        fig = m.show(self.learn, nrows=1, ncols=2)
        self.seen = dict(fig=fig, lf0=lf0, lf1=self.learn.loss_func, learn=m.learn)

@pytest.mark.parametrize('make', members())
def test_show_during_and_after_fit(fmnist_dls, make):
    mixer = make()
    learn,lf = mk_learner(fmnist_dls, mixer)
    during,probe = ShowDuring(),Probe()
    learn.fit(1, 1e-2, cbs=[during, probe, StopAfter(5)]) # six batches: the show comes after the third
    s = during.seen
    check_titles(s['fig'], 2, labels=list(fmnist_dls.vocab))
    assert s['learn'] is learn and s['lf1'] is s['lf0'] and isinstance(s['lf0'], MixLoss) and s['lf0'].loss_func is lf
    assert len(probe.rows)==6 and all(r['mixed'] and r['lf'] is s['lf0'] for r in probe.rows), "training went on mixing"
    assert all(math.isfinite(r['loss']) for r in probe.rows)
    check_titles(mixer.show(learn, nrows=2, ncols=2), 4, labels=list(fmnist_dls.vocab))
    assert mixer.learn is learn and learn.loss_func is lf and mixer.idx is None
    assert mixers_of(learn)==[mixer]

class ShowMidBatch(Callback):
    "After the model ran on mixed batch `at` but before its loss: `mixer.show(learn)`, keeping what the mixer drew"
    order,run_valid = 10,False
    def __init__(self, at=2): self.at,self.drawn,self.loss = at,None,None
    def after_pred(self):
        if self.iter!=self.at: return
        (m,) = mixers_of(self.learn)
        self.drawn = m.idx.clone(),m.wgt.clone()
        m.show(self.learn, nrows=1, ncols=1)
        self.after_show = m.idx,m.wgt
    def after_loss(self):
        if self.iter!=self.at: return
        idx,wgt = self.drawn
        p,y = self.learn.pred.as_subclass(Tensor),self.learn.yb[0].as_subclass(Tensor)
        self.loss = float(self.learn.loss)
        self.mixed = float(sum(w*F.cross_entropy(p, y[i], reduction='none') for w,i in zip(wgt, idx)).mean())

@pytest.mark.parametrize('make', [pytest.param(MixUp, id='mixup'), pytest.param(CutMix, id='cutmix')])
def test_show_inside_a_batch_keeps_that_batch_mixed(fmnist_dls, make):
    learn,lf = mk_learner(fmnist_dls, make())
    cb = ShowMidBatch()
    learn.fit(1, 1e-2, cbs=[cb, StopAfter(3)])
    assert cb.loss is not None, "the show ran inside batch 2"
    assert abs(cb.loss-cb.mixed) < 1e-5, f"the batch's loss {cb.loss} is not its mixed loss {cb.mixed}"
    assert cb.after_show[0] is not None, "the mixer still knows how it mixed the batch being trained on"

@pytest.mark.parametrize('make', members(['cutmixup', 'choice_per_sample']))
def test_show_leaves_choice_members_as_they_were(fmnist_dls, tmp_path, make):
    "`show` borrows the members for a batch of its own, and gives them back as it found them: never on its own stand-in learner"
    mixer = make()
    learn,lf = mk_learner(fmnist_dls, mixer)
    learn.fit(1, 1e-2, cbs=StopAfter(1))
    before = [m.learn for m in mixer.mixers]
    assert all(o is None for o in before) # members borrow the learner batch by batch, and give it back when the fit ends
    mixer.show(learn, nrows=1, ncols=2)
    assert mixer.learn is learn
    assert all(m.learn is o for m,o in zip(mixer.mixers, before)), [type(m.learn).__name__ for m in mixer.mixers]
    learn.export(tmp_path/'shown.pkl')
    (m2,) = mixers_of(load_learner(tmp_path/'shown.pkl'))
    assert not any(hasattr(m.learn, 'xb') and not isinstance(m.learn, Learner) for m in m2.mixers), "no batch in the file"

# ---------------------------------------------------------------------------------------------------------------
# 6. Export and inference

@pytest.mark.parametrize('make', members())
def test_export_load_predict(fmnist_dls, tmp_path, test_image, make):
    mixer = make()
    learn,lf = mk_learner(fmnist_dls, mixer)
    learn.fit(1, 1e-2, cbs=StopAfter(3))
    assert learn.loss_func is lf
    fn = tmp_path/'member.pkl'
    learn.export(fn)
    learn2 = load_learner(fn)
    assert learn.loss_func is lf and type(learn2.loss_func) is CrossEntropyLossFlat
    (m2,) = mixers_of(learn2)
    assert type(m2) is type(mixer) and m2.learn is learn2
    if isinstance(mixer, MixChoice): assert [type(o) for o in m2.mixers]==[type(o) for o in mixer.mixers]
    cls,idx,probs = learn.predict(test_image)
    cls2,idx2,probs2 = learn2.predict(test_image)
    assert cls in FMNIST_CLASSES and cls==cls2 and int(idx)==int(idx2) and cls==FMNIST_CLASSES[int(idx)]
    assert probs.shape==(10,) and torch.allclose(probs, probs2, atol=1e-6)
    assert abs(float(probs.sum())-1) < 1e-5
    assert learn.loss_func is lf and not isinstance(learn2.loss_func, MixLoss)

# ---------------------------------------------------------------------------------------------------------------
# 7. Two mixers on one learner

@pytest.mark.parametrize('pair', [pytest.param(lambda: [MixUp(), CutMix()], id='mixup+cutmix'),
                                  pytest.param(lambda: [FMix(per_sample=True), RICAP()], id='fmix+ricap'),
                                  pytest.param(lambda: [CutMixUp(), Cutout()], id='cutmixup+cutout')])
def test_two_mixers_raise(fmnist_dls, pair):
    learn,lf = mk_learner(fmnist_dls, pair())
    with pytest.raises(ValueError, match='MixChoice'): learn.fit(1, 1e-2)
    assert learn.loss_func is lf

# ---------------------------------------------------------------------------------------------------------------
# 8. DeiT's recipe: CutMixUp with label smoothing

def test_deit_recipe_trains(fmnist_dls):
    lf = LabelSmoothingCrossEntropyFlat(eps=.1)
    learn = quiet(Learner(fmnist_dls, tiny_cnn(), loss_func=lf, metrics=accuracy, cbs=CutMixUp()))
    probe = Probe()
    learn.fit(1, 1e-2, cbs=probe)
    assert len(probe.rows)==16 and all(r['mixed'] for r in probe.rows)
    assert all(math.isfinite(float(v)) for v in learn.recorder.values[-1])
    assert learn.loss_func is lf

def _smoothed_ce(pred, y, eps=.1):
    "Label-smoothing cross-entropy per sample, by hand"
    logp = F.log_softmax(pred.float(), -1)
    return (1-eps)*-logp.gather(1, y[:, None])[:, 0] + eps*-logp.mean(-1)

@pytest.mark.parametrize('per_sample', [False, True])
def test_deit_recipe_loss_by_hand(fmnist_dls, per_sample):
    xb,yb = fmnist_dls.one_batch()
    x0,y = xb.clone(),yb.clone()
    model = tiny_cnn()
    seen = set()
    for seed in range(12):
        set_seed(seed)
        cb = CutMixUp(per_sample=per_sample)
        learn = mixing_learner(cb, xb.clone(), yb.clone(), loss_func=LabelSmoothingCrossEntropyFlat(eps=.1), model=model)
        assert cb.idx is not None and not torch.equal(learn.xb[0], x0), "the batch was mixed"
        assert torch.equal(learn.yb[0], y), "integer class targets are left alone: the loss is mixed instead"
        if not per_sample:
            seen.add(type(cb.cur).__name__)
            assert (cb.wgt==cb.wgt[:, :1]).all(), "timm's batch mode: one λ for the batch, MixUp's or CutMix's"
        pred = learn.model(learn.xb[0])
        loss = learn.loss_func(pred, *learn.yb)
        p = pred.as_subclass(Tensor)
        ls = [_smoothed_ce(p, y.as_subclass(Tensor)[i]) for i in cb.idx]
        assert len(ls)==2
        expected = torch.lerp(ls[1], ls[0], cb.wgt[0]).mean() # the sample's own loss with weight wgt[0], its partner's with the rest
        assert_close(float(loss), float(expected), eps=1e-5)
        assert_close(cb.wgt.sum(0), torch.ones(len(y)), eps=1e-5)
    if not per_sample: assert seen=={'MixUp', 'CutMix'}, seen
