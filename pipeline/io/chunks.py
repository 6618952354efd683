"""Corrupt chunks become one-line errors naming the store, the variable and the chunk.

A chunk whose bytes do not decode (truncated upload, bit rot, a partial copy) makes the codec
raise deep inside a Dask task: ``RuntimeError: Zstd decompression error: invalid input data``,
with no store, variable or chunk in it.  :class:`CheckedCodecPipeline` is zarr's own batched
codec pipeline with its read wrapped: a failure becomes
:class:`pipeline.errors.InputDataError` ``"{store}: variable 'tb', chunk 0.0.3.0.0 cannot be
decoded (corrupt or truncated data?): …"``, which Dask carries back to the client and the CLI
prints as one line (exit 2).  Nothing is published from a failed read
(:func:`pipeline.io.publish.publish_dataset` removes the unfinished version).

:func:`install` makes it zarr's codec pipeline in this process (``pipeline.io.stores`` calls it
on import).  Arrays opened here carry the pipeline object, so Dask workers that unpickle them
use it too.  A codec pipeline chosen by the user (``zarr.config`` ``codec_pipeline.path``, e.g.
a faster Rust one) is left alone.
"""

from __future__ import annotations

from typing import Any

from zarr.core.codec_pipeline import BatchedCodecPipeline

from pipeline import errors

__all__ = ["CheckedCodecPipeline", "install"]

_DEFAULT = "zarr.core.codec_pipeline.BatchedCodecPipeline"


def _store_url(store: Any) -> str:
    """A credential-free URL of a zarr store."""
    from pipeline.io.stores import _safe_url

    root = getattr(store, "root", None)  # LocalStore
    if root is not None:
        return str(root)
    fs, path = getattr(store, "fs", None), str(getattr(store, "path", ""))
    if fs is not None:
        try:
            url = fs.unstrip_protocol(path)  # http(s) paths are already URLs
        except Exception:  # noqa: BLE001 - an unusual filesystem: its first protocol
            protocol = fs.protocol[0] if isinstance(fs.protocol, tuple | list) else fs.protocol
            url = f"{protocol}://{path}"
        return _safe_url(url)
    return type(store).__name__ if store is not None else "a sharded array"


def _where(byte_getter: Any) -> str:
    """``"{store}: variable 'v', chunk i.j.k"`` for a chunk key ``v/c/i/j/k`` (or ``v/i.j.k``,
    or ``v/i/j/k`` with zarr v2's "/" separator)."""
    store = _store_url(getattr(byte_getter, "store", None))
    parts = str(getattr(byte_getter, "path", "")).split("/")
    # the chunk index is the trailing run of integer parts (after "c" in zarr v3 keys)
    i = len(parts)
    while i > 0 and parts[i - 1].replace(".", "").isdigit():
        i -= 1
    var, chunk = parts[:i], parts[i:]
    if var and var[-1] == "c" and len(chunk) > 0:
        var = var[:-1]
    name = "/".join(var) or "?"
    return f"{store}: variable {name!r}, chunk {'.'.join(chunk) or '0'}"


_FETCH_FRAMES = ("/zarr/storage/", "/fsspec/", "/s3fs/", "/aiobotocore/", "/botocore/",
                 "/aiohttp/", "/gcsfs/", "/adlfs/")
_DECODE_FRAMES = ("/zarr/codecs/", "/numcodecs/")


def _is_io_error(e: BaseException) -> bool:
    """Raised while fetching the bytes (the store's own error), not while decoding them.

    Decided by where it was raised, not only by its type: gzip and bz2 report corrupt data as
    ``OSError``, and a store reports a denied or unreachable object as ``OSError`` too.
    """
    files = []
    tb = e.__traceback__
    while tb is not None:
        files.append(tb.tb_frame.f_code.co_filename.replace("\\", "/"))
        tb = tb.tb_next
    if any(m in f for f in files for m in _FETCH_FRAMES):
        return True
    if any(m in f for f in files for m in _DECODE_FRAMES):
        return False
    return isinstance(e, OSError | ConnectionError | TimeoutError)


class CheckedCodecPipeline(BatchedCodecPipeline):
    """zarr's batched codec pipeline; a chunk that fails to decode names itself."""

    async def read_batch(self, batch_info, out, drop_axes=()) -> None:  # noqa: D102
        batch_info = list(batch_info)
        try:
            await super().read_batch(batch_info, out, drop_axes)
        except (errors.TbcubeError, MemoryError):
            raise
        except Exception as e:  # noqa: BLE001 - classified below
            if _is_io_error(e):
                raise  # fetching failed (denied, unreachable, missing): not the chunk's bytes
            # A batch holds `codec_pipeline.batch_size` chunks (1 by default): find the bad one.
            bad = batch_info[0]
            for item in batch_info if len(batch_info) > 1 else ():
                try:
                    await super().read_batch([item], out, drop_axes)
                except Exception as e2:  # noqa: BLE001
                    if _is_io_error(e2):
                        raise
                    bad = item
                    break
            reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
            raise errors.InputDataError(
                f"{_where(bad[0])} cannot be decoded (corrupt or truncated data?): "
                f"{type(e).__name__}: {reason}") from None


def install() -> None:
    """Use :class:`CheckedCodecPipeline` for zarr arrays opened in this process (idempotent)."""
    import zarr
    from zarr import registry

    registry.register_pipeline(CheckedCodecPipeline)
    if zarr.config.get("codec_pipeline.path") == _DEFAULT:
        zarr.config.set({"codec_pipeline.path":
                         f"{CheckedCodecPipeline.__module__}.{CheckedCodecPipeline.__qualname__}"})


# Unpickling a pipeline on a Dask worker imports this module: the worker then uses it for the
# arrays it opens itself (e.g. inner shard pipelines) as well.
install()

