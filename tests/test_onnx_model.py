"""dlib's ResNet on ONNX Runtime: the weight file's layout is checked record by record, and the converted network
gives dlib's own descriptors (within 1e-5 per component) and the same decisions on real faces."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from facetrail.cli import app
from facetrail.engine.dlib_format import Conv, read_resnet
from facetrail.engine.models import DlibResNetModel, OnnxResNetModel, load_model
from facetrail.engine.pipeline import FaceEngine, choose_face
from facetrail.errors import ConfigError, ModelFormatError

TOLERANCE = 1e-5
# one worker process runs this module (make test: pytest-xdist --dist loadgroup), so dlib's model is loaded once
pytestmark = pytest.mark.xdist_group("dlib-model")


@pytest.fixture(scope="module")
def dlib_model() -> DlibResNetModel:
    return DlibResNetModel()


@pytest.fixture(scope="module")
def dat_bytes() -> bytes:
    import face_recognition_models as weights

    with open(weights.face_recognition_model_location(), "rb") as file:
        return file.read()


def model_chips(engine: FaceEngine, photos) -> list[np.ndarray]:
    """The three chips the default augmentation embeds (chip, mirror, wider context) for every face in the photos."""
    assert engine.config.embedding.augmentation == "mirror+context"
    return [chip for photo in photos for face in engine.find_faces(np.asarray(Image.open(photo).convert("RGB")))
            for chip in engine.model_chips(face)]


def test_default_backend_is_onnx_and_templates_carry_the_same_model_identity(engine):
    assert engine.model.backend == "onnx"
    for attribute in ("name", "version", "dimension", "default_threshold"):
        assert getattr(OnnxResNetModel, attribute) == getattr(DlibResNetModel, attribute)
    with pytest.raises(ConfigError, match="no backend 'tensorrt'"):
        load_model(backend="tensorrt")


def test_descriptors_equal_dlibs_on_the_test_photographs(engine, dlib_model, faces):
    chips = model_chips(engine, [faces[name] for name in ("obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg", "obama_partial_face.jpg")])
    assert len(chips) >= 15
    converted, reference = engine.model.embed(chips), dlib_model.embed(chips)
    assert converted.shape == reference.shape == (len(chips), 128)
    assert np.abs(converted - reference).max() <= TOLERANCE
    # one batch or one chip at a time: the same descriptors
    assert np.abs(engine.model.embed(chips[:1]) - converted[:1]).max() <= 1e-6


def test_a_template_made_with_dlib_matches_one_made_with_onnx(engine, dlib_model, faces):
    image = np.asarray(Image.open(faces["obama.jpg"]).convert("RGB"))
    face = engine.find_faces(image)[0]
    with_onnx = engine.template(face)
    with_dlib = FaceEngine(engine.config, model=dlib_model).template(face)
    assert (with_onnx.model_name, with_onnx.model_version) == (with_dlib.model_name, with_dlib.model_version)
    assert np.linalg.norm(with_onnx.embedding - with_dlib.embedding) <= TOLERANCE


@pytest.mark.shared_faces
def test_descriptors_and_decisions_equal_dlibs_on_dev_pairs_and_orl(engine, dlib_model, shared_faces):
    from facetrail.evaluation.datasets import read_pairs

    pairs = read_pairs(shared_faces / "lfw-dev-pairs.txt", shared_faces / "lfw-dev")
    chosen = [p for p in pairs if p.same][:25] + [p for p in pairs if not p.same][:25]
    orl = sorted((shared_faces / "att_faces").glob("s*/1.pgm"))[:10]
    templates = {}
    for path in dict.fromkeys([p.first for p in chosen] + [p.second for p in chosen] + orl):
        image = np.asarray(Image.open(path).convert("RGB"))
        face = choose_face(engine.find_faces(image), "centre", image.shape)
        chips = engine.model_chips(face)
        converted, reference = engine.model.embed(chips), dlib_model.embed(chips)
        assert np.abs(converted - reference).max() <= TOLERANCE, path
        templates[path] = (converted.mean(axis=0), reference.mean(axis=0))
    threshold = DlibResNetModel.default_threshold
    for pair in chosen:
        (onnx_a, dlib_a), (onnx_b, dlib_b) = templates[pair.first], templates[pair.second]
        assert (np.linalg.norm(onnx_a - onnx_b) <= threshold) == (np.linalg.norm(dlib_a - dlib_b) <= threshold)


def test_the_weight_file_is_read_against_the_declared_architecture():
    import face_recognition_models as weights

    network = read_resnet(weights.face_recognition_model_location())
    convolutions = [p for p in network.layers if isinstance(p.layer, Conv)]
    assert len(network.layers) == 130 and len(convolutions) == 29
    assert convolutions[0].weights.shape == (32, 3, 7, 7) and convolutions[-1].weights.shape == (256, 256, 3, 3)
    assert network.layers[-1].weights.shape == (256, 128)
    assert network.input_size == 150
    assert np.allclose(network.channel_means, (122.782, 117.001, 104.298), atol=1e-3)
    assert abs(network.loss_distance_threshold - 0.6) < 1e-6


def first_conv_stride_offset(data: bytes) -> int:
    """Byte offset of the first convolution's stride (value byte), after its 4,736 parameters."""
    start = data.index(b"con_4") + len("con_4")
    header = 2 + 3 + 2 * 3  # tensor version 2, 4736 samples, then k = nr = nc = 1
    offset = start + header + 4 * 4736 + 2 * 3 + 1  # past filters 32, rows 7, columns 7: the value of stride y
    assert data[offset - 1:offset + 1] == b"\x01\x02"
    return offset


