"""The one error data preparation raises."""

from __future__ import annotations


class DataPreparationError(Exception):
    """The customer's dataset cannot be used.

    The message is shown to the customer as the task's `error`, so it names the source, column or row count and
    says what to change. It never carries credentials: URLs are shown without their query string. It is stored as
    PostgreSQL text, so NUL characters and lone surrogates that a hostile file put in a column name are escaped.
    """

    def __init__(self, message: str) -> None:
        super().__init__(storable_text(message))


def storable_text(text: str) -> str:
    """`text` with NUL characters and lone surrogates written as escapes (PostgreSQL text holds neither)."""
    return text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")
