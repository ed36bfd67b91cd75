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
//! `isatty` answer as WASI did. Should weft ever grant a plug-in a file, this
//! `write` would have to learn descriptors (the host's `add_wasi` says so too).
//!
//! Only compiled into a component (`wasm32-wasip2`, whose wasi-libc these
//! replace); natively the C library's own functions stay.

#![allow(unsafe_code)]

use crate::wit::weft::plugin::tracing::{StandardStream, write_output};
use core::ffi::c_char;

/// wasi-libc's `EBADF`, `EINVAL` and `ENOTTY`.
const EBADF: i32 = 8;
const EINVAL: i32 = 28;
const ENOTTY: i32 = 59;

/// The most one `write-output` call carries (the host refuses more): a longer
/// write is a partial one, which the standard library's `write_all` continues.
const WRITE_LIMIT: usize = 64 << 10;

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

/// `write(2)`: [`writev`] of the one buffer — stdout and stderr go to the
/// host, at most [`WRITE_LIMIT`] bytes a call; any other descriptor is `EBADF`.
///
/// # Safety
/// `buf` must point to `len` readable bytes (the C contract).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn write(fd: i32, buf: *const u8, len: usize) -> isize {
    // SAFETY: one iovec, pointing to the caller's `len` readable bytes.
    unsafe { writev(fd, &IoVec { base: buf, len }, 1) }
}

/// wasi-libc's `struct iovec`.
#[repr(C)]
pub struct IoVec {
    base: *const u8,
    len: usize,
}

/// `writev(2)`: the buffers in turn, as [`write`], up to [`WRITE_LIMIT`] bytes
/// in all (a partial write past it).
///
/// # Safety
/// `iov` must point to `count` `iovec`s, each pointing to its readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn writev(fd: i32, iov: *const IoVec, count: i32) -> isize {
    let Some(stream) = stream(fd) else {
        fail(EBADF);
        return -1;
    };
    let Ok(count) = usize::try_from(count) else {
        fail(EINVAL);
        return -1;
    };
    if count == 0 {
        return 0;
    }
    // SAFETY: the caller passes `count` iovecs at `iov`.
    let buffers = unsafe { core::slice::from_raw_parts(iov, count) };
    let mut written = 0usize;
    for b in buffers {
        let len = b.len.min(WRITE_LIMIT - written);
        if len > 0 {
            // SAFETY: each iovec points to at least `len` readable bytes.
            write_output(stream, unsafe { core::slice::from_raw_parts(b.base, len) });
            written += len;
        }
        if written == WRITE_LIMIT {
            break;
        }
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
