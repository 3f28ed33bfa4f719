#!/usr/bin/env python
# Copyright 2026 The soft-hf authors. Licensed under the Apache License, Version 2.0.
"""Publish a SOFT model folder on the Hugging Face Hub.

    python scripts/push_to_hub.py outputs/soft-tiny --repo-id my-org/soft-tiny --private
    python scripts/push_to_hub.py outputs/train-run --repo-id my-org/soft-tiny-pets --dry-run

FOLDER is either a Hub-ready folder written by `soft_hf.export_pretrained` (uploaded as is), or a model folder or
training output (`save_pretrained` / Trainer output_dir, possibly holding only `checkpoint-<step>` folders): the model
is then loaded with soft_hf and exported to a staging folder first (`--staging-dir`, or a temporary folder), with the
run's `eval_results.json` as the card's metrics. Before uploading, the folder is validated and loaded with
`trust_remote_code=True` in a fresh Python process. `--dry-run` stops there: it writes and validates, uploads nothing.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import re
import sys
import tempfile


TRAINER_CHECKPOINT = re.compile(r"checkpoint-(\d+)$")


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


def stage_folder(folder: pathlib.Path, staging: pathlib.Path, args: argparse.Namespace) -> pathlib.Path:
    """Export the model found in a model folder / training output to `staging` with soft_hf."""
    from transformers import AutoImageProcessor

    import soft_hf

    model_folder = model_folder_of(folder)
    config = json.loads((model_folder / "config.json").read_text(encoding="utf-8"))
    if config.get("model_type") != "soft":
        raise ValueError(f"{model_folder}/config.json has model_type {config.get('model_type')!r}, not 'soft'.")
    architecture = (config.get("architectures") or ["SoftForImageClassification"])[0]
    model_classes = (soft_hf.SoftForImageClassification, soft_hf.SoftModel, soft_hf.SoftBackbone)
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
    return soft_hf.export_pretrained(
        model,
        staging,
        image_processor=processor,
        metrics=run_metrics(folder),
        dataset_name=args.dataset_name,
        provenance=args.provenance
        or f"Weights of the training run saved in `{model_folder.name}`, exported with soft-hf's "
        "`scripts/push_to_hub.py`.",
        repo_id=args.repo_id,
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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from soft_hf.export import validate_export_folder, verify_remote_loading

    folder = args.folder.expanduser().absolute()
    temporary = None
    try:
        try:
            validate_export_folder(folder)
            if any(path.is_dir() for path in folder.iterdir()):
                raise ValueError(f"{folder} also holds sub-folders (checkpoints, logs): export it first")
            upload_folder = folder
        except ValueError:
            staging = args.staging_dir
            if staging is None:
                temporary = tempfile.TemporaryDirectory(prefix="soft-push-")
                staging = pathlib.Path(temporary.name) / (args.repo_id or folder.name).rsplit("/", 1)[-1]
            upload_folder = stage_folder(folder, staging, args)
        validate_export_folder(upload_folder)
        report = {"folder": str(upload_folder), "files": sorted(p.name for p in upload_folder.iterdir() if p.is_file())}
        if not args.skip_load_check:
            report["remote_code_check"] = verify_remote_loading(upload_folder)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        if temporary is not None:
            temporary.cleanup()
        return 2

    if args.dry_run:
        report["uploaded"] = False
        print(json.dumps(report, indent=2))
        print(f"dry run: {upload_folder} is ready to upload; nothing was uploaded.", file=sys.stderr)
        if temporary is not None and args.staging_dir is None:
            print("(the staging folder was temporary; pass --staging-dir to keep it)", file=sys.stderr)
            temporary.cleanup()
        return 0

    from soft_hf.export import push_to_hub

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
