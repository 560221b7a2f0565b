//! `ebpf_vm.Object` and `ebpf_vm.Map`: an object's XDP, socket-filter and TC programs sharing
//! its maps, run on packets with their kernel context (`Vm::run_packet` of the facade), and each
//! map as a dict-like view of bytes keys and values (the kernel's syscall layouts: per-CPU
//! values side by side, each padded to 8 bytes).

use std::sync::Arc;

use ebpf_vm::maps::{Map as RustMap, MapError, UpdateFlags};
use ebpf_vm::{Context, Packet};
use pyo3::exceptions::{PyKeyError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyByteArrayMethods, PyBytes, PyDict, PySlice};

use crate::Options;

/// A map error as a Python exception: a missing key is `KeyError`, the rest `ValueError`
/// naming the map and the kernel's errno.
fn map_error(map: &RustMap, key: &[u8], error: MapError) -> PyErr {
    match error {
        MapError::NotFound => PyKeyError::new_err(key.to_vec()),
        e => PyValueError::new_err(format!("map `{}`: {e} (errno {})", map.name(), e.errno())),
    }
}

/// One map of an object: `m[key]`, `m[key] = value`, `del m[key]`, `key in m`, `len(m)`,
/// `m.keys()`, `m.items()`, iteration over keys. Keys and values are `bytes`; updates made
/// here are seen by the next run, and runs' updates are seen here.
#[pyclass(frozen, module = "ebpf_vm")]
pub(crate) struct Map {
    inner: Arc<RustMap>,
}

#[pymethods]
impl Map {
    /// The map's name in the object.
    #[getter]
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn __getitem__<'py>(&self, py: Python<'py>, key: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
        match self.inner.lookup(key) {
            Ok(Some(value)) => Ok(PyBytes::new(py, &value)),
            Ok(None) => Err(PyKeyError::new_err(key.to_vec())),
            Err(e) => Err(map_error(&self.inner, key, e)),
        }
    }

    fn __setitem__(&self, key: &[u8], value: &[u8]) -> PyResult<()> {
        self.inner
            .update(key, value, UpdateFlags::Any)
            .map_err(|e| map_error(&self.inner, key, e))
    }

    fn __delitem__(&self, key: &[u8]) -> PyResult<()> {
        self.inner
            .delete(key)
            .map_err(|e| map_error(&self.inner, key, e))
    }

    fn __contains__(&self, key: &[u8]) -> PyResult<bool> {
        match self.inner.lookup(key) {
            Ok(found) => Ok(found.is_some()),
            Err(MapError::NotFound) => Ok(false),
            Err(e) => Err(map_error(&self.inner, key, e)),
        }
    }

    fn __len__(&self) -> usize {
        self.inner.entries().len()
    }

    /// The keys, in the map's order.
    fn keys<'py>(&self, py: Python<'py>) -> Vec<Bound<'py, PyBytes>> {
        self.inner
            .entries()
            .into_iter()
            .map(|(k, _)| PyBytes::new(py, &k))
            .collect()
    }

    /// `(key, value)` pairs, in the map's order.
    fn items<'py>(&self, py: Python<'py>) -> Vec<(Bound<'py, PyBytes>, Bound<'py, PyBytes>)> {
        self.inner
            .entries()
            .into_iter()
            .map(|(k, v)| (PyBytes::new(py, &k), PyBytes::new(py, &v)))
            .collect()
    }

    fn __iter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let keys = pyo3::types::PyList::new(py, self.keys(py))?;
        keys.as_any().try_iter().map(|it| it.into_any())
    }

    fn __repr__(&self) -> String {
        format!(
            "<ebpf_vm.Map {:?}: {}>",
            self.inner.name(),
            self.inner.spec().map_type.name()
        )
    }
}

/// The XDP, socket-filter and TC programs of one object, sharing its maps, with the kernel's
/// helpers (`docs/helpers.md`).
#[pyclass(frozen, module = "ebpf_vm")]
pub(crate) struct Object {
    inner: ebpf_vm::Object,
}

#[pymethods]
impl Object {
    /// Loads every `xdp*`, `socket*` and TC (`tc*`, `classifier*`) program of a BPF ELF
    /// object, creating its maps.
    #[staticmethod]
    #[pyo3(signature = (path, *, engine = "interp", budget = None, max_call_depth = 8,
                        spectre_masking = None, spectre_clamp_proven = false))]
    fn load(
        py: Python<'_>,
        path: std::path::PathBuf,
        engine: &str,
        budget: Option<u64>,
        max_call_depth: usize,
        spectre_masking: Option<bool>,
        spectre_clamp_proven: bool,
    ) -> PyResult<Object> {
        let options = Options {
            engine,
            budget,
            max_call_depth,
            helpers: None,
            verify: true,
            allow_unbounded: false,
            spectre_masking,
            spectre_clamp_proven,
        };
        // No Python helpers here (`helpers: None`), so no callables to keep.
        let (builder, _) = options.builder()?;
        let bytes = std::fs::read(&path)?;
        builder
            .load_object(&bytes)
            .map(|inner| Object { inner })
            .map_err(|e| crate::errors::load_error(py, &e))
    }

    /// The programs' function names, in the object's order.
    #[getter]
    fn programs(&self) -> Vec<String> {
        self.inner.programs().map(|(f, _)| f.to_string()).collect()
    }

    /// The maps by name.
    #[getter]
    fn maps<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let dict = PyDict::new(py);
        for map in self.inner.maps().iter() {
            dict.set_item(
                map.name(),
                Map {
                    inner: Arc::clone(map),
                },
            )?;
        }
        Ok(dict)
    }

    /// Runs program `name` on a packet (an Ethernet frame) with its kernel context, following
    /// tail calls, and returns `r0` (for XDP the action: 1 drop, 2 pass, 3 tx). A `bytearray`
    /// packet is replaced by the packet as the program left it. A trap raises `Trap`.
    fn run(&self, py: Python<'_>, name: &str, packet: &Bound<'_, PyAny>) -> PyResult<u64> {
        let vm = self
            .inner
            .program(name)
            .ok_or_else(|| PyValueError::new_err(format!("the object has no program {name:?}")))?;
        let frame: Vec<u8> = if let Ok(array) = packet.cast::<PyByteArray>() {
            array.to_vec()
        } else {
            packet.extract::<Vec<u8>>()?
        };
        let mut buffer = Packet::new(&frame).ok_or_else(|| {
            PyValueError::new_err(format!(
                "a packet of {} bytes is longer than the {} a run takes",
                frame.len(),
                Packet::MAX_FRAME
            ))
        })?;
        let kind = vm
            .program_kind()
            .ok_or_else(|| PyValueError::new_err(format!("{name:?} is not a packet program")))?;
        let context = Context::default_for(kind);
        let result = py.detach(|| vm.run_packet(&mut buffer, &context));
        if let Ok(array) = packet.cast::<PyByteArray>() {
            let out = buffer.bytes();
            let end = isize::try_from(array.len()).unwrap_or(isize::MAX);
            array.set_item(PySlice::new(py, 0, end, 1), PyBytes::new(py, out))?;
        }
        match result {
            Ok(outcome) => Ok(outcome.r0),
            Err(trap) => Err(crate::errors::trap(py, &trap, None)),
        }
    }

    fn __repr__(&self) -> String {
        format!("<ebpf_vm.Object: programs {:?}>", self.programs())
    }
}
