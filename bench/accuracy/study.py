"""The accuracy study: does mixing help a ResNet that overfits Fashion-MNIST, and how does the gain change with the size of
the training set? A thin driver of `fastai_cutmix compare`, which trains the runs, keeps each as it finishes, resumes, and
writes the tables and plots: every number in bench/results/accuracy_study/ is written by that command, and the README's
headline (headline.md) by this script, from compare.csv.

    .venv/bin/python bench/accuracy/study.py                 # the study; run again to resume
    nohup .venv/bin/python bench/accuracy/study.py > bench/results/accuracy_study/log.txt 2>&1 &
    .venv/bin/python bench/accuracy/study.py --dry-run       # print the commands and the plan, train nothing
    .venv/bin/python bench/accuracy/study.py --headline      # only rewrite headline.md and peers.md

The configuration, and how its time was estimated, is in bench/accuracy/README.md."""
import argparse, os, shlex, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = Path('bench/results/accuracy_study') # from the repository's root, as the report's command line shows it
# the unmixed baseline, this library's family, and the same methods by fastai and by timm (through `TimmMix`), as a cross-check
METHODS = ['none', 'mixup', 'cutmix', 'cutmixup', 'fmix', 'resizemix', 'ricap', 'cutout',
           'fastai-mixup', 'fastai-cutmix', 'timm-mixup', 'timm-cutmix']
SIZES = [125, 250] # training images: the first N of Fashion-MNIST's 60,000; validation: all 10,000 test images
EPOCHS = 50 # fixed for every size: long enough for the unmixed baseline to fit these training sets (train loss near 0)
SEEDS = 3
BS,LR = 32,1e-2 # small batches: more steps per epoch on so few images
CURVES = dict(methods=['none', 'mixup', 'cutmix'], n_train=500, n_valid=2000) # one seed, validated after every epoch

def command(out:Path=OUT)->list:
    "The arguments of `fastai_cutmix` for the study"
    return ['compare', '--arch', 'small-resnet', '--n-train', ','.join(map(str, SIZES)), '--epochs', str(EPOCHS),
            '--methods', ','.join(METHODS), '--seeds', str(SEEDS), '--bs', str(BS), '--lr', f'{LR:g}',
            '--valid-last', # 10,000 validation images cost more than training on 125 or 250: validated once, after the last epoch
            '--quiet', '--out', str(out)]

def curves_command(out:Path=OUT)->list:
    "The arguments of `fastai_cutmix` for the learning curves: does the unmixed baseline overfit, and when does mixing catch up?"
    return ['compare', '--arch', 'small-resnet', '--n-train', str(CURVES['n_train']), '--n-valid', str(CURVES['n_valid']),
            '--epochs', str(EPOCHS), '--methods', ','.join(CURVES['methods']), '--seeds', '1', '--bs', str(BS), '--lr', f'{LR:g}',
            '--quiet', '--out', str(out/'curves')]

PEERS = {'cutmix': ['fastai-cutmix', 'timm-cutmix'], 'mixup': ['fastai-mixup', 'timm-mixup']}

def peers(out:Path=OUT)->str:
    "peers.md: this library's CutMix and MixUp against fastai's and timm's, paired seed by seed as each method against 'none'"
    import pandas as pd
    from fastai_cutmix.cli import paired_gain, _read_runs
    runs = _read_runs(out/'runs.csv')
    runs = runs[runs.n_train.isin(SIZES) & runs.epochs.eq(str(EPOCHS)) & runs.method.isin(METHODS)].astype({'seed': int})
    rows = []
    for ours,others in PEERS.items():
        for o in others:
            g = paired_gain(runs[runs.method.isin([ours, o])], ref=o)
            rows += [f"| {r.n_train:,} | {ours} − {o} | {r.pairs} | {r.gain_mean*100:+.2f} ({r.gain_lo*100:+.2f} to {r.gain_hi*100:+.2f}) | "
                     f"{dict(gain='ours ahead', loss='theirs ahead').get(r.verdict, r.verdict)} |" for r in g.itertuples()]
    md = ("| training images | accuracy difference | pairs | points (95% interval) | verdict |\n|---|---|---|---|---|\n" + '\n'.join(rows) +
          "\n\nThe same seeds, data, model and schedule for both: the difference of final validation accuracy, in points, seed by "
          "seed, its mean and 95% t-interval. 'within noise': the interval holds 0.\n")
    (out/'peers.md').write_text(md)
    return md

