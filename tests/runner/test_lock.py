"""Run lock: refusal, heartbeat, stale takeover, races — on local paths and on S3 (SeaweedFS)."""

from __future__ import annotations

import json
import threading
import time

import pytest

from pipeline.io import stores
from pipeline.runner.lock import LockHeld, LockLost, RunLock


def _race(url, storage_options, n=2, **kw):
    """``n`` threads acquire at once; returns (winners, refusals)."""
    barrier = threading.Barrier(n)
    won, refused = [], []

    def contender(k):
        lock = RunLock(url, owner=f"c{k}", storage_options=storage_options, heartbeat_s=None,
                       **kw)
        barrier.wait()
        try:
            lock.acquire()
            won.append(lock)
        except LockHeld:
            refused.append(k)

    threads = [threading.Thread(target=contender, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return won, refused


def _exercise(url, so):
    a = RunLock(url, owner="job-a", storage_options=so, settle_s=0.05, heartbeat_s=None)
    a.acquire()
    rec = json.loads(stores.read_bytes(url, so))
    assert rec["owner"] == "job-a" and rec["token"] == a.token and rec["pid"] > 0
    b = RunLock(url, owner="job-b", storage_options=so, settle_s=0.05, heartbeat_s=None,
                stale_after_s=3600)
    with pytest.raises(LockHeld) as info:
        b.acquire()
    msg = str(info.value)
    assert "\n" not in msg and "locked by 'job-a'" in msg and "3600 s" in msg
    # A crashed holder: its heartbeat is an hour old, so a new run takes the lock over.
    rec["heartbeat_at"] = "2000-01-01T00:00:00+00:00"
    stores.write_bytes(url, json.dumps(rec).encode(), so)
    b.acquire()
    assert b.took_over["token"] == a.token
    with pytest.raises(LockLost, match="now held by 'job-b'"):
        a.verify()
    a.release()  # not ours any more: must not delete b's lock
    assert json.loads(stores.read_bytes(url, so))["token"] == b.token
    b.release()
    assert not stores.exists(url, so)


def test_local_lock_refuse_takeover_release(tmp_path):
    _exercise(str(tmp_path / "p" / "lock.json"), None)


def test_heartbeat_keeps_a_slow_holder_alive(tmp_path):
    url = str(tmp_path / "lock.json")
    with RunLock(url, owner="slow", stale_after_s=0.6, settle_s=0.0, heartbeat_s=0.1) as held:
        time.sleep(1.2)  # twice the staleness age, but the heartbeat thread refreshed it
        with pytest.raises(LockHeld):
            RunLock(url, owner="eager", stale_after_s=0.6, settle_s=0.0,
                    heartbeat_s=None).acquire()
        held.verify()
    assert not stores.exists(url)


def test_concurrent_acquire_has_exactly_one_winner(tmp_path):
    url = str(tmp_path / "lock.json")
    won, refused = _race(url, None, n=4, settle_s=0.05)
    assert len(won) == 1 and len(refused) == 3
    # Simultaneous takeover of a stale lock: the read-back after the settle delay picks one.
    won[0]._held = False  # simulate a crashed holder (never released)
    rec = json.loads(stores.read_bytes(url))
    rec["heartbeat_at"] = "2000-01-01T00:00:00+00:00"
    stores.write_bytes(url, json.dumps(rec).encode())
    won2, refused2 = _race(url, None, n=3, settle_s=0.3)
    assert len(won2) == 1 and len(refused2) == 2


@pytest.mark.s3
def test_s3_lock_refuse_takeover_release(s3_root, s3_server):
    _exercise(f"{s3_root}/products/x/lock.json", s3_server.storage_options)


@pytest.mark.s3
def test_s3_concurrent_acquire_has_exactly_one_winner(s3_root, s3_server):
    won, refused = _race(f"{s3_root}/lock.json", s3_server.storage_options, n=3, settle_s=0.5)
    assert len(won) == 1 and len(refused) == 2
