"""Procedural street scenes from a seed: label map, instance map and a simple rendering.

They stand in for a dataset in demos and tests. The world is a flat street seen by a
pinhole camera at height ``cam_h``: a ground point at lateral offset X and depth Z lands at
column ``x_v + f·X/Z`` and row ``y_h + f·cam_h/Z``, so the road, its markings and the
pavements follow the perspective exactly; facades, fences and tree lines are vertical
planes parallel to the street, projected column by column; cars, people, poles, signs and
trees are upright flat objects painted far to near, so nearer ones occlude farther ones.

Same seed and size, same scene, on every platform: randomness comes only from PCG64 doubles
(``Generator.random``, whose stream NumPy keeps stable) and the geometry only from + − × ÷,
floor, remainder and comparisons, which IEEE arithmetic computes identically everywhere.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import NamedTuple

import numpy as np

from qgesco.data.classes import CITYSCAPES_INSTANCE_CLASSES, scheme_classes
from qgesco.data.datasets import SceneDataset
from qgesco.data.transforms import SceneTransform


class Part(enum.IntEnum):
    """What the generator paints; each class scheme maps these onto its own classes."""

    SKY = 0
    BUILDING = 1
    POLE = 2
    ROAD = 3
    SIDEWALK = 4
    VEGETATION = 5
    SIGN = 6
    TRAFFIC_LIGHT = 7
    FENCE = 8
    CAR = 9
    PERSON = 10
    RIDER = 11
    BICYCLE = 12
    TERRAIN = 13
    EGO_VEHICLE = 14
    CLUTTER = 15


#: Part -> class index. CamVid merges sign and light (SignSymbol), rider and bicycle
#: (Bicyclist), grass with trees; the ego vehicle's bonnet and street clutter are Unlabelled.
PART_TO_CLASS: dict[str, np.ndarray] = {
    "camvid": np.array([0, 1, 2, 3, 4, 5, 6, 6, 7, 8, 9, 10, 10, 5, 11, 11], np.uint8),
    "cityscapes": np.array([23, 11, 17, 7, 8, 21, 20, 19, 13, 26, 24, 25, 33, 22, 1, 4], np.uint8),
}


class Scene(NamedTuple):
    """``label`` (H, W) uint8 class indices; ``instance`` (H, W) int32; ``rgb`` (H, W, 3) uint8.

    Instances follow the scheme's convention: CamVid scheme — 1..K for each object (car,
    person, cyclist, pole, sign, tree, clutter), 0 elsewhere; Cityscapes scheme — the official
    ``label_id * 1000 + k`` on person/rider/car/bicycle pixels, the plain label id elsewhere.
    """

    label: np.ndarray
    instance: np.ndarray
    rgb: np.ndarray


MIN_SIZE = 16


def street_scene(seed: int, height: int, width: int, scheme: str = "camvid") -> Scene:
    """The street scene of ``seed`` at ``height`` x ``width`` pixels in class ``scheme``."""
    scheme_classes(scheme)
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if height < MIN_SIZE or width < MIN_SIZE:
        raise ValueError(f"scenes need at least {MIN_SIZE}x{MIN_SIZE} pixels, got {height}x{width}")
    canvas = _Canvas(int(height), int(width), _Dice(int(seed)))
    _compose(canvas)
    label = PART_TO_CLASS[scheme][canvas.part]
    if scheme == "camvid":
        instance = _consecutive_ids(canvas.obj)
    else:
        instance = _cityscapes_instances(label, canvas.obj)
    return Scene(label, instance, canvas.finish_rgb())


class _Dice:
    """Uniform draws built from ``Generator.random`` alone (see the module docstring).

    Texture noise comes from a second stream, so the layout a seed draws is the same at every
    resolution of the same aspect ratio.
    """

    def __init__(self, seed: int):
        layout, texture = np.random.SeedSequence(seed).spawn(2)
        self._rng = np.random.Generator(np.random.PCG64(layout))
        self._texture = np.random.Generator(np.random.PCG64(texture))

    def uniform(self, low: float, high: float) -> float:
        return low + (high - low) * float(self._rng.random())

    def chance(self, p: float) -> bool:
        return float(self._rng.random()) < p

    def integer(self, low: int, high: int) -> int:
        """An integer in ``low..high`` inclusive."""
        return min(high, low + int(float(self._rng.random()) * (high - low + 1)))

    def pick(self, options):
        return options[self.integer(0, len(options) - 1)]

    def noise(self, shape: tuple[int, ...]) -> np.ndarray:
        return self._texture.random(shape)


Colour = tuple[float, float, float]


class _Canvas:
    """The camera, the painted arrays and the primitives that paint them."""

    def __init__(self, height: int, width: int, dice: _Dice):
        self.h, self.w, self.dice = height, width, dice
        self.f = width * dice.uniform(0.75, 1.0)
        self.x_v = width * dice.uniform(0.4, 0.6)
        self.y_h = height * dice.uniform(0.36, 0.48)
        self.cam_h = dice.uniform(1.3, 1.6)
        self.part = np.full((height, width), Part.SKY, np.uint8)
        self.obj = np.zeros((height, width), np.int32)
        self.rgb = np.zeros((height, width, 3), np.float32)
        self._next_obj = 1
        self.x_centres = np.arange(width) + 0.5
        self.y_centres = np.arange(height) + 0.5
        #: Nearest depth the bottom image row shows.
        self.z_bottom = self.f * self.cam_h / (height - self.y_h)

    def new_object(self) -> int:
        self._next_obj += 1
        return self._next_obj - 1

    def paint(self, rows: slice, cols: slice, mask: np.ndarray, part, colour, obj: int = 0) -> None:
        """Set part, object id and colour where ``mask`` holds within the region ``rows, cols``;
        ``part`` and ``colour`` may be per-pixel arrays of the region."""
        self.part[rows, cols][mask] = np.broadcast_to(np.asarray(part, np.uint8), mask.shape)[mask]
        self.obj[rows, cols][mask] = obj
        self.rgb[rows, cols][mask] = np.broadcast_to(np.asarray(colour, np.float32), mask.shape + (3,))[mask]

    def region(self, x0: float, x1: float, y0: float, y1: float) -> tuple[slice, slice] | None:
        """Pixel rows and columns whose centres may lie in ``[x0, x1) x [y0, y1)``; None when off-image."""
        c0, c1 = max(0, int(np.floor(x0))), min(self.w, int(np.ceil(x1)))
        r0, r1 = max(0, int(np.floor(y0))), min(self.h, int(np.ceil(y1)))
        return (slice(r0, r1), slice(c0, c1)) if c0 < c1 and r0 < r1 else None

    def vertical_plane(
        self,
        side: int,
        distance: float,
        z_range: tuple[float, float],
        top: Callable[[np.ndarray], np.ndarray],
        part: Part,
        colour: Callable[[np.ndarray, np.ndarray], np.ndarray],
        obj: int = 0,
    ) -> None:
        """A plane parallel to the street at lateral ``side * distance`` between depths ``z_range``.

        ``top(Z)`` gives its height (m) at depth Z (0: no plane there); ``colour(Z, v)`` the RGB at
        depth Z and height v above the ground.
        """
        offset = side * (self.x_centres - self.x_v)
        cols = np.flatnonzero(offset > 0)  # the plane's half of the image, a contiguous run
        if cols.size == 0:
            return
        z = self.f * distance / offset[cols]
        heights = np.where((z >= z_range[0]) & (z <= z_range[1]), top(z), 0.0)
        shown = heights > 0
        if not shown.any():
            return
        y_top = self.y_h - self.f * (heights - self.cam_h) / z
        y_bottom = self.y_h + self.f * self.cam_h / z
        region = self.region(cols[0], cols[-1] + 1, y_top[shown].min(), y_bottom[shown].max())
        if region is None:
            return
        rows, col_slice = region
        ys = self.y_centres[rows][:, None]
        v = self.cam_h - (ys - self.y_h) * z / self.f
        colours = colour(np.broadcast_to(z, v.shape), v)
        self.paint(rows, col_slice, shown & (ys >= y_top) & (ys < y_bottom), part, colours, obj)

    def finish_rgb(self) -> np.ndarray:
        """Add sensor-like grain and quantise to uint8."""
        grain = (self.dice.noise(self.rgb.shape[:2]) - 0.5) * 14.0
        return np.clip(self.rgb + grain[..., None] + 0.5, 0, 255).astype(np.uint8)


class _Billboard:
    """An upright flat object at depth ``z``: shapes in metres (``dx`` across from its centre
    line, ``h`` above the ground) land on pixels through one scale, ``f / z``."""

    def __init__(self, canvas: _Canvas, x: float, z: float, obj: int = 0):
        self.canvas, self.obj = canvas, obj
        self.scale = canvas.f / z
        self.cx = canvas.x_v + self.scale * x
        self.ground = canvas.y_h + self.scale * canvas.cam_h

    def trapezoid(
        self, h0: float, h1: float, bottom: tuple[float, float], top: tuple[float, float], part: Part, colour: Colour
    ) -> None:
        """Horizontal edges at heights ``h0 < h1`` spanning ``bottom`` and ``top`` (dx left, dx right)."""
        s, c = self.scale, self.canvas
        y0, y1 = self.ground - s * h1, self.ground - s * h0
        region = c.region(self.cx + s * min(bottom[0], top[0]), self.cx + s * max(bottom[1], top[1]), y0, y1)
        if region is None:
            return
        rows, cols = region
        ys, xs = c.y_centres[rows][:, None], c.x_centres[cols][None, :]
        t = (y1 - ys) / (y1 - y0)
        left = self.cx + s * (bottom[0] + t * (top[0] - bottom[0]))
        right = self.cx + s * (bottom[1] + t * (top[1] - bottom[1]))
        c.paint(rows, cols, (ys >= y0) & (ys < y1) & (xs >= left) & (xs < right), part, colour, self.obj)

    def rect(self, dx0: float, dx1: float, h0: float, h1: float, part: Part, colour: Colour) -> None:
        self.trapezoid(h0, h1, (dx0, dx1), (dx0, dx1), part, colour)

    def ellipse(self, dx: float, h: float, rx: float, rh: float, part: Part, colour: Colour) -> None:
        s, c = self.scale, self.canvas
        cx, cy, ax, ay = self.cx + s * dx, self.ground - s * h, s * rx, s * rh
        region = c.region(cx - ax, cx + ax, cy - ay, cy + ay)
        if region is None:
            return
        rows, cols = region
        u = (c.x_centres[cols][None, :] - cx) / ax
        v = (c.y_centres[rows][:, None] - cy) / ay
        c.paint(rows, cols, u * u + v * v <= 1.0, part, colour, self.obj)


def _shade(colour: Colour, factor: float) -> Colour:
    return tuple(min(255.0, ch * factor) for ch in colour)


# Colours (RGB 0..255) the rendering draws from.
_CAR_PAINTS = [
    (230, 230, 228),
    (25, 25, 30),
    (160, 162, 168),
    (150, 25, 25),
    (30, 50, 120),
    (90, 95, 100),
    (40, 80, 50),
    (200, 170, 60),
]
_CLOTHES = [(40, 40, 60), (120, 30, 40), (60, 80, 120), (200, 200, 190), (90, 70, 50), (30, 90, 70), (170, 120, 60)]
_SKIN = [(230, 190, 160), (190, 140, 100), (120, 80, 55)]
_FACADES = [
    (170, 120, 90),
    (200, 190, 170),
    (150, 150, 150),
    (120, 70, 55),
    (215, 205, 180),
    (100, 100, 110),
    (185, 160, 120),
]
_GREENS = [(60, 110, 40), (45, 90, 35), (85, 120, 50), (70, 100, 60)]


def _compose(c: _Canvas) -> None:
    """Draw a whole scene: sky, ground, far buildings, side planes, then objects far to near."""
    d = c.dice
    light = d.uniform(0.8, 1.1)
    lanes = d.pick([2, 2, 3, 4])
    street = _Street(
        lane_w=d.uniform(3.0, 3.6),
        lanes=lanes,
        ego_lane=d.integer(0, lanes - 1) + d.uniform(0.3, 0.7),
        pavement={s: d.uniform(1.8, 4.5) for s in (-1, 1)},
        sides={
            s: d.pick(["buildings", "buildings", "buildings", "buildings", "trees", "trees", "fence"]) for s in (-1, 1)
        },
    )
    z_far = d.uniform(70.0, 140.0) if d.chance(0.7) else None
    z_end = z_far if z_far is not None else 400.0

    _sky(c, light, overcast=d.chance(0.5))
    _ground(c, street, light)
    if z_far is not None:
        _far_buildings(c, z_far, light)
    for s in (-1, 1):
        _side(c, s, street, z_end, light)
    objects: list[tuple[float, Callable[[], None]]] = []
    z_near, z_last = 0.8 * c.z_bottom, min(z_end - 5.0, 90.0)
    _traffic(c, objects, street, z_near, z_last, light)
    _street_furniture(c, objects, street, z_near, z_last, light)
    for _, draw in sorted(objects, key=lambda item: -item[0]):
        draw()
    if d.chance(0.3):
        _ego_bonnet(c, light)


@dataclass
class _Street:
    """The street's cross-section in metres; the camera sits at lateral 0, ``ego_lane`` lanes from the left kerb."""

    lane_w: float
    lanes: int
    ego_lane: float
    pavement: dict[int, float]
    sides: dict[int, str]

    @property
    def road_left(self) -> float:
        return -self.ego_lane * self.lane_w

    @property
    def road_right(self) -> float:
        return self.road_left + self.lanes * self.lane_w

    def kerb(self, side: int) -> float:
        """Lateral distance from the camera to the kerb on ``side`` (-1 left, 1 right)."""
        return -self.road_left if side < 0 else self.road_right

    def frontage(self, side: int) -> float:
        """Lateral distance to the outer edge of the pavement, where facades and fences stand."""
        return self.kerb(side) + self.pavement[side]


