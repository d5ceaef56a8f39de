"""TFLM's GreedyMemoryPlanner reproduced buffer for buffer (greedy_offsets), and the placement
primitive the improvers reuse (place_buffers). Hand-worked cases, no TFLM needed."""
from __future__ import annotations

from interp.planner import arena_extent, greedy_offsets, place_buffers


def test_greedy_places_equal_sizes_in_reverse_insertion_order():
    # Buffers 0 and 1 tie on size: TFLM considers the later-added one (1) first, at offset 0.
    # A forward tie order would give [0, 32, 0] instead.
    assert greedy_offsets([32, 32, 16], [0, 1, 2], [1, 2, 3]) == [32, 0, 32]


def test_greedy_puts_a_buffer_in_the_first_gap_that_is_large_enough():
    # Placement order A(64), D(48), B(32), C(16). D is not live with A: both at 0. B is live with
    # both: on top, at 64. C is live with D and B: the 16-byte gap between D's end (48) and B fits.
    # sizes:             A   B   C   D
    assert greedy_offsets([64, 32, 16, 48], [0, 0, 2, 2], [1, 3, 3, 2]) == [0, 64, 48, 0]


def test_greedy_uses_offline_offsets_as_given_and_first():
    # An unaligned offline offset is kept; the online buffer is fitted around it.
    offs = greedy_offsets([48, 16, 16], [0, 0, 5], [3, 3, 6], [8, None, None])
    assert offs == [8, 56, 0]


def test_greedy_ignores_buffers_not_live_at_the_same_time():
    assert greedy_offsets([16, 16, 16], [0, 1, 2], [0, 1, 2]) == [0, 0, 0]
    # Inclusive lifetimes: [0,1] and [1,2] overlap at scope 1.
    assert sorted(greedy_offsets([16, 16], [0, 1], [1, 2])) == [0, 16]


def test_greedy_lets_online_buffers_share_a_gap_between_offline_ones():
    # Offline buffers at [0, 16) and [48, 64); a 32-byte online buffer live with both fits between.
    assert greedy_offsets([16, 16, 32], [0, 0, 0], [1, 1, 1], [0, 48, None]) == [0, 48, 16]
    # One byte too large for the gap: it goes on top.
    assert greedy_offsets([16, 16, 48], [0, 0, 0], [1, 1, 1], [0, 48, None]) == [0, 48, 64]


def test_place_buffers_first_fit_and_best_fit_in_a_given_order():
    # Placed A(32) at 0 and C(32) at 64 (both live at 0..1), leaving gaps [32, 64) and above 96.
    # B(16), live with both, goes into the first gap: at 32 with first fit and with best fit.
    sizes, firsts, lasts = [32, 16, 32, 16], [0, 0, 0, 0], [1, 1, 1, 1]
    fixed = [0, None, 64, None]
    assert place_buffers([0, 2, 1, 3], sizes, firsts, lasts, fixed) == [0, 32, 64, 48]
    # Best fit takes the smallest gap that is large enough, not the first.
    sizes, fixed = [32, 48, 32, 16], [0, None, 80, None]   # gaps [32, 80) (48 B) and [112, ...)
    assert place_buffers([0, 2, 3], sizes, firsts, lasts, fixed)[3] == 32
    offs = place_buffers([0, 2, 3, 1], sizes, firsts, lasts, fixed, best_fit=True)
    assert offs[3] == 32 and offs[1] == 112  # 16 B into the 48-B gap; 48 B no longer fits there
    assert arena_extent(offs, sizes) == 160


def test_place_buffers_in_tflm_order_is_greedy_offsets():
    import random
    rng = random.Random(3)
    for _ in range(200):
        n = rng.randint(1, 9)
        sizes = [16 * rng.randint(1, 6) for _ in range(n)]
        firsts = [rng.randint(-1, 6) for _ in range(n)]
        lasts = [f + rng.randint(0, 4) for f in firsts]
        order = sorted(range(n - 1, -1, -1), key=lambda i: -sizes[i])
        assert place_buffers(order, sizes, firsts, lasts) == greedy_offsets(sizes, firsts, lasts)
