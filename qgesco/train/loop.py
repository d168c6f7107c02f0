"""Noise-aware GESCO training on one CPU or many GPUs (torchrun + DistributedDataParallel).

Each map goes through the same channel and receiver cleanup that sampling will use, at a
PSNR drawn per sample, and is dropped to zeros with probability ``cfg_drop`` so the model
also learns the unconditional score for classifier-free guidance.

Reproducibility: the randomness of step k (timesteps, noise, channel noise, map dropout,
dropout) comes from a generator seeded by (seed, k, rank), and the data order from
(seed, epoch); a checkpoint therefore only needs the weights, the EMA, the optimizer, the
step and the timestep sampler's history to continue bit-identically.
"""

from __future__ import annotations

import copy
import signal
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from .. import validate
from ..channel import AWGN, encode, transmit
from ..data import make_loader, open_dataset
from ..diffusion import GaussianDiffusion, create_diffusion, make_sampler
from ..distributed import closing_process_group, setup_distributed
from ..fileio import tensors_sha256
from ..models import UNetModel
from ..models.checkpoint import create_model, load_float_model
from ..models.presets import PRESETS
from .checkpoints import CheckpointDir
from .config import TrainConfig, check_values
from .report import MetricsLog, save_sample_grid
from .timesteps import make_schedule_sampler

#: Fields a resumed run may change; any other difference would break exact continuation. ``out`` is
#: where the checkpoint was found, however spelled (``./run/``, an absolute path, a moved folder).
RESUMABLE_CHANGES = {
    "out",
    "steps",
    "log_every",
    "save_every",
    "keep_checkpoints",
    "sample_every",
    "num_workers",
    "threads",
    "device",
}


def step_seed(seed: int, step: int, rank: int) -> int:
    return int(np.random.SeedSequence([seed, step, rank]).generate_state(1)[0])


#: Divergence rule: one optimizer step may not grow the norm of all trainable weights more than this
#: factor. Adam moves every weight by about lr per step, so only a learning rate near the weights' own
#: size (far above any that trains) trips it; the saved weights must also stay within
#: :data:`qgesco.validate.MAX_ABS_WEIGHT` (docs/training.md).
MAX_NORM_GROWTH = 2.0


class Diverged(RuntimeError):
    """A non-finite loss or gradient, or insane weights: training stopped without saving the step."""


