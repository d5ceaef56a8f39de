"""The Ray engine on a local Ray (ray.init(num_cpus=2), started here): the same bytes and the same
report as one process, in order, a task whose worker dies retried, an address that does not
answer refused before any work, and the conformance sweeps (compare DIR, vectors DIR) on Ray giving
the local report and files. Skips with a reason when Ray is not installed (microref[ray])."""
import json
import os
from pathlib import Path

import numpy as np
import pytest

from interp.scale import RayAddressError, engines, evaluate
from interp.tools import cli

ray = pytest.importorskip("ray", reason="the Ray engine needs Ray: pip install 'microref[ray]'")

ROOT = Path(__file__).resolve().parents[1]
INT8 = ROOT / "golden" / "float_pair" / "int8.tflite"
FLOAT = ROOT / "golden" / "float_pair" / "float.tflite"


def real_data(n, seed=0):
    return np.random.default_rng(seed).normal(0, 1, (n, 12, 12, 3)).astype(np.float32)


def test_an_address_that_does_not_answer_is_refused_before_any_work():
    # Port 1 on this machine: nothing listens there (a refused connection, not a wait).
    with pytest.raises(RayAddressError, match=r"the Ray address '127.0.0.1:1' does not answer"):
        engines.check_ray_address("127.0.0.1:1", timeout=2)
    with pytest.raises(RayAddressError, match="is not host:port"):
        engines.check_ray_address("127.0.0.1:http")
    if not ray.is_initialized():  # evaluate uses a Ray the caller initialised, whatever the address
        with pytest.raises(RayAddressError, match="does not answer"):
            evaluate(INT8, real_data(4), engine="ray", address="ray://127.0.0.1:1")


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory):
    fault_dir = tmp_path_factory.mktemp("fault") / "armed"  # a worker dies once when this folder exists
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {engines.FAULT_ONCE_ENV: str(fault_dir / "killed")}})
    yield fault_dir
    ray.shutdown()


def test_ray_gives_the_local_bytes_and_report_in_order(local_ray):
    real, labels = real_data(200, seed=1), np.random.default_rng(2).integers(0, 10, 200)
    local = evaluate(INT8, real, labels=labels, float_model=FLOAT, workers=1)
    remote = evaluate(INT8, real, labels=labels, float_model=FLOAT, engine="ray", chunk_size=13)
    assert remote.engine == "ray"
    assert remote.outputs[0].tobytes() == local.outputs[0].tobytes()
    assert remote.summary == local.summary
    assert ray.is_initialized()  # a Ray the caller started is left running


def test_a_task_whose_worker_dies_is_retried(local_ray):
    local_ray.mkdir()  # arm: the next task kills its worker process once
    marker = local_ray / "killed"
    real = real_data(64, seed=3)
    local = evaluate(INT8, real, workers=1)
    remote = evaluate(INT8, real, engine="ray", chunk_size=8)
    assert marker.exists(), "no worker died: the fault hook did not fire"
    assert int(marker.read_text()) != os.getpid()
    assert remote.outputs[0].tobytes() == local.outputs[0].tobytes()


def test_cli_engine_ray(local_ray, tmp_path, capsys):
    np.save(tmp_path / "x.npy", real_data(40, seed=4))
    code = cli.main(["eval", str(INT8), "--data", str(tmp_path / "x.npy"), "--engine", "ray", "--json",
                     "--output", str(tmp_path / "p.npz")])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert json.loads(out.out)["run"]["engine"] == "ray"
    local = evaluate(INT8, tmp_path / "x.npy", workers=1)
    with np.load(tmp_path / "p.npz") as z:
        assert np.array_equal(z["StatefulPartitionedCall_1:0"], local.outputs[0])


def test_bad_data_is_refused_before_any_task(local_ray):
    bad = real_data(8)
    bad[5, 0, 0, 0] = np.inf
    with pytest.raises(Exception, match="sample 5 of input 0 .* holds NaN or infinity"):
        evaluate(INT8, bad, engine="ray")


def test_sweeps_on_ray_give_the_local_report_and_files(local_ray, tmp_path, capsys):
    """compare DIR and vectors DIR through Ray tasks (TFLM in a long-lived child process of each
    Ray worker): the same JSON as in this process, and the same vectors."""
    pytest.importorskip("tflite_micro", reason="the oracle is the tflite-micro wheel (Linux x86-64)")
    folder = tmp_path / "models"
    folder.mkdir()
    for name in ("abs_1x16", "add_relu", "conv2d_k1x1_s1"):
        (folder / f"{name}.tflite").write_bytes((ROOT / "golden" / "models" / f"{name}.tflite").read_bytes())
    (folder / "broken.tflite").write_bytes(b"not a model")
    reports = []
    for engine in (["--workers", "1"], ["--engine", "ray"]):
        code = cli.main(["compare", str(folder), "--seeds", "2", "--json", *engine])
        out = capsys.readouterr()
        assert code == 0, out.err
        reports.append(json.loads(out.out))
    local, remote = reports
    assert remote["run"]["engine"] == "ray" and local["run"]["engine"] == "local"
    local.pop("run"), remote.pop("run")
    assert remote == local and local["totals"]["exact"] == 6 and local["totals"]["refused"] == 2
    # One model: its seeds shared out among Ray tasks (each worker's long-lived TFLM child), the same records.
    from interp.tools import sweep
    one = [folder / "add_relu.tflite"]
    here, shared = sweep.sweep(one, seeds=6, workers=1), sweep.sweep(one, seeds=6, engine="ray")
    assert [c.to_json() for c in shared.cases] == [c.to_json() for c in here.cases]
    assert [c.seed for c in shared.cases] == list(range(6)) and {c.status for c in shared.cases} == {"exact"}
    for engine, out_dir in ((["--workers", "1"], tmp_path / "local"), (["--engine", "ray"], tmp_path / "ray")):
        code = cli.main(["vectors", str(folder), "-o", str(out_dir), "--count", "5", *engine])
        assert code == 0, capsys.readouterr().err
    for name in ("abs_1x16", "add_relu", "conv2d_k1x1_s1"):
        header = f"{name}/{name}_vectors.h"
        assert (tmp_path / "ray" / header).read_bytes() == (tmp_path / "local" / header).read_bytes()
    assert ray.is_initialized()
