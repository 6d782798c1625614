"""tf.distribute for training: strategy from ``--strategy`` and ``TF_CONFIG``, chief detection, sharding, batch sizes.

Three strategies (``train.py --strategy``):
- ``none``: TensorFlow's default strategy (one device, what you get without tf.distribute).
- ``mirrored``: ``tf.distribute.MirroredStrategy`` over the local GPUs (or the CPU when there is none):
  one process, one model copy per device, gradients summed every step.
- ``multiworker``: ``tf.distribute.MultiWorkerMirroredStrategy``, one process per machine, configured by
  the ``TF_CONFIG`` environment variable (the same JSON on every node except ``task``), e.g.
  ``{"cluster": {"worker": ["10.0.0.1:12345", "10.0.0.2:12345"]}, "task": {"type": "worker", "index": 0}}``.

What changes under a strategy (see README, "Scaling out"):
- the batch size a user gives is **per replica**; the dataset is batched at ``global_batch_size`` =
  per-replica batch x replicas in sync, so each step sees more images (the learning rate is not rescaled);
- each worker reads only its shard of the files (``shard_rows``, or ``distribute_dataset`` which hands every
  input pipeline its shard and per-replica batch);
- only the chief (task ``chief``, else ``worker`` 0) writes artifacts; other workers write theirs to a
  temporary folder that is deleted (``artifact_dir``), as TensorFlow's multi-worker guide recommends.

TensorFlow is imported lazily: parsing TF_CONFIG and sharding need none of it. MultiWorkerMirroredStrategy
must be created before TensorFlow runs anything else in the process, so ``make_strategy`` is called first
and caches the strategy for the rest of the process.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

STRATEGIES = ("none", "mirrored", "multiworker")
TF_CONFIG_ENV = "TF_CONFIG"
_WORKER_TYPES = ("chief", "worker")
_strategies: dict[str, Any] = {}


@dataclass(frozen=True)
class ClusterInfo:
    """Where this process sits in the cluster: task type/index, number of training workers, chief or not."""

    task_type: str | None
    task_index: int
    num_workers: int
    has_chief_task: bool = False

    @property
    def is_chief(self) -> bool:
        """True for the task that writes artifacts: 'chief' if the cluster has one, else worker 0 (or no cluster)."""
        if self.task_type is None:
            return True
        if self.has_chief_task:
            return self.task_type == "chief"
        return self.task_type == "worker" and self.task_index == 0

    @property
    def worker_index(self) -> int:
        """0-based position among all training workers (the chief first), used to pick this worker's shard."""
        if self.task_type is None or self.task_type == "chief":
            return 0
        return self.task_index + (1 if self.has_chief_task else 0)


