//! One DNS exchange over TCP: a message out, its answer back, within a time limit.
//!
//! TCP rather than UDP: an update or a large record set never needs a truncation retry, and
//! an answer cannot be spoofed by a packet from elsewhere. Every failure to reach the server is
//! [transient](ProviderError::transient): the engine tries again with backoff.

use std::net::SocketAddr;
use std::time::Duration;

use fediversity_engine::{ProviderError, ProviderResult};
use hickory_proto::op::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long one exchange (connect, send, answer) may take.
pub(crate) const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);

/// Sends `request` (already encoded) to `server` and returns the raw answer, checked to carry
/// the request's id. `what` names the exchange in errors.
pub(crate) async fn exchange(
    server: SocketAddr,
    request: &[u8],
    id: u16,
    what: &str,
) -> ProviderResult<Vec<u8>> {
    let answer = tokio::time::timeout(EXCHANGE_TIMEOUT, send_and_receive(server, request))
        .await
        .map_err(|_| {
            ProviderError::transient(format!(
                "DNS server {server} did not answer {what} within {}s",
                EXCHANGE_TIMEOUT.as_secs()
            ))
        })?
        .map_err(|e| {
            ProviderError::transient(format!("DNS server {server}: {what} failed: {e}"))
        })?;
    let answer_id = answer
        .get(..2)
        .map(|bytes| u16::from_be_bytes([bytes[0], bytes[1]]));
    if answer_id != Some(id) {
        return Err(ProviderError::transient(format!(
            "DNS server {server} answered {what} with a message for another request"
        )));
    }
    Ok(answer)
}

async fn send_and_receive(server: SocketAddr, request: &[u8]) -> std::io::Result<Vec<u8>> {
    let length = u16::try_from(request.len()).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the message is longer than 65535 bytes",
        )
    })?;
    let mut stream = TcpStream::connect(server).await?;
    let mut framed = Vec::with_capacity(request.len() + 2);
    framed.extend_from_slice(&length.to_be_bytes());
    framed.extend_from_slice(request);
    stream.write_all(&framed).await?;
    let length = stream.read_u16().await?;
    let mut answer = vec![0; usize::from(length)];
    stream.read_exact(&mut answer).await?;
    Ok(answer)
}

/// Encodes `message`, for errors naming `what`.
pub(crate) fn encode(message: &Message, what: &str) -> ProviderResult<Vec<u8>> {
    message.to_vec().map_err(|e| {
        ProviderError::permanent(format!("cannot encode the DNS message for {what}: {e}"))
    })
}
