//! Message-size limits of the wire contract.

/// Largest request message any party accepts, encoded (4 MiB). Larger messages are refused
/// by the application (`INVALID_INPUT`, with an audit entry), not cut by the transport.
pub const MAX_MESSAGE: usize = 4 << 20;

/// The transport's own decoding limit (16 MiB), set above [`MAX_MESSAGE`] on every server
/// so that the application sees, refuses and logs an oversized message.
pub const TRANSPORT_MAX_MESSAGE: usize = 16 << 20;

/// The refusal of a message larger than [`MAX_MESSAGE`], if `len` is one.
pub fn check_size(what: &str, len: usize) -> Result<(), crate::Error> {
    if len > MAX_MESSAGE {
        return Err(crate::Error::refused(
            crate::RefusalReason::InvalidInput,
            format!("{what} of {len} bytes exceeds the {MAX_MESSAGE}-byte (4 MiB) message limit"),
        ));
    }
    Ok(())
}
