"""Template-browser thumbnails (example_workflows/<name>.jpg) and the example keyframe picture. Pillow is
imported only here, and only when a thumbnail or the picture is drawn."""
from __future__ import annotations

import sys
from pathlib import Path

from .forms import Workflow

REPO = Path(__file__).resolve().parent.parent.parent
THUMB_SIZE = (512, 384)


def render_thumbnail(wf: Workflow, frames: list | None = None):
    """A 512x384 card: title, the pipeline as boxes, and a strip of real output frames (PIL images)."""
    from PIL import Image, ImageDraw, ImageFont

    w, h = THUMB_SIZE
    card = Image.new("RGB", (w, h), (24, 26, 33))
    draw = ImageDraw.Draw(card)

    def font(size):
        try:
            return ImageFont.load_default(size=size)
        except TypeError:  # Pillow < 10.1
            return ImageFont.load_default()

    draw.text((20, 18), "MicroCinema", fill=(190, 150, 255), font=font(22))
    draw.text((20, 48), wf.title.split(": ", 1)[-1], fill=(235, 235, 240), font=font(26))
    steps = wf.thumbnail_steps
    gap = 18
    box_w = (w - 40 - gap * (len(steps) - 1)) / len(steps)
    for i, label in enumerate(steps):
        x0 = 20 + i * (box_w + gap)
        colour = (138, 90, 168) if "MicroCinema" in label else (63, 120, 158)
        draw.rounded_rectangle([x0, 100, x0 + box_w, 150], radius=8, fill=colour)
        size = 16
        while size > 8 and draw.textlength(label, font=font(size)) > box_w - 8:
            size -= 1
        tw = draw.textlength(label, font=font(size))
        draw.text((x0 + (box_w - tw) / 2, 125 - size * 0.6), label, fill=(255, 255, 255), font=font(size))
        if i:  # arrow in the gap
            ax = x0 - gap + 4
            draw.polygon([(ax, 119), (ax + gap - 8, 125), (ax, 131)], fill=(200, 200, 200))
    if frames:
        shown = frames[:: max(1, len(frames) // 4)][:4]
        cell = min((w - 40 - 10 * (len(shown) - 1)) // len(shown), h - 210)
        for i, frame in enumerate(shown):
            tile = frame.convert("RGB").resize((cell, cell), Image.Resampling.NEAREST)
            card.paste(tile, (20 + i * (cell + 10), 172))
        draw.text((20, 180 + cell), "frames made by this workflow with the demo model", fill=(150, 150, 160),
                  font=font(13))
    return card


def render_example_keyframe():
    """The example input picture (320x240: not the video size, so resizing and cropping show): a yellow triangle
    on a striped teal background, drawn like the demo model's training data."""
    from PIL import Image

    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from microcinema_core.training import synthetic  # numpy + PIL only

    spec = synthetic.ClipSpec("triangle", "yellow", "up", (0.5, 0.55), 0.03, 0.16, (20, 70, 70), 5)
    square = Image.fromarray(synthetic.render_frame(spec, 0, 240))
    canvas = Image.new("RGB", (320, 240), synthetic.BACKGROUNDS[2])
    canvas.paste(square, (40, 0))
    return canvas
