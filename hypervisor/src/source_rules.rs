//! Rules about the source itself, checked by host tests over the files in
//! `src/` (`cargo test -p hypervisor source_rules`).
//!
//! - The layers of `main.rs` run one way: a module imports (`crate::x`,
//!   `use crate::{x, y}`) only from its own layer and the ones below.
//! - Inline assembly (`asm!`, `global_asm!`) lives only in `arch/`, behind
//!   named functions.
//! - Every public item has a doc comment. rustc's `missing_docs` cannot
//!   check it: it looks only at items a crate exports, and a binary crate
//!   exports none. A run of items of the same kind (a table of constants,
//!   a group of accessors) may share the first one's comment, and items
//!   in a block opened right after a doc comment (a `mod reg { ... }`) are
//!   covered by it.

use std::fs;
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`.
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The kind of public item `line` declares (`fn`, `const`, ...), if any.
fn public_item(line: &str) -> Option<&'static str> {
    let t = line.trim_start();
    let rest = t
        .strip_prefix("pub(crate) ")
        .or_else(|| t.strip_prefix("pub "))?;
    [
        "const fn ",
        "unsafe fn ",
        "fn ",
        "struct ",
        "enum ",
        "const ",
        "static ",
        "trait ",
        "type ",
    ]
    .into_iter()
    .find(|k| rest.starts_with(k))
}

/// The undocumented public items of one file's text, as `line: text`.
fn undocumented(text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut missing = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        // The unit tests at the end of a file are not API.
        if line.trim() == "#[cfg(test)]"
            && lines
                .get(i + 1)
                .is_some_and(|l| l.trim_start().starts_with("mod tests"))
        {
            break;
        }
        let Some(kind) = public_item(line) else {
            continue;
        };
        // Skip the item's attributes.
        let mut j = i;
        while j > 0 && lines[j - 1].trim_start().starts_with("#[") {
            j -= 1;
        }
        let Some(prev) = j.checked_sub(1).map(|p| lines[p].trim()) else {
            missing.push(format!("{}: {}", i + 1, line.trim()));
            continue;
        };
        let documented = prev.starts_with("///")
            // One of a run of items of its kind sharing the first one's comment.
            || public_item(lines[j - 1]) == Some(kind)
            // The first item in a block that a doc comment opens.
            || (prev.ends_with('{') && j >= 2 && lines[j - 2].trim().starts_with("///"));
        if !documented {
            missing.push(format!("{}: {}", i + 1, line.trim()));
        }
    }
    missing
}

/// The layers of `src/`, bottom first, as `main.rs` states them.
const LAYERS: &[&[&str]] = &[
    &["arch"],
    &["platform"],
    &["gic", "mm", "console"],
    &["ipi"],
    &["vgic", "devices"],
    &["vm"],
    &["debug"],
    &["boot"],
    &["dispatch"],
];

/// The layer of top-level module `name`.
fn layer_of(name: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&name))
}

/// `text` without `//` comments (doc comments included) and without its
/// unit tests (tests may use anything).
fn code_of(text: &str) -> String {
    let end = text.find("#[cfg(test)]\nmod tests").unwrap_or(text.len());
    text[..end]
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level modules `code` names through `crate::`, with their line
/// numbers; a group (`crate::{a, b::c}`) may span lines.
fn crate_refs(code: &str) -> Vec<(usize, String)> {
    let ident = |s: &str| -> String {
        s.trim_start()
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(found) = code[at..].find("crate::") {
        let start = at + found + "crate::".len();
        let line = code[..start].matches('\n').count() + 1;
        let rest = &code[start..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            out.extend(
                group
                    .split(',')
                    .map(ident)
                    .filter(|n| !n.is_empty())
                    .map(|n| (line, n)),
            );
        } else {
            out.push((line, ident(rest)));
        }
        at = start;
    }
    out
}

/// Every import that runs from a lower layer up to a higher one.
fn upward_imports() -> Vec<String> {
    let mut report = Vec::new();
    for path in sources(&src_dir()) {
        let rel = path.strip_prefix(src_dir()).unwrap_or(&path).to_path_buf();
        let first = rel
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .unwrap_or("");
        let Some(mine) = layer_of(first.trim_end_matches(".rs")) else {
            continue;
        };
        let code = code_of(&fs::read_to_string(&path).expect("readable source"));
        for (line, name) in crate_refs(&code) {
            if layer_of(&name).is_some_and(|theirs| theirs > mine) {
                report.push(format!("{}:{line}: imports {name}", rel.display()));
            }
        }
    }
    report
}

#[test]
fn imports_run_down_the_layers_only() {
    let report = upward_imports();
    assert!(
        report.is_empty(),
        "imports from a higher layer:\n{}",
        report.join("\n")
    );
}

#[test]
fn every_module_has_a_layer() {
    for entry in fs::read_dir(src_dir()).expect("src/") {
        let path = entry.expect("entry").path();
        let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        if ["main", "source_rules"].contains(&name) {
            continue;
        }
        assert!(
            layer_of(name).is_some(),
            "src/{name} is in no layer of LAYERS (main.rs)"
        );
    }
}

#[test]
fn the_layer_scan_sees_what_it_should() {
    let code = code_of("use crate::arch::cpu;\nuse crate::{\n    ipi,\n    vm::guest,\n};\nlet x = crate::debug::dump(); // crate::boot\n");
    assert_eq!(
        crate_refs(&code),
        [
            (1, "arch".to_string()),
            (2, "ipi".to_string()),
            (2, "vm".to_string()),
            (6, "debug".to_string())
        ]
    );
}

/// Lines of `text` outside comments that use inline assembly.
fn inline_asm(text: &str) -> Vec<String> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| {
            let code = l.split("//").next().unwrap_or("");
            code.contains("asm!(") || code.contains("asm!{") || code.contains("global_asm!")
        })
        .map(|(i, l)| format!("{}: {}", i + 1, l.trim()))
        .collect()
}

