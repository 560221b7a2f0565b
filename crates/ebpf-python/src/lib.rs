//! `ebpf-python`: the Python package `ebpf_vm` (PyO3), built into a wheel by maturin.
//!
//! What it is for: running eBPF programs from Python — pytest suites for kernel BPF code, say —
//! through the facade: `Vm.load(bytes)`, `Vm.load_asm(text)`, `Vm.load_elf(path, section=…)`
//! with `engine=`, `budget=`, `max_call_depth=`, `helpers={id: callable}`,
//! `spectre_masking=` (the JITs' Spectre v1 masking, on, off or each JIT's default),
//! `spectre_clamp_proven=` (with masking, the clamp of accesses proven through a branch), then
//! `vm.run(bytearray)`, which returns `r0` or raises `ebpf_vm.Trap` (with `kind` and `pc`), and
//! with `trace=[]` collects every executed instruction as a dict (`trace.rs`).
//! `Object.load(path)` loads an object's XDP and socket-filter programs with its maps and the
//! kernel's helpers; `obj.run(name, packet)` runs one on a packet, and `obj.maps[name]` is a
//! dict-like view of a map (`object.rs`) — the object's globals too, as libbpf names their
//! maps: `obj.maps[".bss"][bytes(4)]` is the whole `.bss` section, kept across runs.
//! Load errors raise `ebpf_vm.LoadError` (also with `kind` and `pc`). `ebpf_vm.pyi` beside
//! this crate's manifest is the typed API.
//!
//! What it is not for: behaviour of its own. It converts arguments, calls the facade, and
//! converts results and errors; Python helpers are adapted in `helper.rs`. Runs release the
//! GIL (helpers take it back), so several Python threads can run programs at once.
//!
//! The crate has no Rust tests: its tests are `tests/test_ebpf_vm.py`, run by pytest against
//! the installed wheel (`.ci/run`).

mod errors;
mod helper;
mod object;
mod trace;

use std::collections::BTreeMap;

use ebpf_vm::{Engine, Input, VmBuilder};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyByteArrayMethods, PyBytes, PyList, PySlice};

use crate::errors::{Error, LoadError, Trap};
use crate::helper::{Callables, Memory, PyHelper};

/// A loaded eBPF program with its configuration; run it as often as you like.
#[pyclass(frozen, module = "ebpf_vm")]
struct Vm {
    inner: ebpf_vm::Vm,
    /// Its helpers' callables, released with it (after `inner`).
    _callables: Callables,
}

/// The configuration every `Vm.load*` takes as keyword arguments.
struct Options<'py> {
    engine: &'py str,
    budget: Option<u64>,
    max_call_depth: usize,
    helpers: Option<BTreeMap<u32, Bound<'py, PyAny>>>,
    verify: bool,
    allow_unbounded: bool,
    spectre_masking: Option<bool>,
    spectre_clamp_proven: bool,
}

impl Options<'_> {
    /// The facade's builder for these options, and the callables of its helpers.
    fn builder(self) -> PyResult<(VmBuilder, Callables)> {
        let engine = Engine::from_name(self.engine).ok_or_else(|| {
            let names: Vec<&str> = Engine::ALL.iter().map(|e| e.name()).collect();
            pyo3::exceptions::PyValueError::new_err(format!(
                "unknown engine {:?} (this build has: {})",
                self.engine,
                names.join(", ")
            ))
        })?;
        let mut builder = ebpf_vm::Vm::builder()
            .engine(engine)
            .max_call_depth(self.max_call_depth);
        if let Some(budget) = self.budget {
            builder = builder.budget(budget);
        }
        if let Some(on) = self.spectre_masking {
            builder = builder.spectre_masking(on);
        }
        builder = builder.spectre_clamp_proven(self.spectre_clamp_proven);
        if !self.verify {
            builder = builder.unverified();
        } else if self.allow_unbounded {
            builder = builder.allow_unbounded();
        }
        let mut callables = Callables::default();
        for (id, callable) in self.helpers.unwrap_or_default() {
            if !callable.is_callable() {
                return Err(pyo3::exceptions::PyTypeError::new_err(format!(
                    "helper {id} is not callable"
                )));
            }
            let (helper, slot) = PyHelper::new(id, callable.unbind());
            builder = builder.helper(id, helper);
            callables.push(slot);
        }
        Ok((builder, callables))
    }
}

