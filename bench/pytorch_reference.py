#!/usr/bin/env python3
"""PyTorch reference for `ferkit bench`: the same nets (built from the same experiments/*.toml, or
the EfficientNet-Lite0 transfer preset with `efficientnet-lite0`, which needs
`pip install efficientnet_lite_pytorch`),
the same batches, the same step (forward, cross-entropy + L2, backward, Adam), and the same
inference (u8 faces, preprocessing, forward, log-softmax), on CPU threads or, with
`--device cuda`, on an NVIDIA GPU (to set beside `ferkit bench --device gpu`).

    python3 bench/pytorch_reference.py --models cnn3:512,vgg-lite:64 --threads 2 \
        [--steps 5 --repeats 3] [--device cpu|cuda] [--json out.json] [--compare ferkit.json]

With --compare it prints its figures beside ferkit's (the JSON `ferkit bench --json` writes).
Needs `pip install torch`.
"""
import argparse
import json
import math
import pathlib
import sys
import tomllib

import torch
import torch.nn as nn
import torch.nn.functional as F

from timing import inference_median_rate, median_rate

ROOT = pathlib.Path(__file__).resolve().parent.parent


class SamePad(nn.Module):
    """TensorFlow's 'same' padding for any stride: the odd extra row/column goes at the end."""

    def __init__(self, kernel, stride, value=0.0):
        super().__init__()
        self.kernel, self.stride, self.value = kernel, stride, value

    def forward(self, x):
        pads = []
        for size in (x.shape[3], x.shape[2]):  # F.pad wants last dim first
            out = math.ceil(size / self.stride)
            total = max((out - 1) * self.stride + self.kernel - size, 0)
            pads += [total // 2, total - total // 2]
        return F.pad(x, pads, value=self.value) if any(pads) else x


ACTIVATIONS = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}


class Projection(nn.Module):
    """A residual block's shortcut when the block changes the shape: 1x1 convolution, batch norm."""

    def __init__(self, channels, filters, stride):
        super().__init__()
        self.conv = nn.Conv2d(channels, filters, 1, stride=stride, bias=False)
        self.bn = nn.BatchNorm2d(filters, eps=1e-5, momentum=0.1)

    def forward(self, x):
        return self.bn(self.conv(x))


class Residual(nn.Module):
    """ferkit's `residual` layer (ResNet's basic block): 3x3 "same" convolution (stride s), batch
    norm, ReLU, 3x3 convolution, batch norm, plus the shortcut, ReLU. Field names as ferkit's."""

    def __init__(self, channels, filters, stride):
        super().__init__()
        self.pad1, self.pad2 = SamePad(3, stride), SamePad(3, 1)
        self.conv1 = nn.Conv2d(channels, filters, 3, stride=stride, bias=False)
        self.bn1 = nn.BatchNorm2d(filters, eps=1e-5, momentum=0.1)
        self.conv2 = nn.Conv2d(filters, filters, 3, bias=False)
        self.bn2 = nn.BatchNorm2d(filters, eps=1e-5, momentum=0.1)
        self.projection = Projection(channels, filters, stride) if stride != 1 or channels != filters else None

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(self.pad1(x))))
        y = self.bn2(self.conv2(self.pad2(y)))
        return F.relu(y + (x if self.projection is None else self.projection(x)))


class GlobalAvgPool(nn.Module):
    def forward(self, x):
        return x.mean((2, 3))


