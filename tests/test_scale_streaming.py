"""Streaming without the TFLM wheel: run_iter and run_batch(chunk_size=...) give run_batch's bytes
chunk by chunk, read memory-mapped inputs a chunk at a time (handing the pages back), check their
inputs before any work, and keep stateful models' samples independent."""
import re
from pathlib import Path

import numpy as np
import pytest

from interp import InputError, Interpreter
from interp.builder import ModelBuilder
from interp.runtime import streaming

ROOT = Path(__file__).resolve().parents[1]
INT8 = ROOT / "golden" / "float_pair" / "int8.tflite"  # a 10-class int8 classifier, 12x12x3 input


@pytest.fixture(scope="module")
def classifier():
    return Interpreter.from_file(INT8)


def images(n, seed=0):
    return np.random.default_rng(seed).integers(-128, 128, (n, 1, 12, 12, 3), dtype=np.int8)


def two_inputs():
    b = ModelBuilder()
    x = b.input("x", [3], "INT8", scale=0.5, zero_point=1)
    y = b.input("y", [3], "INT8", scale=0.25, zero_point=-2)
    z = b.tensor("z", [3], "INT8", scale=0.75, zero_point=0)
    b.op("ADD", [x, y], [z], fused_activation_function="NONE")
    b.output(z)
    return Interpreter.from_bytes(b.build())


def passthrough(shape):
    """output = input (RESHAPE): a model whose run costs nothing, for reading inputs."""
    b = ModelBuilder()
    x = b.input("x", list(shape), "INT8", scale=0.5, zero_point=0)
    y = b.tensor("y", list(shape), "INT8", scale=0.5, zero_point=0)
    b.op("RESHAPE", [x, b.constant("shape", np.array(shape, np.int32))], [y])
    b.output(y)
    return Interpreter.from_bytes(b.build())


def accumulator():
    """A stateful model: out = state; state += x (a resource variable): every run_batch sample starts
    from a fresh state, so chunking must not carry state from one chunk to the next."""
    b = ModelBuilder()
    x = b.input("x", [2], "INT8", scale=0.5, zero_point=3)
    h = b.tensor("h", [], "RESOURCE")
    old, new = b.tensor("old", [2], "INT8", scale=0.5, zero_point=3), b.tensor("new", [2], "INT8", scale=0.5,
                                                                              zero_point=3)
    b.op("VAR_HANDLE", [], [h], shared_name="acc")
    b.op("READ_VARIABLE", [h], [old])
    b.op("ADD", [old, x], [new], fused_activation_function="NONE")
    b.op("ASSIGN_VARIABLE", [h, new], [])
    b.output(new)
    return Interpreter.from_bytes(b.build())


@pytest.mark.parametrize("chunk", [1, 7, 64, 1000])
def test_chunked_run_batch_gives_run_batchs_bytes(classifier, chunk):
    x = images(150, seed=chunk)
    whole = classifier.run_batch([x])[0]
    assert np.array_equal(classifier.run_batch([x], chunk_size=chunk)[0], whole)
    assert np.array_equal(np.concatenate([o[0] for o in classifier.run_iter(x, chunk_size=chunk)]), whole)


def test_run_iter_yields_one_chunk_at_a_time_in_order(classifier):
    x = images(23)
    parts = list(classifier.run_iter([x], chunk_size=10))
    assert [p[0].shape[0] for p in parts] == [10, 10, 3]
    assert np.array_equal(np.concatenate([p[0] for p in parts]), classifier.run_batch([x])[0])


def test_memory_mapped_input_is_read_a_chunk_at_a_time(classifier, tmp_path):
    x = images(40)
    np.save(tmp_path / "x.npy", x)
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    expected = classifier.run_batch([x])[0]
    out = classifier.run_batch([mapped], chunk_size=16)[0]
    assert np.array_equal(out, expected)
    # tensor() after a chunked call: every sample's outputs; the inputs as the read-only arrays given.
    assert np.array_equal(classifier.tensor(classifier.subgraph.outputs[0]), out)
    seen = classifier.tensor(classifier.subgraph.inputs[0])
    assert seen.shape == x.shape and not seen.flags.writeable and np.array_equal(seen, x)


def test_generator_of_batches_yields_one_result_per_batch_and_splits_large_ones(classifier):
    x = images(30)
    sizes = [5, 12, 1, 12]
    def gen():
        lo = 0
        for s in sizes:
            yield x[lo:lo + s]
            lo += s
    parts = list(classifier.run_iter(gen(), chunk_size=4))
    assert [p[0].shape[0] for p in parts] == sizes
    assert np.array_equal(np.concatenate([p[0] for p in parts]), classifier.run_batch([x])[0])


def test_a_bad_batch_in_a_generator_is_named(classifier):
    batches = iter([images(3), images(2)[:, 0]])
    it = classifier.run_iter(batches, chunk_size=2)
    next(it)
    with pytest.raises(InputError, match=r"^batch 1: input 0 .* must have shape \(N, 1, 12, 12, 3\)"):
        next(it)


