"""resnet18_cifar and ProjectionHead: shapes, the CIFAR stem, parameter count, bad inputs."""

import pytest
import torch
from torch import nn

from course_utils.models import ProjectionHead, resnet18_cifar


def test_features_and_logits_shapes() -> None:
    torch.manual_seed(0)
    digits = resnet18_cifar(in_channels=1, width=8)
    assert digits.feature_dim == 64  # 8 * 2**3 channels after the last stage
    assert digits(torch.randn(5, 1, 8, 8)).shape == (5, 64)
    cifar = resnet18_cifar(width=16, num_classes=10)
    assert cifar(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_cifar_stem_keeps_the_resolution() -> None:
    model = resnet18_cifar(width=8)
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())
    seen = {}

    def record(name):
        def hook(module, inputs, output) -> None:
            seen[name] = output.shape

        return hook

    model.stem.register_forward_hook(record("stem"))
    model.stages[0].register_forward_hook(record("stage1"))
    model(torch.randn(1, 3, 32, 32))
    assert seen["stem"] == (1, 8, 32, 32)
    assert seen["stage1"] == (1, 8, 32, 32)


def test_parameter_count_matches_torchvision_with_a_3x3_stem() -> None:
    tv = pytest.importorskip("torchvision")
    ours = sum(p.numel() for p in resnet18_cifar(num_classes=10).parameters())
    ref = sum(p.numel() for p in tv.models.resnet18(num_classes=10).parameters())
    # Same network except the stem convolution: 7x7 in torchvision, 3x3 here (max-pool has none).
    assert ours == ref - 7 * 7 * 3 * 64 + 3 * 3 * 3 * 64


def test_projection_head_maps_features_to_projections() -> None:
    head = ProjectionHead(64, 32, 16)
    z = head(torch.randn(4, 64))
    assert z.shape == (4, 16)
    z.sum().backward()
    assert all(p.grad is not None for p in head.parameters())


@pytest.mark.parametrize(
    ("build", "error"),
    [
        (lambda: resnet18_cifar(width=0), ValueError),
        (lambda: resnet18_cifar(in_channels=0), ValueError),
        (lambda: resnet18_cifar(in_channels="3"), TypeError),
        (lambda: resnet18_cifar(num_classes=0), ValueError),
        (lambda: ProjectionHead(64, out_dim=0), ValueError),
        (lambda: ProjectionHead(64.0), TypeError),
    ],
)
def test_bad_arguments(build, error) -> None:
    with pytest.raises(error):
        build()


def test_bad_input_rank() -> None:
    with pytest.raises(ValueError, match="x must be"):
        resnet18_cifar(width=4)(torch.randn(3, 8, 8))
    with pytest.raises(ValueError, match="h must be"):
        ProjectionHead(8, 8, 4)(torch.randn(2, 8, 1))
