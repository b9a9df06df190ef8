"""The seeded train/test split."""

from __future__ import annotations

import pytest

from validator.data import DataPreparationError, split_rows

ROWS = [{"instruct": f"q{index}", "output": f"a{index}"} for index in range(1000)]


def test_same_seed_gives_the_same_split() -> None:
    first = split_rows(ROWS, seed=123, min_rows=100)
    second = split_rows(list(ROWS), seed=123, min_rows=100)

    assert first == second


def test_different_seeds_give_different_splits() -> None:
    _, test_a = split_rows(ROWS, seed=1, min_rows=100)
    _, test_b = split_rows(ROWS, seed=2, min_rows=100)

    assert test_a != test_b


def test_split_is_a_partition_with_ten_percent_held_out() -> None:
    train, test = split_rows(ROWS, seed=7, min_rows=100)

    assert len(test) == 100
    assert len(train) == 900
    assert sorted(row["instruct"] for row in train + test) == sorted(row["instruct"] for row in ROWS)


def test_test_set_is_capped() -> None:
    rows = [{"instruct": str(index)} for index in range(10_000)]

    train, test = split_rows(rows, seed=0, min_rows=100)

    assert len(test) == 400
    assert len(train) == 9_600


def test_small_dataset_still_holds_out_one_row() -> None:
    train, test = split_rows(ROWS[:5], seed=0, min_rows=5)

    assert (len(train), len(test)) == (4, 1)


def test_too_few_rows_error_gives_the_counts() -> None:
    with pytest.raises(DataPreparationError, match=r"^dataset has 12 usable rows; at least 100 are required"):
        split_rows(ROWS[:12], seed=0, min_rows=100)


def test_input_is_not_reordered() -> None:
    rows = list(ROWS)

    split_rows(rows, seed=5, min_rows=1)

    assert rows == ROWS
