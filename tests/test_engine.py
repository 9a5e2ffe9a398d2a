"""The face engine on real photographs: detection, hand-drawn boxes, quality, templates, face choice."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from PIL import Image

from facetrail.config import DetectionConfig, EngineConfig, EnrolmentConfig
from facetrail.engine.detect import FaceDetector
from facetrail.engine.geometry import Box
from facetrail.engine.pipeline import FaceEngine, choose_face, gallery_face, probe_face
from facetrail.errors import (
    FacetrailError,
    MultipleFacesError,
    NoFaceError,
    NoSuchFaceError,
    PoorQualityError,
    SeveralFacesError,
)


def pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def one_template(engine: FaceEngine, path) -> np.ndarray:
    faces = engine.find_faces(pixels(path))
    assert len(faces) == 1
    return engine.template(faces[0]).embedding


def side_by_side(left: np.ndarray, right: np.ndarray, right_scale: float = 1.0) -> np.ndarray:
    """Two photographs pasted on one grey canvas (the second optionally shrunk)."""
    a, b = Image.fromarray(left), Image.fromarray(right)
    if right_scale != 1.0:
        b = b.resize((int(b.width * right_scale), int(b.height * right_scale)))
    canvas = Image.new("RGB", (a.width + b.width, max(a.height, b.height)), (128, 128, 128))
    canvas.paste(a, (0, 0))
    canvas.paste(b, (a.width, 0))
    return np.asarray(canvas)


def test_same_person_is_closer_than_different_people(engine, faces):
    obama, obama2, obama3, biden = (one_template(engine, faces[n]) for n in ("obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg"))
    same = [np.linalg.norm(obama - obama2), np.linalg.norm(obama - obama3), np.linalg.norm(obama2 - obama3)]
    different = [np.linalg.norm(biden - x) for x in (obama, obama2, obama3)]
    assert max(same) < engine.model.default_threshold < min(different)


def with_augmentation(engine: FaceEngine, augmentation: str) -> FaceEngine:
    config = dataclasses.replace(EngineConfig(), embedding=dataclasses.replace(EngineConfig().embedding, augmentation=augmentation))
    return FaceEngine(config, model=engine.model)


def test_template_records_model_and_augmentation(engine, faces):
    image = pixels(faces["obama.jpg"])
    templates = {}
    for augmentation, passes in (("none", 1), ("mirror", 2), ("mirror+context", 3)):
        configured = with_augmentation(engine, augmentation)
        template = configured.template(configured.find_faces(image)[0])
        assert template.embedding.shape == (128,) and template.embedding.dtype == np.float32
        assert template.model_name == "dlib-resnet-v1" and "resnet" in template.model_version
        assert (template.augmentation, template.passes) == (augmentation, passes)
        templates[augmentation] = template.embedding
    # augmentation moves the template only a little: same face, same identity, but not the same vector
    for augmented in ("mirror", "mirror+context"):
        assert 0 < np.linalg.norm(templates[augmented] - templates["none"]) < 0.2
    assert engine.config.embedding.augmentation == "mirror+context"  # the default is the most accurate


def test_context_augmentation_needs_the_wider_chip(engine, faces):
    face = with_augmentation(engine, "none").find_faces(pixels(faces["obama.jpg"]))[0]
    assert face.context_chip is None
    with pytest.raises(ValueError, match="wider chip"):
        engine.template(face)


def test_detection_finds_the_face_with_box_and_score(engine, faces):
    found = engine.find_faces(pixels(faces["obama.jpg"]))
    assert len(found) == 1
    face = found[0]
    assert face.detection.detector == "hog" and face.detection.score > 0
    left, top = face.detection.box.left, face.detection.box.top
    # the eyes and nose lie inside the detected box
    assert ((face.landmarks[:, 0] > left) & (face.landmarks[:, 0] < face.detection.box.right)).all()
    assert ((face.landmarks[:, 1] > top) & (face.landmarks[:, 1] < face.detection.box.bottom)).all()
    assert face.chip.shape == (150, 150, 3)


def test_two_people_in_one_image_are_both_found_largest_first(engine, faces):
    image = side_by_side(pixels(faces["obama.jpg"]), pixels(faces["biden.jpg"]), right_scale=0.5)
    found = engine.find_faces(image)
    assert len(found) == 2
    assert found[0].detection.box.area > found[1].detection.box.area
    assert found[0].detection.box.centre[0] < pixels(faces["obama.jpg"]).shape[1]  # Obama, on the left, is larger


def test_small_face_in_a_large_frame_is_found_by_upsampling(engine, faces):
    face_photo = Image.open(faces["obama.jpg"]).convert("RGB")
    small = face_photo.resize((face_photo.width // 5, face_photo.height // 5))  # face about 54 px wide
    canvas = Image.new("RGB", (900, 700), (120, 120, 120))
    canvas.paste(small, (400, 300))
    found = engine.find_faces(np.asarray(canvas))
    assert len(found) == 1
    assert 40 <= found[0].detection.box.width <= 70


def test_cnn_fallback_runs_only_when_hog_finds_nothing(engine, faces):
    blank = np.full((300, 300, 3), 127, dtype=np.uint8)
    assert engine.find_faces(blank) == []
    without_fallback = FaceEngine(dataclasses.replace(EngineConfig(), detection=DetectionConfig(fallback="none")), model=engine.model)
    photo = Image.open(faces["obama.jpg"]).convert("RGB")
    photo = photo.resize((240, 300))
    # turned 60 degrees: beyond the HOG detector's filters, within the CNN detector's reach
    rotated = np.asarray(photo.rotate(60, expand=True, fillcolor=(128, 128, 128)))
    assert without_fallback.find_faces(rotated) == []
    found = engine.find_faces(rotated)
    assert [f.detection.detector for f in found] == ["cnn"]
    assert any("tilted" in r for r in found[0].quality.reasons)
    # alignment from the landmarks undoes the roll: the template still matches the upright photograph
    upright = engine.template(engine.find_faces(np.asarray(photo))[0]).embedding
    assert np.linalg.norm(engine.template(found[0]).embedding - upright) < engine.model.default_threshold


def test_hand_drawn_box_is_refined_by_the_detector_or_kept(engine, faces):
    image = pixels(faces["obama.jpg"])
    detected = engine.find_faces(image)[0].detection.box
    rough = Box(detected.left - 20, detected.top + 15, detected.width + 30, detected.height)
    refined = engine.find_faces(image, face_box=rough)
    assert len(refined) == 1 and refined[0].detection.detector == "hog"
    assert refined[0].detection.box.iou(detected) > 0.9
    # a box around a region with no face is kept as drawn, and flagged as manual
    nothing = Box(0, 0, 120, 120)
    kept = engine.find_faces(image, face_box=nothing)[0]
    assert kept.detection.detector == "manual" and kept.detection.box == nothing and kept.detection.score is None


@pytest.mark.parametrize("text", ["1,2,3", "a,b,c,d", "10,10,0,5", "-1,0,5,5"])
def test_bad_face_box_text_is_refused(text):
    with pytest.raises(FacetrailError, match="face box"):
        Box.parse(text)


def test_quality_verdicts_and_reasons(engine, faces):
    photo = Image.open(faces["obama.jpg"]).convert("RGB")
    good = engine.find_faces(np.asarray(photo))[0].quality
    assert good.acceptable and good.reasons == ()
    assert good.inter_eye_px > 50 and abs(good.roll_deg) < 10 and abs(good.yaw_deg) < 20
    dark = engine.find_faces((np.asarray(photo) * 0.15).astype(np.uint8))[0].quality
    assert not dark.acceptable and any("too dark" in r for r in dark.reasons)
    tilted = engine.find_faces(np.asarray(photo.rotate(40, expand=True, fillcolor=(128, 128, 128))))[0].quality
    assert any("tilted" in r for r in tilted.reasons) and abs(tilted.roll_deg) > 30


def test_quality_thresholds_come_from_configuration(engine, faces):
    strict = dataclasses.replace(EngineConfig().quality, min_inter_eye_px=1000.0)
    engine_strict = FaceEngine(dataclasses.replace(EngineConfig(), quality=strict), model=engine.model)
    quality = engine_strict.find_faces(pixels(faces["obama.jpg"]))[0].quality
    assert not quality.acceptable and quality.reasons[0].startswith("eyes")


def test_gallery_face_rules(engine, faces):
    obama = pixels(faces["obama.jpg"])
    with pytest.raises(NoFaceError):
        gallery_face([], EnrolmentConfig())
    two = engine.find_faces(side_by_side(obama, pixels(faces["biden.jpg"]), right_scale=0.3))
    with pytest.raises(MultipleFacesError, match="2 faces"):
        gallery_face(two, EnrolmentConfig())
    chosen = gallery_face(two, EnrolmentConfig(dominant_face_ratio=3.0))
    assert chosen is two[0]
    dark = engine.find_faces((obama * 0.15).astype(np.uint8))
    with pytest.raises(PoorQualityError, match="too dark"):
        gallery_face(dark, EnrolmentConfig())
    assert gallery_face(dark, EnrolmentConfig(require_acceptable_quality=False)) is dark[0]


def test_probe_face_is_the_only_one_or_chosen_by_number_and_its_errors_name_no_interface(engine, faces):
    two = engine.find_faces(side_by_side(pixels(faces["obama.jpg"]), pixels(faces["biden.jpg"]), right_scale=0.5))
    with pytest.raises(NoFaceError, match="no face found in the probe; draw the face box by hand$"):
        probe_face([])
    with pytest.raises(SeveralFacesError, match=r"^2 faces found in the probe; choose one \(face 1: \[") as several:
        probe_face(two)
    assert several.value.boxes == [face.detection.box.as_list() for face in two]
    with pytest.raises(NoSuchFaceError, match="face 3 does not exist: 2 face"):
        probe_face(two, 3)
    assert probe_face(two, 2) is two[1] and probe_face(two[:1]) is two[0]


def test_face_choice_centre_or_largest(engine, faces):
    big = pixels(faces["obama.jpg"])
    small = np.asarray(Image.open(faces["biden.jpg"]).convert("RGB").resize((485, 1102)))
    canvas = Image.new("RGB", (2400, 1200), (128, 128, 128))
    canvas.paste(Image.fromarray(big), (0, 0))
    canvas.paste(Image.fromarray(small), (1000, 0))  # Biden's face sits near the canvas centre
    image = np.asarray(canvas)
    found = engine.find_faces(image)
    assert len(found) == 2
    largest = choose_face(found, "largest", image.shape)
    centre = choose_face(found, "centre", image.shape)
    assert largest is not centre
    assert largest.detection.box.centre[0] < 910 and centre.detection.box.centre[0] > 1000


@pytest.mark.parametrize("width, min_face_px", [(120, 20), (200, 40), (300, 50), (700, 40), (1800, 40)])
def test_boxes_are_in_the_photos_pixels_whatever_scale_hog_scans_at(engine, faces, width, min_face_px):
    """The same photograph at several sizes: HOG scans copies enlarged 4× and 2× (dlib's pyramid), enlarged by a
    fraction, and reduced (bilinear), and every box comes back on the face in the photo's own pixels."""
    photo = Image.open(faces["obama.jpg"]).convert("RGB")
    reference = engine.find_faces(np.asarray(photo))[0].detection.box
    factor = width / photo.width
    resized = np.asarray(photo.resize((width, round(photo.height * factor)), Image.Resampling.LANCZOS))
    detector = FaceDetector(dataclasses.replace(DetectionConfig(), min_face_px=min_face_px, fallback="none"))
    scale = detector.working_scale(resized.shape, detector.smallest_face(resized.shape))
    assert scale == {120: 4.0, 200: 2.0}.get(width, scale)
    found = detector.detect_hog(resized)
    assert len(found) == 1
    expected = Box(reference.left * factor, reference.top * factor, reference.width * factor, reference.height * factor)
    assert found[0].box.iou(expected) > 0.6, (scale, found[0].box, expected)
