"""The mixers in distributed data-parallel training: fastai's `learn.distrib_ctx()` (torch.distributed through Hugging
Face accelerate) with two real processes on CPU, over gloo on the loopback address.

Each rank is `tests/ddp_worker.py`, started the way `torchrun` starts its workers: environment variables RANK,
WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT. A clean run fits a `tiny_cnn` with CutMix, then one with MixUp, on
a real Fashion-MNIST slice (512 training images per rank); a second run crashes one rank mid-training. Every process
and every collective has a fixed time limit, so a hang fails the test instead of blocking it."""
import json, os, socket, subprocess, sys, time
from pathlib import Path
import pytest, torch, torch.distributed as dist

import accelerate # fastai's distrib_ctx needs it: a dev requirement (settings.ini), so a missing one fails, never skips
assert dist.is_available() and dist.is_gloo_available(), "this torch has no torch.distributed with gloo"
import fastai

WORKER = Path(__file__).parent/'ddp_worker.py'
WORLD = 2
N_TRAIN,N_VALID,BS = 1024,256,64 # the worker's slice: 512 training images, 8 batches, per rank
MIXERS = ['cutmix', 'mixup']
RUN_LIMIT = 240     # seconds for a whole run: a guard against hangs, not a speed test (two fastai imports on 2 cores)
GLOO_TIMEOUT = 30   # seconds any collective may wait (the workers' `init_process_group(timeout=...)`)
FAULT_LIMIT = 60    # seconds from the crash of one rank until no rank is left running

# ---------------------------------------------------------------------------------------------------------------
# Launching the ranks

def free_port():
    "A TCP port free on the loopback address now, for rank 0's rendezvous store"
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]

def loopback_ifname():
    "The loopback interface's name ('lo' on Linux, 'lo0' on macOS), so gloo's sockets stay on it too"
    try: return next((n for _,n in socket.if_nameindex() if n.startswith('lo')), None)
    except (AttributeError, OSError): return None

class Run:
    "What a launch left: each rank's exit code, exit time, log and JSON report"
    def __init__(self, out, procs, exit_times, hung, elapsed):
        self.out,self.codes,self.exit_times,self.hung,self.elapsed = out,[p.returncode for p in procs],exit_times,hung,elapsed
        self.logs = [(out/f'log{r}.txt').read_text(errors='replace') for r in range(WORLD)]
        self.reports = [json.loads(fn.read_text()) if (fn:=out/f'rank{r}.json').exists() else None for r in range(WORLD)]
    def why(self): return '\n'.join(f"--- rank {r}, exit code {c}:\n{l[-3000:]}" for r,(c,l) in enumerate(zip(self.codes, self.logs)))

def launch(out, *args, limit=RUN_LIMIT):
    "Start `WORLD` workers as `torchrun` would, wait at most `limit` seconds, and kill whatever is still running then"
    env = {k:v for k,v in os.environ.items() if not k.startswith(('ACCELERATE_', 'TORCHELASTIC_'))}
    env.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(free_port()), WORLD_SIZE=str(WORLD), LOCAL_WORLD_SIZE=str(WORLD),
               OMP_NUM_THREADS='1', CUDA_VISIBLE_DEVICES='', PYTHONWARNINGS='ignore', MPLBACKEND='Agg')
    if (lo:=loopback_ifname()): env['GLOO_SOCKET_IFNAME'] = lo
    procs,logs,exit_times = [],[],{}
    t0 = time.monotonic()
    try:
        for r in range(WORLD):
            logs.append(open(out/f'log{r}.txt', 'w'))
            procs.append(subprocess.Popen([sys.executable, str(WORKER), str(out), *args, '--timeout', str(GLOO_TIMEOUT)],
                env={**env, 'RANK': str(r), 'LOCAL_RANK': str(r)}, stdout=logs[-1], stderr=subprocess.STDOUT))
        while len(exit_times)<WORLD and time.monotonic()-t0<limit:
            for r,p in enumerate(procs):
                if r not in exit_times and p.poll() is not None: exit_times[r] = time.time()
            time.sleep(.05)
    finally:
        hung = [r for r,p in enumerate(procs) if p.poll() is None]
        for p in procs:
            if p.poll() is None: p.kill()
        for p in procs: p.wait(timeout=30)
        for f in logs: f.close()
    return Run(out, procs, exit_times, hung, time.monotonic()-t0)

@pytest.fixture(scope='module')
def clean(tmp_path_factory):
    "One launch of two ranks: a CutMix fit, then a MixUp fit, each in `distrib_ctx`"
    run = launch(tmp_path_factory.mktemp('ddp'), ','.join(MIXERS))
    assert not run.hung, f"ranks {run.hung} still running after {RUN_LIMIT}s: killed\n{run.why()}"
    assert run.codes==[0]*WORLD, run.why()
    assert all(rep is not None and set(rep['runs'])==set(MIXERS) for rep in run.reports), run.why()
    return run

def runs_of(run, name): return [rep['runs'][name] for rep in run.reports]
def training(rows): return [r for r in rows if r['training']]
def validation(rows): return [r for r in rows if not r['training']]

# ---------------------------------------------------------------------------------------------------------------
# A clean run

