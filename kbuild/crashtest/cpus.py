"""Per-CPU facts of a dump (drgn): which CPU crashed, and how every other CPU was stopped.

On x86 a crashing kernel stops the other CPUs with an NMI (crash_smp_send_stop ->
nmi_shootdown_cpus). Each stopped CPU runs crash_nmi_callback, which saves its registers
(crash_save_cpu: the NT_PRSTATUS note) and halts there, on the CPU's NMI stack. The saved
registers are the *interrupted* context (kdump_nmi_callback gets the NMI's pt_regs), so an
unwind from them shows what the CPU was doing (often the idle loop), not the stop path. The
stop path is on the NMI stack itself: scanning it for kernel text addresses finds
crash_nmi_callback, which is also how `crash`'s `bt` shows it.

On arm64 there is no NMI: crash_smp_send_stop sends the IPI IPI_CPU_CRASH_STOP, and each CPU
saves its registers in ipi_cpu_crash_stop and parks. The IPI runs on the CPU's IRQ stack
(per-CPU irq_stack_ptr, THREAD_SIZE long), which is scanned the same way. Which stack, and
which function must be on it, is configs/arches.toml's [<arch>.crash] stop_stack and
stop_function.
"""
from __future__ import annotations

from dataclasses import dataclass, field

TEXT_SCAN_LIMIT = 24   # distinct symbols kept per NMI stack: enough to show the path, short in the report
IRQ_STACK_FALLBACK = 16384


@dataclass
class CpuState:
    """One CPU as the dump shows it."""

    cpu: int
    task: str                 # comm of the task current on that CPU
    pid: int
    stack: list[str] = field(default_factory=list)       # drgn unwind from the saved registers
    nmi_stack: list[str] = field(default_factory=list)   # text symbols on the stack it was stopped on (NMI on x86, IRQ on arm64)
    error: str = ""


@dataclass
class CpuSurvey:
    crashed_cpu: int | None   # panic_cpu: set by panic() and by crash_kexec() (oops with panic_on_oops)
    online: list[int]
    cpus: list[CpuState]
    error: str = ""


def _stop_stack(prog, cpu: int, kind: str) -> tuple[int, int]:
    """(address, size) of the stack `cpu` was stopped on: its NMI IST stack (x86) or IRQ stack (arm64)."""
    import drgn
    from drgn.helpers.linux.percpu import per_cpu
    if kind == "irq":
        # IRQ_STACK_SIZE is a macro; without VMAP_STACK the per-CPU array irq_stack has that size,
        # with it the stack is vmalloc'ed THREAD_SIZE (16 KiB with 4 KiB pages)
        try:
            size = drgn.sizeof(prog["irq_stack"])
        except LookupError:
            size = IRQ_STACK_FALLBACK
        return per_cpu(prog["irq_stack_ptr"], cpu).value_(), size
    nmi = per_cpu(prog["cea_exception_stacks"], cpu).NMI_stack
    return nmi.address_of_().value_(), drgn.sizeof(nmi)


def _nmi_stack_symbols(prog, cpu: int, kind: str = "nmi") -> list[str]:
    """Kernel text symbols found on the stack `cpu` was stopped on (see _stop_stack), lowest address first."""
    import drgn
    address, size = _stop_stack(prog, cpu, kind)
    data = prog.read(address, size)
    names: list[str] = []
    # The IRQ stack is shared by every interrupt: below the live frames lie older ones. Read it
    # from its top (the outermost live frame) down, functions only, so the live path comes first.
    offsets = range(0, len(data) - 7, 8) if kind == "nmi" else range(len(data) - 8, -1, -8)
    for i in offsets:
        word = int.from_bytes(data[i:i + 8], "little")
        if word >> 47 != 0x1FFFF:   # not a kernel-half address: cannot be a return address
            continue
        try:
            sym = prog.symbol(word)
        except LookupError:
            continue
        if kind != "nmi" and sym.kind != drgn.SymbolKind.FUNC:
            continue
        name = sym.name
        if name not in names:
            names.append(name)
            if len(names) >= TEXT_SCAN_LIMIT:
                break
    return names


def survey(prog, stop_stack: str = "nmi") -> CpuSurvey:
    """Read panic_cpu, the online CPUs, and for each CPU its current task, stack and stop stack (NMI or IRQ)."""
    import drgn
    from drgn.helpers.linux.cpumask import for_each_online_cpu
    from drgn.helpers.linux.sched import cpu_curr
    try:
        crashed = prog["panic_cpu"].counter.value_()
        online = list(for_each_online_cpu(prog))
    except (drgn.FaultError, LookupError, ValueError) as e:
        return CpuSurvey(None, [], [], f"drgn cannot read panic_cpu or the online CPUs: {e}")
    states = []
    for cpu in online:
        try:
            task = cpu_curr(prog, cpu)
            state = CpuState(cpu, task.comm.string_().decode(errors="replace"), task.pid.value_())
        except (drgn.FaultError, LookupError, ValueError) as e:
            states.append(CpuState(cpu, "", -1, error=f"cannot read the current task: {e}"))
            continue
        try:
            state.stack = [f.name or hex(f.pc) for f in prog.stack_trace(task)]
        except (drgn.FaultError, LookupError, ValueError) as e:
            state.error = f"no stack: {e}"
        if cpu != crashed:
            try:
                state.nmi_stack = _nmi_stack_symbols(prog, cpu, stop_stack)
            except (drgn.FaultError, LookupError, ValueError, AttributeError) as e:
                state.error = f"cannot read the {stop_stack.upper()} stack: {e}"
        states.append(state)
    return CpuSurvey(crashed if crashed >= 0 else None, online, states)
