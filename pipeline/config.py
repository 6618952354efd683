"""Typed, frozen, strict run configurations loaded from YAML (docs/configuration.md).

Every run config is a pydantic v2 model derived from :class:`Strict` (immutable; an unknown key
is an error).  A YAML file names its model with a top-level ``kind:`` key, looked up in the
explicit :data:`CONFIG_KINDS` table (``"module:Class"`` strings, imported lazily so a CLI that
only checks configs does not import the science stack)::

    # deploy/configs/simulate-demo.yaml
    kind: simulate
    preset: demo
    root: s3://tbcube/demo
    cluster: {kind: local, n_workers: 2}

    >>> from pipeline.config import load_config
    >>> job = load_config("deploy/configs/simulate-demo.yaml")
    >>> job.cluster.n_workers
    2

Errors are one line naming the file and the dotted field path::

    ConfigError: job.yaml: field 'cluster.n_workers': Input should be greater than 0

Secrets (``storage.key``, ``storage.secret``) are :class:`pydantic.SecretStr`: masked in reprs,
in :func:`dump_config` output and never echoed in errors.  Passwords never live in a config
(``cluster.password_env`` names the environment variable that holds one).
"""

from __future__ import annotations

import datetime as dt
import difflib
import importlib
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic
import yaml
from pydantic import PositiveFloat, PositiveInt, SecretStr

from pipeline import errors

__all__ = [
    "CONFIG_KINDS",
    "PRODUCT_ID",
    "ClusterSection",
    "GridName",
    "OutputSection",
    "ProductId",
    "ReprocessJob",
    "RetentionSection",
    "RunSection",
    "SensorName",
    "SimulateJob",
    "StorageSection",
    "Strict",
    "TimeRange",
    "dump_config",
    "load_config",
    "model_for_kind",
    "parse_config",
]

# kind -> "module:Class".  Later jobs (ingest, calibrate, ft, sm, carbon, fusion …) add a line.
CONFIG_KINDS: dict[str, str] = {
    "simulate": "pipeline.config:SimulateJob",
    "reprocess": "pipeline.config:ReprocessJob",
}

PRODUCT_ID = re.compile(r"^[a-z0-9]+-[a-z0-9]+-[a-z0-9]+-v[0-9]+$")
_SECRET_FIELDS = {"key", "secret", "password", "token"}


class Strict(pydantic.BaseModel):
    """Base for run configs: immutable, unknown keys are errors."""

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")


# --- validated scalar types ----------------------------------------------------------------
def _grid_name(v: Any) -> str:
    from pipeline import grid

    try:
        return grid.get(str(v)).name
    except KeyError as e:
        raise ValueError(f"unknown grid {v!r}; known grids are {sorted(grid.GRIDS)}") from e


def _sensor_name(v: Any) -> str:
    from pipeline import sensors

    known = sorted(sensors.catalog().sensors)
    if str(v) not in known:
        raise ValueError(f"unknown sensor {v!r}; the sensor catalog has {known}")
    return str(v)


def _product_id(v: Any) -> str:
    if not isinstance(v, str) or not PRODUCT_ID.match(v):
        raise ValueError(
            f"product id {v!r} must look like '{{quantity}}-{{source}}-{{grid}}-v{{N}}' "
            "(lower case), e.g. 'ft-smap-n36-v1'"
        )
    return v


GridName = Annotated[str, pydantic.BeforeValidator(_grid_name)]
"""An EASE-Grid 2.0 grid name (case-insensitive on input, canonical upper case)."""
SensorName = Annotated[str, pydantic.BeforeValidator(_sensor_name)]
"""A sensor of ``catalogs/sensors.yaml``."""
ProductId = Annotated[str, pydantic.BeforeValidator(_product_id)]
"""A product id ``{quantity}-{source}-{grid}-v{N}``."""


# --- shared sections -----------------------------------------------------------------------
class StorageSection(Strict):
    """Where and how to reach object storage (fsspec/s3fs options).

    Credentials may come from here, from an AWS profile, or from the standard environment
    variables (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL``,
    ``AWS_PROFILE``); see :func:`pipeline.io.stores.storage_options_for`.
    """

    endpoint_url: str | None = None
    profile: str | None = None
    region: str | None = None
    anon: bool = False
    key: SecretStr | None = None
    secret: SecretStr | None = None

    @pydantic.model_validator(mode="after")
    def _pair(self) -> StorageSection:
        if (self.key is None) != (self.secret is None):
            raise ValueError("give both 'key' and 'secret' or neither")
        if self.anon and self.key is not None:
            raise ValueError("'anon: true' cannot be combined with 'key'/'secret'")
        return self


