"""export_pretrained: the Hub-ready folder, its model card, atomic writes; push_to_hub's dry run; preset cards."""

from __future__ import annotations

import json
import os
import stat

import pytest
import torch
from conftest import tiny_config_kwargs
from helpers_hub import REPO_ROOT, load_script_module
from huggingface_hub import ModelCard
from safetensors.torch import load_file

from soft_hf import (
    PRESET_NAMES,
    SoftBackbone,
    SoftConfig,
    SoftForImageClassification,
    SoftImageProcessorPil,
    SoftModel,
    export_pretrained,
)
from soft_hf.hub.export import render_model_card, staged_folder, validate_export_folder


CODE_FILES = {"configuration_soft.py", "modeling_soft.py", "soft_attention.py", "image_processing_soft.py"}


def tiny_model(model_class=SoftForImageClassification, seed: int = 0, **overrides):
    torch.manual_seed(seed)
    return model_class(SoftConfig(**tiny_config_kwargs(**overrides))).eval()


@pytest.mark.parametrize("model_class", [SoftForImageClassification, SoftModel, SoftBackbone])
def test_export_writes_a_hub_ready_folder(model_class, tmp_path):
    model = tiny_model(model_class)
    output = export_pretrained(model, tmp_path / "soft-export")
    assert output == tmp_path / "soft-export"
    files = {path.name for path in output.iterdir()}
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "README.md"} | CODE_FILES <= files
    assert not any(name.endswith(".bin") for name in files)

    config = json.loads((output / "config.json").read_text())
    assert config["auto_map"] == {
        "AutoConfig": "configuration_soft.SoftConfig",
        "AutoModel": "modeling_soft.SoftModel",
        "AutoModelForImageClassification": "modeling_soft.SoftForImageClassification",
        "AutoBackbone": "modeling_soft.SoftBackbone",
    }
    assert config["architectures"] == [model_class.__name__]
    processor = json.loads((output / "preprocessor_config.json").read_text())
    assert processor["auto_map"] == {
        "AutoImageProcessor": {
            "torchvision": "image_processing_soft.SoftImageProcessor",
            "pil": "image_processing_soft.SoftImageProcessorPil",
        }
    }
    assert processor["crop_pct"] == 0.9 and processor["crop_size"] == {"height": 224, "width": 224}
    assert processor["size"] == {"shortest_edge": 248}  # derived from crop_pct and crop_size, saved for JSON readers
    for name in CODE_FILES:  # copied verbatim from the package
        assert (output / name).read_bytes() == (REPO_ROOT / "soft_hf" / "models" / "soft" / name).read_bytes()

    # The weights are the model's, loadable back into the same class.
    weights = load_file(str(output / "model.safetensors"))
    for key, tensor in model.state_dict().items():
        torch.testing.assert_close(weights[key], tensor, atol=0, rtol=0)
    reloaded = model_class.from_pretrained(output).eval()
    pixel_values = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected, actual = model(pixel_values), reloaded(pixel_values)
    for key in expected.keys():
        if isinstance(expected[key], torch.Tensor):
            torch.testing.assert_close(actual[key], expected[key], atol=0, rtol=0)

    card = ModelCard.load(output / "README.md")
    assert card.data.library_name == "transformers"
    assert card.data.pipeline_tag == (
        "image-classification" if model_class is SoftForImageClassification else "image-feature-extraction"
    )
    assert card.data.license == "apache-2.0" and "custom_code" in card.data.tags
    assert card.data.eval_results is None  # nothing was measured
    assert "trust_remote_code=True" in card.text and "not one of the official presets" in card.text


