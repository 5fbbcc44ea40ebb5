//! The relay's untrusted surface: bytes from an unauthenticated client.
//!
//! The first input byte sets the size of the pieces the rest arrives in, as a
//! network would chop it; the pieces go through a `FrameDecoder` with the
//! client frame limit, and every frame body is decoded as each message a
//! client may send. The rest of the input is also decoded directly as one
//! body, so the message decoders get explored without the fuzzer first having
//! to discover a valid frame header.
//!
//! Besides "no panic, no overflow, no huge allocation" (which libFuzzer and
//! the sanitizer check), it asserts that the decoder never holds a complete
//! frame it has not returned and that anything that decodes re-encodes.

#![no_main]

use deskside_protocol::agent::AgentToRelay;
use deskside_protocol::console::ConsoleToRelay;
use deskside_protocol::frame::HEADER_LEN;
use deskside_protocol::message::{decode_value, encode_value};
use deskside_protocol::version::ClientHello;
use deskside_protocol::{
    decode_message, encode_message, FrameDecoder, Message, MAX_CLIENT_FRAME_LEN,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&piece_size, stream)) = data.split_first() else {
        return;
    };
    let piece_size = usize::from(piece_size).max(1);

    decode_client_body(stream);

    let mut decoder = FrameDecoder::new(MAX_CLIENT_FRAME_LEN);
    for piece in stream.chunks(piece_size) {
        decoder.extend(piece);
        loop {
            match decoder.next_frame() {
                Ok(Some(body)) => {
                    assert!(!body.is_empty() && body.len() <= MAX_CLIENT_FRAME_LEN);
                    decode_client_body(&body);
                }
                Ok(None) => break,
                // The relay closes the connection here; so do we.
                Err(_) => return,
            }
        }
        // What is left is an incomplete frame: at most a header and less than
        // a full body.
        assert!(decoder.buffered() < HEADER_LEN + MAX_CLIENT_FRAME_LEN);
    }
});

/// Decodes `body` as every message a client may send to the relay.
fn decode_client_body(body: &[u8]) {
    check_message::<AgentToRelay>(body);
    check_message::<ConsoleToRelay>(body);
    if let Ok(hello) = decode_value::<ClientHello>(body) {
        let again = encode_value(&hello).expect("a decoded hello re-encodes");
        assert_eq!(decode_value::<ClientHello>(&again).ok(), Some(hello));
    }
}

/// A body that decodes to a sendable message must round-trip. (One carrying a
/// newer peer's nested `Unknown` decodes but is not sendable, by design.)
fn check_message<M: Message + PartialEq + std::fmt::Debug>(body: &[u8]) {
    if let Ok(message) = decode_message::<M>(body) {
        if let Ok(again) = encode_message(&message) {
            assert_eq!(decode_message::<M>(&again).ok(), Some(message));
        }
    }
}
