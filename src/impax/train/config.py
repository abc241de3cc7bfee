"""Training configuration: :class:`TrainConfig`, :class:`Stage` and the loop :class:`Position`.

Defaults reproduce IM-NET (Chen & Zhang 2019): Adam with learning rate 5e-5, beta1 0.5 and
beta2 0.999 (``main.py`` of all three IM-NET code bases; ``network-structure.pdf`` §E).
LDIF/SIF runs override the optimiser fields with :func:`dataclasses.replace`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from impax.configs import resumable_paths

#: Marks a config field a resumed run may change (it does not change the maths); see
#: :func:`impax.configs.resumable_paths`.
RESUMABLE = {"resumable": True}


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimiser, logging, checkpoint and device settings of :func:`impax.train.fit`.

    Attributes:
        learning_rate: Adam step size (IM-NET: 5e-5).
        beta1: Adam first-moment decay (IM-NET: 0.5).
        beta2: Adam second-moment decay (IM-NET: 0.999).
        eps: Adam epsilon (optax/PyTorch/TF default 1e-8).
        seed: base RNG seed; the key of global step ``s`` is ``fold_in(key(seed), s)``.
        log_every_steps: scalars go to ``metrics.jsonl``/TensorBoard every this many steps.
        checkpoint_every_steps: save every this many global steps (``None``: never by count).
        checkpoint_every_seconds: also save when this much wall time has passed since the last
            save (``None``: never by time). A checkpoint is always written at the end.
        keep_checkpoints: keep the last k checkpoints (IM-NET-pytorch keeps 2).
        max_steps: stop (with a checkpoint) once this many global steps are done; running again
            with a larger value or ``None`` continues. ``None``: run every stage to the end.
        num_devices: data-parallel over the first n local devices (``None``: all of them).
        prefetch: batches prepared on a background thread and put on the device ahead of use
            (0: load synchronously in the loop).
        loader_workers: processes that read the training batches (0: one background thread of
            this process; a GPU needs several, docs/gpu.md). Batches are the same either way.
        cache_mb: MiB of decoded records the loader keeps in memory (``None``: a quarter of the
            memory available at the start; 0: none). Batches are the same either way.
        progress: show a tqdm progress bar (loss, rate, ETA) on stderr.
        async_checkpointing: let orbax write checkpoints in the background.
        handle_signals: on SIGINT/SIGTERM finish the current step, save and return
            (``stopped == "signal"``); a second SIGINT interrupts at once.
        tensorboard: write TensorBoard scalars to ``RUN/tb``.
    """

    learning_rate: float = 5e-5
    beta1: float = 0.5
    beta2: float = 0.999
    eps: float = 1e-8
    seed: int = 0
    log_every_steps: int = dataclasses.field(default=100, metadata=RESUMABLE)
    checkpoint_every_steps: int | None = dataclasses.field(default=1000, metadata=RESUMABLE)
    checkpoint_every_seconds: float | None = dataclasses.field(default=1800.0, metadata=RESUMABLE)
    keep_checkpoints: int = dataclasses.field(default=2, metadata=RESUMABLE)
    max_steps: int | None = dataclasses.field(default=None, metadata=RESUMABLE)
    num_devices: int | None = dataclasses.field(default=None, metadata=RESUMABLE)
    prefetch: int = dataclasses.field(default=2, metadata=RESUMABLE)
    loader_workers: int = dataclasses.field(default=0, metadata=RESUMABLE)
    cache_mb: float | None = dataclasses.field(default=None, metadata=RESUMABLE)
    progress: bool = dataclasses.field(default=True, metadata=RESUMABLE)
    async_checkpointing: bool = dataclasses.field(default=True, metadata=RESUMABLE)
    handle_signals: bool = dataclasses.field(default=True, metadata=RESUMABLE)
    tensorboard: bool = dataclasses.field(default=True, metadata=RESUMABLE)

    def __post_init__(self) -> None:
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.log_every_steps < 1:
            raise ValueError(f"log_every_steps must be >= 1, got {self.log_every_steps}")
        if self.checkpoint_every_steps is not None and self.checkpoint_every_steps < 1:
            raise ValueError("checkpoint_every_steps must be >= 1 or None")
        if self.keep_checkpoints < 1:
            raise ValueError(f"keep_checkpoints must be >= 1, got {self.keep_checkpoints}")
        if self.max_steps is not None and self.max_steps < 0:
            raise ValueError(f"max_steps must be >= 0 or None, got {self.max_steps}")
        if self.num_devices is not None and self.num_devices < 1:
            raise ValueError(f"num_devices must be >= 1 or None, got {self.num_devices}")
        if self.prefetch < 0:
            raise ValueError(f"prefetch must be >= 0, got {self.prefetch}")
        if self.loader_workers < 0:
            raise ValueError(f"loader_workers must be >= 0, got {self.loader_workers}")
        if self.cache_mb is not None and self.cache_mb < 0:
            raise ValueError(f"cache_mb must be >= 0 or None, got {self.cache_mb}")


