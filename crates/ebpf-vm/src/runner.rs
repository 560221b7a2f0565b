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

use crate::vm::{Buffers, Input, KEPT_STACK, Scratch, Vm, undecodable_trap};

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
        self.prepared.run::<BRACKETED>(self.vm, data)
    }

    /// [`Vm::run_no_data`]: runs the program without any input and returns `r0`.
    pub fn run_no_data(&mut self) -> Result<u64, Trap> {
        self.prepared.run_no_data::<BRACKETED>(self.vm)
    }

    /// [`Vm::run_with`]: runs the program on `input` (a metadata buffer, extra regions);
    /// returns `r0` and the instruction count.
    pub fn run_with(&mut self, input: Input<'_>) -> Result<Exit, Trap> {
        self.prepared.run_with::<BRACKETED>(self.vm, input)
    }
}

/// The `BRACKET` of a [`Runner`]'s runs: its stack is bracketed by `Stack::begin_run` and
/// `end_run`, because the runner outlives a panic out of a run that its embedder catches,
/// and the stack may then hold that run's data.
const BRACKETED: bool = true;

/// The `BRACKET` of a [`Warm`]'s runs: no bracket, because a `Warm` never outlives a panic
/// out of its run (see [`Warm::run`]), so its stack is never lent again after one.
pub(crate) const UNBRACKETED: bool = false;

/// A session of a VM's program and the buffers of its runs — a stack, a metadata buffer, a
/// spill — used by runs of that VM only: what a [`Runner`] holds, and what `Vm::run` keeps
/// per thread and VM ([`Warm`]). It owns everything (the session keeps the program and the
/// VM's [`crate::vm::Bound`] alive); each method takes the VM it was made for.
pub(crate) struct Prepared {
    session: Box<dyn Session>,
    scratch: Scratch,
    /// `vm.limits().stack_size()`, in bytes.
    stack_size: usize,
    /// `vm.metadata.is_none()`: a run's input alone is what the session's fast path serves.
    /// (This and the reaches are the VM's, fixed for its life, kept here so that a run reads
    /// them next to the session rather than from the VM.)
    no_metadata: bool,
    /// What a run's own stores can reach — `vm.own_stack_reach` when the program calls
    /// helpers, else `vm.stack_reach` — with [`TAKES_HELPER_MARK`] set in the first case
    /// (the helpers' mark widens the scrub). One word: zero means no scrub and no mark to
    /// take, one test on a run of a program that writes no stack and calls no helper.
    scrub: usize,
}

