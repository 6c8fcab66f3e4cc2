"""Collect wheels of the non-torch dependencies for an offline GPU node.

A GPU node often has torch (and its CUDA libraries) already, but no internet. This
module downloads, on a machine with internet, wheels of every other pinned dependency
(``requirements.lock`` minus torch, torchvision, triton, ``nvidia-*`` and ``cuda-*``:
papermill, ipykernel, nbformat, torch-pruning, tqdm, pyyaml, seaborn, ... and what they
need) for the node's Python version and platform, plus a wheel of ``bridgeout`` itself
and the build backend (setuptools, wheel) for an editable install::

    python -m bridgeout.wheelhouse --python-version 3.12 --platform manylinux_2_28_x86_64 --dest wheelhouse
    # copy wheelhouse/ and the repository to the node, then there:
    pip install --no-index --find-links wheelhouse 'bridgeout[notebooks]'

Binary wheels come from ``pip download --only-binary=:all: --no-deps --implementation cp
--python-version V --platform P ...`` where the platform list holds every manylinux tag
the given one is compatible with (``manylinux_2_28_x86_64`` also accepts
``manylinux_2_17`` / ``manylinux2014`` ... wheels). A package published only as an sdist
is built here with ``pip wheel --no-deps``, which is right only for pure-Python packages;
the report flags any such wheel that is not ``py3-none-any``.

:func:`plan` (which requirements, which platform tags) is pure and tested offline;
:func:`collect` runs pip.
"""
from __future__ import annotations

import argparse
import fnmatch
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["EXCLUDE", "BUILD_REQUIREMENTS", "Plan", "read_lock", "platform_tags", "plan", "collect", "main"]

REPO_ROOT = Path(__file__).resolve().parent.parent

#: Provided on the node with torch itself (glob patterns on normalised names).
EXCLUDE = ("torch", "torchvision", "torchaudio", "triton", "nvidia-*", "cuda-*")
#: Needed to ``pip install -e .`` without an index (pyproject's build-system).
BUILD_REQUIREMENTS = ("setuptools>=68", "wheel")

_LEGACY = {(2, 5): "manylinux1", (2, 12): "manylinux2010", (2, 17): "manylinux2014"}
_REQ = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s;#]+)\s*(?:;\s*(.*?))?\s*(?:#.*)?$")


