"""An exported folder is a complete Hub repository: a fresh Python that never imports soft_hf loads it with
trust_remote_code=True (by path and by repo id from the HF cache), runs the pipeline on real photos, and a
fine-tuned remote model saves a folder that loads again."""

from __future__ import annotations

import json

import PIL.Image
import torch
from conftest import tiny_config_kwargs
from helpers_hub import SCRIPTS_DIR, imagenet_labels, populate_hub_cache, run_fresh_python, write_photos
from safetensors.torch import save_file

from soft_hf import SoftConfig, SoftForImageClassification, SoftImageProcessor, SoftImageProcessorPil, export_pretrained


REPO_ID = "org/soft-small"  # a tiny random SOFT published under this id in a local cache; the id is just a name


def tiny_imagenet_classifier(seed: int = 0) -> SoftForImageClassification:
    """A tiny random SOFT with ImageNet's 1000 class names, so that the pipeline returns human-readable labels."""
    labels = imagenet_labels()
    torch.manual_seed(seed)
    label2id = {label: index for index, label in labels.items()}
    config = SoftConfig(**tiny_config_kwargs(num_labels=1000, id2label=labels, label2id=label2id))
    return SoftForImageClassification(config).eval()


def test_fresh_process_loads_exported_folder_and_repo_id_with_remote_code(tmp_path):
    model = tiny_imagenet_classifier()
    folder = export_pretrained(model, tmp_path / "soft-small")
    photos = write_photos(tmp_path / "photos")

    # Expected values, computed here with soft_hf: logits on a fixed batch, pixel values of both processor backends.
    torch.manual_seed(1)
    pixel_values = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        output = model(pixel_values, output_hidden_states=True)
        pooled = model.soft(pixel_values).pooler_output
    expected = {"pixel_values": pixel_values, "logits": output.logits, "pooler_output": pooled}
    for backend, processor in (("torchvision", SoftImageProcessor()), ("pil", SoftImageProcessorPil())):
        images = [PIL.Image.open(path) for path in photos.values()]
        expected[f"processed_{backend}"] = processor(images, return_tensors="pt").pixel_values
    save_file({key: value.contiguous() for key, value in expected.items()}, str(tmp_path / "expected.safetensors"))

    home = tmp_path / "home"
    commit = populate_hub_cache(folder, REPO_ID, home / "hub")

    result = run_fresh_python(
        f"""
        import contextlib, io, importlib.util, torch
        from huggingface_hub import scan_cache_dir
        from safetensors.torch import load_file
        from PIL import Image
        from transformers import (AutoBackbone, AutoConfig, AutoImageProcessor, AutoModel,
                                  AutoModelForImageClassification, pipeline)
        from transformers.dynamic_module_utils import get_class_from_dynamic_module

        folder, photos = {str(folder)!r}, {[str(p) for p in photos.values()]!r}
        expected = load_file({str(tmp_path / "expected.safetensors")!r})
        def max_diff(a, b):
            return float((a - b).abs().max())

        config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
        classifier = AutoModelForImageClassification.from_pretrained(folder, trust_remote_code=True).eval()
        bare = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
        processors = {{b: AutoImageProcessor.from_pretrained(folder, trust_remote_code=True, backend=b)
                      for b in ("torchvision", "pil")}}
        # Backbones: AutoConfig + AutoBackbone.from_config (untrained), and the class from the folder with its weights
        # (AutoBackbone.from_pretrained on a local folder is broken in Transformers 5.24).
        backbone_config = AutoConfig.from_pretrained(folder, trust_remote_code=True, out_features=["stage1", "stage4"])
        untrained_backbone = AutoBackbone.from_config(backbone_config, trust_remote_code=True)
        backbone_class = get_class_from_dynamic_module("modeling_soft.SoftBackbone", folder)
        backbone = backbone_class.from_pretrained(folder, out_features=["stage1", "stage4"]).eval()
        with torch.no_grad():
            logits = classifier(expected["pixel_values"]).logits
            bare_output = bare(expected["pixel_values"], output_hidden_states=True)
            pooled = bare_output.pooler_output
            feature_maps = backbone(expected["pixel_values"]).feature_maps
        result["backbone_stage4_diff"] = max_diff(feature_maps[-1], bare_output.hidden_states[-1])
        result["classes"] = {{name: type(obj).__module__ + "." + type(obj).__name__ for name, obj in [
            ("config", config), ("classifier", classifier), ("bare", bare), ("backbone", backbone),
            ("untrained_backbone", untrained_backbone),
            ("processor_torchvision", processors["torchvision"]), ("processor_pil", processors["pil"])]}}
        result["logits_diff"] = max_diff(logits, expected["logits"])
        result["pooled_diff"] = max_diff(pooled, expected["pooler_output"])
        result["feature_map_shapes"] = [list(f.shape) for f in feature_maps]
        images = [Image.open(p) for p in photos]
        result["processed_diff"] = {{b: max_diff(processors[b](images, return_tensors="pt").pixel_values,
                                               expected["processed_" + b]) for b in processors}}

        classify = pipeline("image-classification", model=folder, trust_remote_code=True)
        result["pipeline_classes"] = [type(classify.model).__module__, type(classify.image_processor).__module__]
        result["pipeline"] = [classify(p, top_k=3) for p in photos]
        result["id2label_sample"] = [classifier.config.id2label[i] for i in (0, 281, 967)]

        # The prediction script (it never imports soft_hf either).
        spec = importlib.util.spec_from_file_location("predict", {str(SCRIPTS_DIR / "predict.py")!r})
        predict = importlib.util.module_from_spec(spec); spec.loader.exec_module(predict)
        stdout = io.StringIO()
        with contextlib.redirect_stdout(stdout):
            arguments = ["--model", folder, {str(tmp_path / "photos")!r}, "--top-k", "2", "--json"]
            result["predict_rc"] = predict.main(arguments)
        result["predict"] = json.loads(stdout.getvalue())

        # By repo id, offline, from the standard cache layout.
        cache = scan_cache_dir()
        result["cache_repos"] = [(r.repo_id, sorted(rev.commit_hash for rev in r.revisions)) for r in cache.repos]
        by_id = AutoModelForImageClassification.from_pretrained({REPO_ID!r}, trust_remote_code=True).eval()
        by_id_bare = AutoModel.from_pretrained({REPO_ID!r}, trust_remote_code=True)
        by_id_processor = AutoImageProcessor.from_pretrained({REPO_ID!r}, trust_remote_code=True)
        with torch.no_grad():
            result["repo_id_logits_diff"] = max_diff(by_id(expected["pixel_values"]).logits, expected["logits"])
        result["repo_id_classes"] = [type(by_id).__module__, type(by_id_bare).__module__,
                                     type(by_id_processor).__module__]
        """,
        home,
    )

    for name, qualified in {**result["classes"]}.items():
        assert qualified.startswith("transformers_modules."), (name, qualified)
    assert result["classes"]["processor_torchvision"].endswith(".SoftImageProcessor")
    assert result["classes"]["processor_pil"].endswith(".SoftImageProcessorPil")
    assert all(module.startswith("transformers_modules.") for module in result["pipeline_classes"])
    # Same code and weights, another process: equal up to float reassociation (measured 0 here).
    assert result["logits_diff"] <= 1e-5 and result["pooled_diff"] <= 1e-5
    assert result["feature_map_shapes"] == [[2, 16, 56, 56], [2, 32, 7, 7]]
    assert result["backbone_stage4_diff"] == 0.0  # the backbone carries the exported encoder weights
    assert result["classes"]["backbone"].endswith(".SoftBackbone")
    assert result["classes"]["untrained_backbone"].endswith(".SoftBackbone")
    assert result["processed_diff"] == {"torchvision": 0.0, "pil": 0.0}

    labels = set(imagenet_labels().values())
    assert result["id2label_sample"] == ["tench, Tinca tinca", "tabby, tabby cat", "espresso"]
    for predictions in result["pipeline"]:
        assert len(predictions) == 3
        assert all(p["label"] in labels and not p["label"].startswith("LABEL_") for p in predictions)
        assert sum(p["score"] for p in predictions) <= 1.0 + 1e-6
    assert result["predict_rc"] == 0
    assert [entry["image"].rsplit("/", 1)[-1] for entry in result["predict"]] == [
        "astronaut.png",
        "chelsea.png",
        "coffee.png",
    ]
    assert all(len(entry["predictions"]) == 2 for entry in result["predict"])
    assert all(p["label"] in labels for entry in result["predict"] for p in entry["predictions"])

    assert result["cache_repos"] == [[REPO_ID, [commit]]]
    assert all(module.startswith("transformers_modules.") for module in result["repo_id_classes"])
    assert result["repo_id_logits_diff"] <= 1e-5


