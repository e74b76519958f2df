#!/usr/bin/env python3
"""PyPI fer's `Video.analyze` on a clip, timed, as a row of bench/video.sh's table: OpenCV's Haar
cascade (`FER(mtcnn=False)`), every frame, nothing saved (no frames, no video, no zip).

    python bench/fer_video.py CLIP.mp4        # with a Python that has `pip install fer`
"""
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
from importlib.metadata import version

import cv2

try:  # fer 25.x
    from fer.fer import FER
    from fer.classes import Video
except ImportError:  # fer 22.x
    from fer import FER, Video

# fer's analyze calls cv2.waitKey() after each frame and cv2.destroyAllWindows() at the end, even
# with display=False; a headless OpenCV (no GUI backend) refuses both with an error. No window here.
cv2.destroyAllWindows = lambda: None
cv2.waitKey = lambda *args: -1

clip = sys.argv[1]
frames = int(cv2.VideoCapture(clip).get(cv2.CAP_PROP_FRAME_COUNT))
detector = FER(mtcnn=False)
with tempfile.TemporaryDirectory() as out:
    start = time.perf_counter()
    rows = Video(clip, outdir=out).analyze(
        detector, display=False, frequency=1, save_video=False, annotate_frames=False, save_frames=False, zip_images=False
    )
    seconds = time.perf_counter() - start
print(f"| fer {version('fer')} Video.analyze | {os.path.basename(clip)} | every frame, {len(rows)} rows | {seconds:.1f} | {frames / seconds:.1f} |")
