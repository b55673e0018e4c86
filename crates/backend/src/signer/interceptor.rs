//! An SDK interceptor on every S3 call: it caps how much of an error answer is read (the SDK
//! would otherwise buffer whatever an endpoint sends before parsing it) and counts failed calls
//! by operation for `/metrics`.

use aws_sdk_s3::config::interceptors::{BeforeDeserializationInterceptorContextMut, FinalizerInterceptorContextRef};
use aws_sdk_s3::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_types::body::SdkBody;

use crate::limits::MAX_S3_ERROR_BODY_BYTES;

#[derive(Debug)]
pub struct CappedErrorsCounted;

impl Intercept for CappedErrorsCounted {
    fn name(&self) -> &'static str {
        "CappedErrorsCounted"
    }

    fn modify_before_deserialization(
        &self,
        context: &mut BeforeDeserializationInterceptorContextMut<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let response = context.response_mut();
        if response.status().is_success() {
            // Success bodies (listings) are bounded by the request itself (max-keys).
            return Ok(());
        }
        let body = response.take_body();
        *response.body_mut() =
            body.map(|body| SdkBody::from_body_1_x(http_body_util::Limited::new(body, MAX_S3_ERROR_BODY_BYTES)));
        Ok(())
    }

    fn read_after_execution(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(Err(error)) = context.output_or_error() {
            // A missing object is an answer, not an S3 failure.
            let not_found = context.response().is_some_and(|r| r.status().as_u16() == 404);
            if !not_found {
                let operation = cfg.load::<Metadata>().map_or("unknown", Metadata::name);
                tracing::debug!(%operation, ?error, "an S3 call failed");
                crate::ops::metrics::global().s3_error(operation);
            }
        }
        Ok(())
    }
}
