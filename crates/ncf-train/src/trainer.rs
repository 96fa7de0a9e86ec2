//! The run: load the dataset, build the model, then train and evaluate epoch by epoch.

use crate::adam::{Adam, GradScaler};
use crate::config::{EvalProtocol, Mode, ReplicaCheck, TrainConfig};
use crate::data::TrainSet;
use crate::description;
use crate::dist::{self, Collective};
use crate::full_eval::{self, FullRanking};
use crate::seeds::epoch_seed;
use crate::state::{self, Progress, TRAINING_STATE};
use crate::TrainError;
use dllogger::{DlLogger, LogValue, Step};
use featurespec::ncf::NcfLayout;
use featurespec::FeatureSpec;
use metrics::{FullRankSums, RankSums, SeenItems, TestSeries};
use ncf_model::{AnyModel, Gmf, Mlp, Model, ModelError, ModelKind, NeuMf, NeuMfConfig};
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{Kind, Tensor};

/// What one evaluation found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Evaluation {
    pub hr: f64,
    pub ndcg: f64,
    pub validation_loss: f64,
    /// Seconds the evaluation took.
    pub seconds: f64,
    /// Test rows scored per second.
    pub throughput: f64,
    pub sums: RankSums,
    /// Full-ranking sums (`--eval full`).
    pub full: Option<FullRankSums>,
}

/// One epoch's figures, as logged.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpochReport {
    pub epoch: usize,
    pub train_seconds: f64,
    /// Epoch samples (positives x (negatives + 1)) per second of training.
    pub train_throughput: f64,
    /// The last batch's loss (NaN when no batch ran).
    pub train_loss: f64,
    /// The test lists' evaluation.
    pub eval: Evaluation,
    /// The validation lists' evaluation, when the dataset has them.
    pub validation: Option<Evaluation>,
    /// Whether this epoch's selection metric beat every earlier one (and `model.pth` was written).
    pub improved: bool,
}

/// The end of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub epochs: Vec<EpochReport>,
    /// The test lists' HR@k at the best epoch (the log's `best_accuracy`).
    pub best_hr: f64,
    pub best_epoch: Option<usize>,
    /// The metric that chose the best epoch (`hr@10`, `validation_hr@10`, `full_hr@10`, ...) and
    /// its best value.
    pub selected_by: String,
    pub best_selection: f64,
    /// Whether `--threshold` stopped the run.
    pub reached_threshold: bool,
    /// Whether `--patience` stopped the run.
    pub stopped_early: bool,
    /// Whether [`Observer::should_stop`] stopped the run mid-epoch. The unfinished epoch was
    /// neither evaluated nor saved: `model.pth` and the training state are the last finished
    /// epoch's, so `--resume` continues from there.
    pub interrupted: bool,
    /// Data-parallel runs: how many times the ranks found their parameters bit-identical
    /// ([`TrainConfig::replica_check`]); 0 for a single process.
    pub replica_checks: u64,
}

/// Hooks for a front end (progress bars, summaries); every method has a no-op default.
pub trait Observer {
    /// An epoch of `batches` batches starts.
    fn epoch_started(&mut self, _epoch: usize, _batches: u64) {}
    /// `done` batches of the epoch are trained.
    fn batches_done(&mut self, _done: u64) {}
    /// The epoch is trained and evaluated.
    fn epoch_finished(&mut self, _report: &EpochReport) {}
    /// Asked after every optimizer step: `true` stops the run there (e.g. the user pressed
    /// Ctrl-C), leaving the files as the last finished epoch wrote them ([`Summary::interrupted`]).
    /// In a data-parallel group every rank must answer alike, or the others wait for it.
    fn should_stop(&mut self) -> bool {
        false
    }
}

/// An observer that does nothing.
pub struct Quiet;
impl Observer for Quiet {}

/// A training (or evaluation) run over one dataset, of any [`Model`]: the crate's own
/// (`TrainConfig::model`) or one built by the caller ([`Trainer::with_model`]).
pub struct Trainer {
    config: TrainConfig,
    model: AnyModel,
    adam: Adam,
    params: Vec<Tensor>,
    train: TrainSet,
    test: TestSeries,
    /// The validation lists (`ncf-prepare --validation`), which then select the best epoch.
    validation: Option<TestSeries>,
    /// Full ranking of the test and validation lists (`--eval full`).
    full_test: Option<FullRanking>,
    full_validation: Option<FullRanking>,
    progress: Progress,
    log: Option<DlLogger>,
    started: Instant,
    layout: NcfLayout,
    scaler: Option<GradScaler>,
    /// The data-parallel group; `None` for a single process.
    group: Option<Box<dyn Collective>>,
    /// Replica checks passed so far.
    replica_checks: u64,
}

impl Evaluation {
    /// An evaluation of no lists (names the selection metric before any epoch ran).
    fn empty() -> Evaluation {
        Evaluation {
            hr: 0.0,
            ndcg: 0.0,
            validation_loss: f64::NAN,
            seconds: 0.0,
            throughput: 0.0,
            sums: RankSums::default(),
            full: Some(FullRankSums::default()),
        }
    }
}