def _sky(c: _Canvas, light: float, overcast: bool) -> None:
    top, horizon = ((175, 180, 190), (215, 218, 222)) if overcast else ((70, 120, 200), (170, 200, 230))
    t = np.clip(c.y_centres / max(c.y_h, 1.0), 0, 1)[:, None, None]
    c.rgb[:] = (np.asarray(top) * (1 - t) + np.asarray(horizon) * t) * light


def _ground(c: _Canvas, street: _Street, light: float) -> None:
    """Road with lane markings, pavements with slabs and what lies beyond, each pixel by its ground (X, Z)."""
    d = c.dice
    first_row = int(np.floor(c.y_h + 0.5))  # first row whose centre lies below the horizon
    region = c.region(0, c.w, first_row, c.h)
    if region is None:
        return
    rows, cols = region
    below = c.y_centres[rows][:, None] - c.y_h
    x = (c.x_centres[cols][None, :] - c.x_v) * c.cam_h / below
    z = np.broadcast_to(c.f * c.cam_h / below, x.shape)
    side = np.where(x < 0, -1, 1)
    lateral = np.abs(x)
    road = (x >= street.road_left) & (x <= street.road_right)
    kerb = np.where(side < 0, street.kerb(-1), street.kerb(1))
    walk = ~road & (lateral <= np.where(side < 0, street.frontage(-1), street.frontage(1)))

    part = np.where(road, Part.ROAD, Part.SIDEWALK).astype(np.uint8)
    colour = np.empty(x.shape + (3,), np.float32)
    colour[:] = _shade((92, 92, 96), light * d.uniform(0.85, 1.15))
    paint_white = _shade((232, 232, 224), light)
    dashes = ((z + d.uniform(0, 9)) % 9.0) < 3.0
    for k in range(1, street.lanes):
        colour[road & (np.abs(x - (street.road_left + k * street.lane_w)) < 0.08) & dashes] = paint_white
    for edge in (street.road_left, street.road_right):
        colour[road & (np.abs(x - edge) > 0.2) & (np.abs(x - edge) < 0.32)] = paint_white
    if d.chance(0.35):
        z0 = d.uniform(8, 25)
        colour[road & (z > z0) & (z < z0 + 3.0) & ((x % 1.0) < 0.5)] = paint_white
    stone = np.asarray(_shade((165, 160, 150), light), np.float32)
    colour[walk] = stone
    colour[walk & (((x % 1.2) < 0.06) | ((z % 1.2) < 0.06))] = stone * 0.85
    colour[walk & (lateral - kerb < 0.15)] = stone * 1.12
    for s in (-1, 1):
        beyond = ~road & ~walk & (side == s)
        if street.sides[s] == "buildings":
            colour[beyond] = stone * 0.92
        else:
            part[beyond] = Part.TERRAIN
            colour[beyond] = _shade(d.pick(_GREENS), light * 1.1)
    c.paint(rows, cols, np.ones(x.shape, bool), part, colour)


