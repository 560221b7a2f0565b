"""The ebpf_vm package as a Python user sees it, run by pytest against the installed wheel.

Expected values come from the programs' meaning (and, for the ELF fixture, from its C
source), never from our own output.
"""

import gc
import pathlib
import struct
import threading
import weakref

import pytest

import ebpf_vm
from ebpf_vm import LoadError, Trap, Vm

ROOT = pathlib.Path(__file__).resolve().parents[3]
IP_FILTER = ROOT / "tests" / "elf" / "ip_filter.o"
XDP_DROP, XDP_PASS = 1, 2


# --- Loading and running ---------------------------------------------------------------------

def test_bytecode_returns_r0():
    # mov r0, 42; exit
    code = bytes([0xB7, 0, 0, 0, 42, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0])
    vm = Vm.load(code)
    assert vm.run() == 42
    assert len(vm) == 2
    assert vm.engine == "interp"


def test_the_input_is_r1_and_its_length_r2():
    vm = Vm.load_asm("ldxw %r0, [%r1]\nadd %r0, %r2\nexit")
    assert vm.run(bytearray(b"\x01\x02\x03\x04")) == 0x04030201 + 4
    assert vm.run(b"\x10\x00\x00\x00\x00") == 0x10 + 5


def test_writes_land_in_a_bytearray_not_in_bytes():
    vm = Vm.load_asm("stb [%r1+1], 0x7f\nmov %r0, 0\nexit")
    data = bytearray(3)
    vm.run(data)
    assert data == bytearray(b"\x00\x7f\x00")
    frozen = bytes(3)
    vm.run(frozen)
    assert frozen == bytes(3)


def test_spectre_masking_switches_the_jits_code_and_changes_no_result():
    # Masked code is larger (a mask on every access checked at run time); the results are the
    # same either way, in bounds and trapping; the interpreter generates no code.
    text = "ldxw %r0, [%r1]\nldxb %r2, [%r1+4]\nadd %r0, %r2\nexit"
    for engine in ebpf_vm.engines():
        if engine not in ("interp", "x86", "cranelift"):
            continue
        sizes = {}
        for masking in (True, False):
            vm = Vm.load_asm(text, engine=engine, spectre_masking=masking)
            sizes[masking] = vm.code_size
            assert vm.run(bytes([1, 2, 3, 4, 5])) == 0x04030206, (engine, masking)
            with pytest.raises(Trap) as info:
                vm.run(bytes([1, 2, 3, 4]))
            assert (info.value.kind, info.value.pc) == ("out_of_bounds", 1), (engine, masking)
        if engine == "interp":
            assert sizes == {True: 0, False: 0}
        else:
            assert sizes[True] > sizes[False], (engine, sizes)
    with pytest.raises(TypeError):
        Vm.load_asm("exit", spectre_masking="on")


def test_spectre_clamp_proven_reaches_the_jits_and_changes_no_result():
    # With masking on, a guarded header's loads (proven in bounds by the guard) are clamped:
    # the code is never smaller, and larger in builds without debug assertions (CI builds the
    # wheel in the dev profile, where the JITs keep every proven check and clamp nothing; the
    # facade's, CLI's and C API's tests check the size in release builds). The results are the
    # same either way, on inputs the guard accepts and refuses.
    text = (
        "mov %r3, %r1\nadd %r3, %r2\nmov %r4, %r1\nadd %r4, 8\njgt %r4, %r3, +3\n"
        "ldxdw %r0, [%r1]\nldxb %r2, [%r1+7]\nexit\nmov %r0, 1\nexit"
    )
    for engine in ebpf_vm.engines():
        if engine not in ("x86", "cranelift"):
            continue
        sizes = {}
        for clamp in (True, False):
            vm = Vm.load_asm(text, engine=engine, spectre_masking=True, spectre_clamp_proven=clamp)
            sizes[clamp] = vm.code_size
            assert vm.run(bytes(range(1, 10))) == 0x0807060504030201, (engine, clamp)
            assert vm.run(bytes(range(1, 8))) == 1, (engine, clamp)
        assert sizes[True] >= sizes[False] > 0, (engine, sizes)
    with pytest.raises(TypeError):
        Vm.load_asm("exit", spectre_clamp_proven="on")