impl Trainer {
    /// Loads the dataset onto the configured device, builds (and loads or resumes) the model, and
    /// checks every setting; nothing is trained yet. All bad input is reported here.
    pub fn new(config: TrainConfig) -> Result<Self, TrainError> {
        Self::in_group(config, None)
    }

    /// [`Trainer::new`] for a model the caller builds: `build(users, items, device)` is called once
    /// the dataset is read, after the generator is seeded (so a seeded run initialises the same
    /// way every time). `TrainConfig::model`, `factors`, `layers` and `pretrained` are not used;
    /// everything else (loading a checkpoint, resuming, evaluation, logs) works as for the crate's
    /// own models.
    pub fn with_model<F>(config: TrainConfig, build: F) -> Result<Self, TrainError>
    where
        F: FnOnce(i64, i64, tch::Device) -> Result<AnyModel, ModelError>,
    {
        Self::build(config, None, |_, users, items, device| Ok(build(users, items, device)?))
    }

    /// A rank of a data-parallel run: the test lists and each epoch's samples are split across the
    /// group as the reference splits them, rank 0's parameters are broadcast at start, gradients are
    /// averaged every step, evaluation results summed; only rank 0 writes checkpoints and the log.
    /// `config.batch_size` is the global batch.
    pub fn in_group(config: TrainConfig, group: Option<Box<dyn Collective>>) -> Result<Self, TrainError> {
        Self::build(config, group, family_model)
    }

