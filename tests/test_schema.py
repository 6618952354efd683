"""pipeline.schema: conformant datasets pass; every kind of violation is reported, all at once."""

from __future__ import annotations

import re

import dask
import numpy as np
import pytest
import xarray as xr

from pipeline import dims, errors, grid, qc, schema, sensors

DAYS = np.arange("2016-01-01", "2016-01-04", dtype="datetime64[D]")
WIN = grid.Window(200, 204, 100, 105)


def _tb(sensor: str = "gmi") -> xr.Dataset:
    ds = schema.tb_template(sensor, "N36", WIN, DAYS)
    ds["tb"][:] = 250.0
    ds["local_time"][:] = 6.0
    return ds


def _messages(ds, spec, **kw) -> list[str]:
    with pytest.raises(errors.SchemaError) as ei:
        schema.check(ds, spec, context="mem://x.zarr", **kw)
    msg = str(ei.value)
    assert "\n" not in msg and msg.startswith("mem://x.zarr: ")
    n = int(re.match(r"mem://x.zarr: (\d+) problems?: ", msg).group(1))
    parts = msg.split(": ", 2)[2].split("; ")
    assert len(parts) == n
    return parts


def _gridded(variables: dict, *, with_pass: bool = True, attrs: dict | None = None):
    base = grid.grid_coords("N36", WIN)
    base = base.assign_coords(time=("time", DAYS.astype("datetime64[ns]")))
    if with_pass:
        base = base.assign_coords({dims.PASS: ("pass", np.array(dims.PASSES, dtype=object))})
    shape = {d: base.sizes[d] for d in base.dims}
    for name, (dd, dtype, units, value, extra) in variables.items():
        arr = np.full([shape[d] for d in dd], value, dtype)
        base[name] = (dd, arr, {"units": units, "long_name": name, "grid_mapping": "crs",
                                **extra})
    base.attrs.update(attrs or {})
    return base


_TPYX = ("time", "pass", "y", "x")
_TYX = ("time", "y", "x")
_FLAGS = ("uint16", "1", 0, {})


