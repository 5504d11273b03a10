"""Palettes: shipped ones, user files in TOML and JSON, bad files, and the inside rule."""
from __future__ import annotations

import json

import numpy as np
import pytest

from annotation.document import Instance, InstanceState
from annotation.mask import Mask
from annotation.palette import (
    DEFAULT_PALETTE,
    SHIPPED_PALETTES,
    Palette,
    PaletteError,
    builtin_palette,
    load_palette,
    resolve_palette,
    rule_violations,
)


def test_shipped_palettes_load():
    for name in SHIPPED_PALETTES:
        p = builtin_palette(name)
        assert p.name == name and p.classes
        assert resolve_palette(name) == p
    mg = builtin_palette(DEFAULT_PALETTE)
    assert mg.names == ["mirror", "glass", "glass-in-mirror"]
    assert mg.color_of("mirror") == (0, 255, 0)
    assert mg.color_of("glass") == (255, 0, 0)
    assert mg.color_of("glass-in-mirror") == (0, 0, 255)
    assert mg.class_for_color((0, 0, 255)) == "glass-in-mirror"
    assert mg.class_for_color((1, 2, 3)) is None
    assert mg.parent_class("glass-in-mirror") == "mirror" and mg.parent_class("glass") is None
    assert [c.key for c in mg.classes] == ["1", "2", "3"]
    insp = builtin_palette("inspection")
    assert set(insp.names) == {"crack", "spalling", "rust"}
    with pytest.raises(PaletteError, match="no shipped palette"):
        builtin_palette("nope")


TOML_TEXT = """
name = "bridges"
exclusive = true

[[classes]]
name = "deck"
color = [10, 20, 30]
key = "d"

[[classes]]
name = "crack"
color = [255, 255, 0]
order = 5

[[rules]]
kind = "inside"
inner = "crack"
outer = "deck"
tolerance = 0.1
"""


def test_toml_and_json_user_palettes_load_the_same(tmp_path):
    toml_path = tmp_path / "bridges.toml"
    toml_path.write_text(TOML_TEXT)
    p = load_palette(toml_path)
    assert p.name == "bridges" and p.exclusive
    assert p.names == ["deck", "crack"]
    assert p.get("deck").color == (10, 20, 30) and p.get("deck").key == "d"
    assert p.get("crack").order == 5 and p.get("deck").order == 0
    assert p.rules[0].inner == "crack" and p.rules[0].tolerance == 0.1

    json_path = tmp_path / "bridges.json"
    json_path.write_text(json.dumps(p.to_dict()))
    assert load_palette(json_path) == p
    assert resolve_palette(str(json_path)) == p
    assert Palette.from_dict(p.to_dict()) == p

    # the name defaults to the file's stem; keys and order are optional
    minimal = tmp_path / "mine.json"
    minimal.write_text(json.dumps({"classes": [{"name": "a", "color": [1, 2, 3]}]}))
    m = load_palette(minimal)
    assert m.name == "mine" and m.get("a").key is None and m.rules == ()


@pytest.mark.parametrize(
    "name, text, reason",
    [
        ("broken.toml", "name = \n[[classes", "not valid TOML"),
        ("broken.json", "{\"classes\": [", "not valid JSON"),
        ("list.json", "[1, 2]", "must hold a table"),
        ("noclasses.json", "{\"name\": \"x\"}", "not a valid palette"),
        ("nocolor.json", "{\"classes\": [{\"name\": \"a\"}]}", "not a valid palette"),
        ("shortcolor.json", "{\"classes\": [{\"name\": \"a\", \"color\": [1, 2]}]}", "colour"),
        ("bigcolor.json", "{\"classes\": [{\"name\": \"a\", \"color\": [1, 2, 300]}]}", "colour"),
        ("wordcolor.json", "{\"classes\": [{\"name\": \"a\", \"color\": \"red\"}]}", "not a valid palette"),
        ("twice.json", "{\"classes\": [{\"name\": \"a\", \"color\": [1,2,3]}, {\"name\": \"a\", \"color\": [3,2,1]}]}",
         "twice"),
        ("rule.json", "{\"classes\": [{\"name\": \"a\", \"color\": [1,2,3]}],"
                      " \"rules\": [{\"inner\": \"a\", \"outer\": \"b\"}]}", "unknown class 'b'"),
        ("kind.json", "{\"classes\": [{\"name\": \"a\", \"color\": [1,2,3]}],"
                      " \"rules\": [{\"kind\": \"near\", \"inner\": \"a\", \"outer\": \"a\"}]}", "unknown rule kind"),
    ],
)
def test_bad_palette_files_name_the_file(tmp_path, name, text, reason):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(PaletteError) as err:
        load_palette(path)
    assert str(path) in str(err.value)
    assert reason in str(err.value)


def test_missing_and_binary_palette_files(tmp_path):
    with pytest.raises(PaletteError, match="cannot read palette file .*missing.toml"):
        load_palette(tmp_path / "missing.toml")
    binary = tmp_path / "binary.json"
    binary.write_bytes(b"\xff\xfe\x00garbage\x80")
    with pytest.raises(PaletteError) as err:
        load_palette(binary)
    assert str(binary) in str(err.value)


