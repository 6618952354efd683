"""Provenance: what produced a store (code, config, inputs, models, time) and input fingerprints.

A provenance record is a JSON-able dict built by :func:`collect`::

    {
      "code_version": "0.1.0+g1a2b3c4",          # package version + git commit when available
      "config_hash": "sha256:…",                 # canonical JSON of the run config, secrets out
      "config": {...},                           # the resolved config (secrets redacted)
      "inputs": {"tb/smap": {"url": …, "fingerprint": "sha256:…"}},
      "models": {"ft_autoencoder": "sha256:…"},
      "started_at": "…", "finished_at": "…"
    }

It is written into product attrs (:func:`as_attrs`: flat CF-friendly keys plus the whole record
as JSON in ``tbcube_provenance``) and into completion markers.  Reprocessing compares the
*staleness key* (:func:`staleness_key`: code version, config hash, input fingerprints, model
digests) of the last publication with the current one to decide whether to rebuild.

A store's fingerprint (:func:`fingerprint_store`) hashes its consolidated metadata (or every
metadata document when unconsolidated) and the listing of its chunk objects (names and sizes):
any new time slice, rewritten chunk or attribute change alters it, without reading chunk data.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import fsspec
import xarray as xr

import pipeline

__all__ = [
    "as_attrs",
    "code_version",
    "collect",
    "config_hash",
    "fingerprint_store",
    "redact",
    "staleness_key",
    "structure",
]

_SECRET_WORDS = ("secret", "password", "token", "key")
_METADATA_NAMES = ("zarr.json", ".zattrs", ".zarray", ".zgroup", ".zmetadata")


@functools.cache
def code_version() -> str:
    """The version of the code that runs, recorded in provenance and compared for staleness.

    ``TBCUBE_CODE_VERSION`` when set (images set it at build time: they carry no ``.git``),
    else ``pipeline.__version__`` plus ``+g<commit>`` when run from a git checkout.
    """
    pinned = os.environ.get("TBCUBE_CODE_VERSION", "").strip()
    if pinned:
        return pinned
    base = str(pipeline.__version__)
    repo = Path(pipeline.__file__).resolve().parents[1]
    if not (repo / ".git").exists():
        return base
    try:
        sha = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short=8", "HEAD"],
                             capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return base
    return f"{base}+g{sha}" if sha else base


def redact(obj: Any) -> Any:
    """A copy of a JSON-like object with secret-looking values replaced by ``"***"``.

    Keys containing ``secret``, ``password``, ``token`` or ``key`` (but not ``*_env`` names,
    which hold only the *name* of an environment variable) are redacted.
    """
    if isinstance(obj, Mapping):
        out = {}
        for k, v in obj.items():
            name = str(k).lower()
            secret = any(w in name for w in _SECRET_WORDS) and not name.endswith("_env")
            out[str(k)] = "***" if secret and v is not None else redact(v)
        return out
    if isinstance(obj, list | tuple):
        return [redact(v) for v in obj]
    return obj


def _plain(config: Any) -> Any:
    if config is None:
        return None
    if hasattr(config, "model_dump"):  # pydantic v2 (SecretStr dumps as '**********')
        return config.model_dump(mode="json")
    return json.loads(json.dumps(config, default=str))


def config_hash(config: Any) -> str:
    """``sha256:<hex>`` of the canonical (sorted-key) JSON of a config (secrets redacted)."""
    text = json.dumps(redact(_plain(config)), sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def structure(ds: xr.Dataset) -> dict[str, Any]:
    """Dims, sizes, variables (dims, dtype) and attrs of ``ds`` as a JSON-able dict (no data)."""
    return {
        "sizes": {str(k): int(v) for k, v in ds.sizes.items()},
        "variables": {
            str(k): {"dims": list(map(str, v.dims)), "dtype": str(v.dtype)}
            for k, v in ds.variables.items()
        },
        "attrs": json.loads(json.dumps(dict(ds.attrs), default=str, sort_keys=True)),
    }


def fingerprint_store(url: str, storage_options: Mapping[str, Any] | None = None) -> str:
    """``sha256:<hex>`` over a Zarr store's metadata documents and its chunk listing.

    Args:
      url: Store URL (local path or fsspec URL).
      storage_options: fsspec options.

    Returns:
      The digest; ``"missing"`` when the store does not exist.
    """
    fs, root = fsspec.core.url_to_fs(str(url), **dict(storage_options or {}))
    if not fs.exists(root):
        return "missing"
    h = hashlib.sha256()
    found = fs.find(root, detail=True)
    for path in sorted(found):
        rel = path[len(root.rstrip("/")) + 1:] if path.startswith(root.rstrip("/")) else path
        name = rel.rsplit("/", 1)[-1]
        if name in _METADATA_NAMES:
            h.update(f"M {rel}\n".encode())
            h.update(fs.cat_file(path))
        else:
            h.update(f"C {rel} {int(found[path].get('size') or 0)}\n".encode())
    return "sha256:" + h.hexdigest()


def collect(
    *,
    config: Any = None,
    inputs: Mapping[str, str] | None = None,
    models: Mapping[str, str] | None = None,
    storage_options: Mapping[str, Any] | None = None,
    started_at: dt.datetime | None = None,
    fingerprints: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Build a provenance record.

    Args:
      config: The run config (pydantic model or JSON-like dict); stored redacted and hashed.
      inputs: ``{name: url}`` of input stores; each is fingerprinted (unless ``fingerprints``
        already holds it).
      models: ``{model name: sha256}`` of the model checkpoints used.
      storage_options: fsspec options for the inputs.
      started_at: When the job started (UTC); default now.
      fingerprints: Precomputed ``{name: fingerprint}`` (avoids re-listing big stores).
    """
    now = dt.datetime.now(dt.UTC)
    fps = dict(fingerprints or {})
    return {
        "code_version": code_version(),
        "config_hash": config_hash(config),
        "config": redact(_plain(config)),
        "inputs": {
            name: {"url": str(url),
                   "fingerprint": fps.get(name) or fingerprint_store(url, storage_options)}
            for name, url in sorted((inputs or {}).items())
        },
        "models": {str(k): str(v) for k, v in sorted((models or {}).items())},
        "started_at": (started_at or now).isoformat(),
        "finished_at": now.isoformat(),
    }


def staleness_key(record: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of a record that, when changed, make a published product stale."""
    return {
        "code_version": record.get("code_version"),
        "config_hash": record.get("config_hash"),
        # Records written without collect() may list inputs as bare URLs: no fingerprint.
        "inputs": {k: v.get("fingerprint") if isinstance(v, Mapping) else None
                   for k, v in (record.get("inputs") or {}).items()},
        "models": dict(record.get("models") or {}),
    }


def as_attrs(record: Mapping[str, Any], *, product_id: str | None = None,
             version: str | None = None) -> dict[str, Any]:
    """Flat store attrs from a provenance record (plus the whole record as JSON)."""
    attrs: dict[str, Any] = {
        "history": f"{record.get('finished_at', dt.datetime.now(dt.UTC).isoformat())}: "
                   f"written by tbcube {record.get('code_version', code_version())}",
        "tbcube_code_version": str(record.get("code_version", code_version())),
        "tbcube_provenance": json.dumps(dict(record), sort_keys=True, default=str),
    }
    if record.get("config_hash"):
        attrs["tbcube_config_hash"] = str(record["config_hash"])
    if record.get("models"):
        attrs["tbcube_model_sha256"] = json.dumps(dict(record["models"]), sort_keys=True)
    if product_id:
        attrs["tbcube_product_id"] = product_id
    if version:
        attrs["tbcube_version"] = version
    return attrs