def loss_pairs(out:Path=OUT):
    "Per size and method: validation loss minus 'none''s with the same seed, as `paired_gain` pairs accuracy (negative: lower loss)"
    from fastai_cutmix.cli import paired_gain, _read_runs
    runs = _read_runs(out/'runs.csv')
    runs = runs[runs.n_train.isin(SIZES) & runs.epochs.eq(str(EPOCHS)) & runs.method.isin(METHODS)].astype({'seed': int})
    return paired_gain(runs.assign(accuracy=runs.valid_loss)) # 'gain' here means a higher loss, 'loss' a lower one

def headline(out:Path=OUT)->str:
    "One line for the README, from the study's files: at each size, which methods beat 'none' by more than their interval"
    import pandas as pd
    s = pd.read_csv(out/'compare.csv')
    s = s[(s.method!='none') & s.n_train.isin(SIZES)]
    lp = loss_pairs(out)
    parts = []
    for n,d in s.groupby('n_train'):
        won = d[d.verdict=='gain'].sort_values('gain_mean', ascending=False)
        best = d.sort_values('gain_mean', ascending=False).iloc[0]
        lower = lp[(lp.n_train==n) & (lp.verdict=='loss')].method.tolist()
        parts.append(f"{n:,} images: " + (', '.join(f"{r.method} {r.gain_mean*100:+.1f}" for r in won.itertuples()) if len(won) else
                     f"none beyond noise (best: {best.method} {best.gain_mean*100:+.1f})")
                     + f", validation loss lower than without mixing for {len(lower)} of {len(d)} methods")
    line = ("Accuracy gain over no mixing, in points, of the methods whose whole 95% interval is above 0 (a ResNet-8 trained "
            f"from scratch on {' and '.join(f'{n:,}' for n in SIZES)} Fashion-MNIST images, {EPOCHS} epochs, {SEEDS} seeds, "
            "by `fastai_cutmix compare`): " + '; '.join(parts) + ' (beyond the noise of the seeds).')
    (out/'headline.md').write_text(line + '\n')
    return line

if __name__=='__main__':
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--out', type=Path, default=OUT, help=f'folder for the results, from the repository root (default: {OUT})')
    p.add_argument('--dry-run', action='store_true', help='print the commands and the number of runs; train nothing')
    p.add_argument('--headline', action='store_true', help="only rewrite headline.md and peers.md from the study's files")
    a = p.parse_args()
    os.chdir(ROOT)
    if a.headline: print(headline(a.out)); print(peers(a.out)); sys.exit()
    cmds = [curves_command(a.out), command(a.out)] # the curves first: minutes, and they show whether the baseline overfits
    for c in cmds: print('fastai_cutmix ' + shlex.join(c), flush=True)
    if a.dry_run:
        print(f"{len(METHODS)*len(SIZES)*SEEDS} runs: {len(METHODS)} methods × {len(SIZES)} sizes × {SEEDS} seeds, "
              f"{EPOCHS} epochs each; {sum(SIZES)*EPOCHS*len(METHODS)*SEEDS:,} training images to step through; then "
              f"{len(CURVES['methods'])} runs for the curves")
        sys.exit()
    (a.out/'curves').mkdir(parents=True, exist_ok=True)
    from fastai_cutmix.command import main
    for c in cmds: main(c)
    print(headline(a.out)); print(peers(a.out))
