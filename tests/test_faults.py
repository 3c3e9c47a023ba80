"""Faults in the middle of a mixed fit, for every member of the family: Ctrl-C, an ordinary error raised by another
callback, and a (simulated) CUDA out-of-memory error, each at several points of a batch (right after the mixer mixed,
in the forward pass, at the loss, inside `backward`, in a validation batch). After each one the exception reaches the
caller unchanged, the learner, its callbacks and its data are as they were, the mixer holds nothing of the batch it
was mixing, and the next call and the next `fit` behave as on a learner that never failed. Also `lr_find` followed by
`fit_one_cycle` with every member (MixUp's is in test_learner.py)."""
import gc, math, weakref
import pytest, torch
from fastai_cutmix.all import *
# the star import brings fastcore's `test`, `test_eq`, `test_close`...: pytest would collect them as tests
for _n in [n for n in dir() if n.startswith('test')]: del globals()[_n]

from helpers import mk_learner, mixers_of, one_thread, model_inputs, MEMBERS, members

pytestmark = pytest.mark.usefixtures('one_thread')

# ---------------------------------------------------------------------------------------------------------------
# The family, the faults and the points where they strike

# torch>=2.5 has `torch.OutOfMemoryError`; `torch.cuda.OutOfMemoryError` is the same class (and older torch's only one)
OOM = getattr(torch, 'OutOfMemoryError', None) or torch.cuda.OutOfMemoryError
OOM_MSG = ("CUDA out of memory. Tried to allocate 20.00 MiB. GPU 0 has a total capacity of 79.19 GiB of which 3.06 MiB "
           "is free. Including non-PyTorch memory, this process has 79.18 GiB memory in use. Of the allocated memory "
           "78.02 GiB is allocated by PyTorch, and 512.00 MiB is reserved by PyTorch but unallocated. If reserved but "
           "unallocated memory is large try setting PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True to avoid "
           "fragmentation.  See documentation for Memory Management  (https://pytorch.org/docs/stable/notes/cuda.html#environment-variables)")
# a fresh exception object for each fault: the test checks that this very object reaches the caller
KINDS = {'interrupt': lambda: KeyboardInterrupt(),
         'error':     lambda: ValueError('boom'),
         'oom':       lambda: OOM(OOM_MSG)}

POINTS = ['before_batch', # a callback ordered after the mixer: the batch is already mixed
          'forward',      # a forward hook inside the model (where a real OOM strikes), on a mixed training batch
          'after_loss',   # a callback, once the mixed loss is computed
          'backward',     # a tensor hook that raises from inside `loss.backward()`
          'validation']   # a forward hook on the first validation batch, after a mixed training epoch
TRAIN_POINTS = POINTS[:-1]

class Fault(Callback):
    "Raises `exc` once at `point`: of training batch `at`, or of the first validation batch; notes the learner then"
    order,run_valid = 5,True # after the mixers (order 0)
    def __init__(self, point, exc, at=1): self.point,self.exc,self.at,self.fired,self.hooks,self.then = point,exc,at,False,[],None
    def _due(self): return not self.fired and self.learn.training and self.learn.iter==self.at
    def _fire(self):
        (m,) = mixers_of(self.learn)
        self.fired = True
        self.then = dict(lf=self.learn.loss_func, idx=m.idx, wgt=m.wgt, training=self.learn.training)
        raise self.exc
    def before_fit(self):
        # inside the model: after its first layer, so the fault interrupts the forward pass half-way
        if self.point in ('forward', 'validation'): self.hooks.append(self.learn.model[0].register_forward_hook(self._fwd))
    def _fwd(self, mod, args, out):
        if self.fired: return
        if (self.point=='forward' and mod.training and self.learn.iter==self.at) or (self.point=='validation' and not mod.training):
            self._fire()
    def before_batch(self):
        if self.point=='before_batch' and self._due(): self._fire()
    def after_loss(self):
        if self.point=='after_loss' and self._due(): self._fire()
        if self.point=='backward' and self._due(): self.learn.pred.register_hook(lambda g: self._fire())
    def remove_hooks(self):
        for h in self.hooks: h.remove()
        self.hooks = []

