"""The person in every sample photo: a look, a posed body, the framing of a shot, and the drawing.

    from landmark_lora.synthetic.person import POSES, Pen, draw_person, frame_shot, pose_body, random_look
    body = pose_body("waving", head_factor=1.0, rng=rng)       # joints in standing units
    scale, cx, oy = frame_shot("upper_body", body, width, height, rng)
    draw_person(Pen(img, mask, cx, oy, scale), body, random_look(rng))   # mask: 255 on the person

A stylised person stands in front of the background, posed by the pose text (``POSES``) and
framed by the shot type; ``Pen`` draws onto the photo and, for the person, onto a mask.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
from PIL import Image, ImageDraw

from landmark_lora.synthetic.canvas import RGB, Pt, mix, shade

T = TypeVar("T")

POSES: tuple[str, ...] = (
    "standing relaxed",
    "waving",
    "making a peace sign",
    "hands on hips",
    "arms crossed",
    "pointing at the landmark",
    "sitting on steps",
)


# ---------------------------------------------------------------- the person


@dataclass(frozen=True)
class Look:
    skin: RGB
    hair: RGB
    hair_style: str  # short | long | bun
    top: RGB
    long_sleeves: bool
    bottom: RGB
    bottom_kind: str  # pants | shorts | skirt
    shoes: RGB


def random_look(rng: np.random.Generator) -> Look:
    def pick(options: list[T]) -> T:
        return options[int(rng.integers(len(options)))]

    return Look(
        skin=pick([(242, 204, 176), (228, 186, 150), (206, 160, 124), (170, 122, 90)]),
        hair=pick([(24, 20, 20), (42, 30, 24), (74, 50, 34), (112, 78, 46)]),
        hair_style=pick(["short", "long", "bun"]),
        top=pick([(200, 40, 48), (246, 246, 242), (34, 52, 92), (240, 196, 60), (60, 130, 90),
                  (236, 150, 170), (130, 134, 140), (30, 30, 34), (90, 160, 210)]),
        long_sleeves=bool(rng.random() < 0.5),
        bottom=pick([(52, 78, 128), (34, 34, 38), (196, 180, 150), (236, 234, 228), (86, 96, 70)]),
        bottom_kind=pick(["pants", "pants", "shorts", "skirt"]),
        shoes=pick([(240, 240, 236), (30, 30, 32), (120, 70, 44), (200, 60, 50)]),
    )


# Body in "standing units": head top near y=0, feet at y=1, x=0 on the body's centre line, x>0 screen right.
_SHOULDER = (0.092, 0.178)
_HIP = (0.048, 0.5)
_ARM = (0.16, 0.15)
_LEG = (0.245, 0.235)

# pose -> arm targets (screen-right arm, screen-left arm): hand (x outward, y), elbow preference, gesture.
# The left arm is mirrored, so "outward" is +x for both.
_RELAXED = ((0.118, 0.47), (1.0, 0.0), None)
_POSE_ARMS: dict[str, tuple[tuple, tuple]] = {
    "standing relaxed": (_RELAXED, _RELAXED),
    "waving": (((0.185, -0.02), (1.0, 0.3), "open"), _RELAXED),
    "making a peace sign": (((0.078, 0.075), (1.0, 0.8), "peace"), _RELAXED),
    "hands on hips": (((0.082, 0.42), (1.0, -0.1), None), ((0.082, 0.42), (1.0, -0.1), None)),
    "arms crossed": (((-0.085, 0.325), (1.0, 0.3), None), ((-0.085, 0.305), (1.0, 0.3), None)),
    "pointing at the landmark": (((0.3, 0.07), (0.0, 1.0), "point"), _RELAXED),
    "sitting on steps": (((0.1, 0.56), (1.0, 0.0), None), ((0.1, 0.56), (1.0, 0.0), None)),
}


def _ik(root: Pt, target: Pt, l1: float, l2: float, prefer: Pt) -> tuple[Pt, Pt]:
    """Two-bone reach: (elbow, hand); the elbow bends towards ``prefer``."""
    dx, dy = target[0] - root[0], target[1] - root[1]
    d = min(max(math.hypot(dx, dy), abs(l1 - l2) + 1e-6), (l1 + l2) * 0.999)
    a = math.atan2(dy, dx)
    b = math.acos(min(1.0, max(-1.0, (l1 * l1 + d * d - l2 * l2) / (2 * l1 * d))))
    elbows = [(root[0] + l1 * math.cos(a + s * b), root[1] + l1 * math.sin(a + s * b)) for s in (1, -1)]
    elbow = max(elbows, key=lambda e: (e[0] - root[0]) * prefer[0] + (e[1] - root[1]) * prefer[1])
    hand = (root[0] + d * math.cos(a), root[1] + d * math.sin(a))
    return elbow, hand


@dataclass
class Body:
    joints: dict[str, Pt]
    gestures: dict[str, str | None]
    seated: bool
    head_c: Pt
    head_r: Pt

    @property
    def top(self) -> float:
        hands = (p[1] - 0.03 for k, p in self.joints.items() if "hand" in k)  # a waving hand rises above the head
        return min(self.head_c[1] - self.head_r[1] - 0.012, *hands)

    @property
    def bottom(self) -> float:
        return max(p[1] for k, p in self.joints.items() if "foot" in k) + 0.02

    def x_extent(self) -> tuple[float, float]:
        xs = [p[0] for p in self.joints.values()]
        return min(xs) - 0.06, max(xs) + 0.06


def pose_body(pose: str, head_factor: float, rng: np.random.Generator) -> Body:
    arms = _POSE_ARMS.get(pose) or _POSE_ARMS["standing relaxed"]
    joints: dict[str, Pt] = {}
    gestures: dict[str, str | None] = {}
    for side, (hand, prefer, gesture) in zip(("r", "l"), arms, strict=False):
        s = 1.0 if side == "r" else -1.0
        shoulder = (s * _SHOULDER[0], _SHOULDER[1])
        elbow, wrist = _ik(shoulder, (s * hand[0], hand[1]), *_ARM, (s * prefer[0], prefer[1]))
        joints.update({f"{side}_shoulder": shoulder, f"{side}_elbow": elbow, f"{side}_hand": wrist})
        gestures[side] = gesture
    seated = pose == "sitting on steps"
    stance = 0.07 if pose in ("waving", "hands on hips", "pointing at the landmark") else 0.058
    stance += float(rng.uniform(-0.008, 0.008))
    for side, s in (("r", 1.0), ("l", -1.0)):
        hip = (s * _HIP[0], _HIP[1])
        if seated:  # thighs come towards the camera (foreshortened), shins hang down the step
            knee, foot = (s * 0.088, 0.565), (s * 0.098, 0.8)
        else:
            knee, foot = _ik(hip, (s * stance, 0.972), *_LEG, (s, 0.0))
        joints.update({f"{side}_hip": hip, f"{side}_knee": knee, f"{side}_foot": foot})
    ry, rx = 0.064 * head_factor, 0.047 * head_factor
    return Body(joints, gestures, seated, head_c=(0.0, 0.136 - ry), head_r=(rx, ry))


class Pen:
    """Draws body parts in standing units onto the photo and, for the person, onto the mask."""

    def __init__(self, img: Image.Image, mask: Image.Image, ox: float, oy: float, scale: float) -> None:
        self.d, self.m = ImageDraw.Draw(img), ImageDraw.Draw(mask)
        self.ox, self.oy, self.s = ox, oy, scale

    def p(self, pt: Pt) -> Pt:
        return (self.ox + pt[0] * self.s, self.oy + pt[1] * self.s)

    def poly(self, pts: list[Pt], fill: RGB, person: bool = True) -> None:
        xy = [self.p(q) for q in pts]
        self.d.polygon(xy, fill=fill)
        if person:
            self.m.polygon(xy, fill=255)

    def ellipse(self, c: Pt, rx: float, ry: float, fill: RGB, person: bool = True) -> None:
        x, y = self.p(c)
        box = (x - rx * self.s, y - ry * self.s, x + rx * self.s, y + ry * self.s)
        self.d.ellipse(box, fill=fill)
        if person:
            self.m.ellipse(box, fill=255)

    def limbs(self, parts: list[tuple[list[Pt], float, RGB]]) -> None:
        """Thick polylines with round joints; all darker rims first, so a chain (thigh + shin,
        sleeve + forearm) reads as one limb while a sleeve still shows against the shirt."""
        for pts, width, fill in parts:
            self._line(pts, width + 0.006, shade(fill, 0.72))
        for pts, width, fill in parts:
            self._line(pts, width, fill)

    def _line(self, pts: list[Pt], width: float, fill: RGB) -> None:
        xy = [self.p(q) for q in pts]
        w = max(1, round(width * self.s))
        self.d.line(xy, fill=fill, width=w)
        self.m.line(xy, fill=255, width=w)
        for q in pts:
            self.ellipse(q, width / 2, width / 2, fill)

    def stroke(self, pts: list[Pt], width: float, fill: RGB) -> None:
        """Thin detail line (eyes, mouth, folds); inside the person already, so no mask."""
        self.d.line([self.p(q) for q in pts], fill=fill, width=max(1, round(width * self.s)))


def _toward(a: Pt, b: Pt, dist: float) -> Pt:
    dx, dy = b[0] - a[0], b[1] - a[1]
    n = math.hypot(dx, dy) or 1.0
    return (b[0] + dx / n * dist, b[1] + dy / n * dist)


def _draw_hand(pen: Pen, elbow: Pt, hand: Pt, gesture: str | None, skin: RGB) -> None:
    finger, fingers = 0.0075, []
    if gesture == "open":  # waving: spread fingers fanning out from the forearm's direction
        dx, dy = hand[0] - elbow[0], hand[1] - elbow[1]
        n = math.hypot(dx, dy) or 1.0
        for ang in (-0.6, -0.25, 0.1, 0.45, 1.1):
            ca, sa = math.cos(ang), math.sin(ang)
            tip = (hand[0] + (dx * ca - dy * sa) / n * 0.038, hand[1] + (dx * sa + dy * ca) / n * 0.038)
            fingers.append([hand, tip])
    elif gesture == "peace":  # V of two fingers pointing up
        fingers = [[hand, (hand[0] - 0.012, hand[1] - 0.045)], [hand, (hand[0] + 0.012, hand[1] - 0.045)]]
    elif gesture == "point":
        fingers = [[hand, _toward(elbow, hand, 0.045)]]
    pen.limbs([(f, finger, skin) for f in fingers] + [([hand], 0.04, skin)])


def draw_person(pen: Pen, body: Body, look: Look) -> None:
    j = body.joints
    skin, shade_skin = look.skin, shade(look.skin, 0.82)
    hx, hy = body.head_c
    rx, ry = body.head_r
    if body.seated:  # stone steps behind and under the person (scenery, not person)
        pen.poly([(-0.42, 0.49), (0.42, 0.49), (0.42, 0.66), (-0.42, 0.66)], (176, 170, 160), person=False)
        pen.poly([(-0.42, 0.49), (0.42, 0.49), (0.42, 0.505), (-0.42, 0.505)], (204, 198, 188), person=False)
        pen.poly([(-0.5, 0.66), (0.5, 0.66), (0.5, 0.83), (-0.5, 0.83)], (160, 154, 146), person=False)
        pen.poly([(-0.5, 0.66), (0.5, 0.66), (0.5, 0.675), (-0.5, 0.675)], (196, 190, 180), person=False)
    if look.hair_style == "long":  # hair falling behind the shoulders
        pen.poly([(hx - rx * 1.15, hy), (hx + rx * 1.15, hy), (hx + rx * 1.3, 0.25), (hx - rx * 1.3, 0.25)], look.hair)
    # Legs: trousers cover the whole leg, shorts and skirts show the shins.
    for side in ("r", "l"):
        hip, knee, foot = j[f"{side}_hip"], j[f"{side}_knee"], j[f"{side}_foot"]
        lower = look.bottom if look.bottom_kind == "pants" else skin
        upper = look.bottom if look.bottom_kind == "pants" or body.seated else skin
        parts = [([hip, knee], 0.062 if body.seated else 0.058, upper),
                 ([knee, (foot[0], foot[1] - 0.02)], 0.046, lower)]
        if look.bottom_kind == "shorts":
            parts.append(([hip, (hip[0] + (knee[0] - hip[0]) * 0.45, hip[1] + (knee[1] - hip[1]) * 0.45)], 0.062,
                          look.bottom))
        pen.limbs(parts)
        pen.ellipse((foot[0] + (0.008 if side == "r" else -0.008), foot[1] - 0.006), 0.03, 0.017, look.shoes)
    if look.bottom_kind == "skirt":
        hem = 0.6 if body.seated else 0.66
        pen.poly([(-0.075, 0.42), (0.075, 0.42), (0.13, hem), (-0.13, hem)], look.bottom)
    elif look.bottom_kind == "shorts" or look.bottom_kind == "pants":
        pen.poly([(-0.076, 0.42), (0.076, 0.42), (0.085, 0.54), (-0.085, 0.54)], look.bottom)  # seat of the trousers
    # Neck, torso, shoulders.
    pen.poly([(-0.019, hy + ry * 0.6), (0.019, hy + ry * 0.6), (0.021, 0.19), (-0.021, 0.19)], shade_skin)
    top = look.top
    pen.poly([(-0.094, 0.18), (-0.07, 0.168), (-0.035, 0.163), (0.035, 0.163), (0.07, 0.168), (0.094, 0.18),
              (0.106, 0.205), (0.084, 0.3), (0.074, 0.43), (-0.074, 0.43), (-0.084, 0.3), (-0.106, 0.205)], top)
    pen.poly([(-0.03, 0.165), (0.03, 0.165), (0.0, 0.195)], skin, person=True)  # neckline
    pen.stroke([(-0.074, 0.428), (0.074, 0.428)], 0.006, shade(look.bottom, 0.7))  # waistband
    # Head: hair behind, face, ears, fringe, features.
    pen.ellipse((hx, hy - ry * 0.08), rx * 1.1, ry * 1.04, look.hair)
    pen.ellipse((hx - rx, hy + ry * 0.1), rx * 0.18, ry * 0.2, shade_skin)
    pen.ellipse((hx + rx, hy + ry * 0.1), rx * 0.18, ry * 0.2, shade_skin)
    pen.ellipse((hx, hy + ry * 0.06), rx, ry * 0.94, skin)
    x0, y0 = pen.p((hx - rx * 1.06, hy - ry * 1.04))
    x1, y1 = pen.p((hx + rx * 1.06, hy + ry * 0.3))
    pen.d.chord((x0, y0, x1, y1), 180, 360, fill=look.hair)  # fringe over the forehead
    if look.hair_style == "bun":
        pen.ellipse((hx, hy - ry * 1.08), rx * 0.45, ry * 0.3, look.hair)
    dark = (36, 28, 26)
    for s in (-1, 1):
        pen.ellipse((hx + s * rx * 0.38, hy + ry * 0.18), rx * 0.12, ry * 0.1, dark)
        pen.stroke([(hx + s * rx * 0.2, hy - ry * 0.04), (hx + s * rx * 0.38, hy - ry * 0.1),
                    (hx + s * rx * 0.58, hy - ry * 0.06)], 0.0035, look.hair)  # arched brows
        pen.ellipse((hx + s * rx * 0.55, hy + ry * 0.45), rx * 0.14, ry * 0.08, mix(skin, (230, 120, 120), 0.3))
    pen.stroke([(hx, hy + ry * 0.3), (hx + rx * 0.06, hy + ry * 0.45)], 0.003, shade_skin)
    mx, my = pen.p((hx, hy + ry * 0.62))
    mw = rx * 0.28 * pen.s
    pen.d.arc((mx - mw, my - mw * 0.6, mx + mw, my + mw * 0.6), 20, 160, fill=(170, 70, 70),
              width=max(1, round(0.004 * pen.s)))
    # Arms last: in front of the body and, for the peace sign, beside the face.
    sleeve_to = 1.0 if look.long_sleeves else 0.55
    for side in ("r", "l"):
        sh, el, hand = j[f"{side}_shoulder"], j[f"{side}_elbow"], j[f"{side}_hand"]
        sh_in = (sh[0] * 0.95, sh[1] + 0.012)
        cut = (sh_in[0] + (el[0] - sh_in[0]) * sleeve_to, sh_in[1] + (el[1] - sh_in[1]) * sleeve_to)
        pen.limbs([([sh_in, el], 0.036, skin), ([el, hand], 0.03, look.top if look.long_sleeves else skin),
                   ([sh_in, cut], 0.042, look.top)])
        _draw_hand(pen, el, hand, body.gestures[side], skin)


# ---------------------------------------------------------------- framing by shot type


def frame_shot(shot: str, body: Body, width: int, height: int, rng: np.random.Generator) -> tuple[float, float, float]:
    """(scale px/unit, x of the body centre line, y of the unit origin) for a shot type."""
    head_top = body.head_c[1] - body.head_r[1] - 0.012
    if shot == "wide":  # a small full figure, feet low in the frame, landmark all around
        scale = 0.3 * height / (body.bottom - body.top)
        oy = 0.93 * height - body.bottom * scale
    elif shot == "full_body":
        margin = 0.06 * (body.bottom - body.top)
        scale = height / (body.bottom - body.top + 2 * margin)
        oy = -(body.top - margin) * scale
    else:  # close_up / upper_body / thigh_up: from just above the head down to chest / waist / mid-thigh
        above, below = {"close_up": (0.035, 0.3), "upper_body": (0.05, 0.56), "thigh_up": (0.05, 0.73)}[shot]
        scale = height / (below - head_top + above)
        oy = -(head_top - above) * scale
    jitter = {"close_up": 0.03, "upper_body": 0.06, "thigh_up": 0.07, "full_body": 0.12, "wide": 0.3}[shot]
    cx = width * (0.5 + float(rng.uniform(-jitter, jitter)))
    if shot in ("full_body", "wide"):  # the whole figure stays inside the frame
        x0, x1 = body.x_extent()
        lo, hi = -x0 * scale + 2, width - x1 * scale - 2
        cx = min(max(cx, lo), hi) if lo <= hi else width / 2
    return scale, cx, oy
