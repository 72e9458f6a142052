"""Layer-wise relevance propagation through zennit's rules, composites and canonizers.

zennit is the well-kept LRP library: its canonizers merge BatchNorm into the
preceding convolution and rewrite torchvision ResNet blocks so the residual
addition distributes relevance correctly (captum's LRP returns garbage on an
unmodified ResNet). zennit works by registering hooks and temporarily changing
parameters, so it runs on a private copy of the network: the user's model is
never touched, also when zennit raises.

The relevance at the input is returned as an N×3×H×W map; with conserving
rules it sums to the target logit up to what biases and stabilisers absorb.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torchvision.models import VGG, ResNet
from zennit import composites, rules
from zennit.attribution import Gradient
from zennit.canonizers import Canonizer, SequentialMergeBatchNorm
from zennit.torchvision import ResNetCanonizer, VGGCanonizer
from zennit.types import Convolution, Linear

from ..errors import DiamondCutterError, UnknownNameError
from ..model import Model
from ..targets import Selector
from .base import Method
from .common import chunks

#: Single rules applied to every convolution and linear layer (ReLUs pass, BatchNorm is merged or passed).
RULES: dict[str, Callable[[], Any]] = {
    "epsilon": lambda: rules.Epsilon(epsilon=1e-6),
    "gamma": lambda: rules.Gamma(gamma=0.25),
    "alpha_beta": lambda: rules.AlphaBeta(alpha=2.0, beta=1.0),
}
#: zennit's composites: different rules for the first, convolutional and dense layers.
COMPOSITES = (
    "epsilon_plus",
    "epsilon_plus_flat",
    "epsilon_alpha2_beta1",
    "epsilon_alpha2_beta1_flat",
    "epsilon_gamma_box",
)
CANONIZERS = ("auto", "resnet", "vgg", "merge_batchnorm", "none")


class _Logits(nn.Module):
    """The network with its logits picked from tuple/dict outputs (zennit needs a tensor out)."""

    def __init__(self, module: nn.Module, output: Callable[[Any], torch.Tensor]):
        super().__init__()
        self.module, self.output = module, output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output(self.module(x))


class LRP(Method):
    """LRP with ``rule`` (``epsilon``, ``gamma``, ``alpha_beta``) or a zennit composite name.

    ``canonizer`` is ``"auto"`` (the ResNet canonizer for torchvision ResNets,
    the VGG canonizer for torchvision VGGs, BatchNorm merging otherwise),
    ``"resnet"``, ``"vgg"``, ``"merge_batchnorm"`` or ``"none"``.
    """

    name = "lrp"

    def __init__(
        self, model: Model, *, rule: str = "epsilon_plus_flat", canonizer: str = "auto", batch_size: int | None = None
    ):
        super().__init__(model, batch_size=batch_size)
        if rule not in RULES and rule not in COMPOSITES:
            raise UnknownNameError("LRP rule", rule, [*RULES, *COMPOSITES])
        if canonizer not in CANONIZERS:
            raise UnknownNameError("LRP canonizer", canonizer, CANONIZERS)
        self.rule, self.canonizer = rule, canonizer

    def canonizers(self) -> list[Canonizer]:
        kind = self.canonizer
        if kind == "auto":
            kind = (
                "resnet"
                if isinstance(self.model.module, ResNet)
                else "vgg"
                if isinstance(self.model.module, VGG)
                else "merge_batchnorm"
            )
        return {
            "resnet": [ResNetCanonizer()],
            "vgg": [VGGCanonizer()],
            "merge_batchnorm": [SequentialMergeBatchNorm()],
            "none": [],
        }[kind]

    def composite(self, x: torch.Tensor) -> composites.Composite:
        canonizers = self.canonizers()
        if self.rule in RULES:
            layer_map = composites.layer_map_base() + [((Convolution, Linear), RULES[self.rule]())]
            return composites.LayerMapComposite(layer_map=layer_map, canonizers=canonizers)
        if self.rule == "epsilon_gamma_box":
            low = self.model.normalize(torch.zeros_like(x))
            high = self.model.normalize(torch.ones_like(x))
            return composites.EpsilonGammaBox(low=low, high=high, canonizers=canonizers)
        cls = {
            "epsilon_plus": composites.EpsilonPlus,
            "epsilon_plus_flat": composites.EpsilonPlusFlat,
            "epsilon_alpha2_beta1": composites.EpsilonAlpha2Beta1,
            "epsilon_alpha2_beta1_flat": composites.EpsilonAlpha2Beta1Flat,
        }[self.rule]
        return cls(canonizers=canonizers)

    def compute(self, x: torch.Tensor, selector: Selector) -> torch.Tensor:
        if selector.fn is not None:
            raise DiamondCutterError("LRP needs class targets (an index, a name, 'topK' or a contrast), not a callable")
        selector.resolve_with(x, self.batch_size)
        network = _Logits(copy.deepcopy(self.model.module), self.model.output).eval()
        rows = torch.arange(len(x))
        out = []
        for s in chunks(len(x), self.batch_size):
            with Gradient(model=network, composite=self.composite(x[s])) as attributor:
                _, relevance = attributor(x[s].detach().requires_grad_(True), self._seed(selector, rows[s]))
            out.append(relevance.detach())
        return torch.cat(out)

    @staticmethod
    def _seed(selector: Selector, rows: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        """The output relevance: the target score, placed on the logits it came from."""
        def seed(logits: torch.Tensor) -> torch.Tensor:
            return logits * selector.weights(logits, rows)

        return seed