def cluster_info(tf_config: str | Mapping[str, Any] | None = None) -> ClusterInfo:
    """Parse TF_CONFIG (argument, else the environment variable); a single local process when it is unset."""
    raw = os.environ.get(TF_CONFIG_ENV, "") if tf_config is None else tf_config
    if isinstance(raw, str):
        if not raw.strip():
            return ClusterInfo(task_type=None, task_index=0, num_workers=1)
        try:
            parsed = json.loads(raw)
        except json.JSONDecodeError as error:
            raise ValueError(
                f"{TF_CONFIG_ENV} is not valid JSON ({error.msg} at character {error.pos}). Set it to e.g. "
                '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}.'
            ) from None
    else:
        parsed = dict(raw)
    if not isinstance(parsed, dict):
        raise ValueError(f"{TF_CONFIG_ENV} must be a JSON object with 'cluster' and 'task' keys.")
    cluster = parsed.get("cluster") or {}
    task = parsed.get("task") or {}
    if not cluster:
        return ClusterInfo(task_type=None, task_index=0, num_workers=1)
    unsupported = sorted(set(cluster) - set(_WORKER_TYPES))
    if unsupported:
        raise ValueError(
            f"{TF_CONFIG_ENV} lists task types {unsupported}; MultiWorkerMirroredStrategy only uses 'chief' and "
            "'worker'. Remove the others from the cluster."
        )
    if len(cluster.get("chief", [])) > 1:
        raise ValueError(f"{TF_CONFIG_ENV} lists {len(cluster['chief'])} chief tasks; a cluster has at most one.")
    task_type = task.get("type")
    if task_type not in _WORKER_TYPES or task_type not in cluster:
        raise ValueError(
            f"{TF_CONFIG_ENV} task type {task_type!r} is not one of the cluster's task types {sorted(cluster)}. "
            'Set "task": {"type": "worker", "index": <this node\'s position in the worker list>}.'
        )
    try:
        task_index = int(task.get("index", 0))
    except (TypeError, ValueError):
        raise ValueError(f"{TF_CONFIG_ENV} task index {task.get('index')!r} must be an integer.") from None
    if not 0 <= task_index < len(cluster[task_type]):
        raise ValueError(
            f"{TF_CONFIG_ENV} task index {task_index} is out of range: the cluster lists "
            f"{len(cluster[task_type])} {task_type} address(es), so use 0..{len(cluster[task_type]) - 1}."
        )
    num_workers = sum(len(cluster.get(t, [])) for t in _WORKER_TYPES)
    return ClusterInfo(task_type=task_type, task_index=task_index, num_workers=num_workers, has_chief_task="chief" in cluster)


def check_strategy(name: str) -> str:
    """Return ``name`` if it is one of :data:`STRATEGIES`, else raise a ValueError naming them."""
    if name not in STRATEGIES:
        raise ValueError(f"Unknown distribution strategy {name!r}. Choose one of: {', '.join(STRATEGIES)}.")
    return name


def make_strategy(name: str = "none") -> Any:
    """The tf.distribute strategy for ``name`` ('none' | 'mirrored' | 'multiworker'), created once per process.

    'multiworker' needs TF_CONFIG (see the module docstring) and must be created before TensorFlow runs
    any operation in this process.
    """
    check_strategy(name)
    if name in _strategies:
        return _strategies[name]
    if name == "multiworker":
        info = cluster_info()  # validate before TensorFlow starts, with a message a user can act on
        if info.task_type is None:
            raise ValueError(
                f"--strategy multiworker needs the {TF_CONFIG_ENV} environment variable on every node, e.g. "
                '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}. '
                "Use --strategy mirrored for several GPUs in one machine."
            )
    import tensorflow as tf

    if name == "none":
        strategy = tf.distribute.get_strategy()
    elif name == "mirrored":
        if cluster_info().num_workers > 1:
            log.warning("%s describes several workers, but --strategy mirrored uses this machine only", TF_CONFIG_ENV)
        strategy = tf.distribute.MirroredStrategy()
    else:
        try:
            strategy = tf.distribute.MultiWorkerMirroredStrategy()
        except RuntimeError as error:
            raise ValueError(
                "MultiWorkerMirroredStrategy must be created before TensorFlow runs anything in this process "
                f"({error}). Start a new process and create the strategy first."
            ) from error
        _reduce_nested_values(strategy)
        info = cluster_info()
        log.info("Worker %d of %d (%s %d, chief: %s)", info.worker_index, info.num_workers, info.task_type, info.task_index, info.is_chief)
    log.info("Distribution strategy %s with %d replica(s) in sync", name, strategy.num_replicas_in_sync)
    _strategies[name] = strategy
    return strategy


