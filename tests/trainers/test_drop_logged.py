"""trainers.logs.drop_logged_after: the rows a resumed run logs again are removed first."""

from __future__ import annotations

import pytest

from torchrl_flowmbpo.trainers import logs


@pytest.fixture(scope="module")
def utils():
    return logs


def test_rows_after_the_step_are_dropped_in_every_scalar_file(utils, tmp_path):
    scalars = tmp_path / "exp" / "scalars"
    (scalars / "eval").mkdir(parents=True)
    (scalars / "loss.csv").write_text("64,1.0\n128,2.0\n192,3.0\n")
    (scalars / "eval" / "return.csv").write_text("128,5.5\n256,6.5\n")
    (scalars / "time.csv").write_text("64,0.1\n")
    other = tmp_path / "exp" / "notes.csv"
    other.write_text("999,1\n")
    assert utils.drop_logged_after(tmp_path, 128) == 2
    assert (scalars / "loss.csv").read_text() == "64,1.0\n128,2.0\n"
    assert (scalars / "eval" / "return.csv").read_text() == "128,5.5\n"
    assert (scalars / "time.csv").read_text() == "64,0.1\n"
    assert other.read_text() == "999,1\n"  # not a scalar file: left alone
    assert not list(tmp_path.rglob("*.partial"))
    assert utils.drop_logged_after(tmp_path, 128) == 0


def test_a_line_cut_short_by_the_stop_is_dropped(utils, tmp_path):
    scalars = tmp_path / "exp" / "scalars"
    scalars.mkdir(parents=True)
    (scalars / "a.csv").write_text("64,1.0\n128,2.0\n19")  # killed mid-write
    (scalars / "b.csv").write_text("64,1.0\n,\n")
    assert utils.drop_logged_after(tmp_path, 1000) == 2
    assert (scalars / "a.csv").read_text() == "64,1.0\n128,2.0\n"
    assert (scalars / "b.csv").read_text() == "64,1.0\n"
