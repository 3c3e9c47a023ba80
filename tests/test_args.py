"Bad constructor arguments and bad batches: the right exception, with a message that names what is wrong."
import re, math
import numpy as np
import pytest, torch
import torch.nn.functional as F
from fastai.torch_core import set_seed
from fastai.callback.schedule import SchedLin
from fastai_cutmix.core import MixHandler, mixing_learner, sample_lam
from fastai_cutmix.mixup import MixUp
from fastai_cutmix.cutmix import CutMix

NAN,INF = float('nan'),float('inf')
CLASSES = [MixHandler, MixUp, CutMix]

# (kwargs, exception, message without the class name)
BAD = [
    (dict(alpha=0), ValueError, "alpha must be in (0, inf), got 0"),
    (dict(alpha=0.), ValueError, "alpha must be in (0, inf), got 0.0"),
    (dict(alpha=-1), ValueError, "alpha must be in (0, inf), got -1"),
    (dict(alpha=-INF), ValueError, "alpha must be in (0, inf), got -inf"),
    (dict(alpha=NAN), ValueError, "alpha must be in (0, inf), got nan"),
    (dict(p=-.1), ValueError, "p must be in [0, 1], got -0.1"),
    (dict(p=1.5), ValueError, "p must be in [0, 1], got 1.5"),
    (dict(p=NAN), ValueError, "p must be in [0, 1], got nan"),
    (dict(p=INF), ValueError, "p must be in [0, 1], got inf"),
    (dict(stop_pct=0), ValueError, "stop_pct must be in (0, 1], got 0"),
    (dict(stop_pct=-.5), ValueError, "stop_pct must be in (0, 1], got -0.5"),
    (dict(stop_pct=1.01), ValueError, "stop_pct must be in (0, 1], got 1.01"),
    (dict(stop_pct=NAN), ValueError, "stop_pct must be in (0, 1], got nan"),
    (dict(alpha='1'), TypeError, "alpha must be a number, got str '1'"),
    (dict(alpha=None), TypeError, "alpha must be a number, got NoneType None"),
    (dict(alpha=True), TypeError, "alpha must be a number, got bool True"),
    (dict(alpha=[1.]), TypeError, "alpha must be a number, got list [1.0]"),
    (dict(alpha=torch.tensor(1.)), TypeError, "alpha must be a number, got Tensor"),
    (dict(alpha=1j), TypeError, "alpha must be a number, got complex 1j"),
    (dict(p='half'), TypeError, "p must be a number, got str 'half'"),
    (dict(p=False), TypeError, "p must be a number, got bool False"),
    (dict(stop_pct=None), TypeError, "stop_pct must be a number, got NoneType None"),
]

@pytest.mark.parametrize('cls', CLASSES, ids=lambda c: c.__name__)
@pytest.mark.parametrize('kwargs,exc,msg', BAD, ids=[f'{k}={v!r}' for kw,_,_ in BAD for k,v in kw.items()])
def test_bad_argument(cls, kwargs, exc, msg):
    with pytest.raises(exc, match='^' + re.escape(f'{cls.__name__}: {msg}')):
        cls(**kwargs)

BAD_MINMAX = [
    ((.5, .2), ValueError, "CutMix: minmax must have min <= max, got (0.5, 0.2); swap them"),
    ([.9, .1], ValueError, "CutMix: minmax must have min <= max, got [0.9, 0.1]"),
    ((.2, 1.5), ValueError, "CutMix: minmax[1] must be in [0, 1], got 1.5"),
    ((-.1, .5), ValueError, "CutMix: minmax[0] must be in [0, 1], got -0.1"),
    ((NAN, .5), ValueError, "CutMix: minmax[0] must be in [0, 1], got nan"),
    ((.1, NAN), ValueError, "CutMix: minmax[1] must be in [0, 1], got nan"),
    ((1.2, 1.5), ValueError, "CutMix: minmax[0] must be in [0, 1], got 1.2"),
    ((.1,), TypeError, "CutMix: minmax must be a (min, max) pair of shares of each side, got (0.1,)"),
    ((.1, .2, .3), TypeError, "CutMix: minmax must be a (min, max) pair"),
    (.5, TypeError, "CutMix: minmax must be a (min, max) pair of shares of each side, got 0.5"),
    ('ab', TypeError, "CutMix: minmax must be a (min, max) pair"),
    (('a', .5), TypeError, "CutMix: minmax[0] must be a number, got str 'a'"),
    ((.1, None), TypeError, "CutMix: minmax[1] must be a number, got NoneType None"),
]

