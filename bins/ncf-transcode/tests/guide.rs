//! The guide's page for `ncf-transcode` (docs/src/ncf-transcode.md) names every flag `ncf-transcode --help` lists, its
//! subcommands' too, and no flag the binary lacks.

#[test]
fn the_guide_page_lists_every_flag_and_no_other() {
    let page = test_support::guide::repo_root().join("docs/src/ncf-transcode.md");
    let misfits = test_support::guide::page_misfits(env!("CARGO_BIN_EXE_ncf-transcode").as_ref(), &page, &OTHERS);
    assert!(misfits.is_empty(), "{}", misfits.join("\n"));
}

/// Flags the page names that are not this binary's: the reference's, shown for comparison
/// (transcode.py's spellings (also accepted as aliases)).
const OTHERS: [&str; 2] = ["--feature_spec_in", "--feature_spec_out"];
