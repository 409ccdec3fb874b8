"""The documentation site builds with warnings as errors, and its API reference lists every
public name."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

import torch_imbalance

ROOT = Path(__file__).resolve().parents[1]
PUBLIC_MODULES = ("torch_imbalance", "torch_imbalance.functional", "torch_imbalance.losses")


def inventory_names(path: Path) -> set[str]:
    """The object names in a Sphinx-format ``objects.inv`` (mkdocstrings writes one)."""
    header_and_body = path.read_bytes().split(b"\n", 4)
    body = zlib.decompress(header_and_body[4]).decode()
    return {line.split(" ", 1)[0] for line in body.splitlines() if line}


@pytest.mark.slow
def test_docs_build_strict_and_list_every_public_name(tmp_path):
    site = tmp_path / "site"
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    names = inventory_names(site / "objects.inv")
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        missing = [n for n in module.__all__ if f"{module_name}.{n}" not in names]
        assert not missing, f"{module_name}: not in the API reference: {missing}"
    # The user guide is the README itself; the changelog is CHANGELOG.md.
    assert "Quick start" in (site / "index.html").read_text()
    assert "Keep a Changelog" in (site / "changelog" / "index.html").read_text()


def test_top_level_names_resolve_lazily():
    """``__all__`` (a literal, for the documentation tools) and the lazy loader agree, and each
    name resolves to the object its module defines."""
    assert set(torch_imbalance.__all__) == {*torch_imbalance._EXPORTS, "functional"}
    for name in torch_imbalance.__all__:
        assert getattr(torch_imbalance, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        torch_imbalance.nope  # noqa: B018
    assert set(torch_imbalance.__all__) <= set(dir(torch_imbalance))
