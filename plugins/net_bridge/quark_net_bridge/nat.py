"""Masquerade and port publishing, through nft or iptables (whichever is installed).

``nft`` is preferred when its binary exists: everything lives in one table,
``ip quark_net_bridge`` (chains ``postrouting``, ``prerouting``, ``output``), and
a sandbox's rules carry the comment ``quark:<id>`` so teardown finds them by handle.
Otherwise ``iptables`` (the iptables-nft or legacy variant Debian ships): rules in the
``nat`` table's built-in chains, and ``FORWARD`` accepts for the bridge, each tagged
with the same comment. Adding is idempotent (``iptables -C`` / a rule listing).
Rules outlive the sandbox process: teardown and stale-lease reaping remove them.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess


class NatError(Exception):
    """A firewall command failed (its stderr, one line)."""


def _run(args: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    p = subprocess.run(args, capture_output=True, text=True)
    if check and p.returncode != 0:
        raise NatError(f"{' '.join(args)}: {p.stderr.strip() or p.returncode}")
    return p


def backend() -> str | None:
    """ "nft", "iptables", or None when neither is installed."""
    for name in ("nft", "iptables"):
        if shutil.which(name):
            return name
    return None


def parse_ports(text: str) -> list[tuple[int, int, str]]:
    """``"8080:80,5353:53/udp"`` -> [(host port, container port, proto)]."""
    out = []
    for item in filter(None, (p.strip() for p in text.split(","))):
        spec, _, proto = item.partition("/")
        hp, _, cp = spec.partition(":")
        proto = proto or "tcp"
        if proto not in ("tcp", "udp") or not hp.isdigit() or not (cp or hp).isdigit():
            raise ValueError(f"bad port mapping {item!r} (HOST:CONTAINER[/tcp|udp])")
        out.append((int(hp), int(cp or hp), proto))
    return out


class Nat:
    TABLE = "quark_net_bridge"

    def __init__(self, bridge: str, subnet: str, kind: str | None = None) -> None:
        self.bridge, self.subnet = bridge, subnet
        self.kind = kind or backend()
        self._rules: dict[str, set[tuple[str, ...]]] | None = None

    def _listing(self) -> dict[str, set[tuple[str, ...]]]:
        """iptables: every table's rules, from one `iptables-save` ({table: {("-A",
        chain, *rule)}}), kept until this object deletes a rule (one it adds joins
        it). One run instead of a `-C` per rule and an `-S` per table (each ~4 ms from
        a sandbox process)."""
        if self._rules is None:
            rules: dict[str, set[tuple[str, ...]]] = {}
            try:
                text = _run(["iptables-save"], check=False).stdout
            except OSError:
                text = ""               # no iptables-save: every check runs -C
            table = None
            for line in text.splitlines():
                if line.startswith("*"):
                    table = line[1:].strip()
                    rules[table] = set()
                elif line.startswith("-A ") and table is not None:
                    try:
                        rules[table].add(tuple(shlex.split(line)))
                    except ValueError:
                        pass
            self._rules = rules
        return self._rules

    # ---- masquerade (once per bridge/subnet)

    def ensure_masquerade(self) -> None:
        if self.kind == "nft":
            self._nft_base()
            if f'ip saddr {self.subnet}' not in _run(["nft", "list", "chain", "ip", self.TABLE,
                                                     "postrouting"]).stdout:
                _run(["nft", "add", "rule", "ip", self.TABLE, "postrouting", "ip", "saddr",
                      self.subnet, "oifname", "!=", self.bridge, "masquerade"])
        elif self.kind == "iptables":
            # In the order iptables-save prints a rule (matches, then the target), so
            # _ipt_ensure finds them in its listing.
            tag = ["-m", "comment", "--comment", f"quark-bridge:{self.bridge}"]
            self._ipt_ensure("nat", "POSTROUTING", ["-s", self.subnet, "!", "-o", self.bridge,
                                                    *tag, "-j", "MASQUERADE"])
            self._ipt_ensure("filter", "FORWARD", ["-i", self.bridge, *tag, "-j", "ACCEPT"])
            self._ipt_ensure("filter", "FORWARD", ["-o", self.bridge, *tag, "-j", "ACCEPT"])
        else:
            raise NatError("neither nft nor iptables is installed: no masquerade")

    def _ipt_ensure(self, table: str, chain: str, rule: list[str], insert: bool = True) -> None:
        # Found as listed: present. Not found may still be present in another
        # spelling (iptables normalises some options): -C decides.
        if ("-A", chain, *rule) in self._listing().get(table, ()):
            return
        if _run(["iptables", "-w", "-t", table, "-C", chain, *rule], check=False).returncode:
            _run(["iptables", "-w", "-t", table, "-I" if insert else "-A", chain, *rule])
            # Present now, as spelled here: the rest of the listing still holds.
            self._listing().setdefault(table, set()).add(("-A", chain, *rule))

    def _nft_base(self) -> None:
        t = self.TABLE
        _run(["nft", "add", "table", "ip", t])
        for chain, hook, prio in (("postrouting", "postrouting", 100),
                                  ("prerouting", "prerouting", -100),
                                  ("output", "output", -100)):
            _run(["nft", "add", "chain", "ip", t, chain,
                  f"{{ type nat hook {hook} priority {prio}; }}"])

    # ---- port publishing (per sandbox)

    def publish(self, sandbox_id: str, ip: str, ports: list[tuple[int, int, str]]) -> None:
        comment = f"quark:{sandbox_id}"
        for hp, cp, proto in ports:
            if self.kind == "nft":
                self._nft_base()
                for chain, extra in (("prerouting", []), ("output", ["fib", "daddr", "type",
                                                                     "local"])):
                    _run(["nft", "add", "rule", "ip", self.TABLE, chain, *extra, proto,
                          "dport", str(hp), "dnat", "to", f"{ip}:{cp}",
                          "comment", f'"{comment}"'])
            elif self.kind == "iptables":
                rule = ["-p", proto, "--dport", str(hp), "-j", "DNAT", "--to-destination",
                        f"{ip}:{cp}", "-m", "comment", "--comment", comment]
                self._ipt_ensure("nat", "PREROUTING", ["-m", "addrtype", "--dst-type", "LOCAL",
                                                       *rule])
                self._ipt_ensure("nat", "OUTPUT", ["-m", "addrtype", "--dst-type", "LOCAL",
                                                   *rule])
            else:
                raise NatError("neither nft nor iptables is installed: cannot publish ports")

    def unpublish(self, sandbox_id: str) -> None:
        """Remove every rule tagged for ``sandbox_id``; nothing to do is fine."""
        comment = f"quark:{sandbox_id}"
        if self.kind == "nft":
            out = _run(["nft", "-a", "list", "table", "ip", self.TABLE], check=False).stdout
            chain = None
            for line in out.splitlines():
                words = line.split()
                if words[:1] == ["chain"]:
                    chain = words[1]
                elif f'comment "{comment}"' in line and "# handle" in line and chain:
                    _run(["nft", "delete", "rule", "ip", self.TABLE, chain, "handle",
                          words[-1]], check=False)
        elif self.kind == "iptables":
            for table in ("nat", "filter"):
                for rule in sorted(self._listing().get(table, ())):
                    if any(a == "--comment" and b == comment for a, b in zip(rule, rule[1:])):
                        _run(["iptables", "-w", "-t", table, "-D", *rule[1:]], check=False)
                        self._rules = None

    def tagged_ids(self) -> set[str]:
        """Sandbox ids that have rules (to reap those without a lease)."""
        out: set[str] = set()
        if self.kind == "nft":
            text = _run(["nft", "list", "table", "ip", self.TABLE], check=False).stdout
        elif self.kind == "iptables":
            text = " ".join(" ".join(rule) for rule in self._listing().get("nat", ()))
        else:
            return out
        for word in text.replace('"', " ").split():
            if word.startswith("quark:"):
                out.add(word[len("quark:"):])
        return out
