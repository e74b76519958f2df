#!/usr/bin/env python3
"""Prints `bench/run.sh`'s tables from the JSON files it collected in DIR: per model, ferkit's and
PyTorch's training and inference images/s at the model's batch, inference at batch 1 and 256
beside ONNX Runtime's, and each framework's peak RSS (MiB, the whole benchmark process of that
model: training at the batch, then inference). Where the net's arithmetic is counted (layer-list
nets: `ferkit bench` writes their multiply-adds per image) and DIR holds `peak.json`
(`bench/sgemm_peak.py --json`), a last table sets each framework's training speed against the
machine's float32 matrix-product peak: the images/s a step could reach if all of it ran at that
peak, an upper bound for any framework on this machine.

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
    # PyTorch's JSON names its device ("cpu", or "cuda (GPU name)" beside `ferkit bench --device gpu`).
    device = first[1].get("device", "cpu") if first[1] else "cpu"
    print(f"machine: {first[0].get('machine', '?')}; {first[0].get('threads')} threads; device {device}; "
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
    arithmetic(rows, load(d / "peak.json"))
    return 0


def arithmetic(rows, peak):
    """Training GFLOP/s of each framework (2 FLOPs a multiply-add, the same count for both: the
    same net) and the bound the machine's matrix-product peak sets on images/s."""
    counted = [(f, t) for f, t, *_ in rows if f["models"][0].get("training_multiply_adds")]
    if not counted:
        return
    best = peak["peak_gflops"] if peak else None
    where = f"{best:.1f} GFLOP/s, PyTorch's float32 matrix product on {peak['threads']} threads" if peak else "not measured"
    print(f"\nTraining arithmetic (GFLOP/s = 2 x multiply-adds per image x images/s); machine's peak: {where}")
    print(f"{'model':<20}{'Mmul-add/img':>13}{'ferkit GFLOP/s':>15}{'torch GFLOP/s':>14}"
          f"{'bound img/s':>12}{'ferkit/bound':>13}{'1.5x torch/bound':>17}")
    for f, t in counted:
        m = f["models"][0]
        macs = m["training_multiply_adds"]
        ft = m["train_images_per_s"]
        tt = t["models"][0]["train_images_per_s"] if t else float("nan")
        bound = best * 1e9 / (2 * macs) if best else float("nan")
        print(f"{m['model']:<20}{macs / 1e6:>13.1f}{2e-9 * macs * ft:>15.1f}{2e-9 * macs * tt:>14.1f}"
              f"{bound:>12.1f}{ft / bound:>13.2f}{1.5 * tt / bound:>17.2f}")


if __name__ == "__main__":
    sys.exit(main())
