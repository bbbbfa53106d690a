"""Where the read-only training/test data lives (never needed by the product at run time).

`CLIPSPOT_SHARED_DATA` if set, else `../shared/data` beside the checkout, else the workplace's
`/work/shared/data` (a CI clone may live elsewhere than the working copy).
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _find() -> Path:
    candidates = [
        os.environ.get("CLIPSPOT_SHARED_DATA"),
        REPO.parent / "shared" / "data",
        "/work/shared/data",
    ]
    for candidate in candidates:
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return REPO.parent / "shared" / "data"  # absent: tests that need it skip or fail loudly


SHARED_DATA = _find()
