"""Map an instruct dataset's columns to the standard ones and drop the rows that cannot teach anything."""

from __future__ import annotations

import logging
import math
import numbers
from collections.abc import Sequence
from typing import Any

from core.tasks import INSTRUCT_COLUMNS, InstructTextDatasetType
from validator.data.errors import DataPreparationError

logger = logging.getLogger(__name__)

INSTRUCT, INPUT, OUTPUT, SYSTEM = INSTRUCT_COLUMNS
MAX_COLUMNS_SHOWN = 50


def prepare_instruct_rows(
    rows: Sequence[dict[str, Any]],
    *,
    field_instruction: str,
    field_input: str | None = None,
    field_output: str | None = None,
    field_system: str | None = None,
) -> tuple[list[dict[str, str]], int]:
    """Rename the customer's columns to instruct/input/output/system and keep the usable, distinct rows.

    A row is dropped when its instruction or output is missing, empty or not text-like (a list or an object), when
    a declared input or system cell is a list or an object, when a declared cell holds a lone surrogate (invalid
    Unicode), or when an earlier row has the same instruction, input and output. Numbers become text. Missing input
    and system cells become "".

    Returns:
        `(rows, dropped_count)`; each row holds "instruct" and "output", plus "input" / "system" when declared.

    Raises:
        DataPreparationError: no rows, no output column declared, or a declared column absent from the data.
    """
    if not rows:
        raise DataPreparationError("the dataset has no rows")
    if not field_output:
        raise DataPreparationError(
            "field_output is required for an instruct task: name the column that holds the expected answer"
        )
    _check_columns_exist(
        rows,
        {
            "field_instruction": field_instruction,
            "field_input": field_input,
            "field_output": field_output,
            "field_system": field_system,
        },
    )

    prepared: list[dict[str, str]] = []
    seen: set[tuple[str, str, str]] = set()
    unusable = duplicates = 0
    for row in rows:
        mapped = _map_row(row, field_instruction, field_input, field_output, field_system)
        if mapped is None:
            unusable += 1
            continue
        identity = (mapped[INSTRUCT], mapped.get(INPUT, ""), mapped[OUTPUT])
        if identity in seen:
            duplicates += 1
            continue
        seen.add(identity)
        prepared.append(mapped)

    logger.debug("kept %d instruct rows; dropped %d unusable and %d duplicate", len(prepared), unusable, duplicates)
    return prepared, unusable + duplicates


def instruct_dataset_type(
    *,
    field_input: str | None = None,
    field_system: str | None = None,
    format: str | None = None,
    no_input_format: str | None = None,
    system_format: str | None = None,
) -> InstructTextDatasetType:
    """The `--dataset-type` of rows made by `prepare_instruct_rows`: standard column names, the request's formats.

    `field_input` / `field_system` are the customer's column names (or None); only whether they were declared
    matters here, because the prepared rows carry them as "input" / "system".
    """
    dataset_type = InstructTextDatasetType(
        field_instruction=INSTRUCT,
        field_input=INPUT if field_input else None,
        field_output=OUTPUT,
        field_system=SYSTEM if field_system else None,
        format=format,
        no_input_format=no_input_format,
    )
    if system_format is not None:
        dataset_type.system_format = system_format
    return dataset_type


def _check_columns_exist(rows: Sequence[dict[str, Any]], declared: dict[str, str | None]) -> None:
    available: dict[str, None] = {}
    for row in rows:
        available.update(dict.fromkeys(row))
    missing = [(field, column) for field, column in declared.items() if column and column not in available]
    if not missing:
        return
    named = ", ".join(f"{column!r} ({field})" for field, column in missing)
    # A hostile file can name columns with megabytes of text; the message stays readable.
    shown = ", ".join(_shorten(str(column)) for column in list(available)[:MAX_COLUMNS_SHOWN])
    if len(available) > MAX_COLUMNS_SHOWN:
        shown += f", … ({len(available)} in all)"
    noun = "column" if len(missing) == 1 else "columns"
    raise DataPreparationError(f"{noun} {named} not found in the dataset; available columns: {shown or 'none'}")


def _shorten(text: str, limit: int = 100) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _map_row(
    row: dict[str, Any],
    field_instruction: str,
    field_input: str | None,
    field_output: str,
    field_system: str | None,
) -> dict[str, str] | None:
    instruction = _cell_text(row.get(field_instruction))
    output = _cell_text(row.get(field_output))
    if not instruction or not instruction.strip() or not output or not output.strip():
        return None
    mapped = {INSTRUCT: instruction, OUTPUT: output}
    for standard, column in ((INPUT, field_input), (SYSTEM, field_system)):
        if column:
            text = _cell_text(row.get(column))
            if text is None:
                return None
            mapped[standard] = text
    return mapped


def _cell_text(value: Any) -> str | None:
    """The cell as text: "" when missing, None when it is not text-like (a list, an object)."""
    if value is None:
        return ""
    if isinstance(value, str):
        # A JSON "\ud800" escape decodes to a lone surrogate, which no UTF-8 file (nor the trainer) can hold.
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return None
        return value
    if isinstance(value, numbers.Number):
        # NaN is how pandas-backed data (CSV via pandas, parquet) marks an empty cell.
        if isinstance(value, numbers.Real) and not math.isfinite(float(value)):
            return ""
        return str(value)
    return None
