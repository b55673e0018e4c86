//! A multipart upload through presigned part URLs: parts go up in parallel (bounded by the
//! engine's shared permits), URLs are signed in batches as the parts need them and signed
//! again when they have expired or are about to, and failed parts are retried by the policy.
//! Each part's CRC32C is signed into its URL; one sequential pass checksums the parts just ahead
//! of the uploads, so the first bytes go out at once instead of after a whole-file read.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, Semaphore};

use super::{classify, put_range, Next, PartPlan, Range, RetryNow, RetryPolicy, TransferError};
use crate::backend::{CompletedPart, MultipartUpload, PartToSign, SignedPart, SigningBackend};
use crate::control::Gate;
use crate::Error;

/// Told about each retry: the attempt that failed, the wait before the next, and why.
pub type OnRetry = Arc<dyn Fn(u32, Duration, &TransferError) + Send + Sync>;

/// Parts signed per backend round trip.
const SIGN_BATCH: u32 = 64;
/// A URL this close to expiry is signed again before use rather than sent and refused.
const RESIGN_MARGIN: Duration = Duration::from_secs(60);
/// Fresh URLs asked for one part before giving up on it (a URL refused twice after re-signing
/// is not an expiry problem).
const MAX_RESIGNS: u32 = 2;

pub struct MultipartRun<'a> {
    /// The client for each attempt, asked afresh: after sleep the engine swaps in one without
    /// the connections that went stale.
    pub client: &'a (dyn Fn() -> reqwest::Client + Send + Sync),
    pub backend: &'a dyn SigningBackend,
    pub upload: &'a MultipartUpload,
    pub path: &'a Path,
    pub plan: PartPlan,
    /// Shared with every other transfer of the engine: one permit per request in flight.
    pub permits: &'a Semaphore,
    /// The engine's bandwidth limit, shared by every request.
    pub throttle: &'a Arc<super::Throttle>,
    pub max_in_flight: usize,
    pub retry: RetryPolicy,
    /// Ends a part's backoff early when the machine wakes or the internet returns.
    pub retry_now: &'a RetryNow,
    /// Called with the bytes of the whole file sent so far.
    pub progress: Arc<dyn Fn(u64) + Send + Sync>,
    pub on_retry: OnRetry,
    /// Pause holds parts back (and sends interrupted ones again on resume).
    pub gate: Gate,
    /// Parts S3 already holds from before a restart (with their checksums): not sent again.
    pub finished: &'a [CompletedPart],
    /// Told about each part the moment S3 acknowledged it, so a crash loses no finished part.
    pub on_part_done: &'a (dyn Fn(&CompletedPart) + Send + Sync),
}

/// Uploads every part and returns them in order, ready for CompleteMultipartUpload, with S3's
/// composite checksum of the object (`crc32c:<base64>-<parts>`, see [`crate::checksum`]). On
/// error the caller aborts the upload.
pub async fn upload_parts(run: &MultipartRun<'_>) -> Result<(Vec<CompletedPart>, String), Error> {
    let checksums = PartChecksums::new(run.plan.part_count);
    let book = UrlBook::default();
    let next = AtomicU32::new(1);
    let already: u64 = run.finished.iter().map(|p| run.plan.range(p.part_number).1).sum();
    (run.progress)(already);
    let sent = Arc::new(AtomicU64::new(already));
    let mut done = Vec::with_capacity(run.plan.part_count as usize);
    done.extend_from_slice(run.finished);
    let done = Mutex::new(done);
    let workers = run.max_in_flight.clamp(1, run.plan.part_count as usize);
    let sending = futures_util::future::try_join_all(
        (0..workers).map(|_| send_parts(run, &book, &checksums, &next, &sent, &done)),
    );
    futures_util::future::try_join(checksums.compute(run), sending).await?;
    let mut parts = done.into_inner().unwrap_or_else(|p| p.into_inner());
    parts.sort_by_key(|p| p.part_number);
    Ok((parts, checksums.composite()))
}

/// The parts' CRC32Cs, filled in order by one pass over the file; senders wait for theirs.
struct PartChecksums {
    digests: Mutex<Vec<String>>,
    hashed: watch::Sender<u32>,
}

impl PartChecksums {
    fn new(parts: u32) -> Self {
        PartChecksums { digests: Mutex::new(Vec::with_capacity(parts as usize)), hashed: watch::channel(0).0 }
    }

    async fn compute(&self, run: &MultipartRun<'_>) -> Result<(), Error> {
        for number in 1..=run.plan.part_count {
            let kept = run.finished.iter().find(|p| p.part_number == number).and_then(|p| p.checksum_crc32c.clone());
            if let Some(digest) = kept {
                self.digests.lock().unwrap_or_else(|p| p.into_inner()).push(digest);
                self.hashed.send_replace(number);
                continue;
            }
            let (offset, len) = run.plan.range(number);
            let path = run.path.to_owned();
            let hashed = tokio::task::spawn_blocking(move || crate::checksum::crc32c_range(&path, offset, len)).await;
            let changed = |detail: String| TransferError::FileChanged { path: run.path.display().to_string(), detail };
            let digest = hashed.map_err(|e| changed(e.to_string()))?.map_err(|e| changed(e.to_string()))?;
            self.digests.lock().unwrap_or_else(|p| p.into_inner()).push(digest);
            self.hashed.send_replace(number);
        }
        Ok(())
    }

    /// Waits until part `number` is hashed; returns how many parts are.
    async fn wait_for(&self, number: u32) -> u32 {
        let mut hashed = self.hashed.subscribe();
        // The sender lives as long as `self`, so this only ends with the value reached.
        let reached = hashed.wait_for(|n| *n >= number).await.map(|n| *n);
        reached.unwrap_or(number)
    }

