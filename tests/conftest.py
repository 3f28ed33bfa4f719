"""Shared fixtures: the official reference vectors and tiny SOFT configurations."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def reference_dir() -> Path:
    """Directory of the official test vectors: $SOFT_REFERENCE_DIR, else ../shared/reference beside the repo."""
    path = Path(os.environ.get("SOFT_REFERENCE_DIR", REPO_ROOT.parent / "shared" / "reference"))
    if not (path / "vectors.json").is_file():
        raise FileNotFoundError(
            f"Official reference vectors not found in {path}; set SOFT_REFERENCE_DIR to the shared/reference folder."
        )
    return path


@pytest.fixture(scope="session")
def reference():
    return reference_dir()


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
