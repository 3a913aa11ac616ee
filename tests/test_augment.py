"""course_utils.augment: per-sample randomness, op semantics vs torchvision, crop statistics, inputs.

References: torchvision.transforms.v2.functional applied to one image at a time with the same
parameters (float32 images in [0, 1]; tolerance 1e-5, the float32 rounding of a few ops), and
binomial tolerances (4 standard deviations) for the fractions of samples each random op hits.
"""

import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from course_utils.augment import AugmentParams, SimCLRAugment, adjust_hue, crop_grid

TF = pytest.importorskip("torchvision.transforms.v2.functional")
ATOL = 1e-5  # float32 rounding of the same formulas computed in another order


def images(b: int = 8, c: int = 3, h: int = 32, w: int = 32, seed: int = 0) -> torch.Tensor:
    """Smooth random colour images in [0, 1] (float32), so crops and blur change them."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(b, c, 4, 4, generator=g)
    smooth = F.interpolate(low, size=(h, w), mode="bilinear", align_corners=False)
    return (smooth + 0.15 * torch.rand(b, c, h, w, generator=g)).clamp(0, 1)


def params_for(b: int, h: int, w: int, **changes: object) -> AugmentParams:
    """Identity parameters (full crop, no flip, jitter factors 1/0, no gray, no blur) with changes."""
    zeros = torch.zeros(b, dtype=torch.bool)
    ones = torch.ones(b)
    base = AugmentParams(
        top=torch.zeros(b, dtype=torch.long),
        left=torch.zeros(b, dtype=torch.long),
        height=torch.full((b,), h),
        width=torch.full((b,), w),
        flip=zeros,
        jitter=zeros,
        order=torch.arange(4).repeat(b, 1),
        brightness=ones,
        contrast=ones,
        saturation=ones,
        hue=torch.zeros(b),
        gray=zeros,
        blur=zeros,
        sigma=ones,
    )
    return replace(base, **changes)


def raw(size: int, **kwargs: object) -> SimCLRAugment:
    """A SimCLRAugment without normalisation (mean 0, std 1), so outputs are in [0, 1]."""
    return SimCLRAugment(size, mean=(0.0,), std=(1.0,), **kwargs)


def torchvision_view(img: torch.Tensor, p: dict, size: int, blur_kernel: int) -> torch.Tensor:
    """One view computed with torchvision's single-image functions and the same parameters."""
    out = TF.resized_crop(img, p["top"], p["left"], p["height"], p["width"], [size, size])
    if p["flip"]:
        out = TF.horizontal_flip(out)
    if p["jitter"]:
        for op in p["order"]:
            if op == 0:
                out = TF.adjust_brightness(out, p["brightness"])
            elif op == 1:
                out = TF.adjust_contrast(out, p["contrast"])
            elif op == 2:
                out = TF.adjust_saturation(out, p["saturation"])
            else:
                out = TF.adjust_hue(out, p["hue"])
    if p["gray"]:
        out = TF.rgb_to_grayscale(out, num_output_channels=out.shape[0])
    if p["blur"]:
        out = TF.gaussian_blur(out, [blur_kernel, blur_kernel], [p["sigma"], p["sigma"]])
    return out


def binomial_ok(count: int, n: int, p: float) -> bool:
    """Whether count/n is within 4 standard deviations of p (false-alarm rate < 1e-4)."""
    return abs(count / n - p) <= 4 * math.sqrt(p * (1 - p) / n) + 1e-12


# --- the whole pipeline against torchvision, sample by sample --------------------------------


@pytest.mark.parametrize("channels", [3, 1])
def test_every_view_matches_torchvision_with_the_same_parameters(channels: int) -> None:
    x = images(32, c=channels)
    aug = raw(32, gray_p=0.3, blur_p=0.5, generator=torch.Generator().manual_seed(1))
    params = aug.sample_params(32, 32, 32)
    views = aug.apply_params(x, params)
    assert views.shape == (32, channels, 32, 32) and views.dtype == torch.float32
    for i in range(32):
        expected = torchvision_view(x[i], params[i], 32, aug.blur_kernel)
        torch.testing.assert_close(views[i], expected, atol=ATOL, rtol=0)


