"""The synthetic bank's customers: national ids that stay distinct however large the bank."""

from __future__ import annotations

import math

import numpy as np

from pipelines.synthetic.customers import ID_MULTIPLIER, ID_SPACE, national_ids


def test_national_ids_are_distinct_across_chunks_and_large_banks():
    assert math.gcd(ID_MULTIPLIER, ID_SPACE) == 1
    ids = national_ids(np.arange(2_000_000), salt=12345)
    assert len(set(ids.tolist())) == 2_000_000
