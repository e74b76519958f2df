"""Writes the PyTorch checkpoints in fuzz/regressions/pytorch_pth/ (issue 20): P-Net state dicts
whose `conv1.bias` is a [26000, 26000] zero-stride view of a one-element storage. PyTorch itself
loads such a view without allocating; a loader that makes tensors contiguous (burn-store) would
allocate 2.7 GB for a file of a few hundred bytes. ferkit refuses them before reading any data
(models/pytorch_weights.rs, check_declared_sizes).

Usage: python fuzz/make_pth_bombs.py   (PyTorch from PyPI; written with torch 2.15.0)
"""
from collections import OrderedDict
from pathlib import Path

import torch

out = Path(__file__).parent / "regressions" / "pytorch_pth"
out.mkdir(parents=True, exist_ok=True)
state = OrderedDict()
state["conv1.weight"] = torch.zeros(1).as_strided((10, 3, 3, 3), (0, 0, 0, 0))
state["conv1.bias"] = torch.zeros(1).as_strided((26000, 26000), (0, 0))
torch.save(state, out / "zero-stride-view-2.7GB-zip.pt")
torch.save(state, out / "zero-stride-view-2.7GB-legacy.pt", _use_new_zipfile_serialization=False)
