//! `train()`: ncf-train's run from Python, its flags as keyword arguments.

use crate::errors::{raise, to_py, Kind};
use ncf_model::runtime::{CpuMatmul, DeviceChoice};
use ncf_model::ModelKind;
use ncf_train::{EpochReport, EvalProtocol, Mode, Observer, Pretrained, ReplicaCheck, TrainConfig, Trainer};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use std::path::PathBuf;

/// How progress is shown.
enum Show {
    Nothing,
    /// A callable given a dict per event.
    Callback(PyObject),
    /// A tqdm bar per epoch when tqdm is installed, and a line per epoch on sys.stderr.
    Bars {
        tqdm: Option<PyObject>,
        bar: Option<PyObject>,
    },
}

/// The trainer's hooks, run with the GIL taken back for each; remembers the first Python error
/// (a callback that raised, Ctrl-C) and then asks the trainer to stop.
struct PyObserver {
    show: Show,
    epochs: usize,
    k: i64,
    error: Option<PyErr>,
    /// Batches the tqdm bar shows.
    shown: u64,
    /// When Python was last asked (signals, the bar): at most every [`ASK_EVERY`], so that a step
    /// does not wait for the GIL while another Python thread holds it.
    asked: std::time::Instant,
}

/// How often training takes the GIL back between steps (when no callable asks for every step).
const ASK_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

impl PyObserver {
    fn event(&mut self, py: Python<'_>, f: impl FnOnce(Python<'_>, &mut Show, usize, i64) -> PyResult<()>) {
        if self.error.is_some() {
            return;
        }
        if let Err(e) = f(py, &mut self.show, self.epochs, self.k) {
            self.error = Some(e);
        }
    }
}

fn dict<'py>(py: Python<'py>, items: &[(&str, PyObject)]) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    for (k, v) in items {
        d.set_item(k, v)?;
    }
    Ok(d)
}

fn epoch_dict<'py>(py: Python<'py>, r: &EpochReport) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("epoch", r.epoch)?;
    d.set_item("train_seconds", r.train_seconds)?;
    d.set_item("train_throughput", r.train_throughput)?;
    d.set_item("train_loss", r.train_loss)?;
    d.set_item("hr", r.eval.hr)?;
    d.set_item("ndcg", r.eval.ndcg)?;
    d.set_item("validation_loss", r.eval.validation_loss)?;
    d.set_item("eval_seconds", r.eval.seconds)?;
    d.set_item("eval_throughput", r.eval.throughput)?;
    if let Some(f) = r.eval.full {
        d.set_item("full_hr", f.hit_rate())?;
        d.set_item("full_ndcg", f.ndcg())?;
    }
    if let Some(v) = r.validation {
        d.set_item("validation_hr", v.hr)?;
        d.set_item("validation_ndcg", v.ndcg)?;
    }
    d.set_item("improved", r.improved)?;
    Ok(d)
}

impl Observer for PyObserver {
    fn epoch_started(&mut self, epoch: usize, batches: u64) {
        self.shown = 0;
        Python::with_gil(|py| {
            self.event(py, |py, show, epochs, _| {
                match show {
                    Show::Nothing => {}
                    Show::Callback(f) => {
                        let e = dict(
                            py,
                            &[
                                ("event", "epoch_started".into_pyobject(py)?.into_any().unbind()),
                                ("epoch", epoch.into_pyobject(py)?.into_any().unbind()),
                                ("batches", batches.into_pyobject(py)?.into_any().unbind()),
                            ],
                        )?;
                        f.call1(py, (e,))?;
                    }
                    Show::Bars { tqdm: Some(tqdm), bar } => {
                        let kwargs = PyDict::new(py);
                        kwargs.set_item("total", batches)?;
                        kwargs.set_item("desc", format!("epoch {}/{epochs}", epoch + 1))?;
                        kwargs.set_item("unit", "batch")?;
                        kwargs.set_item("leave", false)?;
                        *bar = Some(tqdm.call(py, (), Some(&kwargs))?);
                    }
                    Show::Bars { tqdm: None, .. } => {}
                }
                Ok(())
            })
        })
    }

