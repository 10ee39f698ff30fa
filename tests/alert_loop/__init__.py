"""The drift alert loop, run once a session for the tests that read it (fixtures.py)."""
