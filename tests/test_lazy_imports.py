"""`import fastnn`, `fastnn --help` and `fastnn bench --help` stay light: none of them
loads the benchmark package, Numba, or any peer library (each is imported only when a
command that needs it runs). Checked in a fresh interpreter, since this test process has
long imported them."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

#: Never loaded by importing fastnn or printing the CLI's help.
HEAVY = ("fastnn.bench", "numba", "torch", "jax", "sklearn", "keras", "matplotlib")

_CODE = """
import json, sys
args = sys.argv[1:]
if args == ["import"]:
    import fastnn
else:
    from fastnn.cli import main
    try:
        main(args)
    except SystemExit as exc:
        assert exc.code == 0, exc.code
heavy = {heavy!r}
loaded = sorted(m for m in sys.modules if any(m == h or m.startswith(h + ".") for h in heavy))
print(json.dumps(loaded), file=sys.stderr)
"""


@pytest.mark.parametrize(
    "args", [["import"], ["--help"], ["bench", "--help"], ["train", "--help"]], ids=" ".join
)
def test_stays_light(args):
    proc = subprocess.run(
        [sys.executable, "-c", _CODE.format(heavy=HEAVY), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    loaded = json.loads(proc.stderr.strip().splitlines()[-1])
    assert loaded == [], f"{' '.join(args)} loaded {loaded}"
    if args != ["import"]:
        assert "Usage:" in proc.stdout
