"""The README's first command: `connector demo` on a fresh folder, as a real process."""

import subprocess
import sys


def test_demo_runs_end_to_end(tmp_path):
    result = subprocess.run([sys.executable, "-m", "connector", "demo"], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "pass 2: nothing changed: failed_items, 0 request(s) reached Jobylon" in out  # INT-1007 still invalid
    assert "pass 4: steady state: ok, 0 request(s) reached Jobylon" in out
    assert "recreated" in out and "INT-1007" in out and "unknown IANA time zone" in out
    assert "demo finished: Jobylon matches the source." in out
    assert list(tmp_path.iterdir()) == []  # nothing left behind in the working folder
