"""Tables and plots of the effort benchmark (plain text, Markdown, JSON and a PNG by OpenCV)."""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Optional, Sequence

import cv2
import numpy as np

from annotation.effort.runner import GROUPS, EffortResult, LoopResult, result_json


def effort_table(summaries: Sequence[dict]) -> str:
    """A Markdown table, one row per data set and target IoU (the terminal prints it as is)."""
    head = ["data set", "target IoU", "clicks", "images", "instances", "manual s/inst", "assisted s/inst", "saved %",
            "003 formula %"] + [g[0] for g in GROUPS] + [
            "accepted/corrected/abandoned/redrawn/missed", "IoU manual", "IoU assisted", ">=target m/a",
            "capped m/a"]
    rows = []
    for s in summaries:
        modes = s["modes"]
        capped = s.get("capped", {"manual": 0, "assisted": 0})
        rows.append([s["dataset"], f"{s.get('target_iou', s['params'].get('target_iou', 0.9)):.2f}",
                     "yes" if s.get("clicks") else "no", str(s["images"]), str(s["instances"]), f"{s['manual_s_per_instance']:.1f}",
                     f"{s['assisted_s_per_instance']:.1f}", f"{s['saved_percent']:.1f}",
                     f"{s['saved_percent_003_formula']:.1f}"]
                    + [str(s["groups"][g[0]]) for g in GROUPS]
                    + ["/".join(str(modes.get(m, 0)) for m in ("accepted", "corrected", "abandoned", "redrawn", "missed")),
                       f"{s['manual_mean_iou']:.3f}", f"{s['assisted_mean_iou']:.3f}",
                       f"{s['manual_reached_target']}/{s['assisted_reached_target']}",
                       f"{capped['manual']}/{capped['assisted']}"])
    return _markdown(head, rows)


def clicks_table(summaries: Sequence[dict]) -> str:
    """Time saved with click correction beside the time saved without it, one row per
    data set and target IoU that was run both ways (same images, same proposals).

    The headline (bold) is assisted with clicks against the FASTER of the two manual
    workflows (hand tools alone, or hand tools with the prompt tool): a person labelling
    by hand would use clicks only where they pay, so a weak click model cannot make the
    baseline slow. Beside it: without clicks on either side (the previous figure), with
    clicks on both sides, and assisted with clicks against hand tools alone.
    """
    plain = {(s["dataset"], s.get("target_iou")): s for s in summaries if not s.get("clicks")}
    head = ["data set", "target IoU", "instances", "manual s/inst", "manual+clicks s/inst", "assisted s/inst",
            "assisted+clicks s/inst", "saved, no clicks %", "**saved with clicks vs faster manual %**",
            "saved, clicks both sides %", "saved, assisted+clicks vs hand tools %", "clicks m/a (undone)",
            "IoU m+c / a+c"]
    rows = []
    for s in summaries:
        base = plain.get((s["dataset"], s.get("target_iou")))
        if not s.get("clicks") or base is None:
            continue
        m0, a0 = base["manual_seconds"], base["assisted_seconds"]
        m1, a1 = s["manual_seconds"], s["assisted_seconds"]
        pct = lambda a, m: f"{100.0 * (1.0 - a / m):.1f}" if m > 0 else "-"  # noqa: E731
        made, undone = s.get("clicks_made", {}), s.get("clicks_undone", {})
        n = max(1, s["instances"])
        rows.append([s["dataset"], f"{s.get('target_iou', 0.9):.2f}", str(s["instances"]), f"{m0 / n:.1f}",
                     f"{m1 / n:.1f}", f"{a0 / n:.1f}", f"{a1 / n:.1f}", pct(a0, m0), f"**{pct(a1, min(m0, m1))}**",
                     pct(a1, m1), pct(a1, m0),
                     f"{made.get('manual', 0)}/{made.get('assisted', 0)} "
                     f"({undone.get('manual', 0)}/{undone.get('assisted', 0)})",
                     f"{s['manual_mean_iou']:.3f} / {s['assisted_mean_iou']:.3f}"])
    return _markdown(head, rows)


def left_over_line(summary: dict) -> str:
    """What the proposals that were no object cost, one line."""
    return (f"{summary['dataset']} at IoU {summary.get('target_iou', 0.9):.2f}: {summary.get('proposals_total', 0)} "
            f"proposals; left over {summary.get('rejected_one_by_one', 0)} rejected one by one, "
            f"{summary.get('rejected_with_reject_rest', 0)} with Reject the rest "
            f"({summary.get('reject_rest_uses', 0)} uses), {summary.get('left_over_seconds', 0.0):.1f} s in all")