def test_normalisation_uses_mean_and_std() -> None:
    x = images(4)
    params = raw(32).sample_params(4, 32, 32)
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
    plain = raw(32).apply_params(x, params)
    normed = SimCLRAugment(32, mean=mean, std=std).apply_params(x, params)
    expected = TF.normalize(plain, list(mean), list(std))
    torch.testing.assert_close(normed, expected, atol=ATOL, rtol=0)


def test_uint8_input_is_scaled_to_unit_range() -> None:
    x = torch.randint(0, 256, (6, 3, 20, 20), dtype=torch.uint8)
    aug = raw(16, blur_p=0.5)
    params = aug.sample_params(6, 20, 20)
    from_uint8 = aug.apply_params(x, params)
    from_float = aug.apply_params(x.float() / 255, params)
    torch.testing.assert_close(from_uint8, from_float, atol=ATOL, rtol=0)


# --- each op on its own ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("op", "field", "factor", "reference"),
    [
        (0, "brightness", 1.37, TF.adjust_brightness),
        (0, "brightness", 0.6, TF.adjust_brightness),
        (1, "contrast", 1.4, TF.adjust_contrast),
        (1, "contrast", 0.55, TF.adjust_contrast),
        (2, "saturation", 1.4, TF.adjust_saturation),
        (2, "saturation", 0.0, TF.adjust_saturation),
        (3, "hue", 0.1, TF.adjust_hue),
        (3, "hue", -0.5, TF.adjust_hue),
    ],
)
def test_each_jitter_op_matches_torchvision(op, field, factor, reference) -> None:
    x = images(4)
    order = torch.tensor([op] + [o for o in range(4) if o != op]).repeat(4, 1)
    values = torch.full((4,), factor)
    params = params_for(4, 32, 32, jitter=torch.ones(4, dtype=torch.bool), order=order)
    params = replace(params, **{field: values})
    views = raw(32).apply_params(x, params)  # the other three ops run with identity factors
    for i in range(4):
        torch.testing.assert_close(views[i], reference(x[i], factor), atol=ATOL, rtol=0)


def test_jitter_order_matters_and_is_followed() -> None:
    x = images(2)
    on = torch.ones(2, dtype=torch.bool)
    strong = {"brightness": torch.full((2,), 1.4), "contrast": torch.full((2,), 0.5)}
    bc = params_for(2, 32, 32, jitter=on, order=torch.tensor([[0, 1, 2, 3]] * 2), **strong)
    cb = replace(bc, order=torch.tensor([[1, 0, 2, 3]] * 2))
    aug = raw(32)
    expected_bc = TF.adjust_contrast(TF.adjust_brightness(x[0], 1.4), 0.5)
    expected_cb = TF.adjust_brightness(TF.adjust_contrast(x[0], 0.5), 1.4)
    assert (expected_bc - expected_cb).abs().max() > 0.05  # the order is visible
    torch.testing.assert_close(aug.apply_params(x, bc)[0], expected_bc, atol=ATOL, rtol=0)
    torch.testing.assert_close(aug.apply_params(x, cb)[0], expected_cb, atol=ATOL, rtol=0)


def test_hue_matches_torchvision_on_hard_pixels() -> None:
    # Gray pixels, ties between channels (max shared by two), pure primaries and uint8 levels.
    levels = torch.tensor([0, 1, 64, 128, 200, 255]) / 255
    r, g, b = torch.meshgrid(levels, levels, levels, indexing="ij")
    grid = torch.stack((r, g, b)).reshape(3, 12, 18)
    factors = torch.tensor([-0.5, -0.25, -1 / 6, -0.01, 0.0, 0.01, 1 / 6, 1 / 3, 0.5])
    x = grid.expand(len(factors), -1, -1, -1).contiguous()
    out = adjust_hue(x, factors)
    for i, f in enumerate(factors.tolist()):
        torch.testing.assert_close(out[i], TF.adjust_hue(grid, f), atol=ATOL, rtol=0)