@pytest.mark.parametrize('minmax,exc,msg', BAD_MINMAX, ids=[repr(m) for m,_,_ in BAD_MINMAX])
def test_bad_minmax(minmax, exc, msg):
    with pytest.raises(exc, match='^' + re.escape(msg)): CutMix(minmax=minmax)

@pytest.mark.parametrize('cls', CLASSES, ids=lambda c: c.__name__)
@pytest.mark.parametrize('kwargs', [dict(alpha=1e-3), dict(alpha=1), dict(alpha=np.float32(.3)), dict(alpha=1e6),
    dict(p=0), dict(p=1), dict(p=np.float64(.5)), dict(stop_pct=1), dict(stop_pct=1e-9), dict(p=0., stop_pct=.2)])
def test_good_arguments_are_kept(cls, kwargs):
    cb = cls(**kwargs)
    for k,v in kwargs.items(): assert getattr(cb, k)==v
    assert cb.idx is None and cb.wgt is None

@pytest.mark.parametrize('minmax', [(0, 0), (1, 1), (.3, .3), [0, 1], (np.float32(.2), .4)])
def test_good_minmax(minmax):
    assert CutMix(minmax=minmax).minmax==tuple(minmax)

def test_defaults():
    m,c = MixUp(),CutMix()
    assert (m.alpha,m.p,m.stop_pct,m.max_lam) == (.4, 1., 1., True)
    assert (c.alpha,c.p,c.stop_pct,c.per_sample,c.minmax) == (1., 1., 1., False, None)
    assert MixHandler().alpha==.5

def test_alpha_inf_is_rejected_or_draws_half():
    try: cb = MixUp(alpha=INF)
    except ValueError: return # rejecting it would be fine too
    mixing_learner(cb, torch.randn(8, 3))
    torch.testing.assert_close(cb.wgt, torch.full((2, 8), .5))

# ------------------------------------------------------------------ bad batches

def test_target_batch_size_differs():
    x = torch.randn(4, 3, 5, 5)
    for cb in (MixUp(), CutMix(), CutMix(per_sample=True)):
        with pytest.raises(ValueError, match=re.escape(f"{type(cb).__name__}: target 0 has shape (3,) but input 0 has "
                                                       "batch size 4; every input and target must be a tensor with the batch first")):
            mixing_learner(cb, x, torch.zeros(3, dtype=torch.long))
        assert cb.idx is None and cb.wgt is None

def test_second_target_batch_size_differs():
    x = torch.randn(4, 3, 5, 5)
    with pytest.raises(ValueError, match=re.escape("target 1 has shape (5, 5) but input 0 has batch size 4")):
        mixing_learner(MixUp(), x, (torch.zeros(4, dtype=torch.long), torch.zeros(5, 5)))

def test_scalar_and_non_tensor_targets():
    x = torch.randn(4, 3)
    with pytest.raises(ValueError, match=re.escape("MixUp: target 0 has shape () but input 0 has batch size 4")):
        mixing_learner(MixUp(), x, torch.tensor(1))
    with pytest.raises(ValueError, match=re.escape("MixUp: target 0 has shape () but input 0")):
        mixing_learner(MixUp(), x, ([0, 1, 2, 3],))

def test_input_batch_size_differs():
    with pytest.raises(ValueError, match=re.escape("CutMix: input 1 has shape (2, 3, 5, 5) but input 0 has batch size 4")):
        mixing_learner(CutMix(), (torch.randn(4, 3, 5, 5), torch.randn(2, 3, 5, 5)))

@pytest.mark.parametrize('per_sample', [False, True])
def test_cutmix_flat_input(per_sample):
    with pytest.raises(ValueError, match=re.escape("CutMix: cannot cut input 0 of shape (4, 10)") + '.*'
                                         + re.escape("For tabular or flat inputs use MixUp.")):
        mixing_learner(CutMix(per_sample=per_sample), torch.randn(4, 10))

