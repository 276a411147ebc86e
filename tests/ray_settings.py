"""Ray settings the tests give the processes they start (importable from every test folder, as
tests/conftest.py puts this folder on the path)."""

REFUSED_AFTER_3_TRIES = {"RAY_NUM_REDIS_GET_RETRIES": "3"}
"""A refused ``ray.init`` (a wrong or missing token) gives up after 3 tries of the GCS, 1 s
apart, instead of Ray's 20; the refusal and its message are the same."""

NODE_TIMEOUT = {
    "RAY_health_check_period_ms": "1000",
    "RAY_health_check_timeout_ms": "2000",
    "RAY_health_check_failure_threshold": "3",
}
"""A head's health checks, shortened so that a node whose link is cut is declared dead after 3
failed checks of 2 s each instead of Ray's default minute (5 of 10 s each); what the driver
does with a dead node is the same either way."""
