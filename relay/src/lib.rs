//! The deskside relay: enrollment, authentication, presence and the store.

pub mod store;
