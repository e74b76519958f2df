#!/usr/bin/env python3
"""Writes a FER2013-shaped CSV (`emotion,pixels,Usage`) that a net can learn in an epoch or two,
for checking that training runs and learns on a device without the real data there (e.g. a GPU
machine that ../shared does not reach): class k is a bright Gaussian blob (sigma 4 pixels) at the
k-th of seven places over grey noise (mean 90, sd 40, clipped to 0-255). Training 3500, PublicTest
700, PrivateTest 700 rows; seed 0, so the file is the same on every run. Needs numpy.

    python3 bench/synthetic_csv.py > /tmp/synthetic.csv
"""
import sys

import numpy as np


def main():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:48, 0:48]
    centres = [(12 + 24 * (k % 2), 8 + 6 * k) for k in range(7)]
    out = sys.stdout
    out.write("emotion,pixels,Usage\n")
    for usage, n in (("Training", 3500), ("PublicTest", 700), ("PrivateTest", 700)):
        for _ in range(n):
            k = int(rng.integers(0, 7))
            cy, cx = centres[k]
            img = 90 + 40 * rng.standard_normal((48, 48))
            img += 110 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 4.0**2))
            pixels = np.clip(img, 0, 255).astype(np.uint8).ravel()
            out.write(f"{k},{' '.join(map(str, pixels))},{usage}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
