"""One rank of a distributed fit on CPU, started by tests/test_distributed.py (a helper script, not a test module).

The parent sets what `torchrun` would: RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT. This rank joins a gloo
process group on the loopback address and, for each mixer named, trains a fresh `tiny_cnn` for one epoch inside
fastai's `learn.distrib_ctx()` on a Fashion-MNIST slice. What it saw goes to `OUT/rank{r}.json`, its trained weights
to `OUT/rank{r}_{mixer}.pt`; rank 0's `learn.save` writes `OUT/models/final_{mixer}.pth`.

    python tests/ddp_worker.py OUT cutmix,mixup [--fail-rank R --fail-iter I] [--timeout S]
"""
import argparse, hashlib, json, os, time, warnings
warnings.filterwarnings('ignore')
os.environ.setdefault('MPLBACKEND', 'Agg')
import fastai, torch, torch.distributed as dist
import torch.nn.functional as F
torch.set_num_threads(1)
from fastai_cutmix.all import *
from fastai.distributed import DistributedDL, DistributedTrainer
from fastai.callback.progress import ProgressCallback
from datetime import timedelta # after the star import, which brings the `datetime` class

def _gloo_broadcast(self, t, rank):
    "Broadcasts t from rank `rank` to all other ranks. Returns t so t is same for all ranks after call."
    # fastai's `DistributedDL._broadcast` (2.8.7 to 2.8.12 at least) moves the index list to CUDA first
    # (`LongTensor(t).cuda()`, as NCCL only takes CUDA tensors), which fails without a GPU ("Found no NVIDIA driver").
    # gloo broadcasts CPU tensors: this is the same call without `.cuda()`. It is the only piece of fastai's
    # distributed path replaced here, and only in this test process.
    t = torch.tensor(t, dtype=torch.long)
    dist.broadcast(t, rank)
    return t.tolist()
DistributedDL._broadcast = _gloo_broadcast

MIXERS = {'cutmix': CutMix, 'mixup': MixUp}

def digest(t): return hashlib.sha1(t.detach().cpu().contiguous().numpy().tobytes()).hexdigest()[:16]

class Tap(Callback):
    "Runs before the mixer: one digest per sample of each training batch as this rank's `DistributedDL` gave it"
    order,run_valid = -5,False
    def __init__(self): self.batches = []
    def before_batch(self): self.batches.append([digest(x) for x in self.learn.xb[0]])

class Probe(Callback):
    "Runs after the mixer and the loss: was this batch mixed, the partners' shares, which loss ran, and its value"
    order,run_valid = 10,True
    def __init__(self, mixer, lf): self.mixer,self.lf,self.rows = mixer,lf,[]
    def after_loss(self):
        w,lf = self.mixer.wgt,self.learn.loss_func
        self.rows.append(dict(training=self.learn.training, iter=self.learn.iter, mixed=w is not None,
            partner_share=None if w is None else float(w[1:].mean()),
            mixloss=isinstance(lf, MixLoss), inner_is_lf=getattr(lf, 'loss_func', None) is self.lf,
            plain_lf=lf is self.lf, loss=float(self.learn.loss.detach()), lerp_loss=self.lerp_loss(w)))
    def lerp_loss(self, w):
        "The loss mixing must give, by hand: each source's cross-entropy per sample, weighted by its share, averaged"
        if w is None or not self.learn.training: return None
        with torch.no_grad():
            p,y = self.learn.pred.float(),self.mixer.src_yb[0]
            return float(sum(wj*F.cross_entropy(p, y[i], reduction='none') for i,wj in zip(self.mixer.idx, w)).mean())

class Fault(Callback):
    "Raises on one rank at one training batch: a crash of that rank alone, mid-training"
    order,run_valid = 20,False
    def __init__(self, rank, at_iter): self.rank,self.at_iter = rank,at_iter
    def after_loss(self):
        if dist.get_rank()==self.rank and self.learn.iter==self.at_iter:
            raise RuntimeError(f"injected fault on rank {self.rank} at training batch {self.at_iter}")

