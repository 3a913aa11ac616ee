"""SimCLR augmentation of a whole batch at once, with every random parameter drawn per sample.

torchvision's transforms applied to a batch tensor draw ONE set of random parameters for the whole
batch, which silently breaks SimCLR (all images get the same crop and colours). `SimCLRAugment`
draws a crop box, flip, jitter factors, jitter order, grayscale and blur decision for EACH sample,
then applies them with whole-batch tensor ops: one `grid_sample` (on the grid `affine_grid` would
build) for crop + flip + resize, and colour ops that follow `torchvision.transforms.v2.functional`
formulas (checked against it in tests/test_augment.py).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

GRAY_WEIGHTS = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale (ITU-R 601-2 luma)
BLUR_SIGMA = (0.1, 2.0)  # SimCLR's Gaussian blur sigma range
BRIGHTNESS, CONTRAST, SATURATION, HUE = range(4)  # jitter op ids, as torchvision's ColorJitter
FLOAT_RANGE_TOL = 1e-3  # float input may stray this far outside [0, 1] (rounding of earlier ops)


@dataclass
class AugmentParams:
    """Per-sample random parameters of one `SimCLRAugment` call (1-D CPU tensors of length B)."""

    top: torch.Tensor  # crop box, in input pixels (int64)
    left: torch.Tensor
    height: torch.Tensor
    width: torch.Tensor
    flip: torch.Tensor  # bool: horizontal flip
    jitter: torch.Tensor  # bool: colour jitter applied
    order: torch.Tensor  # (B, 4) int64: jitter op ids in the order they are applied
    brightness: torch.Tensor  # jitter factors (float32)
    contrast: torch.Tensor
    saturation: torch.Tensor
    hue: torch.Tensor
    gray: torch.Tensor  # bool: converted to grayscale
    blur: torch.Tensor  # bool: Gaussian blur applied
    sigma: torch.Tensor  # blur sigma (float32)

    def __len__(self) -> int:
        return len(self.top)

    def __getitem__(self, i: int) -> dict[str, object]:
        """Sample i's parameters as Python numbers (order as a list)."""
        return {f.name: getattr(self, f.name)[i].tolist() for f in fields(self)}


def _probability(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number in [0, 1], got {type(value).__name__}")
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {value}")
    return float(value)


def _range(value: Sequence[float], name: str, low: float, high: float) -> tuple[float, float]:
    if not isinstance(value, Sequence) or len(value) != 2:
        raise TypeError(f"{name} must be a (min, max) pair of numbers, got {value!r}")
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in value):
        raise TypeError(f"{name} must be a (min, max) pair of numbers, got {value!r}")
    lo, hi = float(value[0]), float(value[1])
    if not low < lo <= hi <= high:
        raise ValueError(f"{name} must satisfy {low} < min <= max <= {high}, got {value!r}")
    return lo, hi


def _floats(value: Sequence[float], name: str, *, positive: bool) -> tuple[float, ...]:
    if not isinstance(value, Sequence) or len(value) == 0:
        raise TypeError(f"{name} must be a non-empty sequence of numbers, got {value!r}")
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in value):
        raise TypeError(f"{name} must be a non-empty sequence of numbers, got {value!r}")
    if positive and min(value) <= 0:
        raise ValueError(f"{name} must be positive, got {value!r}")
    return tuple(float(v) for v in value)


def rgb_to_gray(x: torch.Tensor) -> torch.Tensor:
    """Luma (B, 1, ...) of RGB (B, 3, ...) with torchvision's weights."""
    r, g, b = x.unbind(1)
    return (
        (r * GRAY_WEIGHTS[0]).add_(g, alpha=GRAY_WEIGHTS[1]).add_(b, alpha=GRAY_WEIGHTS[2])[:, None]
    )


