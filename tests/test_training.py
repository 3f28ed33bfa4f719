"""Training and evaluation: the official recipe's pieces, data loading and its errors, and end-to-end runs of
scripts/train.py through `accelerate launch` (one and two processes, interrupted and resumed)."""

from __future__ import annotations

import math
import random
import sys

import numpy as np
import PIL.Image
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from soft_hf import SoftConfig, SoftForImageClassification
from soft_hf.conversion.official import infer_config, load_official_state_dict, official_key_to_hf
from soft_hf.data.classification import (
    DEFAULT_FASHION_MNIST_DIR,
    FASHION_MNIST_LABELS,
    IDX_LABELS_MAGIC,
    UNREADABLE_LABEL,
    AugmentationConfig,
    ImageClassificationDataset,
    StreamingImageClassificationDataset,
    build_eval_transform,
    build_train_transform,
    label_mapping_to_model,
    load_fashion_mnist,
    load_image_classification_data,
    read_idx_file,
)
from soft_hf.data.sampling import EpochShuffleSampler
from soft_hf.models.soft.configuration_soft import PRESET_NAMES
from soft_hf.models.soft.image_processing_soft import SoftImageProcessor
from soft_hf.tasks.checkpoints import read_train_log
from soft_hf.tasks.classification.arguments import parse_train_args
from soft_hf.tasks.classification.metrics import top_k_accuracy_metric
from soft_hf.tasks.classification.recipe import (
    OFFICIAL_RECIPES,
    augmentation_config,
    build_batch_augmentation,
    create_lr_scheduler,
    create_optimizer,
    linear_scaled_learning_rate,
    parameter_groups,
)

from conftest import tiny_config_kwargs
from helpers_training import (
    EVALUATE_SCRIPT,
    PLAIN_RECIPE_FLAGS,
    TINY_MODEL_FLAGS,
    TRAIN_SCRIPT,
    accelerate_launch,
    make_image_folder,
    read_json,
    read_jsonl,
    run_command,
)


# ----------------------------------------------------------------------------------------------------------------
# Recipe
# ----------------------------------------------------------------------------------------------------------------


# Transcribed from github.com/fudan-zvg/SOFT, config/SOFT_*.yaml: (file, lr, batch_size, warmup_epochs, min_lr,
# epochs, clip_grad). Every run's EMA decay is main.py's `--model-ema-decay` default, 0.99996.
OFFICIAL_CONFIG_FILES = {
    "soft-tiny": ("config/SOFT_Tiny.yaml", 1e-3, 128, 10, 5e-5, 300, 1.0),
    "soft-small": ("config/SOFT_Small.yaml", 1e-3, 128, 10, 5e-5, 300, 1.0),
    "soft-medium": ("config/SOFT_Medium.yaml", 3.5e-4, 32, 10, 5e-5, 300, 1.0),
    "soft-large": ("config/SOFT_Large.yaml", 3.3e-4, 32, 10, 5e-5, 300, 1.0),
    "soft-huge": ("config/SOFT_Huge.yaml", 2.7e-4, 32, 10, 5e-5, 300, 1.0),
    "soft-norm-tiny": ("config/SOFT_Tiny_norm.yaml", 1e-3, 128, 10, 5e-5, 300, 1.0),
    "soft-norm-small": ("config/SOFT_Small_norm.yaml", 1e-3, 128, 10, 5e-5, 300, 1.0),
    "soft-norm-medium": ("config/SOFT_Medium_norm.yaml", 4e-4, 32, 10, 5e-5, 300, 1.0),
    "soft-norm-large": ("config/SOFT_Large_norm.yaml", 3.3e-4, 32, 10, 5e-5, 300, 1.0),
    "soft-norm-huge": ("config/SOFT_Huge_norm.yaml", 2.7e-4, 32, 10, 5e-5, 300, 1.0),
}


@pytest.mark.parametrize("preset", list(OFFICIAL_CONFIG_FILES))
def test_each_preset_defaults_to_its_official_config(preset):
    config_file, lr, batch_size, warmup_epochs, min_lr, epochs, clip_grad = OFFICIAL_CONFIG_FILES[preset]
    assert OFFICIAL_RECIPES[preset].config_file == config_file
    args = parse_train_args(["--model_type", preset])
    assert (args.recipe_preset, args.recipe_config, args.recipe_overrides) == (preset, config_file, [])
    assert (args.learning_rate, args.per_device_train_batch_size) == (lr, batch_size)
    assert (args.warmup_epochs, args.min_learning_rate, args.num_train_epochs) == (warmup_epochs, min_lr, epochs)
    assert (args.max_grad_norm, args.model_ema, args.model_ema_decay) == (clip_grad, True, 0.99996)


