"""Ray settings the tests give the processes they start (importable from every test folder, as
tests/conftest.py puts this folder on the path)."""

REFUSED_AFTER_3_TRIES = {"RAY_NUM_REDIS_GET_RETRIES": "3"}
"""A refused ``ray.init`` (a wrong or missing token) gives up after 3 tries of the GCS, 1 s
apart, instead of Ray's 20; the refusal and its message are the same."""