/// The bit of [`Prepared`]'s `scrub` that says the helpers' mark widens the scrub. (No
/// region is as long as the reach below it, so clamping a reach there scrubs no less.)
const TAKES_HELPER_MARK: usize = 1 << (usize::BITS - 1);

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
            no_metadata: vm.metadata.is_none(),
            scrub: match vm.own_stack_reach {
                None => vm.stack_reach.min(!TAKES_HELPER_MARK),
                Some(own) => own.min(!TAKES_HELPER_MARK) | TAKES_HELPER_MARK,
            },
        }
    }

    /// `Vm::scrub_reach`, from the values kept here.
    #[inline(always)]
    fn scrub_reach(&mut self) -> usize {
        if self.scrub & TAKES_HELPER_MARK == 0 {
            return self.scrub;
        }
        crate::scrub::with_helper_mark(
            self.scrub & !TAKES_HELPER_MARK,
            self.stack_size,
            self.session.take_helper_stack_mark(),
        )
    }

    /// [`Runner::run`], for `vm`, the VM this was made for; `BRACKET`: whether the stack is
    /// bracketed ([`BRACKETED`] for a runner, [`UNBRACKETED`] for a [`Warm`]). (Always
    /// inlined: a call of its own cost a runner's run some 20 instructions.)
    #[inline(always)]
    pub(crate) fn run<const BRACKET: bool>(
        &mut self,
        vm: &Vm,
        data: &mut [u8],
    ) -> Result<u64, Trap> {
        if !self.no_metadata || data.len() as u64 > layout::MAX_REGION_LEN {
            return self
                .run_with::<BRACKET>(vm, Input::new(data))
                .map(|exit| exit.r0);
        }
        self.run_input::<BRACKET>(vm, data).map(|exit| exit.r0)
    }

    /// [`Runner::run_no_data`], for `vm`.
    pub(crate) fn run_no_data<const BRACKET: bool>(&mut self, vm: &Vm) -> Result<u64, Trap> {
        if !self.no_metadata {
            return self
                .run_with::<BRACKET>(vm, Input::none())
                .map(|exit| exit.r0);
        }
        self.run_buffers::<BRACKET>(vm, None, None, [0, 0])
            .map(|exit| exit.r0)
    }

    /// [`Runner::run_with`], for `vm`.
    pub(crate) fn run_with<const BRACKET: bool>(
        &mut self,
        vm: &Vm,
        input: Input<'_>,
    ) -> Result<Exit, Trap> {
        match input.into_buffers() {
            Ok(buffers) => self.run_buffers_with::<BRACKET>(vm, buffers),
            Err(input) => self.run_mapped(vm, input),
        }
    }

    /// [`Runner::run_with`] of an input without extra regions, for `vm`: on a VM without a
    /// metadata layout, the session's runs — the input alone (what `Vm::run` makes), no input
    /// at all, or a caller's metadata buffer (and an input, or none), `r1`/`r2` its start and
    /// length — which the session maps as the map of `Vm::run_mapped` would; the rest (a
    /// layout, a buffer too long for a region) on that map.
    #[inline(always)]
    pub(crate) fn run_buffers_with<const BRACKET: bool>(
        &mut self,
        vm: &Vm,
        buffers: Buffers<'_>,
    ) -> Result<Exit, Trap> {
        if !self.no_metadata {
            return self.run_mapped(vm, Input::of_buffers(buffers));
        }
        let fits = |bytes: &Option<&mut [u8]>| {
            bytes
                .as_ref()
                .is_none_or(|b| b.len() as u64 <= layout::MAX_REGION_LEN)
        };
        match buffers {
            (Some(data), None) if data.len() as u64 <= layout::MAX_REGION_LEN => {
                self.run_input::<BRACKET>(vm, data)
            }
            (None, None) => self.run_buffers::<BRACKET>(vm, None, None, [0, 0]),
            (data, Some(metadata))
                if fits(&data) && metadata.len() as u64 <= layout::MAX_REGION_LEN =>
            {
                let args = [layout::vm_addr(layout::METADATA, 0), metadata.len() as u64];
                self.run_buffers::<BRACKET>(vm, data, Some(metadata), args)
            }
            buffers => self.run_mapped(vm, Input::of_buffers(buffers)),
        }
    }

    /// A run on a map built as `Vm::run_with` builds it, through the session (always
    /// bracketed: a rare path, where the bracket costs nothing worth saving).
    fn run_mapped(&mut self, vm: &Vm, input: Input<'_>) -> Result<Exit, Trap> {
        let session = &mut self.session;
        vm.run_mapped(input, &mut self.scratch, |map, args, stack| {
            session.run_in(map, args, stack)
        })
    }

    /// A run of `data` alone (at most `layout::MAX_REGION_LEN` bytes), `r1`/`r2` its start
    /// and length, on this stack: the session's path for `Vm::run`'s runs.
    #[inline(always)]
    fn run_input<const BRACKET: bool>(&mut self, vm: &Vm, data: &mut [u8]) -> Result<Exit, Trap> {
        if BRACKET {
            self.scratch.stack.begin_run();
        }
        let result = self.session.run_input(data, &mut self.scratch.stack);
        self.end_run::<BRACKET>();
        result.map_err(|trap| undecodable_trap(trap, &vm.undecodable))
    }

    /// After a run on the stack: scrubs what the run can have written (and ends the bracket).
    #[inline(always)]
    fn end_run<const BRACKET: bool>(&mut self) {
        if BRACKET {
            let reach = self.scrub_reach();
            self.scratch.stack.end_run(self.stack_size, reach);
        } else if self.scrub != 0 {
            // (Zero: the program writes no stack byte and calls no helper.)
            let reach = self.scrub_reach();
            self.scratch.stack.scrub(self.stack_size, reach);
        }
    }

    /// A run of the session's own buffers — the input and a caller's metadata buffer, each
    /// at most `layout::MAX_REGION_LEN` bytes, or none — on this stack.
    #[inline(always)]
    fn run_buffers<const BRACKET: bool>(
        &mut self,
        vm: &Vm,
        data: Option<&mut [u8]>,
        metadata: Option<&mut [u8]>,
        args: [u64; 2],
    ) -> Result<Exit, Trap> {
        if BRACKET {
            self.scratch.stack.begin_run();
        }
        let result = self
            .session
            .run(data, metadata, args, &mut self.scratch.stack);
        self.end_run::<BRACKET>();
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
    /// of `vm`, or `cold` when there is none to be had (every slot holds another live VM's,
    /// or the thread is being torn down).
    ///
    /// The preparation is taken out of `LAST` or its slot, and put back into `LAST` when
    /// `warm` returns (the one there moving to a slot), all in one access to `LAST`: its
    /// `Cell` is re-entrant, so a nested run (from a helper) accesses it again inside `warm`,
    /// finds none of this VM's there, and makes a second.
    ///
    /// A run that panics out drops its preparation: it is a local of this function (`kept`)
    /// for the whole run, so unwinding drops it, stack included, before anything can lend
    /// that stack again. That is why a `Warm`'s runs need no `Stack::begin_run`/`end_run`
    /// bracket ([`UNBRACKETED`]): the mark it sets could never be found set.
    #[inline(always)]
    pub(crate) fn run<T: Default, R>(
        vm: &Vm,
        mut arg: T,
        warm: impl FnOnce(&mut Prepared, T) -> R,
        cold: impl FnOnce(T) -> R,
    ) -> R {
        let key = Arc::as_ptr(&vm.identity);
        let pending = &mut arg;
        let done = LAST.try_with(|last| {
            let mut kept = match last.take() {
                Some(kept) if kept.key == key => kept,
                other => {
                    // (It was empty after the take: nothing is dropped by the set.)
                    last.set(other);
                    Warm::take_slot(vm, key)?
                }
            };
            let result = warm(&mut kept.prepared, core::mem::take(pending));
            if let Some(displaced) = last.replace(Some(kept)) {
                displaced.shelve();
            }
            Some(result)
        });
        match done {
            Ok(Some(result)) => result,
            // (`arg` is untouched: `warm` did not run.)
            _ => cold(arg),
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

    /// Whether this thread keeps a preparation of `vm` (in `LAST` or a slot).
    fn kept_on_this_thread(vm: &Vm) -> bool {
        let key = Arc::as_ptr(&vm.identity);
        let last = LAST.with(|last| {
            let kept = last.take();
            let found = kept.as_ref().is_some_and(|w| w.key == key);
            last.set(kept);
            found
        });
        let slot = WARM.with(|slots| {
            slots
                .borrow()
                .iter()
                .any(|slot| slot.as_ref().is_some_and(|w| w.key == key))
        });
        last || slot
    }

    /// What makes a `Warm`'s unbracketed stack sound: a run that panics out (the panic caught
    /// around `Vm::run`) leaves no preparation of its VM on the thread, so the stack it wrote
    /// is never lent again; the next run prepares afresh. (tests/stack_privacy.rs checks
    /// that the next run reads zeroes, on every engine.)
    #[test]
    fn a_run_that_panics_out_leaves_no_preparation_behind() {
        for &engine in crate::Engine::ALL {
            let vm = Vm::builder()
                .engine(engine)
                .helper(1, |args: [u64; 5], _: &mut dyn VmMemory| {
                    if args[0] == 1 {
                        panic!("helper gives up");
                    }
                    Ok(args[0])
                })
                .load_asm("stdw [%r10-8], 7\nldxb %r1, [%r1]\ncall 1\nexit")
                .unwrap();
            assert_eq!(vm.run(&mut [2u8; 8]), Ok(2), "{engine}");
            assert!(kept_on_this_thread(&vm), "{engine}: not kept after a run");
            let panicked =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| vm.run(&mut [1u8; 8])));
            assert!(panicked.is_err(), "{engine}: the helper's panic was lost");
            assert!(
                !kept_on_this_thread(&vm),
                "{engine}: the panicked run's preparation was kept"
            );
            assert_eq!(vm.run(&mut [3u8; 8]), Ok(3), "{engine}");
            assert!(kept_on_this_thread(&vm), "{engine}: not prepared again");
        }
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
