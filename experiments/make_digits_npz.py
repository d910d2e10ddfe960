r"""A small real dataset that needs no download: scikit-learn's handwritten digits as an npz.

  pip install scikit-learn && python experiments/make_digits_npz.py --out=/tmp/digits16.npz

The 1797 UCI optical-recognition digits (8x8, 17 grey levels, bundled with scikit-learn), scaled
to uint8 0..255, upsampled to 16x16 (nearest) and repeated over 3 channels, in the `npz` dataset
format (`x_train`, `y_train`, `x_test`, `y_test`): the first 1400 train the supernet, the other
397 rank it. Real images for checks of GATE and ranking behaviour on CPU, where CIFAR-10 is not
available; far too small to stand for CIFAR-10.
"""

from __future__ import annotations

import argparse
import os

import numpy as np

NUM_TRAIN = 1400


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--out', required=True)
  args = parser.parse_args()
  try:
    from sklearn.datasets import load_digits
  except ImportError:
    raise SystemExit('error: this script needs scikit-learn (pip install scikit-learn)') from None
  digits = load_digits()
  images = np.round(digits.images / 16.0 * 255.0).astype(np.uint8)  # (1797, 8, 8)
  images = np.kron(images, np.ones((1, 2, 2), np.uint8))  # nearest upsampling to 16x16
  images = np.repeat(images[..., None], 3, axis=-1)
  labels = digits.target.astype(np.int64)
  tmp = args.out + '.tmp.npz'
  np.savez(
    tmp,
    x_train=images[:NUM_TRAIN],
    y_train=labels[:NUM_TRAIN],
    x_test=images[NUM_TRAIN:],
    y_test=labels[NUM_TRAIN:],
  )
  os.replace(tmp, args.out)
  print(f'wrote {args.out}: {NUM_TRAIN} training and {len(images) - NUM_TRAIN} ranking images')


if __name__ == '__main__':
  main()
