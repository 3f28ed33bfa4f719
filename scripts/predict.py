#!/usr/bin/env python
# Copyright 2026 The soft-hf authors. Licensed under the Apache License, Version 2.0.
"""The `soft-predict` command: classify images with a SOFT model through its own code (the checkpoint's files,
`trust_remote_code=True`) and print the top-k labels (soft_hf/tasks/classification/predict.py).

python scripts/predict.py --model my-org/soft-tiny cat.jpg photos/ --top-k 5 [--json] [--backend pil]

The module is loaded by path, not imported: importing soft_hf registers its classes, which would then win over the
checkpoint's code.
"""

import importlib.util
import pathlib
import sys


_PREDICT = pathlib.Path(__file__).resolve().parents[1] / "soft_hf" / "tasks" / "classification" / "predict.py"
_spec = importlib.util.spec_from_file_location("soft_predict", _PREDICT)
_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_module)
main = _module.main


if __name__ == "__main__":
    sys.exit(main())
