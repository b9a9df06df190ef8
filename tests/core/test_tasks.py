"""The task request payload refuses, with a message naming the field, what could only fail the task later."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from core.tasks import FileFormat, NewTaskRequestInstructText, hub_format_problem, url_scheme

VALID: dict[str, Any] = {
    "ds_repo": "yahma/alpaca-cleaned",
    "model_repo": "Qwen/Qwen2.5-0.5B",
    "hours_to_complete": 1.5,
    "field_instruction": "instruction",
    "field_output": "output",
}


def errors_of(**change: Any) -> list[tuple[str, str]]:
    """(field, message) of each validation error of VALID with `change` applied (a None value removes the key)."""
    body = {key: value for key, value in {**VALID, **change}.items() if value is not None}
    with pytest.raises(ValidationError) as raised:
        NewTaskRequestInstructText(**body)
    return [(".".join(str(part) for part in error["loc"]), error["msg"]) for error in raised.value.errors()]


@pytest.mark.parametrize(
    "field", ["ds_repo", "model_repo", "field_instruction", "field_input", "field_output", "field_system", "format"]
)
def test_nul_characters_are_refused_in_every_text_field(field: str) -> None:
    value = "Qwen/Qwen\x00" if field == "model_repo" else "col\x00umn"

    assert errors_of(**{field: value}) == [(field, "Value error, must not contain NUL characters")]


@pytest.mark.parametrize("change", [{"field_output": None}, {"field_output": "  "}])
def test_field_output_is_required_for_instruct_tasks(change: dict[str, Any]) -> None:
    [(field, message)] = errors_of(**change)

    assert field == "field_output"
    assert "required for instruct tasks" in message


@pytest.mark.parametrize("model_repo", ["gpt2", "a/b/c", "/abs/path", "org/../x", "org/name with space"])
def test_model_repo_must_look_like_org_name(model_repo: str) -> None:
    [(field, message)] = errors_of(model_repo=model_repo)

    assert field == "model_repo"
    assert "must look like 'org/name'" in message


@pytest.mark.parametrize(
    ("hours", "expected"),
    [
        (True, "must be a number of hours, not true or false"),
        (False, "must be a number of hours, not true or false"),
        (float("nan"), "must be a finite number"),
        (float("inf"), "must be a finite number"),
        ("inf", "finite number"),
        (0.001, "greater than or equal to 0.01"),
        (0, "greater than or equal to 0.01"),
    ],
)
def test_hours_to_complete_is_a_finite_number_of_hours_in_range(hours: Any, expected: str) -> None:
    [(field, message)] = errors_of(hours_to_complete=hours)

    assert field == "hours_to_complete"
    assert expected in message


def test_the_shortest_budget_is_36_seconds() -> None:
    assert NewTaskRequestInstructText(**{**VALID, "hours_to_complete": 0.01}).hours_to_complete == 0.01
    assert errors_of(hours_to_complete=0.0099)[0][0] == "hours_to_complete"


@pytest.mark.parametrize(
    ("ds_repo", "scheme"),
    [("ftp://files.example/data.json", "ftp"), ("file:///etc/passwd", "file"), ("S3://b/k", "s3")],
)
def test_urls_other_than_http_are_refused(ds_repo: str, scheme: str) -> None:
    assert errors_of(ds_repo=ds_repo, file_format="json") == [
        ("ds_repo", f"Value error, unsupported URL scheme {scheme!r}; use http(s)")
    ]


@pytest.mark.parametrize(
    "ds_repo", ["https://bucket.example/data.json?X-Amz-Signature=1", "/data/train.jsonl", "./rows.csv"]
)
def test_hub_format_with_a_url_or_a_file_path_hints_at_the_file_format(ds_repo: str) -> None:
    [(field, message)] = errors_of(ds_repo=ds_repo, file_format=None)

    assert field == "file_format"
    assert "set file_format to json or csv" in message
    request = NewTaskRequestInstructText(**{**VALID, "ds_repo": ds_repo, "file_format": "json"})
    assert request.file_format is FileFormat.JSON


def test_hub_ids_and_local_folders_are_left_to_the_hub_format() -> None:
    # "org/data.json" may be a real hub repo; a folder is how a local network names a hub-style dataset.
    assert hub_format_problem("org/data.json") is None
    assert hub_format_problem("/srv/datasets/alpaca") is None
    assert url_scheme("HTTPS://x") == "https" and url_scheme("/a://b") is None
