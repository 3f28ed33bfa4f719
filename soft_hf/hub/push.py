# Copyright 2026 The soft-hf authors. Licensed under the Apache License, Version 2.0.
"""Publish a SOFT model folder on the Hugging Face Hub: `soft-push`, also `python scripts/push_to_hub.py`.

    soft-push outputs/soft-tiny --repo-id my-org/soft-tiny --private
    soft-push outputs/train-run --repo-id my-org/soft-tiny-pets --dry-run

FOLDER is either a Hub-ready folder (uploaded as is: a clone of the Hub repository with `.git/`, `__pycache__/` or
extra files such as the card's images is fine), or a model folder or training output (`save_pretrained` / Trainer
output_dir, possibly holding only `checkpoint-<step>` folders): the model is then loaded with soft_hf and exported to
a staging folder first (`--staging-dir`, or a temporary folder), with the run's `eval_results.json` as the card's
metrics. A hand-written README.md is kept as the model card in both cases (Hub metadata is added in front of it
when it has none), and so are the other files of a model folder that the export does not generate. Uploaded are
exactly the files listed by the dry run: every file but `.git/`, caches and byte code; files already on the Hub that
the folder does not have are left alone. Before uploading, the folder is validated and loaded with
`trust_remote_code=True` in a fresh Python process. `--dry-run` stops there and lists what would be uploaded.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import re
import sys
import tempfile

from ..models.soft.modeling_soft import SoftBackbone, SoftForImageClassification, SoftModel
from .export import (
    export_pretrained,
    files_not_from_export,
    push_to_hub,
    read_export_manifest,
    render_model_card,
    upload_file_list,
    validate_export_folder,
    verify_remote_loading,
)


TRAINER_CHECKPOINT = re.compile(r"checkpoint-(\d+)$")
# What an export generates from the model (never carried over from the source folder) ...
GENERATED_NAMES = {
    "config.json", "preprocessor_config.json", "README.md", "export_manifest.json", "configuration_soft.py",
    "modeling_soft.py", "soft_attention.py", "image_processing_soft.py",
}
GENERATED_SUFFIXES = (".safetensors", ".safetensors.index.json")
# ... and what a training output holds besides the model: weights in other formats, optimizer and trainer state,
# logs, caches. None of it is uploaded.
NOT_CARRIED_NAMES = {
    "pytorch_model.bin", "training_args.bin", "training_args.json", "trainer_state.json", "optimizer.pt",
    "scheduler.pt", "scaler.pt", "all_results.json", "eval_results.json", "train_results.json", "train_log.jsonl",
    "eval_predictions.jsonl", "runs", "checkpoints", "logs", ".git", "__pycache__", ".cache", ".ipynb_checkpoints",
    ".DS_Store",
}
NOT_CARRIED_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".pyc")


def model_folder_of(folder: pathlib.Path) -> pathlib.Path:
    """The folder holding the model: FOLDER itself if it has a config.json, else its latest `checkpoint-<step>`."""
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder.")
    if (folder / "config.json").is_file():
        return folder
    checkpoints = sorted(
        (int(match[1]), path)
        for path in folder.iterdir()
        if path.is_dir() and (match := TRAINER_CHECKPOINT.match(path.name)) and (path / "config.json").is_file()
    )
    if not checkpoints:
        raise ValueError(
            f"{folder} holds neither a config.json nor checkpoint-<step> folders with one: pass a folder written by "
            "export_pretrained, save_pretrained or the Trainer."
        )
    return checkpoints[-1][1]


def run_metrics(folder: pathlib.Path) -> dict | None:
    """Evaluation metrics the Trainer wrote for the run (eval_results.json, else all_results.json's eval_* entries)."""
    for name in ("eval_results.json", "all_results.json"):
        path = folder / name
        if path.is_file():
            results = json.loads(path.read_text(encoding="utf-8"))
            metrics = {key: value for key, value in results.items() if key.startswith("eval_")}
            if metrics:
                return metrics
    return None


def hand_written_card(folder: pathlib.Path) -> str | None:
    """The text of `folder/README.md` unless an export generated it (listed unchanged in the folder's manifest)."""
    readme = folder / "README.md"
    if not readme.is_file():
        return None
    foreign = {entry.split(" (changed")[0] for entry in files_not_from_export(folder)}
    if read_export_manifest(folder) is not None and "README.md" not in foreign:
        return None  # the export's own card: generated again with the current metrics
    return readme.read_text(encoding="utf-8")


def carried_files(model_folder: pathlib.Path) -> dict[str, pathlib.Path]:
    """Files and folders of a model folder that the export does not generate and that are not training state:
    they are copied into the staged export unchanged (a LICENSE, images of the card, ...)."""
    carried = {}
    for path in sorted(model_folder.iterdir()):
        name = path.name
        if name in GENERATED_NAMES or name in NOT_CARRIED_NAMES or TRAINER_CHECKPOINT.match(name):
            continue
        if name.endswith(GENERATED_SUFFIXES) or name.endswith(NOT_CARRIED_SUFFIXES) or name.startswith("rng_state"):
            continue
        carried[name] = path
    return carried


def with_metadata(card: str, generated_card: str) -> str:
    """`card` as is when it starts with a YAML metadata block, else the generated card's block in front of it."""
    if card.startswith("---\n"):
        return card
    end = generated_card.index("\n---\n", 4) + len("\n---\n")
    return generated_card[:end] + "\n" + card


def stage_folder(folder: pathlib.Path, staging: pathlib.Path, args: argparse.Namespace) -> pathlib.Path:
    """Export the model found in a model folder / training output to `staging` with soft_hf, keeping a hand-written
    README.md (of FOLDER or of the model folder) and the model folder's other files that are not generated."""
    from transformers import AutoImageProcessor


    model_folder = model_folder_of(folder)
    config = json.loads((model_folder / "config.json").read_text(encoding="utf-8"))
    if config.get("model_type") != "soft":
        raise ValueError(f"{model_folder}/config.json has model_type {config.get('model_type')!r}, not 'soft'.")
    architecture = (config.get("architectures") or ["SoftForImageClassification"])[0]
    model_classes = (SoftForImageClassification, SoftModel, SoftBackbone)
    classes = {cls.__name__: cls for cls in model_classes}
    if architecture not in classes:
        raise ValueError(
            f"{model_folder}/config.json names architecture {architecture!r}; expected one of {sorted(classes)}."
        )
    model = classes[architecture].from_pretrained(model_folder)
    processor = None
    for candidate in (model_folder, folder):
        if (candidate / "preprocessor_config.json").is_file():
            processor = AutoImageProcessor.from_pretrained(candidate)
            break
    card_arguments = dict(
        metrics=run_metrics(folder),
        dataset_name=args.dataset_name,
        provenance=args.provenance
        or f"Weights of the training run saved in `{model_folder.name}`, exported with soft-hf's "
        "`scripts/push_to_hub.py`.",
        repo_id=args.repo_id,
    )
    card = hand_written_card(folder) or (hand_written_card(model_folder) if model_folder != folder else None)
    if card is not None:
        generated = render_model_card(
            model.config, num_parameters=sum(p.numel() for p in model.parameters()), **card_arguments
        )
        card = with_metadata(card, generated)
    return export_pretrained(
        model,
        staging,
        image_processor=processor,
        model_card=card,
        extra_files=carried_files(model_folder) if model_folder == folder else None,
        overwrite=True,  # the staging folder of an earlier run (foreign files there are still refused)
        **card_arguments,
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=pathlib.Path, help="Hub-ready folder, model folder or training output")
    parser.add_argument("--repo-id", help="Hub repository, e.g. my-org/soft-tiny (required unless --dry-run)")
    parser.add_argument("--private", action="store_true", help="create the repository as private")
    parser.add_argument("--revision", help="branch to push to (created from main if missing)")
    parser.add_argument("--commit-message", default="Upload SOFT model", help="commit message")
    parser.add_argument("--token", help="Hub token (default: the logged-in token / HF_TOKEN)")
    parser.add_argument("--dry-run", action="store_true", help="write and validate the folder, upload nothing")
    parser.add_argument("--staging-dir", type=pathlib.Path, help="where to export a model folder / training output")
    parser.add_argument("--dataset-name", help="Hub dataset id the run was evaluated on (for the card's model-index)")
    parser.add_argument("--provenance", help="where the weights come from, for the model card")
    parser.add_argument(
        "--skip-load-check", action="store_true", help="skip loading the folder with trust_remote_code in a subprocess"
    )
    args = parser.parse_args(argv)
    if args.repo_id is None and not args.dry_run:
        parser.error("--repo-id is required unless --dry-run is given")
    return args


def is_upload_ready(folder: pathlib.Path) -> bool:
    """Whether FOLDER is uploaded as is: a valid Hub-ready folder that is not a training output."""
    try:
        validate_export_folder(folder)
    except ValueError:
        return False
    return not any(path.is_dir() and TRAINER_CHECKPOINT.match(path.name) for path in folder.iterdir())


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    folder = args.folder.expanduser().absolute()
    temporary = None
    try:
        if is_upload_ready(folder):
            upload_folder = folder
        else:
            staging = args.staging_dir
            if staging is None:
                temporary = tempfile.TemporaryDirectory(prefix="soft-push-")
                staging = pathlib.Path(temporary.name) / (args.repo_id or folder.name).rsplit("/", 1)[-1]
            upload_folder = stage_folder(folder, staging, args)
        validate_export_folder(upload_folder)
        files = upload_file_list(upload_folder)
        report = {"folder": str(upload_folder), "staged": upload_folder != folder, "files": files}
        if not args.skip_load_check:
            report["remote_code_check"] = verify_remote_loading(upload_folder)
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        if temporary is not None:
            temporary.cleanup()
        return 2

    if args.dry_run:
        report["uploaded"] = False
        print(json.dumps(report, indent=2))
        target = args.repo_id or "the repository"
        print(
            f"dry run: would upload these {len(files)} files of {upload_folder} to {target}:\n  "
            + "\n  ".join(files)
            + "\nnothing was uploaded.",
            file=sys.stderr,
        )
        if temporary is not None and args.staging_dir is None:
            print("(the staging folder was temporary; pass --staging-dir to keep it)", file=sys.stderr)
            temporary.cleanup()
        return 0

    try:
        urls = push_to_hub(
            upload_folder,
            args.repo_id,
            token=args.token,
            private=args.private,
            revision=args.revision,
            commit_message=args.commit_message,
            check_remote_loading=False,  # checked above
        )
    finally:
        if temporary is not None:
            temporary.cleanup()
    report.update(uploaded=True, **urls)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
