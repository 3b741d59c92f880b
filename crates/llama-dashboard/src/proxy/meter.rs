//! Measures a proxied response as it streams through, without holding it back: when the first
//! bytes of content arrived (time to first token), and, from the `timings` and `usage` objects
//! llama-server puts in its last chunk (or its whole JSON answer), how many tokens were made and
//! how fast. Each frame is passed on the moment it arrives; only the last few kilobytes are kept
//! to read those figures at the end.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use serde::Serialize;
use serde_json::Value;

/// Bytes of the response's end kept to read its figures.
const TAIL: usize = 64 * 1024;

/// What one proxied request did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RequestRecord {
    /// The endpoint, e.g. `/v1/chat/completions`.
    pub endpoint: String,
    /// The model as the client named it.
    pub model: String,
    /// llama-server's status.
    pub status: u16,
    /// Milliseconds from forwarding the request to the first content bytes.
    pub ttft_ms: Option<f64>,
    /// Milliseconds until the response ended.
    pub duration_ms: f64,
    /// Tokens generated (`timings.predicted_n` or `usage.completion_tokens`).
    pub tokens: Option<u64>,
    /// Prompt tokens.
    pub prompt_tokens: Option<u64>,
    /// Generation speed reported by llama-server (`timings.predicted_per_second`).
    pub tokens_per_second: Option<f64>,
    /// The client went away before the end (the upstream request was dropped with it).
    pub cancelled: bool,
    /// Unix seconds when it started.
    pub started_at: i64,
}

/// Called once with the finished record.
pub type Finish = Arc<dyn Fn(RequestRecord) + Send + Sync>;

/// A response body that measures what passes through it.
pub struct Metered<B> {
    inner: B,
    started: Instant,
    record: RequestRecord,
    tail: Vec<u8>,
    done: bool,
    finish: Finish,
}

impl<B> std::fmt::Debug for Metered<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metered")
            .field("record", &self.record)
            .finish()
    }
}

impl<B> Metered<B> {
    /// Wraps `inner`; `record` carries what is known before the body (endpoint, model, status).
    pub fn new(inner: B, started: Instant, record: RequestRecord, finish: Finish) -> Metered<B> {
        Metered {
            inner,
            started,
            record,
            tail: Vec::new(),
            done: false,
            finish,
        }
    }

    fn observe(&mut self, data: &[u8]) {
        if self.record.ttft_ms.is_none() && !data.is_empty() {
            self.record.ttft_ms = Some(self.started.elapsed().as_secs_f64() * 1000.0);
        }
        self.tail.extend_from_slice(data);
        // Trimmed in batches, so a long stream does not move the tail on every token.
        if self.tail.len() > 2 * TAIL {
            let cut = self.tail.len() - TAIL;
            self.tail.drain(..cut);
        }
    }

    fn end(&mut self, cancelled: bool) {
        if self.done {
            return;
        }
        self.done = true;
        self.record.cancelled = cancelled;
        self.record.duration_ms = self.started.elapsed().as_secs_f64() * 1000.0;
        read_figures(&self.tail, &mut self.record);
        (self.finish)(self.record.clone());
    }
}

/// Fills tokens and speed from the last JSON object that carries `timings` or `usage`: the
/// last `data:` line of a stream that has one, or else the whole body of a plain answer. Only
/// the lines that name one of those keys are parsed, from the end, so a long stream's tail
/// costs a byte scan rather than a parse of every chunk in it.
pub fn read_figures(tail: &[u8], record: &mut RequestRecord) {
    let lines = tail
        .rsplit(|&b| b == b'\n')
        .filter_map(|line| line.trim_ascii().strip_prefix(b"data:"))
        .map(<[u8]>::trim_ascii)
        .filter(|data| {
            data.starts_with(b"{") && (names(data, b"\"timings\"") || names(data, b"\"usage\""))
        });
    for candidate in lines.chain(std::iter::once(tail.trim_ascii())) {
        if let Ok(value) = serde_json::from_slice::<Value>(candidate)
            && fill(&value, record)
        {
            return;
        }
    }
}

/// Whether `data` holds `key` anywhere.
fn names(data: &[u8], key: &[u8]) -> bool {
    data.windows(key.len()).any(|w| w == key)
}

/// Takes the figures from one answer object; false when it carries neither `timings` nor
/// `usage`.
fn fill(value: &Value, record: &mut RequestRecord) -> bool {
    let timings = &value["timings"];
    let usage = &value["usage"];
    if timings.is_null() && usage.is_null() {
        return false;
    }
    record.tokens = timings["predicted_n"]
        .as_u64()
        .or_else(|| usage["completion_tokens"].as_u64());
    record.prompt_tokens = timings["prompt_n"]
        .as_u64()
        .or_else(|| usage["prompt_tokens"].as_u64());
    record.tokens_per_second = timings["predicted_per_second"].as_f64();
    true
}

impl<B> HttpBody for Metered<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.observe(data);
                }
                // A body of known length is complete with its last byte; the server may drop
                // it then without asking for the end.
                if this.inner.is_end_stream() {
                    this.end(false);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(None) => {
                this.end(false);
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                this.end(true);
                Poll::Ready(Some(Err(e)))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> Drop for Metered<B> {
    fn drop(&mut self) {
        // Dropped before its end: the client disconnected.
        self.end(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_come_from_the_last_chunk_or_the_whole_answer() {
        let stream = b"data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n\
            data: {\"choices\":[],\"timings\":{\"prompt_n\":5,\"predicted_n\":16,\"predicted_per_second\":80.5}}\n\n\
            data: [DONE]\n\n";
        let mut r = RequestRecord::default();
        read_figures(stream, &mut r);
        assert_eq!(
            (r.tokens, r.prompt_tokens, r.tokens_per_second),
            (Some(16), Some(5), Some(80.5))
        );
        let plain = br#"{"choices":[],"usage":{"completion_tokens":7,"prompt_tokens":3}}"#;
        let mut r = RequestRecord::default();
        read_figures(plain, &mut r);
        assert_eq!(
            (r.tokens, r.prompt_tokens, r.tokens_per_second),
            (Some(7), Some(3), None)
        );
        let mut r = RequestRecord::default();
        read_figures(b"not json", &mut r);
        assert_eq!(r.tokens, None);
    }

    fn metered(
        body: &'static [u8],
        seen: Arc<std::sync::Mutex<Vec<RequestRecord>>>,
    ) -> Metered<http_body_util::Full<Bytes>> {
        let finish: Finish = Arc::new(move |r| seen.lock().unwrap().push(r));
        Metered::new(
            http_body_util::Full::new(Bytes::from_static(body)),
            Instant::now(),
            RequestRecord::default(),
            finish,
        )
    }

    #[tokio::test]
    async fn a_whole_answer_read_to_its_last_byte_is_not_cancelled() {
        use http_body_util::BodyExt;
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let plain = br#"{"usage":{"completion_tokens":3,"prompt_tokens":2}}"#;
        let mut body = metered(plain, Arc::clone(&seen));
        // Read the one frame, then drop it without polling for the end, as servers do when the
        // length is known.
        let frame = body.frame().await.unwrap().unwrap();
        assert_eq!(frame.data_ref().unwrap().len(), plain.len());
        drop(body);
        let records = seen.lock().unwrap();
        assert_eq!(records.len(), 1, "recorded once");
        assert!(!records[0].cancelled);
        assert_eq!(records[0].tokens, Some(3));

        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        drop(metered(plain, Arc::clone(&seen)));
        assert!(seen.lock().unwrap()[0].cancelled, "dropped unread");
    }
}
