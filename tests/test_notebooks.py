"""The user notebooks, executed with nbclient against the real local dask-gateway-server.

``notebooks/gateway.ipynb`` is run top to bottom in a fresh ipykernel (this interpreter) with
its parameters passed as environment variables; the tests then check, independently of the
notebook, that the product it opened is the current version of ``sm-smap-m36-v1``, passes
the data-contract schema and agrees with the simulator's true soil moisture, that the tasks
ran on the gateway cluster's worker, and that the cluster was shut down.  A second run with a
wrong password must stop at the connection with one ``error: …`` line (no traceback, no
password).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "gateway.ipynb"
KERNEL = "tbcube-test-python"

pytestmark = pytest.mark.gateway


@pytest.fixture(scope="module")
def kernel_path(tmp_path_factory) -> str:
    """A JUPYTER_PATH holding an ipykernel kernelspec that runs this very interpreter."""
    pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    base = tmp_path_factory.mktemp("jupyter")
    spec = base / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "tbcube test kernel", "language": "python",
    }))
    return str(base)


def _execute(kernel_path: str, env: dict[str, str], monkeypatch, save: Path,
             timeout: int = 240):
    """Run the notebook (the executed copy is written to ``save``); returns (nb, error|None)."""
    import nbclient
    import nbformat

    monkeypatch.setenv("JUPYTER_PATH", kernel_path)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, kernel_name=KERNEL, timeout=timeout,
                                     resources={"metadata": {"path": str(REPO)}})
    error = None
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as e:
        error = e
    finally:  # keep the executed notebook beside the test's files for inspection
        nbformat.write(nb, save)
    return nb, error


def _texts(nb) -> list[str]:
    out = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            if o.get("output_type") == "stream":
                out.append(o["text"])
            elif o.get("output_type") == "error":
                out.append("\n".join([f"{o['ename']}: {o['evalue']}", *o.get("traceback", [])]))
    return out


def _env(server, root, password) -> dict[str, str]:
    return {
        "TBCUBE_GATEWAY_ADDRESS": server.address, "TBCUBE_GATEWAY_USER": server.username,
        "DASK_GATEWAY_PASSWORD": password, "TBCUBE_ROOT": str(root),
        "TBCUBE_WORKER_MEMORY": "1GiB", "TBCUBE_N_WORKERS": "1",
        "TBCUBE_SIM_START": "2015-05-01", "TBCUBE_SIM_END": "2015-06-30",
        "JAX_PLATFORMS": "cpu", "MPLBACKEND": "Agg",
        "MALLOC_ARENA_MAX": "1", "MALLOC_MMAP_MAX_": "0",
        "MALLOC_TRIM_THRESHOLD_": "68719476736",
    }


@pytest.mark.slow
def test_gateway_notebook_runs_the_retrieval_on_the_cluster(gateway_server, kernel_path,
                                                            tmp_path, monkeypatch):
    import xarray as xr

    from pipeline import dims, schema
    from pipeline.io import catalog, publish, stores

    root = tmp_path / "tiny"
    nb, err = _execute(kernel_path, _env(gateway_server, root, gateway_server.password),
                       monkeypatch, tmp_path / "gateway.executed.ipynb")
    text = "\n".join(_texts(nb))
    assert err is None, f"notebook failed:\n{text[-4000:]}"
    line = next(ln for ln in text.splitlines() if ln.startswith("NOTEBOOK_RESULT "))
    result = json.loads(line.split(" ", 1)[1])

    # Steps 1-3: the dashboard link was shown and the job's tasks ran on the gateway worker.
    assert "dashboard link: http://127.0.0.1" in text
    # The worker_memory option (1 GiB) reached the single 1-thread worker.
    assert f"worker {result['cluster_workers'][0]}: 1 thread(s), memory limit 1.00 GiB" in text
    assert "tasks on the scheduler" in text  # textual progress was printed while it ran
    assert result["n_tasks"] > 0
    assert len(result["cluster_workers"]) == 1
    assert set(result["task_workers"]) == set(result["cluster_workers"])

    # Step 4: the opened URL is the product's current version, in the pointer and in STAC.
    assert result["product_id"] == "sm-smap-m36-v1"
    url = result["product_url"]
    assert url == publish.current_url(str(root), "sm-smap-m36-v1")
    assert catalog.resolve(str(root), "sm-smap-m36-v1")[0].rstrip("/") == url.rstrip("/")
    ds = xr.open_zarr(url)
    schema.check(ds, schema.SM_SMAP_PRODUCT, context=url)
    assert {dims.SOIL_MOISTURE, dims.VOD, dims.QUALITY_FLAG} <= set(ds.data_vars)
    assert sorted(result["variables"]) == sorted(str(v) for v in ds.data_vars)

    # The cluster computed a physically meaningful product: retrieved soil moisture tracks the
    # simulator's truth (independent store) and stays within the physical range.
    sm = ds[dims.SOIL_MOISTURE].load()
    truth = xr.open_zarr(stores.truth_url(str(root), ds.attrs["grid"]))
    ref = truth[dims.SOIL_MOISTURE].reindex({dims.TIME: sm[dims.TIME]}).assign_coords(
        {dims.Y: sm[dims.Y], dims.X: sm[dims.X]}).load()
    est, ref = xr.broadcast(sm, ref)
    ok = (est.notnull() & ref.notnull()).values
    e, r = est.values[ok], ref.values[ok]
    assert ok.sum() > 1000
    assert np.all((e >= 0.0) & (e <= 0.65))  # volumetric water content, m3 m-3
    assert np.corrcoef(e, r)[0, 1] > 0.6
    assert abs(float(np.mean(e - r))) < 0.03

    # The summary plot was rendered.
    assert any("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))

    # Step 5: the notebook's cluster is gone from the gateway.
    assert f"cluster {result['cluster']} still running: False" in text


def test_gateway_notebook_wrong_password_is_one_line(gateway_server, kernel_path, tmp_path,
                                                     monkeypatch):
    wrong = "wrong-" + gateway_server.password[::-1]
    root = tmp_path / "untouched"
    nb, err = _execute(kernel_path, _env(gateway_server, root, wrong), monkeypatch,
                       tmp_path / "gateway.executed.ipynb", timeout=120)
    assert err is not None, "the notebook ran through with a wrong password"
    cells = [c for c in nb.cells if c.cell_type == "code"]
    failed = next(i for i, c in enumerate(cells) if "cluster.connect(cfg)" in c.source)
    assert all(not c.get("outputs") for c in cells[failed + 1:])  # execution stopped there
    outputs = cells[failed]["outputs"]
    assert [o.get("name") for o in outputs] == ["stderr"]  # no error output with a traceback
    assert outputs[0]["text"] == (
        f"error: {gateway_server.address}: the gateway rejected the credentials of user "
        f"'{gateway_server.username}' (HTTP 401)\n")
    assert "Traceback" not in str(err) and wrong not in str(err)
    everything = "\n".join(_texts(nb))
    assert "Traceback" not in everything and "File \"" not in everything
    assert wrong not in everything and gateway_server.password not in everything
    assert not root.exists()  # it stopped before the job: nothing was simulated


# --- the notebook helpers, without a gateway (in-process cluster: fast) ----------------------
def _sum_of_range(n: int, chunk: int) -> int:
    import dask.array as da

    return int(da.arange(n, chunks=chunk).sum().compute())  # default scheduler on purpose


def _fail(root: str) -> None:
    from pipeline import errors

    raise errors.StoreNotFound(f"{root}/tb/smap.zarr: no SMAP TB store under the archive root")


@pytest.fixture(scope="module")
def inprocess_client():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address="127.0.0.1:0") as lc, \
            distributed.Client(lc, set_as_default=False) as client:
        yield client


def test_run_with_progress_sends_the_jobs_graph_to_the_client(inprocess_client):
    from pipeline.runner import notebook as nb

    lines: list[str] = []
    res = nb.run_with_progress(inprocess_client, _sum_of_range, 1000, chunk=100, poll_s=0.05,
                               out=lines.append)
    assert res.value == 999 * 1000 // 2  # Gauss: 0 + 1 + … + (n-1) = n(n-1)/2
    # The client was not the default one, yet every chunk's task ran on its worker.
    assert res.workers == tuple(inprocess_client.scheduler_info()["workers"])
    assert sum(n for k, n in res.by_prefix.items() if k.startswith("arange")) == 10  # chunks
    assert lines[-1].startswith("done in ") and f"{res.n_tasks} tasks ran on 1 worker" in lines[-1]


def test_run_with_progress_reraises_the_jobs_error(inprocess_client):
    from pipeline import errors
    from pipeline.runner import notebook as nb

    with pytest.raises(errors.StoreNotFound, match="no SMAP TB store"):
        nb.run_with_progress(inprocess_client, _fail, "/nowhere", poll_s=0.05,
                             out=lambda _: None)


def test_summarise_counts_match_numpy():
    import xarray as xr

    from pipeline import dims, qc
    from pipeline.runner import notebook as nb

    rng = np.random.default_rng(0)
    sm = rng.uniform(0.05, 0.5, (20, 2, 3, 4)).astype("float32")
    flags = np.zeros(sm.shape, "uint16")
    flags[:5] |= int(qc.QC.INSUFFICIENT_OBS)  # 5 days not observed
    sm[:5] = np.nan
    sm[5:8, 0] = np.nan  # observed but not retrieved
    flags[5:8, 0] |= int(qc.QC.FROZEN_GROUND)
    ds = xr.Dataset(
        {dims.SOIL_MOISTURE: ((dims.TIME, dims.PASS, dims.Y, dims.X), sm),
         dims.QUALITY_FLAG: ((dims.TIME, dims.PASS, dims.Y, dims.X), flags)},
        coords={dims.PASS: ["am", "pm"]})
    s = nb.summarise(ds)
    n_obs, n_ret = 15 * 2 * 12, 15 * 2 * 12 - 3 * 12
    assert s["retrieved_fraction"] == round(n_ret / n_obs, 3)
    assert s["qc_counts"] == {"INSUFFICIENT_OBS": 5 * 2 * 12, "FROZEN_GROUND": 3 * 12}
    assert s["soil_moisture_by_pass"]["pm"]["mean"] == round(float(np.nanmean(sm[:, 1])), 4)
    png = nb.plot_summary(ds)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
