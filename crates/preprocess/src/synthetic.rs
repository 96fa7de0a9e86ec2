//! A MovieLens-like raw ratings file with planted structure: the embedded default dataset that lets
//! the whole pipeline run with no download.

use crate::PrepareError;
use rand::Rng;
use rand_pcg::Pcg64;
use rayon::prelude::*;
use std::io::Write;
use std::path::Path;

/// Shape of the synthetic data.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntheticConfig {
    pub users: usize,
    pub items: usize,
    /// About this many ratings in all (each user gets at least 3).
    pub interactions: usize,
    /// Dimension of the planted user and item factors.
    pub factors: usize,
    /// Strength of the user-item affinity against random noise: higher is easier to learn.
    pub affinity: f64,
    pub seed: u64,
}

impl Default for SyntheticConfig {
    fn default() -> Self {
        SyntheticConfig { users: 2000, items: 1500, interactions: 120_000, factors: 8, affinity: 3.0, seed: 42 }
    }
}

/// Writes `ratings.csv`-style data (ml-20m layout: `userId,movieId,rating,timestamp`, header,
/// rows grouped by user and sorted by movie id as in the real file) to `path`, atomically.
///
/// How it is made: users and items get random factor vectors, items a skewed popularity; each user
/// rates its top-n items by affinity (factor dot product) + popularity + Gumbel noise, i.e. a draw
/// without replacement from a softmax, with n log-normally spread around `interactions / users`.
/// The ratings of a user are spread in time in random order, so the last one (the test positive)
/// follows the same preferences as the rest. Movie ids are sparse (`1 + 5i + i mod 5`) so that
/// renumbering is exercised. Returns the number of rows written.
pub fn write_synthetic_ratings(path: &Path, config: &SyntheticConfig) -> Result<usize, PrepareError> {
    let c = config;
    if c.users == 0 || c.items < 4 || c.factors == 0 {
        return Err(PrepareError::Data("synthetic data needs at least 1 user, 4 items and 1 factor".into()));
    }
    let mut rng = Pcg64::new(c.seed as u128, 0);
    let mut normal = || gaussian(&mut rng);
    let user_f: Vec<f64> = (0..c.users * c.factors).map(|_| normal()).collect();
    let item_f: Vec<f64> = (0..c.items * c.factors).map(|_| normal()).collect();
    let mut rank: Vec<usize> = (0..c.items).collect();
    let mut rng = Pcg64::new(c.seed as u128, 1);
    for i in (1..rank.len()).rev() {
        rank.swap(i, rng.random_range(0..=i));
    }
    let popularity: Vec<f64> = rank.iter().map(|&r| -0.6 * ((r + 1) as f64).ln()).collect();
    // Ratings per user: at least 3, a log-normal spread of the rest, capped at half the items.
    let weights: Vec<f64> = (0..c.users).map(|_| (0.6 * gaussian(&mut rng)).exp()).collect();
    let total: f64 = weights.iter().sum();
    let spare = c.interactions.saturating_sub(3 * c.users) as f64;
    let counts: Vec<usize> =
        weights.iter().map(|w| (3 + (spare * w / total).round() as usize).min(c.items / 2).max(3)).collect();
    let scale = c.affinity / (c.factors as f64).sqrt();
    let (t0, t1) = (1_104_537_600i64, 1_420_070_400i64); // 2005-01-01 .. 2015-01-01

    let rows: Vec<Vec<(usize, f64, i64)>> = (0..c.users)
        .into_par_iter()
        .map(|u| {
            let mut rng = Pcg64::new(c.seed as u128, 2 + u as u128);
            let pu = &user_f[u * c.factors..(u + 1) * c.factors];
            let mut scored: Vec<(f64, usize)> = (0..c.items)
                .map(|i| {
                    let qi = &item_f[i * c.factors..(i + 1) * c.factors];
                    let affinity: f64 = pu.iter().zip(qi).map(|(a, b)| a * b).sum::<f64>() * scale;
                    let gumbel = -(-(rng.random::<f64>().max(1e-300)).ln()).ln();
                    (affinity + popularity[i] + gumbel, i)
                })
                .collect();
            let n = counts[u];
            scored.select_nth_unstable_by(n - 1, |a, b| b.0.total_cmp(&a.0));
            scored.truncate(n);
            // Ratings follow the affinity rank: best 5.0, down to 1.0 in half steps.
            scored.sort_by(|a, b| b.0.total_cmp(&a.0));
            let mut time = rng.random_range(t0..t1);
            let mut out: Vec<(usize, f64, i64)> = scored
                .iter()
                .enumerate()
                .map(|(r, &(_, i))| (i, 5.0 - (8.0 * r as f64 / n as f64).floor() * 0.5, 0))
                .collect();
            // Random order in time, about a day apart on average.
            for k in (1..out.len()).rev() {
                out.swap(k, rng.random_range(0..=k));
            }
            for row in &mut out {
                time += rng.random_range(60..172_800);
                row.2 = time;
            }
            out.sort_by_key(|row| movie_id(row.0));
            out
        })
        .collect();

    let tmp = path.with_file_name(format!(
        ".{}.tmp-{}",
        path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        std::process::id()
    ));
    let io = |source| PrepareError::Io { path: path.to_owned(), source };
    let written = (|| -> std::io::Result<usize> {
        let mut w = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        writeln!(w, "{}", crate::format::ML20M_HEADER)?;
        let mut n = 0;
        for (u, user_rows) in rows.iter().enumerate() {
            for &(item, rating, time) in user_rows {
                writeln!(w, "{},{},{rating:.1},{time}", u + 1, movie_id(item))?;
                n += 1;
            }
        }
        w.into_inner().map_err(|e| e.into_error())?;
        Ok(n)
    })();
    match written {
        Ok(n) => {
            std::fs::rename(&tmp, path).map_err(io)?;
            Ok(n)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(io(e))
        }
    }
}

fn movie_id(item: usize) -> usize {
    1 + 5 * item + item % 5
}

/// A standard normal draw (Box-Muller).
fn gaussian(rng: &mut Pcg64) -> f64 {
    let u1: f64 = rng.random::<f64>().max(1e-300);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}
