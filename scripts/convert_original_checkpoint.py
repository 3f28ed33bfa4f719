#!/usr/bin/env python
# Copyright 2026 The soft-hf authors. Licensed under the Apache License, Version 2.0.
"""The `soft-convert` command: an official SOFT checkpoint (.pth) -> a verified Hub-ready folder
(soft_hf.conversion.cli).

python scripts/convert_original_checkpoint.py --checkpoint SOFT_Tiny.pth --variant plain --output outputs/soft-tiny
"""

import sys

from soft_hf.conversion.cli import main


if __name__ == "__main__":
    sys.exit(main())