def test_model_index_only_for_measured_metrics(tmp_path):
    model = tiny_model()
    metrics = {"eval_accuracy": 0.8125, "eval_loss": 0.61, "eval_runtime": 3.2, "epoch": 2.0}
    output = export_pretrained(
        model, tmp_path / "measured", metrics=metrics, dataset_name="beans", repo_id="me/soft-beans",
        provenance="Fine-tuned for 2 epochs by a test.",
    )
    card = ModelCard.load(output / "README.md")
    assert card.data.datasets == ["beans"]
    results = {result.metric_type: result for result in card.data.eval_results}
    assert set(results) == {"accuracy", "loss"}  # runtime and epoch are not quality metrics
    assert results["accuracy"].metric_value == 0.8125 and results["accuracy"].dataset_type == "beans"
    assert card.data.model_name == "soft-beans"
    assert "Fine-tuned for 2 epochs by a test." in card.text and "me/soft-beans" in card.text

    # Metrics without a dataset name: shown in the card, but no model-index entry.
    card = ModelCard(render_model_card(model.config, metrics={"eval_accuracy": 0.5}))
    assert card.data.eval_results is None and "| accuracy | 0.5 |" in card.text


def test_export_replaces_atomically_and_refuses_foreign_folders(tmp_path):
    first, second = tiny_model(seed=0), tiny_model(seed=1)
    output = export_pretrained(first, tmp_path / "repo")
    with pytest.raises(ValueError, match="holds an earlier export. Pass overwrite=True"):
        export_pretrained(second, output)
    export_pretrained(second, output, image_processor=SoftImageProcessorPil(crop_pct=0.875), overwrite=True)
    weights = load_file(str(output / "model.safetensors"))
    torch.testing.assert_close(weights["classifier.weight"], second.classifier.weight, atol=0, rtol=0)
    assert json.loads((output / "preprocessor_config.json").read_text())["crop_pct"] == 0.875

    # A failure while writing leaves the previous export and no temporary folders.
    before = {path.name: path.read_bytes() for path in output.iterdir()}
    with pytest.raises(ValueError, match="no YAML metadata"):
        export_pretrained(first, output, model_card="just text, no metadata", overwrite=True)
    assert {path.name: path.read_bytes() for path in output.iterdir()} == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["repo"]

    # A folder with other content (a training run) is never replaced.
    run = tmp_path / "run"
    (run / "checkpoint-10").mkdir(parents=True)
    with pytest.raises(ValueError, match="no earlier export wrote"):
        export_pretrained(first, run, overwrite=True)
    assert (run / "checkpoint-10").is_dir()

    with pytest.raises(ValueError, match="expects a SOFT model"):
        export_pretrained(torch.nn.Linear(2, 2), tmp_path / "linear")


def test_validation_reports_every_problem(tmp_path):
    output = export_pretrained(tiny_model(), tmp_path / "repo")
    config = json.loads((output / "config.json").read_text())
    del config["auto_map"]["AutoBackbone"]
    (output / "config.json").write_text(json.dumps(config))
    (output / "soft_attention.py").unlink()
    (output / "modeling_soft.py").write_text((output / "modeling_soft.py").read_text() + "\nfrom soft_hf import x\n")
    with pytest.raises(ValueError) as error:
        validate_export_folder(output)
    message = str(error.value)
    assert "missing soft_attention.py" in message
    assert "auto_map lacks AutoBackbone" in message
    assert "modeling_soft.py imports soft_hf" in message


def test_committed_preset_cards_match_the_template():
    """model_cards/<preset>.md are rendered from the packaged template (soft_hf.hub.export.write_preset_cards)."""
    from soft_hf.hub.export import write_preset_cards

    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as directory:
        written = write_preset_cards(directory)
        assert sorted(path.stem for path in written) == sorted(PRESET_NAMES)
        for path in written:
            committed = REPO_ROOT / "model_cards" / path.name
            assert committed.read_text() == path.read_text(), f"{committed} is stale: run write_preset_cards()"
    small = ModelCard.load(REPO_ROOT / "model_cards" / "soft-small.md")
    assert small.data.pipeline_tag == "image-classification" and small.data.datasets == ["imagenet-1k"]
    assert small.data.eval_results is None  # no accuracy measured by this project
    assert "38.9M" in small.text and "not 24M" in small.text and "| **82.2** |" in small.text
    norm = Path(REPO_ROOT / "model_cards" / "soft-norm-tiny.md").read_text()
    assert "SOFT-Norm variant" in norm and "| **79.4** |" in norm


