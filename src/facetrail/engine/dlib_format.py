"""Reading dlib's serialization of its face-recognition ResNet, in Python.

``dlib_face_recognition_resnet_model_v1.dat`` (from the ``face_recognition_models``
package) is a network serialized by dlib's ``serialize()``: each ``add_layer``
writes its version, then its sub-network, then its own layer details, so the
file holds every layer's version outermost-first, then the input layer, then
the layers' records in forward order. Tag and skip layers write only a version.

The topology is not in the file (dlib's templates fix it at compile time), so
this module states the network as dlib's example defines it (``RESNET_LAYERS``)
and reads the file against that statement, record by record. Any difference,
a version, a layer kind, a shape, a stride or padding, raises
``ModelFormatError`` naming the record and what was expected.

Encodings (dlib/serialize.h): an integer is a control byte (low 4 bits: byte
count; 0x80: negative) and that many little-endian magnitude bytes; a float is
an integer mantissa and an integer exponent; a string is its length and bytes;
a bool is the character '0' or '1'; a tensor is a version, four dimensions and
raw little-endian float32 values; an alias tensor a version and four dimensions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facetrail.errors import ModelFormatError


# --- the network as dlib's dnn_face_recognition_ex.cpp defines it -------------------------------------------------


def default_padding(size: int, stride: int) -> int:
    """dlib's default padding for convolutions and pooling: none when strided, else half the window."""
    return 0 if stride != 1 else size // 2


@dataclass(frozen=True)
class Conv:
    filters: int
    size: int
    stride: int

    @property
    def padding(self) -> int:
        return default_padding(self.size, self.stride)


@dataclass(frozen=True)
class Affine:
    """Per-channel ``gamma * x + beta`` (batch normalisation frozen after training)."""


@dataclass(frozen=True)
class Relu:
    pass


@dataclass(frozen=True)
class MaxPool:
    size: int
    stride: int


@dataclass(frozen=True)
class AvgPool:
    size: int
    stride: int


@dataclass(frozen=True)
class GlobalAvgPool:
    pass


@dataclass(frozen=True)
class FullyConnected:
    outputs: int


@dataclass(frozen=True)
class Tag:
    """Remembers the current output under ``tag``."""

    tag: int


@dataclass(frozen=True)
class Skip:
    """Continues from the output remembered under ``tag``."""

    tag: int


@dataclass(frozen=True)
class AddPrev:
    """Adds the output remembered under ``tag``; of different shapes, the smaller is zero-padded at the end."""

    tag: int


Layer = Conv | Affine | Relu | MaxPool | AvgPool | GlobalAvgPool | FullyConnected | Tag | Skip | AddPrev


def _block(filters: int, stride: int) -> list[Layer]:
    return [Conv(filters, 3, stride), Affine(), Relu(), Conv(filters, 3, 1), Affine()]


def _residual(filters: int) -> list[Layer]:
    return [Tag(1), *_block(filters, 1), AddPrev(1), Relu()]


def _residual_down(filters: int) -> list[Layer]:
    return [Tag(1), *_block(filters, 2), Tag(2), Skip(1), AvgPool(2, 2), AddPrev(2), Relu()]


RESNET_LAYERS: tuple[Layer, ...] = (
    Conv(32, 7, 2), Affine(), Relu(), MaxPool(3, 2),
    *_residual(32), *_residual(32), *_residual(32),
    *_residual_down(64), *_residual(64), *_residual(64), *_residual(64),
    *_residual_down(128), *_residual(128), *_residual(128),
    *_residual_down(256), *_residual(256), *_residual(256),
    *_residual_down(256),
    GlobalAvgPool(), FullyConnected(128),
)
"""dlib's ``anet_type`` in forward order (input first); the metric loss on top has no weights."""

CHIP_SIZE = 150
METRIC_LOSS_DISTANCE_THRESHOLD = 0.6


# --- what is read -------------------------------------------------------------------------------------------------


@dataclass
class ParsedLayer:
    """One layer of ``RESNET_LAYERS`` with the weights the file holds for it (none for most)."""

    layer: Layer
    weights: np.ndarray | None = None
    """Conv: filters (out, in, h, w); Affine: gamma (C,); FullyConnected: (inputs, outputs)."""
    bias: np.ndarray | None = None
    """Conv: (out,); Affine: beta (C,)."""


@dataclass
class ParsedNetwork:
    """The face ResNet as read from a ``.dat`` file."""

    channel_means: tuple[float, float, float]
    """Subtracted from R, G, B before dividing by 256 (dlib's input_rgb_image_sized)."""
    input_size: int
    layers: list[ParsedLayer] = field(default_factory=list)
    loss_distance_threshold: float = 0.0


