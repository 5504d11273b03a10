"""Project statistics: what 000_0bffb380ab10507f.txt reports of its dataset, for any project.

Images per class ("447 glass labeled images, 489 mirror"), images with several
classes together ("267 mirror and glass together"), images holding the nested
class ("181 with glass in mirror"), plus instance counts, mask sizes and images
that are the same picture at different sizes (the paper removed those).
"""
from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from typing import Any, Optional

import numpy as np
from PIL import Image

from annotation.document import InstanceState


def difference_hash(path: str, size: int = 8) -> Optional[int]:
    """A 64-bit gradient hash of a picture that survives resizing and re-encoding."""
    try:
        with Image.open(path) as im:
            im.draft("L", (size * 8, size * 8))  # JPEG decodes at reduced scale: fast
            small = im.convert("L").resize((size + 1, size), Image.Resampling.BILINEAR)
    except Exception:
        return None
    a = np.asarray(small, dtype=np.int16)
    bits = (a[:, 1:] > a[:, :-1]).ravel()
    return int(sum(1 << i for i, b in enumerate(bits) if b))


def duplicate_groups(paths: dict[str, str], max_distance: int = 3) -> list[list[str]]:
    """Groups of images whose hashes differ in at most ``max_distance`` bits."""
    hashes = {name: difference_hash(p) for name, p in paths.items()}
    items = [(n, h) for n, h in hashes.items() if h is not None]
    parent = {n: n for n, _ in items}

    def find(n: str) -> str:
        while parent[n] != n:
            parent[n] = parent[parent[n]]
            n = parent[n]
        return n

    for (a, ha), (b, hb) in itertools.combinations(items, 2):
        if bin(ha ^ hb).count("1") <= max_distance:
            parent[find(a)] = find(b)
    groups: dict[str, list[str]] = defaultdict(list)
    for n, _ in items:
        groups[find(n)].append(n)
    return sorted((sorted(g) for g in groups.values() if len(g) > 1), key=lambda g: g[0])


def project_stats(store: Any, *, find_duplicates: bool = True) -> dict:
    images = store.images()
    palette = store.palette
    insts = store.instances()
    by_state = Counter(i.state.value for i in insts)
    accepted = [i for i in insts if i.state is InstanceState.ACCEPTED]
    classes_of_image: dict[int, set[str]] = defaultdict(set)
    per_class = Counter()
    area_frac: dict[str, list[float]] = defaultdict(list)
    sizes = {im.id: im.width * im.height for im in images}
    for inst in accepted:
        classes_of_image[inst.image_id].add(inst.class_name)
        per_class[inst.class_name] += 1
        if sizes.get(inst.image_id):
            area_frac[inst.class_name].append(inst.mask.area / sizes[inst.image_id])
    names = list(palette.names) + sorted(set(per_class) - set(palette.names))
    images_per_class = {c: sum(1 for s in classes_of_image.values() if c in s) for c in names}
    pairs = {}
    for a, b in itertools.combinations(names, 2):
        n = sum(1 for s in classes_of_image.values() if a in s and b in s)
        if n:
            pairs[f"{a} + {b}"] = n
    nested = {
        f"{r.inner} (inside {r.outer})": sum(1 for s in classes_of_image.values() if r.inner in s)
        for r in palette.rules
    }
    labelled = [s for s in classes_of_image.values() if s]
    out: dict[str, Any] = {
        "project": str(store.root),
        "palette": palette.name,
        "images": len(images),
        "unreadable_images": {im.path: im.error for im in images if im.error},
        "images_by_status": dict(Counter(im.status.value for im in images)),
        "labelled_images": len(labelled),
        "instances_by_state": dict(by_state),
        "accepted_instances_per_class": {c: per_class.get(c, 0) for c in names},
        "images_per_class": images_per_class,
        "images_with_several_classes": sum(1 for s in labelled if len(s) > 1),
        "images_with_class_pairs": pairs,
        "images_with_nested_class": nested,
        "mean_instances_per_labelled_image": (len(accepted) / len(labelled)) if labelled else 0.0,
        "mean_area_fraction_per_class": {c: float(np.mean(v)) for c, v in area_frac.items()},
    }
    if find_duplicates:
        paths = {im.path: str(store.root / im.path) for im in images if not im.error}
        out["duplicate_image_groups"] = duplicate_groups(paths)
    return out


def format_stats(s: dict) -> str:
    lines = [
        f"project   {s['project']}",
        f"palette   {s['palette']}",
        f"images    {s['images']} ({', '.join(f'{k} {v}' for k, v in sorted(s['images_by_status'].items())) or 'none'})",
        f"labelled  {s['labelled_images']} images, {s['images_with_several_classes']} with several classes",
        f"instances {', '.join(f'{k} {v}' for k, v in sorted(s['instances_by_state'].items())) or 'none'}",
        "",
        f"{'class':<20}{'instances':>10}{'images':>8}{'mean area':>11}",
    ]
    for c, n in s["accepted_instances_per_class"].items():
        frac = s["mean_area_fraction_per_class"].get(c)
        lines.append(
            f"{c:<20}{n:>10}{s['images_per_class'].get(c, 0):>8}{'' if frac is None else f'{100 * frac:.1f} %':>11}"
        )
    if s["images_with_class_pairs"]:
        lines.append("")
        lines += [f"images with {k}: {v}" for k, v in s["images_with_class_pairs"].items()]
    lines += [f"images with {k}: {v}" for k, v in s["images_with_nested_class"].items()]
    if s["unreadable_images"]:
        lines.append("")
        lines += [f"unreadable: {p}: {e}" for p, e in s["unreadable_images"].items()]
    dups = s.get("duplicate_image_groups") or []
    if dups:
        lines.append("")
        lines.append(f"{len(dups)} groups of the same picture (different size or encoding):")
        lines += ["  " + ", ".join(g) for g in dups[:20]]
    return "\n".join(lines)
