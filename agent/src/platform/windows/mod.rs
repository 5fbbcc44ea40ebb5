//! Windows: the OS's name, where state lives, the Windows service, and the
//! UTF-16 strings every Win32 call of the agent takes and returns. Each file
//! holds one concern and all of its `unsafe`, each block with its SAFETY
//! paragraph.

pub mod os_version;
pub mod paths;
pub mod service;
pub mod wide;
