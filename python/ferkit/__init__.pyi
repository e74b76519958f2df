import os
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

__version__: str
CLASS_NAMES: Tuple[str, ...]
ImageLike = Union[str, "os.PathLike[str]", bytes, np.ndarray]
_Path = Union[str, "os.PathLike[str]"]

class FER:
    def __init__(
        self,
        model: Optional[_Path] = None,
        detector: str = "haar",
        min_face_size: int = 48,
        scale_factor: float = 1.1,
        min_neighbors: int = 5,
        cascade: Optional[_Path] = None,
        mtcnn_dir: Optional[_Path] = None,
        tta: Optional[str] = None,
    ) -> None: ...
    @property
    def model_name(self) -> str: ...
    def detect_faces(self, images: Sequence[ImageLike], rgb: bool = False) -> List[List[Dict[str, Any]]]: ...
    def detect_emotions(self, img: ImageLike, rgb: bool = False) -> List[Dict[str, Any]]: ...
    def detect_emotions_batch(self, images: Sequence[ImageLike], rgb: bool = False) -> List[List[Dict[str, Any]]]: ...
    def top_emotion(self, img: ImageLike, rgb: bool = False) -> Tuple[Optional[str], Optional[float]]: ...
    def analyze_video(
        self,
        path: _Path,
        out: _Path,
        *,
        every: Optional[int] = None,
        fps: Optional[float] = None,
        start: float = 0.0,
        end: Optional[float] = None,
        detect_every: int = 1,
        smooth: int = 1,
        annotate: bool = False,
    ) -> Dict[str, Any]: ...

class VideoDamagedError(ValueError):
    report: Dict[str, Any]
    def __init__(self, message: str, report: Dict[str, Any]) -> None: ...

class Model:
    classes: Tuple[str, ...]
    @classmethod
    def load(cls, path: Optional[_Path] = None, tta: Optional[str] = None) -> "Model": ...
    @property
    def name(self) -> str: ...
    def predict_proba(self, faces: np.ndarray) -> np.ndarray:
        """(N, 48, 48) uint8 -> (N, 7) float32."""

def load_fer2013(path: _Path, skip_bad_rows: bool = False) -> Dict[str, Tuple[np.ndarray, np.ndarray]]: ...
def read_image(path: _Path, grey: bool = False) -> np.ndarray: ...

class History(list):
    def to_pandas(self) -> Any: ...

def train(
    model: str = "cnn3",
    data: _Path = "",
    out: _Path = "runs/notebook",
    epochs: Optional[int] = None,
    overwrite: bool = False,
    **options: Any,
) -> Tuple[History, str]: ...
def resume(out: _Path) -> Tuple[History, str]: ...
