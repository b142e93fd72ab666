"""SIMULATED upstreams for tests and demos (nothing here talks to a real service; values are made up)."""