@pytest.mark.parametrize("damage, message", [
    ("truncate", "file ends early"),
    ("version", "version of layer 130"),
    ("stride", r"layer 1 \(Conv\) stride y: found 1, expected 2"),
    ("trailing", "unexpected bytes after the last layer"),
    ("other file", "loss layer"),
])
def test_a_file_laid_out_otherwise_is_refused_naming_the_record(tmp_path, dat_bytes, damage, message):
    data = bytearray(dat_bytes)
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "version":
        data[data.index(b"loss_metric_2") + len("loss_metric_2") + 12] = 0x03  # outermost add_layer: 2 → 3
    elif damage == "stride":
        data[first_conv_stride_offset(dat_bytes)] = 1
    elif damage == "trailing":
        data += b"\x00"
    else:
        import face_recognition_models as weights

        data = bytearray(open(weights.pose_predictor_five_point_model_location(), "rb").read())
    damaged = tmp_path / "damaged.dat"
    damaged.write_bytes(bytes(data))
    with pytest.raises(ModelFormatError, match=message):
        read_resnet(damaged)


def test_models_convert_writes_a_checked_onnx_file(tmp_path):
    import onnx

    target = tmp_path / "resnet.onnx"
    result = CliRunner().invoke(app, ["models", "convert", str(target), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["largest_difference_from_dlib"] <= TOLERANCE
    assert report["output_bytes"] == target.stat().st_size
    model = onnx.load(str(target))
    assert [i.name for i in model.graph.input] == ["chips"] and [o.name for o in model.graph.output] == ["descriptors"]
    # no partial file left behind; converting again over the file replaces it with the same bytes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["resnet.onnx"]
    copy = tmp_path / "first.onnx"
    shutil.copy(target, copy)
    assert CliRunner().invoke(app, ["models", "convert", str(target)]).exit_code == 0
    assert copy.read_bytes() == target.read_bytes()


@pytest.fixture(scope="module")
def int8_model():
    return OnnxResNetModel(precision="int8")


def test_int8_templates_stay_within_the_stated_bound_of_float32_ones(engine, int8_model, faces):
    from facetrail.engine.model_files import INT8_TEMPLATE_BOUND

    assert int8_model.precision == "int8"  # this machine's CPU has VNNI (int8_is_exact_here)
    names = ("obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg", "obama_partial_face.jpg")
    quantized = FaceEngine(engine.config, model=int8_model)
    templates = {}
    for name in names:
        image = np.asarray(Image.open(faces[name]).convert("RGB"))
        face = engine.find_faces(image)[0]
        exact, fast = engine.template(face), quantized.template(face)
        assert (fast.precision, exact.precision) == ("int8", "float32")
        assert (fast.model_name, fast.model_version) == (exact.model_name, exact.model_version)
        distance = np.linalg.norm(fast.embedding - exact.embedding)
        assert 0 < distance <= INT8_TEMPLATE_BOUND, name
        templates[name] = exact.embedding, fast.embedding
    threshold = DlibResNetModel.default_threshold
    for first in names:
        for second in names:
            (exact_a, fast_a), (exact_b, fast_b) = templates[first], templates[second]
            assert (np.linalg.norm(fast_a - fast_b) <= threshold) == (np.linalg.norm(exact_a - exact_b) <= threshold)
            assert (np.linalg.norm(fast_a - exact_b) <= threshold) == (np.linalg.norm(exact_a - exact_b) <= threshold)


@pytest.mark.shared_faces
def test_int8_changes_no_decision_on_dev_pairs(engine, int8_model, shared_faces):
    from facetrail.engine.model_files import INT8_TEMPLATE_BOUND
    from facetrail.evaluation.datasets import read_pairs

    pairs = read_pairs(shared_faces / "lfw-dev-pairs.txt", shared_faces / "lfw-dev")
    chosen = [p for p in pairs if p.same][:40] + [p for p in pairs if not p.same][:40]
    quantized = FaceEngine(engine.config, model=int8_model)
    templates = {}
    for path in dict.fromkeys([p.first for p in chosen] + [p.second for p in chosen]):
        image = np.asarray(Image.open(path).convert("RGB"))
        face = choose_face(engine.find_faces(image), "centre", image.shape)
        templates[path] = engine.template(face).embedding, quantized.template(face).embedding
        assert np.linalg.norm(templates[path][0] - templates[path][1]) <= INT8_TEMPLATE_BOUND, path
    threshold = DlibResNetModel.default_threshold
    for pair in chosen:
        (exact_a, fast_a), (exact_b, fast_b) = templates[pair.first], templates[pair.second]
        assert (np.linalg.norm(fast_a - fast_b) <= threshold) == (np.linalg.norm(exact_a - exact_b) <= threshold)


def test_a_built_model_is_kept_and_a_damaged_one_built_again(tmp_path, monkeypatch):
    from facetrail.engine import model_files, onnx_resnet

    monkeypatch.setenv(model_files.CACHE_ENV, str(tmp_path / "models"))
    built = model_files.resnet_model("float32")
    kept = list((tmp_path / "models").glob("dlib-resnet-float32-*.onnx"))
    assert len(kept) == 1 and kept[0].read_bytes() == built
    assert not list((tmp_path / "models").glob(".building-*"))

    def no_conversion(path):
        raise AssertionError("converted again although the built model was kept")

    monkeypatch.setattr(onnx_resnet, "convert_dat_file", no_conversion)
    assert model_files.resnet_model("float32") == built  # read back, not built
    kept[0].write_bytes(built[: len(built) // 2])  # damaged (a disk error, a copy cut short)
    monkeypatch.undo()
    monkeypatch.setenv(model_files.CACHE_ENV, str(tmp_path / "models"))
    chips = np.random.default_rng(1).integers(0, 256, (2, 150, 150, 3), dtype=np.uint8)
    model = OnnxResNetModel(threads=1)
    assert kept[0].read_bytes() == built
    assert np.abs(model.embed(list(chips)) - load_model(threads=1).embed(list(chips))).max() <= 1e-6


def test_an_unwritable_model_folder_costs_a_rebuild_not_an_error(tmp_path, monkeypatch):
    from facetrail.engine import model_files

    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the cache folder should be")
    monkeypatch.setenv(model_files.CACHE_ENV, str(blocked / "models"))
    assert model_files.resnet_model("float32") == model_files.resnet_model("float32")


def test_int8_needs_the_onnx_backend():
    from facetrail.config import EmbeddingConfig

    with pytest.raises(ConfigError, match='precision = "int8" needs embedding.backend = "onnx"'):
        EmbeddingConfig(backend="dlib", precision="int8")
    with pytest.raises(ConfigError, match="float32 only"):
        DlibResNetModel(precision="int8")


def test_the_kept_hog_detector_finds_what_dlibs_own_finds(tmp_path, monkeypatch, faces):
    import dlib

    from facetrail.engine import model_files

    monkeypatch.setenv(model_files.CACHE_ENV, str(tmp_path / "models"))
    model_files.frontal_face_detector()  # built and kept
    (kept,) = (tmp_path / "models").glob("dlib-frontal-face-hog-*.svm")
    loaded, own = model_files.frontal_face_detector(), dlib.get_frontal_face_detector()
    for name in ("obama.jpg", "biden.jpg", "obama_partial_face.jpg"):
        pixels = np.asarray(Image.open(faces[name]).convert("RGB"))
        mine, theirs = loaded.run(pixels, 1, 0.0), own.run(pixels, 1, 0.0)
        assert list(mine[0]) == list(theirs[0]) and mine[1] == theirs[1] and len(mine[0]) >= 1
    kept.write_bytes(b"not a detector")
    assert len(model_files.frontal_face_detector().run(np.asarray(Image.open(faces["obama.jpg"]).convert("RGB")), 1, 0.0)[0]) == 1
    assert kept.stat().st_size > 100_000  # built again
