//! [`Runner`]: a loaded program prepared for many runs on one thread — what an embedder that
//! calls a short program millions of times a second holds (`Vm::runner`), so that a run costs
//! about what a function call costs (docs/per-run.md) — and the per-thread cache of the same
//! preparation that `Vm::run` uses (`Warm`), so that `Vm::run` costs about as much.
//!
//! A runner does once what a run through a map does every time: it owns a stack and the
//! buffers of a run, and asks the engine for a session (`ebpf_abi::Session`) bound to the VM's
//! helpers, limits and fixed regions, which keeps the engine's context from run to run. A run
//! then hands the session only its input. The stack stays private: the runner scrubs what each
//! run can have written, and a run that panicked out (the embedder caught the panic around it)
//! leaves a mark that makes the next run zero the whole buffer.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::sync::{Arc, Weak};

use ebpf_abi::{Binding, Exit, Session, Trap, layout};

use crate::vm::{Input, KEPT_STACK, Scratch, Vm, undecodable_trap};

/// A [`Vm`] prepared for many runs on one thread ([`Vm::runner`]): same results as
/// [`Vm::run`] and [`Vm::run_with`], run for run, at a fraction of the fixed cost per run.
///
/// Make one per thread (it is not `Send`) and keep it as long as the thread runs the program:
/// making one allocates (its stack, the engine's context); its runs allocate nothing.
///
/// ```
/// use ebpf_vm::Vm;
///
/// let vm = Vm::builder().load_asm("ldxb %r0, [%r1+0]\nexit")?;
/// let mut runner = vm.runner();
/// for byte in 0..4u8 {
///     assert_eq!(runner.run(&mut [byte, 0xff])?, u64::from(byte));
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Runner<'vm> {
    vm: &'vm Vm,
    prepared: Box<Prepared>,
}

impl fmt::Debug for Runner<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runner")
            .field("engine", &self.vm.engine())
            .finish_non_exhaustive()
    }
}

impl Vm {
    /// This VM prepared for many runs on the calling thread: see [`Runner`].
    pub fn runner(&self) -> Runner<'_> {
        Runner {
            vm: self,
            prepared: Box::new(Prepared::new(self)),
        }
    }
}

impl<'vm> Runner<'vm> {
    /// The VM it runs.
    pub fn vm(&self) -> &'vm Vm {
        self.vm
    }

    /// [`Vm::run`]: runs the program on `data` (writable; `r1` = its address, `r2` = its
    /// length, or the metadata buffer if the VM has a layout) and returns `r0`.
    #[inline]
    pub fn run(&mut self, data: &mut [u8]) -> Result<u64, Trap> {
        self.prepared.run(self.vm, data)
    }

    /// [`Vm::run_no_data`]: runs the program without any input and returns `r0`.
    pub fn run_no_data(&mut self) -> Result<u64, Trap> {
        self.prepared.run_no_data(self.vm)
    }

    /// [`Vm::run_with`]: runs the program on `input` (a metadata buffer, extra regions);
    /// returns `r0` and the instruction count.
    pub fn run_with(&mut self, input: Input<'_>) -> Result<Exit, Trap> {
        self.prepared.run_with(self.vm, input)
    }
}

/// A session of a VM's program and the buffers of its runs — a stack, a metadata buffer, a
/// spill — used by runs of that VM only: what a [`Runner`] holds, and what `Vm::run` keeps
/// per thread and VM ([`Warm`]). It owns everything (the session keeps the program and the
/// VM's [`crate::vm::Bound`] alive); each method takes the VM it was made for.
pub(crate) struct Prepared {
    session: Box<dyn Session>,
    scratch: Scratch,
    /// `vm.limits().stack_size()`, in bytes.
    stack_size: usize,
}

impl Prepared {
    /// Allocates: the session (the engine's context), the stack on its first run.
    #[cold]
    #[inline(never)]
    pub(crate) fn new(vm: &Vm) -> Prepared {
        let binding: Arc<dyn Binding> = Arc::clone(&vm.bound) as Arc<dyn Binding>;
        Prepared {
            session: Arc::clone(&vm.compiled).session(binding),
            scratch: Scratch::default(),
            stack_size: usize::try_from(vm.limits().stack_size()).unwrap_or(usize::MAX),
        }
    }