    fn build<F>(config: TrainConfig, mut group: Option<Box<dyn Collective>>, build: F) -> Result<Self, TrainError>
    where
        F: FnOnce(&TrainConfig, i64, i64, tch::Device) -> Result<AnyModel, TrainError>,
    {
        let (rank, world) = group.as_ref().map_or((0, 1), |g| (g.rank(), g.world_size()));
        let started = Instant::now();
        check_settings(&config)?;
        let spec_path = config.data.join(&config.feature_spec_file);
        let spec = FeatureSpec::from_yaml_file(&spec_path)?;
        let device = config.device;
        // First of all collectives: ranks that run different jobs would otherwise call the next
        // ones out of step (or average gradients of different problems).
        if let Some(g) = group.as_deref_mut() {
            dist::check_agreement(&description::job(&config, &spec)?, g, device)?;
        }
        let layout = NcfLayout::from_spec(&spec)?;
        let (users, items) = layout.cardinalities(&spec)?;
        if device.is_cuda() {
            torch_ops::set_tf32(config.tf32).map_err(|e| TrainError::Config(e.to_string()))?;
        }
        let test = tch_data::load_mapping(&spec, "test", device)?;
        let test = TestSeries::new(
            &test.features[&layout.user],
            &test.features[&layout.item],
            &test.features[&layout.label],
            layout.test_samples_per_series as i64,
        )?;

        let validation = match layout.has_validation {
            true => {
                let v = tch_data::load_mapping(&spec, featurespec::ncf::VALIDATION_MAPPING, device)?;
                Some(TestSeries::new(
                    &v.features[&layout.user],
                    &v.features[&layout.item],
                    &v.features[&layout.label],
                    layout.test_samples_per_series as i64,
                )?)
            }
            false => None,
        };
        // Full ranking leaves each user's train positives (and, for test, validation positive) out.
        let (full_test, full_validation) = match config.eval {
            EvalProtocol::Sampled => (None, None),
            EvalProtocol::Full => {
                let t = tch_data::load_mapping(&spec, "train", device)?;
                let positive = t.features[&layout.label].reshape([-1]).to_kind(Kind::Float).gt(0.5);
                let (u, i) = (
                    t.features[&layout.user].reshape([-1]).masked_select(&positive),
                    t.features[&layout.item].reshape([-1]).masked_select(&positive),
                );
                let (nu, ni) = (users as i64, items as i64);
                let subset = |series: &TestSeries| {
                    config.eval_users.map(|n| full_eval::fixed_subset(series.lists(), n, config.seed.unwrap_or(0)))
                };
                let full_validation = match &validation {
                    Some(v) => Some(FullRanking::new(v, subset(v).as_ref(), SeenItems::new(&u, &i, nu, ni, device)?)),
                    None => None,
                };
                let seen_test = match &validation {
                    Some(v) => {
                        let ranking = FullRanking::new(v, None, SeenItems::new(&u, &i, nu, ni, device)?);
                        let (vu, vi) = ranking.users_and_positives();
                        SeenItems::new(&Tensor::cat(&[&u, &vu], 0), &Tensor::cat(&[&i, &vi], 0), nu, ni, device)?
                    }
                    None => SeenItems::new(&u, &i, nu, ni, device)?,
                };
                (Some(FullRanking::new(&test, subset(&test).as_ref(), seen_test)), full_validation)
            }
        };
        let shard = |f: Option<FullRanking>| f.map(|f| if world > 1 { f.shard(rank as i64, world as i64) } else { f });
        let (full_test, full_validation) = (shard(full_test), shard(full_validation));
        let test = if world > 1 { test.shard(rank as i64, world as i64) } else { test };
        let validation = validation.map(|v| if world > 1 { v.shard(rank as i64, world as i64) } else { v });
        // A resumed run takes its seed from its training state (loaded below).
        let seed = match (config.seed, group.as_deref_mut()) {
            (Some(seed), _) => seed,
            (None, None) => rand_seed(),
            // Ranks must draw the same negatives (their samples are cut from one epoch), so all
            // take rank 0's fresh seed, which is also the one rank 0 logs.
            (None, Some(g)) => {
                let shared = Tensor::from_slice(&[rand_seed() as i64]).to_device(device);
                dist::broadcast_value(&shared, g)?;
                shared.int64_value(&[0]) as u64
            }
        };
        tch::manual_seed(seed as i64);
        let mut model = build(&config, users as i64, items as i64, device)?;
        if !device.is_cuda() {
            model.set_cpu_matmul(config.cpu_matmul)?;
        }
        if model.users() != users as i64 || model.items() != items as i64 {
            return Err(TrainError::Config(format!(
                "the model has {} users and {} items, the dataset {users} and {items}",
                model.users(),
                model.items()
            )));
        }
        if let Some(path) = &config.load_checkpoint_path {
            model.load(path)?;
        }
        let params: Vec<Tensor> = model.state_dict().into_iter().map(|(_, t)| t).collect();
        let mut adam = Adam::new(&params, config.learning_rate, config.beta1, config.beta2, config.eps);
        let mut progress = Progress { seed, ..Default::default() };
        if let Some(dir) = &config.resume {
            progress = state::load(&dir.join(TRAINING_STATE), model.as_mut(), &mut adam)?;
            if config.seed.is_some_and(|s| s != progress.seed) {
                return Err(TrainError::Resume {
                    path: dir.clone(),
                    message: format!("it was trained with --seed {}, not {}", progress.seed, config.seed.unwrap_or(0)),
                });
            }
        }

        let train = if config.mode == Mode::Train {
            let t = tch_data::load_mapping(&spec, "train", device)?;
            let set = TrainSet {
                users: t.features[&layout.user].shallow_clone(),
                items: t.features[&layout.item].shallow_clone(),
                labels: t.features[&layout.label].to_kind(Kind::Float),
                item_cardinality: items as i64,
            };
            let batches = set.rank_batches_per_epoch(config.negative_samples, config.batch_size, world as i64);
            if batches < config.grads_accumulated as i64 {
                return Err(TrainError::Config(format!(
                    "an epoch holds {} samples ({} train rows x {} with negatives), which make {batches} batch(es) of {} once the last is dropped (as the reference does); {} are needed per optimizer step (--grads_accumulated). Lower --batch_size (-b) or --grads_accumulated",
                    set.epoch_samples(config.negative_samples),
                    set.rows(),
                    config.negative_samples + 1,
                    config.batch_size,
                    config.grads_accumulated
                )));
            }
            set
        } else {
            // Test mode trains nothing: an empty train set.
            let empty = Tensor::zeros([0], (Kind::Int64, device));
            TrainSet {
                users: empty.shallow_clone(),
                items: empty.shallow_clone(),
                labels: empty.to_kind(Kind::Float),
                item_cardinality: items as i64,
            }
        };
        if let Some(dir) = &config.checkpoint_dir {
            if config.mode == Mode::Train && rank == 0 {
                ensure_writable(dir)?;
            }
        }
        let log = match &config.log_path {
            Some(path) if rank == 0 => {
                Some(DlLogger::create(path).map_err(|source| TrainError::Io { path: path.clone(), source })?)
            }
            _ => None,
        };
        if let Some(g) = group.as_deref_mut() {
            let resumed = config.resume.as_ref().map(|_| (&progress, &adam));
            dist::check_agreement(&description::model(model.as_ref(), resumed), g, device)?;
            dist::broadcast_parameters(&params, g)?;
        }
        tracing::info!(
            users,
            items,
            train_rows = train.rows(),
            test_lists = test.lists(),
            ?device,
            seed,
            "dataset loaded"
        );
        // CUDA: fp16 autocast with loss scaling, as the reference. CPU: bfloat16 matrix products
        // (no scaling needed: bfloat16 has float32's range).
        let scaler = (config.amp && device.is_cuda()).then(|| GradScaler::new(device));
        let mut trainer = Trainer {
            config,
            model,
            adam,
            params,
            train,
            test,
            validation,
            full_test,
            full_validation,
            progress,
            log,
            started,
            layout,
            scaler,
            group,
            replica_checks: 0,
        };
        trainer.log_parameters()?;
        Ok(trainer)
    }

    /// The model being trained.
    pub fn model(&self) -> &dyn Model {
        self.model.as_ref()
    }

    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    /// The seed in use (drawn when none was given).
    pub fn seed(&self) -> u64 {
        self.progress.seed
    }

    /// The feature names the dataset uses for users, items and labels.
    pub fn layout(&self) -> &NcfLayout {
        &self.layout
    }

    /// Batches this rank runs per epoch (after the reference's drop of the last one; in a
    /// data-parallel run, of `batch_size / world` samples each).
    pub fn batches_per_epoch(&self) -> i64 {
        let world = self.group.as_ref().map_or(1, |g| g.world_size() as i64);
        self.train.rank_batches_per_epoch(self.config.negative_samples, self.config.batch_size, world)
    }

    /// Scores the test lists (eval mode, no gradients) in batches of `valid_batch_size`; with
    /// `--eval full` also ranks each list's positive against all items.
    pub fn evaluate(&mut self) -> Result<Evaluation, TrainError> {
        self.evaluate_lists(false)
    }

