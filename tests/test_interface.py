"""The registry and the generic behaviour of memory states."""

import dataclasses

import pytest
import torch

import memory_models
from memory_models.base import MemoryState


def test_unknown_model_lists_valid_names():
    with pytest.raises(ValueError, match="valid names: none, lstm"):
        memory_models.build("no_such_model")


def test_unknown_option_lists_valid_options():
    with pytest.raises(ValueError, match="valid options: d_model, n_layers"):
        memory_models.build("lstm", mem_slots=3)


@dataclasses.dataclass
class _ToyState(MemoryState):
    per_layer: list
    steps: int


def test_state_detach_rows_to_and_tensors_reach_nested_tensors():
    grad = torch.ones(4, 2, requires_grad=True)
    state = _ToyState(per_layer=[grad * 2, torch.arange(4)], steps=7)
    picked = state.rows(torch.tensor([3, 1]))
    assert picked.per_layer[1].tolist() == [3, 1] and picked.steps == 7
    assert state.per_layer[0].requires_grad and not state.detach().per_layer[0].requires_grad
    assert state.to("cpu").per_layer[1].device.type == "cpu"
    assert [t.shape for t in state.tensors()] == [(4, 2), (4,)]  # nested tensors in field order; plain values skipped
