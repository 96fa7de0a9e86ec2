//! How well fold-in serves people the model has never met (issue #29), on real ratings.
//!
//! One user in ten (a fixed hash of the raw id) is held out. Two datasets are prepared the
//! reference's way: everyone ("all") and everyone but the held-out people ("without"). For MF and
//! NeuMF (the learning rates of docs/src/models.md, `-b 16384`, EPOCHS epochs, SEED), a model is
//! trained on each, and each held-out person's latest item (their test positive in "all") is ranked
//! three ways:
//!
//! - **trained in**: the model trained on everyone, the person's own embedding;
//! - **fold-in**: the model trained without them, the person folded in from all their other
//!   ratings (`inference::FoldIn`, default options);
//! - **fold-in, `--bf16` fit** (NeuMF): the same with `Recommender::set_bf16_candidates` on, which
//!   on a CPU with AMX fits in bfloat16 (scored in float32, so only the fit differs);
//! - **popularity**: items by their count in "without"'s train set.
//!
//! Against the person's 100 sampled negatives of "all" (the reference's HR@10 and NDCG@10) and
//! against every item but the person's other ratings (full ranking). Ties (popularity has many)
//! count at their expected rank under a random order. Prints a Markdown table.
//!
//! ```text
//! cargo run --release --example fold_in_quality -- ../shared/data/ml-latest-small/ratings.csv /tmp/fold-in [EPOCHS] [SEED]
//! ```

use inference::{FoldInOptions, Recommender};
use ncf_model::ModelKind;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::ExitCode;
use tch::{Device, Kind, Tensor};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        eprintln!("usage: fold_in_quality RATINGS.csv OUT_DIR [EPOCHS] [SEED]");
        return ExitCode::from(2);
    }
    let epochs = args.get(2).and_then(|e| e.parse().ok()).unwrap_or(20);
    let seed = args.get(3).and_then(|e| e.parse().ok()).unwrap_or(2);
    match run(Path::new(&args[0]), Path::new(&args[1]), epochs, seed) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

type Error = Box<dyn std::error::Error>;

/// FNV-1a of the raw id: one user in ten, the same ones on every machine.
fn held_out(raw_user: &str) -> bool {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in raw_user.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x100000001b3);
    }
    h % 10 == 0
}

/// HR@10 and NDCG@10 of a positive scored `pos` among `others`, ties at their expected place.
fn hit_ndcg(pos: f32, others: impl Iterator<Item = f32>) -> (f64, f64) {
    let (mut above, mut tied) = (0usize, 0usize);
    for s in others {
        if s > pos {
            above += 1;
        } else if s == pos {
            tied += 1;
        }
    }
    // Under a random order of the tied, the positive's rank is uniform on above..=above + tied.
    let places = (above..=above + tied).filter(|&r| r < 10);
    let n = (tied + 1) as f64;
    let (hits, gains) = places.fold((0.0, 0.0), |(h, g), r| (h + 1.0, g + 1.0 / ((r + 2) as f64).log2()));
    (hits / n, gains / n)
}

#[derive(Default)]
struct Sums {
    people: usize,
    hr: f64,
    ndcg: f64,
    full_hr: f64,
    full_ndcg: f64,
}

impl Sums {
    fn add(&mut self, sampled: (f64, f64), full: (f64, f64)) {
        self.people += 1;
        self.hr += sampled.0;
        self.ndcg += sampled.1;
        self.full_hr += full.0;
        self.full_ndcg += full.1;
    }
    fn row(&self) -> [f64; 4] {
        let n = self.people.max(1) as f64;
        [self.hr / n, self.ndcg / n, self.full_hr / n, self.full_ndcg / n]
    }
}

/// One held-out person: their raw id, test positive and 100 negatives (raw item ids, from "all"),
/// and their other ratings (raw item ids, oldest first).
struct Person {
    user: String,
    positive: String,
    negatives: Vec<String>,
    history: Vec<String>,
}

/// How `--bf16` fits here: in bfloat16 on AMX tiles, or (without AMX) in float32 as the plain row.
fn bf16_fit_name() -> &'static str {
    if torch_ops::amx_available() {
        "bfloat16 on AMX"
    } else {
        "float32: no AMX here"
    }
}

