"""SoftBackbone: stage feature maps (shapes, channels, strides, order), classification weights reused, bounded
landmarks, and loading through trust_remote_code from an exported folder in a fresh interpreter."""

from __future__ import annotations

import json

import pytest
import torch
from helpers_segmentation import run_python, tiny_soft_norm_kwargs

from soft_hf import SoftBackbone, SoftConfig, SoftForImageClassification, SoftModel
from soft_hf.models.soft.modeling_soft import stage_spatial_sizes
from soft_hf.models.soft.soft_attention import landmark_counts
from soft_hf.tasks.segmentation.upernet import UPERNET_OUT_FEATURES, build_upernet

ALL_FEATURES = ["stem", *UPERNET_OUT_FEATURES]


@pytest.fixture(scope="module")
def classifier():
    torch.manual_seed(0)
    return SoftForImageClassification(SoftConfig(**tiny_soft_norm_kwargs(num_labels=3))).eval()


@pytest.fixture(scope="module")
def backbone(classifier):
    model = SoftBackbone(SoftConfig(**tiny_soft_norm_kwargs(out_features=ALL_FEATURES)))
    encoder_weights = classifier.soft.encoder.state_dict()
    model.load_state_dict({f"encoder.{name}": tensor for name, tensor in encoder_weights.items()})
    return model.eval()