    /// [`Runner::run`], for `vm`, the VM this was made for. (Always inlined: a call of its
    /// own cost a runner's run some 20 instructions.)
    #[inline(always)]
    pub(crate) fn run(&mut self, vm: &Vm, data: &mut [u8]) -> Result<u64, Trap> {
        if vm.metadata.is_some() || data.len() as u64 > layout::MAX_REGION_LEN {
            return self.run_with(vm, Input::new(data)).map(|exit| exit.r0);
        }
        self.run_input(vm, data).map(|exit| exit.r0)
    }

    /// [`Runner::run_no_data`], for `vm`.
    pub(crate) fn run_no_data(&mut self, vm: &Vm) -> Result<u64, Trap> {
        if vm.metadata.is_some() {
            return self.run_with(vm, Input::none()).map(|exit| exit.r0);
        }
        self.run_buffers(vm, None, [0, 0]).map(|exit| exit.r0)
    }

    /// [`Runner::run_with`], for `vm`.
    pub(crate) fn run_with(&mut self, vm: &Vm, input: Input<'_>) -> Result<Exit, Trap> {
        // An input alone (no caller's metadata buffer, no extra regions) is what the fast
        // path serves.
        if vm.metadata.is_none() && input.is_data_only() {
            let data = input.data;
            match data {
                Some(data) if data.len() as u64 <= layout::MAX_REGION_LEN => {
                    return self.run_input(vm, data);
                }
                Some(data) => return self.run_mapped(vm, Input::new(data)),
                None => return self.run_buffers(vm, None, [0, 0]),
            }
        }
        self.run_mapped(vm, input)
    }

    /// A run on a map built as `Vm::run_with` builds it, through the session.
    fn run_mapped(&mut self, vm: &Vm, input: Input<'_>) -> Result<Exit, Trap> {
        let session = &mut self.session;
        vm.run_mapped(input, &mut self.scratch, |map, args, stack| {
            session.run_in(map, args, stack)
        })
    }

    /// A run of `data` alone (at most `layout::MAX_REGION_LEN` bytes), `r1`/`r2` its start
    /// and length, on this stack: the session's path for `Vm::run`'s runs.
    #[inline(always)]
    fn run_input(&mut self, vm: &Vm, data: &mut [u8]) -> Result<Exit, Trap> {
        let stack = &mut self.scratch.stack;
        stack.begin_run();
        let result = self.session.run_input(data, stack);
        let session = &mut self.session;
        let reach = vm.scrub_reach(self.stack_size, || session.take_helper_stack_mark());
        stack.end_run(self.stack_size, reach);
        result.map_err(|trap| undecodable_trap(trap, &vm.undecodable))
    }

    /// A run of the session's fast path: the input alone, on this stack.
    #[inline(always)]
    fn run_buffers(
        &mut self,
        vm: &Vm,
        data: Option<&mut [u8]>,
        args: [u64; 2],
    ) -> Result<Exit, Trap> {
        let stack = &mut self.scratch.stack;
        stack.begin_run();
        let result = self.session.run(data, None, args, stack);
        let session = &mut self.session;
        let reach = vm.scrub_reach(self.stack_size, || session.take_helper_stack_mark());
        stack.end_run(self.stack_size, reach);
        result.map_err(|trap| undecodable_trap(trap, &vm.undecodable))
    }
}

/// How many VMs' preparations a thread keeps for `Vm::run` besides the last one's (a VM run
/// from inside a helper of its own run takes a second one). A thread that runs more VMs than
/// this in turn runs the others through a map on the thread's shared scratch, as before the cache — still without
/// allocating.
const WARM_SLOTS: usize = 8;

/// A VM's [`Prepared`] kept on a thread for its `Vm::run`s, with what identifies the VM.
pub(crate) struct Warm {
    /// The VM's `identity`: only the VM holds it strongly, so the allocation (and its
    /// address, the key) stays the VM's while this weak reference lives, and it is dead once
    /// the VM is dropped.
    identity: Weak<()>,
    /// The identity's address: what a run compares (`Weak::as_ptr` tests for a dangling
    /// `Weak` first, which this one never is).
    key: *const (),
    pub(crate) prepared: Prepared,
}

