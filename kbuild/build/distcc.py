"""distcc as the compile engine: hosts in distcc's own syntax, a probe that refuses any host whose
compiler is not ours, and the jobs each host really ran, counted from distcc's client log.

Plain mode only: this machine preprocesses, the hosts compile the preprocessed text. A host with
another compiler would change the objects (and the build-id) without a word from distcc, so
every host must first compile a probe byte for byte like the local compiler does.
"""
from __future__ import annotations

import re
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from kbuild.core.distcchosts import Host, parse_hosts
from kbuild.core.errors import BadInput
from kbuild.core.proc import run

MASQUERADE_DIR = "/usr/lib/distcc"   # Debian's gcc -> distcc links: CC stays `gcc` when it leads PATH
# distcc 3.4 runs `gcc` as `x86_64-linux-gnu-gcc`, here too: `$(CC) --version` then says so, Kbuild
# sees a new CONFIG_CC_VERSION_TEXT, rewrites .config and the kernel changes. Keep the name.
KEEP_NAME = {"DISTCC_NO_REWRITE_CROSS": "1"}
PROBE_SECONDS = 30
@dataclass(frozen=True)
class Probe:
    """What one host made of the probe: usable, or why not (one line naming the host)."""

    host: Host
    ok: bool
    why: str = ""
    comment: str = ""


@dataclass(frozen=True)
class Farm:
    """The hosts that passed the probe; what the build exports to distcc."""

    hosts: tuple[Host, ...]
    options: tuple[str, ...]
    refused: tuple[Probe, ...]
    local_comment: str
    local_version: str

    @property
    def spec(self) -> str:
        return " ".join([*self.options, *(h.spec for h in self.hosts)])

    def record(self) -> dict:
        return {"engine": "distcc", "mode": "plain", "hosts": [h.spec for h in self.hosts],
                "refused": {p.host.spec: p.why for p in self.refused},
                "compiler": {"comment": self.local_comment, "version": self.local_version}}


# Small, but through the paths that matter: a macro on the line (columns), debug info, a string.
PROBE_C = '#define TWICE(x) ((x) + (x))\nconst char *where(void) { return __FILE__; }\n' \
          'int probe(int x) { return TWICE(x) * 3; }\n'
PROBE_FLAGS = ["-O2", "-g", "-gno-column-info", "-c"]


def _comment(obj: Path) -> str:
    """The compiler's identity as it wrote it into the object (`.comment`, e.g. GCC: (Debian ...) 12.2.0)."""
    out = run(["readelf", "-p", ".comment", str(obj)], check=False).output
    found = re.findall(r"\]\s+(.+)$", out, re.M)
    return "; ".join(s.strip() for s in found) or "(no .comment)"


def _client_env(work: Path, hosts: str, fallback: bool) -> dict[str, str]:
    (work / "distcc").mkdir(exist_ok=True)
    return {"DISTCC_HOSTS": hosts, "DISTCC_DIR": str(work / "distcc"), "DISTCC_LOG": str(work / "client.log"),
            "DISTCC_FALLBACK": "1" if fallback else "0", "DISTCC_BACKOFF_PERIOD": "0", **KEEP_NAME}


def _why_failed(log: str, host: Host) -> str:
    errors = [m.group(1) for m in re.finditer(r"ERROR: (.+)", log)]
    conn = next((e for e in errors if "connect" in e.lower()), None)
    if conn:
        return f"distcc host {host.spec!r} is unreachable ({conn})"
    return f"distcc host {host.spec!r} did not compile the probe ({errors[-1] if errors else 'no answer'})"


def probe_host(host: Host, cc: str, work: Path, local_obj: Path, local_comment: str, local_version: str) -> Probe:
    """Compile the probe through distcc on `host` alone, no fallback; its object must equal ours."""
    d = work / re.sub(r"[^A-Za-z0-9.]+", "_", host.spec)
    d.mkdir()
    src, obj = d / "probe.c", d / "probe.o"
    src.write_text(PROBE_C)
    env = _client_env(d, host.spec, fallback=False)
    res = run(["distcc", cc, *PROBE_FLAGS, f"-ffile-prefix-map={d}=.", "probe.c", "-o", "probe.o"], cwd=d, env=env,
              check=False, deadline=time.monotonic() + PROBE_SECONDS)
    log = (d / "client.log").read_text(errors="replace") if (d / "client.log").exists() else res.output
    if res.timed_out:
        return Probe(host, False, f"distcc host {host.spec!r} ({host.address}) did not answer in {PROBE_SECONDS}s")
    if res.returncode != 0 or not obj.exists() or f"on {host.spec} completed ok" not in log:
        return Probe(host, False, _why_failed(log, host))
    comment = _comment(obj)
    if comment != local_comment:
        return Probe(host, False, f"distcc host {host.spec!r} refused: its compiler is {comment!r}, ours is "
                                  f"{local_comment!r} (gcc -dumpfullversion {local_version})", comment)
    if obj.read_bytes() != local_obj.read_bytes():
        return Probe(host, False, f"distcc host {host.spec!r} refused: same compiler ({comment!r}) but its "
                                  f"probe object differs from ours (assembler or defaults?)", comment)
    return Probe(host, True, comment=comment)


