//! Token strings as people paste them: `EnrollToken::decode` and
//! `LoginString::decode` on arbitrary UTF-8.
//!
//! Each input is tried as it is and behind both prefixes, so the fuzzer
//! reaches the base64 and postcard layers without first guessing a prefix.
//! A token that decodes must survive re-encoding.

#![no_main]

use deskside_protocol::token::{EnrollToken, LoginString, ENROLL_PREFIX, LOGIN_PREFIX};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for candidate in [
        text.to_owned(),
        format!("{ENROLL_PREFIX}{text}"),
        format!("{LOGIN_PREFIX}{text}"),
    ] {
        if let Ok(token) = EnrollToken::decode(&candidate) {
            assert_eq!(EnrollToken::decode(&token.encode()), Ok(token));
        }
        if let Ok(login) = LoginString::decode(&candidate) {
            assert_eq!(LoginString::decode(&login.encode()), Ok(login));
        }
    }
});
