//! The parts of the kernel's `union bpf_attr` (include/uapi/linux/bpf.h) that this crate
//! sends: one `#[repr(C)]` struct per command family, laid out field for field.
//!
//! The kernel accepts an attribute shorter than its own union (it treats the missing tail as
//! zero), so each struct stops after the last field used. Pointers travel as `u64`
//! (`__aligned_u64`); `Default` is all zeros, which the kernel reads as "not used".

/// `BPF_OBJ_NAME_LEN`: names of programs and maps, with their NUL.
pub(crate) const OBJ_NAME_LEN: usize = 16;

/// `BPF_MAP_CREATE`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct MapCreate {
    pub(crate) map_type: u32,
    pub(crate) key_size: u32,
    pub(crate) value_size: u32,
    pub(crate) max_entries: u32,
    pub(crate) map_flags: u32,
    pub(crate) inner_map_fd: u32,
    pub(crate) numa_node: u32,
    pub(crate) map_name: [u8; OBJ_NAME_LEN],
    pub(crate) map_ifindex: u32,
    pub(crate) btf_fd: u32,
    pub(crate) btf_key_type_id: u32,
    pub(crate) btf_value_type_id: u32,
    pub(crate) btf_vmlinux_value_type_id: u32,
    pub(crate) map_extra: u64,
}

/// `BPF_MAP_*_ELEM`, `BPF_MAP_GET_NEXT_KEY` (`value` is then `next_key`) and
/// `BPF_MAP_FREEZE` (only `map_fd`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct MapElem {
    pub(crate) map_fd: u32,
    pub(crate) _pad: u32,
    pub(crate) key: u64,
    pub(crate) value: u64,
    pub(crate) flags: u64,
}

/// `BPF_PROG_LOAD`, up to the fields this crate sets.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ProgLoad {
    pub(crate) prog_type: u32,
    pub(crate) insn_cnt: u32,
    pub(crate) insns: u64,
    pub(crate) license: u64,
    pub(crate) log_level: u32,
    pub(crate) log_size: u32,
    pub(crate) log_buf: u64,
    pub(crate) kern_version: u32,
    pub(crate) prog_flags: u32,
    pub(crate) prog_name: [u8; OBJ_NAME_LEN],
    pub(crate) prog_ifindex: u32,
    pub(crate) expected_attach_type: u32,
    pub(crate) prog_btf_fd: u32,
    pub(crate) func_info_rec_size: u32,
    pub(crate) func_info: u64,
    pub(crate) func_info_cnt: u32,
}

/// `BPF_BTF_LOAD`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct BtfLoad {
    pub(crate) btf: u64,
    pub(crate) btf_log_buf: u64,
    pub(crate) btf_size: u32,
    pub(crate) btf_log_size: u32,
    pub(crate) btf_log_level: u32,
}

/// `BPF_PROG_TEST_RUN`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct TestRun {
    pub(crate) prog_fd: u32,
    pub(crate) retval: u32,
    pub(crate) data_size_in: u32,
    pub(crate) data_size_out: u32,
    pub(crate) data_in: u64,
    pub(crate) data_out: u64,
    pub(crate) repeat: u32,
    pub(crate) duration: u32,
    pub(crate) ctx_size_in: u32,
    pub(crate) ctx_size_out: u32,
    pub(crate) ctx_in: u64,
    pub(crate) ctx_out: u64,
    pub(crate) flags: u32,
    pub(crate) cpu: u32,
}

/// A pointer as the kernel takes it: an address in a `u64`, 0 for none.
pub(crate) fn ptr<T>(p: *const T) -> u64 {
    p as usize as u64
}

/// A name as the kernel takes it: at most 15 bytes of `[A-Za-z0-9_.]`, NUL-padded. `None`
/// for anything else (the kernel would refuse it with a bare `EINVAL`).
pub(crate) fn obj_name(name: &str) -> Option<[u8; OBJ_NAME_LEN]> {
    let bytes = name.as_bytes();
    let ok = bytes.len() < OBJ_NAME_LEN
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'.');
    if !ok {
        return None;
    }
    let mut out = [0u8; OBJ_NAME_LEN];
    out[..bytes.len()].copy_from_slice(bytes);
    Some(out)
}

#[cfg(test)]
mod tests {
    use std::mem::{offset_of, size_of};

    use super::*;

    /// Offsets from include/uapi/linux/bpf.h, counted by hand: a wrong offset would send the
    /// kernel a different request, not an error.
    #[test]
    fn layouts_match_the_uapi() {
        assert_eq!(offset_of!(MapCreate, map_name), 28);
        assert_eq!(offset_of!(MapCreate, btf_vmlinux_value_type_id), 60);
        assert_eq!(offset_of!(MapCreate, map_extra), 64);
        assert_eq!(size_of::<MapCreate>(), 72);
        assert_eq!(offset_of!(MapElem, key), 8);
        assert_eq!(offset_of!(MapElem, flags), 24);
        assert_eq!(size_of::<MapElem>(), 32);
        assert_eq!(offset_of!(ProgLoad, insns), 8);
        assert_eq!(offset_of!(ProgLoad, log_buf), 32);
        assert_eq!(offset_of!(ProgLoad, prog_name), 48);
        assert_eq!(offset_of!(ProgLoad, expected_attach_type), 68);
        assert_eq!(offset_of!(ProgLoad, prog_btf_fd), 72);
        assert_eq!(offset_of!(ProgLoad, func_info), 80);
        assert_eq!(offset_of!(ProgLoad, func_info_cnt), 88);
        assert_eq!(size_of::<ProgLoad>(), 96);
        assert_eq!(offset_of!(BtfLoad, btf_size), 16);
        assert_eq!(offset_of!(BtfLoad, btf_log_level), 24);
        assert_eq!(size_of::<BtfLoad>(), 32);
        assert_eq!(offset_of!(TestRun, data_in), 16);
        assert_eq!(offset_of!(TestRun, repeat), 32);
        assert_eq!(offset_of!(TestRun, ctx_in), 48);
        assert_eq!(offset_of!(TestRun, flags), 64);
        assert_eq!(size_of::<TestRun>(), 72);
    }

    #[test]
    fn names_follow_the_kernels_rules() {
        assert_eq!(
            &obj_name("kernel_diff.1").unwrap()[..14],
            b"kernel_diff.1\0"
        );
        assert!(obj_name("").is_some());
        assert!(obj_name("fifteen_chars__").is_some());
        assert!(obj_name("sixteen_chars___").is_none());
        assert!(obj_name("no spaces").is_none());
        assert!(obj_name("no-dashes").is_none());
    }
}
