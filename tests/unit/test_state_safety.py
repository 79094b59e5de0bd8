"""A lab is selected by a name, never a path; labctl deletes only folders it made, inside its own
state folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from labctl.spec import build_spec
from tests.unit.test_cli_errors import labctl


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A folder that is not labctl's, with something in it."""
    d = tmp_path / "precious"
    d.mkdir()
    (d / "data.txt").write_text("keep me\n")
    return d


def _intact(victim: Path) -> bool:
    return (victim / "data.txt").read_text() == "keep me\n"


@pytest.mark.parametrize("verb", [["down"], ["status"], ["exec", "manager", "--", "true"], ["fault", "clear"],
                                  ["scenario", "clean", "all"], ["diagnose"]])
def test_a_path_as_lab_name_is_a_usage_error_for_every_command(home: Path, victim: Path, verb: list[str]) -> None:
    proc = labctl(home, "--lab", str(victim), *verb)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"--lab: '{victim}' is not a lab name" in proc.stderr
    assert _intact(victim)


@pytest.mark.parametrize("name", ["..", ".", "../precious", "a/b", "Lab", "-x", "", "x" * 32, "lab;rm", "lab\n"])
def test_names_that_are_not_names_are_refused(home: Path, victim: Path, name: str) -> None:
    (home / "labs").mkdir(parents=True)
    proc = labctl(home, "--lab", name, "down")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "is not a lab name" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 2  # the error and its hint
    assert _intact(victim) and (home / "labs").is_dir()


def test_dot_dot_no_longer_deletes_every_lab(home: Path) -> None:
    other = home / "labs" / "other"
    other.mkdir(parents=True)
    (other / "lab.json").write_text(json.dumps(build_spec({"lab": {"name": "other"}}).to_json()))
    assert labctl(home, "--lab", "..", "down").returncode == 2
    assert (other / "lab.json").is_file()


def test_labctl_lab_environment_variable_is_checked(home: Path, victim: Path) -> None:
    proc = labctl(home, "down", env={"LABCTL_LAB": str(victim)})
    assert proc.returncode == 2
    assert f"LABCTL_LAB: '{victim}' is not a lab name" in proc.stderr
    assert _intact(victim)


def test_a_lab_file_name_that_is_a_path_is_refused(home: Path, tmp_path: Path, victim: Path) -> None:
    lab_file = tmp_path / "labctl.toml"
    lab_file.write_text(f'[lab]\nname = "../../{victim.name}"\n')
    proc = labctl(home, "--lab-file", str(lab_file), "down")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "is not a lab name" in proc.stderr
    assert _intact(victim)


def test_valid_names_are_accepted(home: Path) -> None:
    for name in ("lab", "lab2", "0lab", "a-b-c", "x" * 31):
        proc = labctl(home, "--lab", name, "down")
        assert proc.returncode == 0, proc.stderr
        assert "nothing to remove" in proc.stdout


def test_a_symlinked_lab_folder_is_not_followed(home: Path, victim: Path) -> None:
    (home / "labs").mkdir(parents=True)
    (home / "labs" / "lab").symlink_to(victim)
    (victim / ".labctl-lab").write_text("a marker does not make a link labctl's\n")
    proc = labctl(home, "--lab", "lab", "down")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "refusing to touch" in proc.stderr
    assert _intact(victim) and (home / "labs" / "lab").is_symlink()


def test_a_folder_labctl_did_not_make_is_not_deleted(home: Path) -> None:
    foreign = home / "labs" / "lab"
    foreign.mkdir(parents=True)
    (foreign / "notes.txt").write_text("mine\n")
    proc = labctl(home, "down")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "was not made by labctl: not deleting it" in proc.stderr
    assert (foreign / "notes.txt").is_file()


def test_a_half_made_lab_folder_is_removed(home: Path) -> None:
    """What an `up` interrupted before it wrote lab.json leaves (marker and lock) goes with `down`."""
    made = home / "labs" / "lab"
    made.mkdir(parents=True)
    (made / ".labctl-lab").write_text("state of labctl lab lab\n")
    (made / "lock").write_text("")
    proc = labctl(home, "down")
    assert proc.returncode == 0, proc.stderr
    assert not made.exists()


def test_status_all_skips_folders_that_are_not_labs(home: Path, victim: Path) -> None:
    labs = home / "labs"
    good = labs / "good"
    good.mkdir(parents=True)
    (good / "lab.json").write_text(json.dumps(build_spec({"lab": {"name": "good"}}).to_json()))
    (labs / "Bad Name").mkdir()
    (labs / "Bad Name" / "lab.json").write_text("{}")
    (labs / "linked").symlink_to(victim)
    (victim / "lab.json").write_text("{}")
    proc = labctl(home, "status", "--all", "--json")
    assert proc.returncode == 0, proc.stderr
    assert [entry["lab"] for entry in json.loads(proc.stdout)] == ["good"]


def test_n_is_the_short_form_of_lab(home: Path, victim: Path) -> None:
    assert "lab 'second' does not exist" in labctl(home, "-n", "second", "down").stdout
    assert labctl(home, "-n", str(victim), "down").returncode == 2


def test_scenario_name_is_scenario_run_name(home: Path) -> None:
    proc = labctl(home, "scenario", "container-to-service")
    assert proc.returncode == 1 and "lab 'lab' is not up" in proc.stderr  # it went to `run`
    proc = labctl(home, "scenario", "no-such")
    assert proc.returncode == 2 and "no scenario named no-such" in proc.stderr
    assert labctl(home, "scenario", "list").returncode == 0
