"""PIL drawings of a frequency payload (see ``frequency_report``): stacked line charts
sharing the step axis, and the strip of decoded components. PIL only (a ComfyUI
requirement), so no plotting library is added to the pack."""
import math

from PIL import Image, ImageDraw, ImageFont

from . import report as fr

WIDTH = 960
PANEL_HEIGHT = 190
_LEFT, _RIGHT, _TOP_TITLE, _GAP, _BOTTOM = 78, 190, 58, 34, 70
_BG, _FG, _GRID, _FRAME = (255, 255, 255), (30, 30, 30), (225, 225, 225), (120, 120, 120)
_CUTOFF = (120, 40, 160)
# Step strip under the charts: one tick per recorded step, coloured by the branches it ran.
STRIP_COLORS = {fr.BOTH_BRANCHES: (255, 200, 0), fr.ONE_BRANCH: (0, 200, 230), None: (120, 130, 190)}
_STRIP_HEIGHT = 10


def _font(size):
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # Pillow without FreeType: the bitmap font
        return ImageFont.load_default()


def _rgb(color):
    color = color.lstrip("#")
    return tuple(int(color[i:i + 2], 16) for i in (0, 2, 4))


def nice_ticks(low, high, count=5):
    """Round tick values covering [low, high] (the classic 1-2-5 steps)."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return [0.0]
    if high <= low:
        high = low + (abs(low) or 1.0)
    raw = (high - low) / max(count - 1, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    start = math.floor(low / step) * step
    ticks = []
    value = start
    while value <= high + step * 0.5 and len(ticks) < 50:
        ticks.append(round(value, 12))
        value += step
    return ticks


def format_ticks(values):
    """Labels with just enough digits to tell neighbouring ticks apart."""
    for digits in range(2, 9):
        labels = [_fmt(v, digits) for v in values]
        if len(set(labels)) == len(labels):
            return labels
    return labels


def _fmt(value, digits=3):
    if value == 0:
        return "0"
    if abs(value) >= 1e4 or abs(value) < 1e-3:
        return f"{value:.{max(digits - 2, 1)}e}"
    return f"{value:.{digits}g}"


def panel_range(panel, points):
    """(low, high, ticks) of a panel's y axis, in axis units (log10 for log panels)."""
    values = []
    for series in panel["series"]:
        for point in points:
            value = point.get(series["key"])
            if value is None or (panel["log"] and value <= 0):
                continue
            values.append(math.log10(value) if panel["log"] else value)
    if not values:
        return 0.0, 1.0, [0.0, 1.0]
    low, high = min(values), max(values)
    if not panel["log"]:
        low = min(low, 0.0)  # norms: keep zero in view so the bands' sizes compare
    ticks = nice_ticks(low, high)
    return min(ticks[0], low), max(ticks[-1], high), ticks


def step_range(points, total_steps):
    """Steps count from 1; the axis covers the whole run even while it is still recording."""
    last = max([p["step"] for p in points] + [total_steps, 2])
    return 1, last


def render_chart(data):
    """The payload's panels as one RGB PIL image."""
    points = data["points"]
    panels = data["panels"]
    height = _TOP_TITLE + len(panels) * (PANEL_HEIGHT + _GAP) + _BOTTOM
    image = Image.new("RGB", (WIDTH, height), _BG)
    draw = ImageDraw.Draw(image)
    title_font, font, small = _font(16), _font(12), _font(11)
    draw.text((_LEFT, 10), data.get("title", ""), fill=_FG, font=title_font)
    x_min, x_max = step_range(points, data.get("total_steps", 0))
    plot_w = WIDTH - _LEFT - _RIGHT

    def x_at(step):
        return _LEFT + (step - x_min) / (x_max - x_min) * plot_w

    markers = fr.markers(data)
    top = _TOP_TITLE
    for panel in panels:
        _draw_panel(draw, panel, points, top, x_at, font, small)
        for marker in markers:
            x = x_at(marker["after_step"] + 0.5)  # between the marked step and the next
            for y in range(top, top + PANEL_HEIGHT, 8):
                draw.line([(x, y), (x, min(y + 4, top + PANEL_HEIGHT))], fill=_CUTOFF, width=2)
        top += PANEL_HEIGHT + _GAP
    strip_top = top - _GAP + 22
    for point in points:
        x = x_at(point["step"])
        color = STRIP_COLORS.get(point.get("branches"), STRIP_COLORS[None])
        draw.rectangle([x - 2, strip_top, x + 2, strip_top + _STRIP_HEIGHT], fill=color)
    for step in nice_ticks(x_min, x_max, 10):
        if x_min <= step <= x_max and float(step).is_integer():
            draw.text((x_at(step) - 4, strip_top + _STRIP_HEIGHT + 4), str(int(step)), fill=_FG, font=small)
    caption = data.get("x_label", "step")
    if data.get("kind") == fr.KIND_TRACE:
        caption += " (strip: yellow = both branches evaluated, cyan = one branch)"
    if markers:
        caption += f"; dashed: {', '.join(m['label'] for m in markers)}"
    draw.text((_LEFT, strip_top + _STRIP_HEIGHT + 20), caption, fill=_FG, font=font)
    return image