def test_cutmix_1d_batch():
    with pytest.raises(ValueError, match=re.escape("CutMix: cannot cut input 0 of shape (4,)")):
        mixing_learner(CutMix(), torch.randn(4))

@pytest.mark.parametrize('per_sample', [False, True])
def test_cutmix_inputs_of_different_spatial_size(per_sample):
    "A second input of another spatial size: the error names it, and nothing is mixed (batch mode mixes in place)"
    x,x2 = torch.randn(4, 3, 8, 8),torch.randn(4, 3, 6, 6)
    x0 = x.clone()
    cb = CutMix(per_sample=per_sample)
    with pytest.raises(ValueError, match=re.escape("CutMix: cannot cut input 1 of shape (4, 3, 6, 6): every input needs "
                                                   "a batch and a channel dimension, then the spatial size of input 0 (")
                                         + r"\(?8, 8\)"):
        mixing_learner(cb, (x, x2))
    assert torch.equal(x, x0)
    assert cb.idx is None and cb.wgt is None

def test_cutmix_spatial_size_message_format():
    with pytest.raises(ValueError, match=re.escape("spatial size of input 0 (8, 8), as in")):
        mixing_learner(CutMix(), (torch.randn(4, 3, 8, 8), torch.randn(4, 3, 6, 6)))

def test_cutmix_second_flat_input():
    with pytest.raises(ValueError, match=re.escape("CutMix: cannot cut input 1 of shape (4, 7)")):
        mixing_learner(CutMix(), (torch.randn(4, 3, 8, 8), torch.randn(4, 7)))

def test_mixup_only_integer_inputs():
    with pytest.raises(ValueError, match=re.escape("MixUp: no input it can mix among ['torch.int64 (4, 3)', 'torch.uint8 (4, 2)']")):
        mixing_learner(MixUp(), (torch.zeros(4, 3, dtype=torch.long), torch.zeros(4, 2, dtype=torch.uint8)))

def test_mixup_integer_and_float_inputs():
    "A float input among integer ones is mixed, the integer ones are passed through"
    ints,x = torch.arange(8).view(4, 2),torch.randn(4, 3)
    cb = MixUp()
    learn = mixing_learner(cb, (ints, x.clone()))
    assert learn.xb[0] is ints
    torch.testing.assert_close(learn.xb[1], cb.wgt[0][:, None]*x + cb.wgt[1][:, None]*x[cb.perm], atol=1e-6, rtol=0)

def test_integer_targets_need_reducible_loss():
    def lf(pred, y): return F.cross_entropy(pred, y)
    with pytest.raises(ValueError, match=r"MixUp: integer targets need one loss per sample, but the loss .*lf.* cannot "
                                         r"skip its reduction\. Give it a `reduction` argument or attribute"):
        mixing_learner(MixUp(), torch.randn(4, 3), torch.zeros(4, dtype=torch.long), loss_func=lf)

# ------------------------------------------------------------------ p and stop_pct decide when to mix

@pytest.mark.parametrize('cls', [MixUp, CutMix])
def test_p_zero_never_mixes(cls):
    x = torch.randn(4, 3, 5, 5)
    for _ in range(5):
        cb = cls(p=0)
        learn = mixing_learner(cb, x.clone())
        assert cb.idx is None and cb.wgt is None and torch.equal(learn.xb[0], x)

def test_p_half_mixes_about_half():
    set_seed(0)
    cb = MixUp(p=.5)
    learn = mixing_learner(cb, torch.randn(4, 3))
    n = 0
    for _ in range(400):
        cb.before_batch(); n += cb.idx is not None
    assert 150 < n < 250

@pytest.mark.parametrize('pct,mixed', [(0., True), (.49, True), (.5, False), (.9, False)])
def test_stop_pct(pct, mixed):
    cb = CutMix(stop_pct=.5)
    x = torch.randn(4, 3, 5, 5)
    mixing_learner(cb, x, pct_train=pct)
    assert (cb.idx is not None)==mixed and (cb.wgt is not None)==mixed

def test_first_batch_checked_even_unmixed():
    "The first batch of a fit is checked whether or not it is mixed: a bad batch is refused before anything trains"
    cb = CutMix(p=0)
    with pytest.raises(ValueError, match="cannot cut input 0 of shape"): mixing_learner(cb, torch.randn(4, 10))
    assert cb.idx is None

