"""Leefbaarometer time series as inline SVG, rendered with matplotlib (text kept as text, Dutch
number format on the axis)."""

from __future__ import annotations

import io
import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

from wijk_assets.lib.wijkbeeld.fmt import nl_number  # noqa: E402

plt.rcParams.update({"svg.fonttype": "none", "font.family": "sans-serif", "font.size": 9,
                     "svg.hashsalt": "wijkbeeld"})  # deterministic ids
FIGSIZE = (4.6, 2.5)  # inches
LEGEND_FONT = 7.5  # points
SERIES_STYLE = {"wijk": ("#08519c", "-", 2.2), "gemeente": ("#e6550d", "--", 1.5), "Nederland": ("#636363", ":", 1.5)}


def line_chart(series: dict[str, list[tuple[int, float | None]]], *, title: str, decimals: int = 2,
               chart_id: str) -> str:
    """SVG of one small line chart; ``series`` maps a legend label ('wijk' name, 'gemeente',
    'Nederland') to (year, value) points."""
    fig, ax = plt.subplots(figsize=FIGSIZE, dpi=100)
    styles = list(SERIES_STYLE.values())
    years: set[int] = set()
    for i, (label, points) in enumerate(series.items()):
        points = [(x, y) for x, y in points if y is not None and y == y]
        if not points:
            continue
        years |= {int(p[0]) for p in points}
        colour, dash, width = styles[min(i, len(styles) - 1)]
        ax.plot([p[0] for p in points], [p[1] for p in points], dash, color=colour, linewidth=width,
                marker="o", markersize=3, label=label)
    handles, labels = ax.get_legend_handles_labels()
    labels = fitting_legend_labels(labels)
    ax.set_title(title, fontsize=10, loc="left")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _p: nl_number(v, decimals)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{int(v)}"))
    ax.grid(axis="y", color="#e0e0e0", linewidth=0.6)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    if years:
        ax.set_xticks(sorted(years))
        ax.tick_params(axis="x", labelsize=7.5)
    fig.legend(handles, labels, fontsize=LEGEND_FONT, frameon=False, loc="lower center", ncol=3)
    # Fixed margins: the ones tight_layout(rect=(0, 0.1, 1, 1)) chose on the real charts for the widest tick
    # labels (a sign and three decimals, e.g. "-0,020"; the legend in the bottom tenth). The layout pass was
    # half of a chart's rendering time (~60 of ~125 ms; a gemeente of 110 wijken draws 660 charts), and with
    # one set of margins the charts of a page line up.
    fig.subplots_adjust(left=0.153, right=0.971, top=0.869, bottom=0.235)
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    plt.close(fig)
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg"):]
    # unique ids per chart (several charts share a page) and a class the test and CSS can find
    svg = re.sub(r'id="([^"]+)"', lambda m: f'id="{chart_id}-{m.group(1)}"', svg)
    svg = re.sub(r'(url\(#|xlink:href="#|href="#)([^)"]+)', lambda m: f"{m.group(1)}{chart_id}-{m.group(2)}", svg)
    return svg.replace("<svg ", f'<svg class="grafiek" data-chart="{chart_id}" ', 1)


def _text_width(text: str) -> float:
    """Width in points of ``text`` at ``LEGEND_FONT`` in the charts' font (the widest line)."""
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import TextToPath

    props = FontProperties(family=plt.rcParams["font.family"], size=LEGEND_FONT)
    return max(TextToPath().get_text_width_height_descent(line, props, ismath=False)[0] for line in text.split("\n"))


def _legend_width(labels: list[str]) -> float:
    """The one-row legend's width in points: per entry its line sample, the gap to its text and the text;
    the space between entries and the legend's border (matplotlib's defaults, in font sizes)."""
    rc = plt.rcParams
    per_entry = (rc["legend.handlelength"] + rc["legend.handletextpad"]) * LEGEND_FONT
    between = rc["legend.columnspacing"] * LEGEND_FONT * (len(labels) - 1)
    border = 2 * (rc["legend.borderpad"] + rc["legend.borderaxespad"]) * LEGEND_FONT
    return sum(_text_width(t) for t in labels) + per_entry * len(labels) + between + border


def fitting_legend_labels(labels: list[str]) -> list[str]:
    """The legend's labels, a long one (a wijk named after two places, "Nieuwendammerdijk/Buiksloterdijk")
    on two lines where the one-row legend would be wider than the chart and be cut at both sides. A label
    breaks after a '/' or '-', or at a space, nearest its middle; one without such a place stays whole."""
    labels = list(labels)
    room = FIGSIZE[0] * 72
    while labels and _legend_width(labels) > room:
        widest = max(range(len(labels)), key=lambda i: _text_width(labels[i]))
        text = labels[widest]
        if "\n" in text:
            break
        breaks = [i + 1 for i, ch in enumerate(text) if ch in "/-" and 0 < i < len(text) - 1]
        breaks += [i for i, ch in enumerate(text) if ch == " " and 0 < i < len(text) - 1]
        if not breaks:
            break
        cut = min(breaks, key=lambda i: (abs(2 * i - len(text)), i))
        labels[widest] = text[:cut].rstrip() + "\n" + text[cut:].lstrip()
    return labels