def test_push_dry_run_exports_a_training_output(tmp_path):
    """A Trainer-style output (checkpoint folders, eval_results.json) is exported, validated and loaded with
    trust_remote_code in a fresh process; nothing is uploaded."""
    run = tmp_path / "run"
    model = tiny_model()
    model.save_pretrained(run / "checkpoint-5")
    model.save_pretrained(run / "checkpoint-20")
    (run / "eval_results.json").write_text(json.dumps({"eval_accuracy": 0.75, "epoch": 1.0}))
    push = load_script_module("push_to_hub")
    staging = tmp_path / "staged"
    assert push.main([str(run), "--dry-run", "--staging-dir", str(staging), "--dataset-name", "beans"]) == 0
    validate_export_folder(staging)
    card = ModelCard.load(staging / "README.md")
    assert [result.metric_value for result in card.data.eval_results] == [0.75]
    assert "checkpoint-20" in card.text  # provenance names the exported checkpoint

    assert push.main([str(tmp_path / "nothing-here"), "--dry-run", "--skip-load-check"]) == 2
    with pytest.raises(SystemExit):
        push.main([str(staging)])  # a real push needs --repo-id


# ----------------------------------------------------------------------------------------------------------------
# Never lose a user's file (issue 16): manifest, refusal of foreign files, atomic swap, kept model cards
# ----------------------------------------------------------------------------------------------------------------


def _snapshot(folder):
    return {path.relative_to(folder).as_posix(): path.read_bytes() for path in folder.rglob("*") if path.is_file()}


def test_export_never_deletes_or_overwrites_files_it_did_not_write(tmp_path):
    """Defect 1: a user's README.md and helpers.py were replaced/deleted; a copy of scripts/ was overwritten."""
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "README.md").write_text("# my notes\n")
    (notes / "helpers.py").write_text("def helper():\n    return 1\n")
    before = _snapshot(notes)
    for options in ({}, {"overwrite": True}):
        with pytest.raises(ValueError) as error:
            export_pretrained(tiny_model(), notes, **options)
        assert "no earlier export wrote" in str(error.value)
        assert "README.md" in str(error.value) and "helpers.py" in str(error.value)
        assert _snapshot(notes) == before

    # The export lists what it wrote; a file the user edits afterwards is theirs, even with overwrite.
    output = export_pretrained(tiny_model(), tmp_path / "repo")
    manifest = json.loads((output / "export_manifest.json").read_text())
    assert set(manifest["files"]) == {path.name for path in output.iterdir()} - {"export_manifest.json"}
    (output / "README.md").write_text((output / "README.md").read_text() + "\nHand-written addition.\n")
    with pytest.raises(ValueError, match=r"README.md \(changed since the export\)"):
        export_pretrained(tiny_model(seed=1), output, overwrite=True)
    assert "Hand-written addition." in (output / "README.md").read_text()


