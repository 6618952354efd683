"""``tbcube products``: find published products and open them by URL.

\b
tbcube products list --root s3://bucket/archive
tbcube products resolve ft-smap-n36-v1 --root s3://bucket/archive     # → URL of the current version
tbcube products open ft-smap-n36-v1 --root s3://bucket/archive        # → a Python snippet
tbcube products versions ft-smap-n36-v1 --root s3://bucket/archive
"""

from __future__ import annotations

import click

from pipeline.cli._common import print_url, root_option


def _options(root: str):
    from pipeline.io import stores

    return stores.storage_options_for(root) or None


@click.group("products")
def products() -> None:
    """Find and open published products (each publication is an immutable Zarr store)."""


@products.command("list")
@root_option
def list_(root: str) -> None:
    """One line per product: id, current version, URL (tab-separated)."""
    from pipeline.io import publish

    so = _options(root)
    ids = publish.list_products(root, so)
    if not ids:
        click.echo(f"no published products under {root}", err=True)
    for pid in ids:
        version = publish.current_version(root, pid, so)
        click.echo(f"{pid}\t{version}\t{publish.version_url(root, pid, version)}")


@products.command("resolve")
@click.argument("product_id")
@root_option
def resolve(product_id: str, root: str) -> None:
    """Print the URL of the current, complete version of PRODUCT_ID (for xr.open_zarr)."""
    from pipeline.io import publish

    print_url(publish.current_url(root, product_id, _options(root)))


@products.command("versions")
@click.argument("product_id")
@root_option
def versions(product_id: str, root: str) -> None:
    """List the complete versions of PRODUCT_ID, oldest first; the current one is marked '*'."""
    from pipeline.io import publish

    so = _options(root)
    current = publish.current_version(root, product_id, so)
    for v in publish.list_versions(root, product_id, so):
        mark = "*" if v == current else " "
        click.echo(f"{mark} {v}\t{publish.version_url(root, product_id, v)}")


def snippet(url: str, storage_options: dict | None) -> str:
    """Python code that opens ``url`` with plain xarray (no tbcube needed); no secrets."""
    lines = ["import xarray as xr", ""]
    endpoint = (storage_options or {}).get("endpoint_url")
    if url.startswith("s3://"):
        opts = {"endpoint_url": endpoint} if endpoint else {}
        lines.append("# credentials: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or an AWS profile")
        lines.append(f"ds = xr.open_zarr({url!r}, zarr_format=3, consolidated=True,")
        lines.append(f"                  storage_options={opts!r})")
    else:
        lines.append(f"ds = xr.open_zarr({url!r}, zarr_format=3, consolidated=True)")
    return "\n".join(lines)


@products.command("open")
@click.argument("product_id")
@root_option
def open_(product_id: str, root: str) -> None:
    """Print a Python snippet that opens the current version of PRODUCT_ID with xarray.

    The dataset's dims and variables are summarised on stderr; the snippet goes to stdout.
    """
    from pipeline.io import publish

    so = _options(root)
    url = publish.current_url(root, product_id, so)
    ds = publish.open_product(root, product_id, so)
    sizes = ", ".join(f"{k}={v}" for k, v in ds.sizes.items())
    click.echo(f"{product_id}: {sizes}; variables: {', '.join(map(str, ds.data_vars))}",
               err=True)
    click.echo(snippet(url, so))
