"""The accuracy study: does mixing help a ResNet that overfits Fashion-MNIST, and how does the gain change with the size of
the training set? A thin driver of `fastai_cutmix compare`, which trains the runs, keeps each as it finishes, resumes, and
writes the table and the plot: every number in bench/results/accuracy_study/ is written by that command.

    .venv/bin/python bench/accuracy/study.py                 # the study; run again to resume
    nohup .venv/bin/python bench/accuracy/study.py > bench/results/accuracy_study/log.txt 2>&1 &
    .venv/bin/python bench/accuracy/study.py --dry-run       # print the command and the plan, train nothing

The configuration, and how its time was estimated, is in bench/accuracy/README.md."""
import argparse, os, shlex, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = Path('bench/results/accuracy_study') # from the repository's root, as the report's command line shows it
# the unmixed baseline, this library's family, and the same methods by fastai and by timm (through `TimmMix`), as a cross-check
METHODS = ['none', 'mixup', 'cutmix', 'cutmixup', 'fmix', 'resizemix', 'ricap', 'cutout',
           'fastai-mixup', 'fastai-cutmix', 'timm-mixup', 'timm-cutmix']
SIZES = [500, 1000, 2000] # training images: the first N of Fashion-MNIST's 60,000; validation: all 10,000 test images
EPOCHS = 10 # fixed for every size: enough for the unmixed baseline to fit these small training sets far better than it generalises
SEEDS = 3

def command(out:Path=OUT)->list:
    "The arguments of `fastai_cutmix` for the study"
    return ['compare', '--arch', 'small-resnet', '--n-train', ','.join(map(str, SIZES)), '--epochs', str(EPOCHS),
            '--methods', ','.join(METHODS), '--seeds', str(SEEDS), '--bs', '64', '--lr', '3e-3',
            '--valid-last', # 10,000 validation images cost more than training on 1,000: validated once, after the last epoch
            '--out', str(out)]

if __name__=='__main__':
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--out', type=Path, default=OUT, help=f'folder for the results, from the repository root (default: {OUT})')
    p.add_argument('--dry-run', action='store_true', help='print the command and the number of runs; train nothing')
    a = p.parse_args()
    os.chdir(ROOT)
    args = command(a.out)
    print('fastai_cutmix ' + shlex.join(args), flush=True)
    if a.dry_run:
        print(f"{len(METHODS)*len(SIZES)*SEEDS} runs: {len(METHODS)} methods × {len(SIZES)} sizes × {SEEDS} seeds, "
              f"{EPOCHS} epochs each; {sum(SIZES)*EPOCHS*len(METHODS)*SEEDS:,} training images to step through")
        sys.exit()
    a.out.mkdir(parents=True, exist_ok=True)
    from fastai_cutmix.command import main
    main(args)
