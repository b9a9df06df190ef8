"""The `god` command line and the local network: the composition root that wires the roles together."""