    fn get(&self, number: u32) -> Option<String> {
        self.digests.lock().unwrap_or_else(|p| p.into_inner()).get(number as usize - 1).cloned()
    }

    fn composite(&self) -> String {
        crate::checksum::composite_crc32c(&self.digests.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// One worker: takes the next unsent part until there are none.
async fn send_parts(
    run: &MultipartRun<'_>,
    book: &UrlBook,
    checksums: &PartChecksums,
    next: &AtomicU32,
    sent: &Arc<AtomicU64>,
    done: &Mutex<Vec<CompletedPart>>,
) -> Result<(), Error> {
    loop {
        let number = next.fetch_add(1, Ordering::Relaxed);
        if number > run.plan.part_count {
            return Ok(());
        }
        if run.finished.iter().any(|p| p.part_number == number) {
            continue;
        }
        let etag = send_part(run, book, checksums, number, sent).await?;
        let part =
            CompletedPart { part_number: number, etag, checksum_sha256: None, checksum_crc32c: checksums.get(number) };
        (run.on_part_done)(&part);
        done.lock().unwrap_or_else(|p| p.into_inner()).push(part);
    }
}

async fn send_part(
    run: &MultipartRun<'_>,
    book: &UrlBook,
    checksums: &PartChecksums,
    number: u32,
    sent: &Arc<AtomicU64>,
) -> Result<String, Error> {
    let (offset, len) = run.plan.range(number);
    let range = Range { offset, len, file_size: run.plan.size };
    let (mut attempt, mut resigns, mut force_sign) = (0u32, 0u32, false);
    let mut gate = run.gate.clone();
    loop {
        gate.wait_open().await.map_err(|_| Error::Cancelled)?;
        let _permit = run.permits.acquire_many(super::permits_for(len)).await.map_err(|_| Error::ShuttingDown)?;
        let signed = book.url_for(run, checksums, number, force_sign).await?;
        let this_attempt = Arc::new(AtomicU64::new(0));
        let progress = {
            let this_attempt = this_attempt.clone();
            let report = run.progress.clone();
            let sent = sent.clone();
            Arc::new(move |bytes: u64| {
                let before = this_attempt.swap(bytes, Ordering::Relaxed);
                report(sent.fetch_add(bytes - before, Ordering::Relaxed) + bytes - before);
            })
        };
        let client = (run.client)();
        let sending = put_range(&client, &signed.url, &signed.headers, run.path, range, progress, run.throttle);
        let result = tokio::select! {
            result = sending => result,
            _ = gate.closed() => {
                // Paused or cancelled mid-part: this part goes again from its start later.
                sent.fetch_sub(this_attempt.swap(0, Ordering::Relaxed), Ordering::Relaxed);
                continue;
            }
        };
        match result {
            Ok(Some(etag)) => return Ok(etag),
            Ok(None) => return Err(TransferError::MissingEtag { part: number }.into()),
            Err(error) => {
                // What this attempt sent will be sent again: take it back out of the progress.
                sent.fetch_sub(this_attempt.swap(0, Ordering::Relaxed), Ordering::Relaxed);
                attempt += 1;
                match classify(&error) {
                    Next::Retry if attempt < run.retry.max_attempts => {
                        tracing::info!(part = number, attempt, "part failed, retrying: {error}");
                        let delay = run.retry.delay(attempt);
                        (run.on_retry)(attempt, delay, &error);
                        drop(_permit);
                        run.retry_now.wait_out(delay).await;
                        force_sign = false;
                    }
                    Next::Resign if resigns < MAX_RESIGNS => {
                        tracing::info!(part = number, "part URL refused, signing it again: {error}");
                        resigns += 1;
                        force_sign = true;
                    }
                    _ => return Err(error.into()),
                }
            }
        }
    }
}

/// Signed part URLs, fetched in batches on demand. One signing request at a time: workers that
/// need a URL meanwhile wait for that batch instead of asking for the same parts again.
#[derive(Default)]
struct UrlBook {
    signed: tokio::sync::Mutex<HashMap<u32, SignedPart>>,
}

impl UrlBook {
    async fn url_for(
        &self,
        run: &MultipartRun<'_>,
        checksums: &PartChecksums,
        number: u32,
        force: bool,
    ) -> Result<SignedPart, Error> {
        let mut signed = self.signed.lock().await;
        if !force {
            if let Some(part) = signed.get(&number).filter(|p| is_fresh(p)) {
                return Ok(part.clone());
            }
        }
        // Sign this part and the following ones already hashed, in one round trip.
        let hashed = checksums.wait_for(number).await;
        let last = number.saturating_add(SIGN_BATCH - 1).min(hashed);
        let wanted: Vec<PartToSign> = (number..=last)
            .filter(|n| *n == number || !signed.get(n).is_some_and(is_fresh))
            .filter(|n| *n == number || !run.finished.iter().any(|p| p.part_number == *n))
            .map(|n| PartToSign {
                part_number: n,
                size: run.plan.range(n).1,
                checksum_sha256: None,
                checksum_crc32c: checksums.get(n),
            })
            .collect();
        for part in run.backend.sign_parts(run.upload, &wanted).await? {
            signed.insert(part.part_number, part);
        }
        signed.get(&number).cloned().ok_or_else(|| {
            Error::Backend(crate::backend::BackendError::BadResponse {
                url: String::new(),
                detail: format!("no URL came back for part {number}"),
            })
        })
    }
}

fn is_fresh(part: &SignedPart) -> bool {
    part.expires_at.is_none_or(|at| at - time::OffsetDateTime::now_utc() > RESIGN_MARGIN)
}
