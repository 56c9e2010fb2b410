"""Builds elihu's example jobs in Python into dist/NAME.wasm: `python3 build.py`.

The first build installs componentize-py (pinned in guest-sdk/python/
requirements.txt) into .venv here; later builds reuse it.
"""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent / "guest-sdk" / "python"))

from elihu_guest.build import main  # noqa: E402

EXAMPLES = ["hello", "csvstats", "behaviours"]

if __name__ == "__main__":
    args = [str(HERE / name / "app.py") for name in EXAMPLES] + ["--out-dir", str(HERE / "dist"), "--venv", str(HERE / ".venv")] + sys.argv[1:]
    sys.exit(main(args))
