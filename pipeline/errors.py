"""Exceptions for expected failures: bad input, missing stores, denied access, bad configs.

Each carries a one-line message naming the store / file, the variable and the problem.  The
CLI prints them as ``error: <message>`` (exit 2) without a traceback.  Messages must never
contain credentials.
"""

from __future__ import annotations


class TbcubeError(Exception):
    """Base class for expected, user-facing errors (one-line message)."""


class StoreError(TbcubeError):
    """A store could not be opened, read or written (missing, denied, unreachable)."""


class StoreNotFound(StoreError):
    """The store does not exist."""


class AccessDenied(StoreError):
    """The credentials were rejected or lack permission."""


class SchemaError(TbcubeError):
    """A dataset does not conform to docs/data-contract.md."""


class ConfigError(TbcubeError):
    """A run configuration file is malformed or invalid."""


class InputDataError(TbcubeError):
    """An input file or array is unusable (corrupt, truncated, wrong product, wrong units)."""


class ChecksumError(TbcubeError):
    """A checksum did not match (tampered or corrupted artefact)."""
