"""core.training.distribute: TF_CONFIG parsing, chief, sharding, artifact folders; two real workers on loopback agree."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.training import distribute

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _tf_config(cluster: dict, task_type: str, index: int) -> str:
    return json.dumps({"cluster": cluster, "task": {"type": task_type, "index": index}})


def test_no_tf_config_is_a_single_chief(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TF_CONFIG", raising=False)
    info = distribute.cluster_info()
    assert (info.task_type, info.num_workers, info.is_chief, info.worker_index) == (None, 1, True, 0)


def test_worker_zero_is_chief_without_a_chief_task() -> None:
    cluster = {"worker": ["a:1", "b:2", "c:3"]}
    infos = [distribute.cluster_info(_tf_config(cluster, "worker", i)) for i in range(3)]
    assert [i.is_chief for i in infos] == [True, False, False]
    assert [i.worker_index for i in infos] == [0, 1, 2] and {i.num_workers for i in infos} == {3}


def test_chief_task_is_chief_and_workers_shift() -> None:
    cluster = {"chief": ["a:1"], "worker": ["b:2", "c:3"]}
    chief = distribute.cluster_info(_tf_config(cluster, "chief", 0))
    workers = [distribute.cluster_info(_tf_config(cluster, "worker", i)) for i in range(2)]
    assert chief.is_chief and not any(w.is_chief for w in workers)
    assert [chief.worker_index, *(w.worker_index for w in workers)] == [0, 1, 2] and chief.num_workers == 3


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("{not json", "not valid JSON"),
        (_tf_config({"worker": ["a:1"]}, "worker", 3), "index 3 is out of range"),
        (_tf_config({"worker": ["a:1"], "ps": ["b:2"]}, "worker", 0), "only uses 'chief' and 'worker'"),
        (_tf_config({"worker": ["a:1"]}, "evaluator", 0), "task type 'evaluator'"),
        (_tf_config({"chief": ["a:1", "b:2"], "worker": ["c:3"]}, "worker", 0), "at most one"),
    ],
)
def test_bad_tf_config_says_what_to_fix(raw: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        distribute.cluster_info(raw)


def test_multiworker_without_tf_config_is_refused_before_tensorflow(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="needs the TF_CONFIG environment variable"):
        distribute.make_strategy("multiworker")
    with pytest.raises(ValueError, match="Choose one of: none, mirrored, multiworker"):
        distribute.make_strategy("horovod")


def test_global_batch_is_per_replica_times_replicas() -> None:
    assert distribute.global_batch_size(32, 4) == 128
    with pytest.raises(ValueError):
        distribute.global_batch_size(0, 2)


@pytest.mark.parametrize("num_shards", [1, 2, 3, 7])
def test_shards_are_disjoint_cover_everything_and_keep_prevalence(num_shards: int) -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"path": [f"img{i}.png" for i in range(1000)], "label": (rng.random(1000) < 0.013).astype(int)})
    shards = [distribute.shard_rows(frame, num_shards, i) for i in range(num_shards)]
    paths = np.concatenate([s["path"].to_numpy() for s in shards])
    assert len(paths) == len(set(paths)) == len(frame)
    positives = [int(s["label"].sum()) for s in shards]
    assert max(positives) - min(positives) <= 1 and sum(positives) == frame["label"].sum()
    assert max(map(len, shards)) - min(map(len, shards)) <= 2  # at most one row per class apart
    assert list(distribute.shard_sizes(10, 3)) == [4, 3, 3]
    with pytest.raises(ValueError, match="invalid"):
        distribute.shard_rows(frame, num_shards, num_shards)


def test_only_the_chief_writes_to_the_models_folder(tmp_path: Path) -> None:
    cluster = {"worker": ["a:1", "b:2"]}
    with distribute.artifact_dir(tmp_path, distribute.cluster_info(_tf_config(cluster, "worker", 0))) as folder:
        assert folder == tmp_path
    with distribute.artifact_dir(tmp_path, distribute.cluster_info(_tf_config(cluster, "worker", 1))) as folder:
        assert folder != tmp_path and folder.is_dir()
        (folder / "model.keras").write_text("scratch")
    assert not folder.exists() and list(tmp_path.iterdir()) == []


# A worker process: train a tiny MLP on 32 real Kaggle images at 32 px under MultiWorkerMirroredStrategy,
# then save this worker's final weights to its own file (argv[1]) and say whether it was the chief.
WORKER = """
import json, sys
import numpy as np
from core.training import distribute
from core import training
result = training.train(training.TrainConfig(
    model="mlp", img_size=32, epochs=2, batch_size=4, limit=8, balance="class-weight", strategy="multiworker",
    name="mw-mlp", data=sys.argv[2], models_dir=sys.argv[3], cache_dir=sys.argv[4], bootstrap=20, progress=False,
))
np.savez(sys.argv[1], *result.model.get_weights())
print("RESULT " + json.dumps({"chief": distribute.cluster_info().is_chief, "distribution": result.card["distribution"]}))
"""


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.timeout(300)
def test_two_workers_on_loopback_agree_and_write_the_artifact_once(tmp_path: Path, data_root: Path) -> None:
    cluster = {"worker": [f"127.0.0.1:{port}" for port in _free_ports(2)]}
    models = tmp_path / "models"
    procs = []
    for index in range(2):
        scratch = tmp_path / f"tmp{index}"
        scratch.mkdir()
        env = dict(os.environ, TF_CONFIG=_tf_config(cluster, "worker", index), TMPDIR=str(scratch),
                   CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(PROJECT_ROOT))
        procs.append(subprocess.Popen(
            [sys.executable, "-c", WORKER, str(tmp_path / f"weights{index}.npz"), str(data_root), str(models),
             str(tmp_path / f"cache{index}")],
            cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        ))
    outputs = []
    deadline = time.monotonic() + 240
    try:
        for proc in procs:
            outputs.append(proc.communicate(timeout=max(1.0, deadline - time.monotonic()))[0])
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for index, (proc, out) in enumerate(zip(procs, outputs)):
        assert proc.returncode == 0, f"worker {index} failed:\n{out[-3000:]}"
    results = [json.loads(next(line[7:] for line in out.splitlines() if line.startswith("RESULT "))) for out in outputs]
    assert [r["chief"] for r in results] == [True, False]
    assert results[0]["distribution"] == results[1]["distribution"] == {
        "strategy": "multiworker", "replicas": 2, "workers": 2, "per_replica_batch_size": 4, "global_batch_size": 8}
    weights = [np.load(tmp_path / f"weights{index}.npz") for index in range(2)]
    assert len(weights[0].files) == 6  # three Dense layers: kernels and biases
    for key in weights[0].files:
        np.testing.assert_array_equal(weights[0][key], weights[1][key])
    assert [p.name for p in models.iterdir()] == ["mw-mlp"]  # written once, by the chief; no tmp or backup left
    assert sorted(p.name for p in (models / "mw-mlp").iterdir()) == ["card.json", "card.md", "history.csv", "model.keras", "predictions.csv"]
    assert list((tmp_path / "tmp1").iterdir()) == []  # the other worker's scratch artifacts were deleted
