"""The fast paths of graph-model training compute what the plain torch / PyG code computes."""

from __future__ import annotations

import subprocess
import sys

import torch
from torch_geometric.utils import to_undirected

from siem_gad.detectors.gcn_torch import GcnEncoder
from siem_gad.detectors.pair_logits import pair_logits
from siem_gad.detectors.sparse_gcn import normalized_adjacency
from siem_gad.memory import keep_freed_memory


def test_pair_logits_and_their_gradient_equal_torchs_gather_and_sum():
    generator = torch.Generator().manual_seed(3)
    z = torch.randn(500, 16, generator=generator, requires_grad=True)
    pairs = torch.randint(0, 500, (2, 4000), generator=generator)
    pairs[:, :50] = pairs[0, :50]  # self-pairs: both ends add into the same row
    weights = torch.randn(4000, generator=generator)

    (pair_logits(z, pairs) * weights).sum().backward()
    fast_values, fast_grad = pair_logits(z, pairs).detach(), z.grad.clone()
    z.grad = None
    reference = (z.index_select(0, pairs[0]) * z.index_select(0, pairs[1])).sum(-1)
    (reference * weights).sum().backward()

    torch.testing.assert_close(fast_values, reference.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fast_grad, z.grad, rtol=1e-5, atol=1e-5)


def test_the_encoder_is_the_two_gcn_layers_of_pyg():
    torch.manual_seed(1)
    directed = torch.randint(0, 300, (2, 1200))
    edge_index = to_undirected(directed, num_nodes=300)
    x = torch.randn(300, 9)
    encoder = GcnEncoder(9, 32, 16)

    ours = encoder(x, normalized_adjacency(edge_index, 300))
    pyg = encoder.conv2(encoder.act(encoder.conv1(x, edge_index)), edge_index)
    torch.testing.assert_close(ours, pyg, rtol=1e-5, atol=1e-5)


def test_freed_memory_is_kept_unless_the_operator_set_mallocs_thresholds():
    assert keep_freed_memory() is True  # glibc, as on every supported Linux
    code = "from siem_gad.memory import keep_freed_memory; print(keep_freed_memory())"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            env={"MALLOC_MMAP_THRESHOLD_": "1048576", "PATH": "/usr/bin:/bin"})
    assert result.stdout.strip() == "False"
