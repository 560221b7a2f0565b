"""Run eBPF programs in user space: safely, fast, the same on every CPU.

Type stubs for the `ebpf_vm` extension module (crates/ebpf-python/src).
"""

import os
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Tuple, Union

Helper = Callable[[Tuple[int, int, int, int, int], "Memory"], int]
"""A helper: called with (r1, ..., r5) and the run's memory; returns the new r0 (0..2**64).
Raising ends the run with Trap(kind="helper_failed") whose __cause__ is the exception (if
the exception is the Trap a failed Memory access raised, the run ends with that access's
trap instead; one the helper caught does not count); a BaseException that is not an Exception (KeyboardInterrupt, SystemExit) ends the run and
propagates from Vm.run unchanged."""

def engines() -> list[str]:
    """The engines this build has, the interpreter ("interp") first."""

class Error(Exception):
    """Anything ebpf_vm reports."""

    kind: str
    """What happened, as a short name (see LoadError and Trap)."""
    pc: Optional[int]
    """The instruction (slot index) it happened at, when there is one."""

class LoadError(Error):
    """A program could not be loaded. kind: decode, asm, elf, rejected, needs_budget,
    invalid_config, engine_unavailable, compile, uses_maps, too_large."""

class Trap(Error):
    """A run ended with a trap. kind: out_of_bounds, misaligned_atomic, budget_exhausted,
    call_depth_exceeded, unknown_helper, helper_failed, invalid_instruction,
    region_too_large."""

    address: int
    """The VM address, for out_of_bounds and misaligned_atomic only."""

class Memory:
    """The VM's memory during one helper call (invalid afterwards)."""

    def read(self, addr: int, length: int) -> bytes:
        """`length` bytes at VM address `addr`; raises Trap(kind="out_of_bounds")."""
    def write(self, addr: int, data: bytes) -> None:
        """Writes `data` at VM address `addr`; raises Trap(kind="out_of_bounds")."""

class Vm:
    """A loaded eBPF program with its configuration.

    Every load takes `spectre_masking`: True or False turns Spectre v1 masking in the JITs'
    code on or off (None: each JIT's default, on for both). With it, the
    address of every access checked at run time is masked on the check's result, so that a
    mispredicted bounds check cannot load out of bounds even speculatively. And
    `spectre_clamp_proven`: True, with masking on, also clamps (without a branch) the accesses
    the JITs prove in bounds through a branch of the program's own (a guard, a loop bound),
    which otherwise run unchecked (default False: it costs 12-16% with the x86 JIT). Neither
    has an effect on the interpreter, nor on results."""

    @staticmethod
    def load(
        code: bytes,
        *,
        engine: str = "interp",
        budget: Optional[int] = None,
        max_call_depth: int = 8,
        helpers: Optional[Mapping[int, Helper]] = None,
        verify: bool = True,
        allow_unbounded: bool = False,
        spectre_masking: Optional[bool] = None,
        spectre_clamp_proven: bool = False,
    ) -> "Vm":
        """Loads bytecode (8-byte little-endian instructions), verifying it first."""
    @staticmethod
    def load_asm(
        text: str,
        *,
        engine: str = "interp",
        budget: Optional[int] = None,
        max_call_depth: int = 8,
        helpers: Optional[Mapping[int, Helper]] = None,
        verify: bool = True,
        allow_unbounded: bool = False,
        spectre_masking: Optional[bool] = None,
        spectre_clamp_proven: bool = False,
    ) -> "Vm":
        """Assembles and loads bpf_conformance-syntax text ("mov %r0, 1\\nexit")."""
    @staticmethod
    def load_elf(
        path: Union[str, "os.PathLike[str]"],
        *,
        section: Optional[str] = None,
        function: Optional[str] = None,
        engine: str = "interp",
        budget: Optional[int] = None,
        max_call_depth: int = 8,
        helpers: Optional[Mapping[int, Helper]] = None,
        verify: bool = True,
        allow_unbounded: bool = False,
        spectre_masking: Optional[bool] = None,
        spectre_clamp_proven: bool = False,
    ) -> "Vm":
        """Loads a program of a BPF ELF object file (clang -target bpf -c)."""
    def run(
        self,
        data: Union[bytearray, bytes, None] = None,
        *,
        trace: Optional[List[Dict[str, Any]]] = None,
    ) -> int:
        """Runs the program on `data` and returns r0; raises Trap. With `trace`, appends one
        dict per executed instruction (step, pc, depth, insn, regs, next, and load, store,
        atomic or helper), on the interpreter, with the same result."""
    @property
    def engine(self) -> str:
        """The engine that runs the program."""
    @property
    def code_size(self) -> int:
        """Bytes of machine code the engine generated (0 for the interpreter)."""
    def __len__(self) -> int:
        """The number of instruction slots."""

class Map:
    """One map of an Object: bytes keys to bytes values (the kernel's syscall layouts)."""
    @property
    def name(self) -> str: ...
    def __getitem__(self, key: bytes) -> bytes: ...
    def __setitem__(self, key: bytes, value: bytes) -> None: ...
    def __delitem__(self, key: bytes) -> None: ...
    def __contains__(self, key: bytes) -> bool: ...
    def __len__(self) -> int: ...
    def __iter__(self) -> Iterator[bytes]: ...
    def keys(self) -> List[bytes]: ...
    def items(self) -> List[Tuple[bytes, bytes]]: ...

class Object:
    """The XDP, socket-filter and TC programs of a BPF ELF object, sharing its maps."""
    @staticmethod
    def load(
        path: Union[str, "os.PathLike[str]"],
        *,
        engine: str = "interp",
        budget: Optional[int] = None,
        max_call_depth: int = 8,
        spectre_masking: Optional[bool] = None,
        spectre_clamp_proven: bool = False,
    ) -> Object: ...
    @property
    def programs(self) -> List[str]: ...
    @property
    def maps(self) -> Dict[str, Map]: ...
    def run(self, name: str, packet: Union[bytes, bytearray]) -> int:
        """Runs program `name` on a frame with its kernel context; returns r0 (the XDP action)."""
        ...
