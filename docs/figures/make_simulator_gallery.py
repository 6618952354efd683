"""Regenerate docs/figures/simulator/*.png from a demo archive.

Usage::

    tbcube simulate --preset demo --root /tmp/tbcube-demo
    python docs/figures/make_simulator_gallery.py /tmp/tbcube-demo
"""

from __future__ import annotations

import sys
from pathlib import Path

from pipeline.simulate.gallery import make_gallery

if __name__ == "__main__":
    root = sys.argv[1] if len(sys.argv) > 1 else "/tmp/tbcube-demo"
    for p in make_gallery(root, Path(__file__).parent / "simulator"):
        print(p)
