//! Checks that keep the user guide true: relative links and `#anchors` in Markdown resolve, and a
//! binary's guide page lists every flag its `--help` shows and names no flag it lacks.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository's root (two folders above this crate).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("the repository root")
}

/// The lines of a Markdown text outside fenced code blocks, with their 1-based numbers.
fn prose_lines(text: &str) -> Vec<(usize, &str)> {
    let mut fenced = false;
    let mut lines = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            lines.push((n + 1, line));
        }
    }
    lines
}

/// GitHub's anchor for a heading: lowercase, every character but letters, digits, spaces, `-` and
/// `_` dropped, spaces turned into `-`; a repeated anchor gets `-1`, `-2`, ... (as mdBook does too).
pub fn anchors(markdown: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for (_, line) in prose_lines(markdown) {
        let Some(title) = line.strip_prefix('#') else { continue };
        let title = title.trim_start_matches('#');
        if !title.starts_with(' ') {
            continue;
        }
        let base: String = title
            .trim()
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        let mut anchor = base.clone();
        let mut k = 1;
        while seen.contains(&anchor) {
            anchor = format!("{base}-{k}");
            k += 1;
        }
        seen.insert(anchor);
    }
    seen
}

/// Every `[text](target)` of a Markdown text outside code, with its line number.
fn links(markdown: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (n, line) in prose_lines(markdown) {
        // Inline code spans may hold `](` that is no link: drop them first.
        let mut prose = String::new();
        for (k, part) in line.split('`').enumerate() {
            if k % 2 == 0 {
                prose.push_str(part);
            }
        }
        let mut rest = prose.as_str();
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(end) = after.find(')') else { break };
            let target = after[..end].split_whitespace().next().unwrap_or("").to_owned();
            found.push((n, target));
            rest = &after[end..];
        }
    }
    found
}

/// Checks every relative link and anchor of the Markdown `files`; returns one line per broken
/// link (`file:line: target: why`).
pub fn broken_links(files: &[PathBuf]) -> Vec<String> {
    let mut broken = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        for (line, target) in links(&text) {
            if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (path, anchor) = match target.split_once('#') {
                Some((p, a)) => (p, Some(a)),
                None => (target.as_str(), None),
            };
            let dest = if path.is_empty() { file.clone() } else { file.parent().unwrap().join(path) };
            let at = format!("{}:{line}: {target}", file.display());
            if !dest.exists() {
                broken.push(format!("{at}: no such file {}", dest.display()));
                continue;
            }
            if let Some(anchor) = anchor {
                let ok = dest.extension().is_some_and(|e| e == "md")
                    && anchors(&std::fs::read_to_string(&dest).unwrap()).contains(anchor);
                if !ok {
                    broken.push(format!("{at}: no heading #{anchor} in {}", dest.display()));
                }
            }
        }
    }
    broken
}

/// The long flags (`--name`) in `text`, without `--help` and `--version`.
pub fn long_flags(text: &str) -> BTreeSet<String> {
    let mut flags = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("--") {
        let start = i + at;
        let before_ok = start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'-');
        let mut end = start + 2;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_' || bytes[end] == b'-') {
            end += 1;
        }
        let name = &text[start..end];
        if before_ok
            && end > start + 2
            && bytes[start + 2].is_ascii_alphabetic()
            && name != "--help"
            && name != "--version"
        {
            flags.insert(name.trim_end_matches('-').to_owned());
        }
        i = end.max(start + 2);
    }
    flags
}

/// `binary --help` and that of each of its subcommands (clap's `Commands:` list, less `help`).
pub fn help_texts(binary: &Path) -> Vec<(String, String)> {
    let help = |args: &[&str]| {
        let out = Command::new(binary).args(args).arg("--help").output().expect("the binary runs");
        assert!(out.status.success(), "{} {args:?} --help failed", binary.display());
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let top = help(&[]);
    let mut texts = vec![(String::new(), top.clone())];
    let commands = top.lines().skip_while(|l| !l.starts_with("Commands:")).skip(1).take_while(|l| !l.trim().is_empty());
    for line in commands {
        let Some(name) = line.split_whitespace().next() else { continue };
        if name != "help" {
            texts.push((name.to_owned(), help(&[name])));
        }
    }
    texts
}

/// What is wrong with `page` as `binary`'s guide page: each flag of its `--help` (and its
/// subcommands') the page does not name, and each flag the page names that none of them has
/// (but those in `others`: the reference's scripts' flags, shown for comparison). Empty: fine.
pub fn page_misfits(binary: &Path, page: &Path, others: &[&str]) -> Vec<String> {
    let text = std::fs::read_to_string(page).unwrap_or_else(|e| panic!("{}: {e}", page.display()));
    let on_page = long_flags(&text);
    let mut known = BTreeSet::new();
    let mut misfits = Vec::new();
    for (command, help) in help_texts(binary) {
        for flag in long_flags(&help) {
            if !on_page.contains(&flag) {
                let of = if command.is_empty() { String::new() } else { format!(" ({command})") };
                misfits.push(format!("{}: --help lists {flag}{of}, the page does not", page.display()));
            }
            known.insert(flag);
        }
    }
    for flag in on_page {
        if !known.contains(&flag) && !others.contains(&flag.as_str()) {
            misfits.push(format!("{}: names {flag}, which {} does not have", page.display(), binary.display()));
        }
    }
    misfits
}
