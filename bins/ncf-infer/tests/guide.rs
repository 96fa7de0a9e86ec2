//! The guide's page for `ncf-infer` (docs/src/ncf-infer.md) names every flag `ncf-infer --help` lists, its
//! subcommands' too, and no flag the binary lacks.

#[test]
fn the_guide_page_lists_every_flag_and_no_other() {
    let page = test_support::guide::repo_root().join("docs/src/ncf-infer.md");
    let misfits = test_support::guide::page_misfits(env!("CARGO_BIN_EXE_ncf-infer").as_ref(), &page, &OTHERS);
    assert!(misfits.is_empty(), "{}", misfits.join("\n"));
}

/// Flags the page names that are not this binary's: cargo's, in the commands that run the
/// fold-in example and bench.
const OTHERS: [&str; 3] = ["--release", "--example", "--bench"];