def test_one_batch_is_checked_before_the_iterator_is_returned(classifier):
    with pytest.raises(InputError, match=r"got \(5, 12, 12, 3\)"):
        classifier.run_iter(images(5)[:, 0])  # no work yet: the error comes from the call itself
    with pytest.raises(InputError, match="must be int8"):
        classifier.run_iter(images(5).astype(np.int16))
    with pytest.raises(InputError, match="iterable of input batches"):
        classifier.run_iter(42)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "8"])
def test_chunk_size_must_be_a_whole_number(classifier, bad):
    with pytest.raises(InputError, match="chunk_size must be a whole number"):
        classifier.run_batch([images(4)], chunk_size=bad)


def test_keep_cannot_be_combined_with_chunks(classifier):
    with pytest.raises(InputError, match="keep=True"):
        classifier.run_batch([images(4)], chunk_size=2, keep=True)


def test_two_inputs_by_name_and_unequal_sample_counts():
    it = two_inputs()
    rng = np.random.default_rng(1)
    x, y = (rng.integers(-128, 128, (11, 3), dtype=np.int8) for _ in range(2))
    whole = it.run_batch([x, y])[0]
    assert np.array_equal(it.run_batch({"y": y, "x": x}, chunk_size=3)[0], whole)
    assert np.array_equal(np.concatenate([o[0] for o in it.run_iter({"x": x, "y": y}, chunk_size=4)]), whole)
    with pytest.raises(InputError, match="has 10 samples, input 0 has 11"):
        it.run_batch([x, y[:10]], chunk_size=3)
    with pytest.raises(InputError, match="unknown input name"):
        it.run_iter({"x": x, "w": y})


def test_stateful_samples_stay_independent_across_chunks():
    it = accumulator()
    x = np.random.default_rng(2).integers(-128, 128, (9, 2), dtype=np.int8)
    whole = it.run_batch([x])[0]
    assert np.array_equal(it.run_batch([x], chunk_size=2)[0], whole)
    # Each sample alone, from a fresh state, gives the same.
    for i in range(len(x)):
        it.reset()
        assert np.array_equal(it.run([x[i]])[0], whole[i])


def test_default_chunk_holds_about_64mb_of_activations(classifier):
    size = streaming.default_chunk_size(classifier)
    per_sample = streaming.activation_bytes_per_sample(classifier)
    assert 1 <= size <= streaming.MAX_DEFAULT_CHUNK
    assert size == streaming.MAX_DEFAULT_CHUNK or size * per_sample <= streaming.CHUNK_ACTIVATION_BYTES


def _mapped_rss_kb(path: Path) -> int:
    """Resident kB of this process's mappings of ``path`` (/proc/self/smaps)."""
    total, inside = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
            inside = line.rstrip().endswith(str(path))
        elif inside and line.startswith("Rss:"):
            total += int(line.split()[1])
    return total


@pytest.mark.skipif(not Path("/proc/self/smaps").exists(),
                    reason="needs Linux's /proc/self/smaps to see resident pages")
def test_pages_of_a_read_only_map_are_handed_back_after_their_chunk(tmp_path):
    path = tmp_path / "big.npy"
    np.save(path, np.ones((256, 64, 1024), np.int8))  # 16 MiB
    mapped = np.load(path, mmap_mode="r")
    assert int(mapped[:, 0, 0].sum()) == 256  # touch one page per sample...
    _ = np.array(mapped)  # ...then every page
    before = _mapped_rss_kb(path)
    assert before > 12_000
    for lo in range(0, 256, 32):
        streaming.take_chunk([mapped], lo, lo + 32)
    assert _mapped_rss_kb(path) < 1_000
    # A copy-on-write map may hold changes: it is left alone.
    writable = np.load(path, mmap_mode="c")
    writable[:] = 2
    streaming.release_pages(writable, 0, 256)
    assert int(writable[0, 0, 0]) == 2


@pytest.mark.skipif(not Path("/proc/self/smaps").exists(),
                    reason="needs Linux's /proc/self/smaps to see resident pages")
def test_run_batch_and_run_iter_hand_a_memory_maps_pages_back_as_they_go(tmp_path):
    path = tmp_path / "x.npy"
    x = np.random.default_rng(0).integers(-128, 128, (4096, 4096), dtype=np.int8)  # 16 MiB
    np.save(path, x)
    it = passthrough((4096,))
    mapped = np.load(path, mmap_mode="r")
    assert np.array_equal(it.run_batch([mapped], chunk_size=256)[0], x)
    assert _mapped_rss_kb(path) < 1_000
    assert np.array_equal(np.concatenate([o[0] for o in it.run_iter(mapped, chunk_size=300)]), x)
    assert _mapped_rss_kb(path) < 1_000
