//! Test-only: a small checking evaluator that runs a [`StructuredProgram`] and fails on any
//! broken promise of [`crate::structured_program`] — a jump out of its function, a read of an
//! uninitialized register or stack byte, a pointer used as a number, an access out of bounds
//! or misaligned, recursion, more steps than `max_steps`.
//!
//! It is not the project's interpreter (that is `ebpf-interp`, the oracle); it exists so this
//! crate can check its own generators, and it only knows the instructions they emit. The
//! arithmetic is the contract's (`ebpf_abi::semantics`); what this adds is the bookkeeping of
//! which values are pointers and which bytes are initialised.

use ebpf_isa::{AluOp, AtomicOp, CallKind, Imm64Kind, Insn, Operand, Reg, Size, Width};

use ebpf_abi::semantics;

use crate::structured::StructuredProgram;

/// What a register holds, as the verifier sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum V {
    Uninit,
    Scalar(u64),
    /// A pointer: region and byte offset from its base (input start, or the frame's `r10`).
    Ptr(Region, i64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Region {
    Input,
    /// The stack frame of the given call depth.
    Stack(usize),
}

const FRAME: usize = 512;

/// What a run ends with.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Outcome {
    pub(crate) r0: u64,
    pub(crate) steps: u64,
    pub(crate) input: Vec<u8>,
    /// Deepest call depth reached (0: main only).
    pub(crate) depth: usize,
}

struct Frame {
    ret_pc: usize,
    saved: [V; 4],
    function: usize,
}

struct Machine<'a> {
    s: &'a StructuredProgram,
    regs: [V; 11],
    input: Vec<u8>,
    /// One 512-byte stack per live frame; `None`: never written.
    stacks: Vec<Vec<Option<u8>>>,
    frames: Vec<Frame>,
}

type Res<T> = Result<T, String>;

/// Runs `s` on `input` (which must be `s.input_len` bytes), checking every promise.
pub(crate) fn run(s: &StructuredProgram, input: &[u8]) -> Res<Outcome> {
    let mut m = Machine {
        s,
        regs: [V::Uninit; 11],
        input: input.to_vec(),
        stacks: vec![vec![None; FRAME]],
        frames: Vec::new(),
    };
    m.regs[1] = V::Ptr(Region::Input, 0);
    m.regs[10] = V::Ptr(Region::Stack(0), 0);
    let mut pc = 0usize;
    let mut steps = 0u64;
    let mut depth = 0;
    let mut function = 0usize;
    loop {
        let insn = *s
            .program
            .at_pc(pc)
            .ok_or_else(|| format!("pc {pc} is not an instruction start"))?;
        steps += insn.slots() as u64;
        if steps > s.max_steps {
            return Err(format!("more than max_steps = {} steps", s.max_steps));
        }
        let err = |e: String| format!("pc {pc} ({}): {e}", insn.conformance());
        let next = pc + insn.slots();
        match insn {
            Insn::Exit => {
                let r0 = m.scalar(Reg::R0).map_err(err)?;
                let Some(frame) = m.frames.pop() else {
                    return Ok(Outcome {
                        r0,
                        steps,
                        input: m.input,
                        depth,
                    });
                };
                m.stacks.pop();
                m.regs[6..10].copy_from_slice(&frame.saved);
                m.regs[10] = V::Ptr(Region::Stack(m.frames.len()), 0);
                for r in &mut m.regs[1..6] {
                    *r = V::Uninit;
                }
                function = frame.function;
                pc = frame.ret_pc;
            }
            Insn::Call {
                kind: CallKind::Local,
                ..
            } => {
                let target = insn.call_target(pc).ok_or_else(|| err("bad call".into()))?;
                let callee = s
                    .functions
                    .iter()
                    .position(|&f| f == target)
                    .map(|i| i + 1)
                    .ok_or_else(|| err(format!("call to {target}, not a function entry")))?;
                if callee <= function {
                    return Err(err(format!("function {function} calls {callee}")));
                }
                let mut saved = [V::Uninit; 4];
                saved.copy_from_slice(&m.regs[6..10]);
                m.frames.push(Frame {
                    ret_pc: next,
                    saved,
                    function,
                });
                m.stacks.push(vec![None; FRAME]);
                depth = depth.max(m.frames.len());
                for r in [0, 6, 7, 8, 9] {
                    m.regs[r] = V::Uninit;
                }
                m.regs[10] = V::Ptr(Region::Stack(m.frames.len()), 0);
                function = callee;
                pc = target;
            }
            Insn::Ja { .. } | Insn::Ja32 { .. } | Insn::Jump { .. } => {
                let taken = match insn {
                    Insn::Jump {
                        width,
                        cond,
                        dst,
                        src,
                        ..
                    } => {
                        let d = m.scalar(dst).map_err(err)?;
                        let s = m.operand(width, src).map_err(err)?;
                        if width == Width::W64 {
                            semantics::cond64(cond, d, s)
                        } else {
                            semantics::cond32(cond, d, s)
                        }
                    }
                    _ => true,
                };
                pc = if taken {
                    let t = insn
                        .jump_target(pc)
                        .ok_or_else(|| err("target < 0".into()))?;
                    if m.function_of(t) != function || t >= m.end_of(function) {
                        return Err(err(format!("jump to {t} leaves function {function}")));
                    }
                    t
                } else {
                    next
                };
            }
            _ => {
                m.step(insn).map_err(err)?;
                pc = next;
            }
        }
    }
}

