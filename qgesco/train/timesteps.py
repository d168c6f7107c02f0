"""Which timesteps a training batch sees: uniform, or importance-sampled by loss.

``LossSecondMomentSampler`` is Improved DDPM's sampler: once every timestep has a history
of losses, t is drawn with probability ∝ sqrt(E[loss_t²]) and the loss is re-weighted by
1/(T p_t), which lowers the variance of the VLB term. Its history is part of the training
state so a resumed run draws exactly the same timesteps.
"""

from __future__ import annotations

import torch


class UniformSampler:
    def __init__(self, num_timesteps: int):
        self.num_timesteps = num_timesteps

    def weights(self) -> torch.Tensor:
        return torch.ones(self.num_timesteps, dtype=torch.float64)

    def sample(self, batch: int, generator: torch.Generator, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Timesteps (batch,) and the importance weights that keep the loss unbiased."""
        w = self.weights()
        p = w / w.sum()
        t = torch.multinomial(
            p.to(generator.device if generator is not None else device, torch.float32),
            batch,
            replacement=True,
            generator=generator,
        )
        weights = 1.0 / (len(p) * p[t.cpu()])
        return t.to(device), weights.float().to(device)

    def update(self, t: torch.Tensor, losses: torch.Tensor) -> None:
        """Uniform sampling learns nothing from the losses."""

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        pass


class LossSecondMomentSampler(UniformSampler):
    def __init__(self, num_timesteps: int, history: int = 10, uniform_prob: float = 0.001):
        super().__init__(num_timesteps)
        self.uniform_prob = uniform_prob
        self.history = torch.zeros(num_timesteps, history, dtype=torch.float64)
        self.counts = torch.zeros(num_timesteps, dtype=torch.long)

    def weights(self) -> torch.Tensor:
        if (self.counts < self.history.shape[1]).any():
            return super().weights()
        w = torch.sqrt((self.history**2).mean(dim=1))
        w = w / w.sum()
        return w * (1 - self.uniform_prob) + self.uniform_prob / self.num_timesteps

    def update(self, t: torch.Tensor, losses: torch.Tensor) -> None:
        for ti, loss in zip(t.tolist(), losses.detach().double().cpu().tolist()):
            if self.counts[ti] == self.history.shape[1]:
                self.history[ti] = torch.roll(self.history[ti], -1)
                self.history[ti, -1] = loss
            else:
                self.history[ti, self.counts[ti]] = loss
                self.counts[ti] += 1

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"history": self.history.clone(), "counts": self.counts.clone()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.history.copy_(state["history"])
        self.counts.copy_(state["counts"])


def make_schedule_sampler(name: str, num_timesteps: int) -> UniformSampler:
    if name == "uniform":
        return UniformSampler(num_timesteps)
    if name == "loss-second-moment":
        return LossSecondMomentSampler(num_timesteps)
    raise ValueError(f"unknown schedule sampler {name!r}; use uniform or loss-second-moment")
