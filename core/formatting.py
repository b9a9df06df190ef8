"""How a prepared dataset row becomes the text a model sees.

Trainers and the evaluator must agree on this, so it lives here and both import it. The rules follow the existing
subnet's instruct format: `format` (default "{instruction} {input}") when the row has an input, `no_input_format`
(default "{instruction}") when it has none, and an optional system text in front via `system_format`.
The completion is the output column; the end-of-sequence token is appended by the tokenising side.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from core.tasks import InstructTextDatasetType

DEFAULT_FORMAT = "{instruction} {input}"
DEFAULT_NO_INPUT_FORMAT = "{instruction}"
DEFAULT_SYSTEM_FORMAT = "{system}"


def _text(row: Mapping[str, Any], column: str | None) -> str:
    if not column:
        return ""
    value = row.get(column)
    return "" if value is None else str(value)


def render_instruct(row: Mapping[str, Any], dataset_type: InstructTextDatasetType) -> tuple[str, str]:
    """Return `(prompt, completion)` for one prepared instruct row."""
    instruction = _text(row, dataset_type.field_instruction)
    user_input = _text(row, dataset_type.field_input)
    system = _text(row, dataset_type.field_system) or (dataset_type.system_prompt or "")

    if user_input:
        prompt = (dataset_type.format or DEFAULT_FORMAT).replace("{instruction}", instruction)
        prompt = prompt.replace("{input}", user_input)
    else:
        prompt = (dataset_type.no_input_format or DEFAULT_NO_INPUT_FORMAT).replace("{instruction}", instruction)
    if system:
        prompt = (dataset_type.system_format or DEFAULT_SYSTEM_FORMAT).replace("{system}", system) + prompt

    completion = _text(row, dataset_type.field_output)
    # A separating space keeps the completion's first word a fresh token, as the trainer sees it.
    if prompt and completion and not prompt[-1].isspace() and not completion[0].isspace():
        completion = " " + completion
    return prompt, completion