def adjust_hue(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Rotate the HSV hue of RGB images (B, 3, H, W) in [0, 1] by per-sample `factor` (B,) turns.

    Same result as torchvision's RGB -> HSV -> shift -> RGB round trip, computed without building
    HSV: the shifted pixel keeps its max and min channel, and channel n takes
    max - chroma * clamp(2 - |k - 2|, 0, 1) with k = (n + 6 * hue) mod 6, n = 5, 3, 1 for R, G, B.
    Only arithmetic ops (no comparisons, `where` or `remainder`, which are slow on CPU).
    """
    r, g, b = x.unbind(1)
    maxc = torch.maximum(torch.maximum(r, g), b)
    minc = torch.minimum(torch.minimum(r, g), b)
    chroma = maxc - minc
    # One-hot masks of the max channel with torchvision's tie order R, then G, then B:
    # sign(c - max) + 1 is 1 where c is the max, else 0.
    is_r = torch.sub(r, maxc).sign_().add_(1.0)
    is_g = torch.sub(g, maxc).sign_().add_(1.0)
    is_g.addcmul_(is_g, is_r, value=-1.0)  # is_g * (1 - is_r)
    # 6 * hue * chroma: (g - b) for max R, 2 chroma + (b - r) for G, 4 chroma + (r - g) for B.
    h6 = torch.sub(r, g).add_(chroma, alpha=4.0)
    h6.addcmul_(torch.sub(g, b).sub_(h6), is_r)
    h6.addcmul_(torch.sub(b, r).add_(chroma, alpha=2.0).sub_(r - g).sub_(chroma, alpha=4.0), is_g)
    # Where chroma is 0 the pixel is gray and its hue irrelevant (all channels = max), so dividing
    # by max(chroma, tiny) is exact where it matters.
    h6.div_(chroma.clamp_min(1e-12))
    # d = distance from k to 2 on a circle of circumference 6 (k - 2 reduced to [-3, 3], abs);
    # max - chroma * clamp(2 - d, 0, 1) = min + chroma * clamp(d - 1, 0, 1).
    shift = factor.view(-1, 1) * 6.0 + torch.tensor([3.0, 1.0, -1.0], device=x.device)
    d = h6[:, None] + shift[:, :, None, None]
    d.sub_(d.mul(1 / 6).round_(), alpha=6.0).abs_()
    return torch.addcmul(minc[:, None], chroma[:, None], d.sub_(1.0).clamp_(0.0, 1.0))


def _crop_axes(params: AugmentParams, height: int, width: int, size: int) -> torch.Tensor:
    """(2, B, size) grid_sample x and y coordinates of each sample's crop box, flip and resize."""
    u = (torch.arange(size, dtype=torch.float64) * 2 + 1) / size - 1  # output pixel centres
    axes = []
    for start, extent, full, sign in (
        (params.left, params.width, width, 1.0 - 2.0 * params.flip.double()),
        (params.top, params.height, height, torch.ones(len(params), dtype=torch.float64)),
    ):
        start, extent = start.double()[:, None], extent.double()[:, None]
        coord = sign[:, None] * u * extent / full + (2 * start + extent) / full - 1
        lo, hi = (2 * start + 1) / full - 1, (2 * (start + extent) - 1) / full - 1
        axes.append(torch.minimum(torch.maximum(coord, lo), hi))
    return torch.stack(axes).float()


def _grid(axes: torch.Tensor) -> torch.Tensor:
    """(B, size, size, 2) grid from per-axis coordinates (2, B, size)."""
    gx, gy = axes
    b, size = gx.shape
    return torch.stack(
        (gx[:, None, :].expand(b, size, size), gy[:, :, None].expand(b, size, size)), 3
    )


def crop_grid(params: AugmentParams, height: int, width: int, size: int) -> torch.Tensor:
    """The (B, size, size, 2) grid_sample grid of each sample's crop box, flip and resize.

    It is F.affine_grid(theta, align_corners=False) for the axis-aligned
    theta = [[+-w / W, 0, (2 left + w) / W - 1], [0, h / H, (2 top + h) / H - 1]] (minus for a
    flip), clamped to the centres of the crop's edge pixels (resize clamps at the crop's edge, not
    the image's). It is built by broadcasting per-axis coordinates (B, size) instead of affine_grid's
    (B, size * size, 3) x (3, 2) batched matmul, which costs more than the sampling itself on a CPU.
    """
    return _grid(_crop_axes(params, height, width, size))


def _ship(tensors: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """Small CPU tensors moved to `device` in ONE transfer (pinned and non-blocking on CUDA).

    Integer tensors travel as float32 (exact below 2**24) and come back as int64.
    """
    if device.type == "cpu":
        return tensors
    flat = torch.cat([t.reshape(-1).float() for t in tensors.values()])
    if device.type == "cuda":
        flat = flat.pin_memory()  # a pageable copy would wait for the GPU's queue to drain
    flat = flat.to(device, non_blocking=True)
    out, start = {}, 0
    for name, t in tensors.items():
        part = flat[start : start + t.numel()].view(t.shape)
        out[name] = part if t.is_floating_point() else part.long()
        start += t.numel()
    return out


def _gaussian_kernels(size: int, sigma: torch.Tensor) -> torch.Tensor:
    """(B, size) normalised 1-D Gaussian kernels, one per sigma, as torchvision samples them."""
    x = torch.linspace(-(size - 1) / 2, (size - 1) / 2, size, device=sigma.device)
    return torch.softmax(-0.5 * (x / sigma[:, None]) ** 2, dim=1)


class SimCLRAugment(nn.Module):
    """SimCLR views of a batch: per-sample random resized crop, flip, colour jitter, grayscale, blur.

    Input: uint8 (values 0..255) or float (values in [0, 1], else ValueError) images (B, C, H, W),
    C = 1 or 3, on any device. Output: float32 (B, C, size, size), normalised as (x - mean) / std with `mean` and
    `std` one value per channel or one for all (default 0.5 and 0.5: [0, 1] -> [-1, 1]). Parameters
    follow torchvision: `scale`/`ratio` as RandomResizedCrop, `jitter` = (brightness, contrast,
    saturation, hue) as ColorJitter (applied with probability `jitter_p`, ops in a random order per
    sample), `gray_p` as RandomGrayscale, `blur_p` a Gaussian blur with kernel ~10% of `size` and
    sigma in [0.1, 2]. Grayscale input skips saturation, hue and grayscale (as torchvision does).
    Random parameters are drawn on the CPU (with `generator` if given), so a seeded generator gives
    the same views on every device. Crops larger than `size` are resized bilinearly without
    antialiasing (torchvision antialiases); crops up to `size` match torchvision's resize.
    """

    def __init__(
        self,
        size: int,
        *,
        scale: Sequence[float] = (0.08, 1.0),
        ratio: Sequence[float] = (3 / 4, 4 / 3),
        flip_p: float = 0.5,
        jitter: Sequence[float] = (0.4, 0.4, 0.4, 0.1),
        jitter_p: float = 0.8,
        gray_p: float = 0.2,
        blur_p: float = 0.0,
        mean: Sequence[float] = (0.5,),
        std: Sequence[float] = (0.5,),
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if isinstance(size, bool) or not isinstance(size, int):
            raise TypeError(f"size must be an int, got {type(size).__name__}")
        if size <= 0:
            raise ValueError(f"size must be positive, got {size}")
        self.size = size
        self.scale = _range(scale, "scale", 0.0, 1.0)
        self.ratio = _range(ratio, "ratio", 0.0, math.inf)
        self.flip_p = _probability(flip_p, "flip_p")
        self.jitter_p = _probability(jitter_p, "jitter_p")
        self.gray_p = _probability(gray_p, "gray_p")
        self.blur_p = _probability(blur_p, "blur_p")
        strengths = _floats(jitter, "jitter", positive=False)
        if len(strengths) != 4:
            raise ValueError(
                f"jitter must be (brightness, contrast, saturation, hue), got {jitter!r}"
            )
        if min(strengths) < 0 or strengths[3] > 0.5:
            raise ValueError(f"jitter strengths must be >= 0 and hue <= 0.5, got {jitter!r}")
        self.jitter = strengths
        # Odd, ~10% of the image side as SimCLR; 1 (no blur) for 1-pixel outputs.
        self.blur_kernel = max(3, 2 * (size // 20) + 1) if size > 1 else 1
        self.mean = _floats(mean, "mean", positive=False)
        self.std = _floats(std, "std", positive=True)
        if generator is not None and (
            not isinstance(generator, torch.Generator) or generator.device.type != "cpu"
        ):
            raise TypeError(f"generator must be a CPU torch.Generator or None, got {generator!r}")
        self.generator = generator

    def extra_repr(self) -> str:
        return (
            f"size={self.size}, scale={self.scale}, ratio={self.ratio}, flip_p={self.flip_p}, "
            f"jitter={self.jitter}, jitter_p={self.jitter_p}, gray_p={self.gray_p}, "
            f"blur_p={self.blur_p}"
        )

    def _uniform(self, shape: tuple[int, ...], low: float, high: float) -> torch.Tensor:
        return torch.rand(shape, generator=self.generator).mul_(high - low).add_(low)

    def sample_params(self, batch: int, height: int, width: int) -> AugmentParams:
        """Draw per-sample parameters for `batch` images of `height` x `width` (on the CPU)."""
        # RandomResizedCrop: up to 10 tries of (area, log-ratio) per sample, first fitting one wins.
        tries = 10
        area = height * width * self._uniform((batch, tries), *self.scale).double()
        log_ratio = self._uniform((batch, tries), math.log(self.ratio[0]), math.log(self.ratio[1]))
        aspect = log_ratio.double().exp()
        w = torch.round(torch.sqrt(area * aspect)).long()
        h = torch.round(torch.sqrt(area / aspect)).long()
        fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
        first = torch.argmax(fits.int(), dim=1, keepdim=True)  # first fitting try
        any_fit = fits.any(dim=1)
        w, h = w.gather(1, first)[:, 0], h.gather(1, first)[:, 0]
        # Fallback when no try fits: centre crop of the whole image clamped to the ratio range.
        in_ratio = width / height
        if in_ratio < self.ratio[0]:
            fw, fh = width, int(round(width / self.ratio[0]))
        elif in_ratio > self.ratio[1]:
            fw, fh = int(round(height * self.ratio[1])), height
        else:
            fw, fh = width, height
        w = torch.where(any_fit, w, fw)
        h = torch.where(any_fit, h, fh)
        pos = torch.rand(batch, 2, generator=self.generator, dtype=torch.float64)
        top = torch.where(any_fit, (pos[:, 0] * (height - h + 1)).long(), (height - fh) // 2)
        left = torch.where(any_fit, (pos[:, 1] * (width - w + 1)).long(), (width - fw) // 2)

        bri, con, sat, hue = self.jitter
        coins = torch.rand(batch, 4, generator=self.generator)
        return AugmentParams(
            top=top,
            left=left,
            height=h,
            width=w,
            flip=coins[:, 0] < self.flip_p,
            jitter=coins[:, 1] < self.jitter_p,
            order=torch.argsort(torch.rand(batch, 4, generator=self.generator), dim=1),
            brightness=self._uniform((batch,), max(0.0, 1 - bri), 1 + bri),
            contrast=self._uniform((batch,), max(0.0, 1 - con), 1 + con),
            saturation=self._uniform((batch,), max(0.0, 1 - sat), 1 + sat),
            hue=self._uniform((batch,), -hue, hue),
            gray=coins[:, 2] < self.gray_p,
            blur=coins[:, 3] < self.blur_p,
            sigma=self._uniform((batch,), *BLUR_SIGMA),
        )

    def _check_input(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        if x.dtype != torch.uint8 and not x.is_floating_point():
            raise TypeError(f"x must be uint8 or floating point, got {x.dtype}")
        if x.dim() != 4:
            raise ValueError(f"x must be a batch (B, C, H, W), got shape {tuple(x.shape)}")
        c = x.shape[1]
        if c not in (1, 3):
            raise ValueError(f"x must have 1 or 3 channels, got {c}")
        for name, t in (("mean", self.mean), ("std", self.std)):
            if len(t) not in (1, c):
                raise ValueError(f"{name} has {len(t)} values; the images have {c} channels")

    @staticmethod
    def _check_range(x: torch.Tensor) -> None:
        """Raise unless float images are in [0, 1] (up to rounding); uint8 is always in range."""
        if not x.is_floating_point() or x.numel() == 0 or x.device.type == "meta":
            return
        low, high = (v.item() for v in torch.aminmax(x))
        if not (low >= -FLOAT_RANGE_TOL and high <= 1 + FLOAT_RANGE_TOL):
            raise ValueError(
                f"float images x must have values in [0, 1], got [{low:.4g}, {high:.4g}]: divide "
                "0..255 images by 255, or pass them as uint8"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """One augmented, normalised view (B, C, size, size) of each image in `x`."""
        self._check_input(x)
        return self.apply_params(x, self.sample_params(x.shape[0], x.shape[2], x.shape[3]))

    def apply_params(self, x: torch.Tensor, params: AugmentParams) -> torch.Tensor:
        """The views of `x` (B, C, H, W) for given per-sample `params` (deterministic)."""
        self._check_input(x)
        self._check_range(x)
        b, c, height, width = x.shape
        if len(params) != b:
            raise ValueError(f"params are for {len(params)} samples, x has {b}")
        # Plan on the CPU (which samples get which op, with what coefficients), ship the plan to
        # x's device in one transfer, then run whole-batch ops there.
        plan = {"axes": _crop_axes(params, height, width, self.size)}
        plan["mean"] = torch.tensor(self.mean)
        plan["inv_std"] = 1 / torch.tensor(self.std)
        linear, coef, hue_at = self._jitter_plan(params, c)
        plan["coef"] = coef
        for k in range(4):
            plan[f"hue_idx{k}"] = hue_at[:, k].nonzero()[:, 0]
            plan[f"hue{k}"] = params.hue[hue_at[:, k]]
        plan["gray_idx"] = (
            params.gray.nonzero()[:, 0] if c == 3 else torch.zeros(0, dtype=torch.long)
        )
        plan["blur_idx"] = params.blur.nonzero()[:, 0]
        plan["blur_kernel"] = _gaussian_kernels(self.blur_kernel, params.sigma[params.blur])
        plan = _ship(plan, x.device)

        # Crop + flip + resize of the whole batch in one grid_sample (uint8 -> [0, 1] after it).
        # Every op after it works in place on its output: large temporaries cost page faults.
        out = F.grid_sample(
            x.float(),
            _grid(plan["axes"]),
            mode="bilinear",
            padding_mode="border",
            align_corners=False,
        )
        if x.dtype == torch.uint8:
            out.mul_(1 / 255)
        for k in range(4):
            if linear[k]:
                _blend(out, *plan["coef"][k].view(3, b, 1, 1, 1))
            idx = plan[f"hue_idx{k}"]
            if len(idx):  # hue only for the samples that have it here: the costliest op
                out[idx] = adjust_hue(out[idx], plan[f"hue{k}"])
        idx = plan["gray_idx"]
        if len(idx):
            out[idx] = rgb_to_gray(out[idx]).expand(-1, 3, -1, -1)
        idx = plan["blur_idx"]
        if len(idx):
            out[idx] = _blur(out[idx], plan["blur_kernel"])
        shape = (1, -1, 1, 1)
        return out.sub_(plan["mean"].view(shape)).mul_(plan["inv_std"].view(shape))

    def _jitter_plan(
        self, params: AugmentParams, c: int
    ) -> tuple[list[bool], torch.Tensor, torch.Tensor]:
        """Per op position: whether any sample blends, blend coefficients (4, 3, B), hue mask (B, 4).

        Brightness, contrast and saturation are each  f * x + (1 - f) * other, clamped, with
        other = 0 (brightness), the mean of the grayscale image (contrast) or the grayscale image
        (saturation; 1-channel images are left alone, as torchvision does). So each of the 4 op
        positions is ONE fused pass over the batch with per-sample (f, w_gray, w_mean), f = 1 for
        samples whose op there is hue or that are not jittered.
        """
        b = len(params)
        on = params.jitter & any(self.jitter)
        order = params.order
        linear = on[:, None] & (order != HUE) & ((order != SATURATION) | (c == 3))
        factors = torch.stack(
            (params.brightness, params.contrast, params.saturation, torch.ones(b)), 1
        )
        f = torch.where(linear, factors.gather(1, order), 1.0)
        w_gray = torch.where(linear & (order == SATURATION), 1 - f, 0.0)
        w_mean = torch.where(linear & (order == CONTRAST), 1 - f, 0.0)
        coef = torch.stack((f, w_gray, w_mean)).permute(2, 0, 1).contiguous()
        hue_at = on[:, None] & (order == HUE) & (c == 3) & (self.jitter[3] > 0)
        return linear.any(0).tolist(), coef, hue_at


def _blend(x: torch.Tensor, f: torch.Tensor, w_gray: torch.Tensor, w_mean: torch.Tensor) -> None:
    """In place: x <- clamp(f x + w_gray gray(x) + w_mean mean(gray(x)), 0, 1), per-sample weights."""
    gray = rgb_to_gray(x) if x.shape[1] == 3 else x
    other = gray.mean((2, 3), keepdim=True).mul_(w_mean)
    if x.shape[1] == 3:
        other = gray.mul_(w_gray).add_(other)
    torch.addcmul(other, x, f, out=x).clamp_(0.0, 1.0)


def _blur(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur of each sample with its own (size,) kernel, reflect padding."""
    b, c, height, width = x.shape
    size = kernel.shape[1]
    kernel = kernel.repeat_interleave(c, 0)  # (B * C, size)
    pad = size // 2
    y = F.pad(x.reshape(1, b * c, height, width), (pad, pad, pad, pad), mode="reflect")
    y = F.conv2d(y, kernel.view(b * c, 1, 1, size), groups=b * c)
    y = F.conv2d(y, kernel.view(b * c, 1, size, 1), groups=b * c)
    return y.view(b, c, height, width)
