//! Maps in the kernel: [`create_map`] (`BPF_MAP_CREATE`), element access on [`Map`], and
//! relocating `lddw` instructions to a map ([`patch_map_fd`], [`patch_map_value`]).
//!
//! Keys and values are byte slices of exactly the map's sizes: the kernel reads and writes
//! `key_size` and `value_size` bytes through the pointers it is given, so every length is
//! checked here before a call. Per-CPU maps take and return one value per possible CPU, each
//! padded to 8 bytes ([`Map::value_len`]); queue, stack and bloom-filter maps have no key
//! (pass `&[]`).

use crate::attr::{self, ptr};
use crate::error::ERRNO_ENOENT;
use crate::sys::{self, Fd};
use crate::{Command, KernelError, PatchError, Program};

/// `BPF_F_NO_PREALLOC`: a hash map allocates elements on update instead of up front.
pub const BPF_F_NO_PREALLOC: u32 = 1 << 0;
/// `BPF_F_RDONLY_PROG`: programs may only read the map (what libbpf sets for `.rodata`).
pub const BPF_F_RDONLY_PROG: u32 = 1 << 7;
/// `BPF_F_MMAPABLE`: an array map the host can `mmap` (what libbpf sets for `.data`/`.bss`).
pub const BPF_F_MMAPABLE: u32 = 1 << 10;

/// `BPF_PSEUDO_MAP_FD`: `lddw`'s source field for "the map whose descriptor is `imm`".
const PSEUDO_MAP_FD: u8 = 1;
/// `BPF_PSEUDO_MAP_VALUE`: "the address of byte `imm2` of the map's (single) value".
const PSEUDO_MAP_VALUE: u8 = 2;
/// `lddw`'s opcode.
const LDDW: u8 = 0x18;

/// Whether maps of the kernel's type `map_type` keep one value per possible CPU:
/// `BPF_MAP_TYPE_PERCPU_HASH` (5), `_PERCPU_ARRAY` (6), `_LRU_PERCPU_HASH` (10) and
/// `_PERCPU_CGROUP_STORAGE` (21). The kernel then reads and writes a value per CPU through
/// the pointers it is given, so the buffers here must be that large: this list is what keeps
/// [`Map::lookup`] and [`Map::update`] memory-safe.
fn is_per_cpu(map_type: u32) -> bool {
    matches!(map_type, 5 | 6 | 10 | 21)
}

/// What [`create_map`] creates: the fields of a BTF or legacy map definition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapSpec<'a> {
    /// The kind: the kernel's number in `enum bpf_map_type` (`ebpf_maps::MapType::kernel_id`
    /// gives it for the types the VM implements).
    pub map_type: u32,
    /// Key size in bytes (0 for queue, stack, bloom filter and ring buffer).
    pub key_size: u32,
    /// Value size in bytes (of one CPU's copy, for per-CPU maps).
    pub value_size: u32,
    /// Capacity (elements; bytes for a ring buffer).
    pub max_entries: u32,
    /// `map_flags` (`BPF_F_*`).
    pub flags: u32,
    /// The name, as `bpftool map` shows it: at most 15 bytes of `[A-Za-z0-9_.]`.
    pub name: &'a str,
}

/// A map in the kernel; freed when dropped, unless a loaded program still uses it.
#[derive(Debug)]
pub struct Map {
    fd: Fd,
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    value_len: usize,
}

#[cfg(target_os = "linux")]
impl std::os::fd::AsFd for Map {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(self.fd.owned())
    }
}

/// How [`Map::update`] treats an existing or missing key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UpdateFlags {
    /// `BPF_ANY`: create or replace.
    #[default]
    Any,
    /// `BPF_NOEXIST`: create only (`EEXIST` if present).
    NoExist,
    /// `BPF_EXIST`: replace only (`ENOENT` if missing).
    Exist,
}

impl UpdateFlags {
    fn number(self) -> u64 {
        match self {
            UpdateFlags::Any => 0,
            UpdateFlags::NoExist => 1,
            UpdateFlags::Exist => 2,
        }
    }
}