class Trainer:
    """Builds everything from a :class:`TrainConfig`, validating it first, then :meth:`run`."""

    def __init__(self, train_config: TrainConfig, resume: bool = False, log: Callable[[str], None] = print):
        check_values(train_config)
        self.train_config, self.log = train_config, log
        if train_config.threads:
            torch.set_num_threads(train_config.threads)
        self.env = setup_distributed(train_config.device)
        self.ckpt = CheckpointDir(Path(train_config.out))
        if resume and self.ckpt.latest() is None:
            raise FileNotFoundError(f"--resume: no checkpoint in {train_config.out}/ckpt; start without --resume")
        if not resume and self.ckpt.latest() is not None:
            raise ValueError(
                f"{train_config.out} already holds a training run; pass --resume to continue it or choose another --out"
            )

        self.model = self._build_model()
        hw = self.model.config.image_hw
        self.dataset = open_dataset(
            train_config.data, root=train_config.data_root, image_hw=hw, train=True, seed=train_config.seed
        )
        c = self.model.config
        if self.dataset.num_classes != c.num_classes:
            raise ValueError(
                f"{train_config.data} has {self.dataset.num_classes} classes but model {train_config.model} "
                f"expects {c.num_classes}; "
                "pick a model preset made for this dataset"
            )
        if not c.no_instance and not self.dataset.has_instances:
            raise ValueError(
                f"model {train_config.model} expects an instance-edge channel but {train_config.data} has no "
                "instance maps; "
                "use a model with no_instance=True"
            )
        per_epoch = len(self.dataset) // (train_config.batch_size * self.env.world_size)
        if per_epoch == 0:
            raise ValueError(
                f"batch_size {train_config.batch_size} x {self.env.world_size} processes exceeds the "
                f"{len(self.dataset)} training scenes"
            )
        self.steps_per_epoch = per_epoch

        self.model.to(self.env.device)
        if train_config.channels_last:
            self.model.to(memory_format=torch.channels_last)
        # The encoder's SPADE norms are never called (published architecture): keep them out
        # of the optimizer, and out of DDP's gradient reduction.
        for block in self.model.modules():
            if hasattr(block, "spade_norm"):
                block.spade_norm.requires_grad_(False)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.ema = copy.deepcopy(self.model).requires_grad_(False).eval()
        self.opt = torch.optim.AdamW(self.params, lr=train_config.lr, weight_decay=train_config.weight_decay)
        self.net = self.model
        if self.env.world_size > 1:
            self.net = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.env.device.index] if self.env.device.type == "cuda" else None
            )
        self.diffusion: GaussianDiffusion = create_diffusion(
            train_config.diffusion_steps, train_config.noise_schedule, c.learn_sigma
        )
        self.schedule = make_schedule_sampler(train_config.schedule_sampler, train_config.diffusion_steps)
        self.step = 0
        if resume:
            self._resume()
        self.metrics = MetricsLog(Path(train_config.out), keep_until=self.step) if self.env.is_main else None
        self.stop_requested = False

    # --- setup ---------------------------------------------------------------------------
    def _build_model(self) -> UNetModel:
        train_config = self.train_config
        if train_config.model in PRESETS and not Path(train_config.model).is_file():
            model = create_model(train_config.model, seed=train_config.seed)
        else:
            model = load_float_model(train_config.model).train()
        wanted = {
            "image_hw": tuple(train_config.image_hw) if train_config.image_hw is not None else None,
            "norm_groups": train_config.norm_groups,
        }
        changes = {k: v for k, v in wanted.items() if v is not None and v != getattr(model.config, k)}
        if changes:  # neither changes a parameter's shape: the weights carry over
            state = model.state_dict()
            model = UNetModel(model.config.replace(**changes))
            model.load_state_dict(state)
        return model.train()

    def _resume(self) -> None:
        state = self.ckpt.load(self.model, self.ema)
        saved = state["config"]
        changed = sorted(
            k
            for k, v in self.train_config.to_dict().items()
            if k not in RESUMABLE_CHANGES and _norm(saved.get(k)) != _norm(v)
        )
        if changed:
            raise ValueError(
                f"cannot resume with changed setting(s) {changed}: they would not continue the same run; "
                "only these may change: " + ", ".join(sorted(RESUMABLE_CHANGES))
            )
        if state["world_size"] != self.env.world_size:
            raise ValueError(
                f"the run was trained with {state['world_size']} processes; resume it with the same number"
            )
        self.opt.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        self.step = state["step"]
        self.log(f"resumed {self.train_config.out} at step {self.step}")

    # --- one step -----------------------------------------------------------------------
    def condition(self, y: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """The map as the receiver will see it (channel + cleanup), or zeros for guidance dropout."""
        train_config, n, dev = self.train_config, y.shape[0], y.device
        if train_config.noise == "levels":
            levels = torch.tensor(train_config.noise_levels, dtype=torch.float64)
            idx = torch.randint(len(levels), (n,), generator=g, device=dev).cpu()
            channel = AWGN(levels[idx], table=train_config.noise_table)
        elif train_config.noise == "range":
            lo, hi = train_config.psnr_range
            channel = AWGN(
                (lo + (hi - lo) * torch.rand(n, generator=g, device=dev, dtype=torch.float64)).cpu(), table="exact"
            )
        else:
            channel = AWGN(100, table="gesco")
        y = transmit(
            y,
            channel,
            self.model.config.num_classes,
            cleanup=train_config.cleanup,
            compress=train_config.compress,
            generator=g,
        )
        keep = (torch.rand(n, generator=g, device=dev) >= train_config.cfg_drop).to(y.dtype)
        return y * keep[:, None, None, None]

    def encode_batch(self, batch) -> torch.Tensor:
        c = self.model.config
        instance = batch.instance.to(self.env.device) if not c.no_instance else None
        return encode(batch.label.to(self.env.device), c.num_classes, instance)

    def train_step(self, batch) -> dict[str, float]:
        train_config, dev = self.train_config, self.env.device
        seed = step_seed(train_config.seed, self.step, self.env.rank)
        torch.manual_seed(seed)  # model dropout, if any
        g = torch.Generator(device=dev).manual_seed(seed)
        x0 = batch.image.to(dev)
        y = self.condition(self.encode_batch(batch), g)
        t, weights = self.schedule.sample(x0.shape[0], g, dev)
        noise = torch.randn(x0.shape, generator=g, device=dev)
        if train_config.channels_last:
            x0, y, noise = (v.contiguous(memory_format=torch.channels_last) for v in (x0, y, noise))
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda" and train_config.bf16):
            terms = self.diffusion.training_losses(self.net, x0, t, y, noise=noise)
        loss = (terms["loss"].float() * weights).mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(
            self.params, train_config.grad_clip if train_config.grad_clip > 0 else float("inf")
        )
        self._stop_if_diverged(loss, grad_norm)
        lr = (
            train_config.lr * min(1.0, (self.step + 1) / train_config.warmup_steps)
            if train_config.warmup_steps
            else train_config.lr
        )
        for group in self.opt.param_groups:
            group["lr"] = lr
        before = torch.nn.utils.get_total_norm(self.params)
        self.opt.step()
        after = torch.nn.utils.get_total_norm(self.params)
        self._stop_if_diverged(after, grad_norm, "weights")
        if after > MAX_NORM_GROWTH * before:
            self._diverged(
                f"one update grew the weights' norm from {float(before):.3g} to {float(after):.3g} (more than "
                f"{MAX_NORM_GROWTH:g}x: finite, but no longer a sane model)"
            )
        with torch.no_grad():
            for e, p in zip(self.ema.parameters(), self.model.parameters()):
                e.lerp_(p, 1.0 - train_config.ema_rate)
        self._update_schedule(t, terms["loss"])
        self.step += 1
        out = {k: v.detach().float().mean() for k, v in terms.items()}
        out["grad_norm"] = grad_norm.detach()
        if self.env.world_size > 1:
            stacked = torch.stack(list(out.values()))
            dist.all_reduce(stacked)
            out = dict(zip(out, (stacked / self.env.world_size)))
        return {**{k: float(v) for k, v in out.items()}, "lr": lr}

    def _stop_if_diverged(self, loss: torch.Tensor, grad_norm: torch.Tensor, what: str = "loss") -> None:
        """Stop at a NaN/inf loss or gradient, before the optimizer applies it, or at weights an update
        made NaN/inf (every rank agrees); nothing is saved, so the last checkpoint stays the last good step."""
        bad = torch.stack([loss.detach().float(), grad_norm.detach().float().to(loss.device)])
        bad = (~torch.isfinite(bad)).float()
        if self.env.world_size > 1:
            dist.all_reduce(bad, op=dist.ReduceOp.MAX)
        if bad.any():
            self._diverged(f"the {what if bad[0] else 'gradient'} became NaN/inf")

    def _diverged(self, why: str, step: int | None = None) -> None:
        raise Diverged(
            f"training diverged at step {self.step + 1 if step is None else step}: {why}; nothing of this step "
            f"was saved and the last checkpoint (if any) is kept in {self.train_config.out}/ckpt. Lower --lr "
            f"(now {self.train_config.lr:g}) or set --grad-clip > 0 (now {self.train_config.grad_clip:g}), "
            "then --resume or restart"
        )

    def _update_schedule(self, t: torch.Tensor, losses: torch.Tensor) -> None:
        if self.env.world_size > 1 and self.schedule.state_dict():
            ts, ls = (
                [torch.empty_like(t) for _ in range(self.env.world_size)],
                [torch.empty_like(losses) for _ in range(self.env.world_size)],
            )
            dist.all_gather(ts, t)
            dist.all_gather(ls, losses.detach())
            t, losses = torch.cat(ts), torch.cat(ls)
        self.schedule.update(t.cpu(), losses.detach().cpu())

    # --- the loop -----------------------------------------------------------------------
    def batches(self):
        """Batches from the current step on, epoch after epoch, this rank's shard only."""
        train_config, env = self.train_config, self.env
        epoch, skip = divmod(self.step, self.steps_per_epoch)
        while True:
            sampler = torch.utils.data.DistributedSampler(
                self.dataset, env.world_size, env.rank, shuffle=True, seed=train_config.seed, drop_last=True
            )
            sampler.set_epoch(epoch)
            self.dataset.set_epoch(epoch)
            order = list(sampler)[: self.steps_per_epoch * train_config.batch_size][skip * train_config.batch_size :]
            loader = make_loader(
                _Subset(self.dataset, order),
                train_config.batch_size,
                epoch=epoch,
                num_workers=train_config.num_workers,
                drop_last=True,
            )
            yield from loader
            epoch, skip = epoch + 1, 0

    def _stop(self, *_):
        self.stop_requested = True

    def _agree_to_stop(self) -> bool:
        if self.env.world_size == 1:
            return self.stop_requested
        flag = torch.tensor([float(self.stop_requested)], device=self.env.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    def save(self) -> None:
        """Write a checkpoint of this step, refused (:class:`Diverged`) when a weight left the sane range."""
        big = validate.oversized(self.model.state_dict()) + validate.oversized(self.ema.state_dict())
        if big:
            self._diverged(
                f"weights beyond +-{validate.MAX_ABS_WEIGHT:g} (first: {big[0]}), finite but far outside a "
                "trained model's",
                step=self.step,
            )
        if self.env.is_main:
            self.ckpt.save(
                self.step,
                self.model,
                self.ema,
                {
                    "step": self.step,
                    "optimizer": self.opt.state_dict(),
                    "schedule": self.schedule.state_dict(),
                    "config": self.train_config.to_dict(),
                    "world_size": self.env.world_size,
                },
                keep=self.train_config.keep_checkpoints,
            )
            self.metrics.flush()

    def sample_grid(self) -> None:
        train_config = self.train_config
        spec = train_config.sample_data or (
            train_config.data.replace(":train", ":val") if ":train" in train_config.data else train_config.data
        )
        try:
            val = open_dataset(
                spec,
                root=train_config.data_root,
                image_hw=self.model.config.image_hw,
                train=False,
                seed=train_config.seed,
            )
        except (FileNotFoundError, ValueError):
            val = open_dataset(
                train_config.data,
                root=train_config.data_root,
                image_hw=self.model.config.image_hw,
                train=False,
                seed=train_config.seed,
            )
        batch = next(iter(make_loader(val, min(train_config.sample_batch, len(val)))))
        c = self.model.config
        g = torch.Generator(device=self.env.device).manual_seed(train_config.seed)
        y = transmit(
            self.encode_batch(batch), AWGN(100, table="gesco"), c.num_classes, cleanup=train_config.cleanup, generator=g
        )
        x = make_sampler(self.diffusion, train_config.sample_respacing).sample(
            self.ema,
            y,
            guidance=train_config.sample_guidance,
            noise=torch.randn(batch.image.shape, generator=g, device=self.env.device),
        )
        save_sample_grid(
            Path(train_config.out) / "samples" / f"step_{self.step:07d}.png", y, batch.image, x, c.num_classes
        )

    def run(self) -> dict:
        train_config, env = self.train_config, self.env
        handlers = {s: signal.signal(s, self._stop) for s in (signal.SIGINT, signal.SIGTERM)} if _main_thread() else {}
        bar = tqdm(
            total=train_config.steps,
            initial=self.step,
            desc=f"train, threads={torch.get_num_threads()}",
            disable=not env.is_main,
            dynamic_ncols=True,
        )
        t0, done_at_start, last = time.perf_counter(), self.step, {}
        try:
            for batch in self.batches():
                if self.step >= train_config.steps or self._agree_to_stop():
                    break
                last = self.train_step(batch)
                bar.update(1)
                bar.set_postfix(loss=f"{last['loss']:.4f}")
                if env.is_main and (self.step % train_config.log_every == 0 or self.step == train_config.steps):
                    elapsed = time.perf_counter() - t0
                    rate = (self.step - done_at_start) * train_config.batch_size * env.world_size / max(elapsed, 1e-9)
                    self.metrics.append({"step": self.step, **last, "samples_per_s": rate, "elapsed_s": elapsed})
                if self.step % train_config.save_every == 0:
                    self.save()
                if env.is_main and train_config.sample_every and self.step % train_config.sample_every == 0:
                    self.sample_grid()
            self.save()
        finally:
            bar.close()
            for s, h in handlers.items():
                signal.signal(s, h)
        summary = {"step": self.step, "stopped_early": self.step < train_config.steps, "final": last}
        if env.world_size > 1:
            digests = [None] * env.world_size
            dist.all_gather_object(digests, tensors_sha256(self.model.state_dict()))
            summary["rank_param_digests"] = digests
            if len(set(digests)) != 1:
                raise RuntimeError(f"ranks diverged: parameter digests {digests}")
        if env.is_main:
            self.metrics.finish(summary)
        if self.stop_requested:
            self.log(
                f"stopped at step {self.step}; checkpoint saved in {train_config.out}/ckpt (continue with --resume)"
            )
        return summary


class _Subset(torch.utils.data.Dataset):
    """A view of ``dataset`` in a given index order that forwards ``set_epoch``."""

    def __init__(self, dataset, indices: list[int]):
        self.dataset, self.indices = dataset, indices
        self.seed = dataset.seed

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        return self.dataset[self.indices[i]]

    def set_epoch(self, epoch: int) -> None:
        self.dataset.set_epoch(epoch)


def _norm(v):
    return list(v) if isinstance(v, tuple) else v


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def train(train_config: TrainConfig, resume: bool = False) -> dict:
    """Train (or continue training) as configured; returns a summary of the run.

    Under ``torchrun`` the process group this call opened is closed before returning."""
    with closing_process_group():
        return Trainer(train_config, resume=resume).run()