def conformant(kind: str) -> tuple[xr.Dataset, schema.DatasetSpec]:
    """A tiny, hand-built dataset that follows docs/data-contract.md for ``kind``."""
    if kind == "static":
        v = {n: (("y", "x"), "float32", "1", 0.5, {}) for n in
             ("land_fraction", "water_fraction", "clay_fraction", "sand_fraction")}
        v["landcover"] = (("y", "x"), "int16", "1", 7, {})
        v["pft"] = (("y", "x"), "int8", "1", 5, {})
        v["bulk_density"] = (("y", "x"), "float32", "g cm-3", 1.3, {})
        v["elevation"] = (("y", "x"), "float32", "m", 450.0, {})
        return _gridded(v, with_pass=False), schema.STATIC
    if kind == "truth":
        v = {"soil_moisture": (_TPYX, "float32", "m3 m-3", 0.2, {}),
             "soil_temperature": (_TPYX, "float32", "K", 270.0, {}),
             "surface_temperature": (_TPYX, "float32", "K", 268.0, {}),
             "frozen": (_TPYX, "int8", "1", 1, {}),
             "snow_water_equivalent": (_TYX, "float32", "mm", 30.0, {}),
             "snow_wet": (_TYX, "int8", "1", 0, {}),
             "lake_ice_fraction": (_TYX, "float32", "1", 0.0, {}),
             "vod": (_TYX, "float32", "1", 0.3, {}),
             "gpp": (_TYX, "float32", "g C m-2 d-1", 0.0, {})}
        return _gridded(v, attrs={"calibration": "{}"}), schema.TRUTH
    if kind == "ft":
        v = {"thaw_probability": (_TPYX, "float32", "1", 0.9, {}),
             "ft_state": (_TPYX, "int8", "1", 1, {"_FillValue": np.int8(-1)}),
             "ft_state_npr": (_TPYX, "int8", "1", 0, {"_FillValue": np.int8(-1)}),
             "npr": (_TPYX, "float32", "1", 0.02, {}),
             "quality_flag": (_TPYX, *_FLAGS)}
        return _gridded(v), schema.FT_PRODUCT
    if kind == "sm_smap":
        v = {"soil_moisture": (_TPYX, "float32", "m3 m-3", 0.25, {}),
             "vod": (_TPYX, "float32", "1", 0.4, {}), "quality_flag": (_TPYX, *_FLAGS)}
        return _gridded(v), schema.SM_SMAP_PRODUCT
    if kind == "sm_harmonised":
        v = {"soil_moisture": (_TPYX, "float32", "m3 m-3", 0.25, {})}
        return _gridded(v, attrs={"sensor": "amsr2"}), schema.SM_HARMONISED
    if kind == "sm_fused":
        v = {"soil_moisture": (_TYX, "float32", "m3 m-3", 0.25, {}),
             "soil_moisture_uncertainty": (_TYX, "float32", "m3 m-3", 0.04, {}),
             "n_sources": (_TYX, "uint8", "1", 2, {}),
             "source_mask": (_TYX, "uint8", "1", 0b10100, {}),
             "land_coverage": (("time",), "float32", "1", 0.8, {})}
        return _gridded(v, with_pass=False), schema.SM_FUSED
    if kind == "carbon":
        v = {n: (_TYX, "float32", "g C m-2 d-1", 1.0, {}) for n in ("nee", "gpp", "rh", "reco")}
        return _gridded(v, with_pass=False), schema.CARBON_PRODUCT
    if kind in ("insitu", "towers"):
        d = "station" if kind == "insitu" else "site"
        ids = np.array(["A", "B"], dtype=object)
        ds = xr.Dataset(coords={d: (d, ids), "time": ("time", DAYS.astype("datetime64[ns]")),
                                "lat": (d, np.float32([64.9, 68.6]), {"units": "degrees_north"}),
                                "lon": (d, np.float32([-147.9, -149.6]),
                                        {"units": "degrees_east"})})
        ds["crs"] = grid.crs_variable(4326)

        def put(name, units, value, dtype="float32", **attrs):
            ds[name] = ((d, "time"), np.full((2, DAYS.size), value, dtype),
                        {"units": units, "long_name": name, "grid_mapping": "crs", **attrs})

        if kind == "insitu":
            ds = ds.assign_coords(elevation=("station", np.float32([200, 760]), {"units": "m"}))
            put("soil_moisture", "m3 m-3", 0.3, depth_m=0.05)
            put("soil_temperature", "K", 271.0, depth_m=0.05)
            put("soil_moisture_flag", "1", 0, "uint8")
            return ds, schema.INSITU
        ds = ds.assign_coords(igbp=("site", np.array(["ENF", "WET"], dtype=object)),
                              pft=("site", np.int8([1, 6])))
        for n in ("nee", "gpp", "reco"):
            put(n, "g C m-2 d-1", 1.5)
            put(f"{n}_qc", "1", 0.9)
        put("ta", "K", 280.0)
        put("tmin", "K", 275.0)
        put("sw_in", "W m-2", 200.0)
        put("vpd", "Pa", 500.0)
        return ds, schema.TOWERS
    if kind == "validation":
        ds = xr.Dataset({"soil_moisture": (("station", "metric"), np.zeros((2, 3), "float32"),
                                           {"units": "m3 m-3", "long_name": "SM metrics"})},
                        coords={"station": ["A", "B"], "metric": ["n", "r", "ubrmsd"]})
        return ds, schema.VALIDATION
    raise KeyError(kind)


KINDS = ["static", "truth", "ft", "sm_smap", "sm_harmonised", "sm_fused", "carbon", "insitu",
         "towers", "validation"]


@pytest.mark.parametrize("sensor", sensors.archive_sensors())
def test_tb_template_conforms(sensor):
    ds = schema.tb_template(sensor, "M25", grid.Window(100, 103, 200, 204), DAYS)
    schema.check(ds, schema.tb_spec(sensor), context=sensor)
    s = sensors.get(sensor)
    assert list(ds.channel.values) == list(s.channel_labels)
    np.testing.assert_allclose(ds.frequency_ghz.values, s.frequencies_ghz, rtol=1e-6)
    assert ds.tb.dtype == np.float32 and bool(ds.tb.isnull().all())
    assert ds.quality_flag.dtype == np.uint16 and "_FillValue" not in ds.quality_flag.attrs
    assert ds.time.dtype == np.dtype("datetime64[ns]")
    assert ds.attrs["grid"] == "M25" and ds.attrs["grid_window"] == [100, 103, 200, 204]
    assert ds.attrs["incidence_angle_deg"] == s.incidence_angle_deg


