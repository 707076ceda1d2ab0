"""Fault-injection suite: the real worker process under kills, outages, error storms and fuzz."""
