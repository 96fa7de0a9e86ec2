//! Load a FeatureSpec dataset's tensors (e.g. one the reference's preprocessing wrote) and print
//! what each mapping holds.
//!
//! ```text
//! cargo run --example load_dataset -- ../shared/data/reference-prepared/ml-latest-small
//! ```

use featurespec::ncf::NcfLayout;
use featurespec::FeatureSpec;
use std::path::Path;
use std::process::ExitCode;
use tch::{Device, Kind};

fn main() -> ExitCode {
    let Some(dir) = std::env::args().nth(1) else {
        eprintln!("usage: load_dataset DATASET_DIR (the folder holding feature_spec.yaml)");
        return ExitCode::from(2);
    };
    match run(Path::new(&dir)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(dir: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let spec = FeatureSpec::from_yaml_file(dir.join("feature_spec.yaml"))?;
    let layout = NcfLayout::from_spec(&spec)?;
    let (users, items) = layout.cardinalities(&spec)?;
    println!("{}: {users} users, {items} items", dir.display());
    for mapping in spec.source_spec.keys() {
        let start = std::time::Instant::now();
        let m = tch_data::load_mapping(&spec, mapping, Device::Cpu)?;
        let positives = m.features[&layout.label].sum(Kind::Double).double_value(&[]);
        println!(
            "  {mapping:<6} {:>9} rows, {:>8} positive labels, loaded and checked in {:.1} ms",
            m.rows,
            positives,
            start.elapsed().as_secs_f64() * 1e3
        );
    }
    Ok(())
}