def test_tb_template_survives_zarr_round_trip(tmp_path):
    _tb().to_zarr(tmp_path / "gmi.zarr", zarr_format=3, consolidated=True)
    back = xr.open_zarr(tmp_path / "gmi.zarr", zarr_format=3)
    schema.check(back, schema.tb_spec("gmi"), context="gmi", values="all")


@pytest.mark.parametrize("kind", KINDS)
def test_conformant_datasets_pass(kind):
    ds, spec = conformant(kind)
    schema.check(ds, spec, context=kind, values="all")


def test_ft_state_masked_on_read_still_conforms(tmp_path):
    ds, spec = conformant("ft")
    ds.to_zarr(tmp_path / "ft.zarr", zarr_format=3, consolidated=True)
    back = xr.open_zarr(tmp_path / "ft.zarr", zarr_format=3)
    assert back.ft_state.dtype.kind == "f"  # xarray masks -1 → NaN; the stored dtype is int8
    schema.check(back, spec, context="ft", values="all")


# Each violation: (mutator, expected substring).
def _drop(name):
    return lambda ds: ds.drop_vars(name)


def _attr(var, key, value):
    def f(ds):
        ds[var].attrs[key] = value
        return ds
    return f


TB_VIOLATIONS = {
    "units": (_attr("tb", "units", "degC"), "variable 'tb' units 'degC' != 'K'"),
    "missing var": (_drop("local_time"), "variable 'local_time' missing"),
    "dims": (lambda ds: ds.assign(local_time=ds.local_time.transpose("pass", "time", "y", "x")),
             "variable 'local_time' dims ('pass', 'time', 'y', 'x') != (time, pass, y, x)"),
    "dtype": (lambda ds: ds.assign(tb=ds.tb.astype("float64")), "'tb' dtype float64 != float32"),
    "flag fill": (_attr("quality_flag", "_FillValue", 0), "'quality_flag' must have no _FillValue"),
    "flag dtype": (lambda ds: ds.assign(quality_flag=ds.quality_flag.astype("int32")),
                   "'quality_flag' dtype int32 != uint16"),
    "grid_mapping": (lambda ds: (ds.tb.attrs.pop("grid_mapping"), ds)[1],
                     "variable 'tb' grid_mapping None != 'crs'"),
    "epsg str": (_attr("crs", "epsg_code", "6931"), "'epsg_code' '6931' is not an integer"),
    "epsg value": (_attr("crs", "epsg_code", 6933), "epsg_code 6933 != 6931"),
    "spatial_ref": (lambda ds: (ds.crs.attrs.pop("spatial_ref"), ds)[1],
                    "variable 'crs' attr 'spatial_ref' missing"),
    "no crs": (_drop("crs"), "variable 'crs' missing"),
    "window": (lambda ds: ds.assign_attrs(grid_window=[201, 205, 100, 105]),
               "coordinate 'y' does not match grid N36 window [201, 205, 100, 105]"),
    "grid name": (lambda ds: ds.assign_attrs(grid="N37"), "attr 'grid' 'N37' is not one of"),
    "missing channel": (lambda ds: ds.drop_sel(channel="23.8V"),
                        "channels ['23.8V'] of sensor gmi missing"),
    "frequency": (lambda ds: ds.assign_coords(frequency_ghz=ds.frequency_ghz + 1),
                  "channel 10.65V frequency_ghz"),
    "range": (lambda ds: ds.assign(tb=ds.tb.where(ds.channel != "89.0H", 500.0)),
              "'tb' values [250, 500] outside valid range [0, 400]"),
    "local_time range": (lambda ds: ds.assign(local_time=ds.local_time + 30),
                         "'local_time' values [36, 36] outside"),
    "pass": (lambda ds: ds.assign_coords({"pass": ["am", "noon"]}),
             "coordinate 'pass' values ['noon']"),
    "not midnight": (lambda ds: ds.assign_coords(time=ds.time + np.timedelta64(6, "h")),
                     "'time' has times not at 00:00"),
    "attr": (lambda ds: ds.drop_attrs(deep=False), "attr 'sensor' missing"),
    "attr value": (lambda ds: ds.assign_attrs(sensor="amsr2"), "attr 'sensor' is 'amsr2'"),
    "long_name": (lambda ds: (ds.local_time.attrs.pop("long_name"), ds)[1],
                  "variable 'local_time' has no long_name"),
}


