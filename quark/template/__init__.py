"""The template process: a warm, pre-imported quark that forks foreground runs.

Like Kata's VM templating, it trades a resident process for start-up time. Of a
`quark run` on the development VMs (~250 ms), ~170 ms is Python importing asyncio,
uvloop, structlog, pluggy, pyroute2 and quark's kernel; a template pays that once,
and each run forked from it starts with everything imported, its pages shared
copy-on-write with the template.

- `quark template serve` runs it (as root, beside containerd or podman; see
  docs/template.md). Its socket is /run/quark/template.sock unless --socket or
  $QUARK_TEMPLATE says otherwise.
- `bin/quark` (the installed `quark` command) hands a command to the template when the
  socket is there and the command is one it serves (`client.served`); otherwise, or
  when the template refuses, quark runs in the calling process as always.

Only foreground `run`s are served: their process is not waited for by anyone but the
caller, who waits for `quark run` itself (the client relays signals and the exit
status). `create`, `run --detach` and `exec --detach` leave a sandbox behind that
conmon or containerd's shim must be the ancestor of, so they never are.
"""
