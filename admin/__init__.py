"""The operator's commands behind `mintline` (admin/cli.py): one module per command.

A package of its own above shared/ and services/: it reads every service's settings and reuses their
replay and payment code, which shared/ (what all services use) must never import.
"""