def test_with_class_adds_a_new_class_once():
    p = builtin_palette()
    q = p.with_class("frame")
    assert q.names[-1] == "frame" and len(q.get("frame").color) == 3
    assert q.with_class("frame") is q and p.with_class("mirror") is p
    with pytest.raises(KeyError, match="not in palette"):
        p.get("frame")


# ------------------------------------------------------------------ rules
SIZE = (40, 60)


def _box(x0, y0, x1, y1) -> Mask:
    full = np.zeros(SIZE, bool)
    full[y0:y1, x0:x1] = True
    return Mask.from_full(full)


def _inst(iid, cls, mask, image_id=1, state=InstanceState.ACCEPTED) -> Instance:
    return Instance(image_id=image_id, class_name=cls, mask=mask, state=state, id=iid)


def test_rule_violations_lists_glass_in_mirror_outside_every_mirror():
    palette = builtin_palette()
    instances = [
        _inst(1, "mirror", _box(0, 0, 20, 20)),
        _inst(2, "mirror", _box(30, 0, 50, 20)),
        _inst(3, "glass-in-mirror", _box(5, 5, 10, 10)),  # inside the first mirror
        _inst(4, "glass-in-mirror", _box(15, 25, 35, 35)),  # below both mirrors: outside every one
        _inst(5, "glass-in-mirror", _box(16, 5, 24, 10)),  # half in the first mirror, half in the gap
        _inst(6, "glass", _box(40, 25, 55, 35)),  # glass has no rule
    ]
    found = {v.instance_id: v for v in rule_violations(palette, instances)}
    assert set(found) == {4, 5}
    assert found[4].outside_fraction == 1.0
    assert found[5].outside_fraction == pytest.approx(0.5)
    assert found[4].image_id == 1
    msg = found[4].message()
    assert "instance 4" in msg and "glass-in-mirror" in msg and "mirror" in msg and "100.0%" in msg


def test_rule_violations_per_image_and_states():
    palette = builtin_palette()
    gim = _box(5, 5, 10, 10)
    instances = [
        _inst(1, "mirror", _box(0, 0, 20, 20), image_id=1),
        _inst(2, "glass-in-mirror", gim, image_id=2),  # the mirror is in another image
        _inst(3, "glass-in-mirror", _box(40, 30, 45, 35), image_id=1, state=InstanceState.REJECTED),
        _inst(4, "glass-in-mirror", _box(40, 30, 45, 35), image_id=1, state=InstanceState.PROPOSED),
        _inst(5, "glass-in-mirror", Mask.empty(SIZE), image_id=1),
    ]
    assert [v.instance_id for v in rule_violations(palette, instances)] == [2]
    with_proposals = rule_violations(palette, instances, include_proposed=True)
    assert sorted(v.instance_id for v in with_proposals) == [2, 4]
    # a rejected mirror does not count as a mirror
    rejected_mirror = [
        _inst(1, "mirror", _box(0, 0, 20, 20), state=InstanceState.REJECTED),
        _inst(2, "glass-in-mirror", gim),
    ]
    assert [v.instance_id for v in rule_violations(palette, rejected_mirror)] == [2]


def test_rule_tolerance(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text(TOML_TEXT)  # crack inside deck, 10 % may stick out
    palette = load_palette(path)
    deck = _inst(1, "deck", _box(0, 0, 20, 20))
    slightly_out = _inst(2, "crack", _box(0, 10, 21, 12))  # 2 of 42 pixels outside
    far_out = _inst(3, "crack", _box(10, 10, 30, 12))
    found = [v.instance_id for v in rule_violations(palette, [deck, slightly_out, far_out])]
    assert found == [3]


@pytest.mark.parametrize("name", ["a\x00b", "line\nbreak", "tab\there", "\ud800x", "x" * 101, "", "   "])
def test_class_names_with_control_characters_are_refused(name):
    """A class name travels into CVAT XML, JSON, file names and menus: a NUL in it made the
    CVAT export write XML nothing could parse. The palette refuses such names."""
    from annotation.palette import PaletteError, builtin_palette

    with pytest.raises(PaletteError, match="class name"):
        builtin_palette("mirror-glass").with_class(name)


def test_ordinary_class_names_pass():
    from annotation.palette import builtin_palette

    p = builtin_palette("mirror-glass").with_class("Riss (quer) – 0.3 mm")
    assert "Riss (quer) – 0.3 mm" in p


def test_imported_classes_get_distinct_colours_and_the_next_digit_keys():
    """An import once gave CAR (250, 50, 83) beside glass (255, 0, 0) and no key."""
    import numpy as np

    from annotation.palette import _lab, builtin_palette

    p = builtin_palette("mirror-glass")
    for name in ("car", "person", "bicycle"):
        p = p.with_class(name)
    keys = [c.key for c in p.classes]
    assert keys == ["1", "2", "3", "4", "5", "6"]
    labs = [_lab(c.color) for c in p.classes]
    closest = min(float(np.linalg.norm(a - b)) for i, a in enumerate(labs) for b in labs[i + 1:])
    # distances in OpenCV's 8-bit CIELAB: the old CAR beside glass was 36 apart
    assert closest > 80
    assert float(np.linalg.norm(_lab((250, 50, 83)) - _lab((255, 0, 0)))) < 40
