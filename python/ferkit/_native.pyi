"""Type stubs of ferkit's native module (crates/ferkit-py). Use the wrappers in `ferkit`."""

import os
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

__version__: str
CLASS_NAMES: List[str]

_Path = Union[str, "os.PathLike[str]"]

class Pipeline:
    model_name: str
    def __init__(
        self,
        model: Optional[_Path] = ...,
        detector: str = ...,
        min_face_size: int = ...,
        scale_factor: float = ...,
        min_neighbors: int = ...,
        cascade: Optional[_Path] = ...,
        mtcnn_dir: Optional[_Path] = ...,
        tta: Optional[str] = ...,
    ) -> None: ...
    def analyze_video(
        self,
        path: _Path,
        out: _Path,
        every: Optional[int] = ...,
        fps: Optional[float] = ...,
        start: float = ...,
        end: Optional[float] = ...,
        detect_every: int = ...,
        smooth: int = ...,
        annotate: bool = ...,
    ) -> str: ...
    def detect(self, images: Sequence[Any]) -> List[str]:
        """Per image, its faces as JSON text (box, emotion, probabilities by class)."""

class Model:
    name: str
    def __init__(self, path: Optional[_Path] = ..., tta: Optional[str] = ...) -> None: ...
    def predict_proba(self, faces: "np.ndarray") -> "np.ndarray":
        """(N, 48, 48) uint8 -> (N, 7) float32."""

def load_fer2013(path: _Path, skip_bad_rows: bool = ...) -> Dict[str, Tuple[bytes, List[int], int]]: ...
def read_image(path: _Path, grey: bool = ...) -> "np.ndarray": ...
def photo_paths(paths: List[_Path]) -> Tuple[List[str], List[str]]: ...
def train(model: str, data: _Path, out: _Path, overwrite: bool = ..., **options: Any) -> Tuple[List[Dict[str, Any]], str]: ...
def resume(out: _Path) -> Tuple[List[Dict[str, Any]], str]: ...