def test_every_engine_agrees():
    assert ebpf_vm.engines()[0] == "interp"
    text = "mov %r0, 0\nmov %r2, 10\nl:\nadd %r0, %r2\nsub %r2, 1\njne %r2, 0, l\nexit"
    for engine in ebpf_vm.engines():
        vm = Vm.load_asm(text, engine=engine, budget=1000)
        assert vm.engine == engine
        assert vm.run() == 55, engine


def test_wrong_argument_types_raise_type_error():
    vm = Vm.load_asm("mov %r0, 0\nexit")
    with pytest.raises(TypeError, match="bytearray, bytes or None"):
        vm.run("text")
    with pytest.raises(ValueError, match="unknown engine"):
        Vm.load_asm("exit", engine="jit")
    with pytest.raises(TypeError, match="not callable"):
        Vm.load_asm("exit", helpers={1: 5})


# --- Load errors -----------------------------------------------------------------------------

def test_malformed_bytes_are_a_load_error_with_pc():
    bad = bytes([0xB7, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0, 0, 0, 0, 0, 0, 0])
    with pytest.raises(LoadError) as info:
        Vm.load(bad)
    assert info.value.kind == "rejected"
    assert info.value.pc == 1
    with pytest.raises(LoadError) as info:
        Vm.load(bad, verify=False)
    assert info.value.kind == "decode"
    assert info.value.pc == 1
    with pytest.raises(LoadError) as info:
        Vm.load(b"\x95\x00\x00")
    assert info.value.kind == "rejected"


def test_load_error_kinds():
    with pytest.raises(LoadError) as info:
        Vm.load_asm("mov %r50, 1\nexit")
    assert (info.value.kind, info.value.pc) == ("asm", None)
    loop = "mov %r0, 0\nl:\nadd %r0, 1\njne %r0, 9, l\nexit"
    with pytest.raises(LoadError) as info:
        Vm.load_asm(loop)
    assert info.value.kind == "needs_budget"
    assert Vm.load_asm(loop, allow_unbounded=True).run() == 9
    with pytest.raises(LoadError) as info:
        Vm.load_asm("exit", max_call_depth=10**6)
    assert info.value.kind == "invalid_config"
    assert isinstance(info.value, ebpf_vm.Error)


def test_a_program_that_uses_maps_is_a_uses_maps_load_error():
    with pytest.raises(LoadError) as info:
        Vm.load_elf(ROOT / "tests" / "bpf" / "xdp_counter.o")
    assert info.value.kind == "uses_maps"
    assert "uses map" in str(info.value)


def test_elf_errors(tmp_path):
    junk = tmp_path / "junk.o"
    junk.write_bytes(b"not an ELF object")
    with pytest.raises(LoadError) as info:
        Vm.load_elf(junk)
    assert info.value.kind == "elf"
    with pytest.raises(LoadError, match="no_such_section") as info:
        Vm.load_elf(IP_FILTER, section="no_such_section")
    assert info.value.kind == "elf"
    with pytest.raises(OSError):
        Vm.load_elf(tmp_path / "missing.o")


# --- Traps -----------------------------------------------------------------------------------

TRAPS = [
    # (name, program, input, kind, pc)
    ("out of bounds", "ldxw %r0, [%r1+2]\nexit", bytearray(4), "out_of_bounds", 0),
    ("misaligned atomic", "mov %r2, 1\nlock add32 [%r1+1], %r2\nexit", bytearray(8),
     "misaligned_atomic", 1),
    ("budget", "mov %r0, 0\nl:\nadd %r0, 1\nja l\nexit", None, "budget_exhausted", 2),
    ("call depth", "call local f\nexit\nf:\ncall local f\nexit", None, "call_depth_exceeded", 2),
    ("unknown helper", "call 99\nexit", None, "unknown_helper", 0),
    ("jump out of the program", "ja +5\nexit", None, "invalid_instruction", 0),
]


@pytest.mark.parametrize("name,text,data,kind,pc", TRAPS, ids=[t[0] for t in TRAPS])
def test_each_trap_kind_raises_trap_with_kind_and_pc(name, text, data, kind, pc):
    for engine in ebpf_vm.engines():
        vm = Vm.load_asm(text, engine=engine, budget=100, max_call_depth=3, verify=False)
        with pytest.raises(Trap) as info:
            vm.run(data)
        assert (info.value.kind, info.value.pc) == (kind, pc), engine
        assert str(info.value).endswith(f"at pc {pc}")


