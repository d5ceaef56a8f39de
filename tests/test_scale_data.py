"""interp.scale.data without the TFLM wheel: every kind of dataset (memory-mapped .npy, .npz stored
or compressed, arrays, generators, image folders) gives the samples the model takes, and bad data
is a clear InputError before any work."""
import zipfile
from pathlib import Path

import numpy as np
import pytest

from interp import InputError, Interpreter, quantize
from interp.builder import ModelBuilder
from interp.scale import data as D

ROOT = Path(__file__).resolve().parents[1]
INT8 = ROOT / "golden" / "float_pair" / "int8.tflite"  # input (1, 12, 12, 3) int8, scale 0.0325, zp 2


@pytest.fixture(scope="module")
def it():
    return Interpreter.from_file(INT8)


def image_model(shape, scale, zero_point, dtype="INT8"):
    """A model whose output is its image input (through a RESHAPE), to check what images become."""
    b = ModelBuilder()
    q = dict(scale=scale, zero_point=zero_point) if dtype != "FLOAT32" else {}
    x = b.input("image", list(shape), dtype, **q)
    y = b.tensor("same", list(shape), dtype, **q)
    b.op("RESHAPE", [x, b.constant("shape", np.array(shape, np.int32))], [y])
    b.output(y)
    return Interpreter.from_bytes(b.build())


def samples(ds, size=7):
    parts = [arrays for _, arrays in ds.chunks(size)]
    return [np.concatenate(p) for p in zip(*parts)]


def q_images(n, seed=0):
    return np.random.default_rng(seed).integers(-128, 128, (n, 1, 12, 12, 3), dtype=np.int8)


# ----------------------------------------------------------------------------- arrays and files

@pytest.mark.parametrize("leading_one", [True, False])
def test_npy_is_memory_mapped_and_samples_may_drop_the_leading_one(it, tmp_path, leading_one):
    x = q_images(20)
    np.save(tmp_path / "x.npy", x if leading_one else x[:, 0])
    ds = D.open_data(tmp_path / "x.npy", it)
    assert ds.n == 20 and ds.kinds == ["quantized"]
    got = samples(ds)
    assert got[0].shape == (20, 1, 12, 12, 3) and np.array_equal(got[0], x)
    assert [start for start, _ in ds.chunks(8)] == [0, 8, 16]


@pytest.mark.skipif(not Path("/proc/self/smaps").exists(),
                    reason="needs Linux's /proc/self/smaps to see resident pages")
def test_reading_a_memory_mapped_npy_hands_its_pages_back(tmp_path):
    from test_scale_streaming import _mapped_rss_kb, passthrough
    path = tmp_path / "x.npy"
    np.save(path, np.ones((4096, 4096), np.int8))  # 16 MiB, samples without the input's leading 1
    ds = D.open_data(path, passthrough((1, 4096)))
    assert sum(int(a[0].sum()) for _, a in ds.chunks(256)) == 4096 * 4096
    assert _mapped_rss_kb(path) < 1_000


def test_real_values_are_quantized_as_tflm_does(it, tmp_path):
    real = np.random.default_rng(3).normal(0, 1, (9, 12, 12, 3)).astype(np.float32)
    np.save(tmp_path / "r.npy", real)
    ds = D.open_data(str(tmp_path / "r.npy"), it)
    assert ds.kinds == ["real"]
    model_in = D.to_model_inputs(samples(ds)[0:1], ds.kinds, it)[0]
    assert model_in.dtype == np.int8
    assert np.array_equal(model_in, quantize(real[:, None], it.input_details[0]))


def test_npz_stored_members_are_mapped_and_compressed_ones_streamed(it, tmp_path):
    x = q_images(13)
    labels = np.arange(13) % 10
    np.savez(tmp_path / "a.npz", **{"serving_default_image:0": x, "labels": labels})
    np.savez_compressed(tmp_path / "b.npz", anything=x[:, 0], y=labels)
    for name in ("a.npz", "b.npz"):
        ds = D.open_data(tmp_path / name, it)
        assert np.array_equal(samples(ds, 5)[0], x)
        assert ds.labels.tolist() == labels.tolist()
    with zipfile.ZipFile(tmp_path / "a.npz") as z:
        assert all(i.compress_type == zipfile.ZIP_STORED for i in z.infolist())
    assert isinstance(D.file_arrays(str(tmp_path / "a.npz"), it)[0][0], np.memmap)