def test_convert_cli_refuses_a_folder_of_scripts_and_needs_overwrite_for_an_earlier_export(tmp_path, capsys):
    """Defect 1: `convert_original_checkpoint.py --output <copy of scripts/>` exited 0 and replaced nine scripts."""
    import shutil

    convert = load_script_module("convert_original_checkpoint").main
    checkpoint = tmp_path / "mini.pth"
    _save_official_like(checkpoint)
    scripts_copy = tmp_path / "scripts"
    shutil.copytree(REPO_ROOT / "scripts", scripts_copy, ignore=shutil.ignore_patterns("__pycache__"))
    before = _snapshot(scripts_copy)
    assert convert(["--checkpoint", str(checkpoint), "--variant", "plain", "--output", str(scripts_copy)]) == 2
    error = capsys.readouterr().err
    assert "no earlier export wrote" in error and "predict.py" in error and "train.py" in error
    assert _snapshot(scripts_copy) == before

    output = tmp_path / "converted"
    assert convert(["--checkpoint", str(checkpoint), "--variant", "plain", "--output", str(output)]) == 0
    capsys.readouterr()
    assert convert(["--checkpoint", str(checkpoint), "--variant", "plain", "--output", str(output)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert convert(["--checkpoint", str(checkpoint), "--variant", "plain", "--output", str(output), "--overwrite"]) == 0


def _save_official_like(path, seed: int = 0):
    """A checkpoint in the official layout, made from a tiny model by inverting the key renaming."""
    import argparse

    from soft_hf.conversion.official import official_key_to_hf

    model = tiny_model(seed=seed, num_attention_heads=[1, 2, 2, 1])
    state_dict = model.state_dict()
    # Every official key pattern, applied to our names: find the official key whose translation is ours.
    official = {}
    for stage, depth in enumerate(model.config.depths, start=1):
        candidates = [f"pos_embed{stage}", "cls_token", "norm.weight", "norm.bias", "head.weight", "head.bias"]
        candidates += [f"patch_embed{stage}.proj.{i}.{p}" for i in range(8) for p in ("weight", "bias",
                       "running_mean", "running_var", "num_batches_tracked")]
        rests = ["att.mha.W_q", "att.mha.W_v", "att.mha.ff", "att.norm1", "att.ff1", "att.ff2", "att.norm2",
                 "att.mha.attn.Qnorm_act.0", "norm1", "attn.q", "attn.kv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2"]
        for layer in range(depth):
            candidates += [f"block{stage}.{layer}.{rest}.{p}" for rest in rests for p in ("weight", "bias")]
            candidates += [f"block{stage}.{layer}.att.mha.attn.Qlandmark_op.weight",
                           f"block{stage}.{layer}.att.mha.attn.conv.weight"]
        for key in candidates:
            ours = official_key_to_hf(key)
            if ours in state_dict:
                official[key] = state_dict[ours]
    assert len(official) == len(state_dict), sorted(set(state_dict) - {official_key_to_hf(k) for k in official})
    torch.save({"epoch": 1, "state_dict": official, "args": argparse.Namespace(lr=1e-3)}, path)


def test_conversion_cli_messages_and_exit_codes(tmp_path, capsys):
    """Defect 7: messages ending in ': ', torch's weights_only=False advice, exit 1 on a read-only destination."""
    import argparse
    import os

    convert = load_script_module("convert_original_checkpoint").main
    output = str(tmp_path / "out")
    (tmp_path / "empty.pth").write_bytes(b"")
    torch.save({"state_dict": {}, "obj": argparse.ArgumentParser}, tmp_path / "pickled.pth")
    data = (tmp_path / "pickled.pth").read_bytes()
    (tmp_path / "truncated.pth").write_bytes(data[: len(data) // 2])
    cases = {
        "empty.pth": "the file is empty",
        "pickled.pth": "argparse.ArgumentParser",
        "truncated.pth": "truncated or corrupted",
    }
    for name, expected in cases.items():
        assert convert(["--checkpoint", str(tmp_path / name), "--variant", "plain", "--output", output]) == 2
        error = capsys.readouterr().err
        assert expected in error, error
        assert "weights_only" not in error and not error.rstrip().endswith(":"), error

    checkpoint = tmp_path / "mini.pth"
    _save_official_like(checkpoint)
    if os.geteuid() == 0:
        read_only = "/proc/soft-hf-export"  # not writable even by root
    else:
        (tmp_path / "locked").mkdir(mode=0o555)
        read_only = str(tmp_path / "locked" / "out")
    assert convert(["--checkpoint", str(checkpoint), "--variant", "plain", "--output", read_only]) == 2
    error = capsys.readouterr().err
    assert "cannot write" in error and "Traceback" not in error


def test_replacing_an_export_leaves_a_complete_folder_whenever_the_process_dies(tmp_path):
    """Defect 7: killed between the two renames of the swap, an export left no output folder (the old one hidden in
    a `.old` folder). Kill a forked process at each file-system step of the swap and look at what is left."""
    import os
    import sys

    from soft_hf.hub.export import replace_folder, restore_interrupted_replace

    watched = {"os.rename", "shutil.rmtree", "ctypes.call_function"}

    def run(destination, staging, kill_at, exchange):
        pid = os.fork()
        if pid == 0:  # child: die (no cleanup, no exception handlers) at the kill_at-th watched step
            count = 0

            def hook(event, _):
                nonlocal count
                if event in watched:
                    count += 1
                    if count == kill_at:
                        os._exit(17)

            sys.addaudithook(hook)
            replace_folder(staging, destination, exchange=exchange)
            os._exit(0)
        return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])

    for exchange in (True, False):
        for kill_at in range(1, 8):
            root = tmp_path / f"{exchange}-{kill_at}"
            destination, staging = root / "export", root / ".export.tmp"
            for folder, version in ((destination, "old"), (staging, "new")):
                folder.mkdir(parents=True)
                (folder / "config.json").write_text(version)
                (folder / "model.safetensors").write_text(version)
            code = run(destination, staging, kill_at, exchange)
            if not exchange:
                restore_interrupted_replace(destination)  # what the next export does first
            versions = {path.read_text() for path in destination.iterdir()}
            assert versions in ({"old"}, {"new"}), (exchange, kill_at, code, versions)
            if code == 0:
                assert versions == {"new"}
                break
        else:
            raise AssertionError("the swap never completed")
    # With the atomic exchange there is no moment without the folder at all (checked above without any restore).


def test_push_keeps_a_hand_written_card_and_says_what_it_would_upload(tmp_path, capsys):
    """Defect 2: a Hub clone (.git/) or a folder with __pycache__/ or an invalid card was re-exported and its README
    regenerated; the dry run only said "ready to upload"."""
    import shutil

    push = load_script_module("push_to_hub")
    clone = export_pretrained(tiny_model(), tmp_path / "clone")
    card = (clone / "README.md").read_text().replace("# SOFT", "# SOFT\n\nMy hand-written description.", 1)
    assert "My hand-written description." in card
    (clone / "README.md").write_text(card)
    (clone / ".git" / "objects").mkdir(parents=True)
    (clone / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (clone / "__pycache__").mkdir()
    (clone / "__pycache__" / "modeling_soft.cpython-312.pyc").write_bytes(b"\0")
    (clone / "images").mkdir()
    (clone / "images" / "diagram.png").write_bytes(b"png")
    before = _snapshot(clone)
    assert push.main([str(clone), "--dry-run", "--skip-load-check"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["folder"] == str(clone) and report["staged"] is False  # uploaded as is
    assert "README.md" in report["files"] and "images/diagram.png" in report["files"]
    assert not any(name.startswith((".git/", "__pycache__/")) for name in report["files"])
    assert "would upload these" in captured.err and "images/diagram.png" in captured.err
    assert _snapshot(clone) == before

    # A model folder whose hand-written card has no metadata (fails validation) is staged: the card text stays.
    model_folder = tmp_path / "model"
    tiny_model().save_pretrained(model_folder)
    (model_folder / "README.md").write_text("# Pets classifier\n\nTrained by me on my photos.\n")
    (model_folder / "LICENSE").write_text("my license\n")
    staging = tmp_path / "staged"
    assert push.main([str(model_folder), "--dry-run", "--skip-load-check", "--staging-dir", str(staging)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["staged"] is True and "LICENSE" in report["files"]
    staged_card = (staging / "README.md").read_text()
    assert staged_card.startswith("---\n") and "Trained by me on my photos." in staged_card
    assert ModelCard.load(staging / "README.md").data.library_name == "transformers"
    # Staging again into the same folder replaces the earlier staged export.
    assert push.main([str(model_folder), "--dry-run", "--skip-load-check", "--staging-dir", str(staging)]) == 0
    capsys.readouterr()
    shutil.rmtree(staging)


def test_staged_folder_swaps_in_an_ordinary_folder_or_leaves_the_old_one(tmp_path):
    """The staging of every export (SOFT models, and dense models on other backbones): the finished folder gets the
    permissions of an ordinary folder (not mkdtemp's private 0700), and a block that raises leaves the previous folder
    and no staging behind."""
    destination = tmp_path / "export"
    with staged_folder(destination) as staging:
        (staging / "weights.bin").write_bytes(b"new")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(destination.stat().st_mode) == 0o777 & ~umask
    assert (destination / "weights.bin").read_bytes() == b"new"
    with pytest.raises(RuntimeError, match="interrupted"):
        with staged_folder(destination) as staging:
            (staging / "weights.bin").write_bytes(b"half")
            raise RuntimeError("interrupted")
    assert (destination / "weights.bin").read_bytes() == b"new"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["export"]