def test_out_of_bounds_trap_says_where():
    vm = Vm.load_asm("ldxw %r0, [%r1+2]\nexit")
    with pytest.raises(Trap) as info:
        vm.run(bytearray(4))
    assert info.value.address == 0x4_0000_0002
    assert str(info.value) == "out-of-bounds read of 4 bytes at 0x400000002 at pc 0"


# --- Helpers ---------------------------------------------------------------------------------

def test_a_helper_with_state():
    calls = []

    def count(args, mem):
        calls.append(args)
        return len(calls) * 100 + args[0]

    vm = Vm.load_asm("mov %r1, 7\nmov %r5, 9\ncall 1\nexit", helpers={1: count})
    assert [vm.run() for _ in range(3)] == [107, 207, 307]
    assert calls[0] == (7, 0, 0, 0, 9)


def test_a_freed_vm_releases_its_helpers_while_a_thread_that_ran_it_lives():
    # A thread keeps its last run's preparation (a copy of the VM's helpers) until it runs
    # another VM or exits; the helper, and what it refers to, must go with the Vm all the same.
    class Helper:
        def __call__(self, args, mem):
            return 5

    helper = Helper()
    gone = weakref.ref(helper)
    vm = Vm.load_asm("call 1\nexit", helpers={1: helper})
    ran, finish = threading.Event(), threading.Event()
    results = []

    def runner():
        results.append(vm.run())
        ran.set()
        finish.wait()

    thread = threading.Thread(target=runner)
    thread.start()
    try:
        assert ran.wait(60)
        assert results == [5]
        del helper, vm
        gc.collect()
        assert gone() is None, "the helper outlived its Vm"
    finally:
        finish.set()
        thread.join()


def test_a_helper_that_fails_ends_the_run():
    def refuse(args, mem):
        raise ValueError(f"{args[0]} is too large")

    vm = Vm.load_asm("mov %r1, 200\ncall 2\nexit", helpers={2: refuse})
    with pytest.raises(Trap) as info:
        vm.run()
    assert (info.value.kind, info.value.pc) == ("helper_failed", 1)
    assert "200 is too large" in str(info.value)
    assert isinstance(info.value.__cause__, ValueError)


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, SystemExit])
def test_an_interrupt_in_a_helper_propagates_unchanged(interrupt):
    def stop(args, mem):
        try:
            mem.read(0, 8)  # a failed access first: the interrupt still wins
        except Trap:
            pass
        raise interrupt()

    vm = Vm.load_asm("call 1\nexit", helpers={1: stop})
    with pytest.raises(interrupt):
        try:
            vm.run()
        except Exception:  # what swallowed Ctrl-C when it came as a Trap
            pytest.fail("the interrupt was raised as an Exception")
    # The run after it is a normal one.
    assert Vm.load_asm("mov %r0, 3\nexit").run() == 3


def test_a_helper_must_return_a_u64():
    vm = Vm.load_asm("call 1\nexit", helpers={1: lambda args, mem: -1})
    with pytest.raises(Trap) as info:
        vm.run()
    assert info.value.kind == "helper_failed"
    assert isinstance(info.value.__cause__, TypeError)


def test_a_helper_reads_and_writes_vm_memory():
    def checksum(args, mem):
        data = mem.read(args[0], args[1])
        mem.write(args[0] + args[1], bytes([sum(data) & 0xFF]))
        return sum(data)

    vm = Vm.load_asm("mov %r2, 3\ncall 4\nexit", helpers={4: checksum})
    data = bytearray([100, 50, 120, 0])
    assert vm.run(data) == 270
    assert data[3] == 270 & 0xFF


def test_a_helpers_failed_access_is_the_runs_trap():
    kept = []

    def peek(args, mem):
        kept.append(mem)
        return mem.read(args[0] + 2, 3)[0]

    vm = Vm.load_asm("call 4\nexit", helpers={4: peek})
    with pytest.raises(Trap) as info:
        vm.run(bytearray(4))
    assert (info.value.kind, info.value.pc) == ("out_of_bounds", 0)
    # The memory of a call that has returned is gone.
    with pytest.raises(RuntimeError, match="has returned"):
        kept[0].read(0x4_0000_0000, 1)