def test_arrays_lists_dicts_and_generators(it):
    x = q_images(10)
    for data in (x, [x], {"serving_default_image:0": x}, x[:, 0]):
        assert np.array_equal(samples(D.open_data(data, it))[0], x)
    gen = D.open_data((x[i:i + 3] for i in range(0, 10, 3)), it)
    assert gen.n is None
    assert [len(a[0]) for _, a in gen.chunks(2)] == [2, 1, 2, 1, 2, 1, 1]


def test_a_bad_batch_of_a_generator_is_named(it):
    ds = D.open_data(iter([q_images(2), q_images(2).astype(np.int16)]), it)
    with pytest.raises(InputError, match="^batch 1 is int16"):
        samples(ds)
    with pytest.raises(InputError, match="no batches"):
        D.open_data(iter([]), it)


@pytest.mark.parametrize("bad, message", [
    (np.zeros((4, 12, 12), np.int8), r"has shape \(4, 12, 12\); samples go along the first axis, so it must be "
                                     r"\(N, 1, 12, 12, 3\) or \(N, 12, 12, 3\)"),
    (np.zeros((4, 12, 12, 3), np.uint8), r"is uint8 but input 0 .* is int8: give the int8 values .* or real values "
                                         r"as float32 \(quantized with the input's scale 0.0325313 and zero point 2\)"),
    (np.zeros((0, 12, 12, 3), np.int8), "holds no samples"),
    (np.zeros((), np.int8), "single number"),
    ("/nonexistent/data.npy", "cannot read data file"),
])
def test_bad_data_is_refused_before_any_work(it, bad, message):
    with pytest.raises(InputError, match=message):
        D.open_data(bad, it)


def test_nan_names_its_sample_and_out_of_range_reals_are_refused(it):
    real = np.random.default_rng(0).normal(0, 1, (50, 12, 12, 3)).astype(np.float32)
    real[37, 3, 4, 1] = np.nan
    with pytest.raises(InputError, match="sample 37 of input 0 .* holds NaN or infinity"):
        D.open_data(real, it)
    pixels = np.random.default_rng(0).uniform(0, 255, (6, 12, 12, 3)).astype(np.float32)
    with pytest.raises(InputError, match=r"lie outside -4.229..4.066, what its int8 values .* scaled for another"):
        D.open_data(pixels, it)
    assert D.open_data(pixels, it, check_range=False).n == 6  # told to quantize anyway: clamped as TFLM clamps


def test_a_text_file_is_not_data(it, tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InputError, match="neither an .npy nor an .npz"):
        D.open_data(tmp_path / "notes.txt", it)


def test_labels_files_and_their_checks(tmp_path):
    np.save(tmp_path / "l.npy", np.array([[1], [2], [3]]))
    assert D.read_labels(tmp_path / "l.npy", 3).tolist() == [1, 2, 3]
    (tmp_path / "l.txt").write_text("# class per line\n4\n5\n\n6\n")
    assert D.read_labels(str(tmp_path / "l.txt"), 3).tolist() == [4, 5, 6]
    assert D.read_labels(np.array([1.0, 2.0]), 2).tolist() == [1, 2]
    with pytest.raises(InputError, match="3 labels for 4 samples"):
        D.read_labels(tmp_path / "l.npy", 4)
    with pytest.raises(InputError, match="whole numbers"):
        D.read_labels(np.array([1.5, 2.0]), 2)
    with pytest.raises(InputError, match="one integer per sample"):
        D.read_labels(np.zeros((2, 2), np.int64), 2)


# ----------------------------------------------------------------------------- images

try:
    from PIL import Image as PIL
