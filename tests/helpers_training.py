"""Helpers of the training tests: tiny runs of scripts/train.py in subprocesses, synthetic image folders."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import PIL.Image


REPO_ROOT = Path(__file__).resolve().parents[1]
TRAIN_SCRIPT = REPO_ROOT / "scripts" / "train.py"
EVALUATE_SCRIPT = REPO_ROOT / "scripts" / "evaluate_model.py"

# A SOFT far below 100k parameters that still has every stage; 32x32 inputs (landmark strides 4/2/2).
TINY_MODEL_FLAGS = [
    "--model_type",
    "soft-demo",
    "--config_overrides",
    json.dumps(
        {
            "hidden_sizes": [16, 16, 32, 32],
            "depths": [1, 1, 1, 1],
            "num_attention_heads": [1, 1, 1, 1],
            "stem_hidden_size": 8,
            "newton_iterations": 6,
        }
    ),
    "--image_size",
    "32",
    "--num_workers",
    "0",
]
# The official recipe minus the regularisation that makes a loss curve of a few steps noisy, with the options for
# short runs: the learning rate updated every step, no EMA.
PLAIN_RECIPE_FLAGS = """
    --mixup 0 --cutmix 0 --auto_augment none --color_jitter 0 --reprob 0 --label_smoothing 0 --drop_path_rate 0
    --scale 0.9 1.0 --hflip 0 --lr_schedule_updates step --no_model_ema
""".split()


def subprocess_environment(home: Path) -> dict[str, str]:
    """Offline, single-threaded, with private Hugging Face caches."""
    environment = dict(os.environ)
    environment.update(
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        HF_HOME=str(home / "hf_home"),
        HF_MODULES_CACHE=str(home / "hf_home" / "modules"),
        OMP_NUM_THREADS="1",
        TOKENIZERS_PARALLELISM="false",
    )
    return environment


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def accelerate_launch(num_processes: int) -> list[str]:
    """`accelerate launch` with every option given (no ~/.cache config). Several CPU processes go through torchrun
    (`--multi_gpu`; the script's --cpu puts them on the CPU with gloo)."""
    command = [sys.executable, "-m", "accelerate.commands.launch", "--num_machines", "1", "--mixed_precision", "no"]
    command += ["--dynamo_backend", "no", "--num_processes", str(num_processes)]
    if num_processes > 1:
        command += ["--multi_gpu", "--main_process_port", str(free_port())]
    else:
        command += ["--cpu"]
    return command


def run_command(command: list[str], home: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [str(part) for part in command],
        env=subprocess_environment(home),
        cwd=str(home),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, command))} failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
        )
    return result


def make_image_folder(
    root: Path, images_per_class: dict[str, int], seed: int, corrupt: dict[str, int] | None = None
) -> Path:
    """A folder with one sub-folder of small random PNGs per class (class c has mean brightness ~ c), plus
    `corrupt[class]` files that are not images."""
    rng = np.random.default_rng(seed)
    for class_index, (name, count) in enumerate(images_per_class.items()):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(count):
            height, width = rng.integers(30, 48, size=2)
            pixels = rng.random((height, width, 3)) * 60 + 60 * class_index
            PIL.Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{index:03d}.png")
        for index in range((corrupt or {}).get(name, 0)):
            (folder / f"broken_{index}.png").write_bytes(b"this is not a PNG file")
    return root


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
