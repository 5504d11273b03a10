"""Proposals over a whole project by several workers, with one writer.

``specula propose PROJECT --workers N`` runs N local worker processes; ``--cluster
ADDRESS`` runs the same job on a Ray cluster (``ray.init(address=...)``; Ray is the
optional ``cluster`` extra and is imported only here, only then). Either way:

- **workers compute, the driver writes**: each worker holds its own ``Engine`` (one ONNX
  Runtime session; ``CUDA_VISIBLE_DEVICES`` picks its GPU where there are several) and
  returns an image's proposals; only the driver opens the project's SQLite file and stores
  them with ``store_proposals`` (the one function that stores proposals), several images
  to a transaction. The database never leaves the driver's disk (WAL over a network file
  system is unsafe); the workers read the images from a path all of them see;
- **resumable and idempotent**: an image whose last ``propose`` log row names this model
  version is skipped, and storing an image replaces its proposals in one transaction, so a
  run killed at any moment and started again finishes the job with no duplicate and no
  lost image;
- **retries**: a worker that dies has its images given to a new one (local: the pool is
  rebuilt; Ray: the actor restarts and its task is retried); an image that fails twice is
  reported in the summary, never fatal.

Progress: ``progress(done, total, path)`` as ``image_proposals`` does, plus the rate and
the images left in ``BatchProgress``.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence

from annotation.document import ImageRecord
from inference.propose import ImageProposals, ProposeSummary

ATTEMPTS = 2  # an image is tried at most this many times before it is reported as failed
COMMIT_EVERY = 16  # images stored per transaction (one fsync for many small inserts)
COMMIT_SECONDS = 2.0  # ... or whatever arrived within this time


class BatchError(RuntimeError):
    """A batch run cannot start (Ray missing, a cluster not reachable): one line for the user."""


@dataclass
class Job:
    """One image for a worker (plain data: it crosses process and machine boundaries)."""

    image_id: int
    path: str
    sha1: Optional[str]


def already_proposed(store, model: str, version: str) -> set[int]:
    """Images whose latest ``propose`` run was ``model@version`` (a finished image of that run)."""
    latest: dict[int, tuple[str, str]] = {}
    for row in store.interactions(actions=["propose"]):
        if row.image_id is not None:
            latest[int(row.image_id)] = (str(row.details.get("model")), str(row.details.get("version")))
    return {i for i, mv in latest.items() if mv == (model, version)}


class _Worker:
    """What a worker process (or Ray actor) holds: the engine, made once."""

    def __init__(self, registry_roots: Sequence[str], model: str, version: Optional[str],
                 params: Mapping[str, Any], device: str, root: str, threads: Optional[int]):
        from inference.engine import Engine
        from inference.registry import Registry

        if threads:  # this worker's share of the machine's cores
            from inference.runtime import THREADS_ENV

            os.environ[THREADS_ENV] = str(threads)
            os.environ.setdefault("OMP_NUM_THREADS", str(threads))
        registry = Registry(registry_roots[0], registry_roots[1:])  # the driver's registry, shipped models too
        self.engine = Engine(registry, device=device)
        self.model, self.version, self.params, self.root = model, version, dict(params), root
        self.engine.pipeline(model, version)  # load now: a model that cannot load fails the start

    def run(self, job: Job) -> tuple[int, Optional[ImageProposals], str]:
        """``(image_id, result or None, error text)``."""
        from inference.propose import ProposeSummary, image_proposals

        rec = ImageRecord(path=job.path, width=0, height=0, id=job.image_id, sha1=job.sha1)
        summary = ProposeSummary()
        results = list(image_proposals(self.root, [rec], self.engine, self.model, self.version, self.params,
                                       summary=summary, overlap=False))
        if results:
            return job.image_id, results[0], ""
        return job.image_id, None, summary.skipped.get(job.path, "no result")


_WORKER: Optional[_Worker] = None


def _init_local(*args: Any) -> None:
    global _WORKER
    _WORKER = _Worker(*args)


def _run_local(job: Job) -> tuple[int, Optional[ImageProposals], str]:
    assert _WORKER is not None, "worker not initialised"
    return _WORKER.run(job)


def _local_results(jobs: Sequence[Job], workers: int, init_args: tuple, failures: dict[int, str],
                   retried: list[int]) -> Iterator[tuple[int, Optional[ImageProposals], str]]:
    """Results of ``jobs`` from a pool of ``workers`` processes, as they finish; a pool
    broken by a dead worker is rebuilt and its unfinished images are tried again."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    attempts: dict[int, int] = {}
    pending = list(jobs)
    ctx = multiprocessing.get_context("spawn")  # no fork of a process holding threads and sessions
    while pending:
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_local, initargs=init_args)
        try:
            futures = {}
            for job in pending:
                attempts[job.image_id] = attempts.get(job.image_id, 0) + 1
                futures[pool.submit(_run_local, job)] = job
            pending = []
            broken = False
            while futures:
                done, _ = wait(futures, return_when=FIRST_COMPLETED)
                for fut in done:
                    job = futures.pop(fut)
                    try:
                        yield fut.result()
                    except BrokenProcessPool:
                        broken = True
                        if attempts[job.image_id] < ATTEMPTS:
                            pending.append(job)
                            retried.append(job.image_id)
                        else:
                            failures[job.image_id] = "its worker died twice"
                    except Exception as exc:  # noqa: BLE001 - one image's failure is reported, not fatal
                        if attempts[job.image_id] < ATTEMPTS:
                            pending.append(job)
                            retried.append(job.image_id)
                        else:
                            failures[job.image_id] = f"{type(exc).__name__}: {exc}"
                if broken:
                    for fut, job in futures.items():  # every unfinished image of the broken pool
                        fut.cancel()
                        if attempts[job.image_id] < ATTEMPTS:
                            pending.append(job)
                            retried.append(job.image_id)
                        else:
                            failures[job.image_id] = "its worker died twice"
                    futures = {}
        finally:
            # stopped early (cancelled, the consumer gone): images not started are dropped
            if broken_pool(pool):
                # a worker killed while it held the task queue's lock leaves the others
                # waiting on that lock for ever, and shutdown() would join them: end them
                for proc in list(getattr(pool, "_processes", {}).values()):
                    proc.kill()
            pool.shutdown(wait=True, cancel_futures=True)