    /// [`Trainer::evaluate`] on the validation lists; `None` when the dataset has none.
    pub fn evaluate_validation(&mut self) -> Result<Option<Evaluation>, TrainError> {
        match self.validation.is_some() {
            true => self.evaluate_lists(true).map(Some),
            false => Ok(None),
        }
    }

    fn evaluate_lists(&mut self, validation: bool) -> Result<Evaluation, TrainError> {
        let start = Instant::now();
        self.model.set_train(false);
        // Evaluation in the parameters' own kind, as the reference evaluates outside autocast.
        self.model.set_matmul_kind(None);
        let (series, full) = match (validation, &self.validation) {
            (true, Some(v)) => (v, &self.full_validation),
            _ => (&self.test, &self.full_test),
        };
        let (users, items, labels) = (series.users(), series.items(), series.labels());
        let rows = users.size()[0];
        let batch = self.config.valid_batch_size.max(1);
        let mut scores = Vec::new();
        let mut losses = Vec::new();
        tch::no_grad(|| {
            let mut at = 0;
            while at < rows {
                let len = batch.min(rows - at);
                let p = self
                    .model
                    .forward_sigmoid(&users.narrow(0, at, len), &items.narrow(0, at, len))
                    .to_kind(Kind::Float);
                losses.push(metrics::batch_loss(&p, &labels.narrow(0, at, len)));
                scores.push(p);
                at += len;
            }
        });
        let mut full = match full {
            Some(f) => {
                Some(f.rank(self.model.as_ref(), self.config.topk, full_eval::block_users(self.model.as_ref()))?)
            }
            None => None,
        };
        self.model.set_train(true);
        let scores = if scores.is_empty() {
            Tensor::zeros([0], (Kind::Float, self.config.device))
        } else {
            Tensor::cat(&scores, 0)
        };
        let hits = series.top_k_hits(&scores, self.config.topk)?;
        let mut validation_loss = metrics::validation_loss(&losses).unwrap_or(f64::NAN);
        let mut rows = rows;
        let sums = match self.group.as_deref_mut() {
            None => RankSums::from_hits(&hits),
            Some(g) => {
                // The reference all-reduces the loss (then averaged over ranks) and the sums.
                let world = g.world_size() as f64;
                let f = full.unwrap_or_default();
                let local = [validation_loss, rows as f64, f.users as f64, f.hits, f.ndcg, f.mrr, f.precision, f.map];
                let total = dist::sum_values(&local, g, self.config.device)?;
                validation_loss = total[0] / world;
                rows = total[1].round() as i64;
                if full.is_some() {
                    full = Some(FullRankSums {
                        users: total[2].round() as i64,
                        hits: total[3],
                        ndcg: total[4],
                        mrr: total[5],
                        precision: total[6],
                        map: total[7],
                    });
                }
                // HR and NDCG from every rank's hit matrix, stacked in list order and added up
                // once, rather than the reference's sum of per-rank float sums: the same bits as
                // one process evaluating every list (equal to the reference's within float32
                // rounding).
                RankSums::from_hits(&dist::gather_rows(&hits, g, self.config.device)?.ge(0.5))
            }
        };
        let seconds = start.elapsed().as_secs_f64();
        Ok(Evaluation {
            hr: sums.hit_rate(),
            ndcg: sums.ndcg(),
            validation_loss,
            seconds,
            throughput: rows as f64 / seconds.max(1e-9),
            sums,
            full,
        })
    }

    /// The metric that selects the best epoch: HR@k of the validation lists when the dataset has
    /// them, else of the test lists (the reference's); the full-ranking HR@k with `--eval full`.
    fn selection(&self, test: &Evaluation, validation: Option<&Evaluation>) -> (String, f64) {
        let k = self.config.topk;
        let (prefix, eval) = match validation {
            Some(v) => ("validation_", v),
            None => ("", test),
        };
        match (self.config.eval, eval.full) {
            (EvalProtocol::Full, Some(f)) => (format!("{prefix}full_hr@{k}"), f.hit_rate()),
            _ => (format!("{prefix}hr@{k}"), eval.hr),
        }
    }

