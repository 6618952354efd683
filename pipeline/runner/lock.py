"""A run lock for scheduled jobs, on local paths and object stores, with stale-lock takeover.

The lock is one small JSON object (e.g. ``{root}/products/{product_id}/lock.json``)::

    {"owner": "cronjob-ft", "token": "9f…", "host": "node-3", "pid": 4242,
     "acquired_at": "…", "heartbeat_at": "…", "stale_after_s": 3600}

Acquire protocol:

1. *Create exclusively* (:func:`pipeline.io.publish.put_exclusive`): ``O_CREAT|O_EXCL`` on local
   filesystems (atomic); a conditional PUT (``If-None-Match: *``) on S3.
2. If the lock exists and its ``heartbeat_at`` is younger than ``stale_after_s`` → refuse with
   :class:`LockHeld` (one line: owner, host, pid, age).  If it is older, the holder is presumed
   dead (a SIGKILLed pod never releases its lock) and the lock is *taken over*: the stale
   object is overwritten with our token.
3. *Read back after a settle delay*: wait ``settle_s`` and read the object again; only if it
   still holds our unique token do we own the lock.  A rival that wrote after us wins, we
   refuse.

Limits (S3 has no compare-and-swap on overwrite, and some S3-compatible servers ignore
``If-None-Match``): two contenders whose check-then-write windows overlap by more than
``settle_s`` could both believe they hold the lock.  S3 is strongly read-after-write consistent,
so the window is the time between one contender's existence check and its PUT; ``settle_s``
(default 2 s) is chosen well above that.  The holder re-verifies its token at every
:meth:`RunLock.heartbeat` and before publishing (:meth:`RunLock.verify`), so a loser stops at
its next checkpoint; the work it did is harmless because parts are idempotent and a version
becomes visible only through the final pointer switch.  Kubernetes CronJobs add
``concurrencyPolicy: Forbid`` on top.  Clocks: staleness compares the holder's heartbeat time
(UTC, its clock) with ours, so ``stale_after_s`` must exceed clock skew plus the heartbeat
interval by a wide margin.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import socket
import threading
import time
from collections.abc import Mapping
from typing import Any

from pipeline import errors
from pipeline.io import publish, stores

__all__ = ["LockHeld", "LockLost", "RunLock"]


class LockHeld(errors.TbcubeError):
    """Another live run holds the lock."""


class LockLost(errors.TbcubeError):
    """Our lock was taken over (we were presumed dead) or removed."""


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class RunLock:
    """An advisory lock object at ``url`` held by one run at a time.

    Use as a context manager; a background thread refreshes the heartbeat every
    ``heartbeat_s`` seconds while the lock is held::

        with RunLock(url, owner="cronjob-ft", stale_after_s=3600):
            ...   # call lock.verify() before irreversible steps

    Args:
      url: Lock object URL.
      owner: Human-readable owner (job name); the host and pid are added.
      stale_after_s: A lock whose heartbeat is older than this is taken over.
      storage_options: fsspec options.
      settle_s: Delay between writing and reading back (see module docstring).
      heartbeat_s: Heartbeat period of the background thread (``None``: no thread).
    """

    def __init__(self, url: str, *, owner: str, stale_after_s: float = 3600.0,
                 storage_options: Mapping[str, Any] | None = None, settle_s: float = 2.0,
                 heartbeat_s: float | None = 60.0) -> None:
        self.url = url
        self.owner = owner
        self.stale_after_s = float(stale_after_s)
        self.storage_options = storage_options
        self.settle_s = float(settle_s)
        self.heartbeat_s = heartbeat_s
        self.token = secrets.token_hex(16)
        self.took_over: dict[str, Any] | None = None
        self._held = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._io = threading.Lock()

    # -- record ---------------------------------------------------------------------------
    def _record(self, acquired_at: str | None = None) -> bytes:
        now = _now().isoformat()
        return (json.dumps({
            "owner": self.owner, "token": self.token, "host": socket.gethostname(),
            "pid": os.getpid(), "acquired_at": acquired_at or now, "heartbeat_at": now,
            "stale_after_s": self.stale_after_s,
        }, sort_keys=True) + "\n").encode()

    def read(self) -> dict[str, Any] | None:
        """The current lock record (``None`` when there is no lock)."""
        if not stores.exists(self.url, self.storage_options):
            return None
        for attempt in range(5):
            try:
                return json.loads(stores.read_bytes(self.url, self.storage_options))
            except json.JSONDecodeError:  # a local writer mid-write; retry
                time.sleep(0.05 * (attempt + 1))
            except errors.StoreNotFound:
                return None
        return {"owner": "?", "heartbeat_at": _now().isoformat(), "token": "?"}

    def _age_s(self, rec: Mapping[str, Any]) -> float:
        try:
            beat = dt.datetime.fromisoformat(str(rec["heartbeat_at"]))
        except (KeyError, ValueError):
            return float("inf")  # unreadable record: treat as abandoned
        return (_now() - beat).total_seconds()

    def _describe(self, rec: Mapping[str, Any]) -> str:
        return (f"{self.url}: locked by {rec.get('owner')!r} (host {rec.get('host')}, pid "
                f"{rec.get('pid')}) since {rec.get('acquired_at')}, last heartbeat "
                f"{self._age_s(rec):.0f} s ago; it is taken over only after "
                f"{self.stale_after_s:.0f} s without a heartbeat")

    # -- acquire / release ----------------------------------------------------------------
    def acquire(self) -> RunLock:
        """Take the lock or raise :class:`LockHeld` (see the module docstring)."""
        created = publish.put_exclusive(self.url, self._record(), self.storage_options)
        if not created:
            rec = self.read()
            if rec is not None and self._age_s(rec) < self.stale_after_s:
                raise LockHeld(self._describe(rec))
            self.took_over = rec
            stores.write_bytes(self.url, self._record(), self.storage_options)
        if self.settle_s:
            time.sleep(self.settle_s)
        rec = self.read()
        if rec is None or rec.get("token") != self.token:
            raise LockHeld(self._describe(rec or {}) + " (lost the race to acquire it)")
        self._held = True
        if self.heartbeat_s:
            self._stop.clear()
            self._thread = threading.Thread(target=self._beat, name="tbcube-lock-heartbeat",
                                            daemon=True)
            self._thread.start()
        return self

    def verify(self) -> None:
        """Raise :class:`LockLost` unless the lock object still carries our token."""
        rec = self.read()
        if rec is None or rec.get("token") != self.token:
            who = f"now held by {rec.get('owner')!r}" if rec else "removed"
            raise LockLost(f"{self.url}: this run's lock was {who}; stopping before publishing")

    def heartbeat(self) -> None:
        """Verify the lock is ours and refresh its heartbeat time."""
        with self._io:
            self.verify()
            rec = self.read() or {}
            stores.write_bytes(self.url, self._record(rec.get("acquired_at")),
                               self.storage_options)

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                self.heartbeat()
            except errors.TbcubeError:
                return  # lost: the main thread finds out at its next verify()

    def release(self) -> None:
        """Stop the heartbeat and delete the lock if it is still ours."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        if not self._held:
            return
        self._held = False
        with self._io:
            rec = self.read()
            if rec is not None and rec.get("token") == self.token:
                publish.remove(self.url, self.storage_options)

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
