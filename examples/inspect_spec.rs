//! Load a `feature_spec.yaml`, check it against the generic and NCF rules, and print what it holds.
//!
//! ```text
//! cargo run --example inspect_spec -- data/example-spec/feature_spec.yaml
//! ```

use featurespec::ncf::NcfLayout;
use featurespec::FeatureSpec;
use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: inspect_spec PATH/TO/feature_spec.yaml");
        return ExitCode::from(2);
    };
    match inspect(&path) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn inspect(path: &str) -> Result<(), featurespec::SpecError> {
    let spec = FeatureSpec::from_yaml_file(path)?;
    println!("{path}: valid feature spec, data files under {}", spec.base_dir().display());
    for (name, meta) in &spec.feature_spec {
        let dtype = meta.dtype.map_or("-".to_owned(), |d| d.to_string());
        let cardinality = meta.cardinality.map_or("-".to_owned(), |c| match c.known() {
            Some(n) => n.to_string(),
            None => "auto".to_owned(),
        });
        println!("  feature {name:<10} dtype {dtype:<14} cardinality {cardinality}");
    }
    for (mapping, chunks) in &spec.source_spec {
        for chunk in chunks {
            println!(
                "  {mapping:<6} {} chunk: columns [{}] in {} file(s)",
                chunk.chunk_type.name(),
                chunk.features.join(", "),
                chunk.files.len()
            );
        }
    }
    let layout = NcfLayout::from_spec(&spec)?;
    println!(
        "  NCF: user `{}`, item `{}`, label `{}`, {} rows per test list",
        layout.user, layout.item, layout.label, layout.test_samples_per_series
    );
    Ok(())
}
