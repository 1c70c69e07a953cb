"""Hypothesis profiles: a bounded run in every test run, a long one for nightly jobs (HYPOTHESIS_PROFILE=nightly)."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# No deadline: 2 shared cores make single examples slow at random; the property, not the speed, is under test.
settings.register_profile("default", max_examples=50, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("nightly", max_examples=5_000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
