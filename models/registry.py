"""Explicit registry of model families: name → :class:`ModelSpec` (no import side effects)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from models import autoencoder, lstm

__all__ = ["MODELS", "ModelSpec", "get"]


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """How to build, configure and run one model family.

    Attributes:
      config_cls: Frozen dataclass of hyper-parameters (``config_cls(**bundle.config)``).
      init: ``(config, seed) -> params``.
      apply: ``(params, x[batch, time, channel], *, config) -> y[batch, time]``.
    """

    config_cls: type
    init: Callable[..., Any]
    apply: Callable[..., Any]


MODELS: dict[str, ModelSpec] = {
    "ft_autoencoder": ModelSpec(autoencoder.AutoencoderConfig, autoencoder.init, autoencoder.apply),
    "sm_lstm": ModelSpec(lstm.LSTMConfig, lstm.init, lstm.apply),
}


def get(name: str) -> ModelSpec:
    """The spec registered as ``name`` (ValueError listing the known names otherwise)."""
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known: {sorted(MODELS)}") from None


def config_from_dict(name: str, data: dict):
    """Rebuild a frozen config from its JSON dict (lists become tuples)."""
    cls = get(name).config_cls
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - fields
    if unknown:
        raise ValueError(f"model {name!r}: unknown config fields {sorted(unknown)}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})
