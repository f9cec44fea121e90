"""What the tests and the benchmarks share, once: stand-ins for the services the relay talks to
(Flashduty, S3 via moto), server start-up, callback builders and hypothesis strategies.

Test modules and `bench/` import it as `tests.support.<module>`; conftest.py only declares fixtures.
"""
