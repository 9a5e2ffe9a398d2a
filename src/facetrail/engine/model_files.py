"""The ResNet's ONNX model in each precision and dlib's HOG detector, built once and kept in a cache folder.

Building costs seconds (converting dlib's ``.dat`` file ~1 s; quantizing to int8 ~10 s; dlib parsing its built-in
HOG detector ~1.3 s, against 1 ms to load the detector dlib saved), so the result is kept in
``$FACETRAIL_MODEL_CACHE`` (default ``$XDG_CACHE_HOME/facetrail/models``, else ``~/.cache/facetrail/models``) under a
name derived from everything that decides it: the weights file's SHA-256, the code that converts and quantizes, the
int8 calibration ranges and ONNX Runtime's version (for the HOG detector, dlib's version). Every process (each enrolment worker, each CLI run) then loads the
file in milliseconds; a change to any input gives a new name, so a stale model is never loaded. Files are written
whole (a temporary file renamed), so a reader never sees half of one; where the folder cannot be written the model is
built in memory each time instead.

The int8 model is quantized statically: weights per output channel as int8, activations per tensor as uint8 over
ranges measured once on aligned chips of development photographs (``INT8_RANGES``, written by
``scripts/calibrate_int8.py``) and shipped with the code, so no photograph is needed at run time.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np

from facetrail.engine import dlib_format, onnx_resnet

Precision = Literal["float32", "int8"]

INT8_RANGES = Path(__file__).with_name("resnet_int8_ranges.json")
"""Activation ranges of the float32 model over development chips (ONNX Runtime's calibration-cache format)."""
QUANTIZED_OPS = ["Conv", "MaxPool", "AveragePool", "GlobalAveragePool", "Relu"]
"""Quantized operators: the residual sums and the final fully connected layer stay float32 (a fifth less error)."""
INT8_TEMPLATE_BOUND = 0.05
"""Largest distance between a face's int8 template and its float32 one that the tests accept: measured at most 0.032
over 100 development faces (median 0.021; ``benchmarks/bench_model.py``), against a threshold of 0.6 (docs/model.md)."""
CACHE_ENV = "FACETRAIL_MODEL_CACHE"

logger = logging.getLogger("facetrail.engine")


def resnet_model(precision: Precision) -> bytes:
    """The serialized ONNX ResNet in ``precision``, from the cache folder or built (and kept there)."""
    import face_recognition_models as weights

    weights_file = Path(weights.face_recognition_model_location())
    path = _resnet_path(weights_file, precision)
    try:
        return path.read_bytes()
    except OSError:
        pass
    model = onnx_resnet.convert_dat_file(weights_file)
    if precision == "int8":
        model = quantize_int8(model)
    _keep(path, lambda partial: partial.write_bytes(model))
    for stale in path.parent.glob(f"dlib-resnet-{precision}-*.onnx"):  # built from earlier code or weights
        if stale != path:
            stale.unlink(missing_ok=True)
    return model


def frontal_face_detector():
    """dlib's HOG frontal face detector, loaded from the cache folder (built and kept there on first use)."""
    import dlib

    path = cache_folder() / f"dlib-frontal-face-hog-{dlib.__version__}.svm"
    try:
        return dlib.fhog_object_detector(str(path))
    except RuntimeError:  # absent, or damaged: dlib's own parse, kept for the next process
        path.unlink(missing_ok=True)
    detector = dlib.get_frontal_face_detector()
    _keep(path, lambda partial: detector.save(str(partial)))
    return detector


def forget(precision: Precision) -> None:
    """Remove the cached model of ``precision`` (a file ONNX Runtime refused to load is built again)."""
    import face_recognition_models as weights

    _resnet_path(Path(weights.face_recognition_model_location()), precision).unlink(missing_ok=True)


def cache_folder() -> Path:
    """Where built models are kept."""
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "facetrail" / "models"


def quantize_int8(float_model: bytes, ranges: Path = INT8_RANGES) -> bytes:
    """The int8 model of a float32 one, over the calibrated activation ``ranges``."""
    with tempfile.TemporaryDirectory(prefix="facetrail-int8-") as scratch:
        return _quantize(float_model, Path(scratch), None, ranges)


def calibrate_int8(float_model: bytes, chips: np.ndarray, output: Path, batch: int = 32) -> None:
    """Measure the float32 model's activation ranges over aligned ``chips`` (N, 150, 150, 3) uint8 into ``output``."""
    from onnxruntime.quantization import CalibrationDataReader

    class Chips(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = iter(chips[start:start + batch] for start in range(0, len(chips), batch))

        def get_next(self) -> dict | None:
            found = next(self._batches, None)
            return None if found is None else {onnx_resnet.INPUT_NAME: found}

    with tempfile.TemporaryDirectory(prefix="facetrail-calibrate-") as scratch:
        ranges = Path(scratch) / "ranges.json"  # absent: ONNX Runtime measures the ranges and writes them there
        _quantize(float_model, Path(scratch), Chips(), ranges)
        output.write_bytes(ranges.read_bytes())


def _quantize(float_model: bytes, scratch: Path, chips, ranges: Path) -> bytes:
    """Quantize ``float_model`` in ``scratch`` with facetrail's settings over the activation ``ranges`` file (measured
    on ``chips`` first when it does not exist); the int8 model's bytes."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    source, target = scratch / "float32.onnx", scratch / "int8.onnx"
    source.write_bytes(float_model)
    quantize_static(
        source, target, chips, quant_format=QuantFormat.QOperator, op_types_to_quantize=QUANTIZED_OPS,
        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax, calibration_cache_path=ranges,
    )
    return target.read_bytes()


def int8_is_exact_here() -> bool:
    """Whether this CPU computes int8 dot products without saturating: any non-x86 CPU, or an x86 one with VNNI (ONNX
    Runtime's uint8 × int8 path on x86 without VNNI adds pairs of products in 16 bits, which can saturate)."""
    if platform.machine().lower() not in ("x86_64", "amd64", "i686", "x86"):
        return True
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_vnni" in flags or "avx_vnni" in flags


def _resnet_path(weights_file: Path, precision: Precision) -> Path:
    """Where the model built from ``weights_file`` in ``precision`` by this code is kept."""
    return cache_folder() / f"dlib-resnet-{precision}-{_inputs_digest(weights_file, precision)[:20]}.onnx"


def _inputs_digest(weights_file: Path, precision: Precision) -> str:
    """SHA-256 over what decides the model: the weights, the converting code, the calibration and the runtime."""
    import onnxruntime

    digest = hashlib.sha256()
    sources = [weights_file, Path(onnx_resnet.__file__), Path(dlib_format.__file__)]
    if precision == "int8":
        sources += [Path(__file__), INT8_RANGES]
    for source in sources:
        digest.update(hashlib.sha256(source.read_bytes()).digest())
    digest.update(f"{precision}|{onnxruntime.__version__}".encode())
    return digest.hexdigest()


def _keep(path: Path, write: Callable[[Path], object]) -> None:
    """Have ``write`` fill a temporary file beside ``path``, then rename it to ``path``, so the file appears whole; a
    folder that cannot be written only costs the next process a rebuild."""
    partial = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        handle, partial = tempfile.mkstemp(dir=path.parent, prefix=".building-", suffix=path.suffix)
        os.close(handle)
        write(Path(partial))
        os.replace(partial, path)
    except (OSError, RuntimeError) as exc:
        if partial is not None:
            Path(partial).unlink(missing_ok=True)
        logger.warning("a built face model could not be kept in %s (%s); it is built again by each process",
                       path.parent, exc)
