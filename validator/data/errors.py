"""The one error data preparation raises."""

from __future__ import annotations


class DataPreparationError(Exception):
    """The customer's dataset cannot be used.

    The message is shown to the customer as the task's `error`, so it names the source, column or row count and
    says what to change. It never carries credentials: URLs are shown without their query string.
    """
