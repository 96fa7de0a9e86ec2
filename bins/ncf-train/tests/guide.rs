//! The guide's page for `ncf-train` (docs/src/ncf-train.md) names every flag `ncf-train --help` lists, its
//! subcommands' too, and no flag the binary lacks.

#[test]
fn the_guide_page_lists_every_flag_and_no_other() {
    let page = test_support::guide::repo_root().join("docs/src/ncf-train.md");
    let misfits = test_support::guide::page_misfits(env!("CARGO_BIN_EXE_ncf-train").as_ref(), &page, &OTHERS);
    assert!(misfits.is_empty(), "{}", misfits.join("\n"));
}

/// Flags the page names that are not this binary's: the reference's launcher's, shown for
/// comparison (torch.distributed.launch's), and torchrun's, which starts ncf-train.
const OTHERS: [&str; 4] = ["--nproc_per_node", "--use_env", "--standalone", "--no-python"];