#[test]
fn inline_assembly_only_in_arch() {
    let mut report = Vec::new();
    for path in sources(&src_dir()) {
        let rel = path.strip_prefix(src_dir()).unwrap_or(&path).to_path_buf();
        if rel.starts_with("arch") || rel == Path::new("source_rules.rs") {
            continue;
        }
        let text = fs::read_to_string(&path).expect("readable source");
        for m in inline_asm(&text) {
            report.push(format!("{}:{m}", rel.display()));
        }
    }
    assert!(
        report.is_empty(),
        "inline assembly outside arch/:\n{}",
        report.join("\n")
    );
}

#[test]
fn the_asm_rule_sees_what_it_should() {
    let text = "// asm!(\"nop\") in a comment\nunsafe { core::arch::asm!(\"isb\") };\nlet x = 1; // asm!(\"x\")\n";
    assert_eq!(
        inline_asm(text),
        ["2: unsafe { core::arch::asm!(\"isb\") };"]
    );
}

#[test]
fn every_public_item_has_a_doc_comment() {
    let mut report = Vec::new();
    for path in sources(&src_dir()) {
        let text = fs::read_to_string(&path).expect("readable source");
        for m in undocumented(&text) {
            report.push(format!(
                "{}:{m}",
                path.strip_prefix(src_dir()).unwrap_or(&path).display()
            ));
        }
    }
    assert!(
        report.is_empty(),
        "{} public items without a doc comment:\n{}",
        report.len(),
        report.join("\n")
    );
}

#[test]
fn the_doc_rule_sees_what_it_should() {
    let text = "/// Documented.\npub fn a() {}\n\npub fn b() {}\n/// A group.\npub const X: u8 = 1;\npub const Y: u8 = 2;\n\
                #[inline]\npub fn c() {}\n/// Offsets.\nmod reg {\n    pub const DR: u64 = 0;\n}\n";
    assert_eq!(undocumented(text), ["4: pub fn b() {}", "9: pub fn c() {}"]);
}
