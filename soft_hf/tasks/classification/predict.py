# Copyright 2026 The soft-hf authors. Licensed under the Apache License, Version 2.0.
"""Classify images with a SOFT model through the `image-classification` pipeline and print the top-k labels.

    soft-predict --model my-org/soft-tiny cat.jpg photos/ https://example.com/dog.jpg --top-k 3
    python scripts/predict.py --model outputs/soft-tiny photos/ --json

`--model` is a Hub repository id or a local Hub-ready folder; its own code is loaded with `trust_remote_code=True`
in a process that never imports soft_hf, so this is exactly what a Hub user runs (`--installed-code` uses the
installed soft_hf classes instead, e.g. for a `save_pretrained` folder without code files). Importing soft_hf
registers its classes, and registered classes win over a checkpoint's code: so this file imports nothing from
soft_hf at the top, `scripts/predict.py` loads it by path, and `soft-predict` (whose import of this module imported
soft_hf) runs it again by path in a fresh interpreter. Inputs are image files, folders (their images, sorted, hidden
files such as macOS `._x.jpg` skipped; `--recursive` descends) and http(s) URLs, downloaded before the model is
loaded (`--timeout` seconds each; none with HF_HUB_OFFLINE=1).

Images are decoded by the model's own `image_processing_soft.decode_image`, the function training uses (EXIF
orientation, 16-bit rescaled, transparency on white). An input that cannot be read or downloaded is reported with
its reason and skipped; the others are classified. Exit status: 0 every input classified, 1 some inputs could not
be read (the others were classified), 2 bad arguments (a path that does not exist, a folder without images).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import pathlib
import subprocess
import sys


IMAGE_SUFFIXES = {".bmp", ".gif", ".jpeg", ".jpg", ".png", ".ppm", ".tif", ".tiff", ".webp"}


def expand_inputs(inputs: list[str], recursive: bool = False) -> list[str]:
    """Files and URLs as given; folders replaced by their image files. A missing path is a `ValueError`."""
    expanded = []
    for item in inputs:
        if item.startswith(("http://", "https://")):
            expanded.append(item)
            continue
        path = pathlib.Path(item).expanduser()
        if path.is_dir():
            pattern = "**/*" if recursive else "*"
            images = sorted(
                str(p)
                for p in path.glob(pattern)
                if p.is_file()
                and p.suffix.lower() in IMAGE_SUFFIXES
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
            if not images:
                raise ValueError(f"Folder {path} contains no images ({', '.join(sorted(IMAGE_SUFFIXES))}).")
            expanded.extend(images)
        elif path.is_file():
            expanded.append(str(path))
        else:
            raise ValueError(f"{item} is neither an image file, a folder nor an http(s) URL.")
    if not expanded:
        raise ValueError("No images given.")
    return expanded


def build_pipeline(model: str, device: str = "cpu", backend: str | None = None, revision: str | None = None):
    """The `image-classification` pipeline of `model` with its own (remote) code."""
    from transformers import AutoImageProcessor, pipeline

    image_processor = None
    if backend is not None:
        image_processor = AutoImageProcessor.from_pretrained(
            model, trust_remote_code=True, backend=backend, revision=revision
        )
    return pipeline(
        "image-classification",
        model=model,
        image_processor=image_processor,
        trust_remote_code=True,
        device=device,
        revision=revision,
    )


def is_url(item: str) -> bool:
    return item.startswith(("http://", "https://"))


def download_urls(inputs: list[str], timeout: float) -> tuple[dict[str, bytes], dict[str, str]]:
    """The bytes of every URL among `inputs`, and the reason for each one that could not be downloaded. Nothing is
    attempted with HF_HUB_OFFLINE=1."""
    import urllib.error
    import urllib.request

    contents, failures = {}, {}
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    for url in dict.fromkeys(item for item in inputs if is_url(item)):
        if offline:
            failures[url] = "not downloaded: offline mode (HF_HUB_OFFLINE is set)"
            continue
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                contents[url] = response.read()
        except urllib.error.HTTPError as error:
            failures[url] = f"download failed: HTTP {error.code} {error.reason}"
        except (urllib.error.URLError, OSError, ValueError) as error:
            reason = getattr(error, "reason", None) or error
            failures[url] = f"download failed ({reason}); no network?"
    return contents, failures


def image_decoder(model: str, installed_code: bool, revision: str | None = None):
    """`decode_image` of the model's own image_processing_soft.py (the installed one with `installed_code`, or for
    a checkpoint without that file)."""
    if not installed_code:
        folder = pathlib.Path(model)
        path = folder / "image_processing_soft.py" if folder.is_dir() else None
        if path is None:
            from huggingface_hub import hf_hub_download

            try:
                path = pathlib.Path(hf_hub_download(model, "image_processing_soft.py", revision=revision))
            except Exception:  # not on the Hub / offline: the pipeline will say so
                path = None
        if path is not None and path.is_file():
            spec = importlib.util.spec_from_file_location("soft_checkpoint_image_processing", path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            if hasattr(module, "decode_image"):
                return module.decode_image
    from soft_hf.models.soft.image_processing_soft import decode_image

    return decode_image


def predict(
    classifier, images: list[str], top_k: int = 5, batch_size: int = 8, decode=None, downloaded=None, failures=None
) -> list[dict]:
    """[{"image": path, "predictions": [{"label": ..., "score": ...}, ...]}, ...] in input order; an input that
    cannot be read gets {"image": path, "error": reason} instead and the others are still classified."""
    if decode is None:
        from soft_hf.models.soft.image_processing_soft import decode_image as decode
    downloaded, failures = downloaded or {}, dict(failures or {})
    results = []
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        decoded = {}
        for item in chunk:
            if item in failures:
                continue
            try:
                decoded[item] = decode(downloaded[item] if is_url(item) else item)
            except Exception as error:  # PIL raises many types for corrupt files
                failures[item] = f"cannot read the image ({type(error).__name__}: {error})"
        outputs = iter(classifier(list(decoded.values()), top_k=top_k, batch_size=batch_size) if decoded else [])
        for item in chunk:
            if item in decoded:
                results.append({"image": item, "predictions": next(outputs)})
            else:
                results.append({"image": item, "error": failures[item]})
    return results


# Runs this file's `main` by path: the fresh interpreter imports neither soft_hf nor this file's folder.
_RUN_BY_PATH = (
    "import importlib.util, sys; "
    "spec = importlib.util.spec_from_file_location('soft_predict', sys.argv.pop(1)); "
    "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module); "
    "sys.exit(module.main(sys.argv[1:]))"
)


def run_without_soft_hf(argv: list[str]) -> int:
    """Exit status of `main(argv)` run in a fresh Python that has not imported soft_hf."""
    return subprocess.call([sys.executable, "-c", _RUN_BY_PATH, str(pathlib.Path(__file__).resolve()), *argv])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="+", help="image files, folders or http(s) URLs")
    parser.add_argument("--model", required=True, help="Hub repository id or local Hub-ready folder")
    parser.add_argument("--top-k", type=int, default=5, help="labels to print per image (default 5)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, mps ...")
    parser.add_argument("--backend", choices=["torchvision", "pil"], help="image processor backend")
    parser.add_argument("--revision", help="Hub branch, tag or commit")
    parser.add_argument("--recursive", action="store_true", help="descend into sub-folders of folder inputs")
    parser.add_argument("--installed-code", action="store_true", help="use the installed soft_hf classes")
    parser.add_argument("--json", action="store_true", help="print one JSON list instead of text")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds allowed per URL download (default 10)")
    args = parser.parse_args(argv)
    if args.top_k < 1:
        parser.error("--top-k must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        images = expand_inputs(args.inputs, recursive=args.recursive)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not args.installed_code and "soft_hf" in sys.modules:
        return run_without_soft_hf(sys.argv[1:] if argv is None else argv)
    downloaded, failures = download_urls(images, args.timeout)  # before the model loads: fail fast
    if args.installed_code:
        import soft_hf  # noqa: F401  (registers the installed classes, which then win over remote code)
    classifier = build_pipeline(args.model, device=args.device, backend=args.backend, revision=args.revision)
    decode = image_decoder(args.model, args.installed_code, args.revision)
    results = predict(
        classifier, images, top_k=args.top_k, batch_size=args.batch_size, decode=decode, downloaded=downloaded,
        failures=failures,
    )
    failed = [result for result in results if "error" in result]
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for result in results:
            if "error" in result:
                continue
            print(result["image"])
            for prediction in result["predictions"]:
                print(f"  {prediction['score']:.4f}  {prediction['label']}")
    for result in failed:
        print(f"error: {result['image']}: {result['error']}", file=sys.stderr)
    if failed:
        print(f"{len(failed)} of {len(results)} inputs could not be read and were skipped.", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