def corrections_line(summary: dict) -> str:
    """How the thick error regions were fixed (reroutes and their fallbacks), one line."""
    parts = []
    for side in ("manual", "assisted"):
        counts = summary.get("corrections", {}).get(side, {})
        parts.append(f"{side}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return (f"{summary['dataset']} at IoU {summary.get('target_iou', 0.9):.2f} corrections -- " + "; ".join(parts))


def loop_table(loop: LoopResult) -> str:
    """Effort per image against the number of images labelled before each round."""
    head = ["round", "labelled before", "images", "instances", "manual s/image", "assisted s/image", "saved %",
            "IoU assisted", "proposals from"]
    rows = [[str(r.round_index), str(r.labelled_before), str(r.images), str(r.instances),
             f"{r.manual_s_per_image:.1f}", f"{r.assisted_s_per_image:.1f}", f"{r.saved_percent:.1f}",
             f"{r.assisted_mean_iou:.3f}", r.source] for r in loop.rows]
    return _markdown(head, rows)


def _markdown(head: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(head)]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    return "\n".join([line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [line(r) for r in rows])


def plot_loop(loop: LoopResult, path: Path, size: tuple[int, int] = (480, 720)) -> Path:
    """Line plot of seconds per image (manual and assisted) against images labelled; PNG."""
    h, w = size
    img = np.full((h, w, 3), 255, np.uint8)
    left, right, top, bottom = 80, 20, 40, 60
    xs = [r.labelled_before for r in loop.rows]
    series = {"manual": ([r.manual_s_per_image for r in loop.rows], (60, 60, 200)),
              "assisted": ([r.assisted_s_per_image for r in loop.rows], (200, 120, 30))}
    ymax = max([1.0] + [v for vals, _ in series.values() for v in vals]) * 1.1
    xmax = max([1] + xs)

    def to_px(x: float, y: float) -> tuple[int, int]:
        return (int(left + (w - left - right) * x / xmax), int(h - bottom - (h - top - bottom) * y / ymax))

    black = (0, 0, 0)
    cv2.line(img, to_px(0, 0), to_px(xmax, 0), black, 1)
    cv2.line(img, to_px(0, 0), to_px(0, ymax), black, 1)
    for t in np.linspace(0, ymax, 5):
        p = to_px(0, t)
        cv2.line(img, (p[0] - 4, p[1]), p, black, 1)
        cv2.putText(img, f"{t:.0f}", (5, p[1] + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, black, 1, cv2.LINE_AA)
    for x in xs:
        p = to_px(x, 0)
        cv2.line(img, p, (p[0], p[1] + 4), black, 1)
        cv2.putText(img, str(x), (p[0] - 8, p[1] + 18), cv2.FONT_HERSHEY_SIMPLEX, 0.4, black, 1, cv2.LINE_AA)
    cv2.putText(img, "images labelled before the round", (w // 2 - 120, h - 15), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                black, 1, cv2.LINE_AA)
    cv2.putText(img, f"{loop.dataset}: seconds per image", (left, 25), cv2.FONT_HERSHEY_SIMPLEX, 0.55, black, 1,
                cv2.LINE_AA)
    for n, (name, (vals, colour)) in enumerate(series.items()):
        pts = [to_px(x, y) for x, y in zip(xs, vals)]
        for a, b in zip(pts[:-1], pts[1:]):
            cv2.line(img, a, b, colour, 2, cv2.LINE_AA)
        for p in pts:
            cv2.circle(img, p, 4, colour, -1, cv2.LINE_AA)
        lx, ly = w - 150, top + 10 + 20 * n
        cv2.line(img, (lx, ly), (lx + 25, ly), colour, 2)
        cv2.putText(img, name, (lx + 32, ly + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.45, black, 1, cv2.LINE_AA)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), img):
        raise OSError(f"{path}: cannot write the plot")
    return path


def write_effort_report(results: Sequence[EffortResult], out: Path,
                        proposals: Optional[dict[str, list]] = None) -> list[Path]:
    """``effort.md`` (the table), ``effort_<dataset>[_iou<T>].json`` per run and, with
    ``proposals`` (data set -> COCO results list), ``proposals_<dataset>.json``; returns the files."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = []
    summaries = [r.summary() for r in results]
    md = out / "effort.md"
    notes = [f"- {s['dataset']}: proposals from {s['proposals']}; costs {s['costs']}"
             for s in {s["dataset"]: s for s in summaries}.values()]
    notes += [f"- {left_over_line(s)}" for s in summaries]
    notes += [f"- {corrections_line(s)}" for s in summaries]
    clicked = [s for s in summaries if s.get("clicks")]
    if clicked:
        notes += [f"- clicks: {clicked[0]['clicks']}", "", "## With click correction", "",
                  clicks_table(summaries)]
    md.write_text("# Labelling effort: manual versus assisted\n\n" + effort_table(summaries) + "\n\n"
                  + "\n".join(notes) + "\n", encoding="utf-8")
    files.append(md)
    several = len({float(r.params.get("target_iou", 0.9)) for r in results}) > 1
    for r in results:
        suffix = f"_iou{float(r.params.get('target_iou', 0.9)):.2f}" if several else ""
        suffix += "_clicks" if r.clicks else ""
        p = out / f"effort_{r.dataset}{suffix}.json"
        p.write_text(result_json(r), encoding="utf-8")
        files.append(p)
    for name, entries in (proposals or {}).items():
        p = out / f"proposals_{name}.json"
        p.write_text(json.dumps(entries), encoding="utf-8")
        files.append(p)
    return files


def write_loop_report(loop: LoopResult, out: Path) -> list[Path]:
    """``loop_<dataset>.md``, ``.json`` and ``.png``; returns the files."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    md = out / f"loop_{loop.dataset}.md"
    md.write_text(f"# Labelling loop on {loop.dataset}\n\n" + loop_table(loop) + "\n", encoding="utf-8")
    js = out / f"loop_{loop.dataset}.json"
    js.write_text(json.dumps([asdict(r) for r in loop.rows], indent=2), encoding="utf-8")
    png = plot_loop(loop, out / f"loop_{loop.dataset}.png")
    return [md, js, png]
