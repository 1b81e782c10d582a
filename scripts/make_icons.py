"""Draw Craftreel's app icons (a thread spool whose thread carries a play button).

Run from the repository root; it overwrites the PNGs in src/craftreel/web/static/icons/:

    .venv/bin/python scripts/make_icons.py
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

ICON_DIR = Path(__file__).resolve().parent.parent / "src/craftreel/web/static/icons"
SUPERSAMPLE = 4  # draw large, then shrink: smooth edges without an anti-aliasing engine

CLAY_LIGHT = (205, 99, 62)
CLAY_DARK = (150, 56, 30)
CREAM = (255, 245, 231)
CREAM_SHADE = (236, 214, 190)
THREAD = (240, 185, 73)
THREAD_LINE = (212, 146, 38)
PLAY = (180, 72, 42)


def _background(size: int, corner: float) -> Image.Image:
    """A diagonal clay gradient, clipped to a rounded square (corner is a fraction of size)."""
    gradient = Image.new("RGB", (size, size))
    pixels = gradient.load()
    assert pixels is not None
    for y in range(size):
        for x in range(size):
            t = (x + y) / (2 * (size - 1))
            pixels[x, y] = tuple(
                round(a + (b - a) * t) for a, b in zip(CLAY_LIGHT, CLAY_DARK, strict=True)
            )
    mask = Image.new("L", (size, size), 0)
    ImageDraw.Draw(mask).rounded_rectangle(
        (0, 0, size - 1, size - 1), radius=round(size * corner), fill=255
    )
    icon = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    icon.paste(gradient, (0, 0), mask)
    return icon


def _spool(draw: ImageDraw.ImageDraw, size: int, scale: float, detail: bool) -> None:
    """The mark, centred; scale 1.0 fills about 60% of the icon."""

    def box(cx: float, cy: float, w: float, h: float) -> tuple[float, float, float, float]:
        c = size / 2
        return (
            c + (cx - w / 2) * size * scale,
            c + (cy - h / 2) * size * scale,
            c + (cx + w / 2) * size * scale,
            c + (cy + h / 2) * size * scale,
        )

    unit = size * scale
    # thread wound on the core
    core = box(0, 0, 0.42, 0.40)
    draw.rounded_rectangle(core, radius=unit * 0.03, fill=THREAD)
    if detail:
        top, bottom = core[1], core[3]
        lines = 6
        for i in range(1, lines):
            y = top + (bottom - top) * i / lines
            draw.line((core[0], y, core[2], y), fill=THREAD_LINE, width=max(1, round(unit * 0.012)))
    # flanges, with a shaded lip so they read as discs
    for cy in (-0.245, 0.245):
        draw.rounded_rectangle(box(0, cy, 0.60, 0.11), radius=unit * 0.045, fill=CREAM)
        lip = box(0, cy + 0.03, 0.60, 0.05)
        draw.rounded_rectangle(lip, radius=unit * 0.025, fill=CREAM_SHADE)
        draw.rounded_rectangle(box(0, cy - 0.012, 0.60, 0.086), radius=unit * 0.04, fill=CREAM)
    # a play button on the thread: this is a video app
    c = size / 2
    r = 0.13 * unit
    draw.ellipse((c - r, c - r, c + r, c + r), fill=CREAM)
    t = 0.062 * unit
    draw.polygon(
        [(c - t * 0.75, c - t), (c - t * 0.75, c + t), (c + t * 1.05, c)],
        fill=PLAY,
    )


def make_icon(size: int, *, corner: float, scale: float, detail: bool = True) -> Image.Image:
    big = size * SUPERSAMPLE
    icon = _background(big, corner)
    _spool(ImageDraw.Draw(icon), big, scale, detail)
    return icon.resize((size, size), Image.Resampling.LANCZOS)


def main() -> None:
    ICON_DIR.mkdir(parents=True, exist_ok=True)
    outputs = {
        # "any" icons: a rounded square on a transparent ground
        "icon-192.png": make_icon(192, corner=0.225, scale=1.0),
        "icon-512.png": make_icon(512, corner=0.225, scale=1.0),
        # maskable: full bleed, the mark inside the central 80% safe zone
        "icon-maskable-512.png": make_icon(512, corner=0, scale=0.78),
        # iOS rounds the corners itself and shows transparency as black
        "apple-touch-icon.png": make_icon(180, corner=0, scale=0.92),
        "favicon-32.png": make_icon(32, corner=0.2, scale=1.12, detail=False),
    }
    for name, image in outputs.items():
        path = ICON_DIR / name
        if name == "apple-touch-icon.png" or "maskable" in name:
            image = image.convert("RGB")
        image.save(path, optimize=True)
        print(f"wrote {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}")


if __name__ == "__main__":
    main()
