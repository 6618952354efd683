"""Model checkpoints as bytes + sha256: msgpack (flax.serialization) and JSON, never pickle.

Layout of the bytes (one msgpack map, restored with ``flax.serialization.msgpack_restore``,
which decodes only arrays, numbers, strings, lists and maps):

- ``format``: ``"tbcube-model"``;
- ``header``: JSON text with ``name``, ``config``, ``norm_stats``, ``versions``
  (``models_major``, ``models``, ``jax``, ``flax``);
- ``params``: the parameter pytree (nested maps of arrays).

:func:`from_bytes` refuses data whose sha256 differs from the expected digest (tampered or
corrupted), data that is not a tbcube checkpoint, and bundles written by another major version
of :mod:`models`, each with a one-line :class:`CheckpointError`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

import flax
import jax
import numpy as np
from flax import serialization

import models

__all__ = ["Bundle", "CheckpointError", "ChecksumMismatch", "IncompatibleCheckpoint",
           "current_versions", "from_bytes", "sha256", "to_bytes"]

FORMAT = "tbcube-model"


class CheckpointError(ValueError):
    """A checkpoint could not be used (one-line message)."""


class ChecksumMismatch(CheckpointError):
    """The bytes do not have the expected sha256."""


class IncompatibleCheckpoint(CheckpointError):
    """The bundle was written by an incompatible version or is not a tbcube checkpoint."""


@dataclasses.dataclass(frozen=True)
class Bundle:
    """A trained model: registry name, config dict, params pytree, normalisation, versions."""

    name: str
    config: dict
    params: Any
    norm_stats: dict
    versions: dict = dataclasses.field(default_factory=dict)


def current_versions() -> dict:
    """Versions recorded in new bundles."""
    return {"models_major": models.MODELS_MAJOR, "models": models.__version__,
            "jax": jax.__version__, "flax": flax.__version__}


def sha256(data: bytes) -> str:
    """Hex sha256 digest."""
    return hashlib.sha256(data).hexdigest()


def to_bytes(bundle: Bundle) -> tuple[bytes, str]:
    """Serialise a bundle; returns (bytes, sha256 hex digest)."""
    header = {"name": bundle.name, "config": bundle.config, "norm_stats": bundle.norm_stats,
              "versions": {**current_versions(), **bundle.versions,
                           "models_major": models.MODELS_MAJOR}}
    params = jax.tree.map(lambda a: np.asarray(a), jax.device_get(bundle.params))
    data = serialization.msgpack_serialize(
        {"format": FORMAT, "header": json.dumps(header, sort_keys=True), "params": params}
    )
    return data, sha256(data)


def from_bytes(data: bytes, expected_sha256: str | None = None, *, source: str = "checkpoint"):
    """Deserialise and check a bundle.

    Args:
      data: Bytes from :func:`to_bytes`.
      expected_sha256: Digest to verify (recommended; ``None`` skips the check).
      source: Name used in error messages (e.g. the URL).

    Returns:
      The :class:`Bundle` (params as NumPy arrays).

    Raises:
      ChecksumMismatch: the digest differs.
      IncompatibleCheckpoint: not a tbcube checkpoint, or another ``models`` major version.
    """
    digest = sha256(data)
    if expected_sha256 is not None and digest != expected_sha256:
        raise ChecksumMismatch(
            f"{source}: sha256 {digest[:12]}… != expected {expected_sha256[:12]}… "
            "(tampered or corrupted checkpoint)"
        )
    try:
        doc = serialization.msgpack_restore(data)
        fmt = doc.get("format") if isinstance(doc, dict) else None
    except Exception as e:  # noqa: BLE001 - any decoding failure means "not a checkpoint"
        raise IncompatibleCheckpoint(f"{source}: not a readable tbcube checkpoint ({e})") from None
    if fmt != FORMAT:
        raise IncompatibleCheckpoint(f"{source}: not a tbcube checkpoint (format {fmt!r})")
    header = json.loads(doc["header"])
    major = header.get("versions", {}).get("models_major")
    if major != models.MODELS_MAJOR:
        raise IncompatibleCheckpoint(
            f"{source}: written by models major version {major}, this is {models.MODELS_MAJOR}"
        )
    return Bundle(header["name"], header["config"], doc["params"], header["norm_stats"],
                  header["versions"])
