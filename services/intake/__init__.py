"""Intake: the HTTP API that takes paid mint requests, verifies payments and queues them durably."""
