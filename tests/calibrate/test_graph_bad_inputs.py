"""The calibration graph on stores that are not what it relies on: one-line errors."""

from __future__ import annotations

from pipeline.io import stores
from tests.fixtures.common import archive_copy, cli_error_lines, rewrite_store


def test_a_tb_store_on_other_cells_is_refused_before_fitting(sim_tiny, tmp_path, capsys):
    """AMSR2 moved one column east: collocation pairs cells by position, so it is refused
    (it was a reshape traceback)."""
    root = archive_copy(sim_tiny, tmp_path / "archive")
    url = rewrite_store(stores.tb_url(root, "amsr2"),
                        lambda ds: ds.assign_coords(x=ds["x"] + 36032.22))
    err = cli_error_lines(["calibrate", "fit", "--root", root], capsys)
    assert err[-1].startswith(f"error: {url}: not on the cells of the archive's static store: "
                              "dim 'x' coordinates differ (x[0] = ")
    assert not any("Traceback" in ln for ln in err)