def test_grayscale_matches_torchvision() -> None:
    x = images(3)
    params = params_for(3, 32, 32, gray=torch.tensor([True, False, True]))
    views = raw(32).apply_params(x, params)
    for i in (0, 2):
        torch.testing.assert_close(views[i], TF.rgb_to_grayscale(x[i], 3), atol=ATOL, rtol=0)
    torch.testing.assert_close(views[1], x[1], atol=0, rtol=0)


def test_blur_matches_torchvision_per_sample_sigma() -> None:
    x = images(3, h=64, w=64)
    aug = raw(64)  # kernel 2 * (64 // 20) + 1 = 7: about 10% of the side, as SimCLR
    assert aug.blur_kernel == 7
    sigma = torch.tensor([0.1, 0.9, 2.0])
    params = params_for(3, 64, 64, blur=torch.ones(3, dtype=torch.bool), sigma=sigma)
    views = aug.apply_params(x, params)
    for i, s in enumerate(sigma.tolist()):
        torch.testing.assert_close(
            views[i], TF.gaussian_blur(x[i], [7, 7], [s, s]), atol=ATOL, rtol=0
        )


# --- crop, flip, resize ----------------------------------------------------------------------


def test_full_crop_without_flip_is_the_identity() -> None:
    x = images(2)
    torch.testing.assert_close(raw(32).apply_params(x, params_for(2, 32, 32)), x, atol=1e-6, rtol=0)


def test_crop_flip_resize_match_torchvision_and_downscaling_matches_plain_bilinear() -> None:
    x = images(4, h=40, w=48)
    params = params_for(
        4,
        40,
        48,
        top=torch.tensor([0, 5, 12, 0]),
        left=torch.tensor([0, 30, 3, 0]),
        height=torch.tensor([20, 7, 28, 40]),
        width=torch.tensor([24, 18, 9, 48]),
        flip=torch.tensor([False, True, True, False]),
    )
    views = raw(32).apply_params(x, params)
    for i in range(4):
        p = params[i]
        ref = TF.resized_crop(x[i], p["top"], p["left"], p["height"], p["width"], [32, 32])
        if p["flip"]:
            ref = TF.horizontal_flip(ref)
        if p["height"] > 32 or p["width"] > 32:  # downscaling: bilinear without antialiasing
            crop = x[i, :, p["top"] : p["top"] + p["height"], p["left"] : p["left"] + p["width"]]
            ref = F.interpolate(crop[None], size=(32, 32), mode="bilinear", align_corners=False)[0]
        torch.testing.assert_close(views[i], ref, atol=ATOL, rtol=0)


def test_crop_grid_is_affine_grid_clamped_to_the_crop() -> None:
    params = raw(16).sample_params(32, 24, 40)
    grid = crop_grid(params, 24, 40, 16)
    for i in range(32):
        p = params[i]
        sx = (-1 if p["flip"] else 1) * p["width"] / 40
        theta = torch.tensor(
            [
                [sx, 0.0, (2 * p["left"] + p["width"]) / 40 - 1],
                [0.0, p["height"] / 24, (2 * p["top"] + p["height"]) / 24 - 1],
            ],
            dtype=torch.float64,
        )
        ref = F.affine_grid(theta[None], [1, 1, 16, 16], align_corners=False)[0]
        lo = torch.tensor([(2 * p["left"] + 1) / 40 - 1, (2 * p["top"] + 1) / 24 - 1])
        hi = torch.tensor(
            [
                (2 * (p["left"] + p["width"]) - 1) / 40 - 1,
                (2 * (p["top"] + p["height"]) - 1) / 24 - 1,
            ]
        )
        ref = torch.maximum(torch.minimum(ref, hi.double()), lo.double()).float()
        torch.testing.assert_close(grid[i], ref, atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    ("scale", "ratio"), [((0.08, 1.0), (3 / 4, 4 / 3)), ((0.3, 0.5), (0.5, 2.0))]
)
def test_crop_boxes_stay_within_scale_and_ratio(scale, ratio) -> None:
    n, h, w = 3000, 64, 48
    gen = torch.Generator().manual_seed(0)
    p = raw(32, scale=scale, ratio=ratio, generator=gen).sample_params(n, h, w)
    area = (p.height * p.width).double() / (h * w)
    aspect = p.width.double() / p.height
    # Sides are rounded to whole pixels: with sides >= 7 pixels here, each moves by <= 0.5 / 7,
    # so area and ratio move by a factor of at most (1 + 1/14) / (1 - 1/14) < 1.16.
    assert scale[0] / 1.16 <= area.min() and area.max() <= scale[1] * 1.16
    assert ratio[0] / 1.16 <= aspect.min() and aspect.max() <= ratio[1] * 1.16
    assert (p.top >= 0).all() and (p.top + p.height <= h).all()
    assert (p.left >= 0).all() and (p.left + p.width <= w).all()
    assert area.max() - area.min() > 0.8 * (scale[1] - scale[0])  # the whole range is used