def normalize(name: str) -> str:
    """PEP 503 normalised project name (``Jinja2`` -> ``jinja2``, ``ruamel.yaml`` -> ``ruamel-yaml``).

    Args:
        name: a project name.

    Returns:
        the name in lower case, runs of ``-``, ``_`` and ``.`` replaced by one ``-``.
    """
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(path) -> list[tuple[str, str, str | None]]:
    """``(name, version, marker)`` of every ``name==version`` line of a requirements file.

    Comments, blank lines and options (``-e``, ``--index-url``...) are skipped; any other
    line raises ``ValueError`` naming the file and line.

    Args:
        path: the requirements file.

    Returns:
        the pins in file order; ``marker`` is the environment marker after ``;``, or ``None``.

    Raises:
        ValueError: a line that is not a pin, comment, blank line or option.
    """
    out = []
    for i, raw in enumerate(Path(path).read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#") or line.startswith("-"):
            continue
        m = _REQ.match(line)
        if not m:
            raise ValueError(f"{path}, line {i}: expected 'name==version', got {raw!r}")
        out.append((m.group(1), m.group(2), m.group(3)))
    return out


def platform_tags(platform: str) -> list[str]:
    """The platform tags a wheel may carry to install on ``platform``, most specific first.

    ``manylinux_2_28_x86_64`` -> ``manylinux_2_28_x86_64, manylinux_2_27_x86_64, ...,
    manylinux_2_17_x86_64, manylinux2014_x86_64, ..., manylinux1_x86_64``; legacy aliases
    (``manylinux2014_x86_64``) are expanded the same way; any other tag (``win_amd64``,
    ``macosx_11_0_arm64``) is returned as is.

    Args:
        platform: a wheel platform tag.

    Returns:
        the tags.

    Raises:
        ValueError: ``platform`` is not a string of letters, digits, ``_`` and ``.``.
    """
    if not isinstance(platform, str) or not re.fullmatch(r"[A-Za-z0-9_.]+", platform):
        raise ValueError(f"platform must be a wheel platform tag such as 'manylinux_2_28_x86_64', got {platform!r}")
    m = re.fullmatch(r"manylinux_(\d+)_(\d+)_(\w+)", platform)
    if m is None:
        legacy = {v: k for k, v in _LEGACY.items()}
        m2 = re.fullmatch(r"(manylinux1|manylinux2010|manylinux2014)_(\w+)", platform)
        if m2 is None:
            return [platform]
        (major, minor), arch = legacy[m2.group(1)], m2.group(2)
    else:
        major, minor, arch = int(m.group(1)), int(m.group(2)), m.group(3)
    if major != 2:
        return [platform]
    tags = []
    for mi in range(minor, 4, -1):
        tags.append(f"manylinux_2_{mi}_{arch}")
        if (2, mi) in _LEGACY:
            tags.append(f"{_LEGACY[(2, mi)]}_{arch}")
    return tags


@dataclass
class Plan:
    """What :func:`collect` will fetch.

    Attributes:
        python_version: the node's Python, ``"3.12"`` style.
        platforms: the platform tags accepted (:func:`platform_tags`).
        requirements: the ``"name==version"`` pins to download.
        excluded: the pins left out (torch & co).
        build: the build backend's requirements (:data:`BUILD_REQUIREMENTS`).
    """

    python_version: str
    platforms: list[str]
    requirements: list[str]                 # "name==version" pins to download
    excluded: list[str] = field(default_factory=list)   # pins left out (torch & co)
    build: list[str] = field(default_factory=lambda: list(BUILD_REQUIREMENTS))


def plan(lock="requirements.lock", *, python_version: str = "3.12",
         platform: str = "manylinux_2_28_x86_64", exclude=EXCLUDE, extra_exclude=()) -> Plan:
    """Select the pins of ``lock`` to download (all but ``exclude`` + ``extra_exclude``).

    ``python_version`` is ``"3.12"`` style; ``platform`` a wheel platform tag (see
    :func:`platform_tags`). A relative ``lock`` is taken from the repository root.

    Args:
        lock: the requirements file (:func:`read_lock`).
        python_version: keyword-only; the node's Python.
        platform: keyword-only; the node's wheel platform tag.
        exclude: keyword-only; glob patterns on normalised names to leave out.
        extra_exclude: keyword-only; further patterns.

    Returns:
        the :class:`Plan`.

    Raises:
        ValueError: a malformed ``python_version`` or ``platform``, a missing lock file, or a
            malformed line in it.
    """
    if not isinstance(python_version, str) or not re.fullmatch(r"3\.\d{1,2}", python_version):
        raise ValueError(f"python_version must look like '3.12', got {python_version!r}")
    tags = platform_tags(platform)
    lock = Path(lock)
    if not lock.is_absolute():
        lock = REPO_ROOT / lock
    if not lock.is_file():
        raise ValueError(f"lock file {lock} not found")
    patterns = [normalize(p) for p in (*exclude, *extra_exclude)]
    keep, dropped = [], []
    for name, version, _marker in read_lock(lock):
        pin = f"{name}=={version}"
        if any(fnmatch.fnmatchcase(normalize(name), p) for p in patterns):
            dropped.append(pin)
        else:
            keep.append(pin)
    return Plan(python_version=python_version, platforms=tags, requirements=keep, excluded=dropped)


def _pip(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "pip", *args]
    return subprocess.run(cmd, capture_output=True, text=True)


def _download_args(p: Plan, dest: Path) -> list[str]:
    args = ["download", "--only-binary=:all:", "--no-deps", "--implementation", "cp",
            "--python-version", p.python_version, "--dest", str(dest)]
    for tag in p.platforms:
        args += ["--platform", tag]
    return args


def collect(p: Plan, dest="wheelhouse", *, project: bool = True, out=None) -> dict:
    """Download the wheels of plan ``p`` into ``dest``; returns ``dict(downloaded, built, failed)``.

    One ``pip download`` for everything; if it fails, one per requirement, then ``pip wheel
    --no-deps`` for those without a compatible binary wheel. ``project=True`` also builds
    the ``bridgeout`` wheel from the repository.

    A summary, a warning for every wheel built here that is not pure Python, the failures and
    the install commands for the node are printed to ``out``.

    Args:
        p: the :class:`Plan`.
        dest: the output folder (created).
        project: keyword-only; also build the ``bridgeout`` wheel.
        out: keyword-only; where the report goes (default ``sys.stdout``).

    Returns:
        ``{"downloaded": [...], "built": [...], "failed": [(requirement, last error line), ...]}``.
    """
    out = out if out is not None else sys.stdout
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    reqs = [*p.requirements, *p.build]
    report = {"downloaded": [], "built": [], "failed": []}
    res = _pip(*_download_args(p, dest), *reqs)
    if res.returncode == 0:
        report["downloaded"] = reqs
    else:
        for req in reqs:
            r = _pip(*_download_args(p, dest), req)
            if r.returncode == 0:
                report["downloaded"].append(req)
                continue
            w = _pip("wheel", "--no-deps", "--wheel-dir", str(dest), req)
            if w.returncode == 0:
                report["built"].append(req)
            else:
                report["failed"].append((req, (r.stderr or w.stderr).strip().splitlines()[-1:]))
    if project:
        build_dir = REPO_ROOT / "build"
        had_build = build_dir.exists()
        w = _pip("wheel", "--no-deps", "--wheel-dir", str(dest), str(REPO_ROOT))
        if not had_build and build_dir.is_dir():  # setuptools builds in-tree; leave no trace
            shutil.rmtree(build_dir, ignore_errors=True)
        (report["built"] if w.returncode == 0 else report["failed"]).append(
            "bridgeout" if w.returncode == 0 else ("bridgeout", w.stderr.strip().splitlines()[-1:]))
    wheels = sorted(dest.glob("*.whl"))
    impure = [w.name for w in wheels if any(normalize(w.name).startswith(normalize(b.split("=")[0]) + "-")
                                            for b in report["built"]) and not w.name.endswith("-none-any.whl")]
    print(f"wheelhouse {dest}: {len(wheels)} wheels for Python {p.python_version} on {p.platforms[0]} "
          f"({len(report['downloaded'])} downloaded, {len(report['built'])} built here, "
          f"{len(report['failed'])} failed; left out: {', '.join(p.excluded) or 'nothing'})", file=out)
    for name in impure:
        print(f"  warning: {name} was built here and is not pure Python; it may not install on the node",
              file=out)
    for req, why in report["failed"]:
        print(f"  FAILED {req}: {' '.join(why)}", file=out)
    print("on the node (torch already installed):\n"
          f"  pip install --no-index --find-links {dest} 'bridgeout[notebooks]'\n"
          f"or, from a checkout of the repository:\n"
          f"  pip install --no-index --find-links {dest} -e '.[notebooks]'", file=out)
    return report


def main(argv=None) -> int:
    """Command line entry point (``python -m bridgeout.wheelhouse --help``).

    Args:
        argv: the arguments (default: the process's own).

    Returns:
        the exit status: 0 when done (or ``--dry-run``), 1 when a wheel failed, 2 for a bad
        plan (Python version, platform, lock file).
    """
    ap = argparse.ArgumentParser(prog="python -m bridgeout.wheelhouse", description=__doc__.split("\n\n")[0])
    ap.add_argument("--python-version", default="3.12", help="the node's Python, e.g. 3.12")
    ap.add_argument("--platform", default="manylinux_2_28_x86_64", help="the node's wheel platform tag")
    ap.add_argument("--dest", default="wheelhouse", help="output folder")
    ap.add_argument("--lock", default="requirements.lock", help="pinned requirements")
    ap.add_argument("--exclude", action="append", default=[], metavar="PATTERN",
                    help="also leave out these packages (glob, repeatable)")
    ap.add_argument("--no-project", action="store_true", help="do not build the bridgeout wheel")
    ap.add_argument("--dry-run", action="store_true", help="print the plan, download nothing")
    args = ap.parse_args(argv)
    try:
        p = plan(args.lock, python_version=args.python_version, platform=args.platform,
                 extra_exclude=args.exclude)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.dry_run:
        print(f"Python {p.python_version}, platforms {', '.join(p.platforms)}")
        print(f"{len(p.requirements)} requirements + build {', '.join(p.build)}; left out: {', '.join(p.excluded)}")
        for r in p.requirements:
            print(f"  {r}")
        return 0
    report = collect(p, args.dest, project=not args.no_project)
    return 1 if report["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
