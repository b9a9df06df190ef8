"""Per-task scores: rank by test loss, halve per place, ties share the better rank, invalid scores 0."""

from __future__ import annotations

import math

from validator.scoring import SubmissionResult, compute_scores, winner


def by_hotkey(results: list[SubmissionResult]) -> dict[str, tuple[int | None, float, str | None]]:
    return {score.hotkey: (score.rank, score.score, score.invalid_reason) for score in compute_scores(results)}


def test_lowest_loss_ranks_first_and_each_place_halves() -> None:
    scores = by_hotkey(
        [
            SubmissionResult("b", 2.0, True),
            SubmissionResult("a", 1.5, True),
            SubmissionResult("c", 3.0, True),
        ]
    )

    assert scores == {"a": (1, 1.0, None), "b": (2, 0.5, None), "c": (3, 0.25, None)}


def test_ties_share_the_better_rank_and_the_next_place_is_skipped() -> None:
    scores = by_hotkey(
        [
            SubmissionResult("a", 1.0, True),
            SubmissionResult("b", 1.0, True),
            SubmissionResult("c", 2.0, True),
        ]
    )

    assert scores == {"a": (1, 1.0, None), "b": (1, 1.0, None), "c": (3, 0.25, None)}


def test_invalid_and_non_finite_submissions_score_zero_with_a_reason() -> None:
    scores = by_hotkey(
        [
            SubmissionResult("ok", 2.0, True),
            SubmissionResult("bad", None, False, "pickle-only weights"),
            SubmissionResult("nan", math.nan, True),
            SubmissionResult("inf", math.inf, True),
            SubmissionResult("none", None, True),
        ]
    )

    assert scores["ok"] == (1, 1.0, None)
    assert scores["bad"] == (None, 0.0, "pickle-only weights")
    assert scores["nan"] == (None, 0.0, "test loss is not finite")
    assert scores["inf"] == (None, 0.0, "test loss is not finite")
    assert scores["none"] == (None, 0.0, "evaluation produced no test loss")


def test_scores_are_ordered_best_first_and_the_winner_is_deterministic() -> None:
    results = [SubmissionResult("z", 1.0, True), SubmissionResult("y", 1.0, True), SubmissionResult("x", None, False)]

    scores = compute_scores(results)

    assert [score.hotkey for score in scores] == ["y", "z", "x"]
    assert winner(scores).hotkey == "y"
    assert winner(compute_scores([SubmissionResult("x", None, False)])) is None
    assert compute_scores([]) == []


def test_a_nan_submission_is_invalid_and_leaves_the_others_scores_exactly_as_without_it() -> None:
    others = [SubmissionResult("a", 1.5, True), SubmissionResult("b", 2.0, True), SubmissionResult("c", 2.0, True)]

    without = compute_scores(others)
    with_nan = compute_scores([SubmissionResult("nan", math.nan, True), *others])

    assert [score for score in with_nan if score.hotkey != "nan"] == without
    (nan_score,) = [score for score in with_nan if score.hotkey == "nan"]
    assert (nan_score.is_valid, nan_score.rank, nan_score.score) == (False, None, 0.0)
    assert nan_score.invalid_reason == "test loss is not finite"
