//! Dynamic batching across requests.
//!
//! Each model has one worker thread and one bounded queue of tokenized inputs. Requests enqueue
//! their inputs and wait; the worker takes as many queued inputs as fit a token budget —
//! whichever requests they came from — runs them as one forward pass and hands each request its
//! outputs. A request with 1,000 documents is therefore spread over several passes and shares
//! them with concurrent requests; there is no per-request item cap other than the queue's.
//!
//! The queue is bounded in inputs: a request that does not fit is refused at once with
//! [`Overloaded`] (the server answers 429 with a `Retry-After` estimated from recent throughput)
//! instead of waiting unboundedly, which keeps memory and latency bounded under overload.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use sift_models::{Embedder, Encoded, ModelError, RerankScore, Reranker};
use tokio::sync::oneshot;

use crate::metrics::Metrics;

/// A model that turns a batch of tokenized inputs into one output per input, in order.
///
/// Implemented by the two model kinds the server batches: embedders and rerankers (any
/// implementation of the [`Reranker`] seam).
pub trait BatchModel: Send + Sync + 'static {
    type Output: Send + 'static;
    fn run(&self, inputs: &[Encoded]) -> Result<Vec<Self::Output>, ModelError>;
}

impl BatchModel for Embedder {
    /// Pooled vectors *before* L2 normalisation: requests choose it (TEI's `normalize`).
    type Output = Vec<f32>;
    fn run(&self, inputs: &[Encoded]) -> Result<Vec<Vec<f32>>, ModelError> {
        self.embed_encoded_with(inputs, false, &mut |_| {})
    }
}

/// An embedder's unpooled token states (TEI's `/embed_all`). A queue of its own beside the
/// pooled one: its outputs are whole matrices, and a rarely used route should not change the
/// output type every embedding request goes through.
pub struct TokenStates(pub Arc<Embedder>);

impl BatchModel for TokenStates {
    type Output = Vec<Vec<f32>>;
    fn run(&self, inputs: &[Encoded]) -> Result<Vec<Vec<Vec<f32>>>, ModelError> {
        self.0.token_states(inputs)
    }
}

/// A rerank model behind the queue. A sized wrapper rather than `dyn Reranker` itself: the
/// compiler cannot prove handler futures `Send` for a trait object's elided lifetimes.
pub struct RerankModel(pub Arc<dyn Reranker>);

impl BatchModel for RerankModel {
    type Output = RerankScore;
    fn run(&self, inputs: &[Encoded]) -> Result<Vec<RerankScore>, ModelError> {
        self.0.score_pairs(inputs, &mut |_| {})
    }
}

/// Why a submitted request got no outputs.
#[derive(Debug, Clone)]
pub enum BatchError {
    /// The queue is full; retry after about this long.
    Overloaded { retry_after: Duration },
    /// The forward pass failed (a model error, not a client error).
    Failed(String),
}

/// Batching parameters.
#[derive(Debug, Clone, Copy)]
pub struct BatcherConfig {
    /// Most inputs waiting at once (across all requests) before new requests get 429.
    pub max_queued_inputs: usize,
    /// Most real (unpadded) tokens in one forward pass of the worker.
    pub max_batch_tokens: usize,
}

impl Default for BatcherConfig {
    fn default() -> Self {
        BatcherConfig {
            max_queued_inputs: 4096,
            max_batch_tokens: 16_384,
        }
    }
}

type Reply<O> = oneshot::Sender<Result<Vec<O>, BatchError>>;

struct Job<O> {
    results: Vec<Option<O>>,
    remaining: usize,
    reply: Reply<O>,
}

struct Queued {
    job: u64,
    slot: usize,
    input: Encoded,
}

struct Shared<O> {
    queue: VecDeque<Queued>,
    jobs: HashMap<u64, Job<O>>,
    next_job: u64,
    /// Exponentially weighted inputs per second, for Retry-After.
    throughput: f64,
    closed: bool,
}

/// A model behind a dynamic batching queue.
pub struct Batcher<M: BatchModel> {
    model: Arc<M>,
    shared: Arc<(Mutex<Shared<M::Output>>, Condvar)>,
    config: BatcherConfig,
    metrics: Arc<Metrics>,
    label: &'static str,
}

impl<M: BatchModel> Batcher<M> {
    /// Starts the worker thread. `label` names the model kind in metrics ("embed", "rerank").
    pub fn start(
        model: Arc<M>,
        config: BatcherConfig,
        metrics: Arc<Metrics>,
        label: &'static str,
    ) -> Self {
        let shared = Arc::new((
            Mutex::new(Shared {
                queue: VecDeque::new(),
                jobs: HashMap::new(),
                next_job: 0,
                throughput: 0.0,
                closed: false,
            }),
            Condvar::new(),
        ));
        let worker = Worker {
            model: model.clone(),
            shared: shared.clone(),
            config,
            metrics: metrics.clone(),
            label,
        };
        std::thread::Builder::new()
            .name(format!("sift-{label}-batcher"))
            .spawn(move || worker.run())
            .expect("spawning a thread only fails when the OS is out of resources");
        Batcher {
            model,
            shared,
            config,
            metrics,
            label,
        }
    }

    pub fn model(&self) -> &Arc<M> {
        &self.model
    }

