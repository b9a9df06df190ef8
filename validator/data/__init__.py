"""Data preparation: fetch the customer's dataset, map its columns to the standard ones, split train/test."""

from validator.data.errors import DataPreparationError
from validator.data.instruct import instruct_dataset_type, prepare_instruct_rows
from validator.data.load import ARTIFACT_PREFIX, display_source, load_rows, parse_rows, rows_to_json_bytes
from validator.data.split import split_rows

__all__ = [
    "ARTIFACT_PREFIX",
    "DataPreparationError",
    "display_source",
    "instruct_dataset_type",
    "load_rows",
    "parse_rows",
    "prepare_instruct_rows",
    "rows_to_json_bytes",
    "split_rows",
]
