"""Shared fixtures: the official reference vectors and tiny SOFT configurations."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# The compact official vectors, committed with the tests: every clone can check its exactness.
COMPACT_REFERENCE_DIR = Path(__file__).resolve().parent / "fixtures" / "official"
COMPACT_ARCHES = [("compact_soft", "plain"), ("compact_soft_norm", "norm")]
# The larger official sets of the project's shared material (batches of two), used when present.
FULL_ARCHES = [("mini_soft", "plain"), ("mini_soft_norm", "norm")]


def full_reference_dir() -> Path | None:
    """Folder of the larger official vectors: $SOFT_REFERENCE_DIR, else ../shared/reference beside the repository;
    None when neither holds them."""
    configured = os.environ.get("SOFT_REFERENCE_DIR")
    path = Path(configured) if configured else REPO_ROOT.parent / "shared" / "reference"
    return path if (path / "vectors.json").is_file() else None


def reference_record(directory: Path, arch: str) -> dict:
    """The `vectors.json` record (constructor arguments and input cases) of one official vector set."""
    return next(item for item in json.loads((directory / "vectors.json").read_text()) if item["arch"] == arch)


@pytest.fixture(scope="session")
def compact_reference() -> Path:
    return COMPACT_REFERENCE_DIR


@pytest.fixture(scope="session")
def reference() -> Path:
    """The larger official vectors; tests that need them are skipped (with the reason) when they are absent."""
    path = full_reference_dir()
    if path is None:
        pytest.skip("larger official vectors absent (set SOFT_REFERENCE_DIR or place shared/reference beside the repo)")
    return path


def tiny_config_kwargs(**overrides):
    """A SOFT configuration far below 1M parameters that still has every part of the architecture."""
    kwargs = dict(
        image_size=64,
        hidden_sizes=[16, 32, 32, 32],
        depths=[1, 1, 2, 1],
        num_attention_heads=[1, 2, 2, 2],
        stem_hidden_size=8,
        num_labels=3,
    )
    kwargs.update(overrides)
    return kwargs