except ImportError:  # the TFLM-free tests above still run
    PIL = None
needs_pillow = pytest.mark.skipif(PIL is None, reason="image folders need Pillow (pip install 'microref[images]')")


def write_image(path, pixels):
    path.parent.mkdir(parents=True, exist_ok=True)
    PIL.fromarray(pixels).save(path)


@pytest.mark.parametrize("scale, zero_point", [(0.007843137718737125, -1), (0.003921568859368563, -128),
                                               (0.0325312502682209, 2), (0.1, 5)])
def test_default_image_range_gives_pixel_plus_the_type_minimum_exactly(scale, zero_point):
    # The documented default: pixels 0..255 map to what the input represents, so for an int8
    # input quantizing the real values gives q = p - 128 for every pixel value.
    m = image_model((1, 16, 16, 1), scale, zero_point)
    t = m.tensors[m.subgraph.inputs[0]]
    p = np.arange(256, dtype=np.uint8)
    real = D.image_to_real(p, D.default_image_range(t))
    assert np.array_equal(quantize(real, t), (p.astype(np.int16) - 128).astype(np.int8))


@needs_pillow
def test_image_folder_with_class_subfolders_gives_labels_and_q_equals_p_minus_128(tmp_path):
    rng = np.random.default_rng(5)
    pics = {}
    for cls, names in (("cat", ["b.png", "a.png"]), ("dog", ["c.png"])):
        for name in names:
            pics[(cls, name)] = rng.integers(0, 256, (16, 16), dtype=np.uint8)
            write_image(tmp_path / cls / name, pics[(cls, name)])
    (tmp_path / "dog" / "README.txt").write_text("not an image")
    m = image_model((1, 16, 16, 1), 0.007843137718737125, -1)
    ds = D.open_data(tmp_path, m)
    assert ds.classes == ["cat", "dog"] and ds.labels.tolist() == [0, 0, 1]
    assert [Path(f).name for f in ds.files] == ["a.png", "b.png", "c.png"]
    assert [Path(f).name for f in ds.ignored] == ["README.txt"]
    got = samples(ds)[0]
    want = np.stack([pics[("cat", "a.png")], pics[("cat", "b.png")], pics[("dog", "c.png")]])
    assert np.array_equal(got[:, 0, :, :, 0], (want.astype(np.int16) - 128).astype(np.int8))


@needs_pillow
def test_image_range_resize_rgb_and_nchw(tmp_path):
    rng = np.random.default_rng(6)
    rgb = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
    write_image(tmp_path / "x.png", rgb)
    nhwc = image_model((1, 10, 12, 3), 0.00784, 0)
    nchw = image_model((1, 3, 10, 12), 0.00784, 0)
    resized = np.asarray(PIL.fromarray(rgb).resize((12, 10), PIL.Resampling.BILINEAR), np.uint8)
    want = quantize(D.image_to_real(resized, (-1.0, 1.0)), nhwc.input_details[0])
    a = D.to_model_inputs(samples(D.open_data(tmp_path, nhwc, image_range=(-1, 1)))[0:1], ["real"], nhwc)[0]
    b = D.to_model_inputs(samples(D.open_data(tmp_path, nchw, image_range=(-1, 1)))[0:1], ["real"], nchw)[0]
    assert np.array_equal(a[0, 0], want)
    assert np.array_equal(b[0, 0], want.transpose(2, 0, 1))
    gray = image_model((1, 20, 24, 1), 1 / 255, -128)  # RGB files become grayscale ("L") for one channel
    got = samples(D.open_data(tmp_path, gray))[0]
    want_gray = np.asarray(PIL.fromarray(rgb).convert("L"), np.uint8)
    assert np.array_equal(got[0, 0, :, :, 0], (want_gray.astype(np.int16) - 128).astype(np.int8))


