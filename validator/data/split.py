"""Seeded train/test split of prepared rows."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TypeVar

from validator.data.errors import DataPreparationError

Row = TypeVar("Row")


def split_rows(
    rows: Sequence[Row],
    *,
    seed: int,
    test_fraction: float = 0.1,
    max_test_rows: int = 400,
    min_rows: int,
) -> tuple[list[Row], list[Row]]:
    """Shuffle with `random.Random(seed)` and hold out `max(1, min(int(n * test_fraction), max_test_rows))` rows.

    The same rows and seed always give the same split; each task draws its own seed so that miners cannot learn
    which rows are held out.

    Returns:
        `(train_rows, test_rows)`.

    Raises:
        DataPreparationError: fewer than `min_rows` rows (and never fewer than 2, so both sets are non-empty).
    """
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be between 0 and 1, got {test_fraction}")
    required = max(min_rows, 2)
    if len(rows) < required:
        raise DataPreparationError(
            f"dataset has {len(rows)} usable rows; at least {required} are required "
            "(rows with an empty instruction or output, and duplicates, are not counted)"
        )
    shuffled = list(rows)
    random.Random(seed).shuffle(shuffled)
    n_test = max(1, min(int(len(shuffled) * test_fraction), max_test_rows))
    return shuffled[n_test:], shuffled[:n_test]