def test_crop_boxes_follow_torchvision_distribution() -> None:
    stats = pytest.importorskip("scipy.stats")
    v2 = pytest.importorskip("torchvision.transforms.v2")
    n, h, w = 4000, 32, 32  # small images: many tries fail, so the rejection rule matters
    gen = torch.Generator().manual_seed(0)
    p = raw(32, generator=gen).sample_params(n, h, w)
    torch.manual_seed(0)
    crop = v2.RandomResizedCrop(32, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3))
    ref = [crop.make_params([torch.zeros(3, h, w)]) for _ in range(n)]
    # Two-sample Kolmogorov-Smirnov tests (fixed seeds, so not flaky): area, ratio, position.
    pairs = [
        ((p.height * p.width).tolist(), [r["height"] * r["width"] for r in ref]),
        ((p.width / p.height).tolist(), [r["width"] / r["height"] for r in ref]),
        ((p.top / (h - p.height + 1)).tolist(), [r["top"] / (h - r["height"] + 1) for r in ref]),
    ]
    for ours, theirs in pairs:
        assert stats.ks_2samp(ours, theirs).pvalue > 1e-3


def test_crop_falls_back_to_a_centre_crop_like_torchvision() -> None:
    # A 10x100 image with ratio (1, 1) and scale (0.9, 1): no square box of that area fits.
    p = raw(8, scale=(0.9, 1.0), ratio=(1.0, 1.0)).sample_params(5, 10, 100)
    assert p.height.tolist() == [10] * 5 and p.width.tolist() == [10] * 5
    assert p.top.tolist() == [0] * 5 and p.left.tolist() == [45] * 5


# --- per-sample randomness -------------------------------------------------------------------


def test_identical_images_get_distinct_views() -> None:
    x = images(1).expand(64, -1, -1, -1)
    views = SimCLRAugment(32, generator=torch.Generator().manual_seed(0))(x)
    flat = views.flatten(1)
    distances = torch.cdist(flat, flat) + torch.eye(64) * 1e9
    assert distances.min() > 1e-3  # no two views of the same image are equal


def test_flip_fraction_matches_flip_p() -> None:
    n, p = 600, 0.3
    img = images(1)
    aug = raw(32, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip_p=p, jitter_p=0.0, gray_p=0.0)
    views = aug(img.expand(n, -1, -1, -1))
    flipped = (views - img.flip(-1)).flatten(1).abs().amax(1) < 1e-6
    same = (views - img).flatten(1).abs().amax(1) < 1e-6
    assert (flipped ^ same).all()  # every view is the image or its mirror image
    assert binomial_ok(int(flipped.sum()), n, p)


def test_grayscale_fraction_matches_gray_p() -> None:
    n, p = 600, 0.2
    aug = raw(32, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip_p=0.0, jitter_p=0.0, gray_p=p)
    views = aug(images(1).expand(n, -1, -1, -1))
    gray = (views.amax(1) - views.amin(1)).flatten(1).amax(1) < 1e-6
    assert binomial_ok(int(gray.sum()), n, p)


