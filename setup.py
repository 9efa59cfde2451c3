"""Package build steps: assemble the guest supervisor stub; compile quark-client.

Everything declarative is in pyproject.toml. This file extends `build_py` so that
each `quark/core/guest/<name>.S` copied into the build directory gets its flat binary
`<name>.bin` beside it (GNU `as --64` + `objcopy -O binary`), which the wheel then ships.
The logic lives in quark/core/guest/build.py, loaded by path: the package itself cannot
be imported here (its dependencies may not be installed yet).

It also extends `build_scripts`: quark/template/client.c becomes `quark-client` beside
the `quark` script (bin/quark runs it to hand a run to the template without starting
Python). Optional: without a C compiler the launcher goes on in Python.
"""

import importlib.util
import os
import shutil
import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
try:
    from setuptools.command.build_scripts import build_scripts
except ImportError:     # setuptools uses distutils' (its vendored copy) for scripts
    from distutils.command.build_scripts import build_scripts

HERE = Path(__file__).resolve().parent


def _guest_build():
    spec = importlib.util.spec_from_file_location(
        "_quark_guest_build", HERE / "quark" / "core" / "guest" / "build.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class BuildPyWithGuest(build_py):
    """build_py, then assemble the guest stub sources in the build directory."""

    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            # An editable install uses the source tree; the core calls
            # guest.build.ensure_built() there when a .bin is missing.
            return
        out = Path(self.build_lib) / "quark" / "core" / "guest"
        for path in _guest_build().build_all(out):
            self.announce(f"assembled guest stub {path}", level=2)

    def get_outputs(self, include_bytecode=True):
        outputs = super().get_outputs(include_bytecode)
        out = Path(self.build_lib) / "quark" / "core" / "guest"
        guest = HERE / "quark" / "core" / "guest"
        outputs += [str(out / (src.stem + ".bin")) for src in sorted(guest.glob("*.S"))]
        outputs += [str(out / (src.stem + ".so")) for src in sorted(guest.glob("*.c"))]
        return sorted(set(outputs))


def compile_client(out: Path) -> bool:
    """quark/template/client.c -> ``out``; False (and nothing written) without a
    compiler or when it fails."""
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        return False
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    src = HERE / "quark" / "template" / "client.c"
    result = subprocess.run([cc, "-O2", "-Wall", "-o", str(tmp), str(src)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        print(f"quark-client not built: {result.stderr.strip()}")
        tmp.unlink(missing_ok=True)
        return False
    os.replace(tmp, out)
    return True


class BuildScriptsWithClient(build_scripts):
    """build_scripts, then quark-client beside bin/quark (install_scripts copies the
    whole directory)."""

    def run(self):
        super().run()
        if compile_client(Path(self.build_dir) / "quark-client"):
            self.announce("compiled quark-client", level=2)


setup(cmdclass={"build_py": BuildPyWithGuest, "build_scripts": BuildScriptsWithClient})