class ClusterSection(Strict):
    """Which Dask cluster to run on (see :func:`pipeline.runner.cluster.connect`)."""

    kind: Literal["local", "gateway", "scheduler"] = "local"
    n_workers: PositiveInt = 2
    threads_per_worker: PositiveInt = 1
    memory_limit: str = "auto"
    address: str | None = None
    auth: Literal["none", "basic", "jupyterhub", "kerberos"] = "none"
    username: str | None = None
    password_env: str = "DASK_GATEWAY_PASSWORD"
    worker_cores: PositiveFloat | None = None
    worker_memory: str | None = None
    gpu: bool = False
    image: str | None = None
    min_workers: pydantic.NonNegativeInt = 0
    max_workers: PositiveInt | None = None
    jax_platform: Literal["cpu", "gpu"] = "cpu"

    @pydantic.model_validator(mode="after")
    def _consistent(self) -> ClusterSection:
        if self.kind == "scheduler" and not self.address:
            raise ValueError("cluster kind 'scheduler' needs 'address' (tcp://host:8786)")
        if self.max_workers is not None and self.max_workers < self.min_workers:
            raise ValueError(
                f"max_workers {self.max_workers} is less than min_workers {self.min_workers}"
            )
        if self.jax_platform == "gpu" and not self.gpu and self.kind == "gateway":
            raise ValueError("jax_platform 'gpu' on a gateway cluster needs 'gpu: true'")
        return self


class TimeRange(Strict):
    """A closed range of days ``[start, end]``."""

    start: dt.date
    end: dt.date

    @pydantic.model_validator(mode="after")
    def _ordered(self) -> TimeRange:
        if self.end < self.start:
            raise ValueError(f"end {self.end} is before start {self.start}")
        return self


class RunSection(Strict):
    """Name and time span of a run."""

    name: str = pydantic.Field(min_length=1, pattern=r"^[A-Za-z0-9._-]+$")
    time: TimeRange | None = None


class OutputSection(Strict):
    """Where a job writes its product."""

    product: ProductId
    root: str | None = None
    layout: Literal["pancake", "pencil"] = "pancake"
    keep_versions: PositiveInt | None = None


class RetentionSection(Strict):
    """How many complete versions of each product to keep (the current one is never deleted)."""

    keep_versions: PositiveInt = 3


# --- jobs ----------------------------------------------------------------------------------
class SimulateJob(Strict):
    """``kind: simulate`` — write a simulated archive with truth (:mod:`pipeline.simulate`)."""

    kind: Literal["simulate"] = "simulate"
    preset: Literal["tiny", "demo", "global"]
    root: str = pydantic.Field(min_length=1)
    seed: pydantic.NonNegativeInt = 0
    start: dt.date | None = None
    end: dt.date | None = None
    storage: StorageSection = StorageSection()
    cluster: ClusterSection = ClusterSection()

    @pydantic.model_validator(mode="after")
    def _ordered(self) -> SimulateJob:
        if self.start and self.end and self.end < self.start:
            raise ValueError(f"end {self.end} is before start {self.start}")
        return self