def test_fine_tuned_remote_model_saves_a_folder_that_loads_again(tmp_path):
    """A user fine-tunes the remote-code model and saves it (save_pretrained), and soft_hf's export_pretrained exports
    the same remote-code model (code files copied from transformers_modules); both folders load again."""
    folder = export_pretrained(tiny_imagenet_classifier(), tmp_path / "soft-small")
    user_folder, exported_folder = tmp_path / "user-save", tmp_path / "re-exported"
    home = tmp_path / "home"

    fine_tune = run_fresh_python(
        f"""
        import sys, torch
        from safetensors.torch import save_file
        from transformers import AutoImageProcessor, AutoModelForImageClassification

        model = AutoModelForImageClassification.from_pretrained({str(folder)!r}, trust_remote_code=True)
        processor = AutoImageProcessor.from_pretrained({str(folder)!r}, trust_remote_code=True)
        torch.manual_seed(0)
        pixel_values, labels = torch.randn(2, 3, 96, 96), torch.tensor([281, 967])
        optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
        model.train()
        loss = model(pixel_values=pixel_values, labels=labels).loss
        loss.backward()
        optimizer.step()
        model.eval()
        with torch.no_grad():
            logits = model(pixel_values).logits
        save_file({{"pixel_values": pixel_values, "logits": logits}}, {str(tmp_path / "fine_tuned.safetensors")!r})
        model.save_pretrained({str(user_folder)!r})
        processor.save_pretrained({str(user_folder)!r})
        result["model_class"] = type(model).__module__
        result["soft_hf_before_export"] = any(name.startswith("soft_hf") for name in sys.modules)

        from soft_hf.hub.export import collect_code_files, export_pretrained
        result["code_sources"] = {{name: str(path) for name, path in collect_code_files(model, processor).items()}}
        export_pretrained(model, {str(exported_folder)!r}, image_processor=processor)
        """,
        home / "fine-tune",
        allow_soft_hf=True,
    )
    assert fine_tune["model_class"].startswith("transformers_modules.")
    assert fine_tune["soft_hf_before_export"] is False
    modules_cache = str(home / "fine-tune" / "modules" / "transformers_modules")
    for name in ("modeling_soft.py", "configuration_soft.py", "soft_attention.py", "image_processing_soft.py"):
        assert fine_tune["code_sources"][name].startswith(modules_cache), fine_tune["code_sources"]

    reload = run_fresh_python(
        f"""
        import torch
        from safetensors.torch import load_file
        from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoModelForImageClassification

        reference = load_file({str(tmp_path / "fine_tuned.safetensors")!r})
        for name, path in (("user", {str(user_folder)!r}), ("export", {str(exported_folder)!r})):
            model = AutoModelForImageClassification.from_pretrained(path, trust_remote_code=True).eval()
            bare = AutoModel.from_pretrained(path, trust_remote_code=True)
            config = AutoConfig.from_pretrained(path, trust_remote_code=True)
            processor = AutoImageProcessor.from_pretrained(path, trust_remote_code=True)
            with torch.no_grad():
                diff = float((model(reference["pixel_values"]).logits - reference["logits"]).abs().max())
            result[name] = {{
                "logits_diff": diff,
                "modules": [type(o).__module__ for o in (model, bare, config, processor)],
                "auto_map": sorted(config.auto_map),
                "label_281": model.config.id2label[281],
            }}
        """,
        home / "reload",
    )
    for name in ("user", "export"):
        assert all(module.startswith("transformers_modules.") for module in reload[name]["modules"]), reload[name]
        assert reload[name]["logits_diff"] <= 1e-5, reload[name]
        auto_classes = ["AutoBackbone", "AutoConfig", "AutoModel", "AutoModelForImageClassification"]
        assert reload[name]["auto_map"] == auto_classes
        assert reload[name]["label_281"] == "tabby, tabby cat"
    exported_card = (exported_folder / "README.md").read_text()
    assert exported_card.startswith("---\n") and "trust_remote_code=True" in exported_card
    assert json.loads((exported_folder / "preprocessor_config.json").read_text())["auto_map"]["AutoImageProcessor"] == {
        "torchvision": "image_processing_soft.SoftImageProcessor",
        "pil": "image_processing_soft.SoftImageProcessorPil",
    }
