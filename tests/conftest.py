"Shared fixtures: real Fashion-MNIST slices, a quiet matplotlib, and warnings from fastai's imports kept out of the way."
import os, warnings
os.environ.setdefault('MPLBACKEND', 'Agg')
warnings.filterwarnings('ignore', category=FutureWarning)
warnings.filterwarnings('ignore', category=UserWarning)
import pytest, torch
from fastai_cutmix.all import *

@pytest.fixture(scope='session')
def fmnist_dls():
    "A small real slice of Fashion-MNIST: 1,024 training and 256 validation images, batch size 64"
    return fashion_mnist_dls(bs=64, n_train=1024, n_valid=256)

@pytest.fixture(autouse=True)
def _seeded():
    "Every test starts from the same random state"
    set_seed(42)
    yield