@pytest.mark.parametrize("jitter_p", [0.8, 0.35])
def test_jitter_fraction_and_factor_range_match_the_configuration(jitter_p: float) -> None:
    n = 800
    img = images(1)
    aug = raw(
        32,
        scale=(1.0, 1.0),
        ratio=(1.0, 1.0),
        flip_p=0.0,
        jitter=(0.4, 0.0, 0.0, 0.0),  # brightness only: view / image = the factor
        jitter_p=jitter_p,
        gray_p=0.0,
        generator=torch.Generator().manual_seed(3),
    )
    views = aug(img.expand(n, -1, -1, -1))
    inside = (img[0] > 0.1) & (img[0] < 0.5)  # pixels that no factor <= 1.4 clamps
    factor = (views[:, inside] / img[0][inside]).median(1).values
    changed = (factor - 1).abs() > 1e-6
    assert binomial_ok(int(changed.sum()), n, jitter_p)
    f = factor[changed]
    assert f.min() >= 0.6 - 1e-5 and f.max() <= 1.4 + 1e-5
    assert abs(f.mean().item() - 1.0) < 4 * 0.8 / math.sqrt(12 * len(f))  # uniform on [0.6, 1.4]


def test_jitter_order_is_a_uniform_random_permutation_per_sample() -> None:
    p = raw(32, generator=torch.Generator().manual_seed(0)).sample_params(4800, 32, 32)
    assert (p.order.sort(1).values == torch.arange(4)).all()  # each row is a permutation
    first = torch.bincount(p.order[:, 0], minlength=4)
    assert all(binomial_ok(int(c), 4800, 0.25) for c in first)
    assert len(torch.unique(p.order, dim=0)) == 24


def test_every_parameter_is_drawn_per_sample() -> None:
    p = raw(32, blur_p=0.5, generator=torch.Generator().manual_seed(0)).sample_params(256, 32, 32)
    for name in ("top", "left", "height", "width", "brightness", "contrast", "saturation", "hue"):
        assert len(torch.unique(getattr(p, name))) > 8, name
    for name, prob in (("flip", 0.5), ("jitter", 0.8), ("gray", 0.2), ("blur", 0.5)):
        assert binomial_ok(int(getattr(p, name).sum()), 256, prob), name
    assert len(torch.unique(p.sigma)) == 256 and p.sigma.min() >= 0.1 and p.sigma.max() <= 2.0


# --- reproducibility, devices, dtypes --------------------------------------------------------


def test_a_seeded_generator_reproduces_the_views() -> None:
    x = images(16)

    def views(seed: int) -> torch.Tensor:
        return SimCLRAugment(32, blur_p=0.5, generator=torch.Generator().manual_seed(seed))(x)

    torch.testing.assert_close(views(7), views(7), atol=0, rtol=0)
    assert (views(7) - views(8)).abs().max() > 0.1


def test_float64_input_and_size_change() -> None:
    x = images(4, h=24, w=40).double()
    out = SimCLRAugment(16)(x)
    assert out.shape == (4, 3, 16, 16) and out.dtype == torch.float32 and out.isfinite().all()


def test_one_pixel_views_work_with_every_op() -> None:
    out = SimCLRAugment(1, jitter_p=1.0, gray_p=0.5, blur_p=1.0)(images(4))
    assert out.shape == (4, 3, 1, 1) and out.isfinite().all()


def test_non_cpu_devices_get_views_on_that_device() -> None:
    # The meta device runs the device path (the plan shipped in one transfer) without a GPU.
    x = torch.zeros(8, 3, 40, 40, dtype=torch.uint8, device="meta")
    out = SimCLRAugment(16, blur_p=0.5, gray_p=0.5)(x)
    assert out.device.type == "meta" and out.shape == (8, 3, 16, 16) and out.dtype == torch.float32


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_gives_the_cpu_views() -> None:
    x = (images(16) * 255).round().to(torch.uint8)
    aug = SimCLRAugment(32, blur_p=0.5)
    params = aug.sample_params(16, 32, 32)
    cpu = aug.apply_params(x, params)
    gpu = aug.to("cuda").apply_params(x.cuda(), params)
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-4, rtol=0)


