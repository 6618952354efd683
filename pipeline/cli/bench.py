"""``tbcube bench {ft,lstm,sm-retrieval,all} --out DIR``: CPU throughput benchmarks as JSON.

\b
tbcube bench all --out bench-results        # what `make bench` runs
tbcube bench ft --out /tmp/b --pixels 512   # smaller block

Each writes ``{out}/bench-{name}.json`` (JAX number, PyTorch number, their ratio, batch shapes,
versions, cores, malloc settings) and prints its path last on stdout.  Without PyTorch the
JAX number is still written and one line on stderr says the comparison was skipped.
"""

from __future__ import annotations

import os

import click

from pipeline.cli._common import echo_progress

_OUT = click.option("--out", required=True, metavar="DIR", help="Output directory (or URL).")
_REPEATS = click.option("--repeats", type=click.IntRange(1, 100), default=5, show_default=True,
                        help="Timed repeats (median reported).")
_WARMUP = click.option("--warmup", type=click.IntRange(0, 100), default=2, show_default=True,
                       help="Untimed warm-up calls.")


@click.group("bench")
@click.pass_context
def bench(ctx: click.Context) -> None:
    """Inference throughput on CPU: JAX vs PyTorch (ft, lstm), SMAP retrieval kernel; GPU check."""
    if ctx.invoked_subcommand != "gpu":
        os.environ.setdefault("JAX_PLATFORMS", "cpu")


def _write(out: str, name: str, doc: dict) -> str:
    from pipeline.io import stores

    url = stores.write_json(stores.join(out, f"bench-{name}.json"), doc)
    j, t = doc.get("jax") or {}, doc.get("torch")
    key = next((k for k in j if k.endswith("_per_s")), None)
    if key:
        msg = f"{name}: JAX {j[key]:,.0f} {key}"
        if t:
            msg += (f", PyTorch {t[key]:,.0f} → JAX/PyTorch {doc['ratio_jax_over_torch']} "
                    f"(max |diff| {doc['max_abs_diff']:.2e})")
        echo_progress(msg)
    if doc.get("torch_note") and name != "sm-retrieval":
        click.echo(doc["torch_note"], err=True)
    return url


def _ft(out, pixels, days, batch, warmup, repeats) -> str:
    from pipeline.bench import inference

    echo_progress(f"ft: {pixels} pixels × {days} days, batch {batch}")
    return _write(out, "ft", inference.bench_ft(pixels, days, batch, warmup=warmup,
                                                repeats=repeats))


def _lstm(out, pixels, steps, batch, warmup, repeats) -> str:
    from pipeline.bench import inference

    echo_progress(f"lstm: {pixels} pixels × {steps} steps, batch {batch}")
    return _write(out, "lstm", inference.bench_lstm(pixels, steps, batch, warmup=warmup,
                                                    repeats=repeats))


def _sm(out, pixels, repeats) -> str:
    from pipeline import bench as b

    echo_progress(f"sm-retrieval: {pixels} pixels × 2 passes")
    doc = b.bench_sm_retrieval(n_pixels=pixels, repeats=repeats)
    url = _write(out, "sm-retrieval", doc)
    echo_progress(f"sm-retrieval: {doc['retrievals_per_s']:,.0f} retrievals/s "
                  f"(max |SM error| {doc['max_abs_sm_error']:.1e})")
    return url


@bench.command("ft")
@_OUT
@click.option("--pixels", type=click.IntRange(1), default=2048, show_default=True)
@click.option("--days", type=click.IntRange(4), default=368, show_default=True)
@click.option("--batch", type=click.IntRange(1), default=256, show_default=True)
@_WARMUP
@_REPEATS
def ft_cmd(out, pixels, days, batch, warmup, repeats) -> None:
    """Freeze/thaw autoencoder: pixel-days/s, JAX vs the PyTorch Conv1d twin."""
    click.echo(_ft(out, pixels, days, batch, warmup, repeats))


@bench.command("lstm")
@_OUT
@click.option("--pixels", type=click.IntRange(1), default=1024, show_default=True)
@click.option("--steps", type=click.IntRange(1), default=365, show_default=True)
@click.option("--batch", type=click.IntRange(1), default=256, show_default=True)
@_WARMUP
@_REPEATS
def lstm_cmd(out, pixels, steps, batch, warmup, repeats) -> None:
    """LSTM (36 features, hidden 32): pixel-steps/s, JAX vs torch.nn.LSTM."""
    click.echo(_lstm(out, pixels, steps, batch, warmup, repeats))


@bench.command("sm-retrieval")
@_OUT
@click.option("--pixels", type=click.IntRange(1), default=16384, show_default=True)
@_REPEATS
def sm_cmd(out, pixels, repeats) -> None:
    """SMAP τ-ω retrieval kernel: retrievals/s."""
    click.echo(_sm(out, pixels, repeats))


@bench.command("all")
@_OUT
@_WARMUP
@_REPEATS
def all_cmd(out, warmup, repeats) -> None:
    """ft, lstm and sm-retrieval with their default sizes; prints the JSON paths."""
    urls = [_ft(out, 2048, 368, 256, warmup, repeats), _lstm(out, 1024, 365, 256, warmup, repeats),
            _sm(out, 16384, repeats)]
    for u in urls:
        click.echo(u)


@bench.command("gpu")
@_OUT
@click.option("--root", required=True, metavar="DIR",
              help="Archive root (the tiny preset is simulated there when absent).")
@click.option("--ft-epochs", type=click.IntRange(1), default=3, show_default=True)
@click.option("--ft-max-steps", type=click.IntRange(1), default=None,
              help="Cap the autoencoder's optimiser steps (the check times inference, not "
                   "training; a short model serves as well).")
@click.option("--lstm-pixels", type=click.IntRange(1), default=16384, show_default=True)
@click.option("--kernel-pixels", type=click.IntRange(1), default=16384, show_default=True)
def gpu_cmd(out, root, ft_epochs, ft_max_steps, lstm_pixels, kernel_pixels) -> None:
    """Freeze/thaw product and LSTM Dask map on a GPU worker vs a CPU worker (needs JAX CUDA).

    Leave JAX_PLATFORMS unset (or 'cuda,cpu'); without a GPU only the CPU half runs.
    """
    from pipeline.bench import gpu

    doc = gpu.run(root, out, gpu.GpuBenchSettings(ft_epochs=ft_epochs, ft_max_steps=ft_max_steps,
                                                  lstm_pixels=lstm_pixels,
                                                  kernel_pixels=kernel_pixels),
                  log=echo_progress)
    click.echo(_write(out, "gpu", doc))
