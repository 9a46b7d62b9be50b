"""The import contracts (pyproject.toml [tool.importlinter], docs/architecture.md) hold."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from voicebot.config import PROJECT_ROOT

LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", *args],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_import_contracts_are_kept() -> None:
    done = lint_imports()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


def test_a_lower_layer_importing_a_higher_one_breaks_a_contract(tmp_path: Path) -> None:
    """The contracts can fail: the same layers over a copy of the package with one wrong import."""
    package = tmp_path / "voicebot"
    subprocess.run(["cp", "-r", str(PROJECT_ROOT / "voicebot"), str(package)], check=True)
    (package / "audio" / "wrong_way.py").write_text("from voicebot.call import CallSession\n")
    config = tmp_path / "pyproject.toml"
    config.write_text((PROJECT_ROOT / "pyproject.toml").read_text())
    done = subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--config", str(config)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode != 0
    assert "voicebot.audio.wrong_way -> voicebot.call" in done.stdout
