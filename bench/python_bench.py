"""Python front's speed: faces/s of ferkit.Model.predict_proba at batch 1 and 256, and
ferkit.FER.detect_emotions_batch on photos, beside PyPI fer's FER.detect_emotions on the same
photos in the same run when `fer` imports (it needs TensorFlow); says so when it does not.

    python bench/python_bench.py [--photos DIR] [--repeats N] [--cascade XML]

Run with the interpreter of a virtual environment where `pip install .` installed ferkit (and,
for the comparison, `pip install fer`). Prints one line per measurement; name the CPU (lscpu)
beside any figure you quote.
"""

import argparse
import pathlib
import platform
import statistics
import time

import numpy as np

import ferkit


def median_rate(items: int, run, repeats: int) -> float:
    run()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return items / statistics.median(times)


def main() -> None:
    root = pathlib.Path(__file__).resolve().parents[1]
    parser = argparse.ArgumentParser()
    parser.add_argument("--photos", default=str(root.parent / "shared" / "data" / "photos"))
    parser.add_argument("--cascade", default=str(root.parent / "shared" / "models" / "haarcascade_frontalface_default.xml"))
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}; ferkit {ferkit.__version__}")

    model = ferkit.Model.load()
    rng = np.random.default_rng(0)
    for batch in (1, 256):
        faces = rng.integers(0, 256, size=(batch, 48, 48), dtype=np.uint8)
        rate = median_rate(batch, lambda: model.predict_proba(faces), args.repeats)
        print(f"ferkit Model.predict_proba, batch {batch:>3}: {rate:10.1f} faces/s ({model.name})")

    # The classification stage alone, on FER2013's first PrivateTest faces: ferkit in one
    # batched call, fer (below) with the faces' boxes given, one image per face.
    csv = root.parent / "shared" / "data" / "fer2013" / "fer2013.csv.gz"
    test_faces = ferkit.load_fer2013(csv)["test"][0][:256] if csv.exists() else None
    if test_faces is not None:
        rate = median_rate(len(test_faces), lambda: model.predict_proba(test_faces), args.repeats)
        print(f"ferkit Model.predict_proba, {len(test_faces)} FER2013 faces in one call: {rate:10.1f} faces/s")

    photos = sorted(p for p in pathlib.Path(args.photos).iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    if not photos:
        print(f"no photos in {args.photos}: detection not measured")
        return
    fer = ferkit.FER(cascade=args.cascade)
    found = sum(len(f) for f in fer.detect_emotions_batch([str(p) for p in photos]))
    rate = median_rate(len(photos), lambda: fer.detect_emotions_batch([str(p) for p in photos]), args.repeats)
    print(f"ferkit FER.detect_emotions_batch ({len(photos)} photos, {found} faces, Haar): {rate:8.2f} photos/s")

    try:
        import cv2

        try:
            from fer import FER as PyPIFER
        except ImportError:  # fer 25.x moved it
            from fer.fer import FER as PyPIFER
    except Exception as e:  # fer needs TensorFlow and OpenCV
        print(f"PyPI fer: not measured ({type(e).__name__}: {e}); `pip install fer` in this environment to compare")
        return
    if test_faces is not None:
        classifier = PyPIFER()
        one_face_images = [cv2.cvtColor(f, cv2.COLOR_GRAY2BGR) for f in test_faces]
        box = [(0, 0, 48, 48)]
        run = lambda: [classifier.detect_emotions(img, face_rectangles=box) for img in one_face_images]
        rate = median_rate(len(one_face_images), run, args.repeats)
        print(f"PyPI fer FER.detect_emotions with the box given, {len(one_face_images)} FER2013 faces: {rate:10.1f} faces/s")
    images = [cv2.imread(str(p)) for p in photos]
    theirs = PyPIFER()
    found = sum(len(theirs.detect_emotions(img)) for img in images)
    rate = median_rate(len(images), lambda: [theirs.detect_emotions(img) for img in images], args.repeats)
    print(f"PyPI fer FER.detect_emotions ({len(images)} photos, {found} faces, its Haar): {rate:8.2f} photos/s")


if __name__ == "__main__":
    main()