def test_checked_again_when_the_layout_changes():
    "A batch laid out as the last one checked (types, dtypes, shapes, devices) is not checked again; any other one is, mid-fit too"
    from fastai.torch_core import TensorImage, TensorCategory
    from fastai.vision.core import TensorBBox
    x,y = TensorImage(torch.randn(4, 3, 8, 8)),TensorCategory(torch.randint(0, 2, (4,)))
    cb = CutMix()
    learn = mixing_learner(cb, x.clone(), y)
    def batch(xb, yb):
        learn.xb,learn.yb = xb,yb
        cb.before_batch()
        return cb.idx is not None
    seen = []
    check = cb.check_target
    cb.check_target = lambda t,i: (seen.append(type(t).__name__), check(t, i))
    assert batch((x.clone(),), (y,)) and seen==[] # laid out as the first batch: mixed, not checked again
    assert batch((x[:3].clone(),), (y[:3],)) and seen==['TensorCategory'] # an epoch's last, smaller batch: checked
    assert batch((x.clone(),), (y,)) and seen==['TensorCategory']*2
    # a bad batch after good ones is refused as the first batch would be
    with pytest.raises(ValueError, match="target 0 has shape \\(3,\\) but input 0 has batch size 4"): batch((x.clone(),), (y[:3],))
    with pytest.raises(ValueError, match="boxes cannot be mixed"): batch((x.clone(),), (TensorBBox(torch.rand(4, 2, 4)),))
    with pytest.raises(ValueError, match="cannot cut input 1"): batch((x.clone(), x[..., :5].clone()), (y,))

# ------------------------------------------------------------------ every member of the family

from fastai_cutmix.all import Cutout, CutMixUp, MixChoice, FMix, ResizeMix, RICAP
from fastai.torch_core import TensorMask
from fastai.data.transforms import TensorMultiCategory

# how to build each member with extra keyword arguments (MixChoice needs its mixers)
MEMBERS = {'MixUp': MixUp, 'CutMix': CutMix, 'Cutout': Cutout, 'FMix': FMix, 'ResizeMix': ResizeMix, 'RICAP': RICAP,
           'CutMixUp': CutMixUp, 'MixChoice': lambda **kw: MixChoice([MixUp(), CutMix()], **kw)}
WITH_ALPHA = ['MixUp', 'CutMix', 'Cutout', 'FMix', 'RICAP']
WITH_PER_SAMPLE = ['MixUp', 'CutMix', 'Cutout', 'FMix', 'ResizeMix', 'RICAP', 'CutMixUp', 'MixChoice']
COMMON_BAD = [b for b in BAD if not any(k=='alpha' for k in b[0])]
ALPHA_BAD = [b for b in BAD if any(k=='alpha' for k in b[0])]
PER_SAMPLE_BAD = [(dict(per_sample=v), TypeError, f"per_sample must be True or False, got {type(v).__name__} {v!r}")
                  for v in ('yes', 'False', 1, 0, None, [True])]
