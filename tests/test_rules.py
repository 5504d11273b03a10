"""Rule checks that look at the instances concerned only: same answers as a check over
full-image unions, kept up to date edit by edit, reading no pixels where no inner
instance can be affected."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from annotation.document import Instance, InstanceState
from annotation.mask import Mask, rasterize_polygon
from annotation.palette import builtin_palette, rule_violations
from annotation.rules import RuleChecker, violations

PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MG = builtin_palette("mirror-glass")
CLASSES = ["mirror", "glass", "glass-in-mirror"]
STATES = [InstanceState.ACCEPTED, InstanceState.ACCEPTED, InstanceState.PROPOSED, InstanceState.REJECTED]


def _reference(palette, instances, include_proposed=False):
    """The check as it was first written: every outer merged into one full-image array."""
    out = []
    by_image = {}
    for inst in instances:
        if inst.state is InstanceState.REJECTED or (inst.is_proposal and not include_proposed):
            continue
        by_image.setdefault(inst.image_id, []).append(inst)
    for image_id, insts in by_image.items():
        for rule in palette.rules:
            outer = np.zeros(insts[0].mask.image_size, bool)
            for i in insts:
                if i.class_name == rule.outer:
                    outer |= i.mask.to_full()
            for i in insts:
                if i.class_name != rule.inner or i.mask.is_empty():
                    continue
                frac = 1.0 - np.count_nonzero(outer & i.mask.to_full()) / i.mask.area
                if frac > rule.tolerance:
                    out.append((i.id, rule.inner, image_id, frac))
    return out


def _key(found):
    return sorted((v.instance_id, v.rule.inner, v.image_id, v.outside_fraction) for v in found)


def _rect(size, x0, y0, x1, y1) -> Mask:
    return rasterize_polygon([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], size)


@st.composite
def blobs(draw, size):
    h, w = size
    x0, y0 = draw(st.integers(-5, w)), draw(st.integers(-5, h))
    m = _rect(size, x0, y0, x0 + draw(st.integers(0, 40)), y0 + draw(st.integers(0, 40)))
    if draw(st.booleans()) and not m.is_empty():  # a hole, and array slack from an edit
        m.erase_stroke([(x0 + 5, y0 + 5)], draw(st.floats(0, 4)))
        m.paint_stroke([(x0, y0)], 1.0)
    return m


@PROPERTY
@given(data=st.data())
def test_full_check_matches_full_image_unions(data):
    size = (60, 80)
    instances = []
    for iid in range(data.draw(st.integers(0, 12))):
        instances.append(Instance(
            image_id=data.draw(st.sampled_from([1, 2])), class_name=data.draw(st.sampled_from(CLASSES)),
            mask=data.draw(blobs(size)), state=data.draw(st.sampled_from(STATES)), id=iid,
        ))
    for proposed in (False, True):
        got = violations(MG, instances, include_proposed=proposed)
        want = _reference(MG, instances, include_proposed=proposed)
        assert sorted((v.instance_id, v.rule.inner, v.image_id, v.outside_fraction) for v in got) == sorted(want)
        assert _key(rule_violations(MG, instances, include_proposed=proposed)) == _key(got)


@PROPERTY
@given(data=st.data())
def test_checker_after_random_edits_equals_a_full_check(data):
    size = (70, 90)
    proposed = data.draw(st.booleans())
    instances: dict[int, Instance] = {}
    next_id = 0

    def add():
        nonlocal next_id
        next_id += 1
        instances[next_id] = Instance(
            image_id=7, class_name=data.draw(st.sampled_from(CLASSES)), mask=data.draw(blobs(size)),
            state=data.draw(st.sampled_from(STATES)), id=next_id,
        )
        return next_id

    for _ in range(data.draw(st.integers(0, 6))):
        add()
    checker = RuleChecker(MG, include_proposed=proposed)
    assert _key(checker.reset(instances)) == _key(violations(MG, instances.values(), include_proposed=proposed))
    for _ in range(data.draw(st.integers(1, 12))):
        kind = data.draw(st.sampled_from(["add", "remove", "paint", "erase", "class", "state", "none"]))
        changed = {}
        if kind == "add" or not instances:
            changed[add()] = None
        elif kind == "remove":
            iid = data.draw(st.sampled_from(sorted(instances)))
            del instances[iid]
            changed[iid] = None
        elif kind in ("paint", "erase"):
            iid = data.draw(st.sampled_from(sorted(instances)))
            pts = [(data.draw(st.floats(-5, 95)), data.draw(st.floats(-5, 75))) for _ in range(2)]
            box = instances[iid].mask.paint_stroke(pts, data.draw(st.floats(0, 8)), kind == "paint")
            changed[iid] = box
        elif kind == "class":
            iid = data.draw(st.sampled_from(sorted(instances)))
            instances[iid].class_name = data.draw(st.sampled_from(CLASSES))
            changed[iid] = None
        elif kind == "state":
            iid = data.draw(st.sampled_from(sorted(instances)))
            instances[iid].state = data.draw(st.sampled_from(STATES))
            changed[iid] = None
        got = checker.update(instances, changed)
        want = violations(MG, instances.values(), include_proposed=proposed)
        assert _key(got) == _key(want)
        assert [v.instance_id for v in got] == sorted(v.instance_id for v in got)


def test_ids_gone_or_unseen_are_noticed_without_being_named():
    size = (50, 50)
    mirror = Instance(1, "mirror", _rect(size, 0, 0, 30, 30), id=1)
    gim = Instance(1, "glass-in-mirror", _rect(size, 5, 5, 10, 10), id=2)
    checker = RuleChecker(MG)
    assert checker.reset({1: mirror, 2: gim}) == []
    # the mirror vanished and a stray glass-in-mirror appeared; nobody said so
    stray = Instance(1, "glass-in-mirror", _rect(size, 40, 40, 45, 45), id=3)
    found = checker.update({2: gim, 3: stray}, {})
    assert [v.instance_id for v in found] == [2, 3]
    assert all(v.outside_fraction == 1.0 for v in found)


# ------------------------------------------------------------------ cost
BIG = (5000, 5000)


@pytest.fixture
def pixel_reads(monkeypatch):
    """Count every read of mask pixels through ``Mask`` (read_box, intersection_area)."""
    calls = []
    for name in ("read_box", "intersection_area"):
        real = getattr(Mask, name)

        def spy(self, *args, _real=real, _name=name, **kwargs):
            calls.append(_name)
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(Mask, name, spy)
    return calls


def _photo(n=300):
    """A 25-MP image with ``n`` mirrors and glasses on a grid, no glass-in-mirror."""
    instances = {}
    for k in range(n):
        gx, gy = k % 20, k // 20
        x0, y0 = 40 + gx * 245, 40 + gy * 320
        cls = "mirror" if k % 2 == 0 else "glass"
        instances[k + 1] = Instance(1, cls, _rect(BIG, x0, y0, x0 + 180, y0 + 250), id=k + 1)
    return instances


def test_edits_without_glass_in_mirror_read_no_pixels(pixel_reads):
    instances = _photo()
    checker = RuleChecker(MG)
    assert checker.reset(instances) == []
    assert violations(MG, instances.values()) == []
    glass = instances[2]
    box = glass.mask.paint_stroke([(300, 60), (330, 90)], 12.0)
    assert checker.update(instances, {2: box}) == [] and checker.last_checked == ()
    mirror = instances[1]
    box = mirror.mask.erase_stroke([(60, 60), (90, 90)], 12.0)
    assert checker.update(instances, {1: box}) == [] and checker.last_checked == ()
    del instances[3]
    assert checker.update(instances, {3: None}) == [] and checker.last_checked == ()
    assert pixel_reads == []


def test_editing_a_mirror_rechecks_only_the_glass_in_mirror_near_the_edit(pixel_reads):
    instances = _photo()
    # glass-in-mirror in the first mirror (x 40-220, y 40-290): two near its top, one
    # near its bottom; and one in a mirror far away
    for iid, (x0, y0) in {1001: (60, 60), 1002: (150, 60), 1003: (60, 250), 1004: (2000, 1000)}.items():
        instances[iid] = Instance(1, "glass-in-mirror", _rect(BIG, x0, y0, x0 + 20, y0 + 20), id=iid)
    instances[1004].mask = _rect(BIG, 40 + 8 * 245 + 20, 40 + 3 * 320 + 20, 40 + 8 * 245 + 40, 40 + 3 * 320 + 40)
    checker = RuleChecker(MG)
    assert checker.reset(instances) == []
    assert checker.last_checked == (1001, 1002, 1003, 1004)

    # erase the mirror's top left corner: only the glass-in-mirror there is looked at
    pixel_reads.clear()
    mirror = instances[1]
    box = mirror.mask.erase_stroke([(40, 40), (95, 95)], 20.0)
    found = checker.update(instances, {1: box})
    assert checker.last_checked == (1001,)
    assert [v.instance_id for v in found] == [1001] and found[0].outside_fraction > 0.5
    assert 0 < len(pixel_reads) <= 3  # the inner's pixels and the one mirror near it
    assert _key(found) == _key(violations(MG, instances.values()))

    # the mirror taken away: every glass-in-mirror it held, and no other
    del instances[1]
    found = checker.update(instances, {1: None})
    assert checker.last_checked == (1001, 1002, 1003)
    assert [v.instance_id for v in found] == [1001, 1002, 1003]
    assert _key(found) == _key(violations(MG, instances.values()))

    # a glass-in-mirror edited: itself only
    box = instances[1004].mask.paint_stroke([(2450, 2560)], 5.0)  # between two rows
    found = checker.update(instances, {1004: box})
    assert checker.last_checked == (1004,)
    assert [v.instance_id for v in found] == [1001, 1002, 1003, 1004]
