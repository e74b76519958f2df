"""Face detection timed on photos with the references ferkit's detectors follow, printed beside
ferkit's figures: OpenCV's Haar cascade (`cv2.CascadeClassifier.detectMultiScale`) and
facenet-pytorch's MTCNN (PyTorch).

    python3 bench/detect_reference.py --photos A.png,B.png [--cascade C] [--mtcnn DIR]
        [--threads 2] [--repeats 9] [--compare ferkit.json]

Settings as `ferkit predict`'s defaults: Haar scale factor 1.1, 5 neighbours; faces of 48 pixels
or more for both. Each photo is decoded before timing, as in `ferkit bench --photos`.
Needs `pip install "opencv-python-headless<5"` (OpenCV 5 dropped the cascade classifier) for
Haar, and bench/facenet_mtcnn.py's packages for MTCNN; a detector whose package is missing is
skipped.
"""
import argparse
import json
import os
import pathlib
import statistics
import sys
import time

import numpy as np
from PIL import Image

MIN_SIZE = 48


def timed(run, repeats):
    times, found = [], 0
    for _ in range(repeats):
        start = time.perf_counter()
        found = run()
        times.append(time.perf_counter() - start)
    return found, statistics.median(times)


def haar(cascade_path, threads):
    import cv2
    cv2.setNumThreads(threads)
    cascade = cv2.CascadeClassifier(cascade_path)
    assert not cascade.empty(), cascade_path

    def detect(rgb):
        grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        return lambda: len(cascade.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5, minSize=(MIN_SIZE, MIN_SIZE)))
    return f"OpenCV {cv2.__version__}", detect


def mtcnn(weights_dir, threads):
    import torch
    torch.set_num_threads(threads)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from facenet_mtcnn import detect_face, load_nets
    pnet, rnet, onet = load_nets(weights_dir)

    def detect(rgb):
        def run():
            with torch.no_grad():
                boxes, _ = detect_face(rgb, MIN_SIZE, pnet, rnet, onet, [0.6, 0.7, 0.7], 0.709, "cpu")
            return len(boxes[0])
        return run
    from importlib.metadata import PackageNotFoundError, version
    try:
        facenet = version("facenet-pytorch")
    except PackageNotFoundError:  # importable without pip's metadata (a source checkout)
        facenet = "?"
    return f"facenet-pytorch {facenet} on torch {torch.__version__}", detect


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--photos", required=True)
    ap.add_argument("--cascade")
    ap.add_argument("--mtcnn")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--compare", help="ferkit bench --json output to print beside")
    args = ap.parse_args()
    ours = {}
    if args.compare:
        ours = {(r["detector"], r["photo"]): r for r in json.loads(pathlib.Path(args.compare).read_text())["detection"]}
    detectors = []
    for name, path, make in [("haar", args.cascade, haar), ("mtcnn", args.mtcnn, mtcnn)]:
        if not path:
            continue
        try:
            detectors.append((name, *make(path, args.threads)))
        except ImportError as e:
            print(f"{name}: skipped ({e})")
    photos = [(p, np.asarray(Image.open(p).convert("RGB"))) for p in args.photos.split(",")]
    print(f"{args.threads} threads; median of {args.repeats}; ms per photo")
    print(f"{'detector':<10}{'photo':<40}{'size':>11}{'ref faces':>11}{'ref ms':>10}{'ferkit faces':>14}{'ferkit ms':>11}  reference")
    for name, version, detect in detectors:
        for path, rgb in photos:
            found, seconds = timed(detect(rgb), args.repeats)
            line = f"{name:<10}{path:<40}{f'{rgb.shape[1]}x{rgb.shape[0]}':>11}{found:>11}{1000 * seconds:>10.2f}"
            r = ours.get((name, path))
            line += f"{r['faces']:>14}{1000 * r['seconds']:>11.2f}" if r else f"{'':>14}{'':>11}"
            print(f"{line}  {version}")


if __name__ == "__main__":
    main()
