//! Reading what is left of a refused request's body before answering.
//!
//! Many clients send a whole body before they read a response; answering
//! while they still send makes them see a broken connection instead of the
//! error. So a refused body is read and thrown away first, within two
//! bounds: bytes, and time, so that a body dripping in cannot hold the
//! connection (the body timeout alone restarts with every byte).

use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};

/// Discards up to `max_bytes` of `body`, for at most `max_time`.
pub async fn drain<S, E>(body: &mut S, max_bytes: u64, max_time: Duration)
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    let reading = async {
        let mut drained = 0u64;
        while drained < max_bytes
            && let Some(Ok(chunk)) = body.next().await
        {
            drained += chunk.len() as u64;
        }
    };
    let _ = tokio::time::timeout(max_time, reading).await;
}
