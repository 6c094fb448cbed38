"""The operator console: a small aiohttp service (`python -m admin.console`) over the admin CLI's own
functions, behind per-operator tokens (or one shared token) from the environment."""