def test_a_caught_failed_access_does_not_replace_the_helpers_exception():
    def probe(args, mem):
        try:
            mem.read(0, 8)  # probing an address that is not mapped, and handling it
        except Trap:
            pass
        raise ValueError("the real failure")

    vm = Vm.load_asm("call 1\nexit", helpers={1: probe})
    with pytest.raises(Trap) as info:
        vm.run()
    assert (info.value.kind, info.value.pc) == ("helper_failed", 0)
    assert isinstance(info.value.__cause__, ValueError)
    assert str(info.value.__cause__) == "the real failure"


def test_a_failed_access_re_raised_later_is_the_runs_trap():
    def first_of_two(args, mem):
        caught = []
        for addr in (8, 0):  # two unmapped addresses; the first one's trap escapes
            try:
                mem.read(addr, 1)
            except Trap as t:
                caught.append(t)
        raise caught[0]

    vm = Vm.load_asm("call 1\nexit", helpers={1: first_of_two})
    with pytest.raises(Trap) as info:
        vm.run()
    assert (info.value.kind, info.value.pc) == ("out_of_bounds", 0)
    assert info.value.address == 8


def test_a_failed_access_in_a_helper_says_where():
    seen = []

    def peek(args, mem):
        try:
            mem.write(args[0] + 6, b"\x01\x02\x03")
        except Trap as t:
            seen.append((t.kind, t.address))
        return 0

    vm = Vm.load_asm("call 1\nexit", helpers={1: peek})
    vm.run(bytearray(8))
    assert seen == [("out_of_bounds", 0x4_0000_0006)]


def test_a_length_no_region_holds_is_a_trap_not_an_allocation():
    # A helper reads 4 GiB - 1 bytes from a 4-byte input: refused before a byte of it is
    # allocated. With the address space capped 1 GiB above what the process uses, allocating
    # first aborted the process (a failed allocation is not an exception), pytest and all.
    resource = pytest.importorskip("resource")
    status = open("/proc/self/status").read()
    used_kib = int(next(l for l in status.splitlines() if l.startswith("VmSize:")).split()[1])

    def read_all(args, mem):
        return len(mem.read(args[0], args[1]))

    vm = Vm.load_asm("mov32 %r2, -1\ncall 4\nexit", helpers={4: read_all})
    limits = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, ((used_kib << 10) + (1 << 30), limits[1]))
    try:
        with pytest.raises(Trap) as info:
            vm.run(bytearray(4))
    finally:
        resource.setrlimit(resource.RLIMIT_AS, limits)
    assert (info.value.kind, info.value.pc) == ("out_of_bounds", 1)


def test_runs_from_several_threads():
    vm = Vm.load_asm("ldxb %r0, [%r1]\nexit", engine=ebpf_vm.engines()[-1])
    results = {}

    def worker(i):
        results[i] = [vm.run(bytes([i])) for _ in range(200)]

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {i: [i] * 200 for i in range(4)}


# --- A clang-compiled XDP filter on packets built here ---------------------------------------

def ipv4_tcp_frame(src, dst, vlan=None):
    """An Ethernet frame with an IPv4/TCP header (addresses as dotted strings)."""
    eth = b"\x00\x11\x22\x33\x44\x55" + b"\x66\x77\x88\x99\xaa\xbb"
    if vlan is not None:
        eth += struct.pack("!HH", 0x8100, vlan)
    eth += struct.pack("!H", 0x0800)
    ip = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 40, 1, 0, 64, 6, 0,
        bytes(int(x) for x in src.split(".")), bytes(int(x) for x in dst.split(".")),
    )
    tcp = struct.pack("!HHIIBBHHH", 40000, 80, 0, 0, 0x50, 0x02, 8192, 0, 0)
    return bytearray(eth + ip + tcp)


