from __future__ import annotations

import torch

from nas.elastic import ElasticActQuant
from nas.elastic.quantization import fake_quant_activation, fake_quant_weight, round_ste


def test_round_ste_value_is_exact_and_gradient_is_identity() -> None:
    x = torch.linspace(-3.7, 3.7, 101, requires_grad=True)
    y = round_ste(x)
    assert torch.equal(y.detach(), torch.round(x.detach()))
    y.sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))


def test_weight_quantization_levels_and_error_shrink_with_bits() -> None:
    w = torch.randn(8, 16, 3, 3)
    errors = {}
    for bits in (2, 4, 8):
        q = fake_quant_weight(w, bits)
        levels = max(len(torch.unique(q[o])) for o in range(8))
        assert levels <= 2**bits - 1
        errors[bits] = (q - w).abs().max().item()
    assert errors[2] > errors[4] > errors[8] > 0
    assert torch.equal(fake_quant_weight(w, 32), w)


def test_activation_quantizer_clips_and_learns_its_scale() -> None:
    quant = ElasticActQuant((4, 8, 32), init_range=2.0)
    x = torch.linspace(-5, 5, 1000)
    y = quant(x, bits=8)
    assert y.max() <= 2.0 + 1e-5 and y.min() >= -2.0 - 1e-5
    assert torch.equal(quant(x, bits=32), x)
    quant.train()
    loss = (quant(x, bits=4) - x).square().mean()
    loss.backward()
    assert quant.scales["4"].grad is not None and quant.scales["4"].grad.abs() > 0
    assert quant.scales["8"].grad is None
    exported = quant.export(4)
    assert torch.equal(exported(x), fake_quant_activation(x, quant.scale(4).detach(), 4))