class Tap(Callback):
    "Before the mixer: each training batch as the DataLoader gave it"
    order,run_valid = -5,False
    def __init__(self): self.batches = []
    def before_batch(self): self.batches.append((self.learn.xb[0].detach().clone(), self.learn.yb[0].detach().clone()))

class Probe(Callback):
    "After the mixer: the learner's state at the start of `fit`, and at every batch's loss"
    order,run_valid = 10,True
    def __init__(self): self.start,self.rows = None,[]
    def before_fit(self):
        (m,) = mixers_of(self.learn)
        self.start = dict(lf=self.learn.loss_func, idx=m.idx, wgt=m.wgt, metrics=list(self.learn.metrics))
    def after_loss(self):
        (m,) = mixers_of(self.learn)
        self.rows.append(dict(training=self.learn.training, lf=self.learn.loss_func, mixed=m.idx is not None and m.wgt is not None,
                              wgt_dtype=None if m.wgt is None else m.wgt.dtype, loss=float(self.learn.loss)))

def _same(xs, ys): return len(xs)==len(ys) and all(a is b for a,b in zip(xs, ys))

PIPES = ('after_item', 'before_batch', 'after_batch')
def data_state(dls):
    "The `DataLoaders`, its loaders, and each loader's pipelines (the transforms themselves) and settings"
    return dls, list(dls.loaders), [([list(getattr(dl, p).fs) for p in PIPES], dl.bs, dl.shuffle, dl.drop_last, dl.device)
                                    for dl in dls.loaders]

def check_data(learn, state):
    dls,loaders,dl_state = state
    assert learn.dls is dls and _same(list(dls.loaders), loaders), "the same DataLoaders and loaders"
    for dl,(pipes,bs,shuffle,drop_last,device) in zip(dls.loaders, dl_state):
        for p,fs in zip(PIPES, pipes): assert _same(list(getattr(dl, p).fs), fs), f"{p} pipeline changed"
        assert (dl.bs, dl.shuffle, dl.drop_last, dl.device)==(bs, shuffle, drop_last, device)

# ---------------------------------------------------------------------------------------------------------------
# Data

@pytest.fixture(scope='module')
def dls():
    "64 training and 32 validation images in batches of 32: 2 training batches and 1 validation batch an epoch"
    # no worker processes: starting them costs more than these whole fits
    return fashion_mnist_dls(bs=32, n_train=64, n_valid=32, num_workers=0)

@pytest.fixture(scope='module')
def pristine(dls):
    "Every training image as the DataLoader gives it (its bytes), with its label: a batch made of these was not mixed"
    out = {}
    for xb,yb in dls.train.new(shuffle=False, drop_last=False):
        for x,y in zip(xb.as_subclass(Tensor), yb.as_subclass(Tensor)): out.setdefault(x.numpy().tobytes(), set()).add(int(y))
    assert sum(len(v) for v in out.values())==64
    return out

def check_pristine(batches, pristine):
    "Each batch is one the DataLoader made: every sample one of its images, with its label, nothing mixed in"
    for x,y in batches:
        for xi,yi in zip(x.as_subclass(Tensor), y.as_subclass(Tensor)):
            assert int(yi) in pristine.get(xi.numpy().tobytes(), ()), "a sample entering the mixer was not a clean one"

# ---------------------------------------------------------------------------------------------------------------
# 1. Every member × every fault × every point, with the mixer attached at construction or passed to `fit`

def _learner(dls, mixer, attach):
    learn,lf = mk_learner(dls, mixer if attach=='init' else None)
    learn.recorder.train_metrics = True # so that the mixer also wraps the metrics, and must unwrap them
    twin,_ = mk_learner(dls) # never mixes: what the learner must match on the next call
    return learn,lf,twin