# arguments only some members have
OWN_BAD = [
    ('MixUp', dict(max_lam='no'), TypeError, "max_lam must be True or False, got str 'no'"),
    ('FMix', dict(decay_power=0), ValueError, "decay_power must be in (0, inf), got 0"),
    ('FMix', dict(decay_power='3'), TypeError, "decay_power must be a number, got str '3'"),
    ('ResizeMix', dict(scale=(.9, .1)), ValueError, "scale must have min <= max, got (0.9, 0.1); swap them"),
    ('ResizeMix', dict(scale=(.1, 2)), ValueError, "scale[1] must be in [0, 1], got 2"),
    ('ResizeMix', dict(scale=.5), TypeError, "scale must be a (min, max) pair of shares of each side, got 0.5"),
    ('ResizeMix', dict(alpha=1.), TypeError, "its boxes' sizes come from `scale`"),
    ('Cutout', dict(fill='0'), TypeError, "fill must be a number, got str '0'"),
    ('Cutout', dict(fill=NAN), ValueError, "fill must be in (-inf, inf), got nan"),
    ('Cutout', dict(minmax=(.6, .3)), ValueError, "minmax must have min <= max"),
    ('CutMixUp', dict(mixup_alpha=0), ValueError, "mixup_alpha must be in (0, inf), got 0"),
    ('CutMixUp', dict(cutmix_alpha=-1), ValueError, "cutmix_alpha must be in (0, inf), got -1"),
    ('CutMixUp', dict(cutmix_alpha='1'), TypeError, "cutmix_alpha must be a number, got str '1'"),
    ('CutMixUp', dict(switch_prob=1.5), ValueError, "switch_prob must be in [0, 1], got 1.5"),
    ('CutMixUp', dict(minmax=(.5, .1)), ValueError, "minmax must have min <= max, got (0.5, 0.1)"),
    ('MixChoice', dict(weights=[1.]), ValueError, "got 1 weights for 2 mixers; give one weight per mixer"),
    ('MixChoice', dict(weights=[1., -1.]), ValueError, "weights[1] must be in [0, inf), got -1.0"),
    ('MixChoice', dict(weights=[0, 0]), ValueError, "weights must not all be 0, got [0, 0]"),
    ('MixChoice', dict(weights=['a', 1]), TypeError, "weights[0] must be a number, got str 'a'"),
]
FAMILY_BAD = ([(n, *b) for n in MEMBERS for b in COMMON_BAD] + [(n, *b) for n in WITH_ALPHA for b in ALPHA_BAD]
              + [(n, *b) for n in WITH_PER_SAMPLE for b in PER_SAMPLE_BAD] + OWN_BAD)

@pytest.mark.parametrize('name,kwargs,exc,msg', FAMILY_BAD,
                         ids=[f'{n}-{k}={v!r}' for n,kw,_,_ in FAMILY_BAD for k,v in kw.items()])
def test_family_bad_argument(name, kwargs, exc, msg):
    "Every member's error names that member (not one of its parts) and the argument, with what it got"
    with pytest.raises(exc, match='^' + re.escape(f'{name}: {msg}')):
        MEMBERS[name](**kwargs)

@pytest.mark.parametrize('mixers', [[], [MixUp], [CutMix(), 'cutmix'], [MixChoice([MixUp()])], MixUp])
def test_mixchoice_bad_mixers(mixers):
    with pytest.raises(TypeError, match=re.escape("MixChoice: mixers must be a non-empty list of mixers of the family")):
        MixChoice(mixers)

@pytest.mark.parametrize('name', [n for n in MEMBERS if n not in ('MixUp',)])
def test_family_flat_input(name):
    "Region methods need spatial inputs: a tabular batch fails at the first batch, naming the member and the shape"
    member = 'CutMix: ' if name in ('CutMixUp', 'MixChoice') else '' # a choice names itself, then the member that refused
    with pytest.raises(ValueError, match='^' + re.escape(f"{name}: {member}cannot cut input 0 of shape (4, 10)")):
        mixing_learner(MEMBERS[name](), torch.randn(4, 10), torch.zeros(4, dtype=torch.long))

def _mixed_share(cb, pct, n=200):
    "How many of `n` batches `cb` decides to mix at `pct_train`; a batch it leaves alone must be the batch itself"
    x,y = torch.randn(8, 3, 6, 6),torch.randint(0, 3, (8,))
    learn = mixing_learner(cb, x.clone(), y, pct_train=pct)
    k = 0
    for i in range(n):
        if i: learn.xb,learn.yb = (x.clone(),),(y,); cb.before_batch()
        if cb.idx is None: assert torch.equal(learn.xb[0], x) and torch.equal(learn.yb[0], y)
        k += cb.idx is not None
    return k

@pytest.mark.parametrize('name', list(MEMBERS))
def test_family_p_schedule_and_stop_pct(name):
    "A schedule for `p` is read at each batch's `pct_train`, and `stop_pct` ends mixing, for every member"
    set_seed(0)
    cb = MEMBERS[name](p=SchedLin(1., 0.)) # p: 1 at the start, .5 halfway, 0 at the end
    assert _mixed_share(cb, 0.)==200
    assert 65 < _mixed_share(cb, .5) < 135
    assert _mixed_share(cb, .995) <= 6 and _mixed_share(cb, 1.)==0
    cb = MEMBERS[name](stop_pct=.5)
    assert _mixed_share(cb, .49, n=20)==20 and _mixed_share(cb, .5, n=20)==0

