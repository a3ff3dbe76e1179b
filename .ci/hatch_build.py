"""Build rawws_nb's optional compiled fast path, `rawws_nb/_speedups.c`.

Used two ways:

* as hatchling's build hook (pyproject.toml, `[tool.hatch.build.hooks.custom]`): `pip
  install .` compiles the extension when a C compiler and the Python headers are there
  and ships it in a platform wheel; without them it prints one line and the wheel is pure
  Python (rawws_nb then runs its pure-Python reader: same behaviour, slower). An editable
  install (`pip install -e .`, what the Makefile does) compiles it in place.
* as a script, `python .ci/hatch_build.py`: compile it in place (the Makefile's rule, run
  again whenever the C source changes; `--force` rebuilds). Exit status 0 even when no
  compiler is there, unless `--strict`.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "rawws_nb" / "_speedups.c"
SUFFIX = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
TARGET_NAME = "_speedups" + SUFFIX


def compile_extension(out_dir: Path) -> Path | None:
    """Compile the extension into `out_dir`; the path built, or None (with the reason
    printed) when it cannot be built here."""
    if os.environ.get("RAWWS_NB_PURE"):
        print("rawws_nb: RAWWS_NB_PURE is set: not building the compiled fast path", file=sys.stderr)
        return None
    cc = shlex.split(os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc")
    if not cc or shutil.which(cc[0]) is None:
        print("rawws_nb: no C compiler: the pure-Python reader will be used", file=sys.stderr)
        return None
    include = sysconfig.get_paths()["include"]
    if not (Path(include) / "Python.h").exists():
        print(f"rawws_nb: no Python.h in {include}: the pure-Python reader will be used", file=sys.stderr)
        return None
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / TARGET_NAME
    ldshared = shlex.split(sysconfig.get_config_var("LDSHARED") or "cc -shared")
    flags = ["-O3", "-fPIC", "-Wall", "-Werror", "-fno-strict-aliasing", f"-I{include}"]
    if sys.platform == "darwin":
        ldshared = [*cc, "-bundle", "-undefined", "dynamic_lookup"]
    # Compile and link in one step with the linker driver Python itself was linked with.
    cmd = [*ldshared, *flags, str(SOURCE), "-o", str(target)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        print(f"rawws_nb: compiling the fast path failed ({exc}): the pure-Python reader will be used", file=sys.stderr)
        return None
    if done.returncode != 0:
        print(
            "rawws_nb: compiling the fast path failed: the pure-Python reader will be used\n" + done.stderr[-2000:],
            file=sys.stderr,
        )
        return None
    return target


try:
    from hatchling.builders.hooks.plugin.interface import BuildHookInterface
except ImportError:  # run as a script, without hatchling
    BuildHookInterface = object  # type: ignore[assignment,misc]


class SpeedupsHook(BuildHookInterface):  # type: ignore[misc,valid-type]
    """hatchling: compile `_speedups` into the wheel (or in place for an editable one)."""

    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel":
            return
        if version == "editable":
            built = compile_extension(SOURCE.parent)
            if built is not None:
                build_data["pure_python"] = False
                build_data["infer_tag"] = True
            return
        self._tmp = tempfile.mkdtemp(prefix="rawws-nb-build-")
        built = compile_extension(Path(self._tmp))
        if built is None:
            return
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
        build_data["force_include"][str(built)] = f"rawws_nb/{TARGET_NAME}"

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        tmp = getattr(self, "_tmp", None)
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    target = SOURCE.parent / TARGET_NAME
    if target.exists() and target.stat().st_mtime >= SOURCE.stat().st_mtime and "--force" not in sys.argv:
        return 0  # up to date
    built = compile_extension(SOURCE.parent)
    if built is None:
        return 1 if "--strict" in sys.argv else 0
    print(f"built {built.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
