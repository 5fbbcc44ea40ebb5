//! The smallest Rust program that needs `ProcessPrng`: std seeds a
//! `RandomState` from it. Built for x86_64-pc-windows-gnu by
//! scripts/wine/check-standin, which runs it in Wine prefixes with and
//! without the bcryptprimitives.dll stand-in. It prints one hash of a fixed
//! value under fresh random keys, so two runs print different numbers only
//! if the generator really produced random bytes.
use std::hash::BuildHasher;

fn main() {
    let keys = std::collections::hash_map::RandomState::new();
    println!("prng-probe: {:016x}", keys.hash_one(0u64));
}