@pytest.mark.parametrize(
    "src,dst,vlan,verdict",
    [
        ("192.168.1.10", "93.184.216.34", None, XDP_PASS),
        ("10.1.2.3", "8.8.8.8", None, XDP_DROP),          # from 10.0.0.0/8
        ("192.168.66.7", "8.8.8.8", 42, XDP_DROP),        # from 192.168.66.0/24, VLAN-tagged
        ("172.16.0.1", "255.255.255.255", None, XDP_DROP),  # to the limited broadcast
        ("172.16.0.1", "8.8.4.4", 7, XDP_PASS),
    ],
)
def test_ip_filter_on_built_packets(src, dst, vlan, verdict):
    for engine in ebpf_vm.engines():
        vm = Vm.load_elf(IP_FILTER, section="xdp", engine=engine, budget=100_000)
        assert vm.run(ipv4_tcp_frame(src, dst, vlan)) == verdict, engine
    # A runt frame (shorter than an Ethernet header) is dropped.
    assert Vm.load_elf(IP_FILTER, function="xdp_ip_filter").run(bytearray(10)) == XDP_DROP


# --- Traces ---------------------------------------------------------------------------------

def test_a_traced_run_lists_every_instruction_on_every_engine():
    # r0 = 3 + 2 + 1: mov, mov, three rounds of (add, sub, jne), stxdw, exit.
    text = ("mov %r0, 0\nmov %r1, 3\nloop:\nadd %r0, %r1\nsub %r1, 1\njne %r1, 0, loop\n"
            "stxdw [%r10-8], %r0\nexit")
    for engine in ebpf_vm.engines():
        vm = Vm.load_asm(text, engine=engine, budget=1000)
        steps = []
        assert vm.run(trace=steps) == 6
        assert [s["pc"] for s in steps] == [0, 1, 2, 3, 4, 2, 3, 4, 2, 3, 4, 5, 6]
        assert [s["step"] for s in steps] == list(range(1, 14))
        assert steps[1]["regs"] == {"r1": (0, 3)}
        assert steps[2] == {"step": 3, "pc": 2, "depth": 0, "insn": "r0 += r1",
                            "regs": {"r0": (0, 3)}, "next": 3}
        assert steps[4]["next"] == 2 and steps[10]["next"] == 5
        # The top frame of the stack ends at 0x200001200 (9 frames of 512 bytes).
        assert steps[11]["store"] == {"addr": 0x2000011F8, "len": 8, "value": 6}
        assert steps[12]["insn"] == "exit" and steps[12]["next"] is None


def test_a_traced_run_that_traps_keeps_its_steps():
    vm = Vm.load_asm("mov %r6, %r1\nmov %r1, 2\ncall 5\nldxw %r0, [%r6+2]\nexit",
                     helpers={5: lambda args, mem: args[0] * 7})
    steps = []
    with pytest.raises(Trap) as info:
        vm.run(bytearray(4), trace=steps)
    assert (info.value.kind, info.value.pc) == ("out_of_bounds", 3)
    assert len(steps) == 3
    assert steps[2]["helper"] == {"id": 5, "args": [2, 4, 0, 0, 0], "result": 14}
    assert steps[2]["regs"] == {"r0": (0, 14), "r1": (2, 0), "r2": (4, 0)}


def test_trace_must_be_a_list():
    with pytest.raises(TypeError):
        Vm.load_asm("mov %r0, 1\nexit").run(trace=())


# --- The type stubs --------------------------------------------------------------------------

# The dunder methods the stubs declare where a class has them (`__repr__` and the like are left
# out of both sides).
PROTOCOL = {"__len__", "__getitem__", "__setitem__", "__delitem__", "__contains__", "__iter__"}


def test_stubs_name_exactly_what_the_module_has():
    import ast

    stub = pathlib.Path(ebpf_vm.__file__).parent / "__init__.pyi"
    tree = ast.parse(stub.read_text())
    declared = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            declared[node.name] = {
                n.name for n in node.body if isinstance(n, ast.FunctionDef)
            }
        elif isinstance(node, ast.FunctionDef):
            declared[node.name] = set()
    public = {
        n for n, v in vars(ebpf_vm).items()
        if not n.startswith("_") and not isinstance(v, type(ebpf_vm))  # not the native module
    }
    assert set(declared) == public
    for name, methods in declared.items():
        obj = getattr(ebpf_vm, name)
        if isinstance(obj, type):
            runtime = {m for m in vars(obj) if not m.startswith("_") or m in PROTOCOL}
            runtime -= {"address", "kind", "pc"}  # instance attributes of exceptions
            assert methods == runtime, name


