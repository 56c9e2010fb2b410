"""Builds elihu jobs written in Python into WebAssembly components.

    python3 -m elihu_guest.build app.py -o my-job.wasm
    python3 -m elihu_guest.build hello/app.py csvstats/app.py --out-dir dist

Each SOURCE is a module whose ``@job`` function is the job. The build
installs what ``--requirements`` lists (componentize-py, pinned, plus any
pure-Python library the job imports) into a virtual environment the first
time, then runs componentize-py with the source's directory and this SDK on
the Python path; the SDK's ``componentize-py.toml`` names the WIT world. It
runs on the machine that builds (Python 3.10 or later with ``venv``), never
inside the job.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import time
import venv
from pathlib import Path

SDK_PARENT = Path(__file__).resolve().parent.parent
SDK_REQUIREMENTS = SDK_PARENT / "requirements.txt"


class BuildError(Exception):
    """A build step failed; the message says what to do."""


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python3 -m elihu_guest.build",
        description="Build elihu jobs written in Python into WebAssembly components.",
    )
    parser.add_argument("sources", nargs="+", metavar="SOURCE.py", help="the module(s) with the @job function")
    out = parser.add_mutually_exclusive_group()
    out.add_argument("-o", "--out", help="the component to write (one SOURCE only) [default: SOURCE's name + .wasm]")
    out.add_argument("--out-dir", help="write each component to DIR/<SOURCE's directory name>.wasm")
    parser.add_argument(
        "--requirements",
        help="what the build installs [default: requirements.txt beside the first SOURCE, else the SDK's]",
    )
    parser.add_argument("--venv", help="the virtual environment to install into [default: .venv beside the requirements]")
    args = parser.parse_args(argv)
    if args.out and len(args.sources) > 1:
        parser.error("-o takes one SOURCE; use --out-dir for several")
    return args


def _requirements(args: argparse.Namespace) -> Path:
    if args.requirements:
        return Path(args.requirements).resolve()
    beside = Path(args.sources[0]).resolve().parent / "requirements.txt"
    return beside if beside.exists() else SDK_REQUIREMENTS


def _ensure_venv(requirements: Path, env_dir: Path) -> Path:
    """The venv's bin directory, with `requirements` installed (once per change)."""
    if not requirements.exists():
        raise BuildError(f"{requirements} does not exist; it lists what the build needs (componentize-py==0.25.1)")
    bin_dir = env_dir / ("Scripts" if os.name == "nt" else "bin")
    python = bin_dir / ("python.exe" if os.name == "nt" else "python")
    wanted = hashlib.sha256(requirements.read_bytes()).hexdigest()
    stamp = env_dir / ".elihu-requirements"
    if python.exists() and stamp.exists() and stamp.read_text().strip() == wanted:
        return bin_dir
    if not python.exists():
        print(f"creating the build environment {env_dir}", file=sys.stderr)
        try:
            venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
        except Exception as e:  # Debian's python3 lacks ensurepip without python3-venv
            shutil.rmtree(env_dir, ignore_errors=True)
            raise BuildError(
                f"could not create a virtual environment with pip ({e}); install Python's venv module "
                "(Debian/Ubuntu: apt-get install python3-venv)"
            ) from None
    print(f"installing {requirements} into {env_dir}", file=sys.stderr)
    install = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r", str(requirements)]
    if subprocess.run(install).returncode != 0:
        raise BuildError(f"`{' '.join(install)}` failed (see pip's output above)")
    stamp.write_text(wanted + "\n")
    return bin_dir


def _target(source: Path, args: argparse.Namespace) -> Path:
    if args.out:
        return Path(args.out)
    if args.out_dir:
        return Path(args.out_dir) / f"{source.resolve().parent.name}.wasm"
    return Path(f"{source.stem}.wasm")


def _componentize(bin_dir: Path, env_dir: Path, source: Path, wasm: Path) -> None:
    if not source.is_file():
        raise BuildError(f"{source} does not exist")
    started = time.monotonic()
    wasm.parent.mkdir(parents=True, exist_ok=True)
    paths = [source.resolve().parent]
    if SDK_PARENT not in paths:
        paths.append(SDK_PARENT)
    command = [str(bin_dir / "componentize-py"), "--quiet", "componentize", source.stem]
    for path in paths:
        command += ["-p", str(path)]
    command += ["-o", str(wasm)]
    # VIRTUAL_ENV puts the venv's site-packages (the job's libraries) on the path.
    env = dict(os.environ, VIRTUAL_ENV=str(env_dir))
    if subprocess.run(command, env=env).returncode != 0:
        raise BuildError(f"componentize-py failed on {source} (see its output above)")
    mib = wasm.stat().st_size / (1 << 20)
    print(f"built {wasm} from {source} ({mib:.1f} MiB) in {time.monotonic() - started:.1f} s", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Runs the build; returns the process exit code."""
    args = _parse(sys.argv[1:] if argv is None else argv)
    requirements = _requirements(args)
    env_dir = Path(args.venv).resolve() if args.venv else requirements.parent / ".venv"
    try:
        bin_dir = _ensure_venv(requirements, env_dir)
        for source in args.sources:
            _componentize(bin_dir, env_dir, Path(source), _target(Path(source), args))
    except BuildError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
