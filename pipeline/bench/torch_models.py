"""PyTorch twins of the JAX models, for the benchmarks only (torch is not a tbcube dependency).

Each twin has the same layers and receives the SAME weights, copied from the JAX parameter
pytree, so the throughput comparison runs the same arithmetic on the same batches
(tests/test_bench.py checks that the outputs agree to ~1e-4).

Layout conversions (Flax → PyTorch):

* ``nnx.Conv`` kernel ``[k, in, out]`` → ``Conv1d.weight [out, in, k]``.  Flax "SAME" padding of
  a stride-2, k = 8 convolution on an even length is 3 left / 3 right → ``padding=3``.
* ``nnx.ConvTranspose`` (``lax.conv_transpose``, kernel NOT flipped) with "SAME" padding on the
  2×-dilated input pads ``k + s − 2`` in total, ``ceil(·/2)`` on the left: for k = 8, s = 2 that
  is 4 / 4, which is ``ConvTranspose1d(padding=3)`` (k − 1 − 3 = 4 each side) with the kernel
  flipped along time (PyTorch's transposed convolution is the gradient of a correlation, i.e. a
  correlation with the flipped kernel) → ``weight [in, out, k] = flip(kernel).transpose``.
  For s = 1 it is a plain correlation padded 4 left / 3 right: ``F.pad`` + ``Conv1d``.
* ``nnx.BatchNorm`` (inference: running mean/var, ε from the config) → ``BatchNorm1d.eval()``.
* ``nnx.OptimizedLSTMCell``: ``dense_i`` (no bias) and ``dense_h`` (bias) kernels
  ``[in, 4h]`` with gate order i, f, g, o — the same order as ``nn.LSTM`` — →
  ``weight_ih = dense_i.kernel.T``, ``weight_hh = dense_h.kernel.T``, ``bias_hh = bias``,
  ``bias_ih = 0``; zero initial carry in both.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["TorchAutoencoder", "TorchLSTM", "available", "autoencoder_from_jax",
           "lstm_from_jax", "torch_version"]


def available() -> bool:
    """Whether PyTorch can be imported."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def torch_version() -> str | None:
    """The installed PyTorch version (None if missing)."""
    try:
        import torch
    except ImportError:
        return None
    return str(torch.__version__)


def _t(a: Any):
    import torch

    return torch.from_numpy(np.ascontiguousarray(np.asarray(a, np.float32)))