#: Config fields that may differ when a run is resumed (they do not change the maths).
RESUMABLE_FIELDS = frozenset(resumable_paths(TrainConfig))


class Loader(Protocol):
    """The loader contract of ``docs/CONTRACTS.md``: deterministic in (seed, epoch)."""

    def __len__(self) -> int: ...

    def iterate(self, epoch: int, start: int = 0) -> Any: ...


#: ``loss_fn(model, batch, rng) -> (loss, metrics)``; metrics is a dict of scalars.
LossFn = Callable[[Any, Mapping[str, Any], Any], tuple[Any, Mapping[str, Any]]]
#: ``step_fn(model, optimizer, batch, rng) -> (loss, metrics)``; it updates model and optimizer
#: (an ``nnx.Optimizer`` or a dict of them) in place, e.g. a GAN's critic then generator.
StepFn = Callable[[Any, Any, Mapping[str, Any], Any], tuple[Any, Mapping[str, Any]]]


@dataclasses.dataclass(frozen=True)
class Stage:
    """One stage of training: a loader (one data level) trained for ``epochs`` epochs.

    IM-AE's progressive training is three stages (16³, 32³, 64³ points). Give either
    ``loss_fn`` (the trainer differentiates it w.r.t. the ``wrt`` parameters and applies the
    optimiser) or ``step_fn`` (full control, e.g. a GAN with two optimisers).

    ``reset_optimizer``: re-initialise the optimiser state when this stage begins. The default
    ``False`` keeps Adam's moments across levels like the TF1 originals, whose ``tf.train.Saver``
    checkpoints the Adam slots and restores them for the next level. IM-NET-pytorch saves only
    ``im_network.state_dict()`` and builds a fresh ``torch.optim.Adam`` per level (one process per
    level), which ``reset_optimizer=True`` reproduces.
    """

    name: str
    loader: Any
    epochs: int
    loss_fn: LossFn | None = None
    step_fn: StepFn | None = None
    reset_optimizer: bool = False

    def __post_init__(self) -> None:
        if (self.loss_fn is None) == (self.step_fn is None):
            raise ValueError(f"stage {self.name!r}: give exactly one of loss_fn and step_fn")
        if self.epochs < 0:
            raise ValueError(f"stage {self.name!r}: epochs must be >= 0, got {self.epochs}")


@dataclasses.dataclass(frozen=True)
class Position:
    """Where the loop is: the next step to run is batch ``step`` of ``epoch`` of ``stage``.

    ``global_step`` counts the steps completed over all stages. A finished epoch is stored as
    ``(epoch + 1, 0)``; a stage whose epochs are all done keeps its index until the loop moves on,
    so a stage's epoch count may be raised before resuming.
    """

    stage: int = 0
    epoch: int = 0
    step: int = 0
    global_step: int = 0

    def to_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Position:
        return cls(**{k: int(d[k]) for k in ("stage", "epoch", "step", "global_step")})