# --- Objects with maps (tests/bpf/xdp_firewall.c) ---------------------------------------------

FIREWALL = ROOT / "tests" / "bpf" / "xdp_firewall.o"


def ipv4_frame(source):
    """An Ethernet + IPv4 header (IHL 5) from `source`, padded to 54 bytes."""
    frame = bytearray(54)
    frame[12:14] = b"\x08\x00"
    frame[14] = 0x45
    frame[26:30] = bytes(source)
    return frame


def test_an_object_drops_blocked_sources_and_counts_in_its_maps():
    for engine in ebpf_vm.engines():
        obj = ebpf_vm.Object.load(FIREWALL, engine=engine)
        assert obj.programs == ["xdp_firewall"]
        blocked, verdicts = obj.maps["blocked"], obj.maps["verdicts"]
        blocked[bytes([10, 0, 0, 66])] = struct.pack("<Q", 5)
        frame = ipv4_frame([10, 0, 0, 66])
        assert obj.run("xdp_firewall", frame) == XDP_DROP, engine
        # The C source adds one to the source's drop count and to verdicts[XDP_DROP].
        assert struct.unpack("<Q", blocked[bytes([10, 0, 0, 66])]) == (6,)
        assert obj.run("xdp_firewall", ipv4_frame([10, 0, 0, 67])) == XDP_PASS
        # A frame shorter than an Ethernet header is dropped.
        assert obj.run("xdp_firewall", bytes(10)) == XDP_DROP
        counts = {k: struct.unpack("<Q", v)[0] for k, v in verdicts.items()}
        assert counts[struct.pack("<I", XDP_DROP)] == 2
        assert counts[struct.pack("<I", XDP_PASS)] == 1
        assert frame == ipv4_frame([10, 0, 0, 66])  # the program rewrote nothing


def test_maps_behave_like_dicts_of_bytes():
    obj = ebpf_vm.Object.load(FIREWALL)
    blocked = obj.maps["blocked"]
    assert blocked.name == "blocked" and len(blocked) == 0
    key = bytes([192, 168, 1, 1])
    assert key not in blocked
    with pytest.raises(KeyError):
        blocked[key]
    blocked[key] = struct.pack("<Q", 1)
    assert key in blocked and len(blocked) == 1
    assert list(blocked) == [key] and blocked.keys() == [key]
    del blocked[key]
    assert key not in blocked
    with pytest.raises(KeyError):
        del blocked[key]
    with pytest.raises(ValueError, match="blocked"):
        blocked[b"\x01"] = struct.pack("<Q", 1)  # a 1-byte key for a 4-byte-key map


BSS_COUNTER = ROOT / "tests" / "bpf" / "xdp_bss_counter.o"


def test_globals_are_maps_that_persist_and_the_host_writes():
    # tests/bpf/xdp_bss_counter.c: `.bss` holds (packets, bytes), every fifth packet drops.
    for engine in ebpf_vm.engines():
        obj = ebpf_vm.Object.load(BSS_COUNTER, engine=engine)
        bss, zero = obj.maps[".bss"], struct.pack("<I", 0)
        frame = ipv4_frame([10, 0, 0, 1])
        verdicts = [obj.run("xdp_bss_counter", frame) for _ in range(5)]
        assert verdicts == [XDP_PASS] * 4 + [XDP_DROP], engine
        assert struct.unpack("<QQ", bss[zero]) == (5, 5 * len(frame))
        bss[zero] = struct.pack("<QQ", 9, 0)  # the next packet is the tenth
        assert obj.run("xdp_bss_counter", frame) == XDP_DROP, engine
        assert struct.unpack("<QQ", bss[zero]) == (10, len(frame))
        with pytest.raises(ValueError, match="frozen"):
            obj.maps[".rodata"][zero] = struct.pack("<I", 1)


def test_an_object_refuses_unknown_programs_and_oversized_packets():
    obj = ebpf_vm.Object.load(FIREWALL)
    with pytest.raises(ValueError, match="no program"):
        obj.run("nope", bytes(60))
    with pytest.raises(ValueError, match="longer"):
        obj.run("xdp_firewall", bytes(100_000))
