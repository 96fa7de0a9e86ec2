//! The guide's page for `ncf-prepare` (docs/src/ncf-prepare.md) names every flag `ncf-prepare --help` lists, its
//! subcommands' too, and no flag the binary lacks.

#[test]
fn the_guide_page_lists_every_flag_and_no_other() {
    let page = test_support::guide::repo_root().join("docs/src/ncf-prepare.md");
    let misfits = test_support::guide::page_misfits(env!("CARGO_BIN_EXE_ncf-prepare").as_ref(), &page, &OTHERS);
    assert!(misfits.is_empty(), "{}", misfits.join("\n"));
}

/// Flags the page names that are not this binary's: the reference's, shown for comparison
/// (convert.py's spelling (also accepted as an alias)).
const OTHERS: [&str; 1] = ["--valid_negative"];
