"""The trainer host: an HTTP API for validators and the job pipeline that runs training repos as child processes."""

from trainer.host.server import create_app

__all__ = ["create_app"]