    /// Trains one epoch; returns (seconds, last batch loss), or `None` when the observer stopped it.
    fn train_epoch(&mut self, epoch: usize, observer: &mut dyn Observer) -> Result<Option<(f64, f64)>, TrainError> {
        // Every epoch's randomness (negatives, order, dropout) comes from (seed, epoch), so a run is
        // reproducible and a resumed run continues exactly as an uninterrupted one.
        let seed = epoch_seed(self.progress.seed, epoch);
        tch::manual_seed(seed);
        // Ranks draw the same negatives (the samples must agree to be split). Dropout masks: on
        // the CPU each rank draws its own (the mask stream is seeded per rank); on CUDA dropout
        // draws from libtorch's generator, seeded alike on every rank, so the ranks' masks
        // agree, as the reference's ranks' do when run with --seed.
        let rank = self.group.as_ref().map_or(0, |g| g.rank() as u64);
        self.model.seed_dropout((seed as u64) ^ rank.wrapping_mul(0xD6E8_FEB8_6659_FD93));
        let start = Instant::now();
        let (rank, world) = self.group.as_ref().map_or((0, 1), |g| (g.rank() as i64, g.world_size() as i64));
        let data = self.train.epoch(self.config.negative_samples, self.config.batch_size, rank, world);
        let group = self.config.grads_accumulated as i64;
        let steps = data.batches() / group;
        observer.epoch_started(epoch, (steps * group) as u64);
        let mut last_loss = None;
        let amp = self.scaler.is_some();
        if self.config.amp && !amp {
            // --amp on the CPU: the MLP's products in bfloat16 while training (evaluate() resets it).
            self.model.set_matmul_kind(Some(Kind::BFloat16));
        }
        for step in 0..steps {
            for j in 0..group {
                let (users, items, labels) = data.batch(step * group + j);
                // AMP: the forward pass in fp16 where autocast allows, the loss in float32.
                let logits = if amp {
                    tch::autocast(true, || self.model.forward(&users, &items)).to_kind(Kind::Float)
                } else {
                    self.model.forward(&users, &items)
                };
                let loss = logits.binary_cross_entropy_with_logits::<Tensor>(&labels, None, None, tch::Reduction::Mean);
                match &self.scaler {
                    Some(scaler) => scaler.scale_loss(&loss).backward(),
                    None => loss.backward(),
                }
                last_loss = Some(loss);
            }
            if let Some(g) = self.group.as_deref_mut() {
                dist::average_gradients(&self.params, g)?;
            }
            if let Some(scaler) = &mut self.scaler {
                scaler.check(&self.params);
            }
            self.adam.step(&self.params, self.scaler.as_ref());
            if let Some(scaler) = &mut self.scaler {
                scaler.update();
            }
            self.adam.zero_grad(&self.params);
            if self.config.replica_check == ReplicaCheck::Step {
                self.check_replicas(&format!("after step {} of epoch {}", step + 1, epoch + 1))?;
            }
            observer.batches_done(((step + 1) * group) as u64);
            if observer.should_stop() {
                tracing::info!(epoch, step = step + 1, "stopped by the caller; the unfinished epoch is not saved");
                return Ok(None);
            }
        }
        let mut loss = last_loss.map_or(f64::NAN, |l| l.double_value(&[]));
        if let Some(g) = self.group.as_deref_mut() {
            // The reference logs the last batch's loss averaged over the ranks.
            let world = g.world_size() as f64;
            loss = dist::sum_values(&[loss], g, self.config.device)?.first().copied().unwrap_or(f64::NAN) / world;
        }
        Ok(Some((start.elapsed().as_secs_f64(), loss)))
    }