def test_recipe_defaults_are_overridable_and_shared_values_are_main_py_defaults():
    assert set(OFFICIAL_RECIPES) == set(PRESET_NAMES) == set(OFFICIAL_CONFIG_FILES)
    args = parse_train_args(["--model_type", "soft-medium", "--learning_rate", "1e-4", "--no_model_ema"])
    assert (args.learning_rate, args.per_device_train_batch_size) == (1e-4, 32)
    assert args.recipe_overrides == ["learning_rate"]
    assert not args.model_ema
    # An architecture without an official run takes SOFT-Tiny's; --recipe names another preset's config.
    assert parse_train_args(["--model_type", "soft-demo"]).recipe_config == "config/SOFT_Tiny.yaml"
    args = parse_train_args(["--model_type", "soft-demo", "--recipe", "soft-huge"])
    assert (args.learning_rate, args.per_device_train_batch_size) == (2.7e-4, 32)
    # The official main.py defaults and the official choices of erasing, schedule and weight decay.
    args = parse_train_args([])
    assert (args.weight_decay, args.warmup_learning_rate, args.adam_epsilon) == (0.05, 1e-6, 1e-8)
    assert (args.adam_beta1, args.adam_beta2, args.label_smoothing) == (0.9, 0.999, 0.1)
    assert (args.mixup, args.cutmix, args.mixup_prob, args.mixup_switch_prob) == (0.8, 1.0, 1.0, 0.5)
    assert (args.auto_augment, args.reprob, args.drop_path_rate) == ("rand-m9-mstd0.5-inc1", 0.25, 0.1)
    assert (args.lr_schedule_updates, args.random_erasing_placement) == ("epoch", "after_mixup")
    assert not args.no_lr_scaling and not args.exempt_position_embeddings
    transform = build_train_transform(AugmentationConfig(image_size=64))
    names = [type(step).__name__ for step in transform.transforms]
    assert names[:3] == ["RandomResizedCropAndInterpolation", "RandomHorizontalFlip", "RandAugment"]
    assert transform.transforms[2].num_layers == 2 and transform.transforms[2].ops[0].magnitude == 9
    assert names[-1] == "RandomErasing" and transform.transforms[-1].probability == 0.25
    # Magnitude 10 posterizes to 0 bits: a black image (as with Pillow < 11), not Pillow 11+'s ValueError.
    posterize = next(op for op in transform.transforms[2].ops if op.name == "PosterizeIncreasing")
    black = posterize.aug_fn(PIL.Image.new("RGB", (8, 8), (200, 100, 50)), 0)
    assert black.getextrema() == ((0, 0), (0, 0), (0, 0))


def official_exemption(name: str, shape) -> bool:
    """timm 0.3.2's `add_weight_decay` rule with the official model's `no_weight_decay()` ({"cls_token"})."""
    return len(shape) == 1 or name.endswith(".bias") or name in {"cls_token"}


def test_weight_decay_exempts_exactly_what_the_official_runs_exempt(reference):
    model = SoftForImageClassification(SoftConfig.from_preset("soft-tiny"))
    decay, no_decay = parameter_groups(model, weight_decay=0.05)
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    parameters = dict(model.named_parameters())
    assert sorted(decay["names"] + no_decay["names"]) == sorted(parameters)
    # The official rule in our names: 1-D parameters, biases and the classification token.
    expected = {
        name
        for name, parameter in parameters.items()
        if parameter.ndim == 1 or name.endswith(".bias") or name.endswith(".cls_token")
    }
    assert set(no_decay["names"]) == expected
    assert "soft.encoder.stages.3.cls_token" in no_decay["names"]
    assert sum(name.endswith("position_embeddings") for name in decay["names"]) == 4
    assert all(parameters[name].ndim >= 2 for name in decay["names"])
    # The same rule on the official parameter names and shapes (those of the official reference model's gradients),
    # mapped to ours by the checkpoint converter, gives our exemptions.
    with safe_open(reference / "mini_soft.grad.safetensors", "pt") as handle:
        official = {
            key[len("grad.") :]: handle.get_slice(key).get_shape() for key in handle.keys() if key.startswith("grad.")
        }
    mini = SoftForImageClassification(infer_config(load_official_state_dict(reference / "mini_soft.pth"), "plain"))
    assert {official_key_to_hf(name) for name in official} == {name for name, _ in mini.named_parameters()}
    exempt = {official_key_to_hf(name) for name, shape in official.items() if official_exemption(name, shape)}
    assert set(parameter_groups(mini, 0.05)[1]["names"]) == exempt
    # The alternative: position embeddings exempt as well.
    _, no_decay = parameter_groups(model, 0.05, exempt_position_embeddings=True)
    position_embeddings = {f"soft.encoder.stages.{stage}.position_embeddings" for stage in range(4)}
    assert set(no_decay["names"]) == expected | position_embeddings
    optimizer = create_optimizer(model, 1e-3, 0.05)
    assert [group["weight_decay"] for group in optimizer.param_groups] == [0.05, 0.0]


