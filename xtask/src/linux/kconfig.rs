//! Kernel configuration files: reading the repo's fragment and checking
//! that the final `.config` holds every option it asks for.
//!
//! `make allnoconfig` drops an option whose dependencies are unmet without a
//! word (the `CONFIG_LKDTM` trap: it needs `CONFIG_RUNTIME_TESTING_MENU=y`),
//! so after `olddefconfig` every line of the fragment is checked again.

use std::collections::BTreeMap;
use std::fmt;

use anyhow::{bail, Result};

/// One option of a fragment: `CONFIG_NAME=value` or `# CONFIG_NAME is not set`
/// (value `n`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Setting {
    /// The symbol with its `CONFIG_` prefix.
    pub name: String,
    /// `y`, `m`, `n`, a number or a quoted string, as written.
    pub value: String,
}

/// Parses one line of a config file: `Some((name, value))` for a setting,
/// `None` for blank lines and comments.
fn parse_line(line: &str) -> Option<(&str, &str)> {
    let line = line.trim();
    if let Some(rest) = line.strip_prefix("# ") {
        let name = rest.strip_suffix(" is not set")?;
        return name.starts_with("CONFIG_").then_some((name, "n"));
    }
    if line.starts_with('#') {
        return None;
    }
    let (name, value) = line.split_once('=')?;
    Some((name.trim(), value.trim()))
}

/// Parses a fragment. Every non-comment line must be a `CONFIG_` setting,
/// each symbol at most once.
pub fn parse_fragment(text: &str) -> Result<Vec<Setting>> {
    let mut out: Vec<Setting> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        let Some((name, value)) = parse_line(line) else {
            if line.starts_with('#') {
                continue;
            }
            bail!("line {}: not a CONFIG_ setting: {raw:?}", i + 1);
        };
        if !name.starts_with("CONFIG_")
            || name.len() == "CONFIG_".len()
            || !name
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        {
            bail!("line {}: bad symbol name {name:?}", i + 1);
        }
        if value.is_empty() {
            bail!("line {}: {name} has no value", i + 1);
        }
        if out.iter().any(|s| s.name == name) {
            bail!("line {}: {name} is set twice", i + 1);
        }
        out.push(Setting {
            name: name.into(),
            value: value.into(),
        });
    }
    if out.is_empty() {
        bail!("the fragment sets no option");
    }
    Ok(out)
}

/// The values of a `.config`: symbol -> value (`n` for "is not set").
pub fn parse_config(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(parse_line)
        .filter(|(name, _)| name.starts_with("CONFIG_"))
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

/// A fragment option the final `.config` does not honour.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mismatch {
    /// The symbol.
    pub name: String,
    /// What the fragment asks for.
    pub wanted: String,
    /// What `.config` has; `None` when the symbol is absent (its
    /// dependencies are unmet, or it does not exist in this kernel).
    pub got: Option<String>,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.got {
            None => write!(
                f,
                "{}={} (absent: unmet dependencies, or no such option)",
                self.name, self.wanted
            ),
            Some(v) if v == "n" => write!(f, "{}={} (is not set)", self.name, self.wanted),
            Some(v) => write!(f, "{}={} (is {v})", self.name, self.wanted),
        }
    }
}

/// The fragment settings that `config` (the text of a `.config`) does not
/// hold. `=n` in the fragment is met by "is not set" or by absence; since
/// the kernel has no modules here, `=m` is met by `=y` too.
pub fn check(fragment: &[Setting], config: &str) -> Vec<Mismatch> {
    let have = parse_config(config);
    fragment
        .iter()
        .filter_map(|s| {
            let got = have.get(&s.name);
            let ok = match (s.value.as_str(), got.map(String::as_str)) {
                ("n", None | Some("n")) => true,
                ("m", Some("m" | "y")) => true,
                (want, Some(v)) => want == v,
                (_, None) => false,
            };
            (!ok).then(|| Mismatch {
                name: s.name.clone(),
                wanted: s.value.clone(),
                got: got.cloned(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fragments() {
        let f = parse_fragment(
            "# comment\n\nCONFIG_A=y\n  CONFIG_NR_CPUS=8 \n# CONFIG_B is not set\nCONFIG_S=\"x y\"\n",
        )
        .unwrap();
        let pairs: Vec<(&str, &str)> = f
            .iter()
            .map(|s| (s.name.as_str(), s.value.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("CONFIG_A", "y"),
                ("CONFIG_NR_CPUS", "8"),
                ("CONFIG_B", "n"),
                ("CONFIG_S", "\"x y\"")
            ]
        );
    }

    #[test]
    fn refuses_bad_fragments() {
        for (bad, why) in [
            ("FOO=y", "bad symbol"),
            ("CONFIG_a=y", "bad symbol"),
            ("CONFIG_A", "not a CONFIG_ setting"),
            ("CONFIG_A=", "no value"),
            ("CONFIG_A=y\nCONFIG_A=n", "twice"),
            ("# only a comment", "no option"),
        ] {
            let e = format!("{:#}", parse_fragment(bad).unwrap_err());
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }

    #[test]
    fn the_repo_fragment_parses() {
        let text = std::fs::read_to_string(super::super::fragment_path()).unwrap();
        let f = parse_fragment(&text).unwrap();
        for must in [
            "CONFIG_ARM64_PSEUDO_NMI",
            "CONFIG_LKDTM",
            "CONFIG_RUNTIME_TESTING_MENU",
            "CONFIG_HARDLOCKUP_DETECTOR",
            "CONFIG_SERIAL_AMBA_PL011_CONSOLE",
            "CONFIG_BLK_DEV_INITRD",
            "CONFIG_MAGIC_SYSRQ",
        ] {
            assert!(f.iter().any(|s| s.name == must && s.value == "y"), "{must}");
        }
    }

    #[test]
    fn finds_what_allnoconfig_dropped() {
        let fragment = parse_fragment(
            "CONFIG_LKDTM=y\nCONFIG_DEBUG_FS=y\nCONFIG_NR_CPUS=8\nCONFIG_MAGIC_SYSRQ=y\n\
             CONFIG_HARDLOCKUP_DETECTOR_PREFER_BUDDY=y\nCONFIG_MODULES=n\nCONFIG_X=m\n",
        )
        .unwrap();
        let config = "#\n# Automatically generated file; DO NOT EDIT.\n#\n\
                      CONFIG_DEBUG_FS=y\nCONFIG_NR_CPUS=512\n# CONFIG_MAGIC_SYSRQ is not set\n\
                      # CONFIG_MODULES is not set\nCONFIG_X=y\n";
        let missing = check(&fragment, config);
        let names: Vec<&str> = missing.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "CONFIG_LKDTM",
                "CONFIG_NR_CPUS",
                "CONFIG_MAGIC_SYSRQ",
                "CONFIG_HARDLOCKUP_DETECTOR_PREFER_BUDDY"
            ]
        );
        assert_eq!(
            missing[0].to_string(),
            "CONFIG_LKDTM=y (absent: unmet dependencies, or no such option)"
        );
        assert_eq!(missing[1].to_string(), "CONFIG_NR_CPUS=8 (is 512)");
        assert_eq!(missing[2].to_string(), "CONFIG_MAGIC_SYSRQ=y (is not set)");
        assert!(check(&fragment[1..2], config).is_empty());
    }
}
