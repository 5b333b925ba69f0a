"""The one training loop of the neural detectors: Adam, epochs, a progress bar, early stopping.

Each detector hands `fit_network` the network and a function that yields one loss per
optimisation step of an epoch (its own batching, sampling and loss); the loop does the rest
the same way for all of them:

    result = fit_network(network, lambda epoch: (loss(batch) for batch in batches(epoch)),
                         epochs=50, learning_rate=1e-3, validation=lambda: float(loss(val)),
                         patience=10, progress=progress, desc="vae: epochs")

With `validation`, the weights of the epoch with the lowest validation loss are kept and
training stops after `patience` epochs without improvement; `validation` may return None
(no validation data) to skip the check.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable


class EarlyStopping:
    """Early stopping for a torch network: keeps the weights of the epoch with the lowest
    validation loss, and says when `patience` epochs in a row have not lowered it by `min_delta`.

        stopping = EarlyStopping(network, patience)
        for epoch in ...:
            ...train...
            if stopping.step(validation_loss):
                break
        stopping.restore()  # the best epoch's weights
    """

    def __init__(self, network: Any, patience: int, min_delta: float = 1e-6) -> None:
        self.network, self.patience, self.min_delta = network, patience, min_delta
        self.best, self.best_state, self.waited = float("inf"), None, 0

    def step(self, loss: float) -> bool:
        """Record one epoch's validation loss; True when training should stop."""
        if loss < self.best - self.min_delta:
            self.best, self.waited = loss, 0
            self.best_state = {k: v.detach().clone() for k, v in self.network.state_dict().items()}
            return False
        self.waited += 1
        return self.waited >= self.patience

    def restore(self) -> None:
        """Load the best epoch's weights, if any epoch was recorded."""
        if self.best_state is not None:
            self.network.load_state_dict(self.best_state)


@dataclass
class FitResult:
    epochs: int = 0  # epochs run (fewer than asked when early stopping ended training)
    losses: list[float] = field(default_factory=list)  # mean training loss per epoch
    validation: list[float] = field(default_factory=list)  # validation loss per epoch
    best: float | None = None  # the lowest validation loss, whose weights were kept


def fit_network(network: Any, step_losses: Callable[[int], Iterable[Any]], *, epochs: int, learning_rate: float,
                weight_decay: float = 0.0, parameters: Iterable[Any] | None = None,
                validation: Callable[[], float | None] | None = None, patience: int = 10, min_delta: float = 1e-6,
                progress: bool = False, desc: str = "epochs") -> FitResult:
    """Train `network` (all of `parameters`, by default its own) with Adam; see the module doc."""
    import torch
    from tqdm.auto import tqdm

    optimizer = torch.optim.Adam(list(parameters) if parameters is not None else network.parameters(),
                                 lr=learning_rate, weight_decay=weight_decay)
    stopping = EarlyStopping(network, patience, min_delta) if validation is not None else None
    result = FitResult()
    bar = tqdm(range(1, epochs + 1), desc=desc, unit="epoch", disable=not progress, leave=False)
    for epoch in bar:
        network.train()
        total, steps = 0.0, 0
        for loss in step_losses(epoch):
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total, steps = total + float(loss.detach()), steps + 1
        result.epochs = epoch
        result.losses.append(total / max(steps, 1))
        if stopping is None:
            bar.set_postfix(loss=f"{result.losses[-1]:.4f}")
            continue
        network.eval()
        with torch.no_grad():
            value = validation()
        if value is None:
            continue
        result.validation.append(float(value))
        bar.set_postfix(val_loss=f"{value:.4f}")
        if stopping.step(float(value)):
            break
    if stopping is not None:
        stopping.restore()
        result.best = stopping.best if stopping.best_state is not None else None
    network.eval()
    return result
