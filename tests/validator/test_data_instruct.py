"""Mapping an instruct dataset's columns to the standard ones."""

from __future__ import annotations

import json
import math

import pytest

from core.formatting import render_instruct
from core.tasks import INSTRUCT_COLUMNS
from validator.data import DataPreparationError, instruct_dataset_type, prepare_instruct_rows, rows_to_json_bytes


def test_columns_are_renamed_to_the_standard_names() -> None:
    rows = [{"q": "Add", "ctx": "2 and 2", "ans": "4", "sys": "Be brief.", "noise": True}]

    prepared, dropped = prepare_instruct_rows(
        rows, field_instruction="q", field_input="ctx", field_output="ans", field_system="sys"
    )

    assert dropped == 0
    assert prepared == [{"instruct": "Add", "input": "2 and 2", "output": "4", "system": "Be brief."}]
    assert set(prepared[0]) == set(INSTRUCT_COLUMNS)


def test_undeclared_optional_columns_are_left_out() -> None:
    prepared, _ = prepare_instruct_rows([{"q": "Hi", "a": "Hello"}], field_instruction="q", field_output="a")

    assert prepared == [{"instruct": "Hi", "output": "Hello"}]


def test_missing_column_error_names_the_column_and_lists_available_ones() -> None:
    rows = [{"q": "x", "a": "y"}, {"q": "z", "a": "w", "b": "v"}]

    with pytest.raises(DataPreparationError) as error:
        prepare_instruct_rows(rows, field_instruction="question", field_output="a")

    assert str(error.value) == (
        "column 'question' (field_instruction) not found in the dataset; available columns: q, a, b"
    )


def test_every_missing_column_is_named_at_once() -> None:
    with pytest.raises(DataPreparationError, match=r"columns 'i' \(field_instruction\), 's' \(field_system\) not"):
        prepare_instruct_rows([{"q": "x", "a": "y"}], field_instruction="i", field_output="a", field_system="s")


def test_output_column_is_required() -> None:
    with pytest.raises(DataPreparationError, match=r"field_output is required"):
        prepare_instruct_rows([{"q": "x"}], field_instruction="q")


def test_empty_dataset_is_refused() -> None:
    with pytest.raises(DataPreparationError, match=r"no rows"):
        prepare_instruct_rows([], field_instruction="q", field_output="a")


def test_null_empty_and_structured_cells_are_dropped_and_counted() -> None:
    rows = [
        {"q": "keep", "a": "yes", "c": None},
        {"q": None, "a": "no instruction"},
        {"q": "", "a": "empty instruction"},
        {"q": "   ", "a": "blank instruction"},
        {"q": "no output", "a": None},
        {"q": "missing output key"},
        {"q": "nan output", "a": math.nan},
        {"q": ["a", "list"], "a": "x"},
        {"q": "object output", "a": {"k": "v"}},
        {"q": "object input", "a": "x", "c": {"k": "v"}},
        {"q": 7, "a": 3.5, "c": 0},
    ]

    prepared, dropped = prepare_instruct_rows(rows, field_instruction="q", field_input="c", field_output="a")

    assert prepared == [
        {"instruct": "keep", "input": "", "output": "yes"},
        {"instruct": "7", "input": "0", "output": "3.5"},
    ]
    assert dropped == 9


def test_duplicate_rows_are_dropped_and_counted() -> None:
    rows = [
        {"q": "same", "a": "answer", "c": "ctx"},
        {"q": "same", "a": "answer", "c": "ctx"},
        {"q": "same", "a": "answer", "c": "other ctx"},
        {"q": "same", "a": "other answer", "c": "ctx"},
    ]

    prepared, dropped = prepare_instruct_rows(rows, field_instruction="q", field_input="c", field_output="a")

    assert len(prepared) == 3
    assert dropped == 1


def test_dataset_type_points_at_the_standard_columns_and_keeps_the_formats() -> None:
    dataset_type = instruct_dataset_type(
        field_input="ctx", format="Q: {instruction}\n{input}\nA:", no_input_format="Q: {instruction}\nA:"
    )

    assert dataset_type.field_instruction == "instruct"
    assert dataset_type.field_input == "input"
    assert dataset_type.field_output == "output"
    assert dataset_type.field_system is None
    prompt, completion = render_instruct({"instruct": "Add", "input": "2, 2", "output": "4"}, dataset_type)
    assert (prompt, completion) == ("Q: Add\n2, 2\nA:", " 4")


def test_dataset_type_without_input_and_with_system() -> None:
    dataset_type = instruct_dataset_type(field_system="sys", system_format="<<{system}>> ")

    assert dataset_type.field_input is None
    assert dataset_type.field_system == "system"
    assert dataset_type.system_format == "<<{system}>> "
    assert instruct_dataset_type().system_format == "{system}"


def test_cells_with_lone_surrogates_are_dropped_and_counted() -> None:
    # json.loads turns the escape "\ud800" into a lone surrogate, which UTF-8 cannot encode.
    rows = json.loads('[{"q": "bad \\ud800", "a": "x"}, {"q": "ok", "a": "y", "s": "\\udfff"}, {"q": "ok", "a": "z"}]')

    prepared, dropped = prepare_instruct_rows(rows, field_instruction="q", field_output="a", field_system="s")

    assert (prepared, dropped) == ([{"instruct": "ok", "output": "z", "system": ""}], 2)
    assert json.loads(rows_to_json_bytes(prepared)) == prepared


def test_rows_to_json_bytes_never_fails_on_invalid_unicode() -> None:
    assert json.loads(rows_to_json_bytes([{"instruct": "a\ud800b", "output": "x"}])) == [
        {"instruct": "a?b", "output": "x"}
    ]


def test_hostile_column_names_give_a_short_message_that_postgres_can_store() -> None:
    rows = [{"q\x00": "x", "\ud800": "y", "long" * 1000: "z"}]

    with pytest.raises(DataPreparationError) as error:
        prepare_instruct_rows(rows, field_instruction="question", field_output="answer")

    message = str(error.value)
    assert "\x00" not in message
    message.encode("utf-8")  # no lone surrogate left
    assert "q\\x00" in message and "\\ud800" in message
    assert len(message) < 400
