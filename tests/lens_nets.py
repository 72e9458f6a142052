"""Small networks with known answers for the lens tests (import as ``from lens_nets import ...``)."""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.vgg import VGG, make_layers

import diamond_cutter as dc

RED, BLUE = (1.0, 0.0, 0.0), (0.0, 0.0, 1.0)


def vgg_style(classes: int = 10) -> nn.Module:
    """A torchvision VGG with few channels and a small head (random weights)."""
    torch.manual_seed(0)
    net = VGG(make_layers([8, "M", 16, "M", 16], batch_norm=True), num_classes=classes)
    net.classifier = nn.Sequential(nn.Linear(16 * 49, 32), nn.ReLU(), nn.Linear(32, classes))
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    return net.eval()


def wired_net() -> dc.Model:
    """Colour detectors (red, green, blue) at layer ``"3"``; class ``blue`` reads only channel 2.

    Classes: 0 ``blue`` ← channel 2, 1 ``red`` ← channel 0, 2 ``green`` ← channel 1.
    """
    net = nn.Sequential(nn.Conv2d(3, 3, 1), nn.ReLU(), nn.Conv2d(3, 3, 1), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 3))
    with torch.no_grad():
        net[0].weight.copy_((2 * torch.eye(3) - 1).view(3, 3, 1, 1))
        net[0].bias.fill_(-0.2)
        net[2].weight.copy_(torch.eye(3).view(3, 3, 1, 1))
        net[2].bias.zero_()
        net[6].weight.copy_(torch.tensor([[0.0, 0, 1], [1, 0, 0], [0, 1, 0]]))
        net[6].bias.zero_()
    return dc.load_model(net.eval(), input_size=(3, 32, 32), mean=(0.0,), std=(1.0,), labels=["blue", "red", "green"])


def gated_net(labels: tuple[str, str] = ("red", "other")) -> dc.Model:
    """Channel 0 of layer ``"3"`` fires on red *or* blue, but class ``red`` sees it only where blue is absent.

    Layer ``"3"`` holds [relu(red + blue), relu(blue)]; the class reads relu(ch0 − 2·ch1),
    so blue patches excite channel 0 without adding anything to the class.
    """
    net = nn.Sequential(nn.Conv2d(3, 2, 1), nn.ReLU(), nn.Conv2d(2, 2, 1), nn.ReLU(), nn.Conv2d(2, 1, 1), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1, 2))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, -1, -1], [-1, -1, 1]]).view(2, 3, 1, 1))  # red, blue
        net[0].bias.fill_(-0.1)
        net[2].weight.copy_(torch.tensor([[1.0, 1], [0, 1]]).view(2, 2, 1, 1))
        net[2].bias.zero_()
        net[4].weight.copy_(torch.tensor([[1.0, -2]]).view(1, 2, 1, 1))
        net[4].bias.zero_()
        net[8].weight.copy_(torch.tensor([[1.0], [-1.0]]))
        net[8].bias.zero_()
    return dc.load_model(net.eval(), input_size=(3, 32, 32), mean=(0.0,), std=(1.0,), labels=list(labels))


def square(
    colour: tuple[float, float, float], top: int, left: int, side: int = 8, strength: float = 1.0, size: int = 32
) -> torch.Tensor:
    """A black 3×size×size image with one coloured square."""
    img = torch.zeros(3, size, size)
    img[:, top : top + side, left : left + side] = torch.tensor(colour).view(3, 1, 1) * strength
    return img
