"""Shared building blocks of the subnet's nodes: tasks, contracts, settings, storage, chain and signed HTTP."""
