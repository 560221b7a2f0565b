//! `include/ebpf.h` is exactly what cbindgen generates from the crate today: change the Rust
//! side without regenerating it and this fails. `EBPF_BLESS=1` rewrites it.

use std::path::Path;

#[test]
fn committed_header_matches_the_code() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(root.join("cbindgen.toml")).expect("cbindgen.toml");
    let bindings = cbindgen::Builder::new()
        .with_config(config)
        .with_src(root.join("src/lib.rs"))
        .generate()
        .expect("cbindgen parses the crate");
    let mut generated = Vec::new();
    bindings.write(&mut generated);
    let generated = String::from_utf8(generated).expect("the header is UTF-8");
    let path = root.join("include/ebpf.h");
    if std::env::var_os("EBPF_BLESS").is_some() {
        std::fs::write(&path, &generated).expect("writing include/ebpf.h");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "include/ebpf.h is out of date: run `EBPF_BLESS=1 cargo test -p ebpf-capi --test capi` \
         and commit it"
    );
}
