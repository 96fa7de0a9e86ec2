//! The documentation holds together: every relative link and `#anchor` in README.md, CHANGELOG.md
//! and the guide (docs/src) resolves, and the guide's SUMMARY.md lists every page it has.

use std::path::PathBuf;
use test_support::guide::{broken_links, repo_root};

fn guide_pages() -> Vec<PathBuf> {
    let dir = repo_root().join("docs/src");
    let mut pages: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    pages.sort();
    pages
}

#[test]
fn every_relative_link_and_anchor_resolves() {
    let root = repo_root();
    let mut files = vec![root.join("README.md"), root.join("CHANGELOG.md")];
    files.extend(guide_pages());
    let broken = broken_links(&files);
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_summary_lists_every_page() {
    let summary = std::fs::read_to_string(repo_root().join("docs/src/SUMMARY.md")).unwrap();
    for page in guide_pages() {
        let name = page.file_name().unwrap().to_string_lossy().into_owned();
        if name != "SUMMARY.md" {
            assert!(summary.contains(&format!("]({name})")), "SUMMARY.md does not list {name}");
        }
    }
}

#[test]
fn the_link_checker_finds_a_missing_file_and_a_missing_anchor() {
    // The checker itself, on files made here: a test that cannot fail proves nothing.
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("a.md");
    std::fs::write(dir.path().join("b.md"), "# Flags and `--options`!\n\n## Flags and --options\n").unwrap();
    std::fs::write(
        &page,
        "[ok](b.md#flags-and---options) [ok2](b.md#flags-and---options-1) [gone](c.md) [bad](b.md#nope)\n\
         `[code](c.md)` [web](https://example.org/x)\n```\n[fenced](c.md)\n```\n",
    )
    .unwrap();
    let broken = broken_links(&[page]);
    assert_eq!(broken.len(), 2, "{broken:?}");
    assert!(broken[0].contains("c.md") && broken[1].contains("#nope"), "{broken:?}");
}

#[test]
fn the_flag_checker_finds_a_missing_flag_and_a_made_up_one() {
    use std::os::unix::fs::PermissionsExt;
    // A stand-in binary whose help lists --alpha, and a subcommand `sub` with --beta_x.
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("tool");
    std::fs::write(
        &bin,
        "#!/bin/sh\nif [ \"$1\" = sub ]; then echo 'Options:\n      --beta_x <B>'; exit 0; fi\n\
         echo 'Commands:\n  sub  A subcommand\n  help  Print help\n\nOptions:\n      --alpha <A>\n  -h, --help'\n",
    )
    .unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let page = dir.path().join("tool.md");
    std::fs::write(&page, "| `--alpha` | a |\n| `--gamma` | made up |\nThe reference's `--ref_flag`.\n").unwrap();
    let misfits = test_support::guide::page_misfits(&bin, &page, &["--ref_flag"]);
    assert_eq!(misfits.len(), 2, "{misfits:?}");
    assert!(misfits[0].contains("--beta_x (sub)") && misfits[1].contains("--gamma"), "{misfits:?}");
}