/// Finishes a load: the VM, or `LoadError`.
fn loaded(
    py: Python<'_>,
    result: Result<ebpf_vm::Vm, ebpf_vm::LoadError>,
    callables: Callables,
) -> PyResult<Vm> {
    result
        .map(|inner| Vm {
            inner,
            _callables: callables,
        })
        .map_err(|e| errors::load_error(py, &e))
}

#[pymethods]
impl Vm {
    /// Loads bytecode (8-byte little-endian instructions), verifying it first.
    #[staticmethod]
    #[pyo3(signature = (code, *, engine = "interp", budget = None, max_call_depth = 8,
                        helpers = None, verify = true, allow_unbounded = false,
                        spectre_masking = None, spectre_clamp_proven = false))]
    #[expect(clippy::too_many_arguments, reason = "Python keyword arguments")]
    fn load<'py>(
        py: Python<'py>,
        code: &[u8],
        engine: &'py str,
        budget: Option<u64>,
        max_call_depth: usize,
        helpers: Option<BTreeMap<u32, Bound<'py, PyAny>>>,
        verify: bool,
        allow_unbounded: bool,
        spectre_masking: Option<bool>,
        spectre_clamp_proven: bool,
    ) -> PyResult<Vm> {
        let options = Options {
            engine,
            budget,
            max_call_depth,
            helpers,
            verify,
            allow_unbounded,
            spectre_masking,
            spectre_clamp_proven,
        };
        let (builder, callables) = options.builder()?;
        loaded(py, builder.load(code), callables)
    }

    /// Assembles and loads text in the bpf_conformance syntax (`mov %r0, 1\nexit`).
    #[staticmethod]
    #[pyo3(signature = (text, *, engine = "interp", budget = None, max_call_depth = 8,
                        helpers = None, verify = true, allow_unbounded = false,
                        spectre_masking = None, spectre_clamp_proven = false))]
    #[expect(clippy::too_many_arguments, reason = "Python keyword arguments")]
    fn load_asm<'py>(
        py: Python<'py>,
        text: &str,
        engine: &'py str,
        budget: Option<u64>,
        max_call_depth: usize,
        helpers: Option<BTreeMap<u32, Bound<'py, PyAny>>>,
        verify: bool,
        allow_unbounded: bool,
        spectre_masking: Option<bool>,
        spectre_clamp_proven: bool,
    ) -> PyResult<Vm> {
        let options = Options {
            engine,
            budget,
            max_call_depth,
            helpers,
            verify,
            allow_unbounded,
            spectre_masking,
            spectre_clamp_proven,
        };
        let (builder, callables) = options.builder()?;
        loaded(py, builder.load_asm(text), callables)
    }

    /// Loads a program of a BPF ELF object file (`clang -target bpf -c`): the one starting at
    /// `function`, else the one in `section`, else the object's only program.
    #[staticmethod]
    #[pyo3(signature = (path, *, section = None, function = None, engine = "interp",
                        budget = None, max_call_depth = 8, helpers = None, verify = true,
                        allow_unbounded = false, spectre_masking = None,
                        spectre_clamp_proven = false))]
    #[expect(clippy::too_many_arguments, reason = "Python keyword arguments")]
    fn load_elf<'py>(
        py: Python<'py>,
        path: std::path::PathBuf,
        section: Option<&str>,
        function: Option<&str>,
        engine: &'py str,
        budget: Option<u64>,
        max_call_depth: usize,
        helpers: Option<BTreeMap<u32, Bound<'py, PyAny>>>,
        verify: bool,
        allow_unbounded: bool,
        spectre_masking: Option<bool>,
        spectre_clamp_proven: bool,
    ) -> PyResult<Vm> {
        let options = Options {
            engine,
            budget,
            max_call_depth,
            helpers,
            verify,
            allow_unbounded,
            spectre_masking,
            spectre_clamp_proven,
        };
        let (builder, callables) = options.builder()?;
        let bytes = std::fs::read(&path)?;
        let selector = match (function, section) {
            (Some(f), _) => ebpf_vm::Selector::Function(f),
            (None, Some(s)) => ebpf_vm::Selector::Section(s),
            (None, None) => ebpf_vm::Selector::Only,
        };
        loaded(py, builder.load_elf(&bytes, selector), callables)
    }

    /// Runs the program and returns `r0`. `data` is the input: a `bytearray` (the program's
    /// writes land in it), `bytes` (writes are discarded) or `None` (no input: `r1` = `r2` =
    /// 0). A trap raises `Trap`. With `trace`, a list, the run is traced (on the interpreter,
    /// with the same result) and one dict per executed instruction is appended to it, also
    /// when the run traps (docs/trace.md).
    #[pyo3(signature = (data = None, *, trace = None))]
    fn run(
        &self,
        py: Python<'_>,
        data: Option<&Bound<'_, PyAny>>,
        trace: Option<&Bound<'_, PyList>>,
    ) -> PyResult<u64> {
        let mut buffer = match data {
            None => None,
            Some(d) => {
                if let Ok(array) = d.cast::<PyByteArray>() {
                    Some(array.to_vec())
                } else if let Ok(bytes) = d.extract::<&[u8]>() {
                    Some(bytes.to_vec())
                } else {
                    return Err(pyo3::exceptions::PyTypeError::new_err(format!(
                        "data must be bytearray, bytes or None, not {}",
                        d.get_type().name()?
                    )));
                }
            }
        };
        helper::clear_pending_error();
        // The copy is the program's memory: Python code (a helper) cannot resize or free it
        // while the program runs without the GIL.
        let tracing = trace.is_some();
        let mut steps = Vec::new();
        let result = py.detach(|| {
            let input = match buffer.as_deref_mut() {
                Some(bytes) => Input::new(bytes),
                None => Input::none(),
            };
            if tracing {
                self.inner.run_traced(input, &mut steps)
            } else {
                self.inner.run_with(input)
            }
        });
        if let Some(list) = trace {
            trace::append(list, &steps)?;
        }
        if let (Some(d), Some(bytes)) = (data, &buffer)
            && let Ok(array) = d.cast::<PyByteArray>()
        {
            let end = isize::try_from(bytes.len()).unwrap_or(isize::MAX);
            array.set_item(PySlice::new(py, 0, end, 1), PyBytes::new(py, bytes))?;
        }
        match result {
            Ok(exit) => Ok(exit.r0),
            Err(trap) => Err(helper::run_error(py, &trap)),
        }
    }

    /// The engine that runs the program (`"interp"`, `"x86"`, `"cranelift"`).
    #[getter]
    fn engine(&self) -> &'static str {
        self.inner.engine().name()
    }

    /// Bytes of machine code the engine generated for the program (0 for the interpreter).
    #[getter]
    fn code_size(&self) -> usize {
        self.inner.code_size()
    }

    /// The number of instruction slots of the loaded program.
    fn __len__(&self) -> usize {
        self.inner.program().slot_count()
    }

    fn __repr__(&self) -> String {
        format!(
            "<ebpf_vm.Vm: {} slots on {}>",
            self.inner.program().slot_count(),
            self.inner.engine()
        )
    }
}

/// The engines this build has, the interpreter first.
#[pyfunction]
fn engines() -> Vec<&'static str> {
    Engine::ALL.iter().map(|e| e.name()).collect()
}

/// Run eBPF programs in user space: safely, fast, the same on every CPU.
#[pymodule]
#[pyo3(name = "ebpf_vm")]
fn ebpf_vm_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<Vm>()?;
    m.add_class::<Memory>()?;
    m.add_class::<object::Object>()?;
    m.add_class::<object::Map>()?;
    m.add_function(wrap_pyfunction!(engines, m)?)?;
    m.add("Error", py.get_type::<Error>())?;
    m.add("LoadError", py.get_type::<LoadError>())?;
    m.add("Trap", py.get_type::<Trap>())?;
    Ok(())
}