class ReprocessJob(Strict):
    """``kind: reprocess`` — scheduled, resumable reprocessing of products in parts."""

    kind: Literal["reprocess"] = "reprocess"
    products: tuple[ProductId, ...] = pydantic.Field(min_length=1)
    root: str = pydantic.Field(min_length=1)
    time: TimeRange
    parts: PositiveInt = 1
    retention: RetentionSection = RetentionSection()
    lock_stale_after_s: PositiveFloat = 3600.0
    storage: StorageSection = StorageSection()
    cluster: ClusterSection = ClusterSection()

    @pydantic.field_validator("products")
    @classmethod
    def _unique(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        dup = sorted({p for p in v if v.count(p) > 1})
        if dup:
            raise ValueError(f"products listed twice: {dup}")
        return v


# --- loading -------------------------------------------------------------------------------
def model_for_kind(kind: str) -> type[Strict]:
    """The model class registered for ``kind`` in :data:`CONFIG_KINDS`."""
    if kind not in CONFIG_KINDS:
        raise KeyError(kind)
    module, _, cls = CONFIG_KINDS[kind].partition(":")
    return getattr(importlib.import_module(module), cls)


def _loc(err: dict) -> str:
    return ".".join(str(p) for p in err["loc"] if not str(p).startswith("function-"))


def _allowed_keys(model: type[pydantic.BaseModel], loc: tuple) -> list[str]:
    """Field names of the (sub)model that contains the key at ``loc``."""
    m: Any = model
    for part in loc[:-1]:
        fields = getattr(m, "model_fields", {})
        if part not in fields:
            return []
        ann = fields[part].annotation
        m = next((a for a in getattr(ann, "__args__", (ann,))
                  if isinstance(a, type) and issubclass(a, pydantic.BaseModel)), None)
        if m is None:
            return []
    return sorted(getattr(m, "model_fields", {}))


def _describe(err: dict, model: type[pydantic.BaseModel]) -> str:
    loc = _loc(err)
    where = f"field '{loc}'" if loc else "top level"
    if err["type"] == "extra_forbidden":
        allowed = _allowed_keys(model, tuple(err["loc"]))
        hint = difflib.get_close_matches(str(err["loc"][-1]), allowed, n=1)
        mean = f", did you mean '{hint[0]}'?" if hint else ""
        return f"{where}: unknown key{mean} (allowed: {', '.join(allowed)})"
    if err["type"] == "missing":
        return f"{where}: required field missing"
    msg = str(err["msg"]).removeprefix("Value error, ")
    value = err.get("input")
    secret = any(str(p) in _SECRET_FIELDS for p in err["loc"])
    typed = err["type"].endswith(("_type", "_parsing")) or err["type"] == "literal_error"
    if typed and not secret and isinstance(value, (str, int, float, bool, dt.date)):
        text = repr(value)
        msg += f" (got {text if len(text) <= 40 else text[:37] + '...'})"
    return f"{where}: {msg}"


def parse_config(raw: Any, model: type[Strict] | None = None, *, source: str = "<config>"):
    """Validate an already-loaded mapping (see :func:`load_config`)."""
    if not isinstance(raw, dict):
        raise errors.ConfigError(f"{source}: top level must be a mapping of keys, "
                                 f"got {type(raw).__name__}")
    if model is None:
        kind = raw.get("kind")
        if kind is None:
            raise errors.ConfigError(
                f"{source}: no 'kind:' key; known kinds are {sorted(CONFIG_KINDS)}"
            )
        try:
            model = model_for_kind(str(kind))
        except KeyError:
            raise errors.ConfigError(
                f"{source}: field 'kind': unknown kind {kind!r}; known kinds are "
                f"{sorted(CONFIG_KINDS)}"
            ) from None
    try:
        return model.model_validate(raw)
    except pydantic.ValidationError as e:
        found = [_describe(err, model) for err in e.errors(include_url=False)]
        n = len(found)
        head = f"{source}: " + (f"{n} problems: " if n > 1 else "")
        raise errors.ConfigError(head + "; ".join(found)) from None


def load_config(path: str | Path, model: type[Strict] | None = None):
    """Read a YAML run config and validate it.

    Args:
      path: The YAML file.
      model: The expected model; None selects it from the file's ``kind:`` key.

    Returns:
      A frozen instance of the model.

    Raises:
      errors.ConfigError: missing/unreadable file, YAML syntax error (with line and column),
        unknown kind or key, wrong type or impossible value — one line naming the file and the
        dotted field path.
    """
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise errors.ConfigError(f"{p}: no such config file") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as e:
        raise errors.ConfigError(f"{p}: cannot read config file ({type(e).__name__})") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise errors.ConfigError(f"{p}: YAML syntax error{where}: {problem}") from None
    if raw is None:
        raise errors.ConfigError(f"{p}: config file is empty")
    return parse_config(raw, model, source=str(p))


def dump_config(config: Strict) -> dict:
    """The resolved config as plain JSON-able data, secrets masked (``'**********'``)."""
    return config.model_dump(mode="json")
