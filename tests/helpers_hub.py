"""Helpers of the Hub tests: real photos, a standard-layout HF cache, fresh Python processes without soft_hf."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import PIL.Image

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPTS_DIR = REPO_ROOT / "scripts"
PHOTO_NAMES = ("chelsea", "coffee", "astronaut")


def photo_arrays() -> dict[str, np.ndarray]:
    """scikit-image's bundled RGB photos (a cat, a cup of coffee, an astronaut): uint8 (H, W, 3)."""
    import skimage.data

    return {name: getattr(skimage.data, name)() for name in PHOTO_NAMES}


def write_photos(directory: Path) -> dict[str, Path]:
    """The photos as PNG files in `directory` (lossless, so every reader decodes the same pixels)."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, array in photo_arrays().items():
        paths[name] = directory / f"{name}.png"
        PIL.Image.fromarray(array).save(paths[name])
    return paths


def imagenet_labels() -> dict[int, str]:
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    return {index: info.index_to_description(index) for index in range(info.num_classes())}


def populate_hub_cache(folder: Path, repo_id: str, hub_cache: Path) -> str:
    """Put the files of `folder` into `hub_cache` in huggingface_hub's standard cache layout, as `hf_hub_download`
    leaves them after downloading `repo_id` (no network is used):

        models--<org>--<name>/blobs/<git hash or sha256 of the file>    the file contents
        models--<org>--<name>/snapshots/<commit>/<file name>            relative symlink to the blob
        models--<org>--<name>/refs/main                                 the commit hash of "main"

    Blobs of LFS files (weights) are named by their sha256, other blobs by their git blob hash, as on the Hub.
    Returns the (made-up, content-derived) commit hash."""
    from huggingface_hub.utils.sha import git_hash

    repo_dir = hub_cache / ("models--" + repo_id.replace("/", "--"))
    files = sorted(path for path in folder.iterdir() if path.is_file())
    commit = hashlib.sha1(b"".join(path.name.encode() + path.read_bytes() for path in files)).hexdigest()
    (repo_dir / "blobs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
    snapshot = repo_dir / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    for path in files:
        data = path.read_bytes()
        blob_name = hashlib.sha256(data).hexdigest() if path.suffix == ".safetensors" else git_hash(data)
        blob = repo_dir / "blobs" / blob_name
        blob.write_bytes(data)
        link = snapshot / path.name
        if link.exists() or link.is_symlink():
            link.unlink()
        link.symlink_to(os.path.relpath(blob, snapshot))
    (repo_dir / "refs" / "main").write_text(commit)
    return commit


def fresh_python_environment(home: Path) -> dict[str, str]:
    """Environment of a user who has Transformers but not soft_hf's classes registered: offline, empty caches."""
    environment = dict(os.environ)
    environment.pop("PYTHONPATH", None)
    environment.update(
        HF_HOME=str(home),
        HF_HUB_CACHE=str(home / "hub"),
        HF_MODULES_CACHE=str(home / "modules"),
        HF_HUB_OFFLINE="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        TRANSFORMERS_VERBOSITY="error",
        OMP_NUM_THREADS="1",
    )
    return environment


# Appended to every fresh-process script: proves the process never imported soft_hf (directly or indirectly).
_FOOTER = """
import sys as _sys
result["soft_hf_imported"] = any(name == "soft_hf" or name.startswith("soft_hf.") for name in _sys.modules)
print("RESULT-JSON " + json.dumps(result))
"""


def run_fresh_python(script: str, home: Path, timeout: float = 300, allow_soft_hf: bool = False) -> dict:
    """Run `script` (which fills a dict `result`) with `sys.executable` in `home`, return `result`.

    Unless `allow_soft_hf`, the test fails if the script imported soft_hf: registered classes would win over the
    checkpoint's remote code."""
    home.mkdir(parents=True, exist_ok=True)
    code = "import json\nresult = {}\n" + textwrap.dedent(script) + _FOOTER
    completed = subprocess.run(
        [sys.executable, "-c", code],
        cwd=home,
        env=fresh_python_environment(home),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert completed.returncode == 0, f"fresh process failed:\n{completed.stdout[-3000:]}\n{completed.stderr[-6000:]}"
    lines = [line for line in completed.stdout.splitlines() if line.startswith("RESULT-JSON ")]
    assert lines, f"no result printed:\n{completed.stdout[-3000:]}\n{completed.stderr[-3000:]}"
    result = json.loads(lines[-1][len("RESULT-JSON ") :])
    if not allow_soft_hf:
        assert result["soft_hf_imported"] is False, "the fresh process imported soft_hf"
    return result


def load_script_module(name: str):
    """Import `scripts/<name>.py` as a module (scripts are not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"soft_scripts_{name}", SCRIPTS_DIR / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
