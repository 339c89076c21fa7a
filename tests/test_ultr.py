"""Diagnostics of a click log before training (cookbook.ultr): rank graph, identifiability, weights."""

import numpy as np
import pandas as pd
import pytest

from cookbook import ultr


def hand_log(rows):
    return pd.DataFrame(rows, columns=["query", "doc", "position", "click", "feat_x"])


def test_rank_graph_connects_positions_sharing_a_pair():
    log = hand_log([("q", "a", 1, 1, 0.1), ("q", "a", 2, 0, 0.1), ("q", "b", 2, 0, 0.5),
                    ("q", "b", 3, 1, 0.5), ("r", "c", 4, 0, 0.9)])
    rep = ultr.identifiability(log, n_positions=4, by="pair")
    assert rep.components == [[1, 2, 3], [4]] and not rep.connected
    assert "NOT identifiable" in rep.verdict
    log.loc[len(log)] = ("r", "c", 3, 0, 0.9)
    rep = ultr.identifiability(log, n_positions=4, by="pair")
    assert rep.connected and rep.verdict.startswith("identifiable")


def test_rank_graph_feature_overlap_is_a_second_route():
    # different pairs, same feature value at positions 1 and 3: no pair edge, one feature edge
    log = hand_log([("q", "a", 1, 1, 0.5), ("r", "b", 3, 0, 0.5), ("s", "c", 2, 0, 0.7), ("t", "d", 1, 0, 0.7)])
    assert len(ultr.identifiability(log, 3, by="pair").components) == 3
    feat = ultr.identifiability(log, 3, by="features", feature_cols=["feat_x"])
    assert feat.connected
    assert ultr.rank_graph(log, 3, by="both").number_of_edges() == 2


def test_unseen_positions_are_isolated_nodes():
    log = hand_log([("q", "a", 1, 1, 0.1), ("q", "a", 2, 0, 0.1)])
    rep = ultr.identifiability(log, n_positions=5)
    assert rep.components == [[1, 2], [3], [4], [5]]


def test_propensity_weights_clip_and_normalise():
    log = pd.DataFrame({"propensity": [1.0, 0.5, 0.01, 0.25]})
    w = ultr.propensity_weights(log, clip=10, normalise=False)
    assert np.allclose(w, [1, 2, 10, 4])
    assert np.isclose(ultr.propensity_weights(log, clip=10).mean(), 1.0)



def test_identified_positions_are_the_component_of_position_one():
    log = hand_log([("q", "a", 1, 1, 0.1), ("q", "a", 2, 0, 0.1), ("r", "c", 3, 0, 0.9), ("r", "c", 4, 0, 0.9)])
    rep = ultr.identifiability(log, n_positions=5)
    assert ultr.identified_positions(rep).tolist() == [True, True, False, False, False]
    assert ultr.identified_positions(rep, reference=3).tolist() == [False, False, True, True, False]
    with pytest.raises(ValueError, match="position 9 is not in the rank graph"):
        ultr.identified_positions(rep, reference=9)


@pytest.mark.parametrize("make, message", [
    (lambda: ultr.propensity_weights(pd.DataFrame({"propensity": [0.0]})), "probabilities"),
    (lambda: ultr.propensity_weights(pd.DataFrame({"propensity": [0.5]}), clip=0.5), "clip"),
    (lambda: ultr.identifiability(hand_log([])), "empty"),
    (lambda: ultr.rank_graph(hand_log([("q", "a", 1, 0, 0.0)]), by="docs"), "by must be"),
    (lambda: ultr.rank_graph(pd.DataFrame({"query": ["q"], "position": [1]})), "no 'doc' column"),
])
def test_bad_input_raises_clear_errors(make, message):
    with pytest.raises(ValueError, match=message):
        make()
