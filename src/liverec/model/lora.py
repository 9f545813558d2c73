"""LoRA (Hu et al., 2021): low-rank updates W + (alpha / r) B A of frozen Linear layers.

Legend: I in features, O out features, r rank. B starts at zero, so a freshly wrapped model
computes exactly what the base model computes. A wrapped layer keeps the base layer's parameter
names (``weight``, ``bias``), so weights of a model without LoRA load into one with it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class LoRALinear(nn.Linear):
    """A Linear layer plus a trainable low-rank update.

    Args:
        base: the layer to wrap (its weight and bias are shared, not copied).
        rank: r, the rank of the update.
        alpha: scaling; the update is multiplied by alpha / r.
    """

    def __init__(self, base: nn.Linear, rank: int, alpha: float) -> None:
        nn.Module.__init__(self)
        self.in_features, self.out_features = base.in_features, base.out_features
        self.weight = base.weight  # (O, I)
        self.bias = base.bias
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features))  # (r, I)
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank))  # (O, r)
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.scale = alpha / rank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        base = F.linear(x, self.weight, self.bias)  # (..., O)
        return base + F.linear(F.linear(x, self.lora_A), self.lora_B) * self.scale

    def reference(self, x: torch.Tensor) -> torch.Tensor:
        """The same map with the update merged into one weight matrix (reference path)."""
        return F.linear(x, self.weight + self.scale * self.lora_B @ self.lora_A, self.bias)


def add_lora(model: nn.Module, rank: int, alpha: float,
             scopes: tuple[str, ...] = ("blocks", "items")) -> int:
    """Wrap every nn.Linear under the named child modules with :class:`LoRALinear`, in place.

    Covers attention qkv/proj and FFN layers of the transformer blocks and the item adaptor.

    Returns:
        The number of wrapped layers.
    """
    if rank <= 0:
        raise ValueError(f"lora_rank must be >= 1, got {rank}")
    unknown = sorted(set(scopes) - {"blocks", "items"})
    if unknown or not scopes:
        raise ValueError(f"lora_scopes must name 'blocks' and/or 'items', got {list(scopes)}")
    wrapped = 0
    for scope in scopes:
        root = getattr(model, scope, None)
        if root is None:
            continue
        for parent in list(root.modules()):
            for name, child in list(parent.named_children()):
                if isinstance(child, nn.Linear) and not isinstance(child, LoRALinear):
                    setattr(parent, name, LoRALinear(child, rank, alpha))
                    wrapped += 1
    return wrapped


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(total, trainable) parameter counts (buffers such as frozen text vectors excluded)."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return total, trainable
