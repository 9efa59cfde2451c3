"""The Kubernetes path: containerd's CRI plugin with the runtime handler `quark` (runc
shim, BinaryName = quark), driven by a gRPC client speaking CRI v1, as the kubelet
does with a RuntimeClass whose handler is `quark`.

The pod sandbox ("pause") container runs under quark too: its image is a local
busybox image whose command sleeps (no registry here). The pod uses the node's
network namespace, so no CNI plugin is needed.
"""

from __future__ import annotations

import importlib
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from clientlib import BUSYBOX_REF, wait_for

pytestmark = [pytest.mark.cri, pytest.mark.kvm, pytest.mark.timeout(300)]

PROTO = Path(__file__).parent / "cri" / "runtime_v1_subset.proto"


@pytest.fixture(scope="module")
def cri(containerd, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    """Compile the CRI subset and connect to containerd's CRI endpoint."""
    import grpc
    from grpc_tools import protoc

    out = tmp_path_factory.mktemp("cri_pb")
    rc = protoc.main(["protoc", f"-I{PROTO.parent}", f"--python_out={out}",
                      f"--grpc_python_out={out}", str(PROTO)])
    assert rc == 0, "protoc failed on the CRI subset"
    sys.path.insert(0, str(out))
    try:
        pb = importlib.import_module("runtime_v1_subset_pb2")
        pb_grpc = importlib.import_module("runtime_v1_subset_pb2_grpc")
    finally:
        sys.path.remove(str(out))
    channel = grpc.insecure_channel(f"unix://{containerd.address}")
    rt = pb_grpc.RuntimeServiceStub(channel)
    wait_for(lambda: _version_ok(rt, pb), what="the CRI plugin to answer")
    yield SimpleNamespace(pb=pb, rt=rt, log=containerd.log)
    channel.close()


def _version_ok(rt: Any, pb: Any) -> bool:
    import grpc
    try:
        return bool(rt.Version(pb.VersionRequest(version="v1"), timeout=5).runtime_name)
    except grpc.RpcError:
        return False


def _state(cri: SimpleNamespace, cid: str) -> Any:
    return cri.rt.ContainerStatus(cri.pb.ContainerStatusRequest(container_id=cid),
                                  timeout=10).status


def test_pod_lifecycle(cri: SimpleNamespace, tmp_path: Path) -> None:
    import grpc

    pb, rt = cri.pb, cri.rt
    uid = f"uid-{time.time_ns()}"
    sandbox_config = pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name="quark-pod", uid=uid, namespace="default"),
        hostname="quark-pod",
        log_directory=str(tmp_path),
        linux=pb.LinuxPodSandboxConfig(security_context=pb.LinuxSandboxSecurityContext(
            namespace_options=pb.NamespaceOption(network=pb.NODE, pid=pb.CONTAINER,
                                                 ipc=pb.POD))),
    )
    try:
        pod = rt.RunPodSandbox(pb.RunPodSandboxRequest(config=sandbox_config,
                                                       runtime_handler="quark"),
                               timeout=120).pod_sandbox_id
    except grpc.RpcError as e:
        pytest.fail(f"RunPodSandbox: {e.details()}\n{cri.log.read_text()[-3000:]}")
    try:
        cid = rt.CreateContainer(pb.CreateContainerRequest(
            pod_sandbox_id=pod,
            config=pb.ContainerConfig(
                metadata=pb.ContainerMetadata(name="main"),
                image=pb.ImageSpec(image=BUSYBOX_REF),
                command=["sh", "-c"],
                args=['trap "exit 0" TERM; echo started; while true; do sleep 0.1; done'],
                envs=[pb.KeyValue(key="GREETING", value="hello-cri")],
                log_path="main.log"),
            sandbox_config=sandbox_config), timeout=120).container_id
        assert _state(cri, cid).state == pb.CONTAINER_CREATED

        rt.StartContainer(pb.StartContainerRequest(container_id=cid), timeout=60)
        assert _state(cri, cid).state == pb.CONTAINER_RUNNING
        wait_for(lambda: "started" in (tmp_path / "main.log").read_text()
                 if (tmp_path / "main.log").exists() else False, what="the container log")

        r = rt.ExecSync(pb.ExecSyncRequest(container_id=cid,
                                           cmd=["sh", "-c", 'echo "$GREETING"; exit 3'],
                                           timeout=30), timeout=60)
        assert (r.stdout, r.exit_code) == (b"hello-cri\n", 3), r.stderr

        t0 = time.monotonic()
        rt.StopContainer(pb.StopContainerRequest(container_id=cid, timeout=10), timeout=60)
        st = _state(cri, cid)
        assert st.state == pb.CONTAINER_EXITED
        assert st.exit_code == 0                    # the TERM trap ran
        assert time.monotonic() - t0 < 8
        rt.RemoveContainer(pb.RemoveContainerRequest(container_id=cid), timeout=60)
    finally:
        rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod), timeout=60)
        rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod), timeout=60)