def run(name, dls, out, res, fault=None):
    "Train a fresh learner with mixer `name` in `distrib_ctx`; fill `res` with what this rank saw"
    rank,lf,mixer = dist.get_rank(),CrossEntropyLossFlat(),MIXERS[name]()
    tap,probe = Tap(),Probe(mixer, lf)
    fit_cbs = [tap, probe]
    if fault is None: learn = Learner(dls, tiny_cnn(), loss_func=lf, metrics=accuracy, cbs=mixer, path=out)
    else: # the mixer passed to `fit`: fastai detaches it even when `fit` raises, and then it gives the loss back
        learn = Learner(dls, tiny_cnn(), loss_func=lf, metrics=accuracy, path=out)
        fit_cbs += [mixer, Fault(*fault)]
    learn.remove_cb(ProgressCallback)
    learn.logger = noop
    res.update(init_digest=digest(torch.cat([p.detach().flatten() for p in learn.model.parameters()])), done=False)
    t0 = time.time()
    try:
        # sync_bn=False: `nn.SyncBatchNorm` runs on GPUs only; cpu=True: accelerate's multi-CPU (gloo) mode
        with learn.distrib_ctx(sync_bn=False, cpu=True):
            res.update(ctx_world_size=dist.get_world_size(), num_distrib=num_distrib(),
                       accelerate_processes=learn.cbs.filter(lambda c: isinstance(c, DistributedTrainer))[0].accelerator.num_processes)
            learn.fit(1, 1e-2, cbs=fit_cbs)
    except BaseException as e:
        res.update(error=f"{type(e).__name__}: {e}"[:500], error_time=time.time(), rows=probe.rows,
                   loss_func_restored=learn.loss_func is lf)
        raise
    finally: res['fit_s'] = round(time.time()-t0, 2)
    res.update(rows=probe.rows, batches=tap.batches, loss_func_restored=learn.loss_func is lf,
               mixer_clean=mixer.idx is None and mixer.wgt is None, model_type=type(learn.model).__name__,
               dls_unwrapped=not any(isinstance(dl, DistributedDL) for dl in learn.dls.loaders),
               recorder=[float(v) for v in learn.recorder.values[-1]])
    # fastai's `save` writes on rank 0 only; every rank then compares its own weights with that file
    learn.save(f'final_{name}', with_opt=False)
    torch.save(learn.model.state_dict(), out/f'rank{rank}_{name}.pt')
    distrib_barrier()
    saved,own = torch.load(out/'models'/f'final_{name}.pth', map_location='cpu'),learn.model.state_dict()
    res['same_params_as_rank0_file'] = all(torch.equal(p, saved[n]) for n,p in learn.model.named_parameters())
    res['same_state_as_rank0_file'] = set(own)==set(saved) and all(torch.equal(own[k], saved[k]) for k in own)
    res['done'] = True

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('out'); ap.add_argument('mixers', help="comma-separated: cutmix,mixup")
    ap.add_argument('--fail-rank', type=int, default=None); ap.add_argument('--fail-iter', type=int, default=3)
    ap.add_argument('--timeout', type=float, default=30, help="seconds any collective may wait")
    a = ap.parse_args()
    out,t0 = Path(a.out),time.time()
    # our own gloo group, with a fixed timeout: a rank stuck in a collective raises after `timeout` instead of waiting
    # forever. accelerate (inside `distrib_ctx`) finds it initialised and uses it.
    dist.init_process_group('gloo', init_method='env://', timeout=timedelta(seconds=a.timeout))
    rank = dist.get_rank()
    res = dict(rank=rank, world_size=dist.get_world_size(), env_rank=int(os.environ['RANK']), pid=os.getpid(),
               fastai=fastai.__version__, runs={})
    fn = out/f'rank{rank}.json'
    fn.write_text(json.dumps(res))
    set_seed(100+rank) # different weights and draws on each rank: DDP must hand rank 0's weights to all
    dls = fashion_mnist_dls(bs=64, n_train=1024, n_valid=256)
    fault = None if a.fail_rank is None else (a.fail_rank, a.fail_iter)
    try:
        for name in a.mixers.split(','): run(name, dls, out, res['runs'].setdefault(name, {}), fault)
    finally:
        res['total_s'] = round(time.time()-t0, 2)
        fn.write_text(json.dumps(res))
    dist.destroy_process_group()

if __name__=='__main__': main()