class _Reader:
    """dlib's primitive encodings over a byte buffer, with the position in every error."""

    def __init__(self, data: bytes, source: str) -> None:
        self.data, self.source, self.pos = data, source, 0

    def fail(self, what: str) -> ModelFormatError:
        return ModelFormatError(f"{self.source}: {what} (at byte {self.pos})")

    def _take(self, count: int) -> bytes:
        if count < 0 or self.pos + count > len(self.data):
            raise self.fail(f"file ends early: {count} more bytes needed")
        chunk = self.data[self.pos:self.pos + count]
        self.pos += count
        return chunk

    def integer(self) -> int:
        control = self._take(1)[0]
        size = control & 0x0F
        if size > 8 or control & 0x70:
            raise self.fail(f"bad integer control byte 0x{control:02x}")
        value = int.from_bytes(self._take(size), "little")
        return -value if control & 0x80 else value

    def real(self) -> float:
        mantissa, exponent = self.integer(), self.integer()
        return math.ldexp(mantissa, exponent)

    def text(self, what: str, limit: int = 256) -> str:
        length = self.integer()
        if not 0 <= length <= limit:
            raise self.fail(f"{what}: implausible string length {length}")
        try:
            return self._take(length).decode("ascii")
        except UnicodeDecodeError:
            raise self.fail(f"{what}: string is not ASCII") from None

    def boolean(self) -> bool:
        char = self._take(1)
        if char not in (b"0", b"1"):
            raise self.fail(f"bad bool {char!r}")
        return char == b"1"

    def dims(self, version: int, what: str) -> tuple[int, int, int, int]:
        found = self.integer()
        if found != version:
            raise self.fail(f"{what}: version {found}, expected {version}")
        shape = tuple(self.integer() for _ in range(4))
        if any(d < 0 for d in shape):
            raise self.fail(f"{what}: negative dimension in {shape}")
        return shape  # type: ignore[return-value]

    def tensor(self, what: str) -> np.ndarray:
        shape = self.dims(2, what)
        count = math.prod(shape)
        return np.frombuffer(self._take(4 * count), dtype="<f4").reshape(shape).astype(np.float32)

    def expect(self, found: object, wanted: object, what: str) -> None:
        if found != wanted:
            raise self.fail(f"{what}: found {found!r}, expected {wanted!r}")


def read_resnet(path: str | Path) -> ParsedNetwork:
    """Parse dlib's face ResNet file into weights for ``RESNET_LAYERS``; ``ModelFormatError`` if it is not that."""
    path = Path(path)
    reader = _Reader(path.read_bytes(), path.name)
    reader.expect(reader.integer(), 1, "loss layer version")
    reader.expect(reader.text("loss layer"), "loss_metric_2", "loss layer")
    reader.real()  # margin: training only
    distance_threshold = reader.real()

    expected_versions = [1 if isinstance(layer, Tag | Skip) else 2 for layer in reversed(RESNET_LAYERS)]
    expected_versions[-1] = 3  # the innermost add_layer, which also holds the input layer
    for index, wanted in enumerate(expected_versions):
        reader.expect(reader.integer(), wanted, f"version of layer {len(RESNET_LAYERS) - index} (outermost first)")

    reader.expect(reader.text("input layer"), "input_rgb_image_sized", "input layer")
    means = (reader.real(), reader.real(), reader.real())
    size = reader.integer()
    reader.expect(reader.integer(), size, "input width")
    network = ParsedNetwork(means, size, loss_distance_threshold=distance_threshold)

    first = True
    for number, layer in enumerate(RESNET_LAYERS, 1):
        if isinstance(layer, Tag | Skip):
            network.layers.append(ParsedLayer(layer))
            continue
        parsed = _read_layer_details(reader, layer, f"layer {number} ({type(layer).__name__})")
        network.layers.append(parsed)
        _skip_training_state(reader, innermost=first)
        first = False
    if reader.pos != len(reader.data):
        raise reader.fail(f"{len(reader.data) - reader.pos} unexpected bytes after the last layer")
    _check_shapes(network, reader)
    return network