    /// Runs the configured job: `--mode test` evaluates once; training runs the remaining epochs,
    /// evaluating after each, saving `model.pth` when HR improves and the training state every
    /// epoch, and stops early at `--threshold`.
    pub fn run(&mut self, observer: &mut dyn Observer) -> Result<Summary, TrainError> {
        let k = self.config.topk;
        if self.config.mode == Mode::Test {
            let eval = self.evaluate()?;
            let validation = self.evaluate_validation()?;
            let mut data = vec![
                ("best_eval_throughput".to_string(), eval.throughput.into()),
                (format!("hr@{k}"), eval.hr.into()),
                (format!("ndcg@{k}"), eval.ndcg.into()),
                ("validation_loss".to_string(), eval.validation_loss.into()),
            ];
            data.extend(extra_metrics(k, &eval, validation.as_ref()));
            self.write_log(Step::End, &data)?;
            let (selected_by, best_selection) = self.selection(&eval, validation.as_ref());
            let report = EpochReport {
                epoch: 0,
                train_seconds: 0.0,
                train_throughput: 0.0,
                train_loss: f64::NAN,
                eval,
                validation,
                improved: false,
            };
            return Ok(Summary {
                epochs: vec![report],
                best_hr: eval.hr,
                best_epoch: None,
                reached_threshold: best_selection >= self.config.threshold,
                selected_by,
                best_selection,
                stopped_early: false,
                interrupted: false,
                replica_checks: 0,
            });
        }
        let already = self.progress.elapsed;
        let mut reports: Vec<EpochReport> = Vec::new();
        let mut reached = false;
        let mut stopped_early = false;
        let mut interrupted = false;
        let mut last = None;
        let empty = Evaluation::empty();
        let mut selected_by = self.selection(&empty, self.validation.as_ref().map(|_| &empty)).0;
        for epoch in self.progress.next_epoch..self.config.epochs {
            let Some((train_seconds, train_loss)) = self.train_epoch(epoch, observer)? else {
                interrupted = true;
                break;
            };
            if self.config.replica_check == ReplicaCheck::Epoch {
                self.check_replicas(&format!("after epoch {}", epoch + 1))?;
            }
            let eval = self.evaluate()?;
            let validation = self.evaluate_validation()?;
            let (by, selected) = self.selection(&eval, validation.as_ref());
            selected_by = by;
            let samples = self.train.epoch_samples(self.config.negative_samples);
            let train_throughput = samples as f64 / train_seconds.max(1e-9);
            let improved = selected > self.progress.best_hr || self.progress.best_epoch.is_none();
            self.progress.train_throughputs.push(train_throughput);
            self.progress.eval_throughputs.push(eval.throughput);
            self.progress.next_epoch = epoch + 1;
            self.progress.elapsed = already + self.started.elapsed().as_secs_f64();
            if improved {
                self.progress.best_hr = selected;
                self.progress.best_test_hr = eval.hr;
                self.progress.best_epoch = Some(epoch);
                self.progress.time_to_best = self.progress.elapsed;
                if let (Some(dir), true) = (&self.config.checkpoint_dir, self.is_rank0()) {
                    self.model.save(&dir.join("model.pth"))?;
                }
            }
            if let (Some(dir), true) = (&self.config.checkpoint_dir, self.is_rank0()) {
                state::save(&dir.join(TRAINING_STATE), self.model.as_ref(), &self.adam, &self.progress)?;
            }
            let report = EpochReport { epoch, train_seconds, train_throughput, train_loss, eval, validation, improved };
            let mut data = vec![
                ("train_throughput".to_string(), train_throughput.into()),
                (format!("hr@{k}"), eval.hr.into()),
                (format!("ndcg@{k}"), eval.ndcg.into()),
                ("train_epoch_time".to_string(), train_seconds.into()),
                ("validation_epoch_time".to_string(), eval.seconds.into()),
                ("eval_throughput".to_string(), eval.throughput.into()),
                ("validation_loss".to_string(), eval.validation_loss.into()),
                ("train_loss".to_string(), train_loss.into()),
            ];
            data.extend(extra_metrics(k, &eval, validation.as_ref()));
            self.write_log(Step::Epoch(epoch), &data)?;
            observer.epoch_finished(&report);
            reports.push(report);
            last = Some(report);
            if selected >= self.config.threshold {
                tracing::info!(metric = %selected_by, value = selected, threshold = self.config.threshold, "hit the threshold");
                reached = true;
                break;
            }
            if let (Some(patience), Some(best)) = (self.config.patience, self.progress.best_epoch) {
                if epoch - best >= patience {
                    tracing::info!(patience, best_epoch = best, metric = %selected_by, "no improvement: stopping early");
                    stopped_early = true;
                    break;
                }
            }
        }
        let p = &self.progress;
        let max = |v: &[f64]| v.iter().copied().fold(f64::NAN, f64::max);
        let mean = |v: &[f64]| if v.is_empty() { f64::NAN } else { v.iter().sum::<f64>() / v.len() as f64 };
        let mut end = vec![
            ("best_train_throughput".to_string(), max(&p.train_throughputs).into()),
            ("best_eval_throughput".to_string(), max(&p.eval_throughputs).into()),
            ("mean_train_throughput".to_string(), mean(&p.train_throughputs).into()),
            ("mean_eval_throughput".to_string(), mean(&p.eval_throughputs).into()),
            ("best_accuracy".to_string(), p.best_test_hr.into()),
            ("best_epoch".to_string(), p.best_epoch.map(|e| e as i64).into()),
            ("time_to_target".to_string(), (already + self.started.elapsed().as_secs_f64()).into()),
            ("time_to_best_model".to_string(), p.time_to_best.into()),
            ("validation_loss".to_string(), last.map(|r| r.eval.validation_loss).into()),
            ("train_loss".to_string(), last.map(|r| r.train_loss).into()),
        ];
        if self.validation.is_some() || self.config.eval == EvalProtocol::Full {
            // What chose the epoch, and the chosen epoch's other figures (when it ran in this process).
            end.push(("selected_by".to_string(), selected_by.as_str().into()));
            if let Some(best) = reports.iter().find(|r| Some(r.epoch) == p.best_epoch) {
                end.push((format!("best_ndcg@{k}"), best.eval.ndcg.into()));
                for (key, value) in extra_metrics(k, &best.eval, best.validation.as_ref()) {
                    end.push((format!("best_{key}"), value));
                }
            }
        }
        self.write_log(Step::End, &end)?;
        Ok(Summary {
            epochs: reports,
            best_hr: self.progress.best_test_hr,
            best_epoch: self.progress.best_epoch,
            selected_by,
            best_selection: self.progress.best_hr,
            reached_threshold: reached,
            stopped_early,
            interrupted,
            replica_checks: self.replica_checks,
        })
    }

    /// Data-parallel runs: stops every rank when their parameters are no longer bit-identical.
    fn check_replicas(&mut self, when: &str) -> Result<(), TrainError> {
        if let Some(g) = self.group.as_deref_mut() {
            dist::check_replicas(&self.params, g, self.config.device, when)?;
            self.replica_checks += 1;
        }
        Ok(())
    }

    /// Whether this process is rank 0 (the one that writes checkpoints and logs).
    pub fn is_rank0(&self) -> bool {
        self.group.as_ref().is_none_or(|g| g.rank() == 0)
    }

    fn write_log(&mut self, step: Step, data: &[(String, LogValue)]) -> Result<(), TrainError> {
        if let Some(log) = &mut self.log {
            let path = log.path().to_owned();
            log.log(step, data).map_err(|source| TrainError::Io { path, source })?;
        }
        Ok(())
    }

