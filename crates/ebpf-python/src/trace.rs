//! `vm.run(data, trace=steps)`: each executed instruction as a dict appended to a Python list,
//! with the keys of `ebpf run --trace-json` (docs/trace.md) and Python ints for the values.

use ebpf_vm::{Access, Effect, Step};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

/// Appends one dict per step to `list`.
pub(crate) fn append(list: &Bound<'_, PyList>, steps: &[Step]) -> PyResult<()> {
    let py = list.py();
    for step in steps {
        list.append(dict(py, step)?)?;
    }
    Ok(())
}

/// `step` as a dict: `step`, `pc`, `depth`, `insn` (LLVM syntax), `regs` (`{"r1": (before,
/// after)}` for the registers it changed), `next` (None after the final exit), and `load`,
/// `store` (`addr`, `len`, `value`), `atomic` (`addr`, `len`, `before`, `after`) or `helper`
/// (`id`, `args`, `result`) when it did that.
fn dict<'py>(py: Python<'py>, step: &Step) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("step", step.executed)?;
    d.set_item("pc", step.pc)?;
    d.set_item("depth", step.depth)?;
    d.set_item("insn", step.insn.llvm().to_string())?;
    let regs = PyDict::new(py);
    for (reg, before, after) in step.changed() {
        regs.set_item(format!("r{reg}"), (before, after))?;
    }
    d.set_item("regs", regs)?;
    let access = |a: Access| -> PyResult<Bound<'py, PyDict>> {
        let m = PyDict::new(py);
        m.set_item("addr", a.addr)?;
        m.set_item("len", a.len)?;
        m.set_item("value", a.value)?;
        Ok(m)
    };
    match step.effect {
        Effect::None => {}
        Effect::Read(a) => d.set_item("load", access(a)?)?,
        Effect::Write(a) => d.set_item("store", access(a)?)?,
        Effect::Atomic { read, after } => {
            let m = PyDict::new(py);
            m.set_item("addr", read.addr)?;
            m.set_item("len", read.len)?;
            m.set_item("before", read.value)?;
            m.set_item("after", after)?;
            d.set_item("atomic", m)?;
        }
        Effect::Helper { id, args, result } => {
            let m = PyDict::new(py);
            m.set_item("id", id)?;
            m.set_item("args", args.to_vec())?;
            m.set_item("result", result)?;
            d.set_item("helper", m)?;
        }
    }
    d.set_item("next", step.next)?;
    Ok(d)
}
