//! Windows: the OS's name, where state lives, and the Windows service.
//! Each file holds one concern and all of its `unsafe`, each block with its
//! SAFETY paragraph.

pub mod os_version;
pub mod paths;
pub mod service;
pub mod wide;