def _fault(learn, mixer, attach, point, kind):
    "Run a `fit` that `kind` interrupts at `point`; the exception must come out as raised"
    exc = KINDS[kind]()
    fault = Fault(point, exc)
    try:
        with pytest.raises(type(exc)) as ei: learn.fit(1, 1e-3, cbs=[mixer, fault] if attach=='fit' else [fault])
    finally: fault.remove_hooks()
    assert ei.value is exc and type(ei.value) is type(exc) and str(ei.value)==str(exc), "the exception reaches the caller unchanged"
    assert fault.fired and fault not in learn.cbs and fault.learn is None, "the faulty callback is detached again"
    return fault.then

def _check_after_fault(learn, lf, mixer, attach, point, then, cbs, mets, data):
    "Right after the fault: what the learner, its callbacks, its data and the mixer hold"
    if point in TRAIN_POINTS:
        assert then['training'] and then['wgt'] is not None and then['idx'] is not None, "the fault hit a mixed batch"
        assert isinstance(then['lf'], MixLoss) and then['lf'].loss_func is lf and then['lf'].mixer is mixer, "while the loss was swapped"
    else: assert not then['training'] and then['lf'] is lf and then['wgt'] is None, "validation runs on the learner's own loss, unmixed"
    assert _same(learn.cbs, cbs), "the learner's callbacks: the same objects, in the same order"
    check_data(learn, data)
    if attach=='fit' or point=='validation':
        # fastai detaches callbacks passed to `fit` in a `finally`; `after_train` put the loss back before validation
        assert learn.loss_func is lf, "the learner's own loss object"
        assert mixer.idx is None and mixer.wgt is None, "the mixer keeps nothing of the batch it was mixing"
    if attach=='fit':
        assert _same(learn.metrics, mets), "the learner's own metrics"
        assert mixer.learn is None
    else:
        # no callback event after an exception: as documented, the loss (mid-epoch) and the training metrics may stay
        # wrapped, around the learner's own, until the next fit, validate, get_preds or predict puts them back
        assert learn.loss_func is lf or (isinstance(learn.loss_func, MixLoss) and learn.loss_func.loss_func is lf)
        assert len(learn.metrics)==len(mets)
        assert all(m is m0 or (isinstance(m, MixMetric) and m.metric is m0) for m,m0 in zip(learn.metrics, mets))
        assert mixer.learn is learn

def _check_next_call(learn, lf, twin, mixer, mets):
    "The first call after the fault sees a learner that never mixed: the same predictions and per-item losses"
    twin.model.load_state_dict(learn.model.state_dict())
    a,b = learn.get_preds(with_loss=True),twin.get_preds(with_loss=True)
    assert len(a)==len(b)==3 and all(torch.equal(u, v) for u,v in zip(a, b))
    assert learn.loss_func is lf and _same(learn.metrics, mets) and mixer.idx is None and mixer.wgt is None