def build(spec):
    """nn.Sequential from a ferkit net TOML; returns (net, [(weight, l2)]). A final softmax is
    left to the loss, as ferkit does."""
    layers, l2_terms = [], []
    shape = spec["input"]  # [h, w, c] or [n]
    flat = len(shape) == 1
    if flat:
        layers.append(nn.Flatten())
    channels = None if flat else shape[2]
    features = shape[0] if flat else None
    specs = spec["layers"]
    for i, layer in enumerate(specs):
        kind = layer["kind"]
        last = i == len(specs) - 1
        act = layer.get("activation")
        if kind == "conv2d":
            k, s, pad = layer["kernel"], layer.get("stride", 1), layer.get("padding", "valid")
            if pad == "same":
                layers.append(SamePad(k, s))
            conv = nn.Conv2d(channels, layer["filters"], k, stride=s)
            layers.append(conv)
            if layer.get("l2"):
                l2_terms.append((conv.weight, layer["l2"]))
            channels = layer["filters"]
        elif kind == "dense":
            if features is None:
                raise ValueError("dense after an image layer needs flatten")
            dense = nn.Linear(features, layer["units"])
            layers.append(dense)
            if layer.get("l2"):
                l2_terms.append((dense.weight, layer["l2"]))
            features = layer["units"]
        elif kind == "maxpool":
            p, s, pad = layer["pool"], layer.get("stride", layer["pool"]), layer.get("padding", "valid")
            if pad == "same":
                layers.append(SamePad(p, s, value=-math.inf))
            layers.append(nn.MaxPool2d(p, s))
        elif kind == "batchnorm":
            n = features if channels is None else channels
            bn = (nn.BatchNorm1d if channels is None else nn.BatchNorm2d)(
                n, eps=layer.get("epsilon", 1e-3), momentum=1 - layer.get("momentum", 0.99))
            layers.append(bn)
        elif kind == "dropout":
            layers.append(nn.Dropout(layer["rate"]))
        elif kind == "flatten":
            layers.append(nn.Flatten())
            channels = None
            features = None  # set below by a dry run
        elif kind == "activation":
            act = layer["function"]
        elif kind == "residual":
            filters = layer["filters"]
            layers.append(Residual(channels, filters, layer.get("stride", 1)))
            channels = filters
        elif kind == "globalavgpool":
            layers.append(GlobalAvgPool())
            features, channels = channels, None
        if act and not (act == "softmax" and last):
            if act == "softmax":
                layers.append(nn.Softmax(dim=1))
            else:
                layers.append(ACTIVATIONS[act]())
        if kind == "flatten":
            probe = nn.Sequential(*layers)(torch.zeros(1, 1, 48, 48))
            features = probe.shape[1]
    return nn.Sequential(*layers), l2_terms


class TransferLite0(nn.Module):
    """ferkit's `efficientnet-lite0` transfer preset: grey faces repeated to 3 channels and
    ImageNet-normalised, EfficientNet-Lite0 (PyPI `efficientnet_lite_pytorch`, the reference code
    of the .pth in ../shared/models; random weights suffice for timing) with its stem and lowest
    11 of 16 blocks frozen, global average pooling, dense 1024 relu, dropout 0.5, dense 7.
    Frozen blocks stay in training mode (batch statistics), as in ferkit; no drop-connect, which
    ferkit's EfficientNet does not have."""

    FROZEN_BLOCKS = 11

    def __init__(self, input_size=48, head=1024):
        super().__init__()
        from efficientnet_lite_pytorch import EfficientNet

        self.input_size = input_size
        self.backbone = EfficientNet.from_name("efficientnet-lite0", image_size=input_size, drop_connect_rate=0.0)
        frozen = [self.backbone._conv_stem, self.backbone._bn0, *self.backbone._blocks[: self.FROZEN_BLOCKS]]
        for module in frozen:
            module.requires_grad_(False)
        self.head, self.dropout, self.output = nn.Linear(1280, head), nn.Dropout(0.5), nn.Linear(head, 7)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def forward(self, x):
        x = (x.expand(-1, 3, -1, -1) - self.mean) / self.std
        if x.shape[-1] != self.input_size:
            # ferkit resizes as Burn's bilinear interpolation: corners aligned.
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=True)
        features = self.backbone.extract_features(x).mean((2, 3))
        return self.output(self.dropout(F.relu(self.head(features))))