std::thread_local! {
    /// The preparation the thread's last `Vm::run` put back: a run of the same VM takes it
    /// from here — one load and one store — without borrowing or scanning the slots.
    static LAST: Cell<Option<Box<Warm>>> = const { Cell::new(None) };

    /// The thread's other warm preparations. A run takes its VM's out (of `LAST` or a slot)
    /// and puts it back into `LAST` when it returns, the one there moving to a slot: a nested
    /// run of the same VM (from a helper) finds none and makes a second, and a run that
    /// panics out drops its own (its stack may hold the run's data).
    static WARM: RefCell<[Option<Box<Warm>>; WARM_SLOTS]> =
        const { RefCell::new([const { None }; WARM_SLOTS]) };
}

impl Warm {
    /// What `Vm::run`, `run_no_data` and `run_with` do: `warm` on this thread's preparation
    /// of `vm` (put back afterwards), or `cold` when there is none to be had.
    #[inline(always)]
    pub(crate) fn run<T, R>(
        vm: &Vm,
        arg: T,
        warm: impl FnOnce(&mut Prepared, T) -> R,
        cold: impl FnOnce(T) -> R,
    ) -> R {
        match Warm::take(vm) {
            Some(mut kept) => {
                let result = warm(&mut kept.prepared, arg);
                kept.put_back();
                result
            }
            None => cold(arg),
        }
    }

    /// This thread's preparation of `vm`, taken out of `LAST` or its slot: the one kept, or
    /// a new one if a slot is free for it; `None` when every slot holds another live VM's
    /// (or during the thread's teardown).
    #[inline(always)]
    fn take(vm: &Vm) -> Option<Box<Warm>> {
        let key = Arc::as_ptr(&vm.identity);
        let last = LAST.try_with(Cell::take).ok().flatten();
        match last {
            Some(last) if last.key == key => Some(last),
            // (It was empty after the take: nothing is dropped by the set.)
            Some(last) => {
                let _ = LAST.try_with(|cell| cell.set(Some(last)));
                Warm::take_slot(vm, key)
            }
            None => Warm::take_slot(vm, key),
        }
    }

    /// `vm`'s preparation from the slots, or a new one.
    #[inline(never)]
    fn take_slot(vm: &Vm, key: *const ()) -> Option<Box<Warm>> {
        let kept = WARM
            .try_with(|slots| {
                let mut slots = slots.try_borrow_mut().ok()?;
                slots
                    .iter_mut()
                    .find(|slot| slot.as_ref().is_some_and(|w| w.key == key))
                    .and_then(Option::take)
            })
            .ok()
            .flatten();
        match kept {
            Some(warm) => Some(warm),
            None => Warm::fresh(vm),
        }
    }

    /// A new preparation of `vm` when a slot is free for it (the preparations of dropped VMs
    /// are evicted first).
    #[cold]
    #[inline(never)]
    fn fresh(vm: &Vm) -> Option<Box<Warm>> {
        let stack_size = usize::try_from(vm.limits().stack_size()).unwrap_or(usize::MAX);
        if stack_size > KEPT_STACK {
            return None;
        }
        drop(Warm::take_where(|w| w.identity.strong_count() == 0));
        let room = WARM
            .try_with(|slots| {
                slots
                    .try_borrow()
                    .is_ok_and(|slots| slots.iter().any(Option::is_none))
            })
            .unwrap_or(false);
        room.then(|| {
            Box::new(Warm {
                identity: Arc::downgrade(&vm.identity),
                key: Arc::as_ptr(&vm.identity),
                prepared: Prepared::new(vm),
            })
        })
    }

    /// Puts a preparation back into `LAST`, the one there moving to a free slot (or dropped
    /// when there is none: a nested run's came back first and took the last).
    #[inline(always)]
    fn put_back(self: Box<Warm>) {
        // (During the thread's teardown the closure, and `self` with it, is dropped.)
        if let Ok(Some(displaced)) = LAST.try_with(|last| last.replace(Some(self))) {
            displaced.shelve();
        }
    }

    /// Puts a preparation into a free slot, or drops it when there is none.
    #[inline(never)]
    fn shelve(self: Box<Warm>) {
        let left = WARM.try_with(|slots| {
            let Ok(mut slots) = slots.try_borrow_mut() else {
                return Some(self);
            };
            match slots.iter_mut().find(|slot| slot.is_none()) {
                Some(slot) => {
                    *slot = Some(self);
                    None
                }
                None => Some(self),
            }
        });
        // (Dropped outside the borrow.)
        drop(left);
    }

