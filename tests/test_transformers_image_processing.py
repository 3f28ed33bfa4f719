"""Transformers' own `ImageProcessingTestMixin` (from the installed version's source distribution) run against both
SOFT image-processor backends: attributes, JSON/save/load round trips (with `size` in the JSON), backend
equivalence, PIL/NumPy/torch/4-channel inputs, dtype casting, compile and per-instance overrides."""

from __future__ import annotations

import json
import shutil
import tempfile
import unittest
from pathlib import Path

import numpy as np
from helpers_hub import run_fresh_python
from transformers_test_mixins import load_image_processing

import soft_hf
from soft_hf import SoftImageProcessor, SoftImageProcessorPil
from soft_hf.hub.export import image_processor_auto_map


ImageProcessingTestMixin, ImageProcessingTester = load_image_processing()


class SoftImageProcessingTester(ImageProcessingTester):
    """Small images and a small crop; `size` is the resize target crop_pct derives (floor(18 / 0.9) = 20), so the
    processor's attributes equal the dict it was built from."""

    def __init__(self, parent, **kwargs):
        kwargs.setdefault("size", {"shortest_edge": 20})
        kwargs.setdefault("crop_size", {"height": 18, "width": 18})
        kwargs.setdefault("crop_pct", 0.9)
        kwargs.setdefault("do_resize", True)
        kwargs.setdefault("do_center_crop", True)
        kwargs.setdefault("do_normalize", True)
        kwargs.setdefault("image_mean", [0.5, 0.5, 0.5])
        kwargs.setdefault("image_std", [0.5, 0.5, 0.5])
        super().__init__(parent, min_resolution=30, max_resolution=80, **kwargs)

    def _get_image_processing_classes(self):
        return {"torchvision": SoftImageProcessor, "pil": SoftImageProcessorPil}


class SoftImageProcessingTest(ImageProcessingTestMixin, unittest.TestCase):
    image_processor_tester_class = SoftImageProcessingTester

    def test_pil_can_run_without_torchvision(self):
        """Transformers' check (a slow test there), as users of remote code meet it: in a fresh Python where
        torchvision cannot be imported and soft_hf is never imported, `AutoImageProcessor` loads the PIL backend from
        a folder with `trust_remote_code=True` and gives the same outputs as in this process."""
        processor = SoftImageProcessorPil(**self.image_processor_dict)
        images = self.image_processor_tester.prepare_image_inputs(equal_resolution=False, numpify=True)
        expected = processor(images, return_tensors=None)["pixel_values"]
        with tempfile.TemporaryDirectory() as directory:
            folder = Path(directory) / "processor"
            processor.save_pretrained(folder)
            settings = json.loads((folder / "preprocessor_config.json").read_text())
            settings["auto_map"] = image_processor_auto_map()
            (folder / "preprocessor_config.json").write_text(json.dumps(settings))
            shutil.copy(Path(soft_hf.__file__).parent / "models" / "soft" / "image_processing_soft.py", folder)
            np.savez(folder / "images.npz", *images)  # images of different sizes
            result = run_fresh_python(
                f"""
                import sys
                sys.modules["torchvision"] = None  # `import torchvision` raises ImportError
                import numpy as np
                from transformers import AutoImageProcessor
                processor = AutoImageProcessor.from_pretrained({str(folder)!r}, backend="pil", trust_remote_code=True)
                saved = np.load({str(folder / "images.npz")!r})
                images = [saved[f"arr_{{index}}"] for index in range({len(images)})]
                outputs = processor(images, return_tensors=None)["pixel_values"]
                np.save({str(folder / "outputs.npy")!r}, np.stack(outputs))
                result["class"] = type(processor).__name__
                result["module"] = type(processor).__module__
                """,
                Path(directory) / "home",
            )
            outputs = np.load(folder / "outputs.npy")
        assert result["class"] == "SoftImageProcessorPil"
        assert result["module"].startswith("transformers_modules.")
        np.testing.assert_equal(outputs, np.stack(expected))
