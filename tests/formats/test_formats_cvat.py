"""CVAT for images 1.1: round trip with holes, mask RLE codec, hostile and damaged files."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from annotation.formats.common import FormatError, LabelledImage, LabelledInstance
from annotation.formats.cvat import decode_cvat_rle, encode_cvat_rle, export_cvat, import_cvat
from annotation.mask import Mask
from annotation.palette import builtin_palette

from formats_helpers import blob_masks, ring_mask


@settings(max_examples=60, deadline=None)
@given(arrays(bool, st.tuples(st.integers(1, 12), st.integers(1, 12))))
def test_cvat_rle_codec_round_trips(a):
    h, w = a.shape
    assert np.array_equal(decode_cvat_rle(encode_cvat_rle(a), w, h), a)


def test_cvat_round_trip_with_a_hole(tmp_path):
    size = (50, 70)
    holed = ring_mask(size, (5, 5, 40, 40), (15, 15, 25, 30))
    triangle = Mask.from_polygon([(45, 5), (68, 8), (55, 30)], size)
    insts = [
        LabelledInstance("mirror", holed, score=0.5, origin="net@2", state="proposed"),
        LabelledInstance("glass", triangle),
        LabelledInstance("glass", Mask.from_full(np.eye(50, 70, k=20, dtype=bool))),  # 8-connected diagonal
    ] + [LabelledInstance("glass-in-mirror", m) for m in blob_masks(size, seed=11, count=2)]
    out = tmp_path / "annotations.xml"
    assert export_cvat([LabelledImage("img/a.png", size, insts)], builtin_palette(), out) == []
    text = out.read_text()
    assert text.count("<mask ") >= 1 and text.count("<polygon ") >= 2
    res = import_cvat(out)
    assert res.classes["mirror"] == (0, 255, 0)
    back = res.images[0]
    assert back.path == "img/a.png" and back.size == size
    assert len(back.instances) == len(insts)
    for a, b in zip(insts, back.instances):
        assert a.class_name == b.class_name
        assert a.mask == b.mask
        assert (a.score, a.origin, a.state) == (b.score, b.origin, b.state)
    assert not back.instances[0].mask.to_full()[20, 20]  # the hole is still a hole


BOMB = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<annotations><version>1.1</version><image id="0" name="&lol3;" width="4" height="4"/></annotations>
"""


def _mask_xml(rle: str, extra: str = "") -> str:
    return (
        '<annotations><version>1.1</version><image id="0" name="a.png" width="10" height="10">'
        f'<mask label="glass" rle="{rle}" left="1" top="2" width="3" height="2"/>{extra}</image></annotations>'
    )


def test_cvat_hostile_and_damaged_files_raise_format_error(tmp_path):
    p = tmp_path / "a.xml"
    cases = {
        BOMB: "entities",
        "<annotations><image name='a.png' width='4'": "not well-formed",
        "<root/>": "not <annotations>",
        _mask_xml("1, 2, 9"): "runs cover 12 pixels but its box is 3x2",
    }
    for text, message in cases.items():
        p.write_text(text)
        with pytest.raises(FormatError, match=message) as err:
            import_cvat(p)
        assert str(p) in str(err.value) and "\n" not in str(err.value)


def test_cvat_one_bad_mask_among_good_shapes_is_a_warning(tmp_path):
    p = tmp_path / "a.xml"
    p.write_text(_mask_xml("1, 2, 9", '<mask label="glass" rle="0, 6" left="1" top="2" width="3" height="2"/>'))
    res = import_cvat(p)
    assert len(res.images[0].instances) == 1
    assert res.images[0].instances[0].mask.bbox == (1, 2, 4, 4)
    assert any("runs cover" in w for w in res.warnings)


@pytest.mark.parametrize(
    "rle, message",
    [
        ("0, 99999999999999999999999999", "runs cover 99999999999999999999999999 pixels"),  # past int64
        ("1, -2, 7", "negative run length"),
        ("1, 2.5, 3", "not a whole number"),
    ],
)
def test_cvat_rle_decoder_checks_runs_before_allocating(rle, message):
    with pytest.raises(ValueError, match=message):
        decode_cvat_rle(rle, 3, 2)
