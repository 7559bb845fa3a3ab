import subprocess
import sys

from conftest import REPO


def test_config_reference_matches_the_schema():
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "gen_config_docs.py"), "--check"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