def _building_row(
    c: _Canvas,
    side: int,
    distance: float,
    z_range: tuple[float, float],
    light: float,
    heights: tuple[float, float],
    gap_chance: float,
) -> None:
    """Facades of varied height, width and colour along the street, with windows in perspective."""
    d = c.dice
    starts, tops, paints = [], [], []
    z = z_range[0] - d.uniform(0, 10)
    while z < z_range[1]:
        starts.append(z)
        tower = d.chance(0.1)
        tops.append(0.0 if d.chance(gap_chance) else d.uniform(*((25.0, 45.0) if tower else heights)))
        paints.append(_shade(d.pick(_FACADES), light * d.uniform(0.8, 1.1)))
        z += d.uniform(6, 25)
    starts_a, tops_a, paints_a = np.array(starts), np.array(tops), np.array(paints, np.float32)
    bay, storey = d.uniform(2.5, 4.0), d.uniform(2.8, 3.5)
    glass = np.asarray(_shade((60, 72, 92), light), np.float32)

    def segment(z: np.ndarray) -> np.ndarray:
        return np.clip(np.searchsorted(starts_a, z, side="right") - 1, 0, len(starts_a) - 1)

    def colour(z: np.ndarray, v: np.ndarray) -> np.ndarray:
        seg = segment(z)
        out = paints_a[seg]
        storey_v = v % storey
        windows = (((z - starts_a[seg]) % bay) > 0.35 * bay) & (storey_v > 0.9) & (storey_v < 2.3)
        out[windows & (v > 3.0) & (v < tops_a[seg] - 1.0)] = glass
        out[v < 0.4] *= 0.7
        return out

    c.vertical_plane(side, distance, z_range, lambda z: tops_a[segment(z)], Part.BUILDING, colour)


