"""Models the lessons train: a CIFAR-style ResNet-18 and the SimCLR projection head."""

from __future__ import annotations

import torch
from torch import nn


def _check_positive_int(argument: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{argument} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{argument} must be >= 1, got {value}")


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (He et al., 2016)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_channels != out_channels:  # 1x1 projection when the shape changes
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual block output."""
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """A ResNet whose forward returns pooled features (B, feature_dim), or logits with a classifier."""

    def __init__(
        self,
        blocks: tuple[int, ...],
        *,
        in_channels: int = 3,
        width: int = 64,
        num_classes: int | None = None,
    ) -> None:
        super().__init__()
        _check_positive_int("in_channels", in_channels)
        _check_positive_int("width", width)
        if num_classes is not None:
            _check_positive_int("num_classes", num_classes)
        # CIFAR stem: one 3x3 stride-1 convolution and no max-pool, so 32x32 (or 8x8) inputs keep
        # their resolution into the first stage instead of being cut 4x as the ImageNet stem does.
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, 1, 1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        )
        stages, channels = [], width
        for i, n in enumerate(blocks):
            out = width * 2**i
            stride = 1 if i == 0 else 2
            layers = [BasicBlock(channels, out, stride)]
            layers += [BasicBlock(out, out, 1) for _ in range(n - 1)]
            stages.append(nn.Sequential(*layers))
            channels = out
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim = channels
        self.fc = nn.Linear(channels, num_classes) if num_classes is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Features (B, feature_dim), or logits (B, num_classes) when built with a classifier."""
        if x.ndim != 4:
            raise ValueError(f"x must be a (B, C, H, W) batch, got shape {tuple(x.shape)}")
        h = self.pool(self.stages(self.stem(x))).flatten(1)
        return self.fc(h)


def resnet18_cifar(
    *, in_channels: int = 3, width: int = 64, num_classes: int | None = None
) -> ResNet:
    """ResNet-18 with a 3x3 stem and no max-pool; `width` channels in the first stage (64 = standard)."""
    return ResNet((2, 2, 2, 2), in_channels=in_channels, width=width, num_classes=num_classes)


class ProjectionHead(nn.Module):
    """SimCLR's head g: Linear -> BatchNorm -> ReLU -> Linear, mapping features h to z for the loss."""

    def __init__(self, in_dim: int, hidden_dim: int = 2048, out_dim: int = 128) -> None:
        super().__init__()
        for name, value in (("in_dim", in_dim), ("hidden_dim", hidden_dim), ("out_dim", out_dim)):
            _check_positive_int(name, value)
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden_dim, bias=False),  # BatchNorm follows: a bias would cancel
            nn.BatchNorm1d(hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, out_dim),
        )

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """Projections z (B, out_dim) of features h (B, in_dim)."""
        if h.ndim != 2:
            raise ValueError(
                f"h must be a (B, in_dim) batch of features, got shape {tuple(h.shape)}"
            )
        return self.net(h)
