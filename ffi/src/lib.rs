//! The C interface of kinesis-agg: `include/kinesis_agg.h` and a static or
//! shared library, with no heap.
//!
//! Every function returns a [`kagg_status`] and writes its results through
//! pointers the caller owns; every buffer and table is caller storage whose
//! size the caller chooses. Nothing allocates and no input can make a
//! function panic (every argument is checked, and the library it binds
//! never panics).
//!
//! `unsafe` is what a C ABI requires and nothing else: turning the caller's
//! pointers into slices and references (each checked for NULL first, the
//! lengths being the caller's promise, as in any C API), and keeping the
//! library's aggregator and tag iterator in caller storage of a size and
//! alignment checked at compile time.
#![no_std]
#![deny(missing_docs)]
#![allow(non_camel_case_types)]

// On hosted targets the standard library links in (it brings the panic
// handler a static library needs); the code itself uses `core` only.
#[cfg(not(target_os = "none"))]
extern crate std;

pub(crate) use core::ffi::{c_char, c_int, c_void};
pub(crate) use core::mem::{MaybeUninit, align_of, size_of};
pub(crate) use core::ptr;

pub(crate) use kinesis_agg as ka;

mod read;
mod shards;
mod status;
mod views;
mod write;

pub use read::*;
pub use shards::*;
pub use status::*;
pub use views::*;
pub use write::*;

/// The library's panic handler for bare-metal links (feature
/// `panic-handler`): nothing in this crate panics, so it only loops.
#[cfg(all(feature = "panic-handler", target_os = "none"))]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    loop {
        core::hint::spin_loop();
    }
}
