"""A whole subnet on one machine: local chain, embedded PostgreSQL, a validator, miners and a trainer host."""
