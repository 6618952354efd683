"""GPU numerics (marked ``gpu``: run only where JAX sees a GPU, skipped elsewhere with a reason).

Run them on a GPU machine with ``JAX_PLATFORMS=cuda,cpu`` (the Makefile defaults to ``cpu``).
The autoencoder and the LSTM must give the same outputs on the GPU as on the CPU for the same
weights and inputs (float32; XLA may reassociate reductions, hence the 1e-4 tolerance).
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

pytestmark = pytest.mark.gpu


def _on(platform: str, fn, *args):
    import jax

    dev = jax.devices(platform)[0]
    args = jax.device_put(args, dev)
    return np.asarray(jax.jit(fn)(*args))


def test_autoencoder_same_on_gpu_and_cpu():
    from models import autoencoder as ae
    from pipeline.bench import inference

    cfg = ae.AutoencoderConfig()
    params = inference.random_params(ae.init(cfg, 0), 1, scale=0.1)
    x = np.random.default_rng(2).normal(size=(64, 368, cfg.in_channels)).astype(np.float32)
    fn = functools.partial(ae.apply, config=cfg)
    cpu, gpu = _on("cpu", fn, params, x), _on("gpu", fn, params, x)
    assert 0.05 < cpu.mean() < 0.95
    np.testing.assert_allclose(gpu, cpu, atol=1e-4, rtol=1e-4)


def test_lstm_same_on_gpu_and_cpu():
    from models import lstm
    from pipeline.bench import inference

    cfg = lstm.LSTMConfig(n_features=36, hidden=32, num_layers=1, target_mean=0.25,
                          target_std=0.1)
    params = inference.random_params(lstm.init(cfg, 0), 3)
    x = np.random.default_rng(4).normal(size=(64, 365, 36)).astype(np.float32)
    fn = functools.partial(lstm.apply, config=cfg)
    cpu, gpu = _on("cpu", fn, params, x), _on("gpu", fn, params, x)
    assert cpu.std() > 1e-3
    np.testing.assert_allclose(gpu, cpu, atol=1e-4, rtol=1e-4)
