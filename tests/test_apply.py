"""pipeline.apply: one load + one compile per process, identical results on any chunking."""

from __future__ import annotations

import dask
import hypothesis
import hypothesis.strategies as st
import numpy as np
import pytest
import xarray as xr

from pipeline import apply, dims, errors
from pipeline.runner import placement
from tests.fixtures.dask import layer_resources


def _features(seed=0, ny=5, nx=6, nt=40):
    rng = np.random.default_rng(seed)
    h = 245 + rng.normal(0, 5, (ny, nx, nt))
    v = 258 + rng.normal(0, 3, (ny, nx, nt))
    data = np.stack([h, v, v - h], axis=-1).astype(np.float32)
    return xr.DataArray(data, dims=(dims.Y, dims.X, dims.TIME, dims.FEATURE),
                        coords={dims.FEATURE: ["tbh", "tbv", "tbv_minus_tbh"]})


FEATURES = _features()


def _reference(ref):
    """Independent eager reference: normalise and run the model on all pixels at once."""
    import jax

    from models import autoencoder as ae
    from models import registry

    bundle = apply.load_bundle(ref)
    cfg = registry.config_from_dict(bundle.name, bundle.config)
    x = (FEATURES.values - np.array(bundle.norm_stats["mean"], np.float32)) / np.array(
        bundle.norm_stats["std"], np.float32)
    out = jax.jit(ae.apply, static_argnames="config")(bundle.params, x.reshape(-1, 40, 3),
                                                      config=cfg)
    return np.asarray(out).reshape(5, 6, 40)


def test_eager_matches_independent_reference_and_compiles_once(ft_model_ref):
    apply.clear_cache()
    got = apply.apply_sequence_model(FEATURES, ft_model_ref, batch=8)
    assert got.dims == (dims.Y, dims.X, dims.TIME) and got.dtype == np.float32
    np.testing.assert_allclose(got.values, _reference(ft_model_ref), rtol=1e-4, atol=1e-5)
    # 30 pixels in batches of 8: ragged tail padded → a single XLA compilation.
    fn = apply._compiled(ft_model_ref)
    assert fn._cache_size() == 1
    apply.apply_sequence_model(FEATURES.isel({dims.Y: slice(0, 3)}), ft_model_ref, batch=8)
    assert fn._cache_size() == 1


def test_threaded_dask_matches_eager_on_irregular_chunks(ft_model_ref):
    eager = apply.apply_sequence_model(FEATURES, ft_model_ref, batch=8)
    lazy = apply.apply_sequence_model(FEATURES.chunk({dims.Y: (2, 3), dims.X: (1, 4, 1)}),
                                      ft_model_ref, batch=8)
    assert lazy.chunks is not None
    with dask.config.set(scheduler="threads"):
        xr.testing.assert_allclose(eager, lazy.compute(), rtol=1e-5)


def test_time_split_across_chunks_is_refused(ft_model_ref):
    with pytest.raises(ValueError, match="core dimension"):
        apply.apply_sequence_model(FEATURES.chunk({dims.TIME: 20}), ft_model_ref)


def test_tampered_checkpoint_is_a_checksum_error(ft_model_ref, tmp_path):
    data = bytearray(open(ft_model_ref.uri, "rb").read())
    data[100] ^= 0xFF
    bad = tmp_path / "bad.tbm"
    bad.write_bytes(bytes(data))
    with pytest.raises(errors.ChecksumError, match="tampered"):
        apply.load_bundle(apply.ModelRef(str(bad), ft_model_ref.sha256))


@hypothesis.settings(max_examples=4, deadline=None,
                     suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture])
@hypothesis.given(cy=st.integers(1, 5), cx=st.integers(1, 6), batch=st.sampled_from([4, 16]))
def test_distributed_equals_eager_on_any_chunking(dask_client, ft_model_ref, cy, cx, batch):
    eager = apply.apply_sequence_model(FEATURES, ft_model_ref, batch=batch)
    lazy = apply.apply_sequence_model(FEATURES.chunk({dims.Y: cy, dims.X: cx}), ft_model_ref,
                                      batch=batch)
    got = dask_client.compute(lazy).result()
    xr.testing.assert_allclose(eager, got, rtol=1e-5)
    # One load + jit per worker process, however many blocks it ran.
    loads = dask_client.run(apply.loads_in_process)
    assert set(loads.values()) <= {0, 1} and sum(loads.values()) >= 1


class _FakeClient:
    def __init__(self, resources):
        self._info = {"workers": {f"tcp://w{i}": {"resources": r}
                                  for i, r in enumerate(resources)}}

    def scheduler_info(self, n_workers=-1):
        return self._info


def test_gpu_placement_only_when_workers_advertise_gpus(dask_client, ft_model_ref):
    assert placement.model_resources(None) is None
    assert placement.model_resources(_FakeClient([{}, {}])) is None
    assert placement.model_resources(_FakeClient([{}, {"GPU": 1}])) == {"GPU": 1}
    assert placement.model_resources(dask_client) is None  # the CPU test cluster
    lazy = apply.apply_sequence_model(FEATURES.chunk({dims.Y: 2}), ft_model_ref,
                                      resources={"GPU": 1})
    assert {"GPU": 1} in layer_resources(lazy).values()