    /// The reference logs its arguments first (`step: "PARAMETER"`), then metric units.
    fn log_parameters(&mut self) -> Result<(), TrainError> {
        let c = &self.config;
        let path = |p: &Option<PathBuf>| LogValue::from(p.as_ref().map(|p| p.display().to_string()).as_deref());
        let data: Vec<(String, LogValue)> = vec![
            ("data".to_string(), c.data.display().to_string().as_str().into()),
            ("model".to_string(), self.model.name().into()),
            ("feature_spec_file".to_string(), c.feature_spec_file.as_str().into()),
            ("epochs".to_string(), c.epochs.into()),
            ("batch_size".to_string(), c.batch_size.into()),
            ("valid_batch_size".to_string(), c.valid_batch_size.into()),
            ("factors".to_string(), c.factors.into()),
            ("layers".to_string(), LogValue::List(c.layers.iter().map(|&l| l.into()).collect())),
            ("negative_samples".to_string(), c.negative_samples.into()),
            ("learning_rate".to_string(), c.learning_rate.into()),
            ("topk".to_string(), c.topk.into()),
            ("seed".to_string(), (self.progress.seed as i64).into()),
            ("threshold".to_string(), c.threshold.into()),
            ("beta1".to_string(), c.beta1.into()),
            ("beta2".to_string(), c.beta2.into()),
            ("eps".to_string(), c.eps.into()),
            ("dropout".to_string(), c.dropout.into()),
            ("checkpoint_dir".to_string(), path(&c.checkpoint_dir)),
            ("load_checkpoint_path".to_string(), path(&c.load_checkpoint_path)),
            ("mode".to_string(), if c.mode == Mode::Test { "test" } else { "train" }.into()),
            ("grads_accumulated".to_string(), c.grads_accumulated.into()),
            ("amp".to_string(), c.amp.into()),
            ("cpu_matmul".to_string(), if c.device.is_cuda() { "cublas" } else { c.cpu_matmul.engine() }.into()),
            ("log_path".to_string(), path(&c.log_path)),
            ("device".to_string(), format!("{:?}", c.device).as_str().into()),
            ("resume".to_string(), path(&c.resume)),
        ];
        let k = self.config.topk;
        if let Some(log) = &mut self.log {
            let file = log.path().to_owned();
            let err = |source| TrainError::Io { path: file.clone(), source };
            log.log(Step::Named("PARAMETER".into()), &data).map_err(err)?;
            for (metric, unit) in [
                ("train_throughput", "samples/s"),
                ("eval_throughput", "samples/s"),
                ("best_train_throughput", "samples/s"),
                ("best_eval_throughput", "samples/s"),
                ("mean_train_throughput", "samples/s"),
                ("mean_eval_throughput", "samples/s"),
                ("train_epoch_time", "s"),
                ("validation_epoch_time", "s"),
                ("time_to_target", "s"),
                ("time_to_best_model", "s"),
            ] {
                log.metadata(metric, &[("unit", unit)]).map_err(err)?;
            }
            for metric in [
                format!("hr@{k}"),
                format!("ndcg@{k}"),
                "validation_loss".into(),
                "train_loss".into(),
                "best_accuracy".into(),
            ] {
                log.metadata(&metric, &[("unit", "")]).map_err(err)?;
            }
        }
        Ok(())
    }
}

/// The log keys beyond the reference's: the validation lists' sampled metrics, and the
/// full-ranking metrics of the test (`full_*`) and validation (`validation_full_*`) lists.
fn extra_metrics(k: i64, test: &Evaluation, validation: Option<&Evaluation>) -> Vec<(String, LogValue)> {
    let mut data = Vec::new();
    let full = |prefix: &str, f: &FullRankSums, data: &mut Vec<(String, LogValue)>| {
        data.push((format!("{prefix}full_users"), f.users.into()));
        for (name, value) in
            [("hr", f.hit_rate()), ("ndcg", f.ndcg()), ("mrr", f.mrr()), ("precision", f.precision()), ("map", f.map())]
        {
            data.push((format!("{prefix}full_{name}@{k}"), value.into()));
        }
    };
    if let Some(f) = &test.full {
        full("", f, &mut data);
    }
    if let Some(v) = validation {
        data.push((format!("validation_hr@{k}"), v.hr.into()));
        data.push((format!("validation_ndcg@{k}"), v.ndcg.into()));
        if let Some(f) = &v.full {
            full("validation_", f, &mut data);
        }
    }
    data
}

