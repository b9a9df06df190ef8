"""Per-task scores from evaluation results (pure functions).

Valid submissions with a finite test loss are ranked by loss, lowest first; ties share the better rank
("1224" ranking). Rank r scores 0.5 ** (r - 1), so the winner gets 1 and every later place half the one before.
Invalid or failed submissions score 0 and keep their reason; a NaN or infinite loss is one of them, so it takes no
rank and leaves every other submission's rank and score as they would be without it. Copies of another submission,
outputs that are not a fine-tune of the base and no-ops are refused before this (`validator.submission_checks`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

RANK_DECAY = 0.5


@dataclass(frozen=True)
class SubmissionResult:
    """What evaluation found for one contestant."""

    hotkey: str
    test_loss: float | None
    is_valid: bool
    invalid_reason: str | None = None


@dataclass(frozen=True)
class SubmissionScore:
    hotkey: str
    test_loss: float | None
    rank: int | None  # None when not ranked (invalid, failed or no finite loss)
    score: float
    is_valid: bool
    invalid_reason: str | None


def compute_scores(results: Sequence[SubmissionResult]) -> list[SubmissionScore]:
    """Score every submission; the result is ordered by rank (best first), unranked ones last by hotkey."""
    ranked: list[SubmissionResult] = []
    scores: list[SubmissionScore] = []
    for result in results:
        if not result.is_valid:
            reason = result.invalid_reason or "invalid submission"
            scores.append(SubmissionScore(result.hotkey, result.test_loss, None, 0.0, False, reason))
        elif result.test_loss is None or not math.isfinite(result.test_loss):
            reason = "evaluation produced no test loss" if result.test_loss is None else "test loss is not finite"
            scores.append(SubmissionScore(result.hotkey, result.test_loss, None, 0.0, False, reason))
        else:
            ranked.append(result)

    ranked.sort(key=lambda result: (result.test_loss, result.hotkey))
    ranked_scores = []
    for index, result in enumerate(ranked):
        # Ties share the better rank: the rank of the first submission with this loss.
        rank = index + 1
        if index > 0 and result.test_loss == ranked[index - 1].test_loss:
            rank = ranked_scores[-1].rank
        ranked_scores.append(
            SubmissionScore(result.hotkey, result.test_loss, rank, RANK_DECAY ** (rank - 1), True, None)
        )
    return ranked_scores + sorted(scores, key=lambda score: score.hotkey)


def winner(scores: Sequence[SubmissionScore]) -> SubmissionScore | None:
    """The rank-1 submission (the lowest hotkey among tied winners, so the choice is deterministic)."""
    best = [score for score in scores if score.rank == 1]
    return min(best, key=lambda score: score.hotkey) if best else None