def _build_classes():
    import torch
    from torch import nn
    from torch.nn import functional as F

    class _TorchAutoencoder(nn.Module):
        """FTC-Encoder in PyTorch: x [batch, time, in] → P(thaw) [batch, time]."""

        def __init__(self, in_channels: int, channels: int = 3, filters=(64, 32), k: int = 8,
                     eps: float = 1e-3):
            super().__init__()
            f1, f2 = filters
            self.channels = channels
            self.conv1 = nn.Conv1d(in_channels, f1, k, stride=2, padding=(k - 2) // 2)
            self.bn1 = nn.BatchNorm1d(f1, eps=eps)
            self.conv2 = nn.Conv1d(f1, f2, k, stride=2, padding=(k - 2) // 2)
            self.bn2 = nn.BatchNorm1d(f2, eps=eps)
            self.deconv1 = nn.ConvTranspose1d(f2, f2, k, stride=2, padding=k // 2 - 1)
            self.bn3 = nn.BatchNorm1d(f2, eps=eps)
            self.deconv2 = nn.ConvTranspose1d(f2, f1, k, stride=2, padding=k // 2 - 1)
            self.bn4 = nn.BatchNorm1d(f1, eps=eps)
            self.out = nn.Conv1d(f1, channels, k, stride=1, padding=0)
            self.k = k

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            n_time = x.shape[1]
            pad = (-n_time) % 4
            h = x.transpose(1, 2)                                   # [b, c, t]
            if pad:
                h = F.pad(h, (0, pad), mode="replicate")
            xin = h
            h = self.bn1(F.relu(self.conv1(h)))
            h = self.bn2(F.relu(self.conv2(h)))
            h = self.bn3(F.relu(self.deconv1(h)))
            h = self.bn4(F.relu(self.deconv2(h)))
            left = (self.k - 1 + 1) // 2                            # "SAME", stride 1: 4 / 3
            h = self.out(F.pad(h, (left, self.k - 1 - left)))
            e = ((xin[:, : self.channels] - h) ** 2).mean(dim=1)[:, :n_time]
            return -torch.expm1(-e)

    class _TorchLSTM(nn.Module):
        """Stacked ``nn.LSTM`` + linear head: x [batch, time, feature] → y [batch, time]."""

        def __init__(self, n_features: int, hidden: int, num_layers: int,
                     target_mean: float, target_std: float):
            super().__init__()
            self.lstm = nn.LSTM(n_features, hidden, num_layers=num_layers, batch_first=True)
            self.head = nn.Linear(hidden, 1)
            self.target_mean, self.target_std = float(target_mean), float(target_std)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h, _ = self.lstm(x)
            return self.target_mean + self.target_std * self.head(h)[..., 0]

    return _TorchAutoencoder, _TorchLSTM


def TorchAutoencoder(*args, **kw):  # noqa: N802 — a class built lazily (torch is optional)
    """Construct the PyTorch autoencoder twin (see the module docstring)."""
    return _build_classes()[0](*args, **kw)


def TorchLSTM(*args, **kw):  # noqa: N802
    """Construct the PyTorch LSTM twin (see the module docstring)."""
    return _build_classes()[1](*args, **kw)


def autoencoder_from_jax(params: dict, config) -> Any:
    """A PyTorch autoencoder in eval mode carrying the JAX ``params`` of ``config``.

    Args:
      params: ``{"params": …, "batch_stats": …}`` from :func:`models.autoencoder.init`.
      config: The :class:`models.autoencoder.AutoencoderConfig`.
    """
    import torch

    m = TorchAutoencoder(config.in_channels, config.channels, tuple(config.filters),
                         config.kernel_days, config.bn_epsilon)
    p, s = params["params"], params["batch_stats"]
    with torch.no_grad():
        for name in ("conv1", "conv2"):
            getattr(m, name).weight.copy_(_t(np.transpose(np.asarray(p[name]["kernel"]),
                                                          (2, 1, 0))))
            getattr(m, name).bias.copy_(_t(p[name]["bias"]))
        for name in ("deconv1", "deconv2"):
            k = np.asarray(p[name]["kernel"])[::-1]                 # flip time
            getattr(m, name).weight.copy_(_t(np.transpose(k, (1, 2, 0))))
            getattr(m, name).bias.copy_(_t(p[name]["bias"]))
        m.out.weight.copy_(_t(np.transpose(np.asarray(p["out"]["kernel"]), (2, 1, 0))))
        m.out.bias.copy_(_t(p["out"]["bias"]))
        for i in range(1, 5):
            bn = getattr(m, f"bn{i}")
            bn.weight.copy_(_t(p[f"bn{i}"]["scale"]))
            bn.bias.copy_(_t(p[f"bn{i}"]["bias"]))
            bn.running_mean.copy_(_t(s[f"bn{i}"]["mean"]))
            bn.running_var.copy_(_t(s[f"bn{i}"]["var"]))
    return m.eval()


def lstm_from_jax(params: dict, config) -> Any:
    """A PyTorch LSTM twin in eval mode carrying the JAX ``params`` of ``config``.

    Args:
      params: ``{"params": …}`` from :func:`models.lstm.init`.
      config: The :class:`models.lstm.LSTMConfig`.
    """
    import torch

    m = TorchLSTM(config.n_features, config.hidden, config.num_layers, config.target_mean,
                  config.target_std)
    p = params["params"]
    with torch.no_grad():
        for i in range(config.num_layers):
            layers = p["layers"]
            cell = (layers[i] if i in layers else layers[str(i)])["cell"]
            getattr(m.lstm, f"weight_ih_l{i}").copy_(_t(np.asarray(cell["dense_i"]["kernel"]).T))
            getattr(m.lstm, f"weight_hh_l{i}").copy_(_t(np.asarray(cell["dense_h"]["kernel"]).T))
            getattr(m.lstm, f"bias_hh_l{i}").copy_(_t(cell["dense_h"]["bias"]))
            getattr(m.lstm, f"bias_ih_l{i}").zero_()
        m.head.weight.copy_(_t(np.asarray(p["head"]["kernel"]).T))
        m.head.bias.copy_(_t(p["head"]["bias"]))
    return m.eval()