fn run(ratings: &Path, out: &Path, epochs: usize, seed: u64) -> Result<(), Error> {
    std::fs::create_dir_all(out)?;
    // 1. The two datasets.
    let text = std::fs::read_to_string(ratings)?;
    let mut lines = text.lines();
    let header = lines.next().ok_or("empty ratings file")?;
    let mut without = String::from(header);
    without.push('\n');
    for line in lines.clone() {
        if !held_out(line.split(',').next().unwrap_or("")) {
            without.push_str(line);
            without.push('\n');
        }
    }
    let without_csv = out.join("ratings-without.csv");
    std::fs::write(&without_csv, without)?;
    let options = preprocess::PrepareOptions { replace: true, ..Default::default() };
    let (all, part) = (out.join("all"), out.join("without"));
    preprocess::prepare(ratings, &all, &options, |_| {})?;
    preprocess::prepare(&without_csv, &part, &options, |_| {})?;

    // 2. The held-out people's test lists in "all", and their other ratings.
    let histories = inference::read_histories(ratings)?;
    let spec = featurespec::FeatureSpec::from_yaml_file(all.join("feature_spec.yaml"))?;
    let layout = featurespec::ncf::NcfLayout::from_spec(&spec)?;
    let test = tch_data::load_mapping(&spec, "test", Device::Cpu)?;
    let users = Vec::<i64>::try_from(&test.features[&layout.user].to_kind(Kind::Int64).view([-1]))?;
    let items = Vec::<i64>::try_from(&test.features[&layout.item].to_kind(Kind::Int64).view([-1]))?;
    let list = layout.test_samples_per_series as usize;
    let catalog_all = inference::Catalog::open(&all)?;
    let mut people = Vec::new();
    let by_user: HashMap<&str, &inference::History> = histories.iter().map(|h| (h.user.as_str(), h)).collect();
    for (u, rows) in users.chunks(list).zip(items.chunks(list)) {
        let user = catalog_all.user_raw_id(u[0]).to_string();
        if !held_out(&user) {
            continue;
        }
        let positive = catalog_all.item_raw_id(rows[0]).to_string();
        let negatives = rows[1..].iter().map(|&i| catalog_all.item_raw_id(i).to_string()).collect();
        let mut history = by_user.get(user.as_str()).map(|h| h.items.clone()).unwrap_or_default();
        if let Some(at) = history.iter().rposition(|i| *i == positive) {
            history.remove(at);
        }
        people.push(Person { user, positive, negatives, history });
    }

    // Popularity: train counts in "without", by raw item id.
    let catalog_part = inference::Catalog::open(&part)?;
    let mut counts: HashMap<String, f32> = HashMap::new();
    for u in 0..catalog_part.users() {
        for &i in catalog_part.seen(u) {
            *counts.entry(catalog_part.item_raw_id(i).to_string()).or_default() += 1.0;
        }
    }
    let all_items: Vec<String> = (0..catalog_all.items()).map(|i| catalog_all.item_raw_id(i).to_string()).collect();
    let mut popularity = Sums::default();
    for p in &people {
        let count = |i: &String| counts.get(i).copied().unwrap_or(0.0);
        let sampled = hit_ndcg(count(&p.positive), p.negatives.iter().map(count));
        let seen: HashSet<&String> = p.history.iter().collect();
        let full = hit_ndcg(
            count(&p.positive),
            all_items.iter().filter(|i| **i != p.positive && !seen.contains(i)).map(count),
        );
        popularity.add(sampled, full);
    }

    cpu_line();
    println!(
        "{} people held out of {} ({} ratings); models: {epochs} epochs, -b 16384, seed {seed}",
        people.len(),
        catalog_all.users(),
        text.lines().count() - 1
    );
    println!();
    println!("| model | people ranked by | HR@10 | NDCG@10 | full HR@10 | full NDCG@10 |");
    println!("|---|---|---|---|---|---|");
    let fmt = |r: [f64; 4]| format!("{:.4} | {:.4} | {:.4} | {:.4}", r[0], r[1], r[2], r[3]);
    println!("| - | popularity (train counts without them) | {} |", fmt(popularity.row()));
    let mut notes = Vec::new();

    // 3. Per model: trained in, and folded in.
    for (kind, lr) in [(ModelKind::Mf, 0.01), (ModelKind::NeuMf, 0.0045)] {
        let train = |data: &Path, dir: &str| -> Result<std::path::PathBuf, Error> {
            let config = ncf_train::TrainConfig {
                data: data.to_owned(),
                model: Some(kind),
                epochs,
                batch_size: 16384,
                valid_batch_size: 65536,
                learning_rate: lr,
                seed: Some(seed),
                checkpoint_dir: Some(out.join(dir)),
                log_path: None,
                device: Device::Cpu,
                ..ncf_train::TrainConfig::default()
            };
            let summary = ncf_train::Trainer::new(config)?.run(&mut ncf_train::Quiet)?;
            eprintln!("fold_in_quality: {kind} on {}: best HR@10 {:.4}", data.display(), summary.best_hr);
            Ok(out.join(dir).join("model.pth"))
        };
        let rec_all = Recommender::open(&all, &train(&all, &format!("{kind}-all"))?, Device::Cpu)?;
        let part_model = train(&part, &format!("{kind}-without"))?;
        let rec_part = Recommender::open(&part, &part_model, Device::Cpu)?;
        // The same model with `--bf16` (bfloat16 candidates; on a CPU with AMX the fold-in fits in
        // bfloat16 too): its fold-ins scored in float32, so the row shows the fit's effect alone.
        let rec_bf16 = {
            let mut r = Recommender::open(&part, &part_model, Device::Cpu)?;
            r.set_bf16_candidates(true).ok().map(|()| r)
        };

        let (mut trained, mut folded, mut folded_bf16) = (Sums::default(), Sums::default(), Sums::default());
        let (mut missing_positive, mut missing_history, mut fold_seconds) = (0usize, 0usize, 0f64);
        let mut bf16_seconds = 0f64;
        for p in &people {
            // Trained in: the person's own row in "all".
            let u = rec_all.catalog().user(&p.user).ok_or("a held-out person is not in 'all'")?;
            let scores = tch::no_grad(|| {
                rec_all.model().all_item_logits(&Tensor::from_slice(&[u]), rec_all.item_side()).view([-1])
            });
            let scores = Vec::<f32>::try_from(&scores)?;
            let score_of = |i: &String| rec_all.catalog().item(i).map_or(f32::NEG_INFINITY, |k| scores[k as usize]);
            trained.add(
                hit_ndcg(score_of(&p.positive), p.negatives.iter().map(score_of)),
                full_rank(&scores, rec_all.catalog(), &p.positive, &p.history),
            );

            // Folded in: the model that never saw them (and, with `--bf16`, its bfloat16 fit),
            // scored in float32.
            let (history, unknown) = rec_part.items_by_raw_id(&p.history);
            missing_history += unknown.len();
            if rec_part.catalog().item(&p.positive).is_none() {
                missing_positive += 1;
            }
            let fold_and_rank = |rec: &Recommender, sums: &mut Sums, seconds: &mut f64| -> Result<(), Error> {
                let start = std::time::Instant::now();
                let vectors = rec.fold_in(&history, &FoldInOptions { seed, ..Default::default() })?;
                *seconds += start.elapsed().as_secs_f64();
                let scores = rec_part
                    .model()
                    .all_item_logits_of_rows(vectors.rows(), rec_part.item_side())
                    .ok_or("the model cannot score rows")?
                    .view([-1]);
                let scores = Vec::<f32>::try_from(&scores)?;
                let score_of =
                    |i: &String| rec_part.catalog().item(i).map_or(f32::NEG_INFINITY, |k| scores[k as usize]);
                sums.add(
                    hit_ndcg(score_of(&p.positive), p.negatives.iter().map(score_of)),
                    full_rank(&scores, rec_part.catalog(), &p.positive, &p.history),
                );
                Ok(())
            };
            fold_and_rank(&rec_part, &mut folded, &mut fold_seconds)?;
            if let Some(rec) = &rec_bf16 {
                fold_and_rank(rec, &mut folded_bf16, &mut bf16_seconds)?;
            }
        }
        let (t, f) = (trained.row(), folded.row());
        println!("| {kind} | trained in (their own embedding) | {} |", fmt(t));
        println!("| {kind} | fold-in (a model that never saw them) | {} |", fmt(f));
        notes.push(format!(
            "{kind}: fold-in reaches {:.1}% of trained-in HR@10 ({:.1}% full-ranking HR@10); {:.1} ms per person to fold in; {} test positives and {} history events were items the model without them lacks",
            100.0 * f[0] / t[0].max(1e-12),
            100.0 * f[2] / t[2].max(1e-12),
            1e3 * fold_seconds / people.len().max(1) as f64,
            missing_positive,
            missing_history
        ));
        if rec_bf16.is_some() {
            let b = folded_bf16.row();
            println!("| {kind} | fold-in, `--bf16` fit ({}) | {} |", bf16_fit_name(), fmt(b));
            notes.push(format!(
                "{kind} `--bf16`: fold-in reaches {:.1}% of trained-in HR@10 ({:.1}% full-ranking HR@10); {:.1} ms per person to fold in",
                100.0 * b[0] / t[0].max(1e-12),
                100.0 * b[2] / t[2].max(1e-12),
                1e3 * bf16_seconds / people.len().max(1) as f64,
            ));
        }
    }
    println!();
    for n in notes {
        println!("- {n}");
    }
    Ok(())
}

/// HR@10 and NDCG@10 of `positive` against every other item of `catalog` but `history`; a
/// positive the catalog lacks is a miss.
fn full_rank(scores: &[f32], catalog: &inference::Catalog, positive: &str, history: &[String]) -> (f64, f64) {
    let Some(pos) = catalog.item(positive) else { return (0.0, 0.0) };
    let seen: HashSet<i64> = history.iter().filter_map(|i| catalog.item(i)).collect();
    let others =
        scores.iter().enumerate().filter(|&(i, _)| i as i64 != pos && !seen.contains(&(i as i64))).map(|(_, &s)| s);
    hit_ndcg(scores[pos as usize], others)
}

fn cpu_line() {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!("fold_in_quality: {cores} cores of {cpu}");
}