def broken_pool(pool: Any) -> bool:
    """Whether a ``ProcessPoolExecutor`` lost a worker (its ``_broken`` flag, set by the
    executor's own manager thread: no public accessor exists)."""
    return bool(getattr(pool, "_broken", False))


def _ray_results(jobs: Sequence[Job], workers: int, init_args: tuple, address: Optional[str],
                 failures: dict[int, str], ray_init: Optional[Mapping[str, Any]] = None
                 ) -> Iterator[tuple[int, Optional[ImageProposals], str]]:
    """The same on Ray: an actor per worker holding the engine (Ray's pattern for stateful
    batch inference); a dead actor restarts and its task is retried by Ray."""
    try:
        import ray
    except ImportError:
        raise BatchError("--cluster needs Ray: pip install 'specula[cluster]'") from None
    if not ray.is_initialized():
        try:
            ray.init(address=address, **dict(ray_init or {}))
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise BatchError(f"cannot reach the Ray cluster at {address}: {str(exc).splitlines()[0]}") from None
    actor_cls = ray.remote(max_restarts=ATTEMPTS - 1, max_task_retries=ATTEMPTS - 1, num_cpus=1)(_Worker)
    actors = [actor_cls.remote(*init_args) for _ in range(workers)]
    pool = ray.util.ActorPool(actors)
    # submitted as the pool frees up (not all at once: 8 million images stay on the driver)
    it = iter(jobs)
    in_flight = 0
    for job in it:
        pool.submit(lambda a, j: a.run.remote(j), job)
        in_flight += 1
        if in_flight >= 2 * workers:
            break
    while pool.has_next():
        try:
            yield pool.get_next_unordered()
        except Exception as exc:  # noqa: BLE001 - Ray gave up on it after its retries
            failures[-1 - len(failures)] = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
        nxt = next(it, None)
        if nxt is not None:
            pool.submit(lambda a, j: a.run.remote(j), nxt)
    for a in actors:
        ray.kill(a)


