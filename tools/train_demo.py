"""The quick start, end to end: a resnet18 trained from scratch with CutMix on Fashion-MNIST, with fastai's metrics
table. Sized for two CPU cores (a couple of minutes); pass --n-train 60000 --epochs 5 for the whole data set."""
import argparse, sys, warnings
warnings.filterwarnings('ignore')
import fastprogress
from fastai_cutmix.all import *

METHODS = {'cutmix': CutMix, 'mixup': MixUp, 'cutmixup': CutMixUp, 'fmix': FMix, 'resizemix': ResizeMix, 'ricap': RICAP,
           'cutout': Cutout, 'none': lambda: None}

def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument('--method', choices=list(METHODS), default='cutmix', help='mixing callback (default: cutmix)')
    p.add_argument('--epochs', type=int, default=2, help='epochs of fit_one_cycle (default: 2)')
    p.add_argument('--n-train', type=int, default=12_000, help='training images, of 60,000 (default: 12,000)')
    p.add_argument('--n-valid', type=int, default=2_000, help='validation images, of the 10,000 test images (default: 2,000)')
    p.add_argument('--bs', type=int, default=128, help='batch size (default: 128)')
    p.add_argument('--lr', type=float, default=3e-3, help='maximum learning rate (default: 3e-3)')
    p.add_argument('--seed', type=int, default=42, help='random seed (default: 42)')
    a = p.parse_args()
    if not sys.stdout.isatty(): fastprogress.fastprogress.NO_BAR = True  # in a log: the metrics table, not a bar per batch
    set_seed(a.seed)
    dls = fashion_mnist_dls(bs=a.bs, n_train=a.n_train, n_valid=a.n_valid)
    cbs = METHODS[a.method]()
    learn = vision_learner(dls, resnet18, pretrained=False, n_in=1, metrics=accuracy, cbs=cbs)
    print(f"Training resnet18 (random init) with {cbs or 'no mixing'} on {a.n_train:,} Fashion-MNIST images, "
          f"validating on {a.n_valid:,}, {a.epochs} epochs")
    learn.fit_one_cycle(a.epochs, a.lr)

if __name__ == '__main__': main()
