"""The novelty half of the supervised detectors (`detectors.novelty`): rarity against what
training saw, its threshold on held-out benign nodes, and the burst a flow must belong to."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from siem_gad.detectors.novelty import NoveltyHalf

NAMES = ("bytes", "flag S", "flag C", "hour_sin")


def training(rng: np.random.Generator, rows: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """Seen nodes (flag S common, flag C never, any hour) and held-out benign ones like them."""
    def draw(n):
        return np.column_stack([rng.normal(5, 1, n), rng.random(n) < 0.6, np.zeros(n),
                                rng.uniform(-0.5, 0.5, n)]).astype(np.float32)
    return draw(rows), draw(rows // 4)


def test_novelty_is_a_value_training_rarely_saw_whatever_its_label_and_never_the_hour():
    seen, benign = training(np.random.default_rng(1))
    half = NoveltyHalf.fit(seen, benign, NAMES, percentile=99.0, burst=1, seed=1)
    usual = np.array([[5, 1, 0, 0]], np.float32)
    flag_c = np.array([[5, 1, 1, 0]], np.float32)
    huge = np.array([[40, 0, 0, 0]], np.float32)
    at_night = np.array([[5, 1, 0, 1.0]], np.float32)  # an hour training never had
    assert half.ratio(usual)[0] < 1 and half.ratio(at_night)[0] == half.ratio(usual)[0]
    for row, feature in ((flag_c, "flag C"), (huge, "bytes")):
        names, share, novel = half.rarest(row)
        assert half.ratio(row)[0] > 1 and novel[0] and names == [feature]
        assert share[0] == pytest.approx(1 / (len(seen) + 2))  # a value no training node had
    assert not half.rarest(usual)[2][0]
    # held-out benign nodes above the threshold: at most the percentile's share
    assert (half.ratio(benign) >= 1).mean() <= 0.01
    # a value common among the seen nodes is not new, whichever label they had
    seen_with_c = seen.copy()
    seen_with_c[: len(seen) // 3, 2] = 1
    assert NoveltyHalf.fit(seen_with_c, benign, NAMES, 99.0, 1, 1).ratio(flag_c)[0] < 1


def test_a_flow_counts_as_novel_only_in_a_burst_of_novel_flows_from_its_sender():
    seen, benign = training(np.random.default_rng(2))
    half = NoveltyHalf.fit(seen, benign, NAMES, 99.0, burst=5, seed=2)
    odd = np.array([5, 1, 1, 0], np.float32)
    usual = np.array([5, 1, 0, 0], np.float32)
    rows = np.array([odd] * 5 + [odd] + [usual] * 4, np.float32)
    senders = np.array(["flooder"] * 5 + ["quiet"] * 5, object)
    alone = NoveltyHalf.fit(seen, benign, NAMES, 99.0, burst=1, seed=2).ratio(rows)
    ratio = half.ratio(rows, senders)
    np.testing.assert_allclose(ratio[:5], alone[:5])  # five novel flows from one sender: in full
    assert (ratio[:5] >= 1).all() and alone[5] > 1
    assert (ratio[5:] == 0).all()  # one novel flow of five from its sender: nothing, nor its sender's others
    assert (half.ratio(rows[1:5], senders[1:5]) == 0).all()  # four: one short of the burst
    np.testing.assert_allclose(half.ratio(rows), alone)  # no groups: each node alone


def test_the_burst_is_a_rate_over_the_window_and_never_less_than_its_count():
    seen, benign = training(np.random.default_rng(4))
    half = NoveltyHalf.fit(seen, benign, NAMES, 99.0, burst=5, seed=4)
    rows = np.array([[5, 1, 1, 0]] * 12, np.float32)
    senders = np.array(["h"] * 12, object)
    assert half.needed(60) == 30 and half.needed(10) == 5 and half.needed(1) == 5
    assert (half.ratio(rows, senders, minutes=10) >= 1).all()
    assert (half.ratio(rows, senders, minutes=20) >= 1).all()  # twenty minutes need 10: 12 are enough
    assert (half.ratio(rows, senders, minutes=60) == 0).all()  # an hour needs 30
    assert (half.ratio(rows[:4], senders[:4], minutes=1) == 0).all()  # a short window still needs 5


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.booleans(), st.integers(0, 2)), min_size=1, max_size=40),
       st.integers(1, 6), st.randoms(use_true_random=False))
def test_novelty_is_bounded_and_follows_its_rows_whatever_their_order(nodes, burst, shuffle):
    seen, benign = training(np.random.default_rng(3), rows=400)
    half = NoveltyHalf.fit(seen, benign, NAMES, 95.0, burst=burst, seed=3)
    rows = np.array([[5 + 10 * size, 1, flag, 0] for size, flag, _ in nodes], np.float32)
    senders = np.array([f"h{who}" for _, _, who in nodes], object)
    ratio = half.ratio(rows, senders)
    ceiling = np.log(len(seen) + 2) / half.threshold
    assert ((ratio >= 0) & (ratio <= ceiling + 1e-9)).all()
    assert (ratio <= half.ratio(rows) + 1e-12).all()  # the burst only ever takes novelty away
    counts = {who: sum(half.ratio(rows)[senders == who] >= 1) for who in set(senders)}
    in_burst = np.array([counts[who] >= burst for who in senders])
    assert np.array_equal(ratio >= 1, (half.ratio(rows) >= 1) & in_burst)
    order = list(range(len(nodes)))
    shuffle.shuffle(order)
    np.testing.assert_allclose(half.ratio(rows[order], senders[order]), ratio[order])
    # a scoring pass looks many windows up at once: the same as one window at a time
    cut = shuffle.randint(0, len(nodes))
    windows = [(rows[:cut], senders[:cut]), (rows[:0], senders[:0]), (rows[cut:], senders[cut:])]
    together = half.ratios([r for r, _ in windows], lambda i: windows[i][1])
    for (part, who), batched in zip(windows, together):
        np.testing.assert_allclose(batched, half.ratio(part, who))


def test_a_model_saved_with_the_isolation_forest_novelty_asks_to_be_trained_again():
    import torch

    with pytest.raises(ValueError, match="train the model again"):
        NoveltyHalf.from_state({"forest": {}, "threshold": torch.tensor(0.5)}, burst=20)
