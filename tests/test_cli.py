"""The `fastai_cutmix` command, run as users run it (the installed console script, in a subprocess; for input refused before
any work, its `main` in this process), and where the data comes from."""
import gzip, os, re, signal, subprocess, sys, time, functools, http.server, threading
from pathlib import Path
import fastprogress, numpy as np, pandas as pd, pytest, torch, torchvision.models as tvm
from PIL import Image
import fastai_cutmix.data as data
import fastai_cutmix.cli as cli
from fastai.learner import Learner
from fastai_cutmix.data import find_fashion_mnist, download_fashion_mnist, fashion_mnist, FMNIST_FILES, FMNIST_ENV, tiny_cnn

EXE = str(Path(sys.executable).parent/'fastai_cutmix')
SMALL = ['--arch', 'tiny', '--bs', '32', '--n-train', '256', '--n-valid', '64']
ENV = dict(os.environ, PYTHONWARNINGS='ignore', MPLBACKEND='Agg')

def run(*args, timeout=240):
    "Run the command; return (exit status, stdout+stderr)"
    r = subprocess.run([EXE, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=ENV)
    return r.returncode, r.stdout + r.stderr

def run_here(monkeypatch, capsys, *args):
    """Run the command's `main` in this process; return (exit status, stdout+stderr). For input refused before any training,
    after fastai is imported: the console script would add only its ~10 s of imports. Anything but `SystemExit` escaping
    would be the traceback a user sees"""
    fp = fastprogress.fastprogress # `main` turns the progress bar off when not on a terminal: put it back after the test
    monkeypatch.setattr(fp, 'NO_BAR', fp.NO_BAR); monkeypatch.setattr(fp.ConsoleProgressBar, 'fill', fp.ConsoleProgressBar.fill)
    try: cli.main(list(map(str, args))); rc = 0
    except SystemExit as e: rc = e.code
    out = capsys.readouterr()
    return rc, out.out + out.err

def interrupt(args, ready, timeout=120):
    "Run the command and press Ctrl-C (SIGINT) once `ready(output so far)`; return (exit status, output)"
    p = subprocess.Popen([EXE, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         env=dict(ENV, PYTHONUNBUFFERED='1'))
    lines = []
    def read():
        for l in p.stdout: lines.append(l)
    reader = threading.Thread(target=read, daemon=True); reader.start()
    try:
        t0 = time.time()
        while not ready(''.join(lines)):
            if p.poll() is not None or time.time()-t0 > timeout: pytest.fail(f"not ready to interrupt:\n{''.join(lines)}")
            time.sleep(.1)
        p.send_signal(signal.SIGINT)
        p.wait(timeout=60); reader.join(10)
    finally:
        if p.poll() is None: p.kill()
    return p.returncode, ''.join(lines)

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
    assert '| training images | method | runs | validation accuracy | validation loss | gain over none (95% interval) | verdict |' in md
    assert ' ± ' in md and md.strip() in text.replace('\r', '')
    assert 'train_loss' in text # fastai's metrics table, for each run
    assert (runs.valid_loss==runs.valid_loss_epoch2).all() # the curves' data: validation loss per epoch too
    w,h = Image.open(out/'compare.png').size
    assert w > 2.4*h # one size: two panels side by side, accuracy and loss per epoch

def test_compare_image_folder(tmp_path):
    "compare on a folder of images: the table printed, and the CSV, Markdown, per-run CSV and plot it wrote"
    folder,out = shapes_folder(tmp_path/'shapes', layout='split'),tmp_path/'cmp'
    rc,text = run('compare', folder, '--arch', 'tiny', '--size', '32', '--bs', '8', '--epochs', '2', '--methods', 'none,cutmix',
                  '--seeds', '2', '--out', out)
    assert rc==0, text
    for f in ('compare.csv', 'compare.md', 'compare.png', 'runs.csv'): assert f"{out/f}" in text, f
    runs,summ = pd.read_csv(out/'runs.csv'),pd.read_csv(out/'compare.csv')
    assert runs[['method', 'seed']].values.tolist()==[['none', 42], ['cutmix', 42], ['none', 43], ['cutmix', 43]] # seed by seed: pairs first
    assert (runs.accuracy==runs.accuracy_epoch2).all() and runs.filter(like='accuracy').stack().between(0, 1).all()
    assert summ.method.tolist()==['none', 'cutmix'] and (summ.runs==2).all()
    for m in ('none', 'cutmix'):
        r,t = runs[runs.method==m],summ[summ.method==m].iloc[0]
        assert abs(t.accuracy_mean-r.accuracy.mean()) < 1e-9 and abs(t.valid_loss_std-r.valid_loss.std(ddof=1)) < 1e-9
    md = (out/'compare.md').read_text()
    assert md.startswith(f"tiny, 2 epochs, 2 seeds per method, data: {folder}\n") and 'stopped' not in md
    rows = [l for l in md.splitlines() if '| none |' in l or '| cutmix |' in l]
    assert len(rows)==2 and all(l.count(' ± ')==2 for l in rows)
    assert md.strip() in text.replace('\r', '') # the table printed is the table written
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

@pytest.mark.parametrize('lr', ['inf', '-inf', 'nan', '1e999'])
def test_non_finite_numbers(lr, tmp_path, monkeypatch, capsys):
    "Refused like any other bad number (tiny sizes: were it accepted, the run would be short)"
    rc,text = run_here(monkeypatch, capsys, 'compare', *SMALL, '--epochs', '1', '--methods', 'none', '--seeds', '1',
                       f'--lr={lr}', '--out', tmp_path) # '=': a value starting with '-' is not an option
    assert rc==2 and f"argument --lr: expected a finite number, got '{lr}'" in text, text

def test_out_is_a_file(tmp_path, monkeypatch, capsys):
    f = tmp_path/'notes.txt'; f.write_text('mine')
    rc,text = run_here(monkeypatch, capsys, 'train', *SMALL, '--out', f)
    assert rc==2 and f"--out {f} is a file" in text, text
    assert f.read_text()=='mine'

def test_corrupt_image(tmp_path, monkeypatch, capsys):
    "A file in the folder that is not the image its name says: named before training (not in a DataLoader worker's traceback)"
    folder = shapes_folder(tmp_path/'shapes')
    (folder/'disc'/'broken.png').write_bytes(b'<html>a web page saved under the wrong name</html>')
    rc,text = run_here(monkeypatch, capsys, 'train', folder, '--arch', 'tiny', '--size', '32', '--bs', '8', '--epochs', '1', '--out', tmp_path/'run')
    assert rc==2 and f"{folder/'disc'/'broken.png'} (UnidentifiedImageError" in text, text
    assert not (tmp_path/'run'/'metrics.csv').exists()

def test_n_train_with_image_folder(tmp_path, monkeypatch, capsys):
    "--n-train/--n-valid take the first images of Fashion-MNIST: given with an image folder, refused, not ignored"
    rc,text = run_here(monkeypatch, capsys, 'train', shapes_folder(tmp_path/'shapes'), '--arch', 'tiny', '--size', '32', '--epochs', '1',
                       '--n-valid', '5', '--out', tmp_path/'run')
    assert rc==2 and "--n-train and --n-valid take the first images of Fashion-MNIST" in text, text

def test_help_is_quiet():
    "`--help` (like any run) prints nothing on stderr: no warning from the libraries fastai imports"
    env = {k: v for k,v in ENV.items() if k!='PYTHONWARNINGS'} # warnings shown, as a user's shell shows them
    r = subprocess.run([EXE, '--help'], capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode==0 and 'usage: fastai_cutmix' in r.stdout, r.stderr
    assert 'Warning' not in r.stderr, r.stderr

@pytest.mark.parametrize('args,rc', [(['--help'], 0), (['train', '--help'], 0), (['compare', '--methods', 'none,cutmx'], 2),
                                     (['train', '--lr', 'nan'], 2)])
def test_arguments_answered_before_fastai(args, rc):
    "The console script answers `--help` and refuses bad arguments without importing torch or fastai (Python lists its imports)"
    r = subprocess.run([EXE, *args], capture_output=True, text=True, timeout=120, env=dict(ENV, PYTHONPROFILEIMPORTTIME='1'))
    assert r.returncode==rc, r.stdout + r.stderr
    imported = {l.split('|')[-1].strip() for l in r.stderr.splitlines() if l.startswith('import time:')}
    assert 'fastai_cutmix.command' in imported, r.stderr # the listing is real: the entry point is in it
    assert not {m for m in imported if m.split('.')[0] in ('torch', 'fastai') or m=='fastai_cutmix.cli'}, sorted(imported)

def fail_pretrained(monkeypatch, msg="no network"):
    "`cli.vision_learner` failing for pretrained weights, as offline; the architectures it was asked weights for"
    tries = []
    def vision_learner(dls, arch, pretrained=True, n_in=3, **kwargs):
        if pretrained:
            tries.append(arch)
            raise OSError(msg)
        return Learner(dls, tiny_cnn(n_in, dls.c), **kwargs) # the weights are the point, not the model: a small one is quick
    monkeypatch.setattr(cli, 'vision_learner', vision_learner)
    monkeypatch.setattr(cli, '_no_weights', {}, raising=False) # forget earlier failures in this process
    return tries

def test_pretrained_failure_not_retried(tmp_path, monkeypatch):
    "Weights that failed to load are not asked for again in the process: a compare over two seeds tries once, and says so once"
    tries = fail_pretrained(monkeypatch, ' '.join(['unreachable']*40)) # long: the message keeps whole words
    said = []
    cli.compare(methods=['none'], seeds=2, epochs=1, arch='resnet18', bs=32, n_train=64, n_valid=32, out=tmp_path, log=said.append)
    assert len(tries)==1 and len(pd.read_csv(tmp_path/'runs.csv'))==2
    msg, = [m for m in said if m.startswith('Pretrained weights')] # said once (and in the report's notes)
    assert set(re.findall(r'\bunr\w*', msg))=={'unreachable'}, msg
    assert f"{torch.hub.get_dir()}/checkpoints" in msg and tvm.get_model_weights('resnet18').DEFAULT.url in msg, msg
    again = []
    cli.make_learner(cli.get_dls(n_train=64, n_valid=32), 'resnet18', 'none', log=again.append) # as `train` would
    assert len(tries)==1 and again==[msg]

def test_timm_failure_goes_offline(fmnist_dls, monkeypatch):
    "After timm's weights failed to load, the process asks the Hugging Face Hub no more (offline, each ask retries for ~50 s)"
    pytest.importorskip('timm')
    import huggingface_hub.constants as hc
    monkeypatch.setenv('HF_HUB_OFFLINE', '0') # restored after the test
    monkeypatch.setattr(hc, 'HF_HUB_OFFLINE', False)
    tries,said = fail_pretrained(monkeypatch),[]
    cli.make_learner(fmnist_dls, 'resnet10t', 'none', log=said.append)
    assert tries==['resnet10t'] and os.environ['HF_HUB_OFFLINE']=='1' and hc.HF_HUB_OFFLINE
    assert 'Hugging Face' in said[0] and 'HF_HUB_OFFLINE=1' in said[0] and 'timm/resnet10t' in said[0], said

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
    metrics = out/'metrics.csv'
    rc,text = interrupt(['train', *SMALL, '--n-train', '1024', '--epochs', '100', '--out', out],
                        lambda _: metrics.exists() and len(metrics.read_text().splitlines()) >= 2)
    assert rc==130, text
    assert 'Interrupted' in text and 'Traceback' not in text, text
    rows = pd.read_csv(metrics)
    assert 1 <= len(rows) < 100 and rows.epoch.tolist()==list(range(len(rows)))
    assert f"has the {len(rows)} finished epoch" in text, text

def test_ctrl_c_keeps_finished_runs(tmp_path):
    "SIGINT once compare printed its first run: exit status 130; runs.csv, the table, the Markdown and the plot hold that run"
    out = tmp_path/'cmp'
    rc,text = interrupt(['compare', *SMALL, '--n-train', '512', '--epochs', '2', '--methods', 'none,cutmix', '--seeds', '1', '--out', out],
                        lambda text: ' seed 42: accuracy' in text)
    assert rc==130, text
    assert 'Traceback' not in text, text
    done = re.findall(r'(\S+) seed (\d+): accuracy ([\d.]+), valid loss ([\d.]+)', text)
    assert [d[:2] for d in done]==[('none', '42')], text # the second run was cut short
    assert f"Interrupted. {out} keeps the 1 finished run:" in text and 'The same command again resumes' in text, text
    runs = pd.read_csv(out/'runs.csv')
    assert list(runs.columns)==[*cli.RUN_KEY, 'n_train', 'precision', 'seconds', 'train_loss', 'valid_loss', 'accuracy',
                                'accuracy_epoch1', 'accuracy_epoch2', 'valid_loss_epoch1', 'valid_loss_epoch2']
    assert runs[['method', 'seed']].values.tolist()==[['none', 42]] and (runs.accuracy==runs.accuracy_epoch2).all()
    assert (runs.valid_loss==runs.valid_loss_epoch2).all()
    assert f"{runs.accuracy[0]:.4f}"==done[0][2] and f"{runs.valid_loss[0]:.4f}"==done[0][3]
    summ = pd.read_csv(out/'compare.csv')
    assert summ.method.tolist()==['none'] and summ.runs.tolist()==[1] and abs(summ.accuracy_mean[0]-runs.accuracy[0]) < 1e-9
    md = (out/'compare.md').read_text()
    assert 'stopped after 1 of the 2 runs' in md and '| 512 | none | 1 |' in md and '| cutmix' not in md
    assert md.strip() in text.replace('\r', '')
    assert Image.open(out/'compare.png').size[0] > 100

# ---------------------------------------------------------------- where Fashion-MNIST comes from

def fill(d, src):
    "Copy the four IDX files from `src` into the folder `d`"
    d.mkdir(parents=True, exist_ok=True)
    for fs in FMNIST_FILES.values():
        for f in fs: (d/f).write_bytes((src/f).read_bytes())
    return d

@pytest.mark.parametrize('where', ['debian', 'unzipped'])
def test_fashion_mnist_folder_as_data(tmp_path, where):
    "DATA may be a folder of the IDX files: Debian's, or one with them gunzipped; --n-train and --n-valid apply"
    if where=='debian':
        folder = data.FMNIST_DEBIAN
        if not folder.is_dir(): pytest.skip(f"no {folder} (apt-get install dataset-fashion-mnist)")
    else:
        real,folder = find_fashion_mnist(download=False),tmp_path/'fm'
        folder.mkdir()
        for f in (f for fs in FMNIST_FILES.values() for f in fs):
            src = data._idx_file(real, f)
            (folder/f.removesuffix('.gz')).write_bytes(gzip.decompress(src.read_bytes()) if src.suffix=='.gz' else src.read_bytes())
    rc,text = run('train', folder, '--arch', 'tiny', '--bs', '32', '--n-train', '96', '--n-valid', '48', '--epochs', '1', '--out', tmp_path/'run')
    assert rc==0, text
    assert f"on 96 images ({folder}), validating on 48" in text, text
    check_train_files(tmp_path/'run', text, 1)

def test_not_found_says_how_to_pass_it(tmp_path, monkeypatch):
    "Fashion-MNIST nowhere and no download: the error names $FASHION_MNIST and DATA"
    monkeypatch.setattr(data, 'FMNIST_DEBIAN', tmp_path/'nothing')
    monkeypatch.setattr(data, 'fastai_path', lambda k: tmp_path/'fastai')
    monkeypatch.setattr(data, 'FMNIST_MIRRORS', ['http://127.0.0.1:9/']) # nothing listens there
    monkeypatch.delenv(FMNIST_ENV, raising=False)
    with pytest.raises(cli.CLIError) as e: cli.get_dls(n_train=64)
    for s in ('Fashion-MNIST not found', '$FASHION_MNIST', 'that folder is DATA', 'fastai_cutmix train FOLDER'): assert s in str(e.value)

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

# ---------------------------------------------------------------- compare: sweeps, options, resuming, the paired difference

@pytest.mark.parametrize('args,msg', [
    (['compare', '--n-train', '1000,0'], "argument --n-train: expected a number >= 1, got '0' (in '1000,0')"),
    (['compare', '--n-train', '1000,4k'], "expected an integer, got '4k'"),
    (['compare', '--n-train', '1000,4000,1000'], "1000 given twice in '1000,4000,1000'"),
    (['compare', '--n-train', ','], "expected comma-separated numbers of images"),
    (['compare', 'DATA', '--train-pct', '0,50'], "argument --train-pct: expected a number > 0, got '0' (in '0,50')"),
    (['compare', 'DATA', '--train-pct', '50,100.5'], "expected a number <= 100, got '100.5'"),
    (['compare', '--train-pct', '10,30'], "--train-pct takes a share of an image folder's training images; without DATA"),
    (['compare', 'DATA', '--train-pct', '10', '--n-train', '100'], "not both"),
    (['compare', '--alpha', '0'], "argument --alpha: expected a number > 0, got '0'"),
    (['compare', '--p', '1.5'], "argument --p: expected a number <= 1, got '1.5'"),
    (['compare', '--label-smoothing', '1'], "argument --label-smoothing: expected a number < 1, got '1'"),
    (['compare', '--wd=-1'], "argument --wd: expected a number >= 0, got '-1'"),
    (['compare', '--methods', 'none,cutmix,none'], "none given twice"),
])
def test_compare_bad_lists_and_options(args, msg, monkeypatch, capsys):
    "Refused before anything is read or trained, with the value and the list it is in"
    rc,text = run_here(monkeypatch, capsys, *args)
    assert rc==2 and msg in text and 'Traceback' not in text, text

def test_compare_lists_parsed():
    a = cli.parser().parse_args(['compare', '--n-train', '1000, 4000,16000', '--alpha', '1', '--p', '.5', '--per-sample',
                                 '--label-smoothing', '.1', '--wd', '0', '--mixed-precision'])
    assert (a.n_train, a.alpha, a.p, a.per_sample, a.label_smoothing, a.wd, a.mixed_precision) == ([1000, 4000, 16000], 1., .5, True, .1, 0., True)
    assert cli.parser().parse_args(['compare', 'DATA', '--train-pct', '10,30,100']).train_pct==[10., 30., 100.]
    assert cli.parser().parse_args(['train', '--n-train', '100']).n_train==100 # train: one size

def test_sizes_for_the_wrong_data(tmp_path, monkeypatch, capsys):
    "--n-train for an image folder, --train-pct for Fashion-MNIST: refused before any training, saying which to use"
    folder = shapes_folder(tmp_path/'shapes')
    rc,text = run_here(monkeypatch, capsys, 'compare', folder, '--arch', 'tiny', '--n-train', '10,20', '--out', tmp_path/'a')
    assert rc==2 and "give --train-pct for a share of its training images" in text, text
    rc,text = run_here(monkeypatch, capsys, 'compare', find_fashion_mnist(download=False), '--arch', 'tiny', '--train-pct', '10', '--out', tmp_path/'b')
    assert rc==2 and "is Fashion-MNIST: give sizes with --n-train instead" in text, text
    assert not (tmp_path/'a'/'runs.csv').exists() and not (tmp_path/'b'/'runs.csv').exists()

TINY = dict(arch='tiny', bs=32, n_valid=32, epochs=1, quiet=True)

def test_resume_skips_finished_runs(tmp_path, monkeypatch):
    "A 2-run sweep, then the same again: nothing trained; another option: its runs trained, the others kept out of the table"
    said = []
    kw = dict(methods=['none'], seeds=1, n_train=[64, 96], out=tmp_path, log=said.append, **TINY)
    cli.compare(**kw)
    first = (tmp_path/'runs.csv').read_text()
    assert pd.read_csv(tmp_path/'runs.csv').n_train.tolist()==[64, 96]
    def no_training(*args, **kwargs): raise AssertionError("a finished run was trained again")
    monkeypatch.setattr(Learner, 'fit_one_cycle', no_training)
    said.clear()
    cli.compare(**kw)
    assert (tmp_path/'runs.csv').read_text()==first and f"has 2 of the 2 runs already" in said[0], said
    assert pd.read_csv(tmp_path/'compare.csv').n_train.tolist()==[64, 96] # the table, from the kept runs
    monkeypatch.undo()
    cli.compare(**{**kw, 'n_train': [96, 128]}) # 96 is there: only 128 is trained
    runs = pd.read_csv(tmp_path/'runs.csv')
    assert runs.n_train.tolist()==[64, 96, 128]
    assert pd.read_csv(tmp_path/'compare.csv').n_train.tolist()==[96, 128]
    cli.compare(**{**kw, 'n_train': [64], 'wd': .05}) # another option, another run
    runs = pd.read_csv(tmp_path/'runs.csv')
    assert len(runs)==4 and runs.wd.tolist()[-1]==.05 and runs.wd.isna().sum()==3

def test_resume_from_the_command(tmp_path):
    "The console script: a sweep, then the same command again trains nothing and prints the same table"
    args = ['compare', *SMALL, '--n-train', '64,128', '--methods', 'none', '--seeds', '1', '--epochs', '1', '--out', tmp_path]
    rc,text = run(*args)
    assert rc==0 and text.count('seed 42: accuracy')==2, text
    rc,again = run(*args)
    assert rc==0 and 'seed 42: accuracy' not in again and 'has 2 of the 2 runs already' in again, again
    md = (tmp_path/'compare.md').read_text()
    assert md.strip() in again.replace('\r', '') and '| 64 | none | 1 |' in md and '| 128 | none | 1 |' in md

def test_paired_gain_by_hand():
    "Differences with the same seed, their mean and 95% t-interval, per size; a seed without its 'none' is left out"
    acc = {(1000, 'none'): [.80, .81, .79], (1000, 'cutmix'): [.82, .84, .80], (1000, 'mixup'): [.77, .79, .75, .9],
           (4000, 'none'): [.85, .86, .87], (4000, 'cutmix'): [.88, .89, .90], (4000, 'mixup'): [.85]}
    df = pd.DataFrame([dict(n_train=n, method=m, seed=42+i, accuracy=a) for (n,m),v in acc.items() for i,a in enumerate(v)])
    g = cli.paired_gain(df).set_index(['n_train', 'method'])
    t = 4.302652729911275 # t(0.975, 2)
    by_hand = {(1000, 'cutmix'): (3, .02, .01), (1000, 'mixup'): (3, -.03, .01), (4000, 'cutmix'): (3, .03, 0.)}
    for k,(n,mean,std) in by_hand.items():
        half = t*std/np.sqrt(n)
        assert g.loc[k, 'pairs']==n and np.allclose(g.loc[k, ['gain_mean', 'gain_std', 'gain_lo', 'gain_hi']].tolist(),
                                                    [mean, std, mean-half, mean+half], atol=1e-9), (k, g.loc[k])
    assert g.verdict.to_dict()=={(1000, 'cutmix'): 'within noise', (1000, 'mixup'): 'loss', (4000, 'cutmix'): 'gain',
                                 (4000, 'mixup'): 'too few seeds'}
    assert g.loc[(4000, 'mixup'), 'pairs']==1 and np.isnan(g.loc[(4000, 'mixup'), 'gain_lo'])

def test_verdict_in_the_table(tmp_path):
    "The table says the verdict in words, explains 'within noise', and the plot is of the gain against the size"
    rows = [dict(n_train=n, method=m, seed=s, valid_loss=.5, accuracy=a + d*(m=='cutmix') + (s-42)*.01, accuracy_epoch1=a)
            for n,a,d in ((1000, .8, .02), (4000, .85, 0.)) for s in (42, 43, 44) for m in ('none', 'cutmix')]
    df = pd.DataFrame(rows)
    df.loc[(df.method=='cutmix') & (df.n_train==4000), 'accuracy'] += [.01, -.01, .0] # within noise at 4,000
    files = {k: tmp_path/f for k,f in (('csv', 'compare.csv'), ('markdown', 'compare.md'), ('plot', 'compare.png'))}
    cli._summarise(df, ['none', 'cutmix'], files, 'head', 'title', log=lambda _: None)
    md = files['markdown'].read_text()
    assert '| 1,000 | cutmix | 3 |' in md and '+0.0200 (+0.0200 to +0.0200) | gain |' in md, md
    assert [l.split('|')[-2].strip() for l in md.splitlines() if '| cutmix |' in l]==['gain', 'within noise']
    assert "'within noise': the interval holds 0, so these seeds cannot tell the method from 'none'" in md
    assert pd.read_csv(files['csv']).verdict.tolist()[1::2]==['gain', 'within noise']
    assert Image.open(files['plot']).size[0] > 100

def test_options_reach_the_callbacks(tmp_path, monkeypatch):
    "--alpha, --p, --per-sample to every method that takes them (a note for the others); smoothing and wd to every run"
    learners,made = [],[]
    make,mix = cli.make_learner,cli.mixer
    monkeypatch.setattr(cli, 'make_learner', lambda *a, **kw: learners.append(make(*a, **kw)) or learners[-1])
    monkeypatch.setattr(cli, 'mixer', lambda *a, **kw: made.append(mix(*a, **kw)) or made[-1])
    timm = [] if cli.importlib.util.find_spec('timm') is None else ['timm-cutmix']
    methods = ['none', 'cutmix', 'resizemix', 'cutmixup', 'fastai-mixup', *timm]
    said = []
    files = cli.compare(methods=methods, seeds=1, n_train=64, alpha=.7, p=.5, per_sample=True, label_smoothing=.1, wd=.05,
                        out=tmp_path, log=said.append, **{**TINY, 'arch': 'small-resnet'})
    cbs = {type(c).__name__: c for c in made if c is not None}
    assert (cbs['CutMix'].alpha, cbs['CutMix'].p, cbs['CutMix'].per_sample)==(.7, .5, True)
    assert (cbs['ResizeMix'].p, cbs['ResizeMix'].per_sample, cbs['CutMixUp'].p, cbs['CutMixUp'].per_sample)==(.5, True, .5, True)
    assert abs(cbs['MixUp'].distrib.concentration1.item()-.7) < 1e-6 # fastai's
    if timm: assert cbs['TimmCutMix'].mix_args==dict(mixup_alpha=0., cutmix_alpha=.7, prob=.5, mode='elem')
    for l in learners:
        assert l.wd==.05 and type(l.loss_func).__name__=='LabelSmoothingCrossEntropyFlat' and l.loss_func.eps==.1
    md = files['markdown'].read_text()
    for note in ("--alpha does not apply to resizemix (ResizeMix takes no alpha)", "--alpha does not apply to cutmixup",
                 "--p does not apply to fastai-mixup", "--per-sample does not apply to fastai-mixup"):
        assert note in md and sum(m.startswith(note) for m in said)==1, (note, said) # said once, not once per run
    assert 'Options: alpha 0.7, p 0.5, per sample True, label smoothing 0.1, wd 0.05' in md
    runs = pd.read_csv(files['runs'])
    assert runs.method.tolist()==methods and (runs.alpha==.7).all() and (runs.label_smoothing==.1).all()

def test_mixed_precision(tmp_path):
    "Where the CPU has no native bfloat16 the run says so and trains in float32; the precision is in runs.csv"
    files = cli.compare(methods=['cutmix'], seeds=1, n_train=64, mixed_precision=True, out=tmp_path, log=lambda _: None, **TINY)
    runs,md = pd.read_csv(files['runs']),files['markdown'].read_text()
    expected = 'bfloat16' if (torch.cuda.is_available() or cli._cpu_bf16()) else 'float32'
    assert runs.precision.tolist()==[expected] and runs.mixed_precision.tolist()==[True]
    assert f"mixed precision ({expected})" in md
    if expected=='float32': assert 'no native bfloat16' in md

def test_bf16_autocast_where_the_cpu_has_it(monkeypatch):
    "As on a CPU with native bfloat16: the model runs in it, inside the context `precision` gives"
    monkeypatch.setattr(cli, '_cpu_bf16', lambda: True)
    dls = cli.get_dls(n_train=64, n_valid=32, bs=32).cpu()
    learn = cli.make_learner(dls, 'tiny', 'cutmix')
    ctx,name = cli.precision(learn)
    with ctx: pred = learn.model(dls.one_batch()[0])
    assert name=='bfloat16' and pred.dtype==torch.bfloat16

def test_sweep_from_the_command(tmp_path):
    "Two sizes, two methods, two seeds: the table has each size, the verdict column, and the plot is written"
    rc,text = run('compare', *SMALL, '--n-train', '128,256', '--methods', 'none,cutmix', '--seeds', '2', '--epochs', '1',
                  '--valid-last', '--out', tmp_path)
    assert rc==0, text
    summ = pd.read_csv(tmp_path/'compare.csv')
    assert summ[['n_train', 'method']].values.tolist()==[[128, 'none'], [128, 'cutmix'], [256, 'none'], [256, 'cutmix']]
    assert summ.verdict.isna().tolist()==[True, False, True, False] and (summ.pairs.dropna()==2).all()
    md = (tmp_path/'compare.md').read_text()
    assert 'Command: `fastai_cutmix compare --arch tiny' in md and 'Machine: ' in md and 'validated after the last epoch only' in md
    assert Image.open(tmp_path/'compare.png').size[0] > 100