def _read_layer_details(reader: _Reader, layer: Layer, what: str) -> ParsedLayer:
    if isinstance(layer, Conv):
        reader.expect(reader.text(what), "con_4", what)
        params = reader.tensor(f"{what} parameters").reshape(-1)
        for name, wanted in (("filters", layer.filters), ("rows", layer.size), ("columns", layer.size),
                             ("stride y", layer.stride), ("stride x", layer.stride),
                             ("padding y", layer.padding), ("padding x", layer.padding)):
            reader.expect(reader.integer(), wanted, f"{what} {name}")
        filter_shape = reader.dims(1, f"{what} filters")
        bias_shape = reader.dims(1, f"{what} biases")
        reader.expect(bias_shape, (1, layer.filters, 1, 1), f"{what} bias shape")
        reader.expect((filter_shape[0], filter_shape[2], filter_shape[3]), (layer.filters, layer.size, layer.size),
                      f"{what} filter shape")
        count = math.prod(filter_shape)
        reader.expect(params.size, count + layer.filters, f"{what} parameter count")
        for _ in range(4):
            reader.real()  # learning-rate and weight-decay multipliers: training only
        return ParsedLayer(layer, params[:count].reshape(filter_shape), params[count:])
    if isinstance(layer, Affine):
        reader.expect(reader.text(what), "affine_", what)
        params = reader.tensor(f"{what} parameters").reshape(-1)
        gamma_shape = reader.dims(1, f"{what} gamma")
        beta_shape = reader.dims(1, f"{what} beta")
        channels = gamma_shape[1]
        reader.expect(gamma_shape, (1, channels, 1, 1), f"{what} gamma shape (per channel)")
        reader.expect(beta_shape, gamma_shape, f"{what} beta shape")
        reader.expect(params.size, 2 * channels, f"{what} parameter count")
        reader.expect(reader.integer(), 0, f"{what} mode (0: CONV_MODE, one gamma and beta per channel)")
        return ParsedLayer(layer, params[:channels], params[channels:])
    if isinstance(layer, Relu):
        reader.expect(reader.text(what), "relu_", what)
        return ParsedLayer(layer)
    if isinstance(layer, MaxPool | AvgPool | GlobalAvgPool):
        tag = "max_pool_2" if isinstance(layer, MaxPool) else "avg_pool_2"
        reader.expect(reader.text(what), tag, what)
        size, stride = (0, 1) if isinstance(layer, GlobalAvgPool) else (layer.size, layer.stride)
        padding = default_padding(size, stride)
        for name, wanted in (("rows", size), ("columns", size), ("stride y", stride), ("stride x", stride),
                             ("padding y", padding), ("padding x", padding)):
            reader.expect(reader.integer(), wanted, f"{what} {name}")
        return ParsedLayer(layer)
    if isinstance(layer, AddPrev):
        reader.expect(reader.text(what), "add_prev_", what)
        return ParsedLayer(layer)
    if isinstance(layer, FullyConnected):
        reader.expect(reader.text(what), "fc_2", what)
        reader.expect(reader.integer(), layer.outputs, f"{what} outputs")
        inputs = reader.integer()
        params = reader.tensor(f"{what} parameters").reshape(-1)
        weight_shape = reader.dims(1, f"{what} weights")
        reader.expect(weight_shape, (inputs, layer.outputs, 1, 1), f"{what} weight shape")
        reader.dims(1, f"{what} biases")
        reader.expect(reader.integer(), 1, f"{what} bias mode (1: no bias)")
        reader.expect(params.size, inputs * layer.outputs, f"{what} parameter count")
        for _ in range(4):
            reader.real()
        return ParsedLayer(layer, params.reshape(inputs, layer.outputs))
    raise reader.fail(f"{what}: no reader for {layer!r}")


def _skip_training_state(reader: _Reader, innermost: bool) -> None:
    """The add_layer fields after each layer's details: flags and tensors used only in training."""
    for _ in range(3):
        reader.boolean()
    for name in ("x_grad", "cached_output", "grad_final" if innermost else "params_grad"):
        reader.tensor(name)
    if innermost:
        reader.integer()  # sample expansion factor


def _check_shapes(network: ParsedNetwork, reader: _Reader) -> None:
    """Each convolution's input channels and each affine layer's width follow from the layers before it."""
    channels, remembered = 3, {}
    for parsed in network.layers:
        layer = parsed.layer
        if isinstance(layer, Conv):
            reader.expect(parsed.weights.shape[1], channels, f"input channels of {layer}")
            channels = layer.filters
        elif isinstance(layer, Affine):
            reader.expect(parsed.weights.size, channels, "affine width")
        elif isinstance(layer, Tag):
            remembered[layer.tag] = channels
        elif isinstance(layer, Skip):
            channels = remembered[layer.tag]
        elif isinstance(layer, AddPrev):
            channels = max(channels, remembered[layer.tag])
        elif isinstance(layer, FullyConnected):
            reader.expect(parsed.weights.shape[0], channels, "fully connected inputs")
