"The `fastai_cutmix` command, run as users run it (the installed console script, in a subprocess), and where the data comes from."
import os, signal, subprocess, sys, time, functools, http.server, threading
from pathlib import Path
import numpy as np, pandas as pd, pytest
from PIL import Image
import fastai_cutmix.data as data
from fastai_cutmix.data import find_fashion_mnist, download_fashion_mnist, fashion_mnist, FMNIST_FILES, FMNIST_ENV

EXE = str(Path(sys.executable).parent/'fastai_cutmix')
SMALL = ['--arch', 'tiny', '--bs', '32', '--n-train', '256', '--n-valid', '64']
ENV = dict(os.environ, PYTHONWARNINGS='ignore', MPLBACKEND='Agg')

def run(*args, timeout=240):
    "Run the command; return (exit status, stdout+stderr)"
    r = subprocess.run([EXE, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=ENV)
    return r.returncode, r.stdout + r.stderr

def shapes_folder(path, n=24, size=32, layout='classes'):
    "A few dozen PNGs of squares and discs: one folder per class, or train/ and valid/ of those"
    g = np.random.default_rng(0)
    yy,xx = np.mgrid[:size, :size]
    for i in range(n):
        cls = ('square', 'disc')[i%2]
        cy,cx = g.integers(8, size-8, 2); r = int(g.integers(4, 8))
        m = (np.abs(yy-cy)<r) & (np.abs(xx-cx)<r) if cls=='square' else (yy-cy)**2+(xx-cx)**2<r*r
        im = np.where(m[..., None], g.integers(100, 255, 3), g.integers(0, 80, 3)).astype(np.uint8)
        d = Path(path)/(('train' if i<n*3//4 else 'valid') if layout=='split' else '')/cls
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(im).save(d/f"{i}.png")
    return Path(path)

def check_train_files(out, text, epochs):
    "The four files exist and are what they say; the table and the file list were printed"
    for f in ('metrics.csv', 'batch.png', 'curves.png', 'learner.pkl'):
        assert (out/f).is_file() and f"{out/f}" in text, f
    df = pd.read_csv(out/'metrics.csv')
    assert list(df.columns)==['epoch', 'train_loss', 'valid_loss', 'accuracy', 'time'] and len(df)==epochs
    assert df.accuracy.between(0, 1).all() and np.isfinite(df.valid_loss).all()
    assert 'train_loss' in text and 'valid_loss' in text # fastai's metrics table
    for f in ('batch.png', 'curves.png'): assert Image.open(out/f).size[0] > 100

def test_train_fashion_mnist(tmp_path):
    rc,text = run('train', *SMALL, '--epochs', '2', '--method', 'cutmixup', '--out', tmp_path/'run')
    assert rc==0, text
    check_train_files(tmp_path/'run', text, 2)
    assert 'CutMixUp' in text
    from fastai.learner import load_learner
    learn = load_learner(tmp_path/'run'/'learner.pkl')
    x,y = fashion_mnist()['test']
    pred,_,probs = learn.predict(x[0])
    assert pred in data.FMNIST_CLASSES and abs(float(probs.sum())-1) < 1e-4

@pytest.mark.parametrize('layout', ['classes', 'split'])
def test_train_image_folder(tmp_path, layout):
    folder = shapes_folder(tmp_path/'shapes', layout=layout)
    rc,text = run('train', folder, '--arch', 'tiny', '--size', '32', '--bs', '8', '--epochs', '1', '--method', 'ricap', '--out', tmp_path/'run')
    assert rc==0, text
    check_train_files(tmp_path/'run', text, 1)
    n_valid = 6 if layout=='split' else 4 # train/valid folders, or a random 20% of 24
    assert f"validating on {n_valid}" in text, text

def test_pretrained_falls_back_offline(tmp_path):
    "A named architecture asks for pretrained weights; where they cannot be had, it says so and trains anyway"
    rc,text = run('train', '--arch', 'resnet18', '--bs', '32', '--n-train', '64', '--n-valid', '32', '--epochs', '1', '--out', tmp_path/'run')
    assert rc==0, text
    assert 'training from random initialisation' in text or 'Downloading' not in text
    rc,text = run('train', '--arch', 'resnet18', '--no-pretrained', '--bs', '32', '--n-train', '64', '--n-valid', '32', '--epochs', '1', '--out', tmp_path/'run2')
    assert rc==0 and 'Pretrained weights' not in text, text

def test_compare(tmp_path):
    out = tmp_path/'cmp'
    methods = ['none', 'cutmix', 'fastai-cutmix'] # fastai's own CutMix: the cross-check
    rc,text = run('compare', *SMALL, '--epochs', '2', '--methods', ','.join(methods), '--seeds', '2', '--out', out)
    assert rc==0, text
    summ,runs = pd.read_csv(out/'compare.csv'),pd.read_csv(out/'runs.csv')
    assert list(summ.method)==methods and (summ.runs==2).all() and len(runs)==6
    for m in methods:
        r = runs[runs.method==m]
        assert abs(summ[summ.method==m].accuracy_mean.item() - r.accuracy.mean()) < 1e-9
        assert abs(summ[summ.method==m].accuracy_std.item() - r.accuracy.std(ddof=1)) < 1e-9
    md = (out/'compare.md').read_text()
    assert '| method | runs | validation accuracy | validation loss |' in md and ' ± ' in md and md.strip() in text.replace('\r', '')
    assert Image.open(out/'compare.png').size[0] > 100

@pytest.mark.parametrize('args,msg', [
    (['train', '/no/such/folder'], "does not exist"),
    (['train', '--method', 'cutmx'], "invalid choice: 'cutmx'"),
    (['train', '--method', 'fastai-cutmix'], "invalid choice: 'fastai-cutmix'"), # fastai's callbacks: compare only
    (['compare', '--methods', 'none,cutmx'], "unknown method 'cutmx'"),
    (['train', '--arch', 'resnet19'], "unknown --arch 'resnet19'"),
    (['train', '--epochs', '0'], "expected a number >= 1, got '0'"),
    (['train', '--lr', 'fast'], "expected a number, got 'fast'"),
    (['train', '--bs', '2.5'], "expected an integer, got '2.5'"),
    (['compare', '--seeds', '-1'], "expected a number >= 1"),
    (['frobnicate'], "invalid choice: 'frobnicate'"),
])
def test_bad_input(args, msg):
    rc,text = run(*args, timeout=120)
    assert rc==2 and msg in text, (rc, text)
    assert 'Traceback' not in text

def test_empty_and_one_class_folders(tmp_path):
    (tmp_path/'empty').mkdir()
    rc,text = run('train', tmp_path/'empty', '--arch', 'tiny')
    assert rc==2 and 'holds no images' in text and 'Traceback' not in text, text
    one = tmp_path/'one'/'cat'; one.mkdir(parents=True)
    for i in range(3): Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(one/f"{i}.png")
    rc,text = run('train', tmp_path/'one', '--arch', 'tiny')
    assert rc==2 and 'two classes or more' in text, text

def test_ctrl_c_keeps_finished_epochs(tmp_path):
    "SIGINT after the first epoch: exit status 130, the finished epochs' rows stay in metrics.csv"
    out = tmp_path/'run'
    p = subprocess.Popen([EXE, 'train', *SMALL, '--n-train', '1024', '--epochs', '100', '--out', str(out)],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV)
    try:
        t0 = time.time()
        while time.time()-t0 < 120:
            if (out/'metrics.csv').exists() and len((out/'metrics.csv').read_text().splitlines()) >= 2: break
            time.sleep(.2)
        else: pytest.fail("no epoch finished within 120 s")
        p.send_signal(signal.SIGINT)
        text,_ = p.communicate(timeout=60)
    finally:
        if p.poll() is None: p.kill()
    assert p.returncode==130, text
    assert 'Interrupted' in text and 'Traceback' not in text, text
    rows = pd.read_csv(out/'metrics.csv')
    assert 1 <= len(rows) < 100 and rows.epoch.tolist()==list(range(len(rows)))

# ---------------------------------------------------------------- where Fashion-MNIST comes from

def fill(d, src):
    "Copy the four IDX files from `src` into the folder `d`"
    d.mkdir(parents=True, exist_ok=True)
    for fs in FMNIST_FILES.values():
        for f in fs: (d/f).write_bytes((src/f).read_bytes())
    return d

def test_search_order(tmp_path, monkeypatch):
    "A path given beats $FASHION_MNIST, which beats the Debian folder, which beats fastai's data folder"
    real = find_fashion_mnist(download=False)
    a,b,c = fill(tmp_path/'a', real),fill(tmp_path/'b', real),fill(tmp_path/'c', real)
    monkeypatch.setattr(data, 'FMNIST_DEBIAN', c)
    monkeypatch.setenv(FMNIST_ENV, str(b))
    assert find_fashion_mnist(a)==a
    assert find_fashion_mnist()==b
    monkeypatch.delenv(FMNIST_ENV)
    assert find_fashion_mnist()==c
    (c/FMNIST_FILES['train'][1]).unlink() # incomplete: skipped
    monkeypatch.setattr(data, 'fastai_path', lambda k: tmp_path/'fastai')
    fill(tmp_path/'fastai'/'fashion-mnist', real)
    assert find_fashion_mnist()==tmp_path/'fastai'/'fashion-mnist'

def test_download_then_clear_error(tmp_path, monkeypatch):
    "Nothing on disk: downloaded (from a local HTTP server standing in for the mirror); no mirror: an error saying how"
    real = find_fashion_mnist(download=False)
    monkeypatch.setattr(data, 'FMNIST_DEBIAN', tmp_path/'nothing')
    monkeypatch.setattr(data, 'fastai_path', lambda k: tmp_path/'fastai')
    monkeypatch.delenv(FMNIST_ENV, raising=False)
    srv = http.server.ThreadingHTTPServer(('127.0.0.1', 0), functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(real)))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{srv.server_address[1]}/"
        with pytest.raises(FileNotFoundError) as e: find_fashion_mnist(mirrors=[url+'nowhere/'])
        for s in ('Fashion-MNIST not found', 'failed too', 'apt-get install dataset-fashion-mnist', '$FASHION_MNIST'): assert s in str(e.value)
        assert not any((tmp_path/'fastai'/'fashion-mnist').glob('*.gz')) # nothing half-written is kept
        d = find_fashion_mnist(mirrors=[url])
        assert d==tmp_path/'fastai'/'fashion-mnist'
        assert fashion_mnist(d)['train'][0].shape==(60_000, 28, 28)
    finally: srv.shutdown()
    monkeypatch.setattr(data, 'fastai_path', lambda k: tmp_path/'fastai2')
    with pytest.raises(FileNotFoundError, match="Looked in"): find_fashion_mnist(download=False)