def _draw_panel(draw, panel, points, top, x_at, font, small):
    bottom = top + PANEL_HEIGHT
    right = WIDTH - _RIGHT
    low, high, ticks = panel_range(panel, points)

    def y_at(value):
        return bottom - (value - low) / ((high - low) or 1.0) * PANEL_HEIGHT

    draw.text((_LEFT, top - 17), panel["title"] + ("  (log scale)" if panel["log"] else ""), fill=_FG, font=font)
    labels = format_ticks([10 ** t if panel["log"] else t for t in ticks])
    for tick, label in zip(ticks, labels):
        y = y_at(tick)
        draw.line([(_LEFT, y), (right, y)], fill=_GRID)
        draw.text((_LEFT - 8 - draw.textlength(label, font=small), y - 6), label, fill=_FG, font=small)
    draw.rectangle([_LEFT, top, right, bottom], outline=_FRAME)
    legend_y = top + 4
    for series in panel["series"]:
        color = _rgb(series["color"])
        xy = []
        for point in points:
            value = point.get(series["key"])
            if value is None or (panel["log"] and value <= 0):
                continue
            xy.append((x_at(point["step"]), y_at(math.log10(value) if panel["log"] else value)))
        if len(xy) > 1:
            draw.line(xy, fill=color, width=2)
        for x, y in xy:
            draw.ellipse([x - 2.5, y - 2.5, x + 2.5, y + 2.5], fill=color)
        draw.line([(right + 12, legend_y + 7), (right + 32, legend_y + 7)], fill=color, width=3)
        draw.text((right + 38, legend_y), series["label"], fill=_FG, font=font)
        legend_y += 18


def strip_steps(total_steps, columns):
    """Which steps (from 0) the strip shows: ``columns`` steps spread evenly from the first
    to the last."""
    if total_steps <= 0:
        return []
    if columns >= total_steps:
        return list(range(total_steps))
    if columns == 1:
        return [total_steps - 1]
    return sorted({round(i * (total_steps - 1) / (columns - 1)) for i in range(columns)})


def compose_strip(rows, column_labels, row_labels, cell=128):
    """A grid image: ``rows[r][c]`` are HxWx3 uint8 arrays (numpy), resized to ``cell`` wide."""
    label_w, header_h = 110, 22
    sizes = [Image.fromarray(rows[0][0]).size]
    cell_h = max(1, round(cell * sizes[0][1] / sizes[0][0]))
    image = Image.new("RGB", (label_w + cell * len(column_labels), header_h + cell_h * len(rows)), _BG)
    draw = ImageDraw.Draw(image)
    font = _font(12)
    for c, label in enumerate(column_labels):
        draw.text((label_w + c * cell + 4, 4), label, fill=_FG, font=font)
    for r, (label, row) in enumerate(zip(row_labels, rows)):
        draw.text((6, header_h + r * cell_h + cell_h // 2 - 6), label, fill=_FG, font=font)
        for c, array in enumerate(row):
            tile = Image.fromarray(array).convert("RGB").resize((cell, cell_h), Image.Resampling.BILINEAR)
            image.paste(tile, (label_w + c * cell, header_h + r * cell_h))
    return image


def message_image(text, width=512, height=96):
    """A small image that says why there is nothing else to show (e.g. no VAE)."""
    image = Image.new("RGB", (width, height), _BG)
    ImageDraw.Draw(image).text((12, height // 2 - 8), text, fill=_FG, font=_font(14))
    return image
