#!/usr/bin/env python3
"""Keras reference for ferkit's accuracy figures: trains one of the notebook's nets with the
notebook's own recipe in Keras 3 (PyTorch backend, CPU) and prints the test accuracy of the
checkpoint with the best validation loss, so ferkit's figure can be compared with Keras' on the
same machine and seeds rather than with the notebook's single run.

    KERAS_BACKEND=torch python3 bench/keras_reference.py cnn3 \
        --data ../shared/data/fer2013/fer2013.csv.gz --seeds 42,1,2,3,4 [--json out.json]

Recipe (the notebook's): per-image standardisation (x - mean) / max(std(ddof=1), 1/48), the net
from experiments/NAME.toml (glorot-uniform kernels, zero biases, L2 on kernels as a loss term,
Keras' 'same' padding), Adam at the preset's rate, batch 512, 20 epochs, shuffled each epoch,
validation on PublicTest, ModelCheckpoint(save_best_only, monitor val_loss), test on PrivateTest.
Validation and test accuracy are the kept checkpoint's in inference mode, as ferkit reports them;
train_accuracy is Keras' running figure for the kept epoch (dropout on, weights changing), which
is lower than ferkit's train accuracy (the kept weights in inference mode).
Needs `pip install keras torch`.
"""
import argparse
import csv
import gzip
import json
import os
import pathlib
import statistics
import sys
import tempfile
import time
import tomllib

os.environ.setdefault("KERAS_BACKEND", "torch")
import numpy as np  # noqa: E402
import keras  # noqa: E402
from keras import layers, regularizers  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
SPLITS = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}


def load_fer2013(path):
    """{split: (x float32 [n,48,48,1] standardised per image, y int [n])}."""
    rows = {s: ([], []) for s in SPLITS.values()}
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", newline="") as f:
        for row in csv.DictReader(f):
            xs, ys = rows[SPLITS[row["Usage"]]]
            xs.append(np.array(row["pixels"].split(), dtype=np.uint8))
            ys.append(int(row["emotion"]))
    out = {}
    for split, (xs, ys) in rows.items():
        x = np.stack(xs).astype(np.float64)
        mean = x.mean(axis=1, keepdims=True)
        std = np.maximum(x.std(axis=1, ddof=1, keepdims=True), 1 / 48)
        out[split] = (((x - mean) / std).astype(np.float32).reshape(-1, 48, 48, 1), np.array(ys))
    return out


def build(spec):
    """keras.Sequential from a ferkit net TOML (the vocabulary of experiments/*.toml)."""
    shape = spec["input"]
    net = [keras.Input(shape=tuple(shape))]
    for layer in spec["layers"]:
        kind = layer["kind"]
        l2 = regularizers.l2(layer["l2"]) if layer.get("l2") else None
        if kind == "conv2d":
            net.append(layers.Conv2D(layer["filters"], layer["kernel"], strides=layer.get("stride", 1),
                                     padding=layer.get("padding", "valid"),
                                     activation=layer.get("activation"), kernel_regularizer=l2))
        elif kind == "dense":
            net.append(layers.Dense(layer["units"], activation=layer.get("activation"),
                                    kernel_regularizer=l2))
        elif kind == "maxpool":
            net.append(layers.MaxPooling2D(layer["pool"], strides=layer.get("stride", layer["pool"]),
                                           padding=layer.get("padding", "valid")))
        elif kind == "batchnorm":
            net.append(layers.BatchNormalization(momentum=layer.get("momentum", 0.99),
                                                 epsilon=layer.get("epsilon", 1e-3)))
        elif kind == "dropout":
            net.append(layers.Dropout(layer["rate"]))
        elif kind == "flatten":
            net.append(layers.Flatten())
        elif kind == "activation":
            net.append(layers.Activation(layer["function"]))
        else:
            raise ValueError(f"unknown layer kind {kind!r}")
    return keras.Sequential(net)


def train_once(spec, data, seed, epochs, batch):
    keras.utils.set_random_seed(seed)
    model = build(spec)
    model.compile(optimizer=keras.optimizers.Adam(spec["learning_rate"]),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    with tempfile.TemporaryDirectory() as tmp:
        best = os.path.join(tmp, "best.weights.h5")
        start = time.perf_counter()
        history = model.fit(*data["train"], batch_size=batch, epochs=epochs, validation_data=data["val"],
                            shuffle=True, verbose=2, callbacks=[keras.callbacks.ModelCheckpoint(
                                best, monitor="val_loss", save_best_only=True, save_weights_only=True)])
        seconds = time.perf_counter() - start
        model.load_weights(best)
    val_loss = history.history["val_loss"]
    kept = int(np.argmin(val_loss))
    _, val_acc = model.evaluate(*data["val"], batch_size=batch, verbose=0)
    _, test_acc = model.evaluate(*data["test"], batch_size=batch, verbose=0)
    return {"seed": seed, "kept_epoch": kept + 1, "train_accuracy": history.history["accuracy"][kept],
            "val_accuracy": val_acc, "test_accuracy": test_acc, "seconds": seconds}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="a preset in experiments/, e.g. cnn3")
    ap.add_argument("--data", required=True, help="FER2013 .csv or .csv.gz with a Usage column")
    ap.add_argument("--seeds", default="42")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", help="write the per-seed results here")
    args = ap.parse_args()
    import torch
    torch.set_num_threads(args.threads)
    spec = tomllib.loads((ROOT / "experiments" / f"{args.model}.toml").read_text())
    data = load_fer2013(args.data)
    print({s: len(y) for s, (_, y) in data.items()}, flush=True)
    results = []
    for seed in (int(s) for s in args.seeds.split(",")):
        r = train_once(spec, data, seed, args.epochs, args.batch)
        results.append(r)
        print(json.dumps(r), flush=True)
        if args.json:  # rewritten after every seed, so an interrupted run keeps what it finished
            pathlib.Path(args.json).write_text(json.dumps(results, indent=2))
    print(f"keras {keras.__version__} ({keras.backend.backend()}), {args.model}, {len(results)} seeds")
    print(f"{'seed':>6}{'kept':>6}{'train':>9}{'val':>9}{'test':>9}{'seconds':>9}")
    for r in results:
        print(f"{r['seed']:>6}{r['kept_epoch']:>6}{100 * r['train_accuracy']:>8.2f}%"
              f"{100 * r['val_accuracy']:>8.2f}%{100 * r['test_accuracy']:>8.2f}%{r['seconds']:>9.0f}")
    if len(results) > 1:
        for key in ("val_accuracy", "test_accuracy"):
            xs = [100 * r[key] for r in results]
            print(f"{key}: {statistics.mean(xs):.2f} +- {statistics.stdev(xs):.2f}")


if __name__ == "__main__":
    sys.exit(main())