@needs_pillow
def test_float_image_input_gets_0_to_1_by_default(tmp_path):
    write_image(tmp_path / "x.png", np.array([[0, 51], [255, 102]], np.uint8))
    m = image_model((1, 2, 2, 1), None, None, dtype="FLOAT32")
    got = samples(D.open_data(tmp_path, m))[0]
    assert got.dtype == np.float32 and got.ravel().tolist() == pytest.approx([0.0, 0.2, 1.0, 0.4])


@needs_pillow
def test_unreadable_images_are_named_before_any_work(tmp_path):
    write_image(tmp_path / "good.png", np.zeros((4, 4), np.uint8))
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (tmp_path / "empty.jpg").write_bytes(b"")
    m = image_model((1, 4, 4, 1), 0.1, 0)
    with pytest.raises(InputError, match=r"^2 of the 3 image files in .* cannot be read: .*broken\.png .*; .*empty"):
        D.open_data(tmp_path, m)


def jpeg_bytes(pixels, **kw):
    import io
    out = io.BytesIO()
    PIL.fromarray(pixels).save(out, "JPEG", **kw)
    return out.getvalue()


def pillow_decodes(data) -> bool:
    import io
    try:
        with PIL.open(io.BytesIO(data)) as img:
            img.load()
        return True
    except Exception:
        return False


@needs_pillow
def test_a_truncated_jpeg_is_named_before_any_work_and_data_after_the_image_is_not(tmp_path):
    """Pillow's verify reads a JPEG's header only: the walk of its markers finds a file cut short
    before the first sample runs; bytes appended after the end-of-image marker are fine."""
    pixels = np.random.default_rng(5).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    whole = jpeg_bytes(pixels)
    (tmp_path / "cut.jpg").write_bytes(whole[: len(whole) * 2 // 3])
    (tmp_path / "no_end_marker.jpg").write_bytes(whole[:-2])
    (tmp_path / "appended.jpg").write_bytes(whole + b"\xff\xda\x00\x08 data appended by a camera")
    (tmp_path / "whole.jpg").write_bytes(whole)
    m = image_model((1, 4, 4, 3), 0.1, 0)
    with pytest.raises(InputError, match=r"^2 of the 4 image files in .* cannot be read: .*cut\.jpg \(OSError: JPEG "
                                         r"truncated.*; .*no_end_marker\.jpg"):
        D.open_data(tmp_path, m)
    (tmp_path / "cut.jpg").unlink()
    (tmp_path / "no_end_marker.jpg").unlink()
    assert D.open_data(tmp_path, m).n == 2


@needs_pillow
@pytest.mark.parametrize("options", [{}, {"progressive": True}, {"optimize": True, "quality": 100},
                                     {"restart_marker_blocks": 2}])
def test_the_jpeg_marker_walk_agrees_with_pillow_on_every_cut(options):
    pixels = np.random.default_rng(6).integers(0, 256, (20, 28, 3), dtype=np.uint8)
    try:
        whole = jpeg_bytes(pixels, **options)
    except TypeError:
        pytest.skip(f"this Pillow has no JPEG option {sorted(options)}")
    cuts = sorted({*range(0, len(whole), max(1, len(whole) // 40)), len(whole) - 2, len(whole) - 1, len(whole)})
    for cut in cuts:
        data = whole[:cut]
        assert (D.jpeg_problem(data) is None) == pillow_decodes(data), (cut, D.jpeg_problem(data))


@needs_pillow
def test_image_folder_mistakes(tmp_path):
    m = image_model((1, 4, 4, 1), 0.1, 0)
    with pytest.raises(InputError, match="holds no image files"):
        D.open_data(tmp_path, m)
    write_image(tmp_path / "loose.png", np.zeros((4, 4), np.uint8))
    write_image(tmp_path / "cls" / "x.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(InputError, match="both images .* and subfolders"):
        D.open_data(tmp_path, m)
    vector = image_model((1, 16), 0.1, 0)
    with pytest.raises(InputError, match=r"needs an input shaped \(1, H, W, C\)"):
        D.open_data(tmp_path / "cls", vector)
    with pytest.raises(InputError, match="lie outside .* scaled for another model"):
        D.open_data(tmp_path / "cls", m, image_range=(100, 355))
