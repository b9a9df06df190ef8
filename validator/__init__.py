"""The validator: public API, task lifecycle workers, data preparation, evaluation, scoring and weights."""
