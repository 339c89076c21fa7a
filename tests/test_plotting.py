import matplotlib

matplotlib.use("Agg")

import pandas as pd  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402

from cookbook import plotting  # noqa: E402


def test_helpers_return_axes():
    plotting.set_style()
    table = pd.DataFrame({"metric": ["nDCG@10"] * 2, "value": [0.5, 0.6], "system": ["a", "b"]})
    assert isinstance(plotting.metric_bars(table), Axes)
    s = pd.Series([0.1, 0.9, 0.5])
    assert isinstance(plotting.per_query_scatter(s, s[::-1].reset_index(drop=True), "a", "b"), Axes)
