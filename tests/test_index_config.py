"""The [index] keys of config.toml for the Milvus backend: refused when unsafe or inconsistent, secrets kept out of
representations and read from the environment when named there."""

from __future__ import annotations

import pytest

from facetrail.config import IndexConfig, settings_from_dict
from facetrail.errors import ConfigError


@pytest.mark.parametrize(("keys", "message"), [
    ({"backend": "milvus"}, "milvus_uri: needed"),
    ({"milvus_uri": "http://10.1.2.3:19530"}, "unencrypted; use https"),
    ({"milvus_uri": "https://facetrail:hunter2@milvus:19530"}, "not in the URI"),
    ({"milvus_uri": "milvus"}, "milvus-lite file ending in .db"),
    ({"milvus_user": "facetrail"}, "give both or neither"),
    ({"milvus_password": "x", "milvus_password_env": "P"}, "not both"),
    ({"milvus_token": "t", "milvus_user": "u", "milvus_password": "p"}, "a token or a user and password"),
    ({"milvus_collection": "drop collection"}, "milvus_collection"),
    ({"milvus_index": "DISKANN"}, "must be one of"),
    ({"milvus_nlist": 0}, "at least 1"),
])
def test_unsafe_or_inconsistent_milvus_settings_are_refused_by_name(keys, message):
    with pytest.raises(ConfigError, match=message):
        settings_from_dict({"index": keys}, source="config.toml")


def test_secrets_stay_out_of_the_representation_and_come_from_the_named_variable(monkeypatch):
    config = IndexConfig(backend="milvus", milvus_uri="https://milvus:19530", milvus_user="facetrail",
                         milvus_password="in-the-file", milvus_token_env="")
    assert "in-the-file" not in repr(config) and config.milvus_secret("password") == "in-the-file"
    config = IndexConfig(backend="milvus", milvus_uri="http://localhost:19530", milvus_token_env="MILVUS_TOKEN_FOR_TEST")
    monkeypatch.delenv("MILVUS_TOKEN_FOR_TEST", raising=False)
    with pytest.raises(ConfigError, match="MILVUS_TOKEN_FOR_TEST is not set"):
        config.milvus_secret("token")
    monkeypatch.setenv("MILVUS_TOKEN_FOR_TEST", "root:s3cret")
    assert config.milvus_secret("token") == "root:s3cret" and "s3cret" not in repr(config)


@pytest.mark.parametrize(("keys", "message"), [
    ({"quiet_hour": 24}, "index.quiet_hour: must be an hour from 0 to 23"),
    ({"quiet_hour": -1}, "index.quiet_hour: must be an hour from 0 to 23"),
    ({"retrain": "nightly"}, "must be one of"),
])
def test_when_to_retrain_is_checked_by_name(keys, message):
    with pytest.raises(ConfigError, match=message):
        settings_from_dict({"index": keys}, source="config.toml")
    assert IndexConfig().retrain == "quiet_hour" and IndexConfig().quiet_hour == 3
