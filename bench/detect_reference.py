"""OpenCV's Haar cascade face detection timed on photos, with ferkit's figures beside it.

    python3 bench/detect_reference.py --cascade C --photos A.png,B.png [--threads 2]
        [--repeats 9] [--compare ferkit.json]

Settings as `ferkit predict`'s defaults: scale factor 1.1, 5 neighbours, faces of 48 pixels or
more. The photo is read and turned grey before timing, as in `ferkit bench --photos`.
Needs `pip install "opencv-python-headless<5"` (OpenCV 5 dropped the cascade classifier).
"""
import argparse
import json
import pathlib
import statistics
import time

import cv2


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cascade", required=True)
    ap.add_argument("--photos", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--compare", help="ferkit bench --json output to print beside")
    args = ap.parse_args()
    cv2.setNumThreads(args.threads)
    cascade = cv2.CascadeClassifier(args.cascade)
    assert not cascade.empty(), args.cascade
    ours = {}
    if args.compare:
        ours = {r["photo"]: r for r in json.loads(pathlib.Path(args.compare).read_text())["detection"]}
    print(f"OpenCV {cv2.__version__}, {args.threads} threads; median of {args.repeats}")
    print(f"{'photo':<40}{'size':>11}{'OpenCV faces':>14}{'OpenCV ms':>11}{'ferkit faces':>14}{'ferkit ms':>11}")
    for photo in args.photos.split(","):
        grey = cv2.cvtColor(cv2.imread(photo, cv2.IMREAD_COLOR), cv2.COLOR_BGR2GRAY)
        times, faces = [], 0
        for _ in range(args.repeats):
            start = time.perf_counter()
            faces = len(cascade.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5, minSize=(48, 48)))
            times.append(time.perf_counter() - start)
        size = f"{grey.shape[1]}x{grey.shape[0]}"
        line = f"{photo:<40}{size:>11}{faces:>14}{1000 * statistics.median(times):>11.2f}"
        if photo in ours:
            line += f"{ours[photo]['faces']:>14}{1000 * ours[photo]['seconds']:>11.2f}"
        print(line)


if __name__ == "__main__":
    main()
