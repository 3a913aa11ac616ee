"""`shapes`: a generated image set where the class is a shape and colour is pure nuisance.

Each image shows one of ten shapes (`SHAPES`) on a background. Everything except the shape is drawn
independently of the class: the foreground and background colours (uniform RGB, with a luminance gap
so the shape survives grayscale), the position, a small rotation, the fraction of the image the
shape covers (so the pixel counts per colour say nothing about the class), a lighting gradient, up to
two small clutter dots of random colours, and pixel noise. Colour statistics therefore identify an
image (two crops of one image share its colours) but not its class: the shortcut SimCLR's colour
distortion removes. Images are a deterministic function of (split, count, size, seed).
"""

from __future__ import annotations

import numpy as np

SHAPES = (
    "disc",
    "ring",
    "square",
    "frame",
    "triangle",
    "plus",
    "star",
    "bars",
    "corner",
    "half-disc",
)
COVER = (0.15, 0.30)  # fraction of the image the shape covers, uniform
MIN_LUMA_GAP = 0.25  # |luma(foreground) - luma(background)|, on the [0, 1] scale
TURN = 0.25  # rotation: uniform in +-TURN radians (a full turn would make small data too hard)
MAX_DOTS = 2  # clutter: 0 to MAX_DOTS dots of random colour
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601 weights, as rgb_to_gray


def _inside(shape: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Whether points (u, v) of the shape's own frame (unit half-size) lie inside shape `shape`."""
    r, a, b = np.hypot(u, v), np.abs(u), np.abs(v)
    box = np.maximum(a, b)
    if shape == 0:  # disc
        return r < 0.9
    if shape == 1:  # ring
        return (r < 0.9) & (r > 0.5)
    if shape == 2:  # square
        return box < 0.75
    if shape == 3:  # frame: a hollow square
        return (box < 0.85) & (box > 0.5)
    if shape == 4:  # equilateral triangle, circumradius 1
        inside = np.ones(u.shape, dtype=bool)
        for k in range(3):
            angle = np.pi / 2 + 2 * np.pi * k / 3
            inside &= u * np.cos(angle) + v * np.sin(angle) > -0.5
        return inside
    if shape == 5:  # plus
        return ((a < 0.27) & (b < 0.9)) | ((b < 0.27) & (a < 0.9))
    if shape == 6:  # five-pointed star
        return r < 0.6 + 0.35 * np.cos(5 * np.arctan2(v, u))
    if shape == 7:  # two parallel bars
        return (b < 0.85) & (a > 0.22) & (a < 0.62)
    if shape == 8:  # corner: an L
        return (box < 0.85) & ((u < -0.3) | (v < -0.3))
    return (r < 0.9) & (v > 0)  # half-disc


def _unit_areas() -> np.ndarray:
    """Area of each shape at unit half-size, measured on a fine grid."""
    s = np.linspace(-1.2, 1.2, 481, dtype=np.float32)
    u, v = np.meshgrid(s, s)
    return np.array([_inside(k, u, v).mean() * 2.4**2 for k in range(len(SHAPES))])


def generate(split: str, count: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`count` uint8 images (N, 3, size, size) and balanced int64 labels, a function of the args."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if min(count, size - 7, seed + 1) < 1:
        raise ValueError(f"need count >= 1, size >= 8 and seed >= 0, got {count}, {size}, {seed}")
    rng = np.random.default_rng([seed, ("train", "test").index(split), size, count])
    n_classes = len(SHAPES)
    labels = rng.permutation(np.arange(count) % n_classes)
    f32 = np.float32
    pixel = ((np.arange(size) + 0.5) / size * 2 - 1).astype(f32)  # pixel centres in [-1, 1]
    gy, gx = np.meshgrid(pixel, pixel, indexing="ij")

    # Geometry: the covered fraction is drawn first, the scale follows from the shape's area.
    cover = rng.uniform(*COVER, count)
    scale = np.sqrt(cover * 4 / _unit_areas()[labels]).astype(f32)
    cx, cy = (rng.uniform(-1, 1, (2, count)) * (1 - scale)).astype(f32)  # the shape stays inside
    turn = rng.uniform(-TURN, TURN, count)
    cos, sin = (np.cos(turn).astype(f32)[:, None, None], np.sin(turn).astype(f32)[:, None, None])
    dx, dy = gx - cx[:, None, None], gy - cy[:, None, None]
    inv = (1 / scale)[:, None, None]
    u, v = (cos * dx + sin * dy) * inv, (cos * dy - sin * dx) * inv
    mask = np.zeros((count, size, size), dtype=bool)
    for k in range(n_classes):
        mask[labels == k] = _inside(k, u[labels == k], v[labels == k])

    # Colours: uniform RGB, the foreground redrawn until its luma differs enough from the background.
    background = rng.uniform(0, 1, (count, 3)).astype(f32)
    foreground = rng.uniform(0, 1, (count, 3)).astype(f32)
    redraw = np.abs((foreground - background) @ LUMA) < MIN_LUMA_GAP
    while redraw.any():
        foreground[redraw] = rng.uniform(0, 1, (int(redraw.sum()), 3))
        redraw = np.abs((foreground - background) @ LUMA) < MIN_LUMA_GAP
    images = np.where(mask[:, None], foreground[..., None, None], background[..., None, None])

    # Nuisances: a lighting gradient, clutter dots, pixel noise.
    direction, strength = rng.uniform(0, 2 * np.pi, count), rng.uniform(0, 0.25, count)
    gradient = np.cos(direction)[:, None, None] * gx + np.sin(direction)[:, None, None] * gy
    images = images * (1 + strength[:, None, None] * gradient).astype(f32)[:, None]
    dots = rng.integers(0, MAX_DOTS + 1, count)
    for d in range(MAX_DOTS):
        px, py = rng.uniform(-1, 1, (2, count)).astype(f32)
        radius = rng.uniform(0.06, 0.12, count).astype(f32)
        colour = rng.uniform(0, 1, (count, 3)).astype(f32)
        dist = np.hypot(gx - px[:, None, None], gy - py[:, None, None])
        dot = (dist < radius[:, None, None]) & (dots > d)[:, None, None]
        images = np.where(dot[:, None], colour[..., None, None], images)
    noise = rng.uniform(0, 0.06, count).astype(f32)[:, None, None, None]
    images = images + noise * rng.standard_normal(images.shape, dtype=f32)
    pixels = np.clip(np.rint(images * 255), 0, 255).astype(np.uint8)
    return pixels, labels.astype(np.int64)