@pytest.mark.parametrize('per_sample', [False, True])
def test_choice_members_keep_their_p_and_stop_pct(per_sample):
    "A member's own `p` and `stop_pct` hold inside a `MixChoice`: the samples (or batches) it is drawn for stay as they are"
    set_seed(0)
    x,y = torch.randn(64, 3, 6, 6),torch.randint(0, 3, (64,))
    for pct in (.3, .7):
        cb = MixChoice([MixUp(p=0.), CutMix(per_sample=True, stop_pct=.5)], per_sample=per_sample)
        changed = 0
        for _ in range(10):
            learn = mixing_learner(cb, x.clone(), y, pct_train=pct)
            chose = cb.choice if per_sample else torch.full((64,), int(cb.cur is cb.mixers[1]))
            # MixUp (p=0) never mixes; CutMix mixes before its stop_pct only: the others are wholly themselves
            left = (chose==0) | (pct>=.5)
            assert (cb.idx[0]==torch.arange(64)).all() and (cb.wgt[0][left]==1).all()
            assert (learn.xb[0]==x).flatten(1).all(1)[left].all()
            changed += int((learn.xb[0]!=x).flatten(1).any(1).sum())
        assert (changed>0)==(pct<.5)

@pytest.mark.parametrize('name', list(MEMBERS))
def test_family_target_batch_size_differs(name):
    cb = MEMBERS[name]()
    with pytest.raises(ValueError, match=re.escape("target 0 has shape (3,) but input 0 has batch size 4")):
        mixing_learner(cb, torch.randn(4, 3, 8, 8), torch.zeros(3, dtype=torch.long))
    assert cb.idx is None and cb.wgt is None

# ------------------------------------------------------------------ a (bs, L) float target on length-L signals

REGION = ['CutMix', 'Cutout', 'FMix', 'ResizeMix', 'CutMixUp']

def mse_rows(pred, y):
    "A loss for (bs, L) targets with predictions the shape of the input (bs, C, L)"
    return F.mse_loss(pred.mean(1), y, reduction='mean')

@pytest.mark.parametrize('name', ['CutMix', 'FMix', 'ResizeMix'])
@pytest.mark.parametrize('per_sample', [False, True])
def test_ambiguous_float_target_on_signals(name, per_sample):
    "One value per position, or K=L class scores per sample? Guessing would give silently wrong targets: ask"
    x,y = torch.randn(4, 2, 5),torch.eye(5)[:4]
    with pytest.raises(ValueError, match='^' + re.escape(f"{name}: the float target of shape (4, 5) is ambiguous with "
                                                         "inputs of shape (4, 2, 5)") + '.*' + re.escape("`TensorMask(y)` to cut it, `TensorMultiCategory(y)` to weigh it")):
        mixing_learner(MEMBERS[name](per_sample=per_sample), x, y, loss_func=mse_rows)

@pytest.mark.parametrize('name', ['CutMix', 'FMix', 'ResizeMix'])
def test_typed_targets_on_signals_say_which(name):
    "`TensorMask` targets are cut with the input; `TensorMultiCategory` ones are weighted by source"
    x,y = torch.randn(4, 2, 5),torch.eye(5)[:4]
    cb = MEMBERS[name]()
    learn = mixing_learner(cb, x.clone(), TensorMask(y.clone()), loss_func=mse_rows)
    assert cb.cut==[True] and learn.yb[0].shape==(4, 5)
    cb = MEMBERS[name]()
    learn = mixing_learner(cb, x.clone(), TensorMultiCategory(y.clone()), loss_func=mse_rows)
    assert cb.cut==[False] # weighted by source, not cut: this loss has no reduction to skip, so the targets are mixed
    torch.testing.assert_close(learn.yb[0], sum(w[:, None]*y[i] for i,w in zip(cb.idx, cb.wgt)))
    torch.testing.assert_close(learn.yb[0].sum(1), torch.ones(4))

def test_integer_per_position_labels_on_signals_are_cut():
    "Integer (bs, L) labels on length-L signals can only be one label per position: cut, no question asked"
    x,y = torch.randn(4, 2, 5),torch.randint(0, 3, (4, 5))
    cb = CutMix(per_sample=True)
    learn = mixing_learner(cb, x, y, loss_func=lambda p,t: F.cross_entropy(p[:, :, :], t))
    assert cb.cut==[True]