# --- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"size": 0}, ValueError, "size"),
        ({"size": -3}, ValueError, "size"),
        ({"size": 32.0}, TypeError, "size"),
        ({"size": True}, TypeError, "size"),
        ({"flip_p": 1.5}, ValueError, "flip_p"),
        ({"jitter_p": -0.1}, ValueError, "jitter_p"),
        ({"gray_p": 2}, ValueError, "gray_p"),
        ({"blur_p": "0.5"}, TypeError, "blur_p"),
        ({"scale": (0.5, 0.2)}, ValueError, "scale"),
        ({"scale": (0.0, 1.0)}, ValueError, "scale"),
        ({"scale": (0.5, 1.2)}, ValueError, "scale"),
        ({"scale": 0.5}, TypeError, "scale"),
        ({"ratio": (2.0, 1.0)}, ValueError, "ratio"),
        ({"ratio": (0.0, 1.0)}, ValueError, "ratio"),
        ({"jitter": (0.4, 0.4, 0.4)}, ValueError, "jitter"),
        ({"jitter": (0.4, -0.1, 0.4, 0.1)}, ValueError, "jitter"),
        ({"jitter": (0.4, 0.4, 0.4, 0.6)}, ValueError, "jitter"),
        ({"mean": ()}, TypeError, "mean"),
        ({"std": (0.5, 0.0, 0.5)}, ValueError, "std"),
        ({"generator": 0}, TypeError, "generator"),
    ],
)
def test_bad_arguments_are_rejected_by_name(kwargs: dict, error: type, match: str) -> None:
    args = {"size": 32} | kwargs
    size = args.pop("size")
    with pytest.raises(error, match=match):
        SimCLRAugment(size, **args)


@pytest.mark.parametrize(
    ("x", "error", "match"),
    [
        ([[0.0]], TypeError, "x must be a torch.Tensor"),
        (torch.zeros(2, 3, 8, 8, dtype=torch.int32), TypeError, "uint8 or floating"),
        (torch.zeros(2, 3, 8, 8, dtype=torch.bool), TypeError, "uint8 or floating"),
        (torch.zeros(3, 8, 8), ValueError, r"\(B, C, H, W\)"),
        (torch.zeros(1, 2, 3, 8, 8), ValueError, r"\(B, C, H, W\)"),
        (torch.zeros(2, 4, 8, 8), ValueError, "1 or 3 channels"),
    ],
)
def test_bad_images_are_rejected(x: object, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        SimCLRAugment(8)(x)


@pytest.mark.parametrize("jitter_p", [0.0, 1.0])
def test_float_images_on_the_0_255_scale_are_rejected(jitter_p: float) -> None:
    """They used to pass silently: with jitter every view was clamped to [0, 1] (27% of outputs
    saturated on these images), without it values reached 255 (509 after the default 0.5/0.5)."""
    x = images(8) * 255
    aug = raw(16, jitter_p=jitter_p, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="float images x must have values in \\[0, 1\\].*255"):
        aug(x)
    with pytest.raises(ValueError, match="divide 0..255 images by 255, or pass them as uint8"):
        aug.apply_params(x, aug.sample_params(8, 32, 32))


def test_float_images_within_rounding_of_0_1_are_accepted() -> None:
    """The tolerance is small: rounding just outside [0, 1] passes, 0..255 or -1..1 does not."""
    x = images(4)
    x[0, 0, 0, 0], x[1, 0, 0, 0] = -1e-4, 1 + 1e-4
    assert raw(8)(x).isfinite().all()
    with pytest.raises(ValueError, match="got \\[-0.99"):
        raw(8)(2 * images(4) - 1)


def test_mean_std_must_fit_the_channels() -> None:
    aug = SimCLRAugment(8, mean=(0.5, 0.5, 0.5), std=(0.2, 0.2, 0.2))
    with pytest.raises(ValueError, match="mean has 3 values"):
        aug(torch.zeros(2, 1, 8, 8))


def test_params_must_fit_the_batch() -> None:
    aug = SimCLRAugment(8)
    with pytest.raises(ValueError, match="params are for 3 samples"):
        aug.apply_params(torch.zeros(2, 3, 8, 8), aug.sample_params(3, 8, 8))