def check_farm(text: str, cc: str = "gcc", ccache: bool = False) -> Farm:
    """Probe every remote host; BadInput (exit 2) when none is usable. The refused stay in the record.
    ccache hands distcc the compiler's full path, which a host resolves without its PATH: probe that."""
    hosts, options = parse_hosts(text)
    if not shutil.which("distcc"):
        run(["distcc", "--version"])   # raises MissingTool naming the package
    if ccache and shutil.which(cc):
        cc = shutil.which(cc)
    with tempfile.TemporaryDirectory(prefix="kbuild-distcc-probe-") as tmp:
        work = Path(tmp)
        (work / "local").mkdir()
        (work / "local" / "probe.c").write_text(PROBE_C)
        local_obj = work / "local" / "probe.o"
        run([cc, *PROBE_FLAGS, f"-ffile-prefix-map={work / 'local'}=.", "probe.c", "-o", "probe.o"], cwd=work / "local")
        local_comment = _comment(local_obj)
        local_version = run([cc, "-dumpfullversion"]).output.strip()
        probes = [probe_host(h, cc, work, local_obj, local_comment, local_version) for h in hosts if h.remote]
    refused = tuple(p for p in probes if not p.ok)
    good = {p.host for p in probes if p.ok}
    usable = tuple(h for h in hosts if h in good or not h.remote)
    if not good:
        raise BadInput("no usable distcc host: " + "; ".join(p.why for p in refused))
    return Farm(usable, options, refused, local_comment, local_version)


def slots(farm: Farm, env: dict[str, str]) -> int:
    """distcc's own answer to how many jobs the farm takes at once (`distcc -j`)."""
    out = run(["distcc", "-j"], env={**env, "DISTCC_HOSTS": farm.spec}).output.strip()
    try:
        return max(1, int(out.split()[-1]))
    except (ValueError, IndexError):
        return sum(h.slots for h in farm.hosts)


def build_env(farm: Farm, state_dir: Path, ccache: bool) -> dict[str, str]:
    """distcc's variables for the build; ccache, when on, hands it only its misses (CCACHE_PREFIX).
    Without ccache, Debian's masquerade folder leads PATH, so CC is still plain `gcc`."""
    shutil.rmtree(state_dir, ignore_errors=True)   # a fresh backoff state and log for every build
    state_dir.mkdir(parents=True)
    env = {"DISTCC_HOSTS": farm.spec, "DISTCC_DIR": str(state_dir), "DISTCC_LOG": str(state_dir / "client.log"),
           **KEEP_NAME}
    if ccache:
        env["CCACHE_PREFIX"] = "distcc"
    return env


@dataclass(frozen=True)
class JobCounts:
    """Measured from distcc's client log: what each host compiled, what ran here and why."""

    per_host: dict[str, int]
    local: int          # ran here by design: links, host programs, anything distcc does not send
    fallbacks: int      # should have gone out, but a host failed (or was backed off): compiled here

    def record(self) -> dict:
        return {"jobs_per_host": dict(self.per_host), "local_jobs": self.local, "fallbacks": self.fallbacks}


_DONE = re.compile(r"\] compile .* on (\S+) completed ok$")
_FALLBACK = re.compile(r"Warning: failed to distribute.*running locally instead")


def _host_named(name: str, farm: Farm) -> str:
    """distcc logs a host as written, or as address[/limit]: the spec it came from."""
    bare = re.split(r"[:/,]", name.split("@")[-1])[0]
    return next((h.spec for h in farm.hosts if name == h.spec), None) or \
        next((h.spec for h in farm.hosts if h.address == bare), name)


def count_jobs(log: Path, farm: Farm) -> JobCounts:
    """One line per finished job in the client log; a fallback also ends as a job on localhost."""
    per_host: Counter[str] = Counter({h.spec: 0 for h in farm.hosts if h.remote})
    local = fallbacks = 0
    text = log.read_text(errors="replace") if log.exists() else ""
    for line in text.splitlines():
        if _FALLBACK.search(line):
            fallbacks += 1
        m = _DONE.search(line)
        if m:
            if m.group(1) == "localhost":
                local += 1
            else:
                per_host[_host_named(m.group(1), farm)] += 1
    return JobCounts(dict(per_host), local - fallbacks, fallbacks)