impl Machine<'_> {
    fn function_of(&self, pc: usize) -> usize {
        self.s.functions.iter().filter(|&&f| f <= pc).count()
    }

    fn end_of(&self, function: usize) -> usize {
        match self.s.functions.get(function) {
            Some(&next) => next,
            None => self.s.program.slot_count(),
        }
    }

    fn scalar(&self, r: Reg) -> Res<u64> {
        match self.regs[usize::from(r.index())] {
            V::Scalar(v) => Ok(v),
            V::Uninit => Err(format!("{r} read before it is written")),
            V::Ptr(..) => Err(format!("{r} holds a pointer and is used as a number")),
        }
    }

    fn operand(&self, width: Width, src: Operand) -> Res<u64> {
        match (src, width) {
            (Operand::Reg(r), _) => self.scalar(r),
            (Operand::Imm(i), Width::W64) => Ok(i64::from(i).cast_unsigned()),
            (Operand::Imm(i), Width::W32) => Ok(u64::from(i.cast_unsigned())),
        }
    }

    fn set(&mut self, r: Reg, v: V) -> Res<()> {
        if r == Reg::R10 {
            return Err("r10 is written".into());
        }
        self.regs[usize::from(r.index())] = v;
        Ok(())
    }

    /// The bytes at `base + off` of `size`, as (region, byte offset) after every check.
    fn address(&self, base: Reg, off: i16, size: Size) -> Res<(Region, i64)> {
        let V::Ptr(region, at) = self.regs[usize::from(base.index())] else {
            return Err(format!("{base} is not a pointer"));
        };
        let at = at + i64::from(off);
        let bytes = i64::from(size.bytes());
        if at % bytes != 0 {
            return Err(format!("misaligned access at {at}"));
        }
        let ok = match region {
            Region::Input => at >= 0 && at + bytes <= self.s.input_len as i64,
            Region::Stack(f) => {
                f + 1 == self.stacks.len() && at >= -(self.s.stack_bytes as i64) && at + bytes <= 0
            }
        };
        if !ok {
            return Err(format!(
                "access of {bytes} bytes at {region:?}{at:+} out of bounds"
            ));
        }
        Ok((region, at))
    }

    fn read(&self, base: Reg, off: i16, size: Size) -> Res<u64> {
        let (region, at) = self.address(base, off, size)?;
        let mut v = 0u64;
        for i in (0..i64::from(size.bytes())).rev() {
            let byte = match region {
                Region::Input => self.input[(at + i) as usize],
                Region::Stack(f) => self.stacks[f][(FRAME as i64 + at + i) as usize]
                    .ok_or_else(|| format!("stack byte {} read before written", at + i))?,
            };
            v = (v << 8) | u64::from(byte);
        }
        Ok(v)
    }

    fn write(&mut self, base: Reg, off: i16, size: Size, v: u64) -> Res<()> {
        let (region, at) = self.address(base, off, size)?;
        for i in 0..i64::from(size.bytes()) {
            let byte = (v >> (8 * i)) as u8;
            match region {
                Region::Input => self.input[(at + i) as usize] = byte,
                Region::Stack(f) => self.stacks[f][(FRAME as i64 + at + i) as usize] = Some(byte),
            }
        }
        Ok(())
    }

    fn step(&mut self, insn: Insn) -> Res<()> {
        match insn {
            // Pointer moves and pointer + constant: the only things done with pointers.
            Insn::Alu {
                width: Width::W64,
                op: AluOp::Mov,
                dst,
                src: Operand::Reg(src),
            } if matches!(self.regs[usize::from(src.index())], V::Ptr(..)) => {
                let v = self.regs[usize::from(src.index())];
                self.set(dst, v)
            }
            Insn::Alu {
                width: Width::W64,
                op: AluOp::Add,
                dst,
                src: Operand::Imm(k),
            } if matches!(self.regs[usize::from(dst.index())], V::Ptr(..)) => {
                if let V::Ptr(region, at) = self.regs[usize::from(dst.index())] {
                    self.set(dst, V::Ptr(region, at + i64::from(k)))?;
                }
                Ok(())
            }
            Insn::Alu {
                width,
                op,
                dst,
                src,
            } => {
                let s = self.operand(width, src)?;
                let d = if op == AluOp::Mov {
                    0
                } else {
                    self.scalar(dst)?
                };
                let v = if width == Width::W64 {
                    semantics::alu64(op, d, s)
                } else {
                    semantics::alu32(op, d, s)
                };
                self.set(dst, V::Scalar(v))
            }
            Insn::Neg { width, dst } => {
                let d = self.scalar(dst)?;
                self.set(dst, V::Scalar(semantics::neg(width == Width::W64, d)))
            }
            Insn::MovSx {
                width,
                from,
                dst,
                src,
            } => {
                let s = self.scalar(src)?;
                self.set(
                    dst,
                    V::Scalar(semantics::movsx(width == Width::W64, from, s)),
                )
            }
            Insn::Endian { order, width, dst } => {
                let d = self.scalar(dst)?;
                self.set(dst, V::Scalar(semantics::endian(order, width, d)))
            }
            Insn::LoadImm64 {
                dst,
                kind: Imm64Kind::Value,
                imm,
            } => self.set(dst, V::Scalar(imm)),
            Insn::Load {
                size,
                signed,
                dst,
                src,
                off,
            } => {
                let v = self.read(src, off, size)?;
                let v = if signed {
                    let shift = 64 - 8 * size.bytes();
                    ((v << shift).cast_signed() >> shift).cast_unsigned()
                } else {
                    v
                };
                self.set(dst, V::Scalar(v))
            }
            Insn::Store {
                size,
                dst,
                off,
                src,
            } => {
                let v = self.operand(Width::W64, src)?;
                self.write(dst, off, size, v)
            }
            Insn::Atomic {
                width,
                op,
                dst,
                src,
                off,
            } => {
                let size = if width == Width::W32 {
                    Size::W
                } else {
                    Size::DW
                };
                let old = self.read(dst, off, size)?;
                let s = self.scalar(src)?;
                // Only `cmpxchg` reads r0 (which may hold a pointer otherwise).
                let (r0, receiver) = match op {
                    AtomicOp::Cmpxchg => (self.scalar(Reg::R0)?, Reg::R0),
                    _ => (0, src),
                };
                let (new, fetched) = semantics::atomic(op, width, old, s, r0);
                self.write(dst, off, size, new)?;
                match fetched {
                    Some(old) => self.set(receiver, V::Scalar(old)),
                    None => Ok(()),
                }
            }
            other => Err(format!("{other:?} is never generated")),
        }
    }
}