def _refit(learn, lf, mixer, attach, cbs, mets, data, pristine):
    "A second fit trains normally: it starts clean, mixes every batch again, and gives everything back at the end"
    probe,tap = Probe(),Tap()
    seen,h = model_inputs(learn.model)
    try: learn.fit(1, 1e-3, cbs=[mixer, probe, tap] if attach=='fit' else [probe, tap])
    finally: h.remove()
    s = probe.start
    assert s['lf'] is lf and s['idx'] is None and s['wgt'] is None, "clean from before_fit on"
    # with train_metrics, the mixer wraps the metrics for the fit: once, around the learner's own
    assert len(s['metrics'])==len(mets) and all(isinstance(m, MixMetric) and m.metric is m0 for m,m0 in zip(s['metrics'], mets))
    tr,va = [r for r in probe.rows if r['training']],[r for r in probe.rows if not r['training']]
    assert len(tr)==2 and len(va)==1
    assert all(r['mixed'] and r['wgt_dtype']==torch.float32 for r in tr), "the mixer mixes every batch again"
    assert all(isinstance(r['lf'], MixLoss) and r['lf'].loss_func is lf and r['lf'].mixer is mixer for r in tr)
    assert all(r['lf'] is lf and not r['mixed'] for r in va)
    assert all(math.isfinite(r['loss']) for r in probe.rows), [r['loss'] for r in probe.rows]
    assert all(math.isfinite(float(v)) for v in learn.recorder.values[-1]), learn.recorder.values[-1]
    check_pristine(tap.batches, pristine) # nothing of the batch mixed before the fault leaks into the next fit
    assert len(seen)==2 and all(not torch.equal(x, xm) for (x,_),xm in zip(tap.batches, seen)), "the model saw mixed batches"
    assert learn.loss_func is lf and _same(learn.metrics, mets) and _same(learn.cbs, cbs)
    assert mixer.idx is None and mixer.wgt is None
    check_data(learn, data)

@pytest.mark.parametrize('attach', ['init', 'fit'])
@pytest.mark.parametrize('point', POINTS)
@pytest.mark.parametrize('make', members())
def test_fault_then_refit(dls, pristine, make, point, attach):
    """On one learner, in turn: Ctrl-C, ValueError('boom') and CUDA OOM at `point`, each checked at once, then on the
    next call, then with a second fit"""
    mixer = make()
    learn,lf,twin = _learner(dls, mixer, attach)
    cbs,mets,data = list(learn.cbs),list(learn.metrics),data_state(dls)
    for kind in KINDS:
        then = _fault(learn, mixer, attach, point, kind)
        _check_after_fault(learn, lf, mixer, attach, point, then, cbs, mets, data)
        _check_next_call(learn, lf, twin, mixer, mets)
        _refit(learn, lf, mixer, attach, cbs, mets, data, pristine)

@pytest.mark.parametrize('kind', list(KINDS))
def test_fault_straight_into_refit(dls, pristine, kind):
    "No call in between: the next `fit` itself starts clean after a fault mid-batch with a mixer attached at construction"
    mixer = CutMixUp(per_sample=True)
    learn,lf,_ = _learner(dls, mixer, 'init')
    cbs,mets,data = list(learn.cbs),list(learn.metrics),data_state(dls)
    for point in TRAIN_POINTS:
        then = _fault(learn, mixer, 'init', point, kind)
        _check_after_fault(learn, lf, mixer, 'init', point, then, cbs, mets, data)
        _refit(learn, lf, mixer, 'init', cbs, mets, data, pristine)

# ---------------------------------------------------------------------------------------------------------------
# 2. What a fault leaves behind: the wrapper on the learner until its next entry point (mixer attached at
#    construction), and references to the learner (mixer passed to `fit`)

@pytest.mark.parametrize('bs', ['same', 'smaller'])
def test_leftover_wrapper_is_transparent(dls, bs):
    "Called by hand before any entry point, the loss left on the learner after Ctrl-C is the learner's own loss"
    mixer = MixUp()
    learn,lf,_ = _learner(dls, mixer, 'init')
    _fault(learn, mixer, 'init', 'after_loss', 'interrupt')
    assert isinstance(learn.loss_func, MixLoss) and learn.loss_func.loss_func is lf
    n = dls.bs if bs=='same' else 10
    x,y = dls.valid.one_batch()
    with torch.no_grad(): pred = learn.model(x[:n])
    assert torch.equal(learn.loss_func(pred, y[:n]), lf(pred, y[:n]))

def _oom_and_drop(dls, mixer):
    "A learner with `mixer` passed to `fit`, hit by a CUDA OOM in the forward pass, then dropped: a weak reference to it"
    learn,_ = mk_learner(dls)
    exc = OOM(OOM_MSG)
    fault = Fault('forward', exc)
    try: learn.fit(1, 1e-3, cbs=[mixer, fault])
    except OOM as e: assert e is exc
    finally: fault.remove_hooks()
    assert fault.fired and mixer.learn is None
    exc.__traceback__ = None # the traceback's frames hold the learner
    return weakref.ref(learn)

