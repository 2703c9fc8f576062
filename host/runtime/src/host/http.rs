//! Outbound `wasi:http`: requests reach only the hosts the grant lists.
//!
//! The check happens where the request is sent, on the parsed URI authority, so no
//! header or redirect trick changes which host is contacted: a redirect is a new
//! request from the guest and is checked again.

use std::future::Future;

use http_body_util::BodyExt;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

/// The allow-list of one sandbox; empty denies every request.
#[derive(Debug, Clone, Default)]
pub struct OutboundPolicy {
    allowed_hosts: Vec<String>,
}

impl OutboundPolicy {
    /// Allows exactly `hosts` (lowercase).
    pub fn new(hosts: Vec<String>) -> OutboundPolicy {
        OutboundPolicy {
            allowed_hosts: hosts,
        }
    }

    /// Whether a request to `host` may leave the sandbox.
    pub fn allows(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.allowed_hosts.iter().any(|h| *h == host)
    }
}

type SendResult = Result<
    (
        http::Response<WasiBody>,
        Box<dyn Future<Output = Result<(), Error>> + Send>,
    ),
    Error,
>;

impl WasiHttpHooks for OutboundPolicy {
    // An outgoing body buffers at most two chunks in the host (one in the channel, one being
    // written) until it is sent; a guest that never sends it holds no more than that.
    fn p2_outgoing_body_buffer_chunks(&mut self) -> usize {
        1
    }

    fn p2_outgoing_body_chunk_size(&mut self) -> usize {
        crate::policy::HTTP_BODY_CHUNK_BYTES
    }

    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> Box<dyn Future<Output = SendResult> + Send> {
        drop(fut);
        let host = request.uri().host().unwrap_or_default().to_string();
        if !self.allows(&host) {
            tracing::info!(host, "outbound HTTP denied: host not in the plugin's grant");
            return Box::new(async { Err(Error::HttpRequestDenied) });
        }
        Box::new(async move {
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((
                response.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn Future<Output = _> + Send>,
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_listed_hosts_are_allowed() {
        let p = OutboundPolicy::new(vec!["api.example.com".into()]);
        assert!(p.allows("api.example.com"));
        assert!(p.allows("API.Example.com."));
        assert!(!p.allows("example.com"));
        assert!(!p.allows("api.example.com.evil.test"));
        assert!(!OutboundPolicy::default().allows("api.example.com"));
    }
}
