"""Transformers' own common model tests (ModelTesterMixin, BackboneTesterMixin), taken from the transformers source
distribution of the installed version, since the wheel does not ship them.

`pip download --no-binary :all: --no-deps transformers==<installed>` fetches the sdist once into a cache folder;
its `tests/test_modeling_common.py` and `tests/test_backbone_common.py` are imported from there. Two imports of
those files point at test suites the sdist does not contain (torch.export and generate tests, neither of which
applies to an image encoder); they are replaced by empty mixins, which removes only those tests.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import transformers

VERSION = transformers.__version__
CACHE = Path(os.environ.get("SOFT_HF_TEST_CACHE", Path.home() / ".cache" / "soft-hf")) / f"transformers-tests-{VERSION}"
PACKAGE = "hf_common_tests"
STUB_MODULES = {
    "exporters/test_export.py": "class ExportTesterMixin:\n    pass\n",
    "generation/test_utils.py": "class GenerationTesterMixin:\n    pass\n",
}
FILES = ("test_modeling_common.py", "test_backbone_common.py")


def _prepare() -> Path:
    package_dir = CACHE / PACKAGE
    if all((package_dir / name).is_file() for name in FILES):
        return CACHE
    download_dir = CACHE / "sdist"
    download_dir.mkdir(parents=True, exist_ok=True)
    archives = list(download_dir.glob("transformers-*.tar.gz"))
    if not archives:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps", "--quiet",
             "-d", str(download_dir), f"transformers=={VERSION}"],
            check=True,
        )
        archives = list(download_dir.glob("transformers-*.tar.gz"))
    staging = CACHE / f"{PACKAGE}.partial"
    staging.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archives[0]) as archive:
        for member in archive.getmembers():
            parts = Path(member.name).parts
            if len(parts) == 3 and parts[1] == "tests" and parts[2] in FILES:
                member.name = parts[2]
                archive.extract(member, staging, filter="data")
    for relative, text in STUB_MODULES.items():
        path = staging / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        (path.parent / "__init__.py").touch()
        path.write_text(text)
    (staging / "__init__.py").touch()
    if package_dir.exists():
        import shutil

        shutil.rmtree(package_dir)
    staging.rename(package_dir)
    return CACHE


def load():
    """Return (ModelTesterMixin, BackboneTesterMixin, floats_tensor, ids_tensor, _config_zero_init)."""
    root = str(_prepare())
    if root not in sys.path:
        sys.path.insert(0, root)
    modeling = importlib.import_module(f"{PACKAGE}.test_modeling_common")
    backbone = importlib.import_module(f"{PACKAGE}.test_backbone_common")
    return modeling.ModelTesterMixin, backbone.BackboneTesterMixin, modeling.floats_tensor, modeling.ids_tensor
