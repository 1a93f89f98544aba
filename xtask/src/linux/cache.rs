//! The Linux build cache, outside the repo:
//! `${XDG_CACHE_HOME:-$HOME/.cache}/nmivisor/linux/`.
//!
//! | path | |
//! |---|---|
//! | `src/<source id>/` | the extracted `linux-source-6.12` tarball |
//! | `build/<source id>/` | the kernel's `O=` build directory, reused across configurations (incremental) |
//! | `kernel-<key>/` | `Image`, `System.map`, `vmlinux`, `config` of one key |
//! | `initramfs-<key>.cpio.gz` | the initramfs of one key |
//!
//! Debian packages (busybox, the stock kernel) are unpacked by
//! [`crate::deb`] into `debs/` next to it.
//!
//! A key is a hash of every input, each labelled ([`Key`]): change the kernel
//! source, the fragment, the cross compiler, the busybox package or the init
//! script, and the key changes; otherwise `cargo xtask linux` finds the
//! finished outputs and does nothing.

use std::path::PathBuf;

use sha2::{Digest, Sha256};

/// Bump when the way the outputs are made changes (make targets, layout).
pub const RECIPE_VERSION: &str = "1";

/// The root of the Linux cache: `linux/` under [`crate::deb::cache_base`]
/// (`NMIVISOR_CACHE_DIR`, else `${XDG_CACHE_HOME:-$HOME/.cache}/nmivisor`).
pub fn root() -> PathBuf {
    crate::deb::cache_base().join("linux")
}

/// A cache key under construction: labelled inputs, hashed with SHA-256.
/// Labels and lengths are hashed too, so that `("a", "bc")` and
/// `("ab", "c")` differ.
#[derive(Clone, Default)]
pub struct Key {
    hasher: Sha256,
}

impl Key {
    /// A key for outputs of kind `what` (`kernel`, `initramfs`).
    pub fn new(what: &str) -> Key {
        Key::default()
            .add("kind", what)
            .add("recipe", RECIPE_VERSION)
    }

    /// Adds an input.
    pub fn add(mut self, label: &str, value: impl AsRef<[u8]>) -> Key {
        let value = value.as_ref();
        for part in [label.as_bytes(), value] {
            self.hasher.update((part.len() as u64).to_le_bytes());
            self.hasher.update(part);
        }
        self
    }

    /// The first 16 hex digits of the hash.
    pub fn hex(&self) -> String {
        let digest = self.hasher.clone().finalize();
        digest[..8].iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// `text` made safe as one path component (Debian versions contain `:`
/// and `~`).
pub fn path_component(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-+".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_depend_on_every_input() {
        let base = || {
            Key::new("kernel")
                .add("source", "linux-source-6.12 6.12.117-1~deb12u1")
                .add("fragment", "CONFIG_A=y\n")
                .add("cc", "aarch64-linux-gnu-gcc (Debian 12.2.0-14) 12.2.0")
        };
        let k = base().hex();
        assert_eq!(k.len(), 16);
        assert!(k.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(base().hex(), k, "stable");
        let changed = [
            Key::new("kernel")
                .add("source", "linux-source-6.12 6.12.118-1~deb12u1")
                .add("fragment", "CONFIG_A=y\n")
                .add("cc", "aarch64-linux-gnu-gcc (Debian 12.2.0-14) 12.2.0"),
            base().add("extra", ""),
            Key::new("initramfs")
                .add("source", "linux-source-6.12 6.12.117-1~deb12u1")
                .add("fragment", "CONFIG_A=y\n")
                .add("cc", "aarch64-linux-gnu-gcc (Debian 12.2.0-14) 12.2.0"),
        ];
        for c in changed {
            assert_ne!(c.hex(), k);
        }
        // Boundaries between inputs matter.
        assert_ne!(
            Key::new("x").add("a", "bc").hex(),
            Key::new("x").add("ab", "c").hex()
        );
        assert_ne!(
            Key::new("x").add("a", "b").add("c", "").hex(),
            Key::new("x").add("a", "bc").hex()
        );
    }

    #[test]
    fn path_components() {
        assert_eq!(
            path_component("1:1.35.0-4+deb12u1+b1"),
            "1_1.35.0-4+deb12u1+b1"
        );
        assert_eq!(path_component("6.12.117-1~deb12u1"), "6.12.117-1_deb12u1");
        assert_eq!(path_component("a/b c"), "a_b_c");
    }
}
