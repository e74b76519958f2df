#!/usr/bin/env python3
"""Prints `bench/run.sh`'s tables from the JSON files it collected in DIR: per model, ferkit's and
PyTorch's training and inference images/s at the model's batch, inference at batch 1 and 256
beside ONNX Runtime's, and each framework's peak RSS (MiB, the whole benchmark process of that
model: training at the batch, then inference).

    python3 bench/compare.py DIR
"""
import json
import pathlib
import sys


def load(path):
    p = pathlib.Path(path)
    return json.loads(p.read_text()) if p.exists() else None


def main():
    d = pathlib.Path(sys.argv[1])
    rows = []
    for i in range(1000):
        ferkit = load(d / f"ferkit-{i}.json")
        if ferkit is None:
            break
        torch = load(d / f"torch-{i}.json")
        ort = load(d / f"ort-{i}.json")
        rss = {k: load(d / f"{k}-{i}.rss.json") for k in ("ferkit", "torch", "ort")}
        rows.append((ferkit, torch, ort, rss))
    if not rows:
        print("no results")
        return 1
    first = rows[0]
    print(f"machine: {first[0].get('machine', '?')}; {first[0].get('threads')} threads; "
          f"torch {first[1]['torch'] if first[1] else '-'}; onnxruntime {first[2]['onnxruntime'] if first[2] else '-'}")
    nan = float("nan")

    def get(doc, key, batch=None):
        if not doc:
            return nan
        m = doc["models"][0]
        if batch is None:
            return m[key]
        return next((r["infer_images_per_s"] for r in m.get("infer_batches", []) if r["batch"] == batch), nan)

    def mib(r):
        return r["peak_rss_mib"] if r else nan

    print("\nTraining and inference at the model's batch (images/s), peak RSS of each benchmark process (MiB)")
    print(f"{'model':<20}{'batch':>6}{'ferkit train':>13}{'torch train':>12}{'ratio':>7}"
          f"{'ferkit infer':>13}{'torch infer':>12}{'ratio':>7}{'ferkit RSS':>11}{'torch RSS':>10}")
    for f, t, o, rss in rows:
        m = f["models"][0]
        ft, tt = get(f, "train_images_per_s"), get(t, "train_images_per_s")
        fi, ti = get(f, "infer_images_per_s"), get(t, "infer_images_per_s")
        print(f"{m['model']:<20}{m['batch']:>6}{ft:>13.1f}{tt:>12.1f}{ft / tt:>7.2f}{fi:>13.1f}{ti:>12.1f}"
              f"{fi / ti:>7.2f}{mib(rss['ferkit']):>11.0f}{mib(rss['torch']):>10.0f}")
    batches = sorted({r["batch"] for f, *_ in rows for r in f["models"][0].get("infer_batches", [])})
    for b in batches:
        print(f"\nInference alone at batch {b} (images/s; ratios are ferkit's over the reference's)")
        print(f"{'model':<20}{'ferkit':>10}{'torch':>10}{'ORT':>10}{'/torch':>8}{'/ORT':>7}{'ORT RSS':>9}")
        for f, t, o, rss in rows:
            fb, tb, ob = get(f, None, b), get(t, None, b), get(o, None, b)
            print(f"{f['models'][0]['model']:<20}{fb:>10.1f}{tb:>10.1f}{ob:>10.1f}{fb / tb:>8.2f}{fb / ob:>7.2f}"
                  f"{mib(rss['ort']):>9.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
