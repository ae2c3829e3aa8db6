import json

import pytest

from loscat_hf.errors import LoscatError
from loscat_hf.taxonomy import RegionError, load_taxonomy


@pytest.fixture(scope="module")
def tax():
    return load_taxonomy()


def test_default_taxonomy_has_18_sites_and_12_classes(tax):
    assert len(tax.sites) == 18
    assert tax.classes == ("head", "neck", "chest", "abdomen", "upper_back", "lower_back",
                           "arm", "forearm", "hand", "thigh", "leg", "foot")
    assert tax.id2label[0] == "head" and tax.label2id["foot"] == 11


@pytest.mark.parametrize("text,site,label", [
    ("R forearm", "right_forearm", "forearm"),
    ("Rt. Forearm", "right_forearm", "forearm"),
    ("forearm (left)", "left_forearm", "forearm"),
    ("LEFT_THIGH", "left_thigh", "thigh"),
    ("Upper Back", "upper_back", "upper_back"),
    ("lower-back", "lower_back", "lower_back"),
    ("L leg", "left_leg", "leg"),
    ("l. foot", "left_foot", "foot"),
    ("right-hand", "right_hand", "hand"),
    ("Lt Arm", "left_arm", "arm"),
    ("  HEAD ", "head", "head"),
    ("Neck", "neck", "neck"),
    ("chest", "chest", "chest"),
    ("ABDOMEN", "abdomen", "abdomen"),
    ("arm, right side", "right_arm", "arm"),
    ("face", "head", "head"),
])
def test_rater_spellings(tax, text, site, label):
    parsed = tax.parse(text)
    assert (parsed.site, parsed.label, parsed.code) == (site, label, None)


@pytest.mark.parametrize("text,code", [
    ("unclear", "unclear"), ("Multiple", "multiple"), ("not gradable", "not_gradable"),
    ("NOT_GRADABLE", "not_gradable"),
])
def test_non_site_codes(tax, text, code):
    assert tax.parse(text).code == code


def test_unsided_lateral_site_keeps_its_class(tax):
    assert tax.parse("hand").label == "hand"


@pytest.mark.parametrize("text", ["elbow", "", "left right arm", "knee"])
def test_unknown_regions_list_valid_names(tax, text):
    with pytest.raises(RegionError) as info:
        tax.parse(text)
    assert "left_forearm" in str(info.value) and "not_gradable" in str(info.value)


def test_neighbours(tax):
    assert tax.are_neighbours("abdomen", "lower_back")
    assert tax.are_neighbours("leg", "thigh")
    assert tax.are_neighbours("arm", "forearm")
    assert not tax.are_neighbours("head", "foot")


def test_custom_taxonomy_file(tmp_path):
    path = tmp_path / "tax.json"
    path.write_text(json.dumps({"classes": ["upper", "lower"],
                                "sites": {"left_upper": "upper", "right_upper": "upper", "lower": "lower"},
                                "neighbours": [["upper", "lower"]]}))
    tax = load_taxonomy(path)
    assert tax.parse("Rt upper").site == "right_upper"
    assert tax.are_neighbours("lower", "upper")
    with pytest.raises(RegionError):
        tax.parse("head")


def test_bad_taxonomy_files(tmp_path):
    with pytest.raises(LoscatError, match="cannot read"):
        load_taxonomy(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"classes": ["a"], "sites": {"x": "b"}}))
    with pytest.raises(LoscatError, match="does not list"):
        load_taxonomy(bad)
