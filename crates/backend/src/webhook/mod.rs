//! Completion webhooks: the organisation's app learns of every recorded upload (the Rails
//! guide's `POST api/attachments`, done by the backend). Rows come from the store's outbox,
//! written with the record; this worker claims due rows, POSTs each body signed with
//! HMAC-SHA256 and an `Idempotency-Key`, and retries with [`DeliveryPolicy`] until the receiver
//! answers 2xx. Delivery is at least once (an instance may die after the POST, before marking
//! it): receivers deduplicate by the key.

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::store::{Db, PendingWebhook};

/// The header that carries `sha256=<hex HMAC-SHA256 of the body with the secret>`.
pub const SIGNATURE_HEADER: &str = "X-Dropship-Signature";
/// The header that carries the record's stable id (the client upload id; for rails records
/// `rails-<hex SHA-256 of the key>`).
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";

/// Where recorded uploads are announced.
#[derive(Clone)]
pub struct WebhookSettings {
    pub url: reqwest::Url,
    pub secret: String,
}

impl std::fmt::Debug for WebhookSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret never reaches a log.
        f.debug_struct("WebhookSettings").field("url", &self.url.as_str()).field("secret", &"…").finish()
    }
}

/// How deliveries are paced: the documented values of docs/backend-api.md.
#[derive(Debug, Clone, Copy)]
pub struct DeliveryPolicy {
    /// Wait after the first failure; each further failure doubles it.
    pub first_retry: Duration,
    /// The longest wait between two attempts.
    pub max_retry: Duration,
    /// How long a claimed row stays hidden from other instances: longer than one request can
    /// take, so only a dead instance's rows come due again.
    pub lease: Duration,
    /// One POST may take this long before it counts as failed.
    pub request_timeout: Duration,
    /// How often the outbox is looked at when this instance wrote nothing (rows written by
    /// other instances, retries coming due).
    pub poll: Duration,
    /// Rows claimed at once.
    pub batch: u32,
}

impl DeliveryPolicy {
    pub const DEFAULT: DeliveryPolicy = DeliveryPolicy {
        first_retry: Duration::from_secs(1),
        max_retry: Duration::from_secs(300),
        lease: Duration::from_secs(60),
        request_timeout: Duration::from_secs(10),
        poll: Duration::from_secs(1),
        batch: 16,
    };

    /// The wait before the next attempt, after `failures` failed ones (1 → first_retry):
    /// 1 s, 2 s, 4 s … up to 5 minutes, then every 5 minutes, without end.
    pub fn retry_after(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        self.first_retry.saturating_mul(1u32 << doublings).min(self.max_retry)
    }
}

/// `sha256=<hex>` of `body` under `secret`, as [`SIGNATURE_HEADER`] carries it.
pub fn signature(secret: &str, body: &[u8]) -> String {
    // HMAC takes keys of any length; new_from_slice cannot fail for it.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// A running delivery worker; [`WebhookWorker::shut_down`] stops it between two deliveries.
pub struct WebhookWorker {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl WebhookWorker {
    pub fn start(db: Db, settings: WebhookSettings, policy: DeliveryPolicy) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(policy.request_timeout)
            .user_agent(concat!("dropship-backend/", env!("CARGO_PKG_VERSION")))
            // A receiver that redirects is misconfigured: following would re-POST elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let (stop, stopped) = watch::channel(false);
        let deliverer = Deliverer { db, settings, policy, http };
        let task = tokio::spawn(deliverer.run(stopped));
        Ok(Self { stop, task })
    }

    /// Asks the worker to stop and waits for it: a delivery in flight finishes (at most the
    /// request timeout); rows it had claimed but not sent come due again after their lease.
    pub async fn shut_down(self) {
        let _ = self.stop.send(true);
        if let Err(error) = self.task.await {
            tracing::error!(%error, "the webhook worker failed");
        }
    }
}

struct Deliverer {
    db: Db,
    settings: WebhookSettings,
    policy: DeliveryPolicy,
    http: reqwest::Client,
}

impl Deliverer {
    async fn run(self, mut stopped: watch::Receiver<bool>) {
        tracing::info!(url = %self.settings.url, "webhook worker started");
        while !*stopped.borrow() {
            let claimed = match self.db.claim_webhooks(self.policy.batch, self.policy.lease).await {
                Ok(claimed) => claimed,
                Err(error) => {
                    tracing::warn!(%error, "cannot read the webhook outbox");
                    Vec::new()
                }
            };
            let full = claimed.len() >= self.policy.batch as usize;
            for webhook in claimed {
                if *stopped.borrow() {
                    // Unsent rows come due again when their lease runs out.
                    break;
                }
                self.deliver(webhook).await;
            }
            if full {
                continue;
            }
            tokio::select! {
                _ = stopped.changed() => {}
                () = self.db.outbox_written() => {}
                () = tokio::time::sleep(self.policy.poll) => {}
            }
        }
        tracing::info!("webhook worker stopped");
    }

    async fn deliver(&self, webhook: PendingWebhook) {
        let result = self
            .http
            .post(self.settings.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, signature(&self.settings.secret, webhook.body.as_bytes()))
            .header(IDEMPOTENCY_HEADER, &webhook.idempotency_key)
            .body(webhook.body.clone())
            .send()
            .await;
        let failure = match result {
            Ok(response) if response.status().is_success() => None,
            Ok(response) => Some(format!("the receiver answered HTTP {}", response.status().as_u16())),
            Err(error) => Some(format!("the receiver could not be reached: {error}")),
        };
        let marked = match failure {
            None => {
                tracing::debug!(key = %webhook.idempotency_key, "webhook delivered");
                self.db.webhook_delivered(webhook.id).await
            }
            Some(why) => {
                let retry_in = self.policy.retry_after(webhook.attempts + 1);
                tracing::warn!(
                    key = %webhook.idempotency_key,
                    attempts = webhook.attempts + 1,
                    retry_in_ms = retry_in.as_millis() as u64,
                    %why,
                    "webhook not delivered"
                );
                self.db.webhook_failed(webhook.id, retry_in, why).await
            }
        };
        if let Err(error) = marked {
            // The row stays leased and comes due again: the receiver may see it twice.
            tracing::warn!(%error, key = %webhook.idempotency_key, "cannot mark the webhook");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_the_hex_hmac_sha256_of_the_body() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
            "what Rails' OpenSSL::HMAC.hexdigest(\"SHA256\", secret, body) computes"
        );
    }

    #[test]
    fn retries_double_from_one_second_up_to_five_minutes() {
        let policy = DeliveryPolicy::DEFAULT;
        let waits: Vec<u64> = (1..=11).map(|n| policy.retry_after(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300], "doubling, capped");
        assert_eq!(policy.retry_after(u32::MAX), Duration::from_secs(300), "no overflow after many failures");
    }

    #[test]
    fn the_secret_stays_out_of_debug_output() {
        let settings =
            WebhookSettings { url: reqwest::Url::parse("https://app.example.com/h").unwrap(), secret: "s3cr3t".into() };
        assert!(!format!("{settings:?}").contains("s3cr3t"), "never logged");
    }
}