def test_random_erasing_is_applied_to_the_mixed_images():
    flags = ["--mixup", "1.0", "--cutmix", "0", "--label_smoothing", "0", "--reprob", "1", "--remode", "const"]
    args = parse_train_args(flags)
    augmentation = build_batch_augmentation(args, num_labels=2, device="cpu")
    assert augmentation_config(args, 32, (0.5,) * 3, (0.5,) * 3).re_prob == 0  # the images' transform does not erase
    # Two constant images: mixing gives each a constant between 1 and 3; erasing ("const") then writes zeros.
    pixel_values = torch.stack([torch.full((3, 32, 32), 1.0), torch.full((3, 32, 32), 3.0)])
    random.seed(0)
    np.random.seed(0)
    mixed, targets = augmentation(pixel_values, torch.tensor([0, 1]))
    lam = targets[0, 0].item()  # image 0 is lam x image 0 + (1 - lam) x image 1
    assert 0.01 < lam < 0.99
    for image, value in zip(mixed, (lam * 1 + (1 - lam) * 3, lam * 3 + (1 - lam) * 1)):
        erased = (image == 0).all(dim=0)  # (H, W)
        rows, columns = erased.any(dim=1).nonzero()[:, 0], erased.any(dim=0).nonzero()[:, 0]
        assert len(rows) and len(columns) and not erased.all()
        # The erased patch is intact: one rectangle of zeros, not blended with the other image's pixels ...
        patch = erased[rows.min() : rows.max() + 1, columns.min() : columns.max() + 1]
        assert patch.all() and int(erased.sum()) == patch.numel()
        # ... and the rest of the image is the mixture.
        torch.testing.assert_close(image[:, ~erased], torch.full_like(image[:, ~erased], value))
    # The alternative erases each image in its transform, before mixup.
    args = parse_train_args(flags + ["--random_erasing_placement", "per_image"])
    assert build_batch_augmentation(args, num_labels=2, device="cpu").random_erasing is None
    transform = build_train_transform(augmentation_config(args, 32, (0.5,) * 3, (0.5,) * 3))
    assert type(transform.transforms[-1]).__name__ == "RandomErasing" and transform.transforms[-1].probability == 1


def test_learning_rate_schedule_warmup_cosine_and_linear_scaling():
    assert linear_scaled_learning_rate(1e-3, 1024) == pytest.approx(1e-3)
    assert linear_scaled_learning_rate(1e-3, 256) == pytest.approx(2.5e-4)
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))], lr=1e-3)
    scheduler = create_lr_scheduler(
        optimizer, total_steps=100, warmup_steps=10, warmup_learning_rate=1e-6, min_learning_rate=5e-5
    )
    rates = []
    for step in range(100):
        scheduler.step_update(step)
        rates.append(optimizer.param_groups[0]["lr"])
    assert rates[0] == pytest.approx(1e-6)
    assert all(later > earlier for earlier, later in zip(rates[:10], rates[1:10]))  # warmup rises
    assert all(later <= earlier for earlier, later in zip(rates[10:], rates[11:]))  # cosine falls
    # The cosine spans the whole run, warmup included, as with the official (timm, warmup_prefix=False) scheduler.
    for step in (10, 50, 99):
        assert rates[step] == pytest.approx(
            5e-5 + 0.5 * (1e-3 - 5e-5) * (1 + math.cos(math.pi * step / 100)), rel=1e-9
        )
    assert max(rates) == rates[10]


def test_top_k_accuracy_metric():
    metric = top_k_accuracy_metric()
    metric.add_batch(predictions=[[0, 1, 2], [2, 0, 1]], references=[0, 1])
    metric.add_batch(predictions=[[1, 2, 0]], references=[0])
    results = metric.compute(top_k=(1, 3), label_names=["a", "b", "c"])
    assert results["top1_accuracy"] == pytest.approx(1 / 3)
    assert results["top3_accuracy"] == pytest.approx(1.0)
    assert results["per_class_accuracy"] == {"a": 0.5, "b": 0.0, "c": None}
    assert results["num_samples"] == 3


# ----------------------------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------------------------


