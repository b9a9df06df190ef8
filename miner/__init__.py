"""The miner server: tells validators which training repo (and commit) to run for each task type."""