@pytest.mark.parametrize("case", sorted(TB_VIOLATIONS))
def test_each_tb_violation_is_reported(case):
    mutate, expected = TB_VIOLATIONS[case]
    parts = _messages(mutate(_tb()), schema.tb_spec("gmi"))
    assert any(expected in p for p in parts), parts


def test_all_violations_in_one_message():
    ds = _tb()
    for case in ("units", "missing var", "flag fill", "epsg str", "missing channel", "range"):
        ds = TB_VIOLATIONS[case][0](ds)
    parts = _messages(ds, schema.tb_spec("gmi"))
    assert len(parts) == 6
    for case in ("units", "missing var", "flag fill", "epsg str", "missing channel", "range"):
        assert any(TB_VIOLATIONS[case][1] in p for p in parts), (case, parts)


OTHER_VIOLATIONS = {
    "static": (_attr("landcover", "units", "class"), "'landcover' units 'class' != '1'"),
    "truth": (_drop("frozen"), "variable 'frozen' missing"),
    "ft": (lambda ds: (ds.ft_state.attrs.pop("_FillValue"), ds)[1],
           "'ft_state' has no _FillValue (expected -1)"),
    "sm_smap": (lambda ds: ds.assign(soil_moisture=ds.soil_moisture + 1),
                "'soil_moisture' values [1.25, 1.25] outside valid range [0, 1]"),
    "sm_harmonised": (lambda ds: ds.drop_attrs(deep=False), "attr 'sensor' missing"),
    "sm_fused": (lambda ds: ds.assign(n_sources=ds.n_sources + 5),
                 "'n_sources' values [7, 7] outside valid range [0, 5]"),
    "carbon": (_attr("rh", "units", "kg C m-2 s-1"), "'rh' units 'kg C m-2 s-1'"),
    "insitu": (lambda ds: (ds.soil_moisture.attrs.pop("depth_m"), ds)[1],
               "variable 'soil_moisture' attr 'depth_m' missing"),
    "towers": (_attr("crs", "epsg_code", 6931), "epsg_code 6931 != 4326"),
    "validation": (lambda ds: ds.assign(r=(("metric",), np.zeros(3), {"units": "1",
                                                                      "long_name": "r"})),
                   "variable 'r' dims ('metric',) != (station, metric) or (site, metric)"),
}


@pytest.mark.parametrize("kind", KINDS)
def test_other_specs_report_violations(kind):
    ds, spec = conformant(kind)
    mutate, expected = OTHER_VIOLATIONS[kind]
    parts = _messages(mutate(ds), spec, values="all")
    assert any(expected in p for p in parts), parts


def test_ft_state_values_outside_allowed():
    ds, spec = conformant("ft")
    ds["ft_state"][0, 0, 0, 0] = 3
    parts = _messages(ds, spec)
    assert parts == ["variable 'ft_state' has values [3] not in [-1, 0, 1]"]


def test_insitu_requires_some_variable():
    ds, spec = conformant("insitu")
    parts = _messages(ds.drop_vars(["soil_moisture", "soil_temperature"]), spec)
    assert any("none of the variables" in p for p in parts)


def test_lazy_values_are_not_read_by_default():
    ds = _tb()
    ds["tb"] = ds.tb.chunk({"time": 1}) + 1000.0  # out of range, only visible by computing
    ds["local_time"] = ds.local_time.chunk({"time": 1})

    def forbid(*a, **k):
        raise AssertionError("schema.check computed a dask array")

    with dask.config.set(scheduler=forbid):
        schema.check(ds, schema.tb_spec("gmi"), context="lazy")
    parts = _messages(ds, schema.tb_spec("gmi"), values="all")
    assert any("'tb' values [1250, 1250]" in p for p in parts)


def test_calibrated_spec_needs_calibrated_to():
    ds = _tb()
    parts = _messages(ds, schema.calibrated_spec("gmi"))
    assert parts == ["attr 'calibrated_to' missing"]
    schema.check(ds.assign_attrs(calibrated_to="smap"), schema.calibrated_spec("gmi"), context="c")


def test_qc_flag_attrs_in_template():
    ds = _tb()
    assert ds.quality_flag.attrs["flag_masks"].tolist() == [int(m) for m in qc.QC]
