//! Builds the kernel programs (`observer-ebpf`, target bpfel-unknown-none, nightly with
//! build-std) and leaves the object in OUT_DIR for `include_bytes_aligned!`.

use std::{env, path::Path};

fn main() -> anyhow::Result<()> {
    // bpf-linker is built against Debian's LLVM 22 and needs its tools on PATH.
    let llvm = Path::new("/usr/lib/llvm-22/bin");
    if llvm.is_dir() {
        let path = env::var_os("PATH").unwrap_or_default();
        let mut dirs = vec![llvm.to_path_buf()];
        dirs.extend(env::split_paths(&path));
        // SAFETY: build scripts are single-threaded at this point.
        unsafe { env::set_var("PATH", env::join_paths(dirs)?) };
    }
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../observer-ebpf");
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "observer-ebpf",
            root_dir: root,
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
}
