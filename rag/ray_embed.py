"""Embedding at ingest on a Ray cluster (settings.embed_backend='ray'), so a million chunks embed on many nodes.

`RayEmbedder` has the Embedder's interface. Chunking still tokenizes in the ingest process (cheap); the texts
to embed are cut into batches of `batch_size` and sent round-robin to `ray_actors` actors, each holding the
same sentence-transformers model (loaded once per actor from the model package installed on its node, never
downloaded), with `ray_actor_cpus` / `ray_actor_gpus` reserved each. Actors run the same model on the same
batches as the local embedder, so the vectors are the same (tests/test_ray_embed.py: cosine >= 0.9999).
Actors are used rather than Ray Data's map_batches: results come back in the order sent without a shuffle
step, and a model is loaded once per actor for the whole ingest.

With `ray_address` empty, Ray is started in this process (`ray.init()`), sized for the actors; a cluster
address (`ray://head:10001`, or 'auto' on a cluster node) connects to it instead.
"""

from __future__ import annotations

import math
import threading

import numpy as np

from rag.embedding import Embedder, EmbedderError, load_embedder
from rag.settings import Settings


class _EmbedActor:
    """One model on one Ray worker."""

    def __init__(self, model_name: str) -> None:
        self.embedder = load_embedder(model_name)

    def embed(self, texts: list[str], batch_size: int) -> np.ndarray:
        return self.embedder.embed(texts, batch_size=batch_size)


def _ray():
    try:
        import ray
    except ImportError as err:
        raise EmbedderError("RAG_EMBED_BACKEND=ray needs Ray: pip install -e '.[scale]' (or set "
                            "RAG_EMBED_BACKEND=local)") from err
    return ray


def start_ray(settings: Settings) -> None:
    """Connect to settings.ray_address, or start a local Ray just big enough for the actors."""
    ray = _ray()

    if ray.is_initialized():
        return
    if settings.ray_address:
        ray.init(address=settings.ray_address, log_to_driver=False)
    else:
        ray.init(num_cpus=max(1, math.ceil(settings.ray_actors * settings.ray_actor_cpus)),
                 include_dashboard=False, log_to_driver=False)


class RayEmbedder:
    """The Embedder interface, embedding on Ray actors; tokenizing (for chunking) stays in this process."""

    def __init__(self, settings: Settings, local: Embedder | None = None) -> None:
        ray = _ray()
        start_ray(settings)
        self._local = local or load_embedder(settings.embed_model)
        self.name = self._local.name
        self.dimension = self._local.dimension
        self.max_tokens = self._local.max_tokens
        actor = ray.remote(num_cpus=settings.ray_actor_cpus, num_gpus=settings.ray_actor_gpus)(_EmbedActor)
        self._actors = [actor.remote(settings.embed_model) for _ in range(settings.ray_actors)]

    def tokenize(self, text: str) -> list[int]:
        return self._local.tokenize(text)

    def count_tokens(self, text: str) -> int:
        return self._local.count_tokens(text)

    def embed(self, texts: list[str], batch_size: int = 32, show_progress: bool = False) -> np.ndarray:
        import ray

        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        batches = [texts[i : i + batch_size] for i in range(0, len(texts), batch_size)]
        refs = [self._actors[n % len(self._actors)].embed.remote(batch, batch_size) for n, batch in enumerate(batches)]
        return np.ascontiguousarray(np.concatenate(ray.get(refs)), dtype=np.float32)

    def embed_one(self, text: str) -> np.ndarray:
        return self.embed([text])[0]

    def close(self) -> None:
        """Stop the actors (their models' memory is freed on the cluster)."""
        import ray

        for actor in self._actors:
            ray.kill(actor)
        self._actors = []


_shared: dict[tuple, RayEmbedder] = {}
_shared_lock = threading.Lock()


def ray_embedder(settings: Settings, local: Embedder | None = None) -> RayEmbedder:
    """One RayEmbedder per model and cluster settings in a process: its actors load the model once, and every
    later ingest (the web app's re-index, `rag watch`) reuses them."""
    key = (settings.embed_model, settings.ray_address, settings.ray_actors, settings.ray_actor_cpus,
           settings.ray_actor_gpus)
    with _shared_lock:
        if key not in _shared:
            _shared[key] = RayEmbedder(settings, local)
        return _shared[key]


def shutdown() -> None:
    """Stop the shared actors and disconnect from Ray (or stop the local Ray this process started)."""
    import ray

    with _shared_lock:
        for embedder in _shared.values():
            embedder.close()
        _shared.clear()
    ray.shutdown()
