"""The one training loop (detectors/training.py) that every neural detector uses."""

from __future__ import annotations

import torch

from siem_gad.detectors.training import fit_network


def test_fit_network_keeps_the_best_validation_epoch_and_stops_after_patience():
    torch.manual_seed(0)
    network = torch.nn.Linear(1, 1)
    x = torch.linspace(-1, 1, 32)[:, None]
    y = 3 * x
    seen = []

    def validation():  # improves for 5 epochs, then worsens: the 5th epoch's weights are kept
        seen.append({k: v.clone() for k, v in network.state_dict().items()})
        return [5.0, 4.0, 3.0, 2.0, 1.0][len(seen) - 1] if len(seen) <= 5 else 1.0 + len(seen)

    result = fit_network(network, lambda epoch: [((network(x) - y) ** 2).mean()], epochs=100, learning_rate=0.1,
                         validation=validation, patience=3)
    assert result.epochs == 8 and result.best == 1.0 and len(result.losses) == 8
    assert result.losses[0] > result.losses[-1]
    assert all(torch.equal(network.state_dict()[k], seen[4][k]) for k in seen[4])
    assert not network.training


def test_fit_network_without_validation_runs_every_epoch_and_reports_losses():
    torch.manual_seed(0)
    network = torch.nn.Linear(2, 1)
    batches = [torch.randn(8, 2) for _ in range(3)]
    steps = []

    def step_losses(epoch):
        for batch in batches:
            steps.append(epoch)
            yield network(batch).pow(2).mean()

    result = fit_network(network, step_losses, epochs=4, learning_rate=0.01, validation=lambda: None)
    assert result.epochs == 4 and steps == [1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4]
    assert result.best is None and result.validation == []
