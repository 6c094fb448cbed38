"""The operator's commands behind `mintline` (shared/cli.py): one module per command."""
