"""Transformers' own common model and backbone tests, run against SOFT.

The mixins come from the transformers source distribution of the installed version (see transformers_test_mixins).
They decide which checks apply from Transformers' model-name mappings, so SOFT's classes are declared there, exactly
as an in-library model would be; nothing of the model or of the mixins is replaced.
"""

from __future__ import annotations

import copy
import unittest

import torch
from transformers.models.auto import modeling_auto

from soft_hf import SoftBackbone, SoftConfig, SoftForImageClassification, SoftModel

from conftest import tiny_config_kwargs
from transformers_test_mixins import load

ModelTesterMixin, BackboneTesterMixin, floats_tensor, ids_tensor = load()

modeling_auto.MODEL_MAPPING_NAMES.setdefault("soft", "SoftModel")
modeling_auto.MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES.setdefault("soft", "SoftForImageClassification")
modeling_auto.MODEL_FOR_BACKBONE_MAPPING_NAMES.setdefault("soft", "SoftBackbone")


class SoftModelTester:
    def __init__(self, parent, batch_size=2, image_size=64, num_labels=3, is_training=True):
        self.parent = parent
        self.batch_size = batch_size
        self.image_size = image_size
        self.num_labels = num_labels
        self.is_training = is_training
        self.num_channels = 3
        self.hidden_sizes = [16, 32, 32, 32]
        self.num_hidden_layers = 4
        self.num_attention_heads = 2

    def get_config(self, **overrides):
        return SoftConfig(**tiny_config_kwargs(image_size=self.image_size, num_labels=self.num_labels, **overrides))

    def prepare_config_and_inputs(self):
        pixel_values = floats_tensor([self.batch_size, self.num_channels, self.image_size, self.image_size])
        labels = ids_tensor([self.batch_size], self.num_labels)
        return self.get_config(), pixel_values, labels

    def prepare_config_and_inputs_for_common(self):
        config, pixel_values, _ = self.prepare_config_and_inputs()
        return config, {"pixel_values": pixel_values}

    def create_and_check_model(self, config, pixel_values, labels):
        model = SoftModel(config).eval()
        with torch.no_grad():
            output = model(pixel_values, output_hidden_states=True)
        size = self.image_size // 32
        self.parent.assertEqual(output.last_hidden_state.shape, (self.batch_size, 1 + size * size, config.hidden_sizes[-1]))
        self.parent.assertEqual(output.pooler_output.shape, (self.batch_size, config.hidden_sizes[-1]))
        self.parent.assertEqual(len(output.hidden_states), 5)

    def create_and_check_for_image_classification(self, config, pixel_values, labels):
        model = SoftForImageClassification(config).eval()
        with torch.no_grad():
            output = model(pixel_values, labels=labels)
        self.parent.assertEqual(output.logits.shape, (self.batch_size, self.num_labels))
        self.parent.assertTrue(torch.isfinite(output.loss))

    def create_and_check_backbone(self, config, pixel_values, labels):
        config.out_features = ["stem", "stage1", "stage2", "stage3", "stage4"]
        model = SoftBackbone(config).eval()
        with torch.no_grad():
            output = model(pixel_values)
        strides = [4, 4, 8, 16, 32]
        self.parent.assertEqual(len(output.feature_maps), 5)
        for feature_map, channels, stride in zip(output.feature_maps, model.channels, strides):
            side = self.image_size // stride
            self.parent.assertEqual(tuple(feature_map.shape), (self.batch_size, channels, side, side))


class SoftModelTest(ModelTesterMixin, unittest.TestCase):
    all_model_classes = (SoftModel, SoftForImageClassification)
    pipeline_model_mapping = {}
    has_attentions = False
    test_resize_embeddings = False
    test_torch_exportable = False

    def setUp(self):
        self.model_tester = SoftModelTester(self)

    def test_model(self):
        self.model_tester.create_and_check_model(*self.model_tester.prepare_config_and_inputs())

    def test_for_image_classification(self):
        self.model_tester.create_and_check_for_image_classification(*self.model_tester.prepare_config_and_inputs())

    def test_hidden_states_output(self):
        config, inputs_dict = self.model_tester.prepare_config_and_inputs_for_common()
        for model_class in self.all_model_classes:
            model = model_class(config).eval()
            with torch.no_grad():
                hidden_states = model(**inputs_dict, output_hidden_states=True).hidden_states
            self.assertEqual(len(hidden_states), 5)
            sides = [self.model_tester.image_size // stride for stride in (4, 4, 8, 16, 32)]
            widths = [config.hidden_sizes[0]] + config.hidden_sizes
            for feature_map, side, width in zip(hidden_states, sides, widths):
                self.assertEqual(tuple(feature_map.shape[1:]), (width, side, side))

    @unittest.skip("SOFT is a fixed 4-stage pyramid; the test config has 1-2 blocks per stage (5 in all)")
    def test_num_layers_is_small(self):
        pass

    @unittest.skip("SOFT takes pixel_values only; it has no input embeddings")
    def test_inputs_embeds(self):
        pass

    def test_model_get_set_embeddings(self):
        """As for ViT: the input embeddings are the patch embeddings (here the stage-1 stem), and there are no output
        embeddings to tie."""
        config, _ = self.model_tester.prepare_config_and_inputs_for_common()
        for model_class in self.all_model_classes:
            model = model_class(copy.deepcopy(config))
            self.assertIs(model.get_input_embeddings(), model.base_model.encoder.stages[0].patch_embeddings)
            self.assertIsNone(model.get_output_embeddings())


class SoftBackboneTest(BackboneTesterMixin, unittest.TestCase):
    all_model_classes = (SoftBackbone,)
    config_class = SoftConfig
    has_attentions = False

    def setUp(self):
        self.model_tester = SoftModelTester(self)

    def test_backbone(self):
        self.model_tester.create_and_check_backbone(*self.model_tester.prepare_config_and_inputs())
