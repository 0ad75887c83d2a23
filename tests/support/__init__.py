"""Test harness shared by the suite: private servers, processes, polling (no test state is shared
with anything else on the machine)."""
