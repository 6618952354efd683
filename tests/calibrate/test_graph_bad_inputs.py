"""The calibration graph on stores that are not what it relies on: one-line errors."""

from __future__ import annotations

import shutil

import pytest

from pipeline.io import stores


def test_a_tb_store_on_other_cells_is_refused_before_fitting(sim_tiny, tmp_path, capsys):
    """AMSR2 moved one column east: collocation pairs cells by position, so it is refused
    (it was a reshape traceback)."""
    from pipeline.cli import main

    root = str(tmp_path / "archive")
    shutil.copytree(sim_tiny, root)
    url = stores.tb_url(root, "amsr2")
    ds = stores.open_dataset(url).load()
    shutil.rmtree(url)
    stores.write_dataset(ds.assign_coords(x=ds["x"] + 36032.22), url)
    with pytest.raises(SystemExit) as e:
        main(["calibrate", "fit", "--root", root])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"error: {url}: not on the cells of the archive's static store: "
                              "dim 'x' coordinates differ (x[0] = ")
    assert not any("Traceback" in ln for ln in err)