    /// Drops this thread's preparations of the VM known by `identity` (the VM is being
    /// dropped; other threads' see it dead and evict theirs when they need a slot).
    pub(crate) fn evict(identity: &Arc<()>) {
        let key = Arc::as_ptr(identity);
        drop(Warm::take_where(|w| w.key == key));
    }

    /// Takes this thread's preparations that `which` picks out of `LAST` and the slots, for
    /// the caller to drop outside the slots' borrow (a helper's drop may run a VM, which
    /// needs them); none from the slots while they are borrowed, none at all while the
    /// thread is being torn down.
    fn take_where(which: impl Fn(&Warm) -> bool) -> [Option<Box<Warm>>; WARM_SLOTS + 1] {
        let mut taken = [const { None }; WARM_SLOTS + 1];
        let _ = LAST.try_with(|last| {
            let kept = last.take();
            match kept {
                Some(warm) if which(&warm) => taken[WARM_SLOTS] = Some(warm),
                kept => last.set(kept),
            }
        });
        let _ = WARM.try_with(|slots| {
            if let Ok(mut slots) = slots.try_borrow_mut() {
                for (slot, out) in slots.iter_mut().zip(&mut taken) {
                    if slot.as_deref().is_some_and(&which) {
                        *out = slot.take();
                    }
                }
            }
        });
        taken
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::mpsc;

    use super::*;
    use ebpf_abi::VmMemory;

    /// Set when dropped: a VM's helper holding one is dropped with the VM's bound state,
    /// which its kept preparations hold too.
    struct DropFlag(Arc<AtomicBool>);

    impl Drop for DropFlag {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    fn vm_with_flag() -> (Vm, Arc<AtomicBool>) {
        let dropped = Arc::new(AtomicBool::new(false));
        let flag = DropFlag(Arc::clone(&dropped));
        let vm = Vm::builder()
            .helper(1, move |_: [u64; 5], _: &mut dyn VmMemory| {
                let _ = &flag;
                Ok(0)
            })
            .load_asm("mov %r0, 7\nexit")
            .unwrap();
        (vm, dropped)
    }

    #[test]
    fn dropping_a_vm_drops_its_preparation_on_this_thread() {
        let (vm, dropped) = vm_with_flag();
        assert_eq!(vm.run(&mut [0u8; 8]), Ok(7));
        drop(vm);
        assert!(
            dropped.load(Ordering::SeqCst),
            "the preparation kept the VM's state"
        );
    }

    #[test]
    fn another_thread_evicts_a_dropped_vms_preparation_when_it_prepares_another() {
        let (vm, dropped) = vm_with_flag();
        let vm = Arc::new(vm);
        let (ran, wait_ran) = mpsc::channel();
        let (go, wait_go) = mpsc::channel::<()>();
        let (prepared, wait_prepared) = mpsc::channel();
        let (end, wait_end) = mpsc::channel::<()>();
        let theirs = Arc::clone(&vm);
        let thread = std::thread::spawn(move || {
            assert_eq!(theirs.run(&mut [0u8; 8]), Ok(7));
            drop(theirs);
            ran.send(()).unwrap();
            wait_go.recv().unwrap();
            // A miss: the thread prepares another VM, and evicts the dead one first.
            let other = Vm::builder().load_asm("mov %r0, 1\nexit").unwrap();
            assert_eq!(other.run(&mut [0u8; 8]), Ok(1));
            prepared.send(()).unwrap();
            // (Alive until checked: a thread's exit drops its preparations anyway.)
            wait_end.recv().unwrap();
        });
        wait_ran.recv().unwrap();
        drop(vm);
        assert!(
            !dropped.load(Ordering::SeqCst),
            "the other thread's preparation keeps the state until it evicts it"
        );
        go.send(()).unwrap();
        wait_prepared.recv().unwrap();
        assert!(
            dropped.load(Ordering::SeqCst),
            "the dead preparation was not evicted"
        );
        end.send(()).unwrap();
        thread.join().unwrap();
    }
}