def _reduce_nested_values(strategy: Any) -> None:
    """Make MultiWorkerMirroredStrategy.reduce accept what Keras 3's ``fit`` passes it.

    Keras 3.15 calls ``strategy.reduce`` (a) with a nest of values (the first batch, for its symbolic
    build) and (b) with ``axis=0`` on per-replica scalars (the loss and metric logs of every step). The
    multi-worker strategy reduces one value at a time (TensorFlow's own TODO: "support `value` being a
    nest") and cannot reduce a scalar along axis 0, so ``fit`` fails on the first step. Here each leaf is
    reduced in turn (same order on every worker) and scalars are averaged across replicas (axis=None).
    """
    import tensorflow as tf

    reduce_one = strategy.reduce

    def leaf_rank(leaf: Any) -> int | None:
        return strategy.experimental_local_results(leaf)[0].shape.rank

    def reduce(reduce_op: Any, value: Any, axis: int | None = None) -> Any:
        return tf.nest.map_structure(
            lambda leaf: reduce_one(reduce_op, leaf, axis=None if leaf_rank(leaf) == 0 else axis), value
        )

    strategy.reduce = reduce


def global_batch_size(per_replica_batch: int, replicas: int) -> int:
    """Images per training step over all replicas: per-replica batch x replicas in sync."""
    if per_replica_batch < 1 or replicas < 1:
        raise ValueError(f"Batch size ({per_replica_batch}) and replicas ({replicas}) must both be at least 1.")
    return int(per_replica_batch) * int(replicas)


def shard_rows(frame: pd.DataFrame, num_shards: int, shard_index: int, *, stratify: str | None = "label") -> pd.DataFrame:
    """The rows one input pipeline reads: every ``num_shards``-th row (within each class when ``stratify``).

    Shards are disjoint, cover every row, differ in size by at most one row per class, and keep the
    class prevalence of ``frame``.
    """
    if num_shards < 1 or not 0 <= shard_index < num_shards:
        raise ValueError(f"Shard {shard_index} of {num_shards} is invalid: need num_shards >= 1 and 0 <= shard_index < num_shards.")
    if num_shards == 1:
        return frame
    if stratify is None:
        return frame.iloc[shard_index::num_shards]
    position = frame.groupby(stratify, sort=False).cumcount().to_numpy()
    return frame[position % num_shards == shard_index]


def shard_sizes(n_rows: int, num_shards: int) -> np.ndarray:
    """Rows per shard, int ``(num_shards,)``, for ``shard_rows(..., stratify=None)`` over ``n_rows`` rows."""
    return np.array([len(range(i, n_rows, num_shards)) for i in range(num_shards)], dtype=np.int64)


def with_auto_shard(dataset: Any, policy: str = "DATA") -> Any:
    """``dataset`` with tf.data's auto-shard policy set ('DATA', 'FILE', 'AUTO' or 'OFF')."""
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = getattr(tf.data.experimental.AutoShardPolicy, policy)
    return dataset.with_options(options)


def distribute_dataset(strategy: Any, dataset_fn: Callable[..., Any], *, global_batch: int) -> Any:
    """A distributed dataset where each input pipeline reads its own shard at the per-replica batch size.

    ``dataset_fn(batch_size=, num_shards=, shard_index=)`` builds one pipeline's tf.data.Dataset; it is
    called once per worker (strategy.distribute_datasets_from_function), so no worker reads another's files.
    """

    def one_pipeline(context: Any) -> Any:
        batch = context.get_per_replica_batch_size(global_batch)
        return dataset_fn(batch_size=batch, num_shards=context.num_input_pipelines, shard_index=context.input_pipeline_id)

    return strategy.distribute_datasets_from_function(one_pipeline)


@contextlib.contextmanager
def artifact_dir(models_dir: str | os.PathLike, info: ClusterInfo | None = None) -> Iterator[Path]:
    """Where this process writes its artifacts: ``models_dir`` on the chief, else a temporary folder deleted on exit."""
    info = info or cluster_info()
    if info.is_chief:
        yield Path(models_dir)
        return
    scratch = Path(tempfile.mkdtemp(prefix=f"pneumonia-worker{info.worker_index}-"))
    log.info("Worker %d is not the chief: its artifacts go to %s and are deleted", info.worker_index, scratch)
    try:
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