@pytest.mark.parametrize("height,width", [(64, 64), (70, 100), (97, 65), (130, 258)])
def test_feature_maps_have_stage_strides_and_channels(backbone, height, width):
    config = backbone.config
    with torch.no_grad():
        outputs = backbone(torch.randn(2, 3, height, width))
    sizes = stage_spatial_sizes(height, width)  # stages 1-4: ceil-halving of 3x3 stride-2 convs
    expected_sizes = [sizes[0], *sizes]  # the stem map has stage 1's resolution
    expected_channels = [config.hidden_sizes[0], *config.hidden_sizes]
    assert backbone.channels == expected_channels
    assert len(outputs.feature_maps) == len(ALL_FEATURES)
    for feature_map, size, channels in zip(outputs.feature_maps, expected_sizes, expected_channels):
        assert tuple(feature_map.shape) == (2, channels, *size)
        assert torch.isfinite(feature_map).all()
    # strides 4, 8, 16, 32 for inputs divisible by 32, ceil otherwise
    for (stage_height, stage_width), stride in zip(sizes, (4, 8, 16, 32)):
        assert (stage_height, stage_width) == (-(-height // stride), -(-width // stride))


def test_out_features_select_maps_in_stage_order(backbone):
    selected = SoftBackbone(SoftConfig(**tiny_soft_norm_kwargs(out_indices=[1, 3])))
    selected.load_state_dict(backbone.state_dict())
    selected.eval()
    assert selected.out_features == ["stage1", "stage3"]
    assert selected.channels == [backbone.config.hidden_sizes[0], backbone.config.hidden_sizes[2]]
    pixel_values = torch.randn(1, 3, 96, 80)
    with torch.no_grad():
        every_map = backbone(pixel_values).feature_maps
        maps = selected(pixel_values, output_hidden_states=True)
        tuple_output = selected(pixel_values, return_dict=False)
    assert len(maps.feature_maps) == 2
    assert torch.equal(maps.feature_maps[0], every_map[1]) and torch.equal(maps.feature_maps[1], every_map[3])
    assert len(maps.hidden_states) == len(ALL_FEATURES)
    assert torch.equal(tuple_output[0][1], maps.feature_maps[1])


def test_stage4_map_is_the_models_patch_tokens_without_cls(backbone, classifier):
    """The stage-4 map, flattened row-major and layer-normed, is SoftModel's last_hidden_state minus the cls token."""
    base: SoftModel = classifier.soft
    pixel_values = torch.randn(2, 3, 100, 70)
    with torch.no_grad():
        feature_maps = backbone(pixel_values).feature_maps
        model_outputs = base(pixel_values, output_hidden_states=True)
        tokens = feature_maps[-1].flatten(2).transpose(1, 2)  # stage 4 (batch, channels, h, w) -> (batch, h * w, channels)
        normalised = base.layernorm(tokens)
    torch.testing.assert_close(normalised, model_outputs.last_hidden_state[:, 1:], rtol=0, atol=1e-6)
    for feature_map, hidden_state in zip(feature_maps, model_outputs.hidden_states):
        torch.testing.assert_close(feature_map, hidden_state, rtol=0, atol=0)


def test_classification_checkpoint_initialises_backbone(classifier, tmp_path):
    classifier.save_pretrained(tmp_path / "classifier")
    loaded, info = SoftBackbone.from_pretrained(
        tmp_path / "classifier", out_features=UPERNET_OUT_FEATURES, output_loading_info=True
    )
    assert not info["missing_keys"] and not info["mismatched_keys"]
    head_keys = {"classifier.weight", "classifier.bias", "soft.layernorm.weight", "soft.layernorm.bias"}
    assert set(info["unexpected_keys"]) == head_keys
    reference = classifier.state_dict()
    for name, tensor in loaded.state_dict().items():
        assert torch.equal(tensor, reference[f"soft.{name}"]), name
    loaded.eval()
    pixel_values = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        maps = loaded(pixel_values).feature_maps
        hidden_states = classifier(pixel_values, output_hidden_states=True).hidden_states
    for feature_map, hidden_state in zip(maps, hidden_states[1:]):
        assert torch.equal(feature_map, hidden_state)

    # the same weights end up in UperNet's backbone, with the classification checkpoint's architecture
    segmenter = build_upernet(
        pretrained_backbone=tmp_path / "classifier", num_labels=4, decoder_hidden_size=16, auxiliary_channels=8
    )
    assert segmenter.config.backbone_config.hidden_sizes == classifier.config.hidden_sizes
    assert segmenter.config.backbone_config.out_features == UPERNET_OUT_FEATURES
    for name, tensor in segmenter.backbone.state_dict().items():
        assert torch.equal(tensor, reference[f"soft.{name}"]), name


def test_unreadable_backbone_source_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="config.json"):
        build_upernet(pretrained_backbone=tmp_path, num_labels=2)
    with pytest.raises(ValueError, match="variant"):
        (tmp_path / "official.pth").write_bytes(b"")
        build_upernet(pretrained_backbone=tmp_path / "official.pth", num_labels=2)




def test_max_landmarks_bounds_landmarks_at_any_resolution(backbone):
    bounded = SoftBackbone(SoftConfig(**tiny_soft_norm_kwargs(out_features=UPERNET_OUT_FEATURES, max_landmarks=16)))
    bounded.load_state_dict(backbone.state_dict())
    bounded.eval()
    num_soft_layers = sum(bounded.config.depths[:3])
    for height, width in [(256, 384), (384, 384), (128, 640)]:
        pixel_values = torch.randn(1, 3, height, width)
        official = landmark_counts(backbone, pixel_values)
        counts = landmark_counts(bounded, pixel_values)
        assert len(counts) == num_soft_layers
        assert max(counts) <= 16 and min(counts) >= 1
        # without the bound, stage 1 follows the official rule m = floor(h / r) * floor(w / r), growing with pixels
        stage1_height, stage1_width = stage_spatial_sizes(height, width)[0]
        assert official[0] == (stage1_height // 8) * (stage1_width // 8) > 16
        maps = bounded(pixel_values).feature_maps
        assert [tuple(m.shape[-2:]) for m in maps] == stage_spatial_sizes(height, width)


REMOTE_CODE = r"""
import json, sys
import torch
from transformers import AutoBackbone, AutoConfig, UperNetConfig, UperNetForSemanticSegmentation

folder, inputs_path, result_path = sys.argv[1:4]
stages = ["stage1", "stage2", "stage3", "stage4"]
config = AutoConfig.from_pretrained(folder, trust_remote_code=True, out_features=stages)
backbone_class = type(AutoBackbone.from_config(config, trust_remote_code=True))
backbone = backbone_class.from_pretrained(folder, out_features=stages).eval()
pixel_values = torch.load(inputs_path)
with torch.no_grad():
    maps = backbone(pixel_values).feature_maps

# UperNet on the remote-code backbone: register the remote classes, as soft_hf does on import for its own.
AutoConfig.register("soft", type(config), exist_ok=True)
AutoBackbone.register(type(config), backbone_class, exist_ok=True)
segmenter = UperNetForSemanticSegmentation(
    UperNetConfig(backbone_config=config, num_labels=2, hidden_size=16, auxiliary_channels=8)
)
segmenter.backbone.load_state_dict(backbone.state_dict())
segmenter.eval()
with torch.no_grad():
    logits = segmenter(pixel_values).logits
torch.save({"maps": list(maps), "logits": logits}, result_path)
print(json.dumps({
    "config_module": type(config).__module__,
    "backbone_module": backbone_class.__module__,
    "upernet_backbone_module": type(segmenter.backbone).__module__,
    "channels": backbone.channels,
    "soft_hf_imported": any(name == "soft_hf" or name.startswith("soft_hf.") for name in sys.modules),
}))
"""


@pytest.mark.slow
def test_backbone_loads_with_trust_remote_code_from_export(classifier, tmp_path):
    from soft_hf.hub.export import export_pretrained

    folder = export_pretrained(classifier, tmp_path / "exported")
    pixel_values = torch.randn(1, 3, 70, 90)
    torch.save(pixel_values, tmp_path / "inputs.pt")
    result = run_python(
        [
            "-c",
            REMOTE_CODE,
            str(folder),
            str(tmp_path / "inputs.pt"),
            str(tmp_path / "result.pt"),
        ],
        tmp_path,
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert not report["soft_hf_imported"]
    for key in ("config_module", "backbone_module", "upernet_backbone_module"):
        assert report[key].startswith("transformers_modules"), report
    assert report["channels"] == classifier.config.hidden_sizes

    remote = torch.load(tmp_path / "result.pt")
    local = SoftBackbone.from_pretrained(folder, out_features=UPERNET_OUT_FEATURES).eval()
    with torch.no_grad():
        local_maps = local(pixel_values).feature_maps
    assert len(remote["maps"]) == 4
    for remote_map, local_map in zip(remote["maps"], local_maps):
        # same weights and code; the child runs single-threaded, so reductions may round differently
        torch.testing.assert_close(remote_map, local_map, rtol=1e-5, atol=1e-5)
    assert remote["logits"].shape == (1, 2, 70, 90) and torch.isfinite(remote["logits"]).all()
