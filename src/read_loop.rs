//! The one read loop every connection runs (clients, routes, pool connections):
//! read a chunk, decode each complete operation with the connection's parser,
//! execute it, then wait for room downstream. Decoding is kept apart from
//! executing: a `Protocol` says how to do each, the loop does the rest.

use crate::net::{FrameReader, SharedStream};
use crate::proto::ParseError;
use bytes::Bytes;

/// What a kind of connection gives the read loop.
pub(crate) trait Protocol {
    /// One decoded operation, borrowing from the chunk it was read in.
    type Op<'a>;
    /// Why a connection stopped before its peer closed it.
    type Stop;

    /// The connection was closed (by us): read no further.
    fn closed(&self) -> bool;

    /// Bytes arrived (idle time in monitoring).
    fn touched(&self);

    /// How many of the `available` bytes to drop unread before the next decode
    /// (the rest of an operation too large to keep).
    fn skip(&self, _available: usize) -> usize {
        0
    }

    /// The operation at the start of `bytes` and its length.
    fn decode<'a>(&self, bytes: &'a [u8]) -> Result<(Self::Op<'a>, usize), ParseError>;

    /// Runs one operation; `chunk` holds its bytes (messages keep slices of it).
    async fn execute<'op>(&self, op: Self::Op<'op>, chunk: &'op Bytes) -> Result<(), Self::Stop>;

    /// Bytes that are not the protocol: tell the peer, and stop.
    fn malformed(&self, error: ParseError) -> Self::Stop;

    /// After each chunk: wait until the shard has room for more.
    async fn settle(&self);
}

/// Why `run` ended early, with the bytes read past the operation that ended it.
pub struct Stopped<S> {
    pub stop: S,
    pub unread: Bytes,
}

/// Reads and executes operations until the peer closes, the connection is closed,
/// or an operation stops it.
pub(crate) async fn run<P: Protocol>(
    protocol: &P,
    stream: &SharedStream,
    mut reader: FrameReader,
) -> Result<(), Stopped<P::Stop>> {
    while !protocol.closed() {
        let Some(chunk) = reader.next_chunk(stream).await else {
            return Ok(());
        };
        protocol.touched();
        let (consumed, need) = execute_chunk(protocol, &chunk).await?;
        reader.keep_tail(&chunk, consumed, need);
        protocol.settle().await;
    }
    Ok(())
}

/// Executes every complete operation in `chunk`; returns the bytes consumed and the
/// size the next operation needs, when known (0 otherwise).
async fn execute_chunk<P: Protocol>(
    protocol: &P,
    chunk: &Bytes,
) -> Result<(usize, usize), Stopped<P::Stop>> {
    let mut at = 0;
    loop {
        at += protocol.skip(chunk.len() - at);
        if at == chunk.len() || protocol.closed() {
            return Ok((at, 0));
        }
        match protocol.decode(&chunk[at..]) {
            Ok((op, n)) => {
                at += n;
                if let Err(stop) = protocol.execute(op, chunk).await {
                    let unread = chunk.slice(at..);
                    return Err(Stopped { stop, unread });
                }
            }
            Err(ParseError::Incomplete { need }) => return Ok((at, need.unwrap_or(0))),
            Err(error) => {
                let stop = protocol.malformed(error);
                let unread = chunk.slice(at..);
                return Err(Stopped { stop, unread });
            }
        }
    }
}