    /// Runs `inputs` through the model with whatever else is queued; outputs in input order.
    /// Dropping the returned future abandons the inputs not yet run.
    pub async fn submit(&self, inputs: Vec<Encoded>) -> Result<Vec<M::Output>, BatchError> {
        if inputs.is_empty() {
            return Ok(Vec::new());
        }
        let (tx, rx) = oneshot::channel();
        {
            let (lock, cond) = &*self.shared;
            let mut s = lock.lock().unwrap_or_else(|p| p.into_inner());
            if s.queue.len() + inputs.len() > self.config.max_queued_inputs {
                // Time to drain what is queued plus this request at the recent rate.
                let rate = if s.throughput > 0.0 {
                    s.throughput
                } else {
                    10.0
                };
                let secs = ((s.queue.len() + inputs.len()) as f64 / rate)
                    .ceil()
                    .max(1.0);
                self.metrics.rejected(self.label);
                return Err(BatchError::Overloaded {
                    retry_after: Duration::from_secs(secs.min(600.0) as u64),
                });
            }
            let job = s.next_job;
            s.next_job += 1;
            let n = inputs.len();
            s.jobs.insert(
                job,
                Job {
                    results: (0..n).map(|_| None).collect(),
                    remaining: n,
                    reply: tx,
                },
            );
            s.queue
                .extend(inputs.into_iter().enumerate().map(|(slot, input)| Queued {
                    job,
                    slot,
                    input,
                }));
            self.metrics.queue_depth(self.label, s.queue.len());
            cond.notify_one();
        }
        rx.await
            .unwrap_or_else(|_| Err(BatchError::Failed("the batching worker stopped".into())))
    }

    /// Inputs waiting to run.
    pub fn queued(&self) -> usize {
        let (lock, _) = &*self.shared;
        lock.lock().unwrap_or_else(|p| p.into_inner()).queue.len()
    }
}

impl<M: BatchModel> Drop for Batcher<M> {
    fn drop(&mut self) {
        let (lock, cond) = &*self.shared;
        lock.lock().unwrap_or_else(|p| p.into_inner()).closed = true;
        cond.notify_all();
    }
}

struct Worker<M: BatchModel> {
    model: Arc<M>,
    shared: Arc<(Mutex<Shared<M::Output>>, Condvar)>,
    config: BatcherConfig,
    metrics: Arc<Metrics>,
    label: &'static str,
}

impl<M: BatchModel> Worker<M> {
    fn run(self) {
        let (lock, cond) = &*self.shared;
        loop {
            // Take a token-budgeted batch, skipping inputs whose requester went away.
            let batch: Vec<Queued> = {
                let mut s = lock.lock().unwrap_or_else(|p| p.into_inner());
                while s.queue.is_empty() && !s.closed {
                    s = cond.wait(s).unwrap_or_else(|p| p.into_inner());
                }
                if s.closed && s.queue.is_empty() {
                    return;
                }
                let mut batch = Vec::new();
                let mut tokens = 0;
                while let Some(front) = s.queue.front() {
                    let abandoned = s.jobs.get(&front.job).is_none_or(|j| j.reply.is_closed());
                    if abandoned {
                        let q = s.queue.pop_front().expect("front exists");
                        s.jobs.remove(&q.job);
                        continue;
                    }
                    let len = front.input.len();
                    if !batch.is_empty() && tokens + len > self.config.max_batch_tokens {
                        break;
                    }
                    tokens += len;
                    batch.push(s.queue.pop_front().expect("front exists"));
                }
                self.metrics.queue_depth(self.label, s.queue.len());
                batch
            };
            if batch.is_empty() {
                continue;
            }
            let started = Instant::now();
            let inputs: Vec<Encoded> = batch.iter().map(|q| q.input.clone()).collect();
            let tokens: usize = inputs.iter().map(|e| e.len()).sum();
            // A panicking model must not take the worker (and every later request) with it.
            let outcome =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.model.run(&inputs)))
                    .unwrap_or_else(|_| Err(ModelError::Internal("the model panicked".into())));
            let outcome = match outcome {
                Ok(out) if out.len() != inputs.len() => Err(ModelError::Internal(format!(
                    "{} outputs for {} inputs",
                    out.len(),
                    inputs.len()
                ))),
                other => other,
            };
            self.metrics.batch(self.label, inputs.len(), tokens);

            let mut s = lock.lock().unwrap_or_else(|p| p.into_inner());
            let rate = inputs.len() as f64 / started.elapsed().as_secs_f64().max(1e-6);
            s.throughput = if s.throughput == 0.0 {
                rate
            } else {
                0.8 * s.throughput + 0.2 * rate
            };
            match outcome {
                Ok(outputs) => {
                    for (q, out) in batch.into_iter().zip(outputs) {
                        let done = match s.jobs.get_mut(&q.job) {
                            Some(job) => {
                                job.results[q.slot] = Some(out);
                                job.remaining -= 1;
                                job.remaining == 0
                            }
                            None => false,
                        };
                        if done {
                            let job = s.jobs.remove(&q.job).expect("job exists");
                            let results = job.results.into_iter().flatten().collect();
                            let _ = job.reply.send(Ok(results));
                        }
                    }
                }
                Err(e) => {
                    // The whole pass failed: fail every request that had inputs in it, and drop
                    // their other queued inputs.
                    let failed: std::collections::HashSet<u64> =
                        batch.iter().map(|q| q.job).collect();
                    for id in &failed {
                        if let Some(job) = s.jobs.remove(id) {
                            let _ = job.reply.send(Err(BatchError::Failed(e.to_string())));
                        }
                    }
                    s.queue.retain(|q| !failed.contains(&q.job));
                }
            }
        }
    }
}
