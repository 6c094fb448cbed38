"""Local infrastructure for `make run` and the tests: Redis, PostgreSQL and anvil on free ports."""