def _piecewise_linear(knots: np.ndarray, values: np.ndarray, z: np.ndarray) -> np.ndarray:
    """``np.interp`` spelled out in separate ufuncs: compiled interp may fuse multiply-adds on
    some platforms, which would break bit-identical scenes."""
    i = np.clip(np.searchsorted(knots, z), 1, len(knots) - 1)
    t = (z - knots[i - 1]) / (knots[i] - knots[i - 1])
    return values[i - 1] + t * (values[i] - values[i - 1])


def _textured(c: _Canvas, base: Colour, spread: float) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """A colour function for planes: ``base`` with per-pixel brightness noise (foliage, hedges)."""

    def colour(z: np.ndarray, v: np.ndarray) -> np.ndarray:
        return np.asarray(base, np.float32) * (1 - spread + 2 * spread * c.dice.noise(z.shape)[..., None]).astype(
            np.float32
        )

    return colour


def _far_buildings(c: _Canvas, z_far: float, light: float) -> None:
    """A row of buildings closing the street at depth ``z_far``."""
    d = c.dice
    half_span = z_far * c.w / c.f
    x = -half_span - d.uniform(0, 10)
    while x < half_span:
        width = d.uniform(8, 22)
        _Billboard(c, x + width / 2, z_far).rect(
            -width / 2, width / 2, 0, d.uniform(8, 30), Part.BUILDING, _shade(d.pick(_FACADES), light * 0.9)
        )
        x += width + (d.uniform(2, 10) if d.chance(0.2) else 0.0)


