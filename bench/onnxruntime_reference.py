#!/usr/bin/env python3
"""ONNX Runtime reference for `ferkit bench`: the same nets, exported by `ferkit bench --onnx-dir
DIR` (DIR/NAME.onnx, ferkit's ONNX export of the net with the same random initialisation), timed
in ONNX Runtime's CPU provider the way ferkit's inference is timed: 48x48 grey u8 faces in, the
net's preprocessing (numpy: per-image standardisation, or /255 for the transfer net), the session
run, log-softmax out.

    python3 bench/onnxruntime_reference.py --models cnn3:512,vgg-lite:64 --dir DIR \\
        --infer-batches 1,256 --threads 2 [--steps 5 --repeats 3] --json out.json

Needs `pip install onnxruntime numpy`.
"""
import argparse
import json
import pathlib
import sys

import numpy as np
import onnxruntime as ort

from timing import inference_median_rate


def preprocess(faces, unit_range):
    x = faces.astype(np.float32)
    if unit_range:
        return x / 255.0
    flat = x.reshape(len(x), -1)
    mean = flat.mean(axis=1, keepdims=True)
    std = np.maximum(flat.std(axis=1, ddof=1, keepdims=True), 1.0 / 48.0)
    return ((flat - mean) / std).reshape(x.shape)


def log_softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def bench(session, size, unit_range, steps, repeats):
    rng = np.random.default_rng(0)
    faces = rng.integers(0, 256, (size, 1, 48, 48), dtype=np.uint8)

    def step():
        return log_softmax(session.run(["logits"], {"faces": preprocess(faces, unit_range)})[0])

    return inference_median_rate(step, size, steps, repeats)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="cnn3:512,vgg-lite:64")
    ap.add_argument("--dir", required=True, help="where `ferkit bench --onnx-dir` wrote NAME.onnx")
    ap.add_argument("--infer-batches", default="1,256")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json")
    args = ap.parse_args()
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    results = []
    for pair in args.models.split(","):
        name, batch = pair.split(":")
        # A net file's path as given, with / and \\ as _ (as `ferkit bench --onnx-dir` names it).
        file = name.replace("/", "_").replace("\\", "_") + ".onnx"
        session = ort.InferenceSession(str(pathlib.Path(args.dir) / file), options,
                                       providers=["CPUExecutionProvider"])
        unit_range = "p / 255" in session.get_modelmeta().custom_metadata_map.get("ferkit.preprocess", "")
        at = [{"batch": b, "infer_images_per_s": bench(session, b, unit_range, args.steps, args.repeats)}
              for b in [int(b) for b in args.infer_batches.split(",") if b]]
        results.append({"name": name, "batch": int(batch),
                        "infer_images_per_s": bench(session, int(batch), unit_range, args.steps, args.repeats),
                        "infer_batches": at})
        print(name, json.dumps(at))
    doc = {"onnxruntime": ort.__version__, "threads": args.threads, "models": results}
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(doc, indent=2))


if __name__ == "__main__":
    sys.exit(main())
