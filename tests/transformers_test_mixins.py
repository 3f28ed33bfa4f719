"""Transformers' own common tests (ModelTesterMixin, BackboneTesterMixin, ImageProcessingTestMixin), taken from the
transformers source distribution of the installed version, since the wheel does not ship them.

`pip download --no-binary :all: --no-deps transformers==<installed>` fetches the sdist once into a cache folder;
its `tests/test_modeling_common.py`, `tests/test_backbone_common.py` and `tests/test_image_processing_common.py` are
imported from there. Three imports of those files point at code the sdist does not contain: the torch.export and
generate test suites (neither applies to an image encoder) are replaced by empty mixins, which removes only those
tests, and the CI helper that maps Hub test-image URLs to a local mirror by the identity (only the segmentation
post-processing tests, which do not apply to a classification processor, open such URLs), except that the COCO
two-cats photo of the backend-equivalence test is replaced by scikit-image's cat photo (chelsea, public domain).
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
# Imported by test_image_processing_common.py from the repository's utils/ folder (a sibling of tests/).
UTILS_STUBS = {
    "fetch_hub_objects_for_ci.py": (
        "import os\n"
        "STAND_IN = os.path.join(os.path.dirname(__file__), 'cats_stand_in.png')\n\n\n"
        "def url_to_local_path(url):\n"
        "    return STAND_IN if url.endswith('/000000039769.jpg') else url\n"
    )
}
FILES = ("test_modeling_common.py", "test_backbone_common.py", "test_image_processing_common.py")


def _prepare() -> Path:
    package_dir = CACHE / PACKAGE
    utils_dir = CACHE / "utils"
    stand_in = utils_dir / "cats_stand_in.png"
    ready = [package_dir / name for name in FILES] + [utils_dir / name for name in UTILS_STUBS] + [stand_in]
    if all(path.is_file() for path in ready):
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
    utils_dir.mkdir(parents=True, exist_ok=True)
    for name, text in UTILS_STUBS.items():
        (utils_dir / name).write_text(text)
    import PIL.Image
    import skimage.data

    PIL.Image.fromarray(skimage.data.chelsea()).save(stand_in)
    return CACHE


def _import_root() -> None:
    root = str(_prepare())
    if root not in sys.path:
        sys.path.insert(0, root)


def load_image_processing():
    """Return (ImageProcessingTestMixin, ImageProcessingTester) of Transformers' image-processor tests."""
    _import_root()
    module = importlib.import_module(f"{PACKAGE}.test_image_processing_common")
    return module.ImageProcessingTestMixin, module.ImageProcessingTester


def load():
    """Return (ModelTesterMixin, BackboneTesterMixin, floats_tensor, ids_tensor)."""
    _import_root()
    modeling = importlib.import_module(f"{PACKAGE}.test_modeling_common")
    backbone = importlib.import_module(f"{PACKAGE}.test_backbone_common")
    return modeling.ModelTesterMixin, backbone.BackboneTesterMixin, modeling.floats_tensor, modeling.ids_tensor
