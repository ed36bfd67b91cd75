//! A component's standard output and error: the C library's `write`, `writev`,
//! `getenv` and `isatty`, defined here so the linker takes them instead of
//! wasi-libc's. Owns how the bytes Rust's `print!`, `eprint!` and a panic's
//! message write reach the host (`weft:plugin/tracing.write-output`, into the
//! same bounded tails WASI's streams fill); must not touch any other
//! descriptor — none exists, as weft grants a plug-in no files and no sockets,
//! so any other is `EBADF`.
//!
//! Why: the standard library links the C library's stdio for printing and for
//! every panic message (its panic hook reads `RUST_BACKTRACE` and writes to
//! stderr), and through it 19 WASI functions of 13 interfaces — streams,
//! terminals, environment, exit — that every fresh instance has to link
//! whether or not anything is printed: 1.3 µs of a 17 µs plug-in step,
//! measured with `weft bench sandbox`. With these four defined here an SDK
//! component imports only weft's own interfaces. The environment was always
//! empty (weft grants none) and no stream is a terminal, so `getenv` and
//! `isatty` answer as WASI did.
//!
//! Only compiled into a component (`wasm32`); natively the C library's own
//! functions stay.

#![allow(unsafe_code)]

use crate::wit::weft::plugin::tracing::{StandardStream, write_output};
use core::ffi::c_char;

/// wasi-libc's `EBADF` and `ENOTTY`.
const EBADF: i32 = 8;
const ENOTTY: i32 = 59;

unsafe extern "C" {
    /// wasi-libc's `errno`.
    fn __errno_location() -> *mut i32;
}

fn fail(errno: i32) {
    // SAFETY: wasi-libc's `__errno_location` answers a valid pointer to its `errno`.
    unsafe { *__errno_location() = errno };
}

fn stream(fd: i32) -> Option<StandardStream> {
    match fd {
        1 => Some(StandardStream::Stdout),
        2 => Some(StandardStream::Stderr),
        _ => None,
    }
}

/// `write(2)`: stdout and stderr go to the host whole; any other descriptor is
/// `EBADF`.
///
/// # Safety
/// `buf` must point to `len` readable bytes (the C contract).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn write(fd: i32, buf: *const u8, len: usize) -> isize {
    let Some(stream) = stream(fd) else {
        fail(EBADF);
        return -1;
    };
    if len > 0 {
        // SAFETY: the caller passes `len` readable bytes at `buf`.
        write_output(stream, unsafe { core::slice::from_raw_parts(buf, len) });
    }
    len as isize
}

/// wasi-libc's `struct iovec`.
#[repr(C)]
pub struct IoVec {
    base: *const u8,
    len: usize,
}

/// `writev(2)`: each buffer in turn, as [`write`].
///
/// # Safety
/// `iov` must point to `count` `iovec`s, each pointing to its readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn writev(fd: i32, iov: *const IoVec, count: i32) -> isize {
    let Some(stream) = stream(fd) else {
        fail(EBADF);
        return -1;
    };
    let count = usize::try_from(count).unwrap_or(0);
    if count == 0 {
        return 0;
    }
    // SAFETY: the caller passes `count` iovecs at `iov`.
    let buffers = unsafe { core::slice::from_raw_parts(iov, count) };
    let mut written = 0usize;
    for b in buffers.iter().filter(|b| b.len > 0) {
        // SAFETY: each iovec points to `len` readable bytes.
        write_output(stream, unsafe {
            core::slice::from_raw_parts(b.base, b.len)
        });
        written += b.len;
    }
    written as isize
}

/// `getenv(3)`: a plug-in has no environment.
#[unsafe(no_mangle)]
pub extern "C" fn getenv(_name: *const c_char) -> *mut c_char {
    core::ptr::null_mut()
}

/// `isatty(3)`: no stream of a plug-in is a terminal.
#[unsafe(no_mangle)]
pub extern "C" fn isatty(_fd: i32) -> i32 {
    fail(ENOTTY);
    0
}
