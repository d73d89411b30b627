"""Distributed LIME over Ray actors, writing to the mask store.

Each actor loads the model once (weights travel through the object store, not the
file system, so workers on other nodes need no shared disk), takes ``num_gpus`` of a
GPU (fractions pack several actors on one GPU) and explains chunks of images with
``methods.lime``. The driver keeps two chunks in flight per actor, writes each
finished chunk to the store as one atomic part, and shows images done and images/s.

Why plain actors and not Ray Data ``map_batches``: the store needs exactly-once
chunks and resume-from-what-is-there, which a driver-side queue gives directly.
When an actor dies, Ray fails its in-flight calls with ``RayActorError``; the driver
starts one fresh actor in its place and sends those chunks again. (Ray's own
``max_restarts`` would do the restart, but it warns that restarts fail once the
object-store copy of the model is gone, ray-project/ray#53727; a driver-made
replacement has no such hole.) A chunk is written only when its result arrives, so
none is lost or written twice.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import ray
import torch
from ray.exceptions import RayActorError
from tqdm.auto import tqdm

from methods.data import Dataset
from methods.lime import LimeExplainer, LimeSettings
from orchestrator.checkpoints import check_fits, read_checkpoint, restore_model
from orchestrator.cluster import connect
from orchestrator.explain.store import MaskStore, StoreKey, explanations_table, file_digest

__all__ = ["ExplainReport", "ExplainWorker", "connect", "explain_split", "start_workers"]

log = logging.getLogger(__name__)

#: Images per chunk: ~8,000 forward passes at 1,000 samples, long enough to hide the
#: per-call overhead (~1 ms), short enough that a lost chunk costs little.
DEFAULT_CHUNK = 8


@ray.remote
class ExplainWorker:
    """Holds one model and explains chunks of images."""

    def __init__(
        self, state: dict, settings: LimeSettings, threads: int, batch_size: int | None
    ) -> None:
        torch.set_num_threads(max(1, threads))
        # Ray may grant a GPU (even a fraction, or a fake one in tests) on a machine
        # where torch sees none: fall back to the CPU then.
        use_cuda = bool(ray.get_gpu_ids()) and torch.cuda.is_available()
        self.device = torch.device("cuda" if use_cuda else "cpu")
        self.model = restore_model(state).to(self.device).eval()
        self.explainer = LimeExplainer(self.model, batch_size=batch_size)
        self.settings = settings

    def explain(
        self,
        indices: np.ndarray,
        images: np.ndarray,
        labels: np.ndarray,
        explain_label: str = "true",
    ) -> pa.Table:
        x = torch.from_numpy(np.array(images))  # arrays from the object store are read-only
        x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
        targets = torch.from_numpy(np.array(labels)) if explain_label == "true" else None
        explanations = self.explainer.explain(x, targets, self.settings, indices=indices.tolist())
        return explanations_table(indices, labels, explanations)

    def where(self) -> dict:
        """Where this actor runs: process, node, granted GPU ids, torch device."""
        context = ray.get_runtime_context()
        return {
            "pid": os.getpid(),
            "node_id": context.get_node_id(),
            "gpu_ids": [str(g) for g in ray.get_gpu_ids()],
            "device": str(self.device),
        }


@dataclass(frozen=True)
class ExplainReport:
    key: StoreKey
    store: str  # the store folder
    requested: int  # images asked for
    computed: int  # explained in this run
    reused: int  # already in the store
    seconds: float
    mean_score: float  # mean surrogate R^2 over the requested images

    @property
    def images_per_s(self) -> float:
        return self.computed / self.seconds if self.seconds > 0 else 0.0


def start_workers(
    state: ray.ObjectRef,
    settings: LimeSettings,
    *,
    actors: int,
    cpus_per_actor: float = 1,
    gpus_per_actor: float = 0,
    batch_size: int | None = None,
) -> list[ray.actor.ActorHandle]:
    """Start ``actors`` explain workers on ``state`` (a checkpoint put in the object
    store once; the caller keeps the reference alive so that Ray can restart a worker)."""
    options = {"num_cpus": cpus_per_actor, "num_gpus": gpus_per_actor}
    threads = max(1, int(cpus_per_actor))
    return [
        ExplainWorker.options(**options).remote(state, settings, threads, batch_size)
        for _ in range(actors)
    ]


def explain_split(
    checkpoint: str,
    dataset: Dataset,
    *,
    split: str = "train",
    settings: LimeSettings | None = None,
    limit: int | None = None,
    actors: int = 2,
    cpus_per_actor: float = 1,
    gpus_per_actor: float = 0,
    chunk: int = DEFAULT_CHUNK,
    batch_size: int | None = None,
    storage: str = "results",
    explain_label: str = "true",
    on_chunk: Callable[[int, list], None] | None = None,
) -> ExplainReport:
    """Explain the first ``limit`` images of a split (all if None) for their true labels
    (``explain_label="predicted"``: for the model's predicted classes).

    Images the store already holds are skipped. Ray must be connected (``connect``).

    Args:
        on_chunk: called after each stored chunk with (chunks stored, actor handles).
    """
    started = time.perf_counter()
    state = read_checkpoint(checkpoint)
    check_fits(state["meta"], dataset)
    data = dataset.train if split == "train" else dataset.test
    n = len(data) if limit is None else min(limit, len(data))
    settings = (settings or LimeSettings()).resolved(min(dataset.input_shape[1:]))
    key = StoreKey(dataset.name, split, file_digest(checkpoint), settings, explain_label)
    store = MaskStore(storage, key)
    done = store.done()
    todo = [i for i in range(n) if i not in done]
    if todo:
        state_ref = ray.put(state)
        workers = start_workers(
            state_ref,
            settings,
            actors=min(actors, -(-len(todo) // chunk)),
            cpus_per_actor=cpus_per_actor,
            gpus_per_actor=gpus_per_actor,
            batch_size=batch_size,
        )
        try:
            _run_chunks(
                workers,
                data,
                todo,
                chunk,
                store,
                explain_label,
                on_chunk,
                lambda: start_workers(
                    state_ref,
                    settings,
                    actors=1,
                    cpus_per_actor=cpus_per_actor,
                    gpus_per_actor=gpus_per_actor,
                    batch_size=batch_size,
                )[0],
            )
        finally:  # no actor outlives the run, even on an error or Ctrl-C
            for worker in workers:
                ray.kill(worker)
    table = store.read()
    wanted = table.filter(pa.compute.less(table.column("image_index"), n))
    scores = wanted.column("score").to_numpy()
    return ExplainReport(
        key=key,
        store=store.uri,
        requested=n,
        computed=len(todo),
        reused=n - len(todo),
        seconds=time.perf_counter() - started,
        mean_score=float(scores.mean()) if len(scores) else float("nan"),
    )


def _run_chunks(workers, data, todo, chunk, store, explain_label, on_chunk, replacement) -> None:
    chunks = [np.asarray(todo[i : i + chunk], dtype=np.int64) for i in range(0, len(todo), chunk)]
    pending = list(range(len(chunks)))[::-1]  # a stack: pop() takes the next chunk
    in_flight: dict[ray.ObjectRef, tuple[int, int, object]] = {}  # ref -> (chunk, slot, actor)
    stored = 0

    def submit(slot: int) -> None:
        if pending:
            index = pending.pop()
            ids = chunks[index]
            images = data.images[torch.from_numpy(ids)].numpy()
            labels = data.labels[torch.from_numpy(ids)].numpy()
            ref = workers[slot].explain.remote(ids, images, labels, explain_label)
            in_flight[ref] = (index, slot, workers[slot])

    for slot in range(len(workers)):
        for _ in range(2):  # two in flight: the next chunk is queued while one runs
            submit(slot)
    with tqdm(total=len(todo), unit="img", desc="explain", disable=None) as bar:
        while in_flight:
            ready, _ = ray.wait(list(in_flight), num_returns=1)
            index, slot, actor = in_flight.pop(ready[0])
            try:
                table = ray.get(ready[0])
            except RayActorError:
                # Replace the dead actor (once, though several of its chunks fail)
                # and send the chunk again.
                log.warning("explain actor %d is gone; chunk %d goes to a new actor", slot, index)
                if workers[slot] is actor:
                    workers[slot] = replacement()
                pending.append(index)
                submit(slot)
                continue
            store.write(table)
            stored += 1
            bar.update(table.num_rows)
            if on_chunk is not None:
                on_chunk(stored, workers)
            submit(slot)