def _side(c: _Canvas, side: int, street: _Street, z_end: float, light: float) -> None:
    """What lines one side: buildings (with taller ones behind), a tree line, or a fence before open ground."""
    d = c.dice
    kind, frontage = street.sides[side], street.frontage(side)
    if kind != "trees" and d.chance(0.6):
        _building_row(c, side, frontage + d.uniform(15, 30), (1.0, z_end), light * 0.9, (10.0, 30.0), gap_chance=0.3)
    if kind == "buildings":
        _building_row(c, side, frontage, (1.0, z_end), light, (6.0, 20.0), gap_chance=0.12)
        if d.chance(0.3):
            z0 = d.uniform(2, 20)
            fence_h = d.uniform(0.8, 1.4)
            c.vertical_plane(
                side,
                frontage - 0.3,
                (z0, z0 + d.uniform(8, 30)),
                lambda z: np.full_like(z, fence_h),
                Part.FENCE,
                _textured(c, _shade((110, 95, 80), light), 0.25),
            )
    elif kind == "trees":
        knots = np.arange(0.0, z_end + 8.0, 4.0)
        crowns = np.array([d.uniform(6.0, 14.0) for _ in knots])
        c.vertical_plane(
            side,
            frontage + d.uniform(3, 8),
            (1.0, z_end),
            partial(_piecewise_linear, knots, crowns),
            Part.VEGETATION,
            _textured(c, _shade(d.pick(_GREENS), light), 0.3),
        )
        if d.chance(0.5):
            hedge_h = d.uniform(0.8, 1.5)
            c.vertical_plane(
                side,
                frontage + 0.3,
                (1.0, z_end),
                lambda z: np.full_like(z, hedge_h),
                Part.VEGETATION,
                _textured(c, _shade(d.pick(_GREENS), light * 0.9), 0.3),
            )
    else:
        fence_h = d.uniform(1.0, 2.0)
        c.vertical_plane(
            side,
            frontage + 0.2,
            (1.0, z_end),
            lambda z: np.full_like(z, fence_h),
            Part.FENCE,
            _textured(c, _shade((120, 120, 125), light), 0.25),
        )


def _car(c: _Canvas, x: float, z: float, paint: Colour, width: float, height: float, light: float) -> None:
    """A car seen from behind: wheels, body, cabin, rear window, lights."""
    b, w = _Billboard(c, x, z, c.new_object()), width / 2
    body, dark = _shade(paint, light), _shade((22, 22, 24), light)
    for dx in (-w + 0.1, w - 0.42):
        b.rect(dx, dx + 0.32, 0.0, 0.42, Part.CAR, dark)
    b.rect(-w, w, 0.25, 0.62 * height, Part.CAR, body)
    b.trapezoid(0.62 * height, height, (-0.92 * w, 0.92 * w), (-0.7 * w, 0.7 * w), Part.CAR, _shade(body, 0.9))
    glass = _shade((55, 65, 80), light)
    b.trapezoid(0.66 * height, 0.94 * height, (-0.82 * w, 0.82 * w), (-0.66 * w, 0.66 * w), Part.CAR, glass)
    for dx in (-w + 0.05, w - 0.3):
        b.rect(dx, dx + 0.25, 0.46 * height, 0.56 * height, Part.CAR, _shade((200, 30, 30), light))
    b.rect(-0.26, 0.26, 0.3 * height, 0.4 * height, Part.CAR, _shade((235, 235, 225), light))


