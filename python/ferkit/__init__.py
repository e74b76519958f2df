"""ferkit: facial-expression recognition (FER2013's seven emotions) with a Rust core.

`FER` reads the faces in images the way the `fer` package's `FER` does, with the same output
(``[{"box": [x, y, w, h], "emotions": {"angry": p, ...}}]``), and reads many images' faces in
batched forward passes (`detect_emotions_batch`). `Model` classifies 48x48 faces directly.
`load_fer2013` gives FER2013-shaped data as numpy arrays. The work runs in Rust with the GIL
released; errors are Python exceptions (`FileNotFoundError`, `ValueError`, ...).
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import _native

__version__ = _native.__version__

#: The seven classes, in the order of every probability vector (FER2013's label order).
CLASS_NAMES: Tuple[str, ...] = tuple(_native.CLASS_NAMES)

ImageLike = Union[str, "os.PathLike[str]", bytes, np.ndarray]


def _as_native_image(img: ImageLike, rgb: bool) -> Any:
    """A path, encoded bytes, or an RGB uint8 array (H, W, 3) for the native side."""
    if isinstance(img, (str, bytes, os.PathLike)):
        return img
    if not isinstance(img, np.ndarray):
        raise ValueError(
            f"an image of type {type(img).__name__}; expected a path, bytes, or a numpy uint8 array"
        )
    if img.dtype != np.uint8:
        raise ValueError(f"an image array of dtype {img.dtype}; expected uint8")
    if img.ndim == 2:
        return np.ascontiguousarray(np.repeat(img[:, :, None], 3, axis=2))
    if img.ndim == 3 and img.shape[2] == 3:
        # OpenCV's arrays are BGR; the native side reads RGB.
        return np.ascontiguousarray(img if rgb else img[:, :, ::-1])
    if img.ndim == 3 and img.shape[2] == 4:
        return np.ascontiguousarray(img[:, :, :3] if rgb else img[:, :, 2::-1])
    raise ValueError(f"an image array of shape {img.shape}; expected (H, W) grey or (H, W, 3)")


def _fer_face(face: Dict[str, Any]) -> Dict[str, Any]:
    """A face as `fer` (25.10) gives it: box as [x, y, w, h] ints, probabilities rounded to two
    decimals as it rounds them (`detect_faces` keeps full precision)."""
    b = face["box"]
    return {
        "box": [int(b["x"]), int(b["y"]), int(b["width"]), int(b["height"])],
        "emotions": {name: round(float(face["probabilities"][name]), 2) for name in CLASS_NAMES},
    }


class FER:
    """Finds faces and reads their emotions, as `fer.FER` does.

    Args:
        model: None for the model shipped inside ferkit; else a run directory written by
            `ferkit train` or a `NAME.bpk` model file (with `NAME.toml` beside it).
        detector: "haar" (OpenCV's frontal-face cascade, found where opencv-data installs it
            unless `cascade` names it) or "mtcnn" (facenet-pytorch's weights in `mtcnn_dir`).
        min_face_size: the smallest face side, in pixels.
        scale_factor, min_neighbors: the Haar detector's settings (OpenCV's meaning).
        cascade: a Haar or LBP cascade XML file.
        mtcnn_dir: the folder with pnet.pt, rnet.pt and onet.pt.
        tta: "none", "hflip" or "ten-crop": test-time augmentation of each face; None: the
            model's own (a model file's `tta`, e.g. the shipped model's; plain for a run).

    Raises:
        FileNotFoundError: a named file or folder is missing.
        ValueError: a setting out of range, or weights that are not a ferkit model.
    """

    def __init__(
        self,
        model: Optional[Union[str, "os.PathLike[str]"]] = None,
        detector: str = "haar",
        min_face_size: int = 48,
        scale_factor: float = 1.1,
        min_neighbors: int = 5,
        cascade: Optional[Union[str, "os.PathLike[str]"]] = None,
        mtcnn_dir: Optional[Union[str, "os.PathLike[str]"]] = None,
        tta: Optional[str] = None,
    ) -> None:
        self._pipeline = _native.Pipeline(
            model, detector, min_face_size, scale_factor, min_neighbors, cascade, mtcnn_dir, tta
        )

    @property
    def model_name(self) -> str:
        return self._pipeline.model_name

    def detect_faces(self, images: Sequence[ImageLike], rgb: bool = False) -> List[List[Dict[str, Any]]]:
        """ferkit's own result per image: each face's box (`x`, `y`, `width`, `height` in
        pixels), `emotion`, `probabilities` by class (float, summing to 1) and, with MTCNN,
        `detector_score` and five `landmarks`."""
        native = [_as_native_image(img, rgb) for img in images]
        return [json.loads(text) for text in self._pipeline.detect(native)]

    def detect_emotions(self, img: ImageLike, rgb: bool = False) -> List[Dict[str, Any]]:
        """The faces in `img` as `fer` gives them: ``[{"box": [x, y, w, h], "emotions":
        {"angry": p, "disgust": p, "fear": p, "happy": p, "sad": p, "surprise": p,
        "neutral": p}}]``, faces in reading order (top to bottom, then left to right); the
        probabilities rounded to two decimals, as `fer` rounds them (`detect_faces` for all
        digits).

        `img` is a path, encoded bytes (PNG, JPEG, ...), or a uint8 array: (H, W) grey or
        (H, W, 3) in BGR order as OpenCV gives it (`rgb=True` for RGB arrays, e.g. PIL's)."""
        return self.detect_emotions_batch([img], rgb=rgb)[0]

    def detect_emotions_batch(self, images: Sequence[ImageLike], rgb: bool = False) -> List[List[Dict[str, Any]]]:
        """`detect_emotions` for many images: their faces are read by the net together, in
        batches of 64, not one forward pass per face. One list per image, in order."""
        return [[_fer_face(f) for f in faces] for faces in self.detect_faces(images, rgb=rgb)]

    def analyze_video(
        self,
        path: Union[str, "os.PathLike[str]"],
        out: Union[str, "os.PathLike[str]"],
        *,
        every: Optional[int] = None,
        fps: Optional[float] = None,
        start: float = 0.0,
        end: Optional[float] = None,
        detect_every: int = 1,
        smooth: int = 1,
        annotate: bool = False,
    ) -> Dict[str, Any]:
        """Emotions over a video's time, as `ferkit predict VIDEO --out OUT` computes them (the
        `ffmpeg` tool must be on PATH): every frame, or every `every`-th, or at most `fps` per
        second, from `start` to `end` seconds; the detector on every `detect_every`-th analysed
        frame (boxes carried between); each face track's probabilities averaged over its last
        `smooth` frames. Writes `frames.csv`, `frames.jsonl`, `tracks.csv`, `tracks.json`,
        `timeline_track_N.png` and, with `annotate`, `annotated.mp4` into `out`.

        Returns the report: `width`, `height`, `fps`, `frames_read`, `frames_sampled`, `faces`,
        `detections`, `seconds` and `tracks` (per track: `track`, `first_s`, `last_s`, `frames`,
        `share` of frames per emotion, `mean_probabilities`).

        Raises:
            FileNotFoundError: no such file.
            NotImplementedError: ffmpeg is not installed (the message says how to install it).
            ValueError: not a video, no video stream, an option out of range.
            VideoDamagedError: a truncated or corrupt file (the frames before were written).
        """
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: no such video file")
        report = json.loads(
            self._pipeline.analyze_video(path, os.fspath(out), every, fps, start, end, detect_every, smooth, annotate)
        )
        if report.get("damaged"):
            raise VideoDamagedError(f"{path}: {report['damaged']}", report)
        return report

    def top_emotion(self, img: ImageLike, rgb: bool = False) -> Tuple[Optional[str], Optional[float]]:
        """The first face's most probable emotion and its probability; (None, None) without a
        face (as `fer`)."""
        faces = self.detect_emotions(img, rgb=rgb)
        if not faces:
            return None, None
        emotions = faces[0]["emotions"]
        label = max(emotions, key=emotions.get)
        return label, emotions[label]


class VideoDamagedError(ValueError):
    """A video that ffmpeg could not decode to its end (truncated, corrupt). The frames before
    the damage were analysed and written; `report` is the analysis report, whose `damaged`
    says where decoding stopped."""

    def __init__(self, message: str, report: Dict[str, Any]) -> None:
        super().__init__(message)
        self.report = report


class Model:
    """A trained net for 48x48 grey faces.

    `Model.load(path=None, tta=None)`: None is the model shipped inside ferkit; else a run
    directory or a `NAME.bpk` model file. `tta` as for `FER` (None: the model's own)."""

    classes: Tuple[str, ...] = CLASS_NAMES

    def __init__(self, native: Any) -> None:
        self._native = native

    @classmethod
    def load(cls, path: Optional[Union[str, "os.PathLike[str]"]] = None, tta: Optional[str] = None) -> "Model":
        return cls(_native.Model(path, tta))

    @property
    def name(self) -> str:
        return self._native.name

    def predict_proba(self, faces: np.ndarray) -> np.ndarray:
        """Class probabilities, float32 of shape (N, 7) in `classes` order, for faces of shape
        (N, 48, 48) (or one face (48, 48)) uint8 raw grey levels, standardised inside as in
        training. Raises ValueError for another dtype or shape."""
        faces = np.asarray(faces)
        if faces.dtype != np.uint8:
            raise ValueError(f"faces of dtype {faces.dtype}; expected uint8 grey levels")
        if faces.ndim == 2:
            faces = faces[None]
        if faces.ndim != 3:
            raise ValueError(f"faces of shape {faces.shape}; expected (N, 48, 48)")
        return self._native.predict_proba(np.ascontiguousarray(faces))


def load_fer2013(
    path: Union[str, "os.PathLike[str]"], skip_bad_rows: bool = False
) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    """FER2013-shaped data (the CSV, plain or .gz, with a Usage column; or an image folder
    ROOT/<split>/<class>/) per split: ``{"train": (x, y), "val": (x, y), "test": (x, y)}`` with
    x uint8 (N, 48, 48) and y int64 (N,) labels in `CLASS_NAMES` order ("val" is FER2013's
    PublicTest, "test" its PrivateTest). Raises FileNotFoundError or ValueError (naming the file
    and line) for bad data, unless `skip_bad_rows`."""
    out = {}
    for split, (pixels, labels, rows) in _native.load_fer2013(path, skip_bad_rows).items():
        x = np.frombuffer(pixels, dtype=np.uint8).reshape(rows, 48, 48)
        out[split] = (x, np.asarray(labels, dtype=np.int64))
    return out


class History(list):
    """A run's history: one dict per epoch (epoch, train_loss, train_accuracy, val_loss,
    val_accuracy, seconds; losses with the L2 term, as Keras shows them)."""

    def to_pandas(self) -> Any:
        """The history as a pandas DataFrame (needs pandas)."""
        import pandas as pd

        return pd.DataFrame(list(self))


def train(
    model: str = "cnn3",
    data: Union[str, "os.PathLike[str]"] = "",
    out: Union[str, "os.PathLike[str]"] = "runs/notebook",
    epochs: Optional[int] = None,
    overwrite: bool = False,
    **options: Any,
) -> Tuple[History, str]:
    """Trains `model` (a net preset such as "cnn3" or "vgg-lite", a net TOML file, or a
    training preset such as "fast", which brings its own recipe) on `data`
    (FER2013's CSV or an image folder) into the run directory `out`, as `ferkit train` does:
    the run's config, history, metrics, curves and kept weights all go there.

    `options` are the recipe's: batch_size, lr, optimizer, momentum, weight_decay, schedule,
    warmup_epochs, plateau_factor, plateau_patience, label_smoothing, ema, mixup, cutmix,
    teacher (knowledge distillation: a run directory, a model file or "shipped", whose
    probabilities for every training face the student also learns from), distill_weight (the
    teacher term's share of the loss, default 0.5), distill_temperature (default 1),
    time_budget (minutes of wall time the run fits itself to; the "fast" preset's is 58),
    tta ("none", "hflip" or "ten-crop": test-time augmentation of the final evaluation of the
    validation and test splits; the "fast" preset's is "hflip"), augment
    ("rotation=15,zoom=0.1,hflip"), seed, monitor, subset, skip_bad_rows, init_from, val_split,
    and weights (ImageNet weights of a transfer net or of the "fast" preset, a .pth file). With
    a training preset, each option given changes that one option of its recipe (a new optimizer
    or schedule also drops the preset's settings of the old one). Progress prints one line per
    epoch. Ctrl-C stops the run between two steps (KeyboardInterrupt);
    `ferkit.resume(out)` goes on from its last finished epoch.

    Returns the history (a list of dicts; `.to_pandas()`) and the run directory. Raises ValueError for an
    unknown option or a value out of range, FileNotFoundError for missing data, and
    ValueError for a folder that already holds a run (pass overwrite=True)."""
    if epochs is not None:  # else 20, or a training preset's own
        options["epochs"] = epochs
    rows, run_dir = _native.train(model, data, out, overwrite, **options)
    return History(rows), run_dir


def resume(out: Union[str, "os.PathLike[str]"]) -> Tuple[History, str]:
    """Goes on with the stopped run in `out`; returns its history and directory, as `train`
    (a finished run's as they are)."""
    rows, run_dir = _native.resume(out)
    return History(rows), run_dir


def read_image(path: Union[str, "os.PathLike[str]"], grey: bool = False) -> np.ndarray:
    """An image file as ferkit reads photos (format from the content, EXIF orientation
    applied): RGB uint8 (H, W, 3), or with `grey` its grey levels (H, W) uint8 (OpenCV's
    RGB-to-grey conversion). Raises FileNotFoundError, or ValueError for a file that is not an
    image."""
    return _native.read_image(path, grey)


__all__ = [
    "CLASS_NAMES",
    "FER",
    "History",
    "Model",
    "load_fer2013",
    "read_image",
    "resume",
    "train",
    "__version__",
]
