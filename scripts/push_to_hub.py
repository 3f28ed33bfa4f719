#!/usr/bin/env python
# Copyright 2026 The soft-hf authors. Licensed under the Apache License, Version 2.0.
"""The `soft-push` command: publish a SOFT model folder on the Hugging Face Hub (soft_hf.hub.push).

python scripts/push_to_hub.py outputs/soft-tiny --repo-id my-org/soft-tiny [--dry-run]
"""

import sys

from soft_hf.hub.push import main


if __name__ == "__main__":
    sys.exit(main())
