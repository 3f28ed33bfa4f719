# Copyright 2026 The soft-hf authors. Licensed under the Apache License, Version 2.0.
"""Official SOFT checkpoints (github.com/fudan-zvg/SOFT): loading and key renaming (`official`) and the
`soft-convert` command that writes a verified Hub-ready folder (`cli`). Imports `soft_hf.models` and `soft_hf.hub`."""