/// The number of possible CPUs (`/sys/devices/system/cpu/possible`): how many copies of a
/// value a per-CPU map holds.
pub fn possible_cpus() -> Result<usize, KernelError> {
    const PATH: &str = "/sys/devices/system/cpu/possible";
    let command = Command::MapCreate;
    if cfg!(not(target_os = "linux")) {
        return Err(KernelError::Refused {
            command,
            reason: crate::Refusal::NotLinux,
        });
    }
    let text = std::fs::read_to_string(PATH).map_err(|e| KernelError::Failed {
        command,
        errno: e.raw_os_error().unwrap_or(0),
    })?;
    count_cpu_list(text.trim())
        .ok_or_else(|| KernelError::invalid(command, format!("cannot parse {PATH}: {text:?}")))
}

/// Counts the CPUs of a list like `0-3,8,10-11`.
fn count_cpu_list(list: &str) -> Option<usize> {
    let mut n = 0usize;
    for part in list.split(',') {
        let (lo, hi) = match part.split_once('-') {
            Some((lo, hi)) => (lo.parse::<usize>().ok()?, hi.parse::<usize>().ok()?),
            None => {
                let cpu = part.parse::<usize>().ok()?;
                (cpu, cpu)
            }
        };
        n = n.checked_add(hi.checked_sub(lo)?.checked_add(1)?)?;
    }
    Some(n)
}

/// Creates a map.
pub fn create_map(spec: &MapSpec<'_>) -> Result<Map, KernelError> {
    create(spec, 0)
}

/// Creates a map of maps (`BPF_MAP_TYPE_ARRAY_OF_MAPS` 12, `_HASH_OF_MAPS` 13: `spec`'s value
/// size is 4, a descriptor) whose slots take maps like `inner` (`inner_map_fd`: the kernel
/// copies its type, sizes and flags as the template every slot's map must match, and its
/// verifier types a lookup's result as a map like it). Fill slots with [`Map::set_map`].
pub fn create_map_of_maps(spec: &MapSpec<'_>, inner: &Map) -> Result<Map, KernelError> {
    create(spec, inner.fd.raw())
}

fn create(spec: &MapSpec<'_>, inner_map_fd: u32) -> Result<Map, KernelError> {
    let command = Command::MapCreate;
    let name = attr::obj_name(spec.name).ok_or_else(|| {
        KernelError::invalid(
            command,
            format!(
                "map name {:?} is not at most 15 bytes of [A-Za-z0-9_.]",
                spec.name
            ),
        )
    })?;
    let value_len = if is_per_cpu(spec.map_type) {
        (spec.value_size as usize)
            .next_multiple_of(8)
            .saturating_mul(possible_cpus()?)
    } else {
        spec.value_size as usize
    };
    let mut a = attr::MapCreate {
        map_type: spec.map_type,
        key_size: spec.key_size,
        value_size: spec.value_size,
        max_entries: spec.max_entries,
        map_flags: spec.flags,
        map_name: name,
        inner_map_fd,
        ..attr::MapCreate::default()
    };
    // SAFETY: `MapCreate` holds no pointers.
    let ret = unsafe { sys::bpf(command, &mut a) }?;
    Ok(Map {
        fd: Fd::take(command, ret)?,
        map_type: spec.map_type,
        key_size: spec.key_size,
        value_size: spec.value_size,
        max_entries: spec.max_entries,
        value_len,
    })
}

impl Map {
    /// The kind (the kernel's number).
    pub fn map_type(&self) -> u32 {
        self.map_type
    }

    /// Key size in bytes.
    pub fn key_size(&self) -> u32 {
        self.key_size
    }

    /// Value size in bytes, as created (one CPU's copy).
    pub fn value_size(&self) -> u32 {
        self.value_size
    }

    /// Capacity.
    pub fn max_entries(&self) -> u32 {
        self.max_entries
    }

    /// The length of the value buffers [`Map::lookup`] returns and [`Map::update`] takes:
    /// `value_size`, or for per-CPU maps `value_size` rounded up to 8, once per possible CPU.
    pub fn value_len(&self) -> usize {
        self.value_len
    }

    fn check_key(&self, command: Command, key: &[u8]) -> Result<(), KernelError> {
        if key.len() != self.key_size as usize {
            return Err(KernelError::invalid(
                command,
                format!(
                    "key of {} bytes for a map with {}-byte keys",
                    key.len(),
                    self.key_size
                ),
            ));
        }
        Ok(())
    }

    /// The key's pointer: null for maps without keys (queue, stack, bloom filter).
    fn key_ptr(key: &[u8]) -> u64 {
        if key.is_empty() { 0 } else { ptr(key.as_ptr()) }
    }

