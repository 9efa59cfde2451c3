"""config.json parsing: a good bundle, and one clear line for each kind of mistake."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from quark.oci.defaults import default_spec
from quark.oci.spec import MountSpec, OciError, Rlimit, load_bundle, parse_config


def write_bundle(tmp_path: Path, config: Any, *, rootfs: bool = True) -> Path:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    if rootfs:
        (bundle / "rootfs").mkdir()
    text = config if isinstance(config, str) else json.dumps(config, indent=2)
    (bundle / "config.json").write_text(text)
    return bundle


def good() -> dict[str, Any]:
    return default_spec(["sh", "-c", "echo hi"], terminal=False)


def error_of(tmp_path: Path, config: Any, **kw: Any) -> str:
    with pytest.raises(OciError) as exc:
        load_bundle(write_bundle(tmp_path, config, **kw), "c1")
    msg = str(exc.value)
    assert "\n" not in msg, msg
    return msg


def test_default_bundle(tmp_path: Path) -> None:
    config = good()
    config["annotations"] = {"a": "b"}
    config["process"]["user"] = {"uid": 1000, "gid": 100, "additionalGids": [5, 6]}
    spec = load_bundle(write_bundle(tmp_path, config), "c1")
    assert spec.id == "c1"
    assert spec.bundle == tmp_path / "bundle"
    assert spec.rootfs == tmp_path / "bundle" / "rootfs"
    assert spec.rootfs.is_absolute()
    assert spec.readonly is True
    assert spec.args == ("sh", "-c", "echo hi")
    assert spec.env[0].startswith("PATH=")
    assert spec.cwd == "/"
    assert (spec.uid, spec.gid, spec.additional_gids) == (1000, 100, (5, 6))
    assert spec.terminal is False
    assert spec.no_new_privileges is True
    assert spec.hostname == "quark"
    assert spec.mounts[0] == MountSpec("/proc", "proc", "proc", ())
    assert spec.mounts[1].options == ("nosuid", "strictatime", "mode=755", "size=65536k")
    assert spec.rlimits == (Rlimit("RLIMIT_NOFILE", 1024, 1024),)
    assert spec.netns_path is None
    assert [n.type for n in spec.namespaces] == ["pid", "network", "ipc", "uts", "mount"]
    assert spec.annotations == {"a": "b"}
    assert spec.raw == config


def test_relative_bundle_path_is_made_absolute(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    write_bundle(tmp_path, good())
    monkeypatch.chdir(tmp_path)
    spec = load_bundle("bundle", "c1")
    assert spec.rootfs == tmp_path / "bundle" / "rootfs"


def test_absolute_root_and_netns_path(tmp_path: Path) -> None:
    config = good()
    other = tmp_path / "elsewhere"
    other.mkdir()
    config["root"] = {"path": str(other)}
    config["linux"]["namespaces"] = [{"type": "network", "path": "/proc/self/ns/net"}]
    spec = load_bundle(write_bundle(tmp_path, config, rootfs=False), "c1")
    assert spec.rootfs == other
    assert spec.readonly is False
    assert spec.netns_path == "/proc/self/ns/net"


def test_spec_is_frozen(tmp_path: Path) -> None:
    spec = load_bundle(write_bundle(tmp_path, good()), "c1")
    with pytest.raises(AttributeError):
        spec.args = ("x",)  # type: ignore[misc]


def test_missing_bundle_dir(tmp_path: Path) -> None:
    with pytest.raises(OciError, match=r"bundle directory .*nope does not exist"):
        load_bundle(tmp_path / "nope", "c1")


def test_missing_config_json(tmp_path: Path) -> None:
    with pytest.raises(OciError, match=r"no config.json in bundle"):
        load_bundle(tmp_path, "c1")


def test_bad_json_names_line_and_column(tmp_path: Path) -> None:
    msg = error_of(tmp_path, '{\n  "ociVersion": "1.0.2",\n  "process": {,}\n}')
    assert "invalid JSON at line 3 column 15" in msg
    assert "config.json" in msg


@pytest.mark.parametrize("mutate, expected", [
    (lambda c: c.pop("process"), "process is missing"),
    (lambda c: c["process"].pop("args"), "process.args is missing or empty"),
    (lambda c: c["process"].update(args=[]), "process.args is missing or empty"),
    (lambda c: c["process"].update(args="sh"), "process.args must be a list, not a string"),
    (lambda c: c["process"].update(args=["sh", 1]), "process.args[1] must be a string"),
    (lambda c: c["process"].update(cwd="tmp"), "process.cwd must be an absolute path"),
    (lambda c: c["process"].update(env=["NOEQUALS"]), "process.env[0] is not KEY=VALUE"),
    (lambda c: c["process"]["user"].update(uid=-1), "process.user.uid is out of range"),
    (lambda c: c["process"]["user"].update(uid="0"), "process.user.uid must be an integer"),
    (lambda c: c["process"].update(terminal="yes"), "process.terminal must be a boolean"),
    (lambda c: c["process"]["rlimits"].append(dict(c["process"]["rlimits"][0])),
     "duplicate rlimit RLIMIT_NOFILE"),
    (lambda c: c["process"]["rlimits"][0].update(type="RLIMIT_BOGUS"), "not a known rlimit"),
    (lambda c: c["process"]["rlimits"][0].update(soft=2048), "exceeds hard limit"),
    (lambda c: c.pop("root"), "root is missing"),
    (lambda c: c["root"].update(path=""), "root.path is empty"),
    (lambda c: c["root"].update(path="nothere"), "rootfs"),
    (lambda c: c["mounts"].append({"destination": "rel"}), "mounts[7].destination must be"),
    (lambda c: c["mounts"].append({"type": "tmpfs"}), "mounts[7].destination is missing"),
    (lambda c: c["linux"]["namespaces"].append({"type": "pid"}), "duplicate pid namespace"),
    (lambda c: c["linux"]["namespaces"].append({"type": "bogus"}), "not a namespace type"),
    (lambda c: c["linux"]["namespaces"].__setitem__(1, {"type": "network",
                                                        "path": "/nonexistent/ns"}),
     "network namespace path /nonexistent/ns does not exist"),
    (lambda c: c.update(annotations={"a": 1}), "annotations['a'] must be a string"),
    (lambda c: c.update(ociVersion="2.0.0"), "unsupported ociVersion"),
])
def test_errors_name_the_field(tmp_path: Path, mutate: Any, expected: str) -> None:
    config = good()
    mutate(config)
    assert expected in error_of(tmp_path, config)


def test_missing_rootfs(tmp_path: Path) -> None:
    msg = error_of(tmp_path, good(), rootfs=False)
    assert msg == f"rootfs {tmp_path}/bundle/rootfs does not exist"


def test_document_not_an_object(tmp_path: Path) -> None:
    assert "must be an object, not a list" in error_of(tmp_path, "[]")


@pytest.mark.parametrize("bad_id", ["", ".", "..", "a b", "a/b", "x;y"])
def test_bad_container_id(tmp_path: Path, bad_id: str) -> None:
    with pytest.raises(OciError, match="invalid container id"):
        load_bundle(write_bundle(tmp_path, good()), bad_id)


def test_parse_config_without_bundle_needs_absolute_root(tmp_path: Path) -> None:
    with pytest.raises(OciError, match="must be absolute without a bundle"):
        parse_config(good(), bundle=None, container_id="c1")
    config = good()
    config["root"]["path"] = str(tmp_path)
    assert parse_config(config, bundle=None, container_id="c1").rootfs == tmp_path


def test_unknown_fields_are_ignored(tmp_path: Path) -> None:
    config = good()
    config["vm"] = {"hypervisor": {}}
    config["process"]["somethingNew"] = True
    load_bundle(write_bundle(tmp_path, config), "c1")


@pytest.mark.runc
@pytest.mark.parametrize("rootless", [False, True])
def test_default_spec_matches_runc(tmp_path: Path, rootless: bool) -> None:
    subprocess.run(["runc", "spec", *(["--rootless"] if rootless else [])], cwd=tmp_path,
                   check=True)
    theirs = json.loads((tmp_path / "config.json").read_text())
    ours = default_spec(rootless=rootless)
    assert ours.pop("hostname") == "quark"
    assert theirs.pop("hostname") == "runc"
    assert ours == theirs



@pytest.mark.parametrize("annotation, run, create", [
    (None, True, False),            # run wires a new namespace; create leaves it empty
    ("plugins", True, True),
    ("none", False, False),
])
def test_who_wires_a_new_network_namespace(tmp_path: Path, annotation: str | None,
                                           run: bool, create: bool) -> None:
    from quark.oci.spec import wire_network_default
    cfg = good()
    if annotation is not None:
        cfg["annotations"] = {"org.quark.network": annotation}
    spec = load_bundle(write_bundle(tmp_path, cfg), "c1")
    assert spec.wire_network is run
    assert wire_network_default(spec, False).wire_network is create
    assert wire_network_default(spec, True).wire_network is run


def test_bad_network_annotation(tmp_path: Path) -> None:
    cfg = good()
    cfg["annotations"] = {"org.quark.network": "bridge"}
    assert error_of(tmp_path, cfg) == ("config.json: annotations['org.quark.network'] "
                                       "must be 'plugins' or 'none', not 'bridge'")
