"""Checkpoint bundles: round trip, digest, refusal of tampered / incompatible / foreign data."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest
from flax import serialization

import models
from models import autoencoder as ae
from models import checkpoint, registry


def _bundle(seed=0):
    cfg = ae.AutoencoderConfig(condition_channels=2)
    return checkpoint.Bundle("ft_autoencoder", dataclasses.asdict(cfg), ae.init(cfg, seed),
                             {"mean": [250.0, 240.0, 10.0, 0.0, 0.0], "std": [5.0] * 5})


def test_round_trip_same_outputs_and_digest():
    b = _bundle()
    data, digest = checkpoint.to_bytes(b)
    assert digest == checkpoint.sha256(data) and len(digest) == 64
    back = checkpoint.from_bytes(data, expected_sha256=digest)
    assert back.name == b.name and back.norm_stats == b.norm_stats
    assert back.versions["models_major"] == models.MODELS_MAJOR
    assert back.versions["jax"] == jax.__version__
    cfg = registry.config_from_dict(back.name, back.config)
    assert cfg == ae.AutoencoderConfig(condition_channels=2)
    x = np.random.default_rng(0).normal(size=(2, 20, 5)).astype(np.float32)
    run = jax.jit(ae.apply, static_argnames="config")
    np.testing.assert_array_equal(run(b.params, x, config=cfg), run(back.params, x, config=cfg))
    # Deterministic bytes: the same bundle serialises identically.
    assert checkpoint.to_bytes(b)[1] == digest


def test_tampered_bytes_are_refused_with_one_line():
    data, digest = checkpoint.to_bytes(_bundle())
    bad = bytearray(data)
    bad[len(bad) // 2] ^= 0x01
    with pytest.raises(checkpoint.ChecksumMismatch, match="tampered or corrupted") as e:
        checkpoint.from_bytes(bytes(bad), expected_sha256=digest, source="s3://b/m.tbm")
    assert "\n" not in str(e.value) and "s3://b/m.tbm" in str(e.value)


def test_incompatible_major_version_is_refused():
    data, _ = checkpoint.to_bytes(_bundle())
    doc = serialization.msgpack_restore(data)
    doc["header"] = doc["header"].replace(f'"models_major": {models.MODELS_MAJOR}',
                                          f'"models_major": {models.MODELS_MAJOR + 1}')
    with pytest.raises(checkpoint.IncompatibleCheckpoint, match="major version"):
        checkpoint.from_bytes(serialization.msgpack_serialize(doc))


@pytest.mark.parametrize("data", [b"not a checkpoint", b"\x80\x03}q\x00.",
                                  serialization.msgpack_serialize({"format": "other"})])
def test_foreign_data_is_refused(data):
    with pytest.raises(checkpoint.IncompatibleCheckpoint) as e:
        checkpoint.from_bytes(data)
    assert "\n" not in str(e.value)


def test_unknown_config_field_is_refused():
    with pytest.raises(ValueError, match="unknown config fields"):
        registry.config_from_dict("ft_autoencoder", {"hidden": 3})
