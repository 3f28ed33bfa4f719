# Copyright 2026 The soft-hf authors. Licensed under the Apache License, Version 2.0.
"""Hub-ready exports (`export`: the one export function, model cards from the packaged template, validation, upload)
and the `soft-push` command (`push`). Imports only `soft_hf.models`."""