def _person(
    c: _Canvas, x: float, z: float, height: float, top: Colour, legs: Colour, skin: Colour, stride: float, light: float
) -> None:
    """A pedestrian: striding legs, torso, arms, head."""
    b, h = _Billboard(c, x, z, c.new_object()), height
    b.trapezoid(0.0, 0.48 * h, (-0.14 - stride, -0.03 - stride), (-0.14, -0.02), Part.PERSON, _shade(legs, light))
    b.trapezoid(0.0, 0.48 * h, (0.03 + stride, 0.14 + stride), (0.02, 0.14), Part.PERSON, _shade(legs, light))
    b.trapezoid(0.46 * h, 0.82 * h, (-0.17, 0.17), (-0.2, 0.2), Part.PERSON, _shade(top, light))
    for dx in (-0.26, 0.19):
        b.rect(dx, dx + 0.07, 0.5 * h, 0.8 * h, Part.PERSON, _shade(top, light * 0.9))
    b.ellipse(0.0, 0.91 * h, 0.1, 0.08 * h, Part.PERSON, _shade(skin, light))
    b.ellipse(0.0, 0.95 * h, 0.1, 0.045 * h, Part.PERSON, _shade((40, 30, 25), light))


def _cyclist(c: _Canvas, x: float, z: float, top: Colour, legs: Colour, skin: Colour, light: float) -> None:
    """A cyclist from behind: one object, the bicycle under its rider."""
    b = _Billboard(c, x, z, c.new_object())
    frame = _shade((35, 35, 40), light)
    b.rect(-0.035, 0.035, 0.0, 0.7, Part.BICYCLE, frame)
    b.rect(-0.03, 0.03, 0.7, 1.0, Part.BICYCLE, frame)
    b.rect(-0.3, 0.3, 1.0, 1.05, Part.BICYCLE, frame)
    for dx in (-0.15, 0.05):
        b.rect(dx, dx + 0.1, 0.3, 0.95, Part.RIDER, _shade(legs, light))
    b.trapezoid(0.95, 1.5, (-0.18, 0.18), (-0.2, 0.2), Part.RIDER, _shade(top, light))
    for dx in (-0.29, 0.21):
        b.rect(dx, dx + 0.08, 1.05, 1.45, Part.RIDER, _shade(top, light * 0.9))
    b.ellipse(0.0, 1.6, 0.1, 0.12, Part.RIDER, _shade(skin, light))
    b.ellipse(0.0, 1.67, 0.12, 0.07, Part.RIDER, _shade((220, 200, 40), light))


def _pole(c: _Canvas, x: float, z: float, kind: str, toward_road: int, sign_shape: str, light: float) -> None:
    """A street lamp, a sign post or a traffic light; the sign or light is an object of its own."""
    metal = _shade((115, 118, 120), light)
    b = _Billboard(c, x, z, c.new_object())
    height = {"lamp": 7.5, "sign": 2.3, "light": 3.0}[kind]
    b.rect(-0.09, 0.09, 0.0, height, Part.POLE, metal)
    if kind == "lamp":
        tip = toward_road * 1.8
        b.rect(min(0.0, tip), max(0.0, tip), height - 0.12, height, Part.POLE, metal)
        b.rect(min(tip, 0.7 * tip), max(tip, 0.7 * tip), height - 0.3, height - 0.05, Part.POLE, metal)
        return
    head = _Billboard(c, x, z, c.new_object())
    if kind == "light":
        head.rect(-0.17, 0.17, 3.0, 3.9, Part.TRAFFIC_LIGHT, _shade((30, 30, 30), light))
        for h, lamp in ((3.75, (220, 40, 30)), (3.45, (90, 70, 20)), (3.15, (40, 90, 40))):
            head.ellipse(0.0, h, 0.1, 0.1, Part.TRAFFIC_LIGHT, _shade(lamp, light))
    elif sign_shape == "round":
        head.ellipse(0.0, 2.65, 0.35, 0.35, Part.SIGN, _shade((200, 30, 30), light))
        head.ellipse(0.0, 2.65, 0.25, 0.25, Part.SIGN, _shade((240, 240, 240), light))
    elif sign_shape == "triangle":
        head.trapezoid(2.3, 2.95, (-0.4, 0.4), (0.0, 0.0), Part.SIGN, _shade((200, 30, 30), light))
        head.trapezoid(2.4, 2.75, (-0.25, 0.25), (-0.03, 0.03), Part.SIGN, _shade((240, 240, 240), light))
    else:
        head.rect(-0.45, 0.45, 2.3, 2.95, Part.SIGN, _shade((30, 70, 160), light))


