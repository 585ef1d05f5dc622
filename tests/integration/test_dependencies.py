"""The integration tier installs into ComfyUI's python only what the pack lacks, and never moves a version."""

from __future__ import annotations

from pathlib import Path

from .dependencies import pip_command, plan, read_requirements

REPO = Path(__file__).resolve().parents[2]


def test_only_missing_requirements_are_installed_and_every_present_package_is_pinned():
    requirements = read_requirements(REPO / "requirements.txt")
    installed = {"numpy": "1.25.0", "av": "14.0.1", "opencv-python": "4.9.0.80", "torch": "2.4.0+cpu",
                 "pillow": "10.0.0"}
    the_plan = plan(requirements, installed, importable={"numpy", "av", "cv2", "torch", "PIL"})
    assert [r.name for r in the_plan.missing] == ["safetensors", "soundfile", "soxr", "tqdm", "cryptography",
                                                   "c2pa-python"]
    # numpy is there in a version the pack does not ask for: reported, not replaced
    assert [(r.name, v) for r, v in the_plan.unsatisfied] == [("numpy", "1.25.0")]
    # cv2 comes from opencv-python already: the headless build is not added beside it
    assert "opencv-python-headless" not in {r.name for r in the_plan.missing}
    pins = the_plan.constraints().splitlines()
    assert sorted(pins) == sorted(f"{n}=={v}" for n, v in installed.items())


def test_the_pip_command_installs_the_missing_under_the_pins_and_upgrades_nothing(tmp_path):
    the_plan = plan(read_requirements(REPO / "requirements.txt"), {"numpy": "2.0.0"}, importable={"numpy"})
    command = pip_command(Path("/venv/bin/python"), the_plan, tmp_path / "pins.txt")
    assert command[:4] == ["/venv/bin/python", "-m", "pip", "install"]
    assert command[command.index("-c") + 1] == str(tmp_path / "pins.txt")
    assert not {"-U", "--upgrade", "--force-reinstall", "--upgrade-strategy"} & set(command)
    assert not any(arg.startswith("numpy") for arg in command)


def test_nothing_is_installed_when_everything_is_there():
    requirements = read_requirements(REPO / "requirements.txt")
    installed = {r.name: "99.0" for r in requirements}
    assert plan(requirements, installed, importable=set()).missing == []
