"""Hook specifications: every point where a plugin can extend Quark.

A plugin is any object (usually a module) with functions named like these hooks and
marked with ``quark.plugins.hookimpl``; a distribution exposes it through the ``quark``
entry-point group (``[project.entry-points.quark] name = "package.module"``).
Implementations may take a subset of a hook's arguments, by name (pluggy's rule):
new arguments are only ever added, never reordered or removed.

Where hooks run: all of them run in the sandbox process (one per container), except
``quark_network_teardown``, which also runs in ``quark delete``, and the template's
(``quark_preload`` in the template process, ``quark_network_prepare`` in its workers). The sandbox process
is the container's: a hook that raises fails the container's creation (setup hooks)
or is logged (observation and teardown hooks).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from quark.oci.spec import MountSpec, SandboxSpec

hookspec = pluggy.HookspecMarker("quark")


# -- network -------------------------------------------------------------------------

@hookspec
def quark_network_setup(spec: SandboxSpec, netns_path: str,
                        sandbox_id: str) -> dict[str, Any] | Callable[[], Any] | None:
    """Configure the network namespace Quark has just created for a sandbox.

    Called only when config.json asks for a new network namespace (a ``network``
    entry without ``path``); when it names one, whoever made it (podman, containerd,
    a CNI plugin) has configured it, and this hook is not called. Nor is it for a
    namespace the container is to keep empty (``spec.wire_network`` False: ``quark
    create`` without annotation ``org.quark.network = "plugins"``, or that annotation
    set to ``"none"``). Loopback is already up. Runs in the network namespace
    ``quark`` was started in (the "host" side), so an implementation can create
    links there and move one end into ``netns_path``.

    :param spec: the container's checked configuration (``spec.raw`` is config.json).
    :param netns_path: a path to the new namespace, usable with ``setns(2)`` (open
        it) or pyroute2's ``net_ns_fd``/``pushns``; valid only during this call.
    :param sandbox_id: the container id (unique among live containers of this
        state root); teardown receives the same id.
    :returns: a CNI result (``cniVersion``, ``interfaces``, ``ips``, ``routes``,
        ``dns``) describing what was configured, or None if this plugin did nothing;
        or a function of no arguments that finishes a set-up the plugin continues in
        the background (a helper process, say) and returns that result. Quark calls
        it once, after building the VM and kernel and before the container's first
        process exists, so slow set-up overlaps the sandbox's own; an exception it
        raises fails the start as one raised here would. Every implementation runs;
        the non-None results are logged and kept.
    """


@hookspec
def quark_network_teardown(spec: SandboxSpec | None, netns_path: str | None,
                           sandbox_id: str) -> None:
    """Undo ``quark_network_setup`` for a sandbox: release addresses, links, rules.

    Must be idempotent and must work when the sandbox process is gone (it crashed or
    was killed): ``quark delete [--force]`` calls it with ``netns_path=None``, after
    the sandbox process has exited, so everything needed must be found from
    ``sandbox_id`` (e.g. in a lease file). Errors are logged, never raised to the
    user: delete must always finish.

    :param spec: the container's configuration when still readable, else None.
    :param netns_path: the namespace if it still exists, else None.
    :param sandbox_id: the id given to ``quark_network_setup``.
    :returns: nothing.
    """


@hookspec
def quark_network_prepare() -> None:
    """Wire a network namespace ahead of the run that will use it, before its
    container is known (a template's worker: see quark.template.worker).

    Called once in each worker process a template forks for its next run, in the
    template's network namespace and configuration, while the template waits for
    that run. Keep what you made in your module's state: the run claims it through
    ``quark_network_adopt``, which it submits to this same process. Register its
    undoing with ``quark.template.worker.at_exit`` for when no run claims it (the
    run wants no network, or the template stops).

    :returns: nothing; a failure is logged, and the run then sets up its network
        the usual way (``quark_network_setup``).
    """


@hookspec(firstresult=True)
def quark_network_adopt(spec: SandboxSpec, sandbox_id: str
                        ) -> tuple[int, dict[str, Any] | Callable[[], Any]] | None:
    """Hand a sandbox a network namespace this plugin wired ahead
    (``quark_network_prepare``), instead of the empty one Quark would make.

    Called where ``quark_network_setup`` would be, before it (firstresult: the first
    plugin that adopts wins). Quark enters the namespace returned, and then calls
    ``quark_network_setup`` for every other plugin with its path, but not for this
    one. ``quark_network_teardown`` is called for the sandbox as usual.

    :param spec: as for ``quark_network_setup``.
    :param sandbox_id: as for ``quark_network_setup``.
    :returns: None to let Quark make the namespace; or (fd, result): an fd of the
        wired namespace (Quark closes it) and what ``quark_network_setup`` would
        have returned (a CNI result, or a function that finishes and returns one).
    """


# -- storage -------------------------------------------------------------------------

@hookspec(firstresult=True)
def quark_storage_mount(spec_mount: MountSpec, vfs: Any) -> Any | None:
    """Provide the filesystem for one mount of config.json.

    firstresult: the first implementation returning non-None wins and the rest are
    not called. None everywhere means the kernel's own filesystems (bind, tmpfs,
    proc, ...) serve the mount.

    :param spec_mount: the mount entry (``destination``, ``type``, ``source``,
        ``options``); plugins usually match on ``type`` or an option.
    :param vfs: the container's VFS being assembled (``quark.kernel.vfs.mount.VFS``).
    :returns: a filesystem object for the VFS to mount at ``spec_mount.destination``,
        or None to leave the mount to others.
    """


# -- lifecycle -----------------------------------------------------------------------

@hookspec
def quark_sandbox_created(sandbox: Any) -> None:
    """The sandbox is built (VM, kernel, VFS, network) and its init is prepared but
    has not run: the OCI "created" state. Like a createRuntime OCI hook, in-process.

    :param sandbox: the ``quark.sandbox.process.Sandbox`` (``sandbox.spec.id`` is
        the container id).
    :returns: nothing; raising fails the create with the exception's message.
    """


@hookspec
def quark_sandbox_started(sandbox: Any) -> None:
    """The container's init has been started (the OCI "running" state).

    :param sandbox: the ``quark.sandbox.process.Sandbox``.
    :returns: nothing; an exception is logged and ignored.
    """


@hookspec
def quark_sandbox_stopped(sandbox: Any, wait_status: int) -> None:
    """The container's init has exited; the sandbox process is about to end.

    :param sandbox: the ``quark.sandbox.process.Sandbox``.
    :param wait_status: init's Linux wait status (``os.waitstatus_to_exitcode``
        decodes it).
    :returns: nothing; an exception is logged and ignored.
    """


# -- system call observation ---------------------------------------------------------

@hookspec
def quark_syscall_enter(task: Any, nr: int, args: Any) -> None:
    """A task of the container is making a system call; its handler has not run.

    Zero cost when unused: the kernel calls these two hooks only if some loaded plugin
    implements one of them. They run on the task's vCPU thread with the kernel lock
    held: an implementation must be quick and must not block or call into the kernel.

    :param task: the calling ``quark.kernel.task.Task`` (``tid``, ``comm``, ``mm``).
    :param nr: the x86-64 system call number.
    :param args: the ``quark.kernel.syscalls.args.SyscallArgs`` (``raw`` holds the six
        argument registers; ``int(i)``, ``ptr(i)`` ... decode one as Linux does).
    :returns: nothing (observation only).
    """


@hookspec
def quark_syscall_exit(task: Any, nr: int, args: Any, result: int) -> None:
    """A system call's handler has returned (same thread and rules as
    ``quark_syscall_enter``). Output arguments are readable in ``task.mm``.

    :param task: the calling task (it may have exited the call by ``execve``).
    :param nr: the system call number.
    :param args: the same ``SyscallArgs`` as at enter.
    :param result: the value returned to the guest; ``-4095 <= result < 0`` is
        ``-errno``.
    :returns: nothing.
    """


# -- introspection -------------------------------------------------------------------

@hookspec
def quark_plugin_status() -> str | None:
    """One line about this plugin's state for ``quark plugins`` (e.g. "no RDMA
    device: TCP stays on the host stack").

    :returns: the line, or None for nothing to report.
    """


# -- templates -----------------------------------------------------------------------

@hookspec
def quark_preload(where: str) -> None:
    """Called once in a template process (``quark template serve``) before it forks
    any run, and once in its workers' parent: import the modules your code there
    will import, so that each run or worker starts with them loaded and shares their
    pages.

    Import only: start no thread (both fork), open no file or socket a child would
    inherit, and read no configuration (a run reads its own).

    :param where: ``"template"``: what your hooks import in a run (every run carries
        it, in its RSS); ``"worker"``: what the functions you hand to a template's
        worker import (quark.template.worker; runs do not carry it).
    :returns: nothing; a failure is logged and the run imports what it needs itself.
    """