    /// One element command that reads `key` and, if `value` is given, reads or writes it.
    /// `Ok(false)`: the kernel said `ENOENT`.
    fn elem(
        &self,
        command: Command,
        key: &[u8],
        value: Option<*mut u8>,
        flags: u64,
    ) -> Result<bool, KernelError> {
        let mut a = attr::MapElem {
            map_fd: self.fd.raw(),
            key: Map::key_ptr(key),
            value: value.map_or(0, |v| ptr(v.cast_const())),
            flags,
            ..attr::MapElem::default()
        };
        // SAFETY: every caller has checked `key.len() == key_size` (the kernel reads that
        // many bytes; none when the map has no keys and the pointer is null) and passes a
        // value buffer of `value_len` bytes, alive for the call, or none for commands that
        // take none.
        match unsafe { sys::bpf(command, &mut a) } {
            Ok(_) => Ok(true),
            Err(KernelError::Failed { errno, .. }) if errno == ERRNO_ENOENT => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The value under `key`, or `None` (`ENOENT`). For a queue or stack, `&[]` peeks.
    pub fn lookup(&self, key: &[u8]) -> Result<Option<Vec<u8>>, KernelError> {
        let command = Command::MapLookupElem;
        self.check_key(command, key)?;
        let mut value = vec![0u8; self.value_len];
        let found = self.elem(command, key, Some(value.as_mut_ptr()), 0)?;
        Ok(found.then_some(value))
    }

    /// Sets the value under `key`. For a queue or stack, `&[]` pushes.
    pub fn update(&self, key: &[u8], value: &[u8], flags: UpdateFlags) -> Result<(), KernelError> {
        let command = Command::MapUpdateElem;
        self.check_key(command, key)?;
        if value.len() != self.value_len {
            return Err(KernelError::invalid(
                command,
                format!(
                    "value of {} bytes for a map whose values take {}",
                    value.len(),
                    self.value_len
                ),
            ));
        }
        // The kernel only reads the value of an update.
        let found = self.elem(
            command,
            key,
            Some(value.as_ptr().cast_mut()),
            flags.number(),
        )?;
        if found {
            Ok(())
        } else {
            Err(KernelError::Failed {
                command,
                errno: ERRNO_ENOENT,
            })
        }
    }

    /// Deletes the element under `key`; `false` if there was none.
    pub fn delete(&self, key: &[u8]) -> Result<bool, KernelError> {
        let command = Command::MapDeleteElem;
        self.check_key(command, key)?;
        self.elem(command, key, None, 0)
    }

    /// Looks up and deletes in one step: a queue's or stack's pop with `&[]`, or a hash map's
    /// take. `None` if there was nothing.
    pub fn lookup_and_delete(&self, key: &[u8]) -> Result<Option<Vec<u8>>, KernelError> {
        let command = Command::MapLookupAndDeleteElem;
        self.check_key(command, key)?;
        let mut value = vec![0u8; self.value_len];
        let found = self.elem(command, key, Some(value.as_mut_ptr()), 0)?;
        Ok(found.then_some(value))
    }

    /// The key after `key` in the map's order (`None`: the first key), or `None` after the
    /// last. A key that is no longer in a hash map restarts at the first.
    pub fn next_key(&self, key: Option<&[u8]>) -> Result<Option<Vec<u8>>, KernelError> {
        let command = Command::MapGetNextKey;
        if let Some(key) = key {
            self.check_key(command, key)?;
        }
        let mut next = vec![0u8; self.key_size as usize];
        let mut a = attr::MapElem {
            map_fd: self.fd.raw(),
            key: key.map_or(0, Map::key_ptr),
            value: ptr(next.as_mut_ptr()),
            ..attr::MapElem::default()
        };
        // SAFETY: `key` is null or `key_size` readable bytes (checked above); `next` is
        // `key_size` writable bytes; both outlive the call.
        match unsafe { sys::bpf(command, &mut a) } {
            Ok(_) => Ok(Some(next)),
            Err(KernelError::Failed { errno, .. }) if errno == ERRNO_ENOENT => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every key, in the map's order (see [`Map::next_key`] for changes during iteration).
    pub fn keys(&self) -> Keys<'_> {
        Keys {
            map: self,
            last: None,
            done: false,
        }
    }

    /// Every element, in the map's order: keys from [`Map::keys`], each with its value (an
    /// element deleted between the two is left out). For a per-CPU map each value holds every
    /// CPU's copy ([`per_cpu_values`] splits them); for a prog array each value is the
    /// program's id.
    pub fn entries(&self) -> Result<Vec<Entry>, KernelError> {
        let mut out = Vec::new();
        for key in self.keys() {
            let key = key?;
            if let Some(value) = self.lookup(&key)? {
                out.push((key, value));
            }
        }
        Ok(out)
    }

    /// Puts `program` in slot `index` of this prog array (`BPF_MAP_UPDATE_ELEM` with the
    /// program's descriptor as the value), for `bpf_tail_call`.
    pub fn set_program(&self, index: u32, program: &Program) -> Result<(), KernelError> {
        self.update(
            &index.to_le_bytes(),
            &program.fd().raw().to_le_bytes(),
            UpdateFlags::Any,
        )
    }

    /// Puts `map` in this map of maps under `key` (`BPF_MAP_UPDATE_ELEM` with the map's
    /// descriptor as the value; the kernel refuses a map unlike the template, `EINVAL`). A
    /// lookup of the slot from the host gives the map's id, not its descriptor.
    pub fn set_map(&self, key: &[u8], map: &Map) -> Result<(), KernelError> {
        self.update(key, &map.fd.raw().to_le_bytes(), UpdateFlags::Any)
    }

    /// The descriptor, for the crate's other modules.
    pub(crate) fn fd(&self) -> &Fd {
        &self.fd
    }

    /// Makes the map read-only for the host from now on (`BPF_MAP_FREEZE`; what libbpf does
    /// to `.rodata` after filling it).
    pub fn freeze(&self) -> Result<(), KernelError> {
        let mut a = attr::MapElem {
            map_fd: self.fd.raw(),
            ..attr::MapElem::default()
        };
        // SAFETY: only `map_fd` is read.
        unsafe { sys::bpf(Command::MapFreeze, &mut a) }.map(drop)
    }
}

/// One element of a map, as [`Map::entries`] lists it: key and value bytes.
pub type Entry = (Vec<u8>, Vec<u8>);

/// The keys of a map, from [`Map::keys`].
#[derive(Debug)]
pub struct Keys<'a> {
    map: &'a Map,
    last: Option<Vec<u8>>,
    done: bool,
}

impl Iterator for Keys<'_> {
    type Item = Result<Vec<u8>, KernelError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.map.next_key(self.last.as_deref()) {
            Ok(Some(key)) => {
                self.last = Some(key.clone());
                Some(Ok(key))
            }
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// One per-CPU value as [`Map::lookup`] returns it, split into each CPU's copy: `value_size`
/// bytes each, the copies `round_up(value_size, 8)` apart (the kernel's syscall layout).
/// `None` if `value` is not a whole number of copies.
pub fn per_cpu_values(value: &[u8], value_size: u32) -> Option<Vec<&[u8]>> {
    let size = value_size as usize;
    let stride = size.next_multiple_of(8);
    if stride == 0 || !value.len().is_multiple_of(stride) {
        return None;
    }
    Some(value.chunks(stride).map(|copy| &copy[..size]).collect())
}

/// Checks that `pc` starts an `lddw` in `insns` and returns its byte offset.
fn lddw_at(insns: &[u8], pc: usize) -> Result<usize, PatchError> {
    if !insns.len().is_multiple_of(8) {
        return Err(PatchError::NotSlots { len: insns.len() });
    }
    let at = pc.checked_mul(8).ok_or(PatchError::NotLddw { pc })?;
    let second = at.checked_add(16).ok_or(PatchError::NotLddw { pc })?;
    if second > insns.len() || insns[at] != LDDW {
        return Err(PatchError::NotLddw { pc });
    }
    Ok(at)
}

fn set_src_and_imms(insns: &mut [u8], at: usize, src: u8, imm: u32, imm2: u32) {
    insns[at + 1] = (insns[at + 1] & 0x0f) | (src << 4);
    insns[at + 4..at + 8].copy_from_slice(&imm.to_le_bytes());
    insns[at + 12..at + 16].copy_from_slice(&imm2.to_le_bytes());
}

/// Makes the `lddw` at slot `pc` load `map` (`BPF_PSEUDO_MAP_FD`: source field 1, `imm` the
/// descriptor, the second slot's `imm` 0), as a map helper's first argument wants it. The
/// destination register is kept.
pub fn patch_map_fd(insns: &mut [u8], pc: usize, map: &Map) -> Result<(), PatchError> {
    let at = lddw_at(insns, pc)?;
    set_src_and_imms(insns, at, PSEUDO_MAP_FD, map.fd.raw(), 0);
    Ok(())
}

/// Makes the `lddw` at slot `pc` load the address of byte `offset` of `map`'s value
/// (`BPF_PSEUDO_MAP_VALUE`; an array map with one element, as libbpf makes for `.data`,
/// `.rodata` and `.bss`).
pub fn patch_map_value(
    insns: &mut [u8],
    pc: usize,
    map: &Map,
    offset: u32,
) -> Result<(), PatchError> {
    let at = lddw_at(insns, pc)?;
    set_src_and_imms(insns, at, PSEUDO_MAP_VALUE, map.fd.raw(), offset);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The per-CPU list agrees with the VM's maps on every type they implement.
    #[test]
    fn per_cpu_types_agree_with_ebpf_maps() {
        use ebpf_maps::MapType;
        for t in [
            MapType::Hash,
            MapType::Array,
            MapType::ProgArray,
            MapType::PerfEventArray,
            MapType::PerCpuHash,
            MapType::PerCpuArray,
            MapType::LruHash,
            MapType::LruPerCpuHash,
            MapType::Queue,
            MapType::Stack,
            MapType::RingBuf,
        ] {
            assert_eq!(is_per_cpu(t.kernel_id()), t.is_per_cpu(), "{t:?}");
        }
        assert!(is_per_cpu(21), "BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE");
    }

    #[test]
    fn per_cpu_values_split_at_eight_byte_strides() {
        // Two CPUs, 12-byte values: each copy padded to 16 bytes.
        let mut value = vec![0u8; 32];
        value[..12].copy_from_slice(&[1; 12]);
        value[12..16].copy_from_slice(&[0xee; 4]); // padding, not part of the copy
        value[16..28].copy_from_slice(&[2; 12]);
        let copies = per_cpu_values(&value, 12).unwrap();
        assert_eq!(copies, [&[1u8; 12][..], &[2u8; 12][..]]);
        // 8-byte values have no padding.
        let copies = per_cpu_values(&[1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0], 8).unwrap();
        assert_eq!(copies.len(), 2);
        assert_eq!(copies[1][0], 2);
        // Not a whole number of copies, or no value size at all.
        assert_eq!(per_cpu_values(&value[..20], 12), None);
        assert_eq!(per_cpu_values(&[], 0), None);
        assert_eq!(per_cpu_values(&[], 4), Some(vec![]));
    }

    #[test]
    fn cpu_lists_count() {
        assert_eq!(count_cpu_list("0"), Some(1));
        assert_eq!(count_cpu_list("0-1"), Some(2));
        assert_eq!(count_cpu_list("0-3,8,10-11"), Some(7));
        assert_eq!(count_cpu_list("3-1"), None);
        assert_eq!(count_cpu_list(""), None);
        assert_eq!(count_cpu_list("x"), None);
    }

    #[test]
    fn lddw_is_required() {
        let mut insns = [0u8; 24];
        insns[8] = LDDW;
        assert_eq!(lddw_at(&insns, 1), Ok(8));
        assert_eq!(lddw_at(&insns, 0), Err(PatchError::NotLddw { pc: 0 }));
        // The second slot must exist.
        assert_eq!(lddw_at(&insns[..16], 1), Err(PatchError::NotLddw { pc: 1 }));
        assert_eq!(
            lddw_at(&insns, usize::MAX),
            Err(PatchError::NotLddw { pc: usize::MAX })
        );
        assert_eq!(
            lddw_at(&insns[..20], 1),
            Err(PatchError::NotSlots { len: 20 })
        );
    }

    #[test]
    fn patching_keeps_the_destination() {
        // lddw r3, 0x1122334455667788
        let mut insns = [
            0x18, 0x03, 0, 0, 0x88, 0x77, 0x66, 0x55, 0, 0, 0, 0, 0x44, 0x33, 0x22, 0x11,
        ];
        set_src_and_imms(&mut insns, 0, PSEUDO_MAP_VALUE, 7, 16);
        assert_eq!(
            insns,
            [0x18, 0x23, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 16, 0, 0, 0]
        );
    }
}
