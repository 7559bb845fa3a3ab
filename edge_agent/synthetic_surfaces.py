"""Bare surfaces for the synthetic frames (`edge_agent/synthetic.py`): brushed metal, woven fabric,
cast grain and painted panel textures, and the illumination field over them. Every random draw
comes from the caller's generator in a fixed order, so a sample still depends only on its
(seed, index).
"""

from __future__ import annotations

from typing import Optional, Tuple

import cv2
import numpy as np

SURFACES = ("brushed_metal", "woven_fabric", "cast_grain", "painted_panel")

_PAINTS = np.array(  # BGR, 0..1
    [[0.16, 0.16, 0.78], [0.66, 0.35, 0.12], [0.88, 0.88, 0.88], [0.12, 0.78, 0.9],
     [0.24, 0.55, 0.16], [0.6, 0.6, 0.6], [0.2, 0.2, 0.22]], dtype=np.float32)
_FABRICS = np.array(
    [[0.45, 0.22, 0.12], [0.45, 0.62, 0.7], [0.55, 0.55, 0.55], [0.25, 0.45, 0.4],
     [0.2, 0.2, 0.55], [0.75, 0.75, 0.72]], dtype=np.float32)


class SurfacePainter:
    """Textures and light fields for frames of one size; `lighting`: 0..1 strength of the random
    illumination gradient, vignetting and brightness change."""

    def __init__(self, width: int, height: int, lighting: float) -> None:
        self.width, self.height, self.lighting = width, height, lighting
        self._scale = min(width, height) / 240.0
        self._xs = np.arange(width, dtype=np.float32)
        self._ys = np.arange(height, dtype=np.float32)
        self._xn = np.linspace(-1.0, 1.0, width, dtype=np.float32)
        self._yn = np.linspace(-1.0, 1.0, height, dtype=np.float32)

    def _smooth_noise(self, rng: np.random.Generator, rows: int, cols: int,
                      interpolation: int = cv2.INTER_CUBIC) -> np.ndarray:
        rows, cols = max(2, rows), max(2, cols)
        small = rng.standard_normal((rows, cols), dtype=np.float32)
        if interpolation == cv2.INTER_CUBIC and self.width > 8 * cols:
            # cubic straight from a tiny grid is slow in OpenCV; cubic to 1/4 size, then linear
            small = cv2.resize(small, (self.width // 4, self.height // 4), interpolation=cv2.INTER_CUBIC)
            interpolation = cv2.INTER_LINEAR
        return cv2.resize(small, (self.width, self.height), interpolation=interpolation)

    def texture(self, surface: str, rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
        """Luminance map (HxW float32, ~0..1) and BGR colour (3, 0..255) of a bare surface."""
        h, w, s = self.height, self.width, self._scale
        if surface == "brushed_metal":
            streaks = self._smooth_noise(rng, h, w // 6, cv2.INTER_LINEAR)
            long_streaks = self._smooth_noise(rng, h, w // 40, cv2.INTER_LINEAR)
            cloud = self._smooth_noise(rng, h // 40, w // 40)
            lum = 0.6 + 0.03 * streaks + 0.045 * long_streaks + 0.03 * cloud
            color = np.array([1.0, 0.97, 0.93], np.float32) * rng.uniform(0.85, 1.1)
        elif surface == "woven_fabric":
            lum = self._weave(rng, s)
            color = _FABRICS[int(rng.integers(len(_FABRICS)))] * rng.uniform(0.85, 1.15, 3).astype(np.float32)
        elif surface == "cast_grain":
            blobs = np.tanh(1.8 * self._smooth_noise(rng, h // 5, w // 5))
            grain = self._smooth_noise(rng, h // 2, w // 2, cv2.INTER_LINEAR)
            cloud = self._smooth_noise(rng, h // 60, w // 60)
            lum = 0.45 + 0.05 * blobs + 0.03 * grain + 0.04 * cloud
            color = np.array([0.93, 0.96, 1.0], np.float32) * rng.uniform(0.8, 1.15)
        else:  # painted_panel: smooth paint with orange peel
            peel = self._smooth_noise(rng, h // 3, w // 3)
            cloud = self._smooth_noise(rng, h // 80, w // 80)
            lum = 0.82 + 0.02 * peel + 0.03 * cloud
            color = _PAINTS[int(rng.integers(len(_PAINTS)))] * rng.uniform(0.85, 1.15, 3).astype(np.float32)
        return lum, np.clip(color * 255.0, 20.0, 255.0).astype(np.float32)

    def _weave(self, rng: np.random.Generator, s: float) -> np.ndarray:
        period = float(rng.uniform(6.0, 11.0)) * max(s, 0.5)
        u = self._xs / period + rng.uniform(0, 2)
        v = self._ys / period + rng.uniform(0, 2)
        iu, iv = np.floor(u), np.floor(v)
        pu = np.sin(np.pi * (u - iu)).astype(np.float32)  # thread cross-section shading
        pv = np.sin(np.pi * (v - iv)).astype(np.float32)
        n_u, n_v = int(iu[-1] - iu[0]) + 1, int(iv[-1] - iv[0]) + 1
        pu *= 1.0 + rng.normal(0, 0.08, n_u).astype(np.float32)[(iu - iu[0]).astype(np.intp)]
        pv *= 1.0 + rng.normal(0, 0.08, n_v).astype(np.float32)[(iv - iv[0]).astype(np.intp)]
        over = ((iu.astype(np.intp)[None, :] + iv.astype(np.intp)[:, None]) & 1).astype(bool)
        warp = pu[None, :] * (0.75 + 0.25 * np.sqrt(pv))[:, None]
        weft = pv[:, None] * (0.75 + 0.25 * np.sqrt(pu))[None, :]
        lum = 0.38 + 0.42 * np.where(over, warp, weft)
        fuzz = self._smooth_noise(rng, self.height // 3, self.width // 3, cv2.INTER_LINEAR)
        lum += 0.03 * fuzz
        angle = rng.uniform(-12, 12)
        rot = cv2.getRotationMatrix2D((self.width / 2.0, self.height / 2.0), angle, 1.0)
        return cv2.warpAffine(lum, rot, (self.width, self.height), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REFLECT)

    def illumination(self, rng: np.random.Generator) -> Optional[np.ndarray]:
        """Multiplicative HxW light field (gradient, off-centre vignette, brightness), or None."""
        k = self.lighting
        gx, gy = (float(v) * k for v in rng.uniform(-0.45, 0.45, 2))
        vig = float(rng.uniform(0.0, 0.5)) * k
        cx, cy = (float(v) for v in rng.uniform(-0.5, 0.5, 2))
        bright = 1.0 + float(rng.uniform(-0.35, 0.25)) * k
        if k == 0:
            return None
        row = 1.0 + gx * self._xn - vig * (self._xn - cx) ** 2
        col = gy * self._yn - vig * (self._yn - cy) ** 2
        field = (row[None, :] + col[:, None]) * bright
        return np.maximum(field, 0.05, out=field)