def _tree(
    c: _Canvas,
    x: float,
    z: float,
    trunk: float,
    crown: list[tuple[float, float, float, float]],
    green: Colour,
    light: float,
) -> None:
    """A street tree: trunk and a crown of overlapping ellipses."""
    b = _Billboard(c, x, z, c.new_object())
    b.rect(-0.15, 0.15, 0.0, trunk + 0.5, Part.VEGETATION, _shade((90, 65, 45), light))
    for i, (dx, h, rx, rh) in enumerate(crown):
        b.ellipse(dx, trunk + h, rx, rh, Part.VEGETATION, _shade(green, light * (0.85 + 0.08 * i)))


def _clutter(c: _Canvas, x: float, z: float, kind: str, light: float) -> None:
    """Unlabelled street clutter: a bin or a utility cabinet."""
    b = _Billboard(c, x, z, c.new_object())
    if kind == "bin":
        b.rect(-0.28, 0.28, 0.0, 0.95, Part.CLUTTER, _shade((40, 70, 50), light))
        b.rect(-0.32, 0.32, 0.95, 1.05, Part.CLUTTER, _shade((30, 50, 40), light))
    else:
        b.rect(-0.45, 0.45, 0.0, 1.3, Part.CLUTTER, _shade((150, 150, 140), light))


def _traffic(c: _Canvas, objects: list, street: _Street, z_near: float, z_last: float, light: float) -> None:
    """Cars in the lanes and parked along the kerbs, and cyclists by the kerb."""
    d = c.dice

    def add_car(x: float, z: float) -> None:
        van = d.chance(0.15)
        width, height = (
            (d.uniform(1.9, 2.1), d.uniform(1.9, 2.3)) if van else (d.uniform(1.7, 1.9), d.uniform(1.35, 1.6))
        )
        objects.append((z, partial(_car, c, x, z, d.pick(_CAR_PAINTS), width, height, light)))

    for lane in range(street.lanes):
        x = street.road_left + (lane + 0.5) * street.lane_w
        z = z_near + d.uniform(3, 15)
        while z < z_last and d.chance(0.6):
            add_car(x + d.uniform(-0.3, 0.3), z)
            z += d.uniform(8, 25)
    parked = {s: d.chance(0.55) for s in (-1, 1)}
    for s in (-1, 1):
        z = z_near + d.uniform(0, 6)
        while parked[s] and z < min(z_last, 60.0):
            if d.chance(0.75):
                add_car(s * (street.kerb(s) - 1.1), z)
            z += d.uniform(5, 7.5)
    for _ in range(d.integer(1, 2) if d.chance(0.6) else 0):
        s = d.pick([-1, 1])
        x, z = s * (street.kerb(s) - (2.7 if parked[s] else 0.8)), d.uniform(z_near + 2, 35.0)
        objects.append((z, partial(_cyclist, c, x, z, d.pick(_CLOTHES), d.pick(_CLOTHES), d.pick(_SKIN), light)))


