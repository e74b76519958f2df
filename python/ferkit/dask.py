"""ferkit over photo archives on a Dask cluster: the table `ferkit predict` writes
(predictions.csv: one row per face), computed partition by partition on Dask's workers.

Each worker process loads the model and the face detector once (the first partition it gets)
and keeps them for every later partition; within a partition, the faces of all its photos go
through the net together in batches of 64 (`FER.detect_faces`), as `ferkit predict` batches
them. A photo that cannot be read is reported, not fatal: its error is in the table's
``attrs["failed"]``; the files of a folder that are not images are counted in
``attrs["not_images"]``.

    from dask.distributed import Client, LocalCluster
    import ferkit.dask

    with Client(LocalCluster(n_workers=4, threads_per_worker=1)):
        table = ferkit.dask.predict_table(["photos/"], cascade="haarcascade_frontalface_default.xml")
    table.to_csv("predictions.csv", index=False)

Needs ``pip install "dask[distributed]" pandas`` (not dependencies of ferkit itself).
Uses the current Dask client when there is one, else Dask's default (local threads).
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from . import FER, CLASS_NAMES, _native

#: The columns of the table, as `ferkit predict` writes predictions.csv.
COLUMNS: Tuple[str, ...] = ("photo", "face", "x", "y", "width", "height", "emotion") + CLASS_NAMES

_Path = Union[str, "os.PathLike[str]"]

# One pipeline per worker process and setting: loaded by the first partition that needs it.
_PIPELINES: Dict[Tuple[Any, ...], FER] = {}


def _pipeline(settings: Tuple[Any, ...]) -> FER:
    if settings not in _PIPELINES:
        _PIPELINES[settings] = FER(*settings)
    return _PIPELINES[settings]


def pipelines_loaded() -> int:
    """How many pipelines (model and detector) this process has loaded: 1 per worker process
    and setting once it has run a partition (what `client.run(ferkit.dask.pipelines_loaded)`
    shows)."""
    return len(_PIPELINES)


def _rows_of(photo: str, faces: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    rows = []
    for index, face in enumerate(faces, start=1):
        box = face["box"]
        row: Dict[str, Any] = {
            "photo": photo,
            "face": index,
            "x": int(box["x"]),
            "y": int(box["y"]),
            "width": int(box["width"]),
            "height": int(box["height"]),
            "emotion": face["emotion"],
        }
        row.update({name: float(face["probabilities"][name]) for name in CLASS_NAMES})
        rows.append(row)
    return rows


def _predict_partition(photos: Sequence[str], settings: Tuple[Any, ...]) -> List[Dict[str, Any]]:
    """One partition: its photos' faces through one batched pass; a photo that fails alone is
    a row with `error` set (kept apart from the table by `predict_table`)."""
    fer = _pipeline(settings)
    photos = list(photos)
    try:
        results = list(zip(photos, fer.detect_faces(photos)))
    except (OSError, ValueError):
        # One unreadable photo fails the whole batch: read them one by one to find it.
        results = []
        for photo in photos:
            try:
                results.append((photo, fer.detect_faces([photo])[0]))
            except (OSError, ValueError) as e:
                results.append((photo, e))
    rows: List[Dict[str, Any]] = []
    for photo, faces in results:
        if isinstance(faces, Exception):
            rows.append({"photo": photo, "error": f"{type(faces).__name__}: {faces}"})
        else:
            rows.extend(_rows_of(photo, faces))
    return rows


def predict_bag(
    paths: Sequence[_Path],
    *,
    partition_size: int = 64,
    model: Optional[_Path] = None,
    detector: str = "haar",
    min_face_size: int = 48,
    scale_factor: float = 1.1,
    min_neighbors: int = 5,
    cascade: Optional[_Path] = None,
    mtcnn_dir: Optional[_Path] = None,
    tta: Optional[str] = None,
) -> Tuple[Any, List[str]]:
    """The lazy computation: a `dask.bag.Bag` of row dicts (the columns of `COLUMNS`, or
    ``{"photo", "error"}`` for a photo that could not be read), `partition_size` photos per
    partition, and the list of folder files that are not images.

    `paths`: photo files and folders (walked recursively, in name order, as `ferkit predict`
    walks them). The other arguments are `ferkit.FER`'s.

    Raises:
        FileNotFoundError: a named path is missing.
        ValueError: `partition_size` below 1.
    """
    import dask.bag as db

    if partition_size < 1:
        raise ValueError(f"partition_size must be at least 1 (got {partition_size})")
    photos, others = _native.photo_paths([os.fspath(p) for p in paths])
    settings = (
        None if model is None else os.fspath(model),
        detector,
        min_face_size,
        scale_factor,
        min_neighbors,
        None if cascade is None else os.fspath(cascade),
        None if mtcnn_dir is None else os.fspath(mtcnn_dir),
        tta,
    )
    bag = db.from_sequence([str(p) for p in photos], partition_size=partition_size)
    return bag.map_partitions(_predict_partition, settings), [str(p) for p in others]


def predict_table(paths: Sequence[_Path], **options: Any) -> Any:
    """`predict_bag` computed into one `pandas.DataFrame` with the columns of `COLUMNS`, one
    row per face, photos in the order `ferkit predict` takes them; ``attrs["failed"]`` holds
    ``(photo, error)`` for the photos that could not be read and ``attrs["not_images"]`` the
    folder files passed over."""
    import pandas as pd

    bag, others = predict_bag(paths, **options)
    rows = bag.compute()
    faces = [r for r in rows if "error" not in r]
    table = pd.DataFrame(faces, columns=list(COLUMNS))
    table.attrs["failed"] = [(r["photo"], r["error"]) for r in rows if "error" in r]
    table.attrs["not_images"] = others
    return table
