"""loco keeps the plug-in contract: ridecodec's conformance kit, as any plug-in's tests use it."""

import pytest

from ridecodec import testing


@pytest.mark.parametrize("check", testing.CHECKS, ids=lambda check: check.__name__)
def test_loco_conforms(check):
    check("loco")
