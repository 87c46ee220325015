"""The wavefront schedule: every pixel once, and after everything its model may read."""

from __future__ import annotations

import itertools

import pytest

from ridecodec.engine import Wavefront


@pytest.mark.parametrize(("height", "width"), [(1, 1), (1, 9), (9, 1), (4, 7), (7, 4), (10, 10)])
@pytest.mark.parametrize("right", [None, 0, 1, 2, 3])
def test_schedule_covers_each_pixel_once_after_its_causal_neighbours(height, width, right):
    schedule = Wavefront(height, width, right)
    step_of = {}
    for t, rows, cols in schedule.steps():
        assert len(rows) > 0
        for row, col in zip(rows.tolist(), cols.tolist()):
            assert (row, col) not in step_of
            step_of[(row, col)] = t
    assert set(step_of) == set(itertools.product(range(height), range(width)))
    reach = width if right is None else right
    for (row, col), t in step_of.items():
        # every earlier-row pixel up to `reach` columns right, and every pixel to the left
        for d_row, d_col in itertools.product(range(-row, 0), range(-col, reach + 1)):
            if 0 <= col + d_col < width:
                assert step_of[(row + d_row, col + d_col)] < t
        for d_col in range(-col, 0):
            assert step_of[(row, col + d_col)] < t


def test_step_count_is_linear_not_quadratic():
    assert Wavefront(512, 512, 2).num_steps == 3 * 511 + 512
    assert Wavefront(512, 512, None).num_steps == 512 * 512
