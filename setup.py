"""Package build step: assemble the guest supervisor stub.

Everything declarative is in pyproject.toml. This file only extends `build_py` so that
each `quark/core/guest/<name>.S` copied into the build directory gets its flat binary
`<name>.bin` beside it (GNU `as --64` + `objcopy -O binary`), which the wheel then ships.
The logic lives in quark/core/guest/build.py, loaded by path: the package itself cannot
be imported here (its dependencies may not be installed yet).
"""

import importlib.util
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

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


setup(cmdclass={"build_py": BuildPyWithGuest})
