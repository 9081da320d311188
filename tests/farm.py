"""A distcc farm on one machine: each `distccd` in its own network namespace behind a veth pair,
so every job really crosses a network interface. Used by tests/e2e/test_distcc.py and bench/distcc.

Only what this object created is touched: its namespaces, its veth pairs, its 10.213.N.0/30
subnets (N chosen among those no interface uses yet) and the processes inside its namespaces.
`close()` removes all of it, also after a failure; it is safe to call twice.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from kbuild.core.proc import run

PORT = 3632


@dataclass
class Daemon:
    ns: str
    veth: str             # host-side end
    address: str          # the daemon's address inside its namespace
    log: Path
    slots: int
    running: bool = False

    @property
    def spec(self) -> str:
        return f"{self.address}/{self.slots}"

    def completed(self) -> int:
        """Jobs this daemon finished, from its own log (one dcc_job_summary line per job)."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return len(re.findall(r"COMPILE_OK", text))

    def pids(self) -> list[int]:
        out = run(["ip", "netns", "pids", self.ns], check=False).output
        return [int(p) for p in out.split() if p.isdigit()]

    def kill(self) -> None:
        """SIGKILL every process in the namespace: the daemon and the jobs it is running."""
        for _ in range(50):
            pids = self.pids()
            if not pids:
                break
            for p in pids:
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.1)
        self.running = False


class NamespaceFarm:
    """`with NamespaceFarm(2) as farm:` -> farm.hosts is a DISTCC_HOSTS value for the live daemons."""

    made = 0   # farms made by this process: part of the names, so two farms never collide

    def __init__(self, count: int, slots: int = 2, compiler_dir: Path | None = None, start: bool = True):
        self.count, self.slots, self.compiler_dir, self.start_daemons = count, slots, compiler_dir, start
        NamespaceFarm.made += 1
        self.tag = f"kbf{os.getpid() % 100000}{NamespaceFarm.made % 100}x"
        self.daemons: list[Daemon] = []
        self.root: Path | None = None

    def __enter__(self) -> "NamespaceFarm":
        try:
            self.root = Path(tempfile.mkdtemp(prefix="kbuild-farm-"))
            self.root.chmod(0o755)          # distccd drops root for the `distcc` user
            for i in range(self.count):
                self._namespace(i)
            if self.start_daemons:
                for d in self.daemons:
                    self.start(d)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def hosts(self) -> str:
        return " ".join(d.spec for d in self.daemons)

    def _free_subnet(self) -> int:
        used = set(re.findall(r"10\.213\.(\d+)\.", run(["ip", "-o", "addr"]).output))
        taken = {d.address.split(".")[2] for d in self.daemons}
        return next(n for n in range(1, 255) if str(n) not in used | taken)

    def _namespace(self, i: int) -> Daemon:
        """Namespace, veth pair, addresses; recorded first, so close() removes a half-made one."""
        n = self._free_subnet()
        ns, veth, peer = f"{self.tag}n{i}", f"{self.tag}h{i}", f"{self.tag}g{i}"
        d = Daemon(ns, veth, f"10.213.{n}.2", self.root / f"distccd-{i}.log", self.slots)
        self.daemons.append(d)
        run(["ip", "netns", "add", ns])
        run(["ip", "link", "add", veth, "type", "veth", "peer", "name", peer])
        run(["ip", "link", "set", peer, "netns", ns])
        run(["ip", "addr", "add", f"10.213.{n}.1/30", "dev", veth])
        run(["ip", "link", "set", veth, "up"])
        run(["ip", "netns", "exec", ns, "ip", "addr", "add", f"10.213.{n}.2/30", "dev", peer])
        run(["ip", "netns", "exec", ns, "ip", "link", "set", peer, "up"])
        run(["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"])
        return d

    def start(self, d: Daemon) -> None:
        """distccd inside the namespace, listening there, accepting only the host end of its veth."""
        d.log.touch()
        d.log.chmod(0o666)
        env = {"PATH": f"{self.compiler_dir}:{os.environ['PATH']}"} if self.compiler_dir else None
        peer = d.address.rsplit(".", 1)[0] + ".1"
        run(["ip", "netns", "exec", d.ns, "distccd", "--daemon", "--listen", d.address, "--allow", peer,
             "--port", str(PORT), "--jobs", str(d.slots), "--log-file", str(d.log), "--log-level", "info"],
            env=env)
        deadline = time.monotonic() + 10
        while f"listening on {d.address}" not in d.log.read_text(errors="replace"):
            if time.monotonic() > deadline:
                raise RuntimeError(f"distccd in {d.ns} did not start: {d.log.read_text()[-500:]}")
            time.sleep(0.1)
        d.running = True

    def close(self) -> None:
        for d in self.daemons:
            d.kill()
            run(["ip", "netns", "del", d.ns], check=False)
            run(["ip", "link", "del", d.veth], check=False)   # gone with the namespace already, normally
        self.daemons = []
        if self.root:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def leftovers(self) -> list[str]:
        """Anything of ours still on the machine (the tests assert it is empty after close())."""
        ns = run(["ip", "netns", "list"], check=False).output
        links = run(["ip", "-o", "link"], check=False).output
        return [w for w in re.findall(rf"\b{self.tag}\w+", ns + links)]


def other_compiler(root: Path, real: str = "gcc-11") -> Path | None:
    """A folder whose `gcc` is another real compiler, for a daemon's PATH (None if not installed).
    distcc asks the host for x86_64-linux-gnu-gcc, so both names lead to it."""
    path = shutil.which(real)
    if not path:
        return None
    d = root / "other-gcc"
    d.mkdir(parents=True, exist_ok=True)
    for name in ("gcc", "x86_64-linux-gnu-gcc", "cc"):
        (d / name).symlink_to(path)
    for p in (root, d):
        p.chmod(0o755)
    return d
