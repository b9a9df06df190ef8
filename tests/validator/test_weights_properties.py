"""Properties of the weight formula for any scores, including NaN, infinities, negatives, empty input and all zeros."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, assume, given, settings, strategies as st

from validator.weights import (
    NodeEntry,
    ScoreWindow,
    TaskScores,
    TournamentResult,
    WeightInputs,
    WeightParams,
    apply_max_weight,
    compute_weights,
    explain_weights,
)

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
HOTKEYS = [f"5Hotkey{index}" for index in range(8)]
TOLERANCE = 1e-9

any_score = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1.0, 0.5, 0.25, -1.0, math.nan, math.inf, -math.inf, 5e-324, 1.7e308]),
)
task_types = st.sampled_from(["InstructTextTask", "DpoTask", "GrpoTask", "NotAType"])


@st.composite
def task_scores(draw: st.DrawFn) -> TaskScores:
    scores = draw(st.dictionaries(st.sampled_from(HOTKEYS), any_score, max_size=6))
    uids = draw(st.dictionaries(st.sampled_from(list(scores) or HOTKEYS), st.integers(0, 12), max_size=len(scores)))
    return TaskScores(
        task_id=f"task-{draw(st.integers(0, 10**6))}",
        task_type=draw(task_types),
        finished_at=NOW - timedelta(hours=draw(st.floats(0, 10 * 24))),
        scores=scores,
        uids={hotkey: uid for hotkey, uid in uids.items() if hotkey in scores},
    )


@st.composite
def tournament_results(draw: st.DrawFn) -> TournamentResult:
    return TournamentResult(
        tournament_id=f"tournament-{draw(st.integers(0, 100))}",
        tournament_type=draw(st.sampled_from(["text", "image", "other"])),
        completed_at=NOW - timedelta(hours=draw(st.floats(-24, 10 * 24))),
        shares=draw(st.dictionaries(st.sampled_from(HOTKEYS), any_score, max_size=4)),
    )


@st.composite
def nodes(draw: st.DrawFn) -> tuple[NodeEntry, ...]:
    hotkeys = draw(st.lists(st.sampled_from(HOTKEYS), unique=True, max_size=len(HOTKEYS)))
    uids = draw(st.permutations(list(range(13))))
    return tuple(NodeEntry(uid=uid, hotkey=hotkey) for hotkey, uid in zip(hotkeys, uids, strict=False))


@st.composite
def params(draw: st.DrawFn, *, burn: bool | None = None, max_weight: float | None = None) -> WeightParams:
    windows = draw(
        st.lists(
            st.builds(ScoreWindow, seconds=st.floats(60, 10 * 86400), weight=st.floats(0, 1)), min_size=1, max_size=4
        )
    )
    assume(any(window.weight > 0 for window in windows))
    organic = draw(st.floats(0, 1))
    tournament = draw(st.floats(0, 1 - organic))
    with_burn = draw(st.booleans()) if burn is None else burn
    return WeightParams(
        windows=tuple(windows),
        organic_share=organic,
        tournament_share=tournament,
        max_weight=max_weight if max_weight is not None else draw(st.one_of(st.just(1.0), st.floats(0.01, 1.0))),
        # Burn uids 0-12 may also be a miner's uid; 40 is never one.
        burn_uid=draw(st.one_of(st.integers(0, 12), st.just(40))) if with_burn else None,
    )


@st.composite
def weight_inputs(draw: st.DrawFn, **param_options) -> WeightInputs:
    return WeightInputs(
        evaluated_at=NOW,
        params=draw(params(**param_options)),
        organic=tuple(draw(st.lists(task_scores(), max_size=6))),
        tournaments=tuple(draw(st.lists(tournament_results(), max_size=3))),
        nodes=draw(nodes()),
    )


PROPERTY_SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY_SETTINGS
@given(weight_inputs())
def test_weights_are_finite_non_negative_normalised_and_within_the_limit(inputs: WeightInputs) -> None:
    breakdown = explain_weights(inputs)
    weights = breakdown.weights
    burn_uid = inputs.params.burn_uid

    assert all(math.isfinite(weight) and weight > 0 for weight in weights.values())
    assert set(weights) <= {node.uid for node in inputs.nodes} | {burn_uid}
    if burn_uid is not None:
        assert weights, "with a burn uid there is always something to set"
    if weights:
        assert math.isclose(math.fsum(weights.values()), 1.0, abs_tol=TOLERANCE)
    if breakdown.infeasible_cap:
        # Only when no distribution over the candidates could respect the limit; then all are equal.
        assert len(weights) * inputs.params.max_weight <= 1 + TOLERANCE
        assert len(set(weights.values())) == 1
    else:
        assert all(weight <= inputs.params.max_weight + TOLERANCE for weight in weights.values())


@PROPERTY_SETTINGS
@given(weight_inputs(burn=True, max_weight=1.0))
def test_the_burn_uid_takes_the_remainder_and_leaves_the_miners_shares_alone(inputs: WeightInputs) -> None:
    burn_uid = inputs.params.burn_uid
    assume(burn_uid not in {node.uid for node in inputs.nodes})
    weights = compute_weights(inputs)
    miners = {uid: weight for uid, weight in weights.items() if uid != burn_uid}
    paid = math.fsum(miners.values())

    assert math.isclose(weights.get(burn_uid, 0.0), 1.0 - paid, abs_tol=TOLERANCE)
    assert paid <= inputs.params.organic_share + inputs.params.tournament_share + TOLERANCE
    # Without the burn uid the same miners share everything, in the same proportions.
    without_burn = compute_weights(
        inputs.model_copy(update={"params": inputs.params.model_copy(update={"burn_uid": None})})
    )
    assert set(without_burn) == set(miners)
    for uid, weight in miners.items():
        assert math.isclose(weight / paid, without_burn[uid], rel_tol=1e-9, abs_tol=1e-12)


@PROPERTY_SETTINGS
@given(weight_inputs(), st.sampled_from([0.0, -1.0, math.nan, -math.inf]))
def test_scores_that_are_all_zero_or_bad_pay_nothing(inputs: WeightInputs, bad: float) -> None:
    zeroed = inputs.model_copy(
        update={
            "organic": tuple(
                task.model_copy(update={"scores": dict.fromkeys(task.scores, bad)}) for task in inputs.organic
            ),
            "tournaments": (),
        }
    )
    burn_uid = inputs.params.burn_uid

    assert compute_weights(zeroed) == ({} if burn_uid is None else {burn_uid: 1.0})


@PROPERTY_SETTINGS
@given(weight_inputs())
def test_the_published_json_gives_exactly_the_same_weights(inputs: WeightInputs) -> None:
    assert compute_weights(WeightInputs.model_validate(inputs.to_json())) == compute_weights(inputs)


@PROPERTY_SETTINGS
@given(
    st.dictionaries(st.integers(0, 20), st.floats(1e-6, 1.0), min_size=1, max_size=12),
    st.floats(0.01, 1.0),
    st.one_of(st.none(), st.integers(0, 25)),
)
def test_the_cap_moves_excess_to_the_burn_uid_or_water_fills_it(
    raw: dict[int, float], cap: float, burn_uid: int | None
) -> None:
    total = math.fsum(raw.values())
    weights = {uid: value / total for uid, value in raw.items()}

    capped, infeasible = apply_max_weight(weights, cap, burn_uid)

    assert math.isclose(math.fsum(capped.values()), 1.0, abs_tol=TOLERANCE)
    candidates = set(weights) | ({burn_uid} if burn_uid is not None else set())
    if infeasible:
        assert len(candidates) * cap <= 1 + TOLERANCE
        return
    assert all(value <= cap + TOLERANCE for value in capped.values())
    assert set(capped) <= candidates
    if burn_uid is not None and capped.get(burn_uid, 0.0) < cap - TOLERANCE:
        # The burn uid absorbed every excess: miners under the cap keep exactly their share.
        for uid, weight in weights.items():
            if uid != burn_uid:
                assert math.isclose(capped[uid], min(weight, cap), abs_tol=TOLERANCE)
    if burn_uid is None:
        # Water-filling keeps the order of the weights (a larger input never ends up with less).
        ordered = sorted(weights, key=weights.__getitem__)
        assert all(capped[a] <= capped[b] + TOLERANCE for a, b in zip(ordered, ordered[1:], strict=False))