    fn batches_done(&mut self, done: u64) {
        let every_step = matches!(self.show, Show::Callback(_));
        let has_bar = matches!(self.show, Show::Bars { bar: Some(_), .. });
        let bar_due = has_bar && self.asked.elapsed() >= ASK_EVERY;
        if !(every_step || bar_due) {
            return;
        }
        let shown = std::mem::replace(&mut self.shown, done);
        Python::with_gil(|py| {
            self.event(py, |py, show, _, _| {
                match show {
                    Show::Callback(f) => {
                        let e = dict(
                            py,
                            &[
                                ("event", "batches_done".into_pyobject(py)?.into_any().unbind()),
                                ("done", done.into_pyobject(py)?.into_any().unbind()),
                            ],
                        )?;
                        f.call1(py, (e,))?;
                    }
                    Show::Bars { bar: Some(bar), .. } => {
                        bar.call_method1(py, "update", (done.saturating_sub(shown),))?;
                    }
                    _ => {}
                }
                Ok(())
            })
        })
    }

    fn epoch_finished(&mut self, r: &EpochReport) {
        Python::with_gil(|py| {
            self.event(py, |py, show, epochs, k| {
                match show {
                    Show::Nothing => {}
                    Show::Callback(f) => {
                        let e = epoch_dict(py, r)?;
                        e.set_item("event", "epoch_finished")?;
                        f.call1(py, (e,))?;
                    }
                    Show::Bars { bar, .. } => {
                        if let Some(bar) = bar.take() {
                            let total: u64 = bar.getattr(py, "total")?.extract(py)?;
                            let n: u64 = bar.getattr(py, "n")?.extract(py)?;
                            bar.call_method1(py, "update", (total.saturating_sub(n),))?;
                            bar.call_method0(py, "close")?;
                        }
                        let mut more = String::new();
                        if let Some(v) = r.validation {
                            more += &format!(" | validation HR@{k} {:.4}", v.hr);
                        }
                        let line = format!(
                            "epoch {:>3}/{epochs}: train {:.2} s ({:.0} samples/s) loss {:.4} | HR@{k} {:.4} NDCG@{k} {:.4} val loss {:.4}{more} | eval {:.2} s{}\n",
                            r.epoch + 1,
                            r.train_seconds,
                            r.train_throughput,
                            r.train_loss,
                            r.eval.hr,
                            r.eval.ndcg,
                            r.eval.validation_loss,
                            r.eval.seconds,
                            if r.improved { " *" } else { "" }
                        );
                        let stderr = py.import("sys")?.getattr("stderr")?;
                        stderr.call_method1("write", (line,))?;
                        stderr.call_method0("flush")?;
                    }
                }
                Ok(())
            })
        })
    }

    fn should_stop(&mut self) -> bool {
        if self.error.is_none() && self.asked.elapsed() >= ASK_EVERY {
            // Ctrl-C: Python's handler only sets a flag; it is seen here, between steps.
            self.asked = std::time::Instant::now();
            if let Err(e) = Python::with_gil(|py| py.check_signals()) {
                self.error = Some(e);
            }
        }
        self.error.is_some()
    }
}

fn parse<T: std::str::FromStr>(what: &str, value: &str) -> PyResult<T>
where
    T::Err: std::fmt::Display,
{
    value.parse::<T>().map_err(|e| raise(Kind::Value, format!("{what}: {e}")))
}

