"""Where model tasks run: GPU resource annotations when the cluster has GPU workers.

Workers started with ``--resources GPU=1`` (one process per GPU, ``nthreads=1``) advertise a
``GPU`` resource.  Model tasks are annotated ``resources={"GPU": 1}`` only when at least one
worker advertises it; otherwise (CPU clusters, the default) they are left unannotated, because a
resource no worker has would leave the tasks unschedulable forever.
"""

from __future__ import annotations

from typing import Any

__all__ = ["gpu_workers", "model_resources"]


def gpu_workers(client: Any) -> list[str]:
    """Addresses of the workers that advertise a ``GPU`` resource > 0."""
    workers = client.scheduler_info(n_workers=-1).get("workers", {})
    return sorted(a for a, w in workers.items() if (w.get("resources") or {}).get("GPU", 0) > 0)


def model_resources(client: Any | None) -> dict[str, int] | None:
    """``{"GPU": 1}`` when ``client``'s cluster has GPU workers, else None (CPU default)."""
    if client is None:
        return None
    return {"GPU": 1} if gpu_workers(client) else None