/// The model `config` asks for: `--model` (or the kind `--load_checkpoint_path` holds, else
/// NeuMF), shaped by `--factors`/`--layers`/`--dropout`, or NeuMF from pre-trained halves.
fn family_model(config: &TrainConfig, users: i64, items: i64, device: tch::Device) -> Result<AnyModel, TrainError> {
    let shape = NeuMfConfig {
        users,
        items,
        mf_dim: config.factors,
        mlp_layers: config.layers.clone(),
        dropout: config.dropout,
    };
    let kind = match (config.model, &config.load_checkpoint_path, &config.pretrained) {
        (Some(kind), _, _) => kind,
        (None, _, Some(_)) => ModelKind::NeuMf,
        (None, Some(path), None) => ModelKind::of_file(path)?,
        (None, None, None) => ModelKind::NeuMf,
    };
    let Some(p) = &config.pretrained else { return Ok(kind.build(&shape, device)?) };
    if kind != ModelKind::NeuMf {
        return Err(TrainError::Config(format!(
            "--pretrained-gmf/--pretrained-mlp initialise NeuMF, not {}: drop --model {} or the pre-trained halves",
            kind.title(),
            kind.name()
        )));
    }
    let gmf = Gmf::from_checkpoint(&p.gmf, device)?;
    let mlp = Mlp::from_checkpoint(&p.mlp, config.dropout, device)?;
    let (g, m) = (gmf.config(), mlp.config());
    let mut problems = Vec::new();
    for (what, path, u, i) in [("GMF", &p.gmf, g.users, g.items), ("MLP", &p.mlp, m.users, m.items)] {
        if (u, i) != (users, items) {
            problems.push(format!(
                "the {what} {} has {u} users and {i} items, the dataset {users} and {items} (trained on another dataset?)",
                path.display()
            ));
        }
    }
    if g.factors != config.factors {
        problems.push(format!(
            "the GMF {} has factors {} but -f/--factors is {}: pass -f {} (NeuMF's GMF branch is the GMF)",
            p.gmf.display(),
            g.factors,
            config.factors,
            g.factors
        ));
    }
    if m.layers != config.layers {
        let layers = m.layers.iter().map(i64::to_string).collect::<Vec<_>>().join(" ");
        problems.push(format!(
            "the MLP {} has layers {:?} but --layers is {:?}: pass --layers {layers}",
            p.mlp.display(),
            m.layers,
            config.layers
        ));
    }
    if !problems.is_empty() {
        return Err(TrainError::Config(format!("cannot pre-train NeuMF:\n  {}", problems.join("\n  "))));
    }
    Ok(Box::new(NeuMf::from_pretrained(&gmf, &mlp, p.alpha, config.dropout, device)?))
}

/// Settings wrong whatever the dataset.
fn check_settings(c: &TrainConfig) -> Result<(), TrainError> {
    let bad = |m: String| Err(TrainError::Config(m));
    match (c.eval, c.eval_users) {
        (_, Some(0)) => return bad("--eval-users must be at least 1".into()),
        (EvalProtocol::Sampled, Some(_)) => {
            return bad("--eval-users chooses the users of a full ranking: add --eval full".into())
        }
        _ => {}
    }
    if c.patience == Some(0) {
        return bad("--patience must be at least 1 (epochs without improvement before stopping)".into());
    }
    if c.batch_size < 1 || c.valid_batch_size < 1 {
        return bad(format!(
            "--batch_size ({}) and --valid_batch_size ({}) must be at least 1",
            c.batch_size, c.valid_batch_size
        ));
    }
    if c.negative_samples < 0 {
        return bad(format!("--negative_samples must be 0 or more, got {}", c.negative_samples));
    }
    if c.topk < 1 {
        return bad(format!("--topk must be at least 1, got {}", c.topk));
    }
    if c.grads_accumulated < 1 {
        return bad("--grads_accumulated must be at least 1".into());
    }
    let positive = |v: f64| v.is_finite() && v > 0.0;
    if !positive(c.learning_rate)
        || !(0.0..1.0).contains(&c.beta1)
        || !(0.0..1.0).contains(&c.beta2)
        || !positive(c.eps)
    {
        return bad(format!(
            "Adam needs --learning_rate > 0, 0 <= --beta1, --beta2 < 1 and --eps > 0 (got {}, {}, {}, {})",
            c.learning_rate, c.beta1, c.beta2, c.eps
        ));
    }
    if c.amp && !c.device.is_cuda() && !ncf_model::runtime::cpu_has_bf16() {
        return bad("--amp on the CPU runs the MLP's matrix products in bfloat16, and this CPU has no bfloat16 instructions (AVX512-BF16 or AMX), so it would only be slower; run without --amp".into());
    }
    if let (false, Err(e)) = (c.device.is_cuda(), c.cpu_matmul.resolve()) {
        return bad(format!("--cpu-matmul: {e}"));
    }
    if c.resume.is_some() && c.load_checkpoint_path.is_some() {
        return bad(
            "--resume continues a run from its own state; it cannot be combined with --load_checkpoint_path".into()
        );
    }
    if c.resume.is_some() && c.mode == Mode::Test {
        return bad("--resume is for training; use --load_checkpoint_path DIR/model.pth with --mode test".into());
    }
    Ok(())
}

/// Creates the checkpoint folder and proves a file can be written there.
fn ensure_writable(dir: &Path) -> Result<(), TrainError> {
    let io = |source| TrainError::Io { path: dir.to_owned(), source };
    std::fs::create_dir_all(dir).map_err(io)?;
    tempfile::NamedTempFile::new_in(dir).map_err(|source| TrainError::Io {
        path: dir.to_owned(),
        source: std::io::Error::new(source.kind(), format!("checkpoint folder is not writable ({source}); pass another --checkpoint_dir, or --checkpoint_dir '' to save nothing")),
    })?;
    Ok(())
}

/// The reference's `--seed -1`: a fresh seed, logged so the run can be repeated.
fn rand_seed() -> u64 {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    (t.as_nanos() as u64 ^ (std::process::id() as u64).rotate_left(32)) & 0x7fff_ffff
}
