"Helpers shared by the test modules: hypothesis settings, one torch thread for tiny tensors, quiet learners, the family."
import pytest, torch
from hypothesis import HealthCheck, strategies as st
from fastai.basics import Learner, CrossEntropyLossFlat, accuracy, noop, ifnone
from fastai.callback.progress import ProgressCallback
from fastai_cutmix.core import MixHandler
from fastai_cutmix.data import tiny_cnn
from fastai_cutmix.all import MixUp, CutMix, Cutout, FMix, ResizeMix, RICAP, CutMixUp, MixChoice

# the conftest's autouse seeding fixture runs once per test, not per example; every example seeds itself
SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
seeds = st.integers(0, 2**31-1)

@pytest.fixture(scope='module')
def one_thread():
    "Tiny tensors gain nothing from intra-op threads, and lose a lot to them on a busy machine"
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

def quiet(learn):
    "No progress bar and no printed table; the `Recorder` still records"
    learn.remove_cb(ProgressCallback)
    learn.logger = noop
    return learn

def mk_learner(dls, mixer=None, model=None, loss_func=None, metrics=accuracy, **kwargs):
    "A quiet `Learner` on `dls` (a `tiny_cnn` unless `model`), and the loss object it was given"
    lf = ifnone(loss_func, CrossEntropyLossFlat())
    learn = Learner(dls, ifnone(model, tiny_cnn()), loss_func=lf, metrics=metrics, cbs=mixer, **kwargs)
    return quiet(learn), lf

def mixers_of(learn): return [cb for cb in learn.cbs if isinstance(cb, MixHandler)]

def model_inputs(model):
    "A list filled with every input the model sees in training mode (and the hook's handle)"
    seen = []
    def hook(m, args):
        if m.training: seen.append(args[0].detach().clone())
    return seen, model.register_forward_pre_hook(hook)

# The family, in the configurations the learner-level tests run: each a factory of a fresh mixer
MEMBERS = {
    'mixup':                 lambda: MixUp(),
    'cutmix':                lambda: CutMix(),
    'cutmix_per_sample':     lambda: CutMix(per_sample=True),
    'cutout':                lambda: Cutout(),
    'fmix':                  lambda: FMix(),
    'fmix_per_sample':       lambda: FMix(per_sample=True),
    'resizemix':             lambda: ResizeMix(),
    'resizemix_per_sample':  lambda: ResizeMix(per_sample=True),
    'ricap':                 lambda: RICAP(),
    'ricap_per_sample':      lambda: RICAP(per_sample=True),
    'cutmixup':              lambda: CutMixUp(),
    'cutmixup_per_sample':   lambda: CutMixUp(per_sample=True),
    'choice_per_sample':     lambda: MixChoice([MixUp(), FMix(), RICAP()], per_sample=True),
}

def members(names=None):
    "`pytest.param`s of the family's factories, with their names as ids"
    return [pytest.param(MEMBERS[n], id=n) for n in ifnone(names, list(MEMBERS))]
