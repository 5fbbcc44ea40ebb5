//! The MAC of park datagrams ([`deskside_protocol::park`]): HMAC-SHA256
//! under the ticket's key, cut to 16 bytes.

use deskside_protocol::park::MAC_LEN;

/// The MAC function for datagrams authenticated with `key`.
pub fn mac(key: &[u8; 32]) -> impl Fn(&[u8]) -> [u8; MAC_LEN] {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    move |bytes| {
        let tag = ring::hmac::sign(&key, bytes);
        let mut out = [0u8; MAC_LEN];
        out.copy_from_slice(&tag.as_ref()[..MAC_LEN]);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deskside_protocol::park::{Heartbeat, Reply, TICKET_LEN};

    #[test]
    fn datagrams_authenticate_only_under_their_key() {
        let heartbeat = Heartbeat {
            ticket: [3; TICKET_LEN],
            counter: 5,
        };
        let bytes = heartbeat.encode(mac(&[1; 32]));
        assert_eq!(Heartbeat::decode(&bytes, mac(&[1; 32])), Ok(heartbeat));
        assert!(Heartbeat::decode(&bytes, mac(&[2; 32])).is_err());
        let reply = Reply {
            counter: 5,
            flags: 0,
        }
        .encode(mac(&[1; 32]));
        assert!(Reply::decode(&reply, mac(&[1; 32])).is_ok());
        assert!(Reply::decode(&reply, mac(&[2; 32])).is_err());
    }
}