def test_two_real_ranks(clean):
    reps = clean.reports
    assert [r['rank'] for r in reps]==[r['env_rank'] for r in reps]==list(range(WORLD))
    assert all(r['world_size']==WORLD for r in reps), "torch.distributed.get_world_size() in each rank"
    assert len({r['pid'] for r in reps})==WORLD, "one process per rank"
    assert all(r['fastai']==fastai.__version__ for r in reps), "the workers run this interpreter's fastai"
    for name in MIXERS:
        for r in runs_of(clean, name):
            # inside the context: fastai sees the world, accelerate too (not one silent process)
            assert r['ctx_world_size']==r['num_distrib']==r['accelerate_processes']==WORLD

@pytest.mark.parametrize('name', MIXERS)
def test_each_rank_trains_its_own_shard(clean, name):
    shards = []
    for r in runs_of(clean, name):
        assert [len(b) for b in r['batches']]==[BS]*(N_TRAIN//WORLD//BS), "the rank's share of the batches, full"
        shard = {d for b in r['batches'] for d in b}
        assert len(shard)==N_TRAIN//WORLD, "each image of the rank's shard once"
        shards.append(shard)
    assert not shards[0] & shards[1], "the ranks saw different images"
    assert len(shards[0] | shards[1])==N_TRAIN, "together, the whole training set once"

@pytest.mark.parametrize('name', MIXERS)
def test_every_training_batch_mixed_on_every_rank(clean, name):
    shares = []
    for r in runs_of(clean, name):
        tr,va = training(r['rows']),validation(r['rows'])
        assert len(tr)==N_TRAIN//WORLD//BS and len(va)==N_VALID//WORLD//BS
        assert all(x['mixed'] and x['mixloss'] and x['inner_is_lf'] for x in tr), "mixed, with a MixLoss around the learner's loss"
        for x in tr: assert abs(x['loss']-x['lerp_loss']) <= 1e-5*max(1., abs(x['lerp_loss'])), ("the loss is the lerp of the sources' losses", x)
        assert all(0<=x['partner_share']<=1 for x in tr) and any(x['partner_share']>0 for x in tr)
        assert all(x['loss']==x['loss'] and abs(x['loss'])<1e3 for x in r['rows']), "finite losses"
        assert all(not x['mixed'] and x['plain_lf'] for x in va), "validation unmixed, on the learner's own loss"
        shares.append([x['partner_share'] for x in tr])
    assert shares[0]!=shares[1], "each rank draws its own mixing"

@pytest.mark.parametrize('name', MIXERS)
def test_learner_restored_on_every_rank(clean, name):
    for r in runs_of(clean, name):
        assert r['loss_func_restored'], "learn.loss_func is the very loss object given at construction"
        assert r['mixer_clean'], "the mixer holds no batch after fit"
        assert r['model_type']=='Sequential' and r['dls_unwrapped'], "distrib_ctx unwrapped the model and the DataLoaders"

@pytest.mark.parametrize('name', MIXERS)
def test_every_rank_ends_with_the_model_rank0_saved(clean, name):
    rs = runs_of(clean, name)
    assert rs[0]['init_digest']!=rs[1]['init_digest'], "ranks start from different weights: DDP must sync them"
    saved = torch.load(clean.out/'models'/f'final_{name}.pth', map_location='cpu')
    assert sorted(p.name for p in (clean.out/'models').iterdir())==[f'final_{n}.pth' for n in MIXERS], "rank 0 alone saves"
    for rank,r in enumerate(rs):
        assert r['same_params_as_rank0_file'] and r['same_state_as_rank0_file']
        sd = torch.load(clean.out/f'rank{rank}_{name}.pt', map_location='cpu')
        assert sd.keys()==saved.keys() and all(torch.equal(sd[k], saved[k]) for k in sd), f"rank {rank}'s state dict"
    assert rs[0]['recorder']==rs[1]['recorder'], "losses and metric gathered over both ranks"

# ---------------------------------------------------------------------------------------------------------------
# A fault on one rank

FAIL_RANK,FAIL_ITER = 1,3

def test_fault_on_one_rank_ends_every_rank(tmp_path):
    run = launch(tmp_path, 'cutmix', '--fail-rank', str(FAIL_RANK), '--fail-iter', str(FAIL_ITER))
    assert not run.hung, f"ranks {run.hung} still running after {RUN_LIMIT}s: killed\n{run.why()}"
    assert all(c!=0 for c in run.codes), f"every rank fails: {run.codes}\n{run.why()}"
    reps = [rep['runs']['cutmix'] for rep in run.reports]
    assert all(not r['done'] and 'error' in r for r in reps), run.why()
    bad = reps[FAIL_RANK]
    assert 'injected fault on rank 1' in bad['error']
    assert len(training(bad['rows']))==FAIL_ITER+1, "it failed mid-training, at the batch asked"
    for rank,r in enumerate(reps):
        if rank==FAIL_RANK: continue
        assert len(training(r['rows']))>=FAIL_ITER, "the healthy rank trained until its peer failed"
        assert r['error_time']-bad['error_time'] < GLOO_TIMEOUT+10, f"rank {rank} noticed the fault: {r['error']}"
    assert max(run.exit_times.values())-bad['error_time'] < FAULT_LIMIT, "no rank outlived the fault by a minute"
    assert all(r['loss_func_restored'] for r in reps), "a mixer passed to fit gives the loss back even when fit raises"
