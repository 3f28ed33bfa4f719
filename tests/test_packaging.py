"""soft-hf installed from its wheel, away from the checkout (what `pip install git+<repo url>` gives): the package
data is inside, the seven `soft-...` commands are installed and run, an official checkpoint converts, and a model
exports with its card."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

from conftest import COMPACT_REFERENCE_DIR, REPO_ROOT


COMMANDS = (
    "soft-train", "soft-evaluate", "soft-predict", "soft-convert", "soft-push", "soft-benchmark", "soft-export-onnx"
)


def run(command: list[str], cwd: Path, environment: dict[str, str], timeout: float = 300) -> str:
    completed = subprocess.run(
        [str(part) for part in command], cwd=cwd, env=environment, capture_output=True, text=True, timeout=timeout
    )
    assert completed.returncode == 0, f"{command} failed:\n{completed.stdout[-3000:]}\n{completed.stderr[-6000:]}"
    return completed.stdout


def test_wheel_installed_outside_the_checkout_converts_exports_and_runs_its_commands(tmp_path):
    # Build from a copy of what the wheel is made of, so that no build/ or egg-info lands in the checkout.
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO_ROOT / name, source / name)
    shutil.copytree(REPO_ROOT / "soft_hf", source / "soft_hf", ignore=shutil.ignore_patterns("__pycache__"))
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    environment.update(PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1", HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    environment.update(HF_HOME=str(tmp_path / "hf_home"), HF_MODULES_CACHE=str(tmp_path / "hf_home" / "modules"))
    pip = [sys.executable, "-m", "pip"]
    run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", tmp_path / "dist", source], tmp_path, environment)
    (wheel,) = (tmp_path / "dist").glob("soft_hf-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    assert "soft_hf/hub/model_card_template.md" in names
    assert {f"soft_hf/models/soft/{name}.py" for name in ("configuration_soft", "modeling_soft")} <= names

    target = tmp_path / "installed"
    run([*pip, "install", "--no-deps", "--target", target, wheel], tmp_path, environment)
    (entry_points,) = target.glob("soft_hf-*.dist-info/entry_points.txt")
    assert set(COMMANDS) <= {line.split("=")[0].strip() for line in entry_points.read_text().splitlines()}
    assert all((target / "bin" / command).is_file() for command in COMMANDS)

    # A fresh Python outside the checkout that finds only the installed copy (PYTHONPATH comes before the
    # editable install of the checkout in site-packages).
    work = tmp_path / "work"
    work.mkdir()
    environment["PYTHONPATH"] = str(target)
    script = textwrap.dedent(
        f"""
        import contextlib, io, json, runpy, sys
        import torch
        import soft_hf
        from soft_hf.conversion.cli import main as convert

        result = {{}}
        with contextlib.redirect_stdout(io.StringIO()) as report:
            result["convert_rc"] = convert([
                "--checkpoint", {str(COMPACT_REFERENCE_DIR / "compact_soft.pth")!r}, "--variant", "plain",
                "--output", "converted",
                "--reference", {str(COMPACT_REFERENCE_DIR / "compact_soft.io.safetensors")!r},
            ])
        result["convert_report"] = json.loads(report.getvalue())

        torch.manual_seed(0)
        config = soft_hf.SoftConfig(image_size=64, hidden_sizes=[16, 32, 32, 32], depths=[1, 1, 2, 1],
                                    num_attention_heads=[1, 2, 2, 2], stem_hidden_size=8, num_labels=3)
        folder = soft_hf.export_pretrained(soft_hf.SoftForImageClassification(config), "exported")
        result["exported"] = sorted(path.name for path in folder.iterdir())

        # Each installed console script, run as its own file (the import of soft_hf is paid once).
        result["help"] = {{}}
        for command in {list(COMMANDS)!r}:
            sys.argv = [command, "--help"]
            with contextlib.redirect_stdout(io.StringIO()) as help_text:
                try:
                    runpy.run_path({str(target / "bin")!r} + "/" + command, run_name="__main__")
                    code = None
                except SystemExit as exit:
                    code = exit.code
            result["help"][command] = [code, help_text.getvalue()[:200]]
        result["soft_hf_files"] = sorted(
            module.__file__ for name, module in sys.modules.items() if name.split(".")[0] == "soft_hf"
        )
        print("RESULT-JSON " + json.dumps(result))
        """
    )
    output = run([sys.executable, "-c", script], work, environment)
    result = json.loads(next(line for line in output.splitlines() if line.startswith("RESULT-JSON "))[12:])

    # Every soft_hf module the commands imported is the installed copy, none comes from the checkout.
    assert len(result["soft_hf_files"]) > 20
    assert all(Path(path).is_relative_to(target) for path in result["soft_hf_files"]), result["soft_hf_files"]
    assert result["convert_rc"] == 0
    assert all(case["max_abs_diff"] <= 1e-4 for case in result["convert_report"]["reference"])
    converted = sorted(path.name for path in (work / "converted").iterdir())
    for exported in (converted, result["exported"]):
        assert {"README.md", "config.json", "model.safetensors", "modeling_soft.py", "soft_attention.py"} <= set(
            exported
        )
    assert "trust_remote_code=True" in (work / "exported" / "README.md").read_text()
    for command, (code, text) in result["help"].items():
        assert code in (0, None) and text.startswith("usage:"), (command, code, text)
