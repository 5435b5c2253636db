"""The run skeleton both trainers share: run folder, lock, resume, optimizer, the step loop, logging,
validation cadence, checkpoints and the final export.

A trainer keeps what is its own (data, model, batch, loss, validation metric, what it exports) and hands
the rest to one `TrainingRun`, in the order it reads:

    with training_run(config, "train vae") as run:       # distributed context, --precision, --out checked
        data = ...                                        # 1. data (the trainer's)
        torch.manual_seed(config.seed)
        model = ...                                       # 2. model (the trainer's)
        forward_model = run.start(model, ...)             # 3. optimizer, lock, resume or refuse, DDP
                                                          # 4. logger, train_config.json
        run.train(batches, step_loss, validate)           # 5. the loop: lr, update, EMA, log, validate, save
        run.finish(final_model, message)                  # 6. RUN/final (rank 0), logger closed

Only rank 0 locks, logs and saves; every rank steps. The step loop is the same one both trainers ran
before it moved here, statement for statement, so a run's checkpoints and metrics.csv are unchanged.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import torch
from torch import nn

from hybridmem import runlock
from hybridmem.train import common
from hybridmem.train import state as train_state
from hybridmem.train.distributed import (
    DistributedContext,
    all_reduce_mean,
    barrier,
    cleanup,
    gather_objects,
    init_distributed,
    wrap_ddp,
)
from hybridmem.train.logging import TrainingLogger

# One step of a trainer: (batch, step) -> (loss, extra terms logged beside the loss, e.g. {"kl": ...}).
StepLoss = Callable[[object, int], tuple[torch.Tensor, dict[str, torch.Tensor]]]
# A validation at step `done` (rank 0 only): returns the metrics to log, e.g. {"val_loss": ...}.
Validate = Callable[[int], dict[str, float]]


@contextlib.contextmanager
def training_run(config, command: str) -> Iterator[TrainingRun]:
    """Check the config, join the process group, check --precision and --out; on the way out (done or
    failed) release the run lock and leave the process group.

    config: a VaeTrainConfig or WorldTrainConfig (the fields both have: device, precision, out, seed, lr,
    weight_decay, warmup, grad_clip, steps, log_every, val_every, save_every, keep, resume, tensorboard,
    progress). command: what the lock and run.json name ("train vae", "train world").
    """
    config.validate()
    distributed = init_distributed(config.device)
    common.check_precision(config.precision, distributed.device)
    out = runlock.check_out_folder(config.out)
    run = TrainingRun(config, command, distributed, out)
    try:
        yield run
    finally:
        if run.lock is not None:
            run.lock.release()
        cleanup(distributed)


class TrainingRun:
    """One run's shared state: distributed context, run folder, optimizer, generator, logger, losses."""

    def __init__(self, config, command: str, distributed: DistributedContext, out: Path):
        self.config = config
        self.command = command
        self.distributed = distributed
        self.out = out
        self.lock = None
        self.start_step = 0
        self.step = 0  # optimizer steps taken so far (the step the next checkpoint is named after)
        self.losses: list[float] = []  # this rank's per-step losses
        self.last_validation: dict[str, float] | None = None
        self.started = time.perf_counter()

    @property
    def device(self) -> torch.device:
        return self.distributed.device

    @property
    def rank(self) -> int:
        return self.distributed.rank

    @property
    def is_main(self) -> bool:
        return self.distributed.is_main

    @property
    def seconds(self) -> float:
        """Seconds since the step loop began."""
        return time.perf_counter() - self.started

    def start(
        self,
        model: nn.Module,
        *,
        generator_device: torch.device | str,
        save_model_fn: train_state.SaveModelFn,
        title: str,
        clips: int,
        ema=None,
        inputs: dict | None = None,
    ) -> nn.Module:
        """Steps 3 and 4 of a trainer; returns the model to call forward on (DDP-wrapped on many ranks).

        model: built and seeded by the trainer (same init on every rank). generator_device: where this
        rank's training generator draws (its state is saved in every checkpoint). save_model_fn: writes a
        model folder (checkpoints and RUN/final). title: the model, for the first log line ("VAE 'tiny'").
        ema: a train.ema.EMA of `model`, saved, resumed and updated after every step. inputs: what the
        run reads besides its flags, as content identities ({"cache_contents": sha256, ...}); recorded with
        the flags in RUN/run.json and compared on every --resume (train/state.py resume_or_refuse).
        """
        config, distributed = self.config, self.distributed
        self.model, self.ema, self.save_model_fn = model, ema, save_model_fn
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.scaler = common.grad_scaler(config.precision, distributed.device)
        self.generator = common.rank_generator(config.seed, distributed.rank, generator_device)

        # 3. lock the run folder (rank 0: a second run into it is refused); resume, or refuse to overwrite
        # or to mix: the run's identity (flags and inputs) is recorded at its start and kept
        if distributed.is_main:
            self.lock = runlock.acquire(self.out, self.command)
        self.start_step, self.generator = train_state.resume_or_refuse(
            self.out,
            config,
            self.command,
            inputs or {},
            model,
            self.optimizer,
            self.scaler,
            self.generator,
            distributed.rank,
            distributed.world_size,
            reseed=lambda step: common.rank_generator(config.seed + step, distributed.rank, generator_device),
            ema_model=ema.model if ema is not None else None,
        )
        self.step = self.start_step
        forward_model = wrap_ddp(model, distributed)

        # 4. logging (rank 0 only; the other ranks' logger does nothing)
        self.logger = TrainingLogger(
            self.out,
            config.steps,
            self.start_step,
            enabled=distributed.is_main,
            tensorboard=config.tensorboard,
            progress=config.progress,
        )
        if distributed.is_main:
            train_state.write_json_atomically(self.out / "train_config.json", dataclasses.asdict(config))
            self.logger.message(
                f"{title}: {common.parameter_count(model) / 1e6:.2f}M parameters, {clips} clips, ranks "
                f"{distributed.world_size}, device {distributed.device}, starting at step {self.start_step}"
            )
        return forward_model

    def save(self, step: int) -> None:
        """A checkpoint of `step` (rank 0 writes; every rank's generator and RNG states go into it)."""
        distributed = self.distributed
        rank_states = gather_objects(
            {"generator": self.generator.get_state(), "global": train_state.capture_rng_state()}, distributed
        )
        if distributed.is_main:
            train_state.save_checkpoint(
                self.out,
                step,
                self.model,
                self.optimizer,
                dataclasses.asdict(self.config),
                ema_model=self.ema.model if self.ema is not None else None,
                rank_rng_states=rank_states,
                extra_state={"scaler": self.scaler.state_dict()},
                keep=self.config.keep,
                save_model_fn=self.save_model_fn,
            )
        barrier(distributed)

    def train(self, batches: Iterable, step_loss: StepLoss, validate: Validate | None = None) -> None:
        """5. The loop over steps start_step .. config.steps - 1, one batch each.

        batches: exactly one batch a step, in step order. step_loss: the forward pass of one step (the
        trainer's loss, under autocast where it wants it). validate: run on rank 0 every --val-every steps
        and at the last step; its metrics are logged and kept in `last_validation`.
        """
        config, distributed = self.config, self.distributed
        self.started = time.perf_counter()
        steps = range(self.start_step, config.steps)
        for step, batch in zip(steps, batches, strict=True):
            for group in self.optimizer.param_groups:
                group["lr"] = common.learning_rate(step, config.lr, config.warmup)
            # 5a. forward (the trainer's)
            loss, terms = step_loss(batch, step)
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"step {step}: loss is {float(loss.detach())}; lower --lr or use --precision fp32"
                )
            # 5b. update
            grad_norm = common.optimizer_step(loss, self.model, self.optimizer, self.scaler, config.grad_clip)
            if self.ema is not None:
                self.ema.update(self.model, step)  # step: optimizer steps before this one (resumes exactly)
            done = self.step = step + 1
            # 5c. log, validate, save
            self.losses.append(float(loss.detach()))
            mean_loss = float(all_reduce_mean(loss, distributed))
            self.logger.advance(1, mean_loss)
            if done % config.log_every == 0 or done == config.steps:
                self.logger.log(
                    done,
                    {
                        "loss": mean_loss,
                        **{name: float(term.detach()) for name, term in terms.items()},
                        "lr": self.optimizer.param_groups[0]["lr"],
                        "grad_norm": float(grad_norm),
                    },
                )
            if validate and distributed.is_main and config.val_every:
                if done % config.val_every == 0 or done == config.steps:
                    self.last_validation = validate(done)
                    self.logger.log(done, self.last_validation)
            if (config.save_every and done % config.save_every == 0) or done == config.steps:
                self.save(done)

    def finish(self, final_model: nn.Module, message: str) -> None:
        """6. Rank 0 writes `final_model` as RUN/final (atomically) and says `message`; the logger closes."""
        if self.is_main:
            train_state.save_final_model(final_model, self.out / "final", save_model_fn=self.save_model_fn)
            self.logger.message(message)
        self.logger.close()
