//! The guide's page for `ncf-serve` (docs/src/ncf-serve.md) names every flag `ncf-serve --help`
//! lists, and no flag the binary lacks.

#[test]
fn the_guide_page_lists_every_flag_and_no_other() {
    let page = test_support::guide::repo_root().join("docs/src/ncf-serve.md");
    let misfits = test_support::guide::page_misfits(env!("CARGO_BIN_EXE_ncf-serve").as_ref(), &page, &OTHERS);
    assert!(misfits.is_empty(), "{}", misfits.join("\n"));
}

/// Flags the page names that are not this binary's: those of the commands in its examples.
const OTHERS: [&str; 8] =
    ["--path", "--output", "--checkpoint_dir", "--load-checkpoint-path", "--help", "--mode", "--all", "--history"];
