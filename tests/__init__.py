"""The test suite; its shared helpers are the tests.support package."""
