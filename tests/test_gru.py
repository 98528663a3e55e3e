"""The GRU baseline: torch's multi-layer GRU within an episode, a fresh state at every episode start, and a runner."""

import math

import torch

import memory_models
from runners import train_lm
from tests.test_lm_runner import arguments

D_MODEL = 16


def test_within_an_episode_it_is_torchs_stacked_gru():
    torch.manual_seed(0)
    model = memory_models.build("gru", d_model=D_MODEL, n_layers=2).eval()
    reference = torch.nn.GRU(D_MODEL, D_MODEL, num_layers=2, batch_first=True)
    with torch.no_grad():
        for layer, cell in enumerate(model.cells):
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(reference, f"{name}_l{layer}").copy_(getattr(cell, name))
    x, first = torch.randn(3, 9, D_MODEL), torch.zeros(3, 9, dtype=torch.bool)
    first[:, 0] = True
    out, state, record = model(x, model.initial_state(3, "cpu"), first)
    expected, hidden = reference(x)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(state.hidden, hidden.transpose(0, 1))  # B x n_layers x D
    assert record.aux_loss == 0 and record.spans is None


def test_an_episode_start_restarts_from_the_empty_state():
    torch.manual_seed(0)
    model = memory_models.build("gru", d_model=D_MODEL, n_layers=2).eval()
    x, first = torch.randn(2, 10, D_MODEL), torch.zeros(2, 10, dtype=torch.bool)
    first[:, 0] = True
    first[0, 6] = True
    out, _, _ = model(x, model.initial_state(2, "cpu"), first)
    alone, _, _ = model(x[:1, 6:], model.initial_state(1, "cpu"), first[:1, 6:])
    torch.testing.assert_close(out[:1, 6:], alone)
    assert not torch.allclose(out[1, 6:], model(x[1:, 6:], model.initial_state(1, "cpu"), first[:1, 6:])[0][0])


def test_the_sequence_runner_trains_it(tmp_path):
    summary = train_lm.main(arguments(tmp_path, "copy", "gru"))
    assert summary["step"] == 2 and math.isfinite(summary["test"]["loss"])
