"""Encryption at rest: the key ring, blobs bound to their record, no plaintext biometrics on disk, key rotation."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from facetrail.config import EnrolmentConfig
from facetrail.accountability.keys import rotate_data_key
from facetrail.crypto import KEY_FILE_ENV, KeyRing
from facetrail.datadir import DataDir
from facetrail.errors import CryptoError, IndexFileError
from facetrail.engine.pipeline import FaceEngine
from facetrail.storage import probe_store
from facetrail.gallery.enrol import enrolment_engine_config
from facetrail.gallery.gallery import Galleries
from facetrail.gallery.schema import TemplateRecord
from tests.fixtures.gallery import enrol_folder, probe_template


def photographs(folder: Path) -> list[Path]:
    """The photographs in the shared booking folder (it also holds a text file named .jpg, which is refused)."""
    return [path for path in folder.rglob("*.jpg") if path.name != "notes.jpg"]


@pytest.fixture
def county(galleries, photo_folder):
    """A gallery with the four photographs enrolled."""
    galleries.create("county", ["booking"])
    gallery = galleries.get("county")
    assert enrol_folder(gallery, photo_folder).count("enrolled") == 4
    return gallery


@pytest.fixture
def probe(datadir, galleries, faces) -> bytes:
    """A probe image stored the way searches store them."""
    data = faces["obama3.jpg"].read_bytes()
    probe_store(datadir, galleries.keyring).put(hashlib.sha256(data).hexdigest(), data)
    return data


def files_under(root: Path) -> dict[Path, bytes]:
    return {path: path.read_bytes() for path in root.rglob("*") if path.is_file()}


def stored_templates(gallery) -> dict[int, bytes]:
    with gallery.session() as session:
        return dict(session.execute(select(TemplateRecord.id, TemplateRecord.embedding).where(TemplateRecord.gallery_id == gallery.id)).all())


def ranked(gallery, embedding) -> list[tuple[int, str, float]]:
    return [(c.template_id, c.subject_id, c.distance) for c in gallery.search(embedding, k=4).candidates]


def key_header(key_id: str) -> bytes:
    return b"FTE1" + bytes.fromhex(key_id)


# --- the key ring --------------------------------------------------------------------------


def test_round_trip_binds_the_context(datadir):
    keyring = KeyRing.load(datadir)
    blob = keyring.encrypt(b"a face template", b"template:1:abc")
    assert blob.startswith(key_header(keyring.active_id)) and b"a face template" not in blob
    assert keyring.decrypt(blob, b"template:1:abc") == b"a face template"
    assert keyring.encrypt(b"a face template", b"template:1:abc") != blob  # a fresh nonce each time
    assert keyring.decrypt(keyring.encrypt(b"", b"c"), b"c") == b""
    with pytest.raises(CryptoError, match="failed authentication"):
        keyring.decrypt(blob, b"template:2:abc")  # the same bytes copied to another record


def _flip(position: int):
    return lambda blob: blob[:position] + bytes([blob[position] ^ 1]) + blob[position + 1 :]


@pytest.mark.parametrize(
    "damage, message",
    [
        pytest.param(_flip(0), "not facetrail encrypted data", id="magic"),
        pytest.param(_flip(5), "which is not in", id="key-id"),
        pytest.param(_flip(14), "failed authentication", id="nonce"),
        pytest.param(_flip(30), "failed authentication", id="ciphertext"),
        pytest.param(_flip(-1), "failed authentication", id="tag"),
        pytest.param(lambda blob: blob[:-1], "failed authentication", id="last-byte-missing"),
        pytest.param(lambda blob: blob[:30], "not facetrail encrypted data", id="truncated-to-30-bytes"),
        pytest.param(lambda blob: b"plain bytes that were never encrypted, long enough", "not facetrail", id="plaintext"),
    ],
)
def test_damaged_blob_is_refused(datadir, damage, message):
    keyring = KeyRing.load(datadir)
    blob = keyring.encrypt(b"x" * 100, b"image:1:abc")
    with pytest.raises(CryptoError, match=message):
        keyring.decrypt(damage(blob), b"image:1:abc")


def test_blob_of_another_key_file_names_the_unknown_key(datadir, tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_FILE_ENV, str(tmp_path / "elsewhere" / "keys.json"))
    other = KeyRing.create(datadir)
    monkeypatch.delenv(KEY_FILE_ENV)
    keyring = KeyRing.load(datadir)
    assert other.active_id != keyring.active_id
    with pytest.raises(CryptoError, match=f"key {other.active_id}, which is not in"):
        keyring.decrypt(other.encrypt(b"secret", b"c"), b"c")


def test_key_file_is_private_well_formed_and_required(datadir):
    path = datadir.keys_dir / "data-keys.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(datadir.keys_dir.stat().st_mode) == 0o700
    document = json.loads(path.read_text())
    assert document["format"] == "facetrail.keys.v1" and list(document["keys"]) == [document["active"]]
    key = base64.b64decode(document["keys"][document["active"]])
    assert len(key) == 32 and hashlib.sha256(key).hexdigest()[:16] == document["active"]

    before = path.read_bytes()
    assert KeyRing.create(datadir).active_id == document["active"]  # idempotent: an existing key is kept
    Galleries.initialise(datadir).close()
    assert path.read_bytes() == before

    path.unlink()
    with pytest.raises(CryptoError, match="data-keys.json is missing"):
        KeyRing.load(datadir)
    with pytest.raises(CryptoError, match="is missing"):
        Galleries.open(datadir)


@pytest.mark.parametrize(
    "text, message",
    [
        pytest.param("{", "not valid JSON", id="not-json"),
        pytest.param('{"format": "other"}', "not a facetrail.keys.v1 key file", id="format"),
        pytest.param('{"format": "facetrail.keys.v1", "active": "a", "keys": {}}', "non-empty", id="no-keys"),
        pytest.param('{"format": "facetrail.keys.v1", "active": "a", "keys": {"a": "!!"}}', "not base64", id="base64"),
        pytest.param('{"format": "facetrail.keys.v1", "active": "a", "keys": {"a": "AAAA"}}', "has 3 bytes", id="short"),
    ],
)
def test_malformed_key_file_is_refused(datadir, text, message):
    (datadir.keys_dir / "data-keys.json").write_text(text)
    with pytest.raises(CryptoError, match=message):
        KeyRing.load(datadir)


def test_key_with_wrong_id_or_missing_active_key_is_refused(datadir):
    path = datadir.keys_dir / "data-keys.json"
    document = json.loads(path.read_text())
    (key,) = document["keys"].values()
    path.write_text(json.dumps({**document, "keys": {"0123456789abcdef": key}, "active": "0123456789abcdef"}))
    with pytest.raises(CryptoError, match="does not match its id"):
        KeyRing.load(datadir)
    path.write_text(json.dumps({**document, "active": "0123456789abcdef"}))
    with pytest.raises(CryptoError, match="active key '0123456789abcdef' is not among its keys"):
        KeyRing.load(datadir)


def test_key_file_can_live_outside_the_data_directory(tmp_path, monkeypatch):
    mount = tmp_path / "key-mount" / "facetrail.json"
    monkeypatch.setenv(KEY_FILE_ENV, str(mount))
    datadir = DataDir(tmp_path / "data")
    Galleries.initialise(datadir).close()
    assert mount.exists() and stat.S_IMODE(mount.stat().st_mode) == 0o600
    assert not (datadir.keys_dir / "data-keys.json").exists()
    assert Galleries.open(datadir).keyring.path == mount


def test_init_refuses_a_new_key_for_existing_encrypted_photographs(county, datadir):
    (datadir.keys_dir / "data-keys.json").unlink()
    with pytest.raises(CryptoError, match="restore the key file"):
        Galleries.initialise(datadir)
    assert not (datadir.keys_dir / "data-keys.json").exists()


# --- nothing biometric in plaintext on disk ------------------------------------------------


def test_no_plaintext_template_or_photograph_anywhere(county, probe, photo_folder, datadir, engine):
    with county.session() as session:
        records = session.scalars(select(TemplateRecord).where(TemplateRecord.gallery_id == county.id)).all()
        plaintexts = [county.template_vector(record).tobytes() for record in records]
    assert len(plaintexts) == 4 and all(len(t) == 128 * 4 for t in plaintexts)
    # the decrypted templates are the engine's templates of the photographs (as enrolment detects faces)
    enrolling = FaceEngine(enrolment_engine_config(engine.config, EnrolmentConfig()))  # int8, as enrolment computes
    front = probe_template(enrolling, photo_folder / "B-1001" / "front.jpg")
    assert min(np.abs(np.frombuffer(t, np.float32) - front).max() for t in plaintexts) < 1e-5

    images = [path.read_bytes() for path in photographs(photo_folder)] + [probe]
    secrets = [t[i : i + 64] for t in plaintexts for i in range(0, len(t), 64)]
    secrets += [data[len(data) // 2 : len(data) // 2 + 64] for data in images]

    files = files_under(datadir.root)
    assert any(p.name.startswith("seg-") for p in files) and any(p.is_relative_to(datadir.probes_dir) for p in files)
    assert len([p for p in files if p.is_relative_to(datadir.images_dir)]) == 4
    for path, content in files.items():
        for secret in secrets:
            assert secret not in content, f"plaintext biometric data in {path}"
    for blob in stored_templates(county).values():  # also when the database is not a file in the data directory
        assert not any(secret in blob for secret in secrets)

    # and everything reads back
    assert {county.blobs.get(key) for key in county.blobs.keys()} == {p.read_bytes() for p in photographs(photo_folder)}


def test_encrypted_photograph_moved_to_another_record_does_not_decrypt(county):
    first, second = sorted(county.blobs.keys())[:2]
    county.blobs.path(second).write_bytes(county.blobs.path(first).read_bytes())
    with pytest.raises(CryptoError, match=f"{second}.*failed authentication"):
        county.blobs.get(second)


def test_undecryptable_index_file_is_reported_and_rebuilt_when_removed(county, datadir, engine, faces):
    embedding = probe_template(engine, faces["obama3.jpg"])
    expected = ranked(county, embedding)
    index_file = county.index().segment_paths()[-1]
    content = index_file.read_bytes()
    index_file.write_bytes(content[:-1] + bytes([content[-1] ^ 1]))  # the last template's encrypted slot
    with pytest.raises(IndexFileError, match=f"{index_file.name}.*failed authentication"):
        Galleries.open(datadir).get("county").search(embedding, k=4)
    shutil.rmtree(index_file.parent)
    assert ranked(Galleries.open(datadir).get("county"), embedding) == expected


# --- key rotation ----------------------------------------------------------------------------


def assert_only_key_in_use(datadir, gallery, key_id: str, retired: list[str]) -> None:
    for blob in stored_templates(gallery).values():
        assert KeyRing.key_id_of(blob) == key_id
    encrypted = [p for p in files_under(datadir.root) if p.parent.parent in (datadir.images_dir / str(gallery.id), datadir.probes_dir) or p.name == "MANIFEST"]
    assert len(encrypted) == 4 + 1 + 1  # photographs, the probe, the index manifest (its segments: no retired key below)
    assert any(key_header(key_id) in p.read_bytes() for p in (datadir.index_dir / f"gallery-{gallery.id}").glob("seg-*"))
    for path in encrypted:
        assert KeyRing.key_id_of(path.read_bytes()) == key_id, path
    for path, content in files_under(datadir.root).items():
        for old in retired:
            assert key_header(old) not in content, f"{path} still holds data under retired key {old}"


def test_rotation_reencrypts_everything_and_retires_the_old_key(county, galleries, probe, photo_folder, datadir, engine, faces):
    embedding = probe_template(engine, faces["obama3.jpg"])
    before = ranked(county, embedding)
    old_key = galleries.keyring.active_id
    old_material = json.loads((datadir.keys_dir / "data-keys.json").read_text())["keys"][old_key]
    old_blob = galleries.keyring.encrypt(b"kept from before", b"c")

    report = rotate_data_key(galleries)

    assert (report.templates, report.image_files, report.index_files, report.probe_files, report.retired_keys) == (4, 4, 1, 1, 1)
    new_key = galleries.keyring.active_id
    assert new_key != old_key and galleries.keyring.key_ids() == [new_key]
    assert old_material not in (datadir.keys_dir / "data-keys.json").read_text()
    assert_only_key_in_use(datadir, county, new_key, [old_key])
    with pytest.raises(CryptoError, match=f"key {old_key}, which is not in"):
        galleries.keyring.decrypt(old_blob, b"c")

    reopened = Galleries.open(datadir)
    assert ranked(reopened.get("county"), embedding) == before
    gallery = reopened.get("county")
    assert {gallery.blobs.get(key) for key in gallery.blobs.keys()} == {p.read_bytes() for p in photographs(photo_folder)}
    assert probe_store(datadir, reopened.keyring).get(hashlib.sha256(probe).hexdigest()) == probe
    reopened.close()


def test_other_processes_pick_up_a_rotated_key_file(county, galleries, datadir):
    other = Galleries.open(datadir)  # opened before the rotation, as a running server would be
    rotate_data_key(galleries)
    gallery = other.get("county")
    key = sorted(gallery.blobs.keys())[0]
    assert gallery.blobs.get(key)  # decrypts with the new key, which it had not read
    gallery.blobs.put("f" * 64, b"written after the rotation")
    assert KeyRing.key_id_of(gallery.blobs.path("f" * 64).read_bytes()) == galleries.keyring.active_id
    other.close()


def test_interrupted_rotation_loses_nothing_and_a_rerun_completes(county, galleries, probe, photo_folder, datadir, engine, faces, monkeypatch):
    embedding = probe_template(engine, faces["obama3.jpg"])
    before = ranked(county, embedding)
    first_key = galleries.keyring.active_id
    real_reencrypt = KeyRing.reencrypt
    calls = []

    def failing(self, blob, context):
        calls.append(context)
        if len(calls) == 6:  # after the four templates and one photograph
            raise OSError(5, "Input/output error")
        return real_reencrypt(self, blob, context)

    with monkeypatch.context() as patch:
        patch.setattr(KeyRing, "reencrypt", failing)
        with pytest.raises(OSError):
            rotate_data_key(galleries)

    second_key = galleries.keyring.active_id
    assert galleries.keyring.key_ids() == sorted([first_key, second_key])  # nothing retired
    photo_keys = [KeyRing.key_id_of(county.blobs.path(key).read_bytes()) for key in county.blobs.keys()]
    assert sorted(photo_keys) == sorted([first_key] * 3 + [second_key])  # really interrupted halfway
    reopened = Galleries.open(datadir)
    assert ranked(reopened.get("county"), embedding) == before
    gallery = reopened.get("county")
    assert {gallery.blobs.get(key) for key in gallery.blobs.keys()} == {p.read_bytes() for p in photographs(photo_folder)}
    reopened.close()

    report = rotate_data_key(galleries)

    assert (report.templates, report.image_files, report.probe_files, report.retired_keys) == (4, 4, 1, 2)
    third_key = galleries.keyring.active_id
    assert galleries.keyring.key_ids() == [third_key] and third_key not in (first_key, second_key)
    assert_only_key_in_use(datadir, county, third_key, [first_key, second_key])
    reopened = Galleries.open(datadir)
    assert ranked(reopened.get("county"), embedding) == before
    assert probe_store(datadir, reopened.keyring).get(hashlib.sha256(probe).hexdigest()) == probe
    reopened.close()


def test_active_key_cannot_be_retired(datadir):
    keyring = KeyRing.load(datadir)
    with pytest.raises(CryptoError, match="is the active key"):
        keyring.retire(keyring.active_id)
    old = keyring.active_id
    blob = keyring.encrypt(b"data", b"c")
    new = keyring.add_key()
    assert keyring.decrypt(blob, b"c") == b"data" and keyring.key_ids() == sorted([old, new])
    assert KeyRing.key_id_of(keyring.encrypt(b"data", b"c")) == new
    keyring.retire(old)
    assert KeyRing.load(datadir).key_ids() == [new]
    with pytest.raises(CryptoError, match="no key"):
        keyring.retire(old)
    assert not any(p.name.startswith(".tmp-") for p in datadir.keys_dir.iterdir())
    assert oct(os.stat(datadir.keys_dir / "data-keys.json").st_mode & 0o777) == "0o600"
