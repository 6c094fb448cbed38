"""The operator console: a small aiohttp service (`python -m admin.console`) over the admin CLI's own
functions, behind a token from the environment."""
