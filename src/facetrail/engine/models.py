"""Face recognition models behind one small interface.

A model turns a face box into five landmarks, the landmarks into an aligned
chip, and chips into fixed-length embeddings compared by Euclidean distance.
Callers use only ``FaceModel``; adding a model means writing one class and
registering it in ``MODELS``, under each backend that can run it (dlib's ResNet
runs on ONNX Runtime by default, or on dlib itself). Every template stores the model's ``name`` and
``version`` so templates from different models are never compared.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np

from facetrail.engine.geometry import Box
from facetrail.errors import ConfigError


class FaceModel(Protocol):
    """What the engine needs of a recognition model."""

    name: str
    version: str
    backend: str
    """What runs the network; templates from every backend of one model are interchangeable."""
    precision: str
    """The network's arithmetic ("float32", or "int8" where quantized; interchangeable within a stated bound)."""
    dimension: int
    default_threshold: float
    """Distance at or below which the model's authors consider two faces the same person."""

    def landmarks(self, pixels: np.ndarray, box: Box) -> np.ndarray:
        """Five landmarks ``(5, 2)`` in image pixels: two corners of each eye and the base of the nose."""
        ...

    def align(self, pixels: np.ndarray, landmarks: np.ndarray, padding: float | None = None) -> np.ndarray:
        """The aligned face chip (uint8 RGB) the model embeds; ``padding`` widens or narrows the margin around
        the face (a fraction of the face size; None is the model's own)."""
        ...

    def embed(self, chips: Sequence[np.ndarray]) -> np.ndarray:
        """Embeddings ``(len(chips), dimension)`` float32 for aligned chips, computed as one batch."""
        ...


class DlibAlignedResNet:
    """dlib's ResNet-34 face descriptor (128-d) with its 5-point shape predictor: landmarks and alignment.

    Weights come from the ``face_recognition_models`` package (0.3.0); nothing is downloaded.
    Published accuracy: 99.38% on LFW (with jittering); customary threshold 0.6. Subclasses run the
    network on one backend or another; every backend computes the same descriptors, so templates carry the
    same name and version whichever backend made them.
    """

    name = "dlib-resnet-v1"
    version = "dlib_face_recognition_resnet_model_v1+shape_predictor_5_face_landmarks (face_recognition_models 0.3.0)"
    dimension = 128
    default_threshold = 0.6
    chip_size = 150
    chip_padding = 0.25
    backend = ""
    precision = "float32"

    def __init__(self) -> None:
        import dlib
        import face_recognition_models as weights

        self._dlib = dlib
        self._shape_predictor = dlib.shape_predictor(weights.pose_predictor_five_point_model_location())

    def landmarks(self, pixels: np.ndarray, box: Box) -> np.ndarray:
        shape = self._shape_predictor(pixels, _dlib_rect(self._dlib, box))
        return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)

    def align(self, pixels: np.ndarray, landmarks: np.ndarray, padding: float | None = None) -> np.ndarray:
        dlib = self._dlib
        xs, ys = landmarks[:, 0], landmarks[:, 1]
        rect = dlib.rectangle(int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max()))
        shape = dlib.full_object_detection(rect, [dlib.point(int(round(x)), int(round(y))) for x, y in landmarks])
        margin = self.chip_padding if padding is None else padding
        return np.asarray(dlib.get_face_chip(pixels, shape, self.chip_size, margin))


class DlibResNetModel(DlibAlignedResNet):
    """The ResNet run by dlib itself (its CPU path has no BLAS in the dlib-bin wheel: ~10× slower than ONNX).

    ``threads`` is accepted for a common constructor and has no effect: dlib's CPU path uses one thread; dlib
    computes in float32 only.
    """

    backend = "dlib"

    def __init__(self, threads: int = 0, precision: str = "float32") -> None:
        if precision != "float32":
            raise ConfigError(f"the dlib backend computes in float32 only, not {precision}")
        super().__init__()
        import face_recognition_models as weights

        self._net = self._dlib.face_recognition_model_v1(weights.face_recognition_model_location())

    def embed(self, chips: Sequence[np.ndarray]) -> np.ndarray:
        contiguous = [np.ascontiguousarray(chip) for chip in chips]
        vectors = self._net.compute_face_descriptor(contiguous)
        return np.array([np.asarray(v) for v in vectors], dtype=np.float32).reshape(len(chips), self.dimension)


class OnnxResNetModel(DlibAlignedResNet):
    """The same ResNet converted to ONNX from the installed ``.dat`` file and run by ONNX Runtime, in float32 (dlib's
    own descriptors) or int8 (quantized; see ``engine.model_files``); built once and kept in the model cache.

    ``threads`` sets ONNX Runtime's intra-op threads (0: one per core); a pool of worker processes gives each
    its share of the cores. All chips given to ``embed`` run as one batch. int8 is computed in float32 instead on
    an x86 CPU without VNNI (``precision`` says which ran).
    """

    backend = "onnx"

    def __init__(self, threads: int = 0, precision: str = "float32") -> None:
        super().__init__()
        import onnxruntime

        from facetrail.engine import model_files

        if precision not in ("float32", "int8"):
            raise ConfigError(f"unknown precision {precision!r} (float32 or int8)")
        if precision == "int8" and not model_files.int8_is_exact_here():
            precision = "float32"
        self.precision = precision
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3

        def session():
            return onnxruntime.InferenceSession(model_files.resnet_model(precision), options,
                                                providers=["CPUExecutionProvider"])

        try:
            self._session = session()
        except Exception:  # noqa: BLE001 - a damaged cached file: build it again, once
            model_files.forget(precision)
            self._session = session()

    def embed(self, chips: Sequence[np.ndarray]) -> np.ndarray:
        if not chips:
            return np.zeros((0, self.dimension), dtype=np.float32)
        batch = np.stack([np.asarray(chip, dtype=np.uint8) for chip in chips])
        return self._session.run(None, {"chips": batch})[0].astype(np.float32, copy=False)


def _dlib_rect(dlib, box: Box):
    return dlib.rectangle(int(round(box.left)), int(round(box.top)), int(round(box.right)), int(round(box.bottom)))


MODELS: dict[str, dict[str, Callable[[int, str], FaceModel]]] = {
    DlibAlignedResNet.name: {OnnxResNetModel.backend: OnnxResNetModel, DlibResNetModel.backend: DlibResNetModel},
}
"""Model name → backend → constructor taking the thread count and precision. Register new models and backends here."""


def load_model(name: str = DlibAlignedResNet.name, backend: str = OnnxResNetModel.backend, threads: int = 0,
               precision: str = "float32") -> FaceModel:
    """Construct the named model on the named backend in ``precision`` (loads its weights); ``threads`` 0 means one
    per core."""
    try:
        backends = MODELS[name]
    except KeyError:
        raise ConfigError(f"unknown face model {name!r} (available: {', '.join(MODELS)})") from None
    try:
        factory = backends[backend]
    except KeyError:
        raise ConfigError(f"face model {name!r} has no backend {backend!r} (available: {', '.join(backends)})") from None
    return factory(threads, precision)