def test_fashion_mnist_offline_dataset():
    dataset = load_fashion_mnist("test", max_samples=50, seed=3)
    assert len(dataset) == 50
    assert dataset.features["label"].names == FASHION_MNIST_LABELS
    image = dataset[0]["image"]
    assert image.size == (28, 28) and image.mode == "L"
    all_labels = read_idx_file(f"{DEFAULT_FASHION_MNIST_DIR}/t10k-labels-idx1-ubyte.gz", IDX_LABELS_MAGIC)
    chosen = np.random.default_rng(3).permutation(10000)[:50]
    assert dataset["label"] == all_labels[chosen].tolist()
    data = load_image_classification_data(max_train_samples=20, max_eval_samples=10)
    assert len(data.split("train")) == 20 and len(data.split("validation")) == 10
    processor = SoftImageProcessor(crop_size={"height": 32, "width": 32}, crop_pct=1.0)
    samples = ImageClassificationDataset(data.split("validation"), build_eval_transform(processor))
    assert samples[0]["pixel_values"].shape == (3, 32, 32)  # grayscale became RGB


def test_data_errors_name_the_fix(tmp_path):
    with pytest.raises(ValueError, match="dataset-fashion-mnist"):
        load_image_classification_data(fashion_mnist_dir=str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match="--train_dir .* is not a folder"):
        load_image_classification_data(train_dir=str(tmp_path / "missing"))
    (tmp_path / "empty" / "cat").mkdir(parents=True)
    with pytest.raises(ValueError, match="contains no files"):
        load_image_classification_data(train_dir=str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="--ignore_mismatched_sizes"):
        label_mapping_to_model(["cat", "dog", "bird"], {0: "cat", 1: "dog"})
    with pytest.raises(ValueError, match="--ignore_mismatched_sizes"):
        label_mapping_to_model(["a", "b"], {0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"})
    assert label_mapping_to_model(["dog", "cat"], {0: "cat", 1: "dog"}) == [1, 0]
    with pytest.raises(ValueError, match="must be even"):
        parse_train_args(["--per_device_train_batch_size", "7"])
    with pytest.raises(ValueError, match="--hub_model_id"):
        parse_train_args(["--push_to_hub"])


def test_augmentation_is_a_function_of_seed_epoch_and_index_and_leaves_global_rngs_alone(tmp_path):
    make_image_folder(tmp_path / "train", {"a": 3, "b": 3}, seed=0, corrupt={"a": 1})
    data = load_image_classification_data(
        train_dir=str(tmp_path / "train"), train_val_split=None, cache_dir=str(tmp_path / "cache")
    )
    dataset = ImageClassificationDataset(
        data.split("train"), build_train_transform(AugmentationConfig(image_size=32)), seed=5
    )
    states = (random.getstate(), np.random.get_state()[1].copy(), torch.random.get_rng_state())
    first = [dataset[index]["pixel_values"] for index in range(len(dataset))]
    again = [dataset[index]["pixel_values"] for index in reversed(range(len(dataset)))][::-1]
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert random.getstate() == states[0] and np.array_equal(np.random.get_state()[1], states[1])
    assert torch.equal(torch.random.get_rng_state(), states[2])
    dataset.set_epoch(1)
    assert not torch.equal(dataset[0]["pixel_values"], first[0])
    labels = [dataset[index]["labels"] for index in range(len(dataset))]
    assert labels.count(UNREADABLE_LABEL) == 1 and dataset.num_logged_unreadable >= 1
    sampler = EpochShuffleSampler(10, seed=1)
    order = list(sampler)
    assert sorted(order) == list(range(10)) and list(sampler) == order
    sampler.set_epoch(1)
    assert list(sampler) != order


def test_streamed_image_folder_yields_every_image_with_its_label(tmp_path):
    make_image_folder(tmp_path / "train", {"a": 3, "b": 2}, seed=0)
    make_image_folder(tmp_path / "val", {"a": 2, "b": 2}, seed=1, corrupt={"b": 1})
    data = load_image_classification_data(
        train_dir=str(tmp_path / "train"),
        validation_dir=str(tmp_path / "val"),
        streaming=True,
        shuffle_buffer_size=4,
        cache_dir=str(tmp_path / "cache"),
    )
    assert data.streaming and data.label_names == ["a", "b"]
    processor = SoftImageProcessor(crop_size={"height": 32, "width": 32})
    validation = StreamingImageClassificationDataset(data.split("validation"), build_eval_transform(processor))
    labels = sorted(example["labels"] for example in validation)
    assert labels == [UNREADABLE_LABEL, 0, 0, 1, 1]
    train = StreamingImageClassificationDataset(data.split("train"), build_eval_transform(processor))
    first_epoch = [example["pixel_values"].sum().item() for example in train]
    train.set_epoch(1)
    second_epoch = [example["pixel_values"].sum().item() for example in train]
    assert len(first_epoch) == 5 and sorted(first_epoch) == pytest.approx(sorted(second_epoch))


# ----------------------------------------------------------------------------------------------------------------
# End to end
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_accelerate_launch_trains_lowers_loss_and_writes_loadable_model(tmp_path):
    output_dir = tmp_path / "run"
    command = accelerate_launch(1) + [TRAIN_SCRIPT, *TINY_MODEL_FLAGS, *PLAIN_RECIPE_FLAGS]
    command += ["--max_train_samples", "64", "--max_eval_samples", "40", "--per_device_train_batch_size", "16"]
    command += ["--per_device_eval_batch_size", "16", "--num_train_epochs", "4", "--learning_rate", "3e-3"]
    command += ["--no_lr_scaling", "--warmup_steps", "2", "--checkpointing_steps", "8", "--with_tracking"]
    command += ["--output_dir", output_dir]
    run_command(command, tmp_path)

    log = read_train_log(output_dir)
    assert [record["step"] for record in log] == list(range(1, 17))
    losses = [record["loss"] for record in log]
    assert np.mean(losses[-4:]) < np.mean(losses[:4]) - 0.2, losses
    assert (output_dir / "checkpoints" / "step_8" / "model.safetensors").is_file()
    assert (output_dir / "checkpoints" / "step_16" / "training_state.json").is_file()
    assert list((output_dir / "soft_image_classification").glob("events.out.tfevents.*"))  # TensorBoard

    results = read_json(output_dir / "all_results.json")
    model = SoftForImageClassification.from_pretrained(output_dir / "final")
    assert [model.config.id2label[index] for index in range(10)] == FASHION_MNIST_LABELS
    checkpoint_weights = load_file(output_dir / "checkpoints" / "step_16" / "model.safetensors")
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, checkpoint_weights[name], rtol=0, atol=0)
    assert (output_dir / "best" / "model.safetensors").is_file()
    card = (output_dir / "final" / "README.md").read_text()
    assert f"{results['eval_top1_accuracy']:.6g}" in card

    # scripts/evaluate_model.py on the exported folder measures what training measured on the same images.
    evaluation = tmp_path / "evaluation.json"
    run_command(
        [
            sys.executable,
            EVALUATE_SCRIPT,
            "--model_name_or_path",
            output_dir / "final",
            "--max_eval_samples",
            "40",
            "--num_workers",
            "0",
            "--output_file",
            evaluation,
        ],
        tmp_path,
    )
    measured = read_json(evaluation)
    assert measured["num_samples"] == results["eval_num_samples"] == 40
    assert measured["top1_accuracy"] == pytest.approx(results["eval_top1_accuracy"])
    assert measured["top5_accuracy"] == pytest.approx(results["eval_top5_accuracy"])
    assert set(measured["per_class_accuracy"]) == set(FASHION_MNIST_LABELS)

    # Fine-tuning the exported model on a new label set: a new head, the pretrained body (an lr of 1e-12 keeps it).
    make_image_folder(tmp_path / "pets", {"cat": 8, "dog": 8}, seed=3)
    finetune = [
        sys.executable,
        TRAIN_SCRIPT,
        "--model_name_or_path",
        output_dir / "final",
        "--train_dir",
        tmp_path / "pets",
    ]
    finetune += [
        *PLAIN_RECIPE_FLAGS,
        "--num_workers",
        "0",
        "--per_device_train_batch_size",
        "4",
        "--max_train_steps",
        "2",
    ]
    finetune += ["--learning_rate", "1e-12", "--no_lr_scaling", "--warmup_steps", "0", "--min_learning_rate", "0"]
    finetune += ["--output_dir", tmp_path / "pets_run"]
    with pytest.raises(AssertionError, match="--ignore_mismatched_sizes"):
        run_command(finetune, tmp_path)
    run_command(finetune + ["--ignore_mismatched_sizes"], tmp_path)
    finetuned = SoftForImageClassification.from_pretrained(tmp_path / "pets_run" / "final")
    assert finetuned.config.id2label == {0: "cat", 1: "dog"} and finetuned.classifier.out_features == 2
    for (name, parameter), (_, pretrained) in zip(finetuned.soft.named_parameters(), model.soft.named_parameters()):
        torch.testing.assert_close(parameter, pretrained, rtol=0, atol=1e-7, msg=name)


@pytest.mark.slow
def test_two_processes_train_and_evaluate_every_validation_image_once(tmp_path):
    make_image_folder(tmp_path / "train", {"cat": 10, "dog": 10, "fish": 9}, seed=1, corrupt={"dog": 1})
    make_image_folder(tmp_path / "val", {"cat": 4, "dog": 4, "fish": 3}, seed=2, corrupt={"fish": 1})
    output_dir = tmp_path / "run"
    command = accelerate_launch(2) + [TRAIN_SCRIPT, "--cpu", *TINY_MODEL_FLAGS]
    command += ["--train_dir", tmp_path / "train", "--validation_dir", tmp_path / "val"]
    command += ["--per_device_train_batch_size", "4", "--per_device_eval_batch_size", "4", "--max_train_steps", "4"]
    command += ["--save_predictions", "--output_dir", output_dir]
    run_command(command, tmp_path)

    results = read_json(output_dir / "all_results.json")
    assert results["num_processes"] == 2 and results["global_batch_size"] == 8
    # soft-demo takes SOFT-Tiny's official recipe: lr 1e-3 per 1024 images, scaled to the real global batch.
    assert results["peak_learning_rate"] == pytest.approx(1e-3 * 8 / 1024, rel=1e-12)
    recipe = {"preset": "soft-tiny", "config": "config/SOFT_Tiny.yaml", "overrides": ["per_device_train_batch_size"]}
    assert results["recipe"] == recipe
    # 12 validation files: 11 images and 1 unreadable file; 2 processes x 4 per batch pad the last batch.
    predictions = read_jsonl(output_dir / "eval_predictions.jsonl")
    indices = [record["index"] for record in predictions]
    assert len(indices) == len(set(indices)) == 11 == results["eval_num_samples"]
    assert results["eval_num_skipped"] == 1
    assert len(set(range(12)) - set(indices)) == 1
    labels = [record["label"] for record in predictions]
    assert [labels.count(class_index) for class_index in range(3)] == [4, 4, 3]
    # 4 steps x 8 images; an unreadable image is counted and dropped, and so is one more to keep mixup pairs.
    assert results["train_skipped_images"] >= 1
    assert results["train_images"] == 32 - 2 * results["train_skipped_images"]


@pytest.mark.slow
def test_learning_rate_changes_once_per_epoch_as_timm_schedules_the_official_runs(tmp_path):
    # A 3-epoch toy run with the official schedule (3 optimizer steps per epoch), only shortened: 1 warmup epoch.
    command = [sys.executable, TRAIN_SCRIPT, *TINY_MODEL_FLAGS, "--max_train_samples", "24", "--max_eval_samples", "8"]
    command += ["--per_device_train_batch_size", "8", "--num_train_epochs", "3", "--warmup_epochs", "1"]
    command += ["--learning_rate", "1e-3", "--no_lr_scaling", "--eval_every_epochs", "0"]
    run_command(command + ["--output_dir", tmp_path / "run"], tmp_path)
    logged = [record["learning_rate"] for record in read_train_log(tmp_path / "run")]

    from timm.scheduler import CosineLRScheduler

    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    scheduler = CosineLRScheduler(
        optimizer, t_initial=3, lr_min=5e-5, warmup_t=1, warmup_lr_init=1e-6, t_in_epochs=True
    )
    expected = []
    for epoch in range(3):
        scheduler.step(epoch)  # timm's per-epoch update, once before each epoch
        expected += [optimizer.param_groups[0]["lr"]] * 3
    assert len(logged) == 9 and logged == pytest.approx(expected, rel=1e-12, abs=0)
    assert logged[0] == pytest.approx(1e-6) and len(set(logged)) == 3  # the first epoch runs at the warmup rate


# The official recipe (EMA, per-epoch schedule, erasing after mixup, official weight decay), and every alternative.
RESUME_OPTIONS = {
    "official": ["--model_ema_decay", "0.9"],
    "alternatives": [
        "--no_model_ema",
        "--lr_schedule_updates",
        "step",
        "--random_erasing_placement",
        "per_image",
        "--exempt_position_embeddings",
    ],
}


@pytest.mark.slow
@pytest.mark.parametrize("options", list(RESUME_OPTIONS))
def test_resumed_run_reproduces_the_uninterrupted_run(tmp_path, options):
    # The full recipe (RandAugment, random erasing, mixup/cutmix, drop path, EMA by default) so that every RNG
    # matters; 3 steps per epoch, 8 steps: interrupted at the end of epoch 1 (step 3), then mid-epoch 2 (step 5).
    common = [sys.executable, TRAIN_SCRIPT, *TINY_MODEL_FLAGS, "--max_train_samples", "24", "--max_eval_samples", "8"]
    common += ["--per_device_train_batch_size", "8", "--per_device_eval_batch_size", "8", "--max_train_steps", "8"]
    common += ["--warmup_steps", "2", "--learning_rate", "5e-3", "--no_lr_scaling", "--min_learning_rate", "1e-4"]
    common += ["--warmup_learning_rate", "1e-3", "--seed", "7", *RESUME_OPTIONS[options]]
    run_command(common + ["--output_dir", tmp_path / "straight"], tmp_path)
    resumed_dir = tmp_path / "resumed"
    run_command(common + ["--output_dir", resumed_dir, "--stop_after_steps", "3"], tmp_path)
    assert [record["step"] for record in read_train_log(resumed_dir)] == [1, 2, 3]
    assert not (resumed_dir / "final").exists()
    resume = ["--output_dir", resumed_dir, "--resume_from_checkpoint", "latest"]
    run_command(common + resume + ["--stop_after_steps", "5"], tmp_path)
    assert [path.name for path in sorted((resumed_dir / "checkpoints").iterdir())] == ["step_3", "step_5"]
    run_command(common + resume, tmp_path)

    straight, resumed = read_train_log(tmp_path / "straight"), read_train_log(resumed_dir)
    assert [record["step"] for record in resumed] == list(range(1, 9))
    assert [record["epoch"] for record in resumed] == [0, 0, 0, 1, 1, 1, 2, 2]
    for expected, actual in zip(straight, resumed):
        assert actual["loss"] == pytest.approx(expected["loss"], abs=1e-5), (expected, actual)
        assert actual["learning_rate"] == pytest.approx(expected["learning_rate"], abs=1e-5), (expected, actual)
    rates = [record["learning_rate"] for record in straight]
    assert len(set(rates)) == (3 if options == "official" else 8)  # per epoch or per step
    # The validations at the ends of epochs 1 and 2 (the first one owed by the resumed run) and the final one.
    expected_history = read_json(tmp_path / "straight" / "all_results.json")["history"]
    actual_history = read_json(resumed_dir / "all_results.json")["history"]
    assert [(record["epoch"], record["step"]) for record in actual_history] == [(0, 3), (1, 6), (2, 8)]
    for expected, actual in zip(expected_history, actual_history):
        assert actual == pytest.approx(expected, abs=1e-6)
    folders = ("final", "ema", "best") if options == "official" else ("final", "best")
    assert (resumed_dir / "ema").exists() == (options == "official")
    for folder in folders:
        expected = load_file(tmp_path / "straight" / folder / "model.safetensors")
        actual = load_file(resumed_dir / folder / "model.safetensors")
        for name in expected:
            torch.testing.assert_close(actual[name], expected[name], rtol=0, atol=1e-6)
    if options == "official":
        # The EMA is on by default, and its export is not the raw weights; "best" is ranked on the EMA's accuracy.
        results = read_json(resumed_dir / "all_results.json")
        assert results["best_weights"] == "ema" and "ema_eval_top1_accuracy" in results
        best_epoch_accuracy = max(record["ema_top1_accuracy"] for record in actual_history)
        assert results["best_top1_accuracy"] == pytest.approx(best_epoch_accuracy)
        final, ema = (load_file(resumed_dir / folder / "model.safetensors") for folder in ("final", "ema"))
        floating = [name for name in final if final[name].is_floating_point()]
        differing = [name for name in floating if not torch.equal(final[name], ema[name])]
        assert len(differing) > len(floating) // 2, differing


# ----------------------------------------------------------------------------------------------------------------
# Data that silently changed what was learned or crashed a run (issue 16)
# ----------------------------------------------------------------------------------------------------------------


def test_nested_class_folders_and_stray_root_images_are_refused_with_the_fix(tmp_path):
    """Defect 4: cat/indoor/*.jpg + dog/outdoor/*.jpg trained classes 'indoor'/'outdoor'; a stray root image gave
    "has no column 'label' ... pass --label_column_name"."""
    nested = tmp_path / "nested"
    make_image_folder(nested / "cat", {"indoor": 2}, seed=0)
    make_image_folder(nested / "dog", {"outdoor": 2}, seed=1)
    with pytest.raises(ValueError) as error:
        load_image_classification_data(train_dir=str(nested), cache_dir=str(tmp_path / "cache"))
    message = str(error.value)
    assert "nested class folders" in message and "'indoor'" in message and "'cat'" in message
    assert "one level of class folders" in message

    mixed = tmp_path / "mixed"
    make_image_folder(mixed, {"cat": 2, "dog": 2}, seed=0)
    make_image_folder(mixed / "dog", {"puppies": 1}, seed=2)
    with pytest.raises(ValueError, match=r"mixed depths \(4 image\(s\) in <class>/<image>, 1 deeper down\)"):
        load_image_classification_data(train_dir=str(mixed), cache_dir=str(tmp_path / "cache"))

    stray = tmp_path / "stray"
    make_image_folder(stray, {"cat": 2, "dog": 2}, seed=0)
    PIL.Image.new("RGB", (8, 8)).save(stray / "IMG_0001.png")
    with pytest.raises(ValueError, match=r"directly in it, outside any class sub-folder: IMG_0001.png"):
        load_image_classification_data(validation_dir=str(tmp_path / "stray"), train_dir=str(mixed.parent / "stray"))

    # Hidden files (macOS `._x.png`, `.DS_Store`) do not count: datasets skips them too.
    clean = tmp_path / "clean"
    make_image_folder(clean, {"cat": 2, "dog": 2}, seed=0)
    (clean / "cat" / "._000.png").write_bytes(b"\0\5\26\7AppleDouble")
    (clean / ".DS_Store").write_bytes(b"\0")
    data = load_image_classification_data(train_dir=str(clean), train_val_split=None, cache_dir=str(tmp_path / "c2"))
    assert data.label_names == ["cat", "dog"] and len(data.split("train")) == 4


def test_one_unreadable_image_in_a_mixup_batch_of_two_does_not_stop_training(tmp_path):
    """Defect 7: with mixup and 2 images per device, one unreadable image raised "Every image of a training batch
    was unreadable", which was false."""
    from soft_hf.tasks.classification.trainer import train

    make_image_folder(tmp_path / "train", {"a": 2, "b": 1}, seed=0, corrupt={"b": 1})
    make_image_folder(tmp_path / "val", {"a": 1, "b": 1}, seed=1)
    arguments = [*TINY_MODEL_FLAGS, "--train_dir", str(tmp_path / "train"), "--validation_dir", str(tmp_path / "val")]
    arguments += ["--per_device_train_batch_size", "2", "--per_device_eval_batch_size", "2", "--num_train_epochs", "1"]
    arguments += ["--mixup", "0.8", "--cutmix", "1.0", "--auto_augment", "none", "--reprob", "0", "--cpu"]
    arguments += ["--output_dir", str(tmp_path / "run"), "--cache_dir", str(tmp_path / "cache"), "--report_to", "none"]
    results = train(parse_train_args(arguments))
    assert results["train_steps"] == 2 and results["train_skipped_images"] == 1
    assert results["train_images"] == 3
    assert all(math.isfinite(record["loss"]) for record in read_train_log(tmp_path / "run"))


def test_converted_imagenet_checkpoint_evaluates_on_synset_folders(tmp_path, capsys):
    """Defect 7: `evaluate.py` (now `evaluate_model.py`) `--validation_dir imagenet/val` failed on converted ImageNet checkpoints (synset folder
    names vs timm's descriptions in id2label) and advised --ignore_mismatched_sizes."""
    from helpers_hub import imagenet_labels

    from soft_hf import export_pretrained
    from soft_hf.data.classification import label_mapping_to_model
    from soft_hf.tasks.classification.evaluation import build_evaluate_parser, run_evaluation

    labels = imagenet_labels()
    torch.manual_seed(0)
    model = SoftForImageClassification(
        SoftConfig(**tiny_config_kwargs(num_labels=1000, id2label=labels, label2id={v: k for k, v in labels.items()}))
    )
    folder = export_pretrained(model, tmp_path / "soft-imagenet", image_processor=SoftImageProcessor(
        crop_size={"height": 64, "width": 64}))
    # ImageNet-style validation folder: WordNet synsets as class folders (tench = 0, tabby cat = 281).
    make_image_folder(tmp_path / "val", {"n01440764": 2, "n02123045": 2}, seed=0)

    predictions = tmp_path / "predictions.jsonl"
    arguments = ["--model_name_or_path", str(folder), "--validation_dir", str(tmp_path / "val"), "--cpu"]
    arguments += ["--num_workers", "0", "--save_predictions", str(predictions), "--cache_dir", str(tmp_path / "c")]
    results = run_evaluation(build_evaluate_parser().parse_args(arguments))
    capsys.readouterr()
    assert results["num_samples"] == 4 and results["num_skipped"] == 0
    assert sorted(record["label"] for record in read_jsonl(predictions)) == [0, 0, 281, 281]

    assert label_mapping_to_model(["n01440764", "n02123045"], labels, for_training=False) == [0, 281]
    # Data the model does not know: the evaluation advice is about the data, not about fine-tuning.
    with pytest.raises(ValueError) as error:
        label_mapping_to_model(["cat", "dog"], labels, for_training=False)
    assert "--ignore_mismatched_sizes" not in str(error.value) and "synset" in str(error.value)