def bench(model, batch, steps, repeats, infer_batches=(), device="cpu"):
    torch.manual_seed(0)
    if model == "efficientnet-lite0":
        name, net, l2_terms = model, TransferLite0(), []
    else:
        # A preset name (experiments/NAME.toml) or a net file's path, as `ferkit bench` takes them.
        path = pathlib.Path(model) if model.endswith(".toml") else ROOT / "experiments" / f"{model}.toml"
        spec = tomllib.loads(path.read_text())
        name = spec.get("name", model)
        net, l2_terms = build(spec)
    net = net.to(device)
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=1e-4)
    # The training batch lives on the device, as ferkit's benchmark makes it there.
    x = torch.randn(batch, 1, 48, 48).to(device)
    y = torch.randint(0, 7, (batch,)).to(device)

    def train_step():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(net(x), y)
        for w, l2 in l2_terms:
            loss = loss + l2 * w.square().sum()
        loss.backward()
        opt.step()
        return loss.item()

    def rate(fn, size):
        return median_rate(fn, size, steps, repeats)

    # Inference as ferkit's benchmark times it (its one batched-inference loop): 48x48 grey u8
    # faces in, the net's preprocessing (per-image standardisation for the layer nets, /255 for
    # the transfer net, which normalises for ImageNet itself), forward, log-softmax out. The faces
    # start in host memory and the log-probabilities end there, as in ferkit (which reads them
    # back); that copy is also what waits for an asynchronous GPU to finish the step.
    unit_range = model == "efficientnet-lite0"

    def infer_rate(size):
        faces = torch.randint(0, 256, (size, 1, 48, 48), dtype=torch.uint8)

        def infer_step():
            x = faces.to(device).float()
            if unit_range:
                x = x / 255.0
            else:
                # ferkit's standardize.rs: (x - mean) / max(sample stdev, 1/48), per image.
                mean = x.mean(dim=(1, 2, 3), keepdim=True)
                std = x.std(dim=(1, 2, 3), keepdim=True).clamp_min(1.0 / 48.0)
                x = (x - mean) / std
            return F.log_softmax(net(x), dim=1).cpu()

        return inference_median_rate(infer_step, size, steps, repeats)

    net.train()
    train = rate(train_step, batch)
    net.eval()
    with torch.inference_mode():
        infer = infer_rate(batch)
        at = [{"batch": b, "infer_images_per_s": infer_rate(b)} for b in infer_batches]
    return {"model": name, "name": model, "batch": batch, "train_images_per_s": train,
            "infer_images_per_s": infer, "infer_batches": at, "steps": steps, "repeats": repeats}


def device_name(device):
    """What the figures ran on: "cpu", or "cuda (NVIDIA H200)"."""
    return f"cuda ({torch.cuda.get_device_name(0)})" if device == "cuda" else "cpu"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="cnn3:512,vgg-lite:64")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--infer-batches", default="", help="also time inference alone at these batch sizes, e.g. 1,256")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                    help="cuda: time on the first NVIDIA GPU in float32, TF32 off (beside `ferkit bench --device gpu`)")
    ap.add_argument("--json")
    ap.add_argument("--compare", help="ferkit bench --json output to print beside")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.device == "cuda":
        # float32 as ferkit computes it: no TF32 in cuDNN's convolutions (on by default) or in
        # matrix products (off by default).
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    results = []
    for pair in args.models.split(","):
        name, batch = pair.split(":")
        infer_batches = [int(b) for b in args.infer_batches.split(",") if b]
        results.append(bench(name, int(batch), args.steps, args.repeats, infer_batches, args.device))
    if args.json:
        doc = {"torch": torch.__version__, "threads": args.threads, "device": device_name(args.device),
               "models": results}
        pathlib.Path(args.json).write_text(json.dumps(doc, indent=2))
    ours = {}
    if args.compare:
        doc = json.loads(pathlib.Path(args.compare).read_text())
        # Keyed by the name given on the command line (a preset, or a TOML file's path): several
        # TOML nets can share one model name (the search's nets are all `tuned_cnn`).
        ours = {(r.get("name", r["model"]), r["batch"]): r for r in doc["models"]}
    print(f"torch {torch.__version__}, {device_name(args.device)}, {args.threads} threads, "
          f"median of {args.repeats} x {args.steps} steps")
    # A TOML net is shown by the name given (its path), a preset by its name.
    label = {id(r): r["name"] if r["name"] != r["model"] else r["model"] for r in results}
    width = max([10] + [len(label[id(r)]) + 2 for r in results])
    print(f"{'model':<{width}}{'batch':>6}{'ferkit train':>14}{'torch train':>13}{'ratio':>7}"
          f"{'ferkit infer':>14}{'torch infer':>13}{'ratio':>7}   (images/s)")
    for r in results:
        o = ours.get((r["name"], r["batch"]))
        ft = o["train_images_per_s"] if o else float("nan")
        fi = o["infer_images_per_s"] if o else float("nan")
        print(f"{label[id(r)]:<{width}}{r['batch']:>6}{ft:>14.1f}{r['train_images_per_s']:>13.1f}"
              f"{ft / r['train_images_per_s']:>7.2f}{fi:>14.1f}{r['infer_images_per_s']:>13.1f}"
              f"{fi / r['infer_images_per_s']:>7.2f}")


if __name__ == "__main__":
    sys.exit(main())