/// Trains and evaluates a model on a prepared dataset, as `ncf-train` does with the same flags
/// (the reference's ncf.py; its defaults are the reference's): each epoch trains, evaluates HR@k
/// and NDCG@k on the test lists, writes `model.pth` to checkpoint_dir when HR improves and the
/// training state every epoch, and appends to the DLLogger log at log_path.
///
/// Keyword arguments are ncf-train's flags with underscores: model ("neumf", "gmf", "mlp", "mf";
/// None: NeuMF), epochs, batch_size, valid_batch_size, factors, layers, negative_samples,
/// learning_rate, topk, seed (None: random), threshold, beta1, beta2, eps, dropout,
/// checkpoint_dir (None: nothing saved), load_checkpoint_path, mode ("train" or "test"),
/// grads_accumulated, amp, tf32, cpu_matmul ("auto", "onednn", "mkl"), eval ("sampled" or "full"),
/// eval_users, patience, log_path (None: no log), device ("auto", "cpu", "cuda", "cuda:N"),
/// resume (a checkpoint_dir to continue), pretrained_gmf with pretrained_mlp and alpha,
/// feature_spec_file.
///
/// progress: True (a tqdm bar per epoch when tqdm is installed, and a line per epoch on
/// sys.stderr), False (silent), or a callable given a dict per event ("event" is
/// "epoch_started", "batches_done" or "epoch_finished", the last with the epoch's figures).
///
/// The GIL is released while it trains. Ctrl-C stops it after the current step and raises
/// KeyboardInterrupt; the files are as the last finished epoch left them (resume=checkpoint_dir
/// continues from there). An exception raised by the progress callable stops it the same way.
///
/// Returns a dict: model, seed, epochs (a dict per epoch), best_epoch (0-based, as the log),
/// best_hr, best_ndcg, selected_by, train_throughput (mean samples/s), eval_throughput,
/// checkpoint (the path of model.pth, or None), log, reached_threshold, stopped_early.
#[pyfunction]
#[pyo3(
    text_signature = "(data, model=None, *, epochs=30, batch_size=1048576, valid_batch_size=1048576, factors=64, layers=[256, 256, 128, 64], negative_samples=4, learning_rate=0.0045, topk=10, seed=None, threshold=1.0, beta1=0.25, beta2=0.5, eps=1e-08, dropout=0.5, checkpoint_dir='/data/checkpoints/', load_checkpoint_path=None, mode='train', grads_accumulated=1, amp=False, tf32=True, cpu_matmul='auto', eval='sampled', eval_users=None, patience=None, log_path='log.json', device='auto', resume=None, pretrained_gmf=None, pretrained_mlp=None, alpha=0.5, feature_spec_file='feature_spec.yaml', progress=None)"
)]
#[pyo3(signature = (
    data, model=None, *, epochs=30, batch_size=1<<20, valid_batch_size=1<<20, factors=64,
    layers=vec![256, 256, 128, 64], negative_samples=4, learning_rate=0.0045, topk=10, seed=None,
    threshold=1.0, beta1=0.25, beta2=0.5, eps=1e-8, dropout=0.5,
    checkpoint_dir=Some(PathBuf::from("/data/checkpoints/")), load_checkpoint_path=None,
    mode="train", grads_accumulated=1, amp=false, tf32=true, cpu_matmul="auto", eval="sampled",
    eval_users=None, patience=None, log_path=Some(PathBuf::from("log.json")), device="auto",
    resume=None, pretrained_gmf=None, pretrained_mlp=None, alpha=0.5,
    feature_spec_file="feature_spec.yaml", progress=None
))]
#[allow(clippy::too_many_arguments)]
pub fn train<'py>(
    py: Python<'py>,
    data: PathBuf,
    model: Option<&str>,
    epochs: usize,
    batch_size: i64,
    valid_batch_size: i64,
    factors: i64,
    layers: Vec<i64>,
    negative_samples: i64,
    learning_rate: f64,
    topk: i64,
    seed: Option<u64>,
    threshold: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    dropout: f64,
    checkpoint_dir: Option<PathBuf>,
    load_checkpoint_path: Option<PathBuf>,
    mode: &str,
    grads_accumulated: usize,
    amp: bool,
    tf32: bool,
    cpu_matmul: &str,
    eval: &str,
    eval_users: Option<usize>,
    patience: Option<usize>,
    log_path: Option<PathBuf>,
    device: &str,
    resume: Option<PathBuf>,
    pretrained_gmf: Option<PathBuf>,
    pretrained_mlp: Option<PathBuf>,
    alpha: f64,
    feature_spec_file: &str,
    progress: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    // As ncf-train: an empty path writes nothing (the reference's `--checkpoint_dir ''`).
    let checkpoint_dir = checkpoint_dir.filter(|p| !p.as_os_str().is_empty());
    let log_path = log_path.filter(|p| !p.as_os_str().is_empty());
    let pretrained = match (pretrained_gmf, pretrained_mlp) {
        (Some(gmf), Some(mlp)) => Some(Pretrained { gmf, mlp, alpha }),
        (None, None) => None,
        _ => return Err(raise(Kind::Value, "pretrained_gmf and pretrained_mlp go together: give both or neither")),
    };
    let config = TrainConfig {
        data: data.clone(),
        model: model.map(|m| parse::<ModelKind>("model", m)).transpose()?,
        pretrained,
        feature_spec_file: feature_spec_file.to_owned(),
        epochs,
        batch_size,
        valid_batch_size,
        factors,
        layers,
        negative_samples,
        learning_rate,
        topk,
        seed,
        threshold,
        beta1,
        beta2,
        eps,
        dropout,
        checkpoint_dir: checkpoint_dir.clone(),
        load_checkpoint_path,
        mode: match mode {
            "train" => Mode::Train,
            "test" => Mode::Test,
            other => return Err(raise(Kind::Value, format!("mode: `{other}`: expected \"train\" or \"test\""))),
        },
        grads_accumulated,
        amp,
        tf32,
        cpu_matmul: parse::<CpuMatmul>("cpu_matmul", cpu_matmul)?,
        eval: match eval {
            "sampled" => EvalProtocol::Sampled,
            "full" => EvalProtocol::Full,
            other => return Err(raise(Kind::Value, format!("eval: `{other}`: expected \"sampled\" or \"full\""))),
        },
        eval_users,
        patience,
        log_path: log_path.clone(),
        device: parse::<DeviceChoice>("device", device)?
            .resolve()
            .map_err(|e| raise(Kind::Value, format!("device: {e}")))?,
        resume,
        replica_check: ReplicaCheck::Off,
    };
    let show = match progress {
        None => Show::Bars { tqdm: tqdm(py), bar: None },
        Some(p) if p.is_callable() => Show::Callback(p.clone().unbind()),
        Some(p) if p.is_truthy()? => Show::Bars { tqdm: tqdm(py), bar: None },
        Some(_) => Show::Nothing,
    };
    // What ncf-train's main does first, for the same speed: freed memory kept in the heap (see
    // cli-support). Not its MKL_CBWR=AVX2: setting the environment of a running process with
    // other threads is unsound, and MKL may have read it already; set it before starting Python.
    cli_support::keep_freed_memory();
    let mut observer = PyObserver { show, epochs, k: topk, error: None, shown: 0, asked: std::time::Instant::now() };
    let observer_ref = &mut observer;
    let result = py.allow_threads(move || -> Result<_, ncf_train::TrainError> {
        let mut trainer = Trainer::new(config)?;
        let name = trainer.model().name().to_owned();
        let seed = trainer.seed();
        let summary = trainer.run(observer_ref)?;
        Ok((name, seed, summary))
    });
    if let Show::Bars { bar: Some(bar), .. } = &observer.show {
        let _ = bar.call_method0(py, "close");
    }
    if let Some(e) = observer.error.take() {
        return Err(e);
    }
    let (name, seed, summary) = result.map_err(|e| to_py(&e))?;
    let out = PyDict::new(py);
    out.set_item("model", name)?;
    out.set_item("seed", seed)?;
    let epochs = PyList::empty(py);
    for r in &summary.epochs {
        epochs.append(epoch_dict(py, r)?)?;
    }
    out.set_item("epochs", epochs)?;
    out.set_item("best_epoch", summary.best_epoch)?;
    out.set_item("best_hr", summary.best_hr)?;
    // The best epoch's NDCG when it ran in this call (a resumed run's best may be older); a test
    // run's one evaluation otherwise.
    let best = match summary.best_epoch {
        Some(e) => summary.epochs.iter().find(|r| r.epoch == e),
        None => summary.epochs.first(),
    };
    out.set_item("best_ndcg", best.map(|r| r.eval.ndcg))?;
    out.set_item("selected_by", &summary.selected_by)?;
    let mean = |f: fn(&EpochReport) -> f64| {
        let v: Vec<f64> = summary.epochs.iter().map(f).filter(|x| *x > 0.0).collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    };
    out.set_item("train_throughput", mean(|r| r.train_throughput))?;
    out.set_item("eval_throughput", mean(|r| r.eval.throughput))?;
    let checkpoint = checkpoint_dir.map(|d| d.join("model.pth")).filter(|p| p.exists());
    out.set_item("checkpoint", checkpoint.map(|p| p.display().to_string()))?;
    out.set_item("log", log_path.map(|p| p.display().to_string()))?;
    out.set_item("reached_threshold", summary.reached_threshold)?;
    out.set_item("stopped_early", summary.stopped_early)?;
    Ok(out)
}

/// `tqdm.auto.tqdm` when tqdm is installed.
fn tqdm(py: Python<'_>) -> Option<PyObject> {
    py.import("tqdm.auto").and_then(|m| m.getattr("tqdm")).ok().map(|t| t.unbind())
}
