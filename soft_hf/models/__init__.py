# Copyright 2026 The soft-hf authors. Licensed under the Apache License, Version 2.0.
"""Model code, one folder per model as in Transformers' `models/<name>/`. The files of a model folder travel with
its checkpoints as remote code: they sit flat in their folder, import each other only as `from .name import X`,
and import nothing else from soft_hf."""
