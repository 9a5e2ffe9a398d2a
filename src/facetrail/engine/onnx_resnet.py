"""dlib's face ResNet as an ONNX graph, built locally from the weights in ``face_recognition_models``.

``build_onnx`` turns a ``ParsedNetwork`` (see ``dlib_format``) into an ONNX
model that computes exactly what dlib computes, ~10× faster on a CPU under
ONNX Runtime: each affine layer (frozen batch norm) is folded into the
convolution before it; a residual sum of two shapes zero-pads the smaller at
the end of each dimension, as dlib's ``add_prev`` does. The graph takes aligned
chips as uint8 ``(N, 150, 150, 3)`` RGB and returns the raw 128-d descriptors.
Nothing is downloaded: the conversion runs on the installed ``.dat`` file.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from facetrail.engine.dlib_format import (
    AddPrev, Affine, AvgPool, Conv, FullyConnected, GlobalAvgPool, MaxPool, ParsedNetwork, Relu, Skip, Tag,
    read_resnet,
)
from facetrail.errors import ModelFormatError

INPUT_NAME = "chips"
OUTPUT_NAME = "descriptors"
OPSET = 17


class _GraphBuilder:
    """Appends nodes and initialisers, tracking each tensor's static (channels, height, width)."""

    def __init__(self) -> None:
        self.nodes: list = []
        self.initialisers: list = []
        self.shapes: dict[str, tuple[int, int, int]] = {}
        self._count = 0

    def name(self, stem: str) -> str:
        self._count += 1
        return f"{stem}_{self._count}"

    def constant(self, stem: str, values: np.ndarray) -> str:
        from onnx import numpy_helper

        name = self.name(stem)
        self.initialisers.append(numpy_helper.from_array(np.ascontiguousarray(values), name))
        return name

    def node(self, op: str, inputs: list[str], shape: tuple[int, int, int] | None = None, **attributes) -> str:
        from onnx import helper

        output = self.name(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [output], name=output, **attributes))
        if shape is not None:
            self.shapes[output] = shape
        return output

    def pad_to(self, tensor: str, shape: tuple[int, int, int]) -> str:
        """Zero-pad ``tensor`` at the end of channels, rows and columns up to ``shape``."""
        own = self.shapes[tensor]
        if own == shape:
            return tensor
        extra = [0, *(want - have for want, have in zip(shape, own))]
        pads = self.constant("pads", np.array([0, 0, 0, 0, *extra], dtype=np.int64))
        return self.node("Pad", [tensor, pads], shape, mode="constant")


def build_onnx(network: ParsedNetwork):
    """The ONNX ``ModelProto`` computing the parsed network's descriptors from uint8 RGB chips."""
    from onnx import TensorProto, checker, helper

    graph = _GraphBuilder()
    size = network.input_size
    pixels = graph.node("Cast", [INPUT_NAME], to=TensorProto.FLOAT)
    means = graph.constant("channel_means", np.array(network.channel_means, dtype=np.float32))
    scale = graph.constant("scale", np.array(1 / 256, dtype=np.float32))
    centred = graph.node("Mul", [graph.node("Sub", [pixels, means]), scale])
    current = graph.node("Transpose", [centred], (3, size, size), perm=[0, 3, 1, 2])

    remembered: dict[int, str] = {}
    layers = network.layers
    for index, parsed in enumerate(layers):
        layer = parsed.layer
        channels, height, width = graph.shapes[current]
        if isinstance(layer, Conv):
            follower = layers[index + 1] if index + 1 < len(layers) else None
            if follower is None or not isinstance(follower.layer, Affine):
                raise ModelFormatError(f"convolution {index + 1} is not followed by an affine layer to fold")
            gamma, beta = follower.weights, follower.bias
            filters = (parsed.weights * gamma[:, None, None, None]).astype(np.float32)
            bias = (parsed.bias * gamma + beta).astype(np.float32)
            out = lambda n: (n + 2 * layer.padding - layer.size) // layer.stride + 1  # noqa: E731
            current = graph.node(
                "Conv", [current, graph.constant("filters", filters), graph.constant("bias", bias)],
                (layer.filters, out(height), out(width)),
                kernel_shape=[layer.size, layer.size], strides=[layer.stride, layer.stride], pads=[layer.padding] * 4,
            )
        elif isinstance(layer, Affine):
            continue  # folded into the convolution above
        elif isinstance(layer, Relu):
            current = graph.node("Relu", [current], (channels, height, width))
        elif isinstance(layer, MaxPool | AvgPool):
            out_size = lambda n: (n - layer.size) // layer.stride + 1  # noqa: E731
            current = graph.node(
                "MaxPool" if isinstance(layer, MaxPool) else "AveragePool", [current],
                (channels, out_size(height), out_size(width)),
                kernel_shape=[layer.size, layer.size], strides=[layer.stride, layer.stride],
            )
        elif isinstance(layer, Tag):
            remembered[layer.tag] = current
        elif isinstance(layer, Skip):
            current = remembered[layer.tag]
        elif isinstance(layer, AddPrev):
            other = remembered[layer.tag]
            shape = tuple(max(a, b) for a, b in zip(graph.shapes[current], graph.shapes[other]))
            current = graph.node("Add", [graph.pad_to(current, shape), graph.pad_to(other, shape)], shape)
        elif isinstance(layer, GlobalAvgPool):
            current = graph.node("Flatten", [graph.node("GlobalAveragePool", [current])], (channels, 1, 1))
        elif isinstance(layer, FullyConnected):
            current = graph.node("MatMul", [current, graph.constant("fc_weights", parsed.weights)])
    graph.nodes[-1].output[0] = OUTPUT_NAME

    model = helper.make_model(
        helper.make_graph(
            graph.nodes, "dlib_face_recognition_resnet_model_v1",
            [helper.make_tensor_value_info(INPUT_NAME, TensorProto.UINT8, ["batch", size, size, 3])],
            [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", layers[-1].layer.outputs])],
            graph.initialisers,
        ),
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="facetrail",
        doc_string="dlib_face_recognition_resnet_model_v1 converted by facetrail from face_recognition_models",
    )
    model.ir_version = 8
    checker.check_model(model)
    return model


def convert_dat_file(dat_path: str | Path) -> bytes:
    """Read dlib's ``.dat`` file and return the serialized ONNX model."""
    return build_onnx(read_resnet(dat_path)).SerializeToString()


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file (names the weights a conversion came from)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