def worker_results(
    root: str,
    registry,
    model: str,
    version: str,
    jobs: Sequence[Job],
    *,
    workers: int = 2,
    cluster: Optional[str] = None,
    backend: str = "local",
    params: Optional[Mapping[str, Any]] = None,
    device: str = "auto",
    failures: Optional[dict[int, str]] = None,
    retried: Optional[list[int]] = None,
    ray_init: Optional[Mapping[str, Any]] = None,
) -> Iterator[tuple[int, Optional[ImageProposals], str]]:
    """``(image_id, proposals or None, error)`` of each of ``jobs`` (images under ``root``),
    in the order they finish, from ``workers`` worker processes (or Ray actors). Touches no
    database: the caller stores (the CLI's driver, or the desktop's GUI thread). Closing the
    generator stops the workers; images that failed twice land in ``failures``."""
    from inference.runtime import _env_threads

    # each worker's share of the cores, unless the user fixed it (SPECULA_ORT_THREADS)
    threads = _env_threads() or max(1, (os.cpu_count() or 1) // max(1, workers))
    roots = [str(registry.root), *(str(r) for r in registry.extra_roots)]
    init_args = (roots, model, version, dict(params or {}), device, str(root), threads)
    failures = {} if failures is None else failures
    retried = [] if retried is None else retried
    if backend == "ray" or cluster:
        return _ray_results(jobs, workers, init_args, cluster, failures, ray_init)
    return _local_results(jobs, workers, init_args, failures, retried)


def jobs_for(records: Sequence[ImageRecord], skip: Optional[set[int]] = None) -> list[Job]:
    """The jobs of ``records`` (those with an id, none in ``skip``)."""
    skip = skip or set()
    return [Job(int(r.id), r.path, r.sha1) for r in records if r.id is not None and int(r.id) not in skip]


def propose_with_workers(
    store,
    registry,
    model: str,
    version: str,
    *,
    workers: int = 2,
    cluster: Optional[str] = None,
    backend: str = "local",
    images: Optional[Sequence[ImageRecord]] = None,
    params: Optional[Mapping[str, Any]] = None,
    device: str = "auto",
    resume: bool = True,
    progress: Optional[Callable[[int, int, str], None]] = None,
    ray_init: Optional[Mapping[str, Any]] = None,
) -> ProposeSummary:
    """Propose on ``images`` (default: all the project's) with ``workers`` workers and store
    the results from this process only. ``backend``: ``local`` (processes) or ``ray``
    (``cluster`` the address of a running cluster, None for a local one). ``version`` must
    be a resolved version (the driver decides which one every worker loads)."""
    summary = ProposeSummary(model=model, version=version)
    start = time.perf_counter()
    records = list(images if images is not None else store.images())
    skip = already_proposed(store, model, version) if resume else set()
    jobs = jobs_for(records, skip)
    by_id = {j.image_id: j for j in jobs}
    total = len(jobs)
    failures: dict[int, str] = {}
    retried: list[int] = []
    results = worker_results(store.root, registry, model, version, jobs, workers=workers, cluster=cluster,
                             backend=backend, params=params, device=device, failures=failures, retried=retried,
                             ray_init=ray_init)
    batch: list[ImageProposals] = []
    last_commit = time.monotonic()
    done = 0

    def flush() -> None:
        nonlocal last_commit
        if batch:
            with store.transaction():  # several images, one commit; each image stays whole
                for r in batch:
                    r.store(store, params)
                    summary.proposals -= sum(r.dropped.values())
            batch.clear()
        last_commit = time.monotonic()

    try:
        for image_id, result, error in results:
            done += 1
            job = by_id.get(image_id)
            if result is None:
                if job is not None:
                    summary.skipped[job.path] = error
            else:
                batch.append(result)
                summary.images += 1
                summary.proposals += len(result.instances)
                summary.model, summary.version = result.model, result.version
            if len(batch) >= COMMIT_EVERY or time.monotonic() - last_commit >= COMMIT_SECONDS:
                flush()
            if progress and job is not None:
                progress(done, total, job.path)
    finally:
        flush()  # what finished is kept, even when the run stops
        getattr(results, "close", lambda: None)()  # and the workers stop
    for image_id, why in failures.items():
        job = by_id.get(image_id)
        summary.skipped[job.path if job else f"image {image_id}"] = f"failed: {why}"
    if retried:
        summary.messages.append(f"{len(set(retried))} images retried after a worker stopped")
    if skip:
        summary.messages.append(f"{len(skip & {int(r.id) for r in records if r.id is not None})} images already "
                                f"proposed with {model}@{version}: skipped")
    summary.seconds = time.perf_counter() - start
    return summary
