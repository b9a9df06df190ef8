"""The trainer host (runs miners' training repos for validators) and the reference training repo."""