def _street_furniture(c: _Canvas, objects: list, street: _Street, z_near: float, z_last: float, light: float) -> None:
    """Pedestrians, poles with lamps, signs and lights, street trees and clutter on the pavements."""
    d = c.dice
    for _ in range(d.integer(0, 6)):
        s = d.pick([-1, 1])
        x, z = s * (street.kerb(s) + d.uniform(0.4, street.pavement[s] - 0.3)), d.uniform(z_near + 1, 40.0)
        objects.append(
            (
                z,
                partial(
                    _person,
                    c,
                    x,
                    z,
                    d.uniform(1.55, 1.9),
                    d.pick(_CLOTHES),
                    d.pick(_CLOTHES),
                    d.pick(_SKIN),
                    d.uniform(0.0, 0.12),
                    light,
                ),
            )
        )
    for s in (-1, 1):
        z = z_near + d.uniform(0, 12)
        while z < z_last:
            kind = d.pick(["lamp", "lamp", "sign", "sign", "light"])
            objects.append(
                (
                    z,
                    partial(
                        _pole,
                        c,
                        s * (street.kerb(s) + 0.35),
                        z,
                        kind,
                        -s,
                        d.pick(["round", "triangle", "plate"]),
                        light,
                    ),
                )
            )
            z += d.uniform(12, 30)
        trees = street.sides[s] == "trees" or d.chance(0.5)
        spacing = (5.0, 9.0) if street.sides[s] == "trees" else (8.0, 16.0)
        offset = d.uniform(0.5, 2.0) if street.sides[s] == "trees" else -0.9
        z = z_near + d.uniform(0, 8)
        while trees and z < z_last:
            crown = [
                (d.uniform(-0.8, 0.8), d.uniform(0.8, 2.2), d.uniform(1.2, 2.4), d.uniform(1.2, 2.2))
                for _ in range(d.integer(3, 5))
            ]
            objects.append(
                (
                    z,
                    partial(
                        _tree,
                        c,
                        s * (street.frontage(s) + offset),
                        z,
                        d.uniform(1.8, 3.0),
                        crown,
                        d.pick(_GREENS),
                        light,
                    ),
                )
            )
            z += d.uniform(*spacing)
    for _ in range(d.integer(1, 3) if d.chance(0.5) else 0):
        s = d.pick([-1, 1])
        z = d.uniform(z_near + 1, 30.0)
        objects.append((z, partial(_clutter, c, s * (street.frontage(s) - 0.5), z, d.pick(["bin", "cabinet"]), light)))


def _ego_bonnet(c: _Canvas, light: float) -> None:
    """The recording car's bonnet along the bottom edge."""
    d = c.dice
    depth = c.h * d.uniform(0.06, 0.12)
    region = c.region(0, c.w, c.h - depth, c.h)
    if region is None:
        return
    rows, cols = region
    u = (c.x_centres[cols][None, :] - c.w / 2) / (c.w / 2)
    top = c.h - depth + 0.5 * depth * u * u
    ys = c.y_centres[rows][:, None]
    shine = np.clip((ys - top) / depth, 0, 1)[..., None]
    colour = np.asarray(_shade(d.pick(_CAR_PAINTS), light), np.float32) * (0.6 + 0.4 * shine)
    c.paint(rows, cols, ys >= top, Part.EGO_VEHICLE, colour)


def _consecutive_ids(obj: np.ndarray) -> np.ndarray:
    """Object ids renumbered 1..K over the objects left visible; 0 stays 0."""
    present = np.unique(obj[obj > 0])
    lookup = np.zeros(int(obj.max()) + 1, np.int32)
    lookup[present] = np.arange(1, present.size + 1, dtype=np.int32)
    return lookup[obj]


def _cityscapes_instances(label: np.ndarray, obj: np.ndarray) -> np.ndarray:
    """Cityscapes' encoding: ``label_id * 1000 + k`` per visible thing, ``k`` counting from 0 per class."""
    instance = label.astype(np.int32)
    things = (obj > 0) & np.isin(label, sorted(CITYSCAPES_INSTANCE_CLASSES))
    keys, inverse = np.unique(obj[things].astype(np.int64) * 256 + label[things], return_inverse=True)
    classes = keys % 256
    index = np.zeros(keys.size, np.int64)
    for cls in np.unique(classes):
        index[classes == cls] = np.arange(int((classes == cls).sum()))
    instance[things] = (classes * 1000 + index)[inverse.ravel()]
    return instance


class SyntheticScenes(SceneDataset):
    """``n`` street scenes (scene ``i`` is :func:`street_scene` of seed ``seed + i``) as a dataset.

    Scenes are drawn directly at the transform's resize size, so there is nothing to cache.
    ``instances`` defaults to what the scheme's real dataset has (Cityscapes: yes, CamVid: no),
    so synthetic scenes can stand in for it in front of a model trained on it.
    """

    def __init__(
        self,
        n: int,
        *,
        image_hw: tuple[int, int],
        scheme: str = "camvid",
        train: bool = False,
        seed: int = 0,
        crop_margin: float | None = None,
        instances: bool | None = None,
    ):
        super().__init__(SceneTransform(image_hw, train, crop_margin), seed)
        if not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"the number of synthetic scenes must be a positive integer, got {n!r}")
        self.n, self.scheme = int(n), scheme
        self.class_names = scheme_classes(scheme)
        self.has_instances = scheme == "cityscapes" if instances is None else bool(instances)

    def __len__(self) -> int:
        return self.n

    def resized(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, str]:
        scene_seed = self.seed + index
        scene = street_scene(scene_seed, *self.transform.resize_hw, scheme=self.scheme)
        return scene.rgb, scene.label, scene.instance if self.has_instances else None, f"synthetic_{scene_seed:06d}"