@pytest.mark.parametrize('make', members())
def test_detached_mixer_lets_the_learner_go(dls, make):
    """After an OOM, a mixer that was passed to `fit` holds no reference to the learner: dropping the learner frees it
    (its model, its optimizer's state and its last batch, the memory one wants back after an OOM) though the mixer lives on"""
    mixer = make()
    ref = _oom_and_drop(dls, mixer)
    gc.collect()
    assert ref() is None, "the learner is still referenced"
    assert mixer.idx is None and mixer.wgt is None and mixer.learn is None

# ---------------------------------------------------------------------------------------------------------------
# 3. lr_find, then fit_one_cycle

@pytest.mark.parametrize('make', members([n for n in MEMBERS if n!='mixup'])) # MixUp: test_learner.py, on a resnet18
def test_lr_find_then_fit_one_cycle(dls, tmp_path, make):
    mixer = make()
    learn,lf = mk_learner(dls, mixer)
    learn.path = tmp_path # LRFinder saves the weights under learn.path/models
    cbs = list(learn.cbs)
    probe = Probe(); learn.add_cb(probe)
    before = {k: v.clone() for k,v in learn.model.state_dict().items()}
    res = learn.lr_find(num_it=12, show_plot=False) # 12 batches, over 7 epochs of 2, unless the loss diverges first
    assert math.isfinite(res.valley) and res.valley > 0
    assert learn.loss_func is lf and mixer.idx is None and mixer.wgt is None
    tr = [r for r in probe.rows if r['training']]
    assert 6 < len(tr) <= 12 and not any(not r['training'] for r in probe.rows), "lr_find trains, and never validates"
    assert all(r['mixed'] and isinstance(r['lf'], MixLoss) and r['lf'].loss_func is lf for r in tr)
    assert all(torch.equal(before[k], v) for k,v in learn.model.state_dict().items()), "lr_find puts the weights back"
    probe.rows = []
    learn.fit_one_cycle(1, res.valley)
    tr,va = [r for r in probe.rows if r['training']],[r for r in probe.rows if not r['training']]
    assert len(tr)==2 and len(va)==1
    assert all(r['mixed'] and isinstance(r['lf'], MixLoss) and r['lf'].loss_func is lf for r in tr)
    assert all(r['lf'] is lf for r in va)
    assert all(math.isfinite(r['loss']) for r in probe.rows)
    assert all(math.isfinite(float(v)) for v in learn.recorder.values[-1])
    assert learn.loss_func is lf and mixer.idx is None and mixer.wgt is None
    learn.remove_cb(probe)
    assert _same(learn.cbs, cbs)

# ---------------------------------------------------------------------------------------------------------------
# 4. Nothing of the last batch outlives the fit

@pytest.mark.parametrize('make', members())
@pytest.mark.parametrize('how', ['end', 'fault'])
def test_no_batch_state_after_fit(dls, make, how):
    "After a fit, ended or faulted (mixer passed to `fit`), the mixer and its members hold no tensor of a batch"
    mixer = make()
    learn,_ = mk_learner(dls)
    if how=='end': learn.fit(1, 1e-3, cbs=mixer)
    else:
        fault = Fault('after_loss', ValueError('boom'))
        with pytest.raises(ValueError, match='boom'): learn.fit(1, 1e-3, cbs=[mixer, fault])
    for m in [mixer, *getattr(mixer, 'mixers', [])]:
        left = [k for k,v in m.__dict__.items() if isinstance(v, torch.Tensor) and k!='weights'] # MixChoice's setting
        assert not left, (type(m).__name__, left)
        assert m.learn is None and m.idx is None and m.wgt is None
