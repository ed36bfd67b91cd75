//! `wasi:io` (poll and streams) for plug-ins, with every blocking call bounded by the invocation's
//! deadline. The epoch deadline stops a plug-in only while it runs WebAssembly; a plug-in waiting inside a
//! host call (`poll`, `pollable.block`, `blocking-read`, `blocking-write-and-flush`, …) on an HTTP body
//! that never moves would hold its thread and instance forever. Here such a wait ends at the deadline
//! with the same trap the epoch raises, so it is reported as a timeout.
//!
//! Must not change what the calls do otherwise: each delegates to wasmtime-wasi's own implementation
//! (the non-blocking ones directly, the blocking ones under a timer).

use std::future::Future;
use std::time::Instant;
use wasmtime::Trap;
use wasmtime::component::{HasData, Resource, ResourceTable};
use wasmtime_wasi::p2::bindings::io::poll as async_poll;
use wasmtime_wasi::p2::bindings::io::streams::{
    HostInputStream as AsyncInput, HostOutputStream as AsyncOutput,
};
use wasmtime_wasi::p2::bindings::sync::io::{poll, streams};
use wasmtime_wasi::p2::{DynPollable, StreamError, StreamResult};
use wasmtime_wasi::runtime::in_tokio;

/// The resource table and the instant every blocking call must end by.
pub struct DeadlineIo<'a> {
    pub table: &'a mut ResourceTable,
    pub deadline: Instant,
}

/// Links [`DeadlineIo`] in place of wasmtime-wasi's `wasi:io` poll and streams.
pub struct HasDeadlineIo;

impl HasData for HasDeadlineIo {
    type Data<'a> = DeadlineIo<'a>;
}

/// Runs `f` on the ambient tokio runtime until the deadline; past it, traps as the epoch does.
fn bounded<T>(deadline: Instant, f: impl Future<Output = T>) -> Result<T, Trap> {
    in_tokio(async { tokio::time::timeout_at(deadline.into(), f).await })
        .map_err(|_| Trap::Interrupt)
}

fn bounded_stream<T>(
    deadline: Instant,
    f: impl Future<Output = StreamResult<T>>,
) -> StreamResult<T> {
    bounded(deadline, f).unwrap_or_else(|trap| Err(StreamError::Trap(trap.into())))
}

impl poll::Host for DeadlineIo<'_> {
    fn poll(&mut self, pollables: Vec<Resource<DynPollable>>) -> wasmtime::Result<Vec<u32>> {
        bounded(self.deadline, async_poll::Host::poll(self.table, pollables))?
    }
}

impl poll::HostPollable for DeadlineIo<'_> {
    fn ready(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<bool> {
        poll::HostPollable::ready(self.table, pollable)
    }
    fn block(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        bounded(
            self.deadline,
            async_poll::HostPollable::block(self.table, pollable),
        )?
    }
    fn drop(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        poll::HostPollable::drop(self.table, pollable)
    }
}

impl streams::Host for DeadlineIo<'_> {
    fn convert_stream_error(&mut self, err: StreamError) -> wasmtime::Result<streams::StreamError> {
        streams::Host::convert_stream_error(self.table, err)
    }
}

type Output = streams::OutputStream;
type Input = streams::InputStream;

impl streams::HostOutputStream for DeadlineIo<'_> {
    fn drop(&mut self, stream: Resource<Output>) -> wasmtime::Result<()> {
        bounded(self.deadline, AsyncOutput::drop(self.table, stream))?
    }
    fn check_write(&mut self, stream: Resource<Output>) -> StreamResult<u64> {
        streams::HostOutputStream::check_write(self.table, stream)
    }
    fn write(&mut self, stream: Resource<Output>, bytes: Vec<u8>) -> StreamResult<()> {
        streams::HostOutputStream::write(self.table, stream, bytes)
    }
    fn blocking_write_and_flush(
        &mut self,
        stream: Resource<Output>,
        bytes: Vec<u8>,
    ) -> StreamResult<()> {
        bounded_stream(
            self.deadline,
            AsyncOutput::blocking_write_and_flush(self.table, stream, bytes),
        )
    }
    fn blocking_write_zeroes_and_flush(
        &mut self,
        stream: Resource<Output>,
        len: u64,
    ) -> StreamResult<()> {
        bounded_stream(
            self.deadline,
            AsyncOutput::blocking_write_zeroes_and_flush(self.table, stream, len),
        )
    }
    fn subscribe(&mut self, stream: Resource<Output>) -> wasmtime::Result<Resource<DynPollable>> {
        streams::HostOutputStream::subscribe(self.table, stream)
    }
    fn write_zeroes(&mut self, stream: Resource<Output>, len: u64) -> StreamResult<()> {
        streams::HostOutputStream::write_zeroes(self.table, stream, len)
    }
    fn flush(&mut self, stream: Resource<Output>) -> StreamResult<()> {
        streams::HostOutputStream::flush(self.table, stream)
    }
    fn blocking_flush(&mut self, stream: Resource<Output>) -> StreamResult<()> {
        bounded_stream(
            self.deadline,
            AsyncOutput::blocking_flush(self.table, stream),
        )
    }
    fn splice(
        &mut self,
        dst: Resource<Output>,
        src: Resource<Input>,
        len: u64,
    ) -> StreamResult<u64> {
        streams::HostOutputStream::splice(self.table, dst, src, len)
    }
    fn blocking_splice(
        &mut self,
        dst: Resource<Output>,
        src: Resource<Input>,
        len: u64,
    ) -> StreamResult<u64> {
        bounded_stream(
            self.deadline,
            AsyncOutput::blocking_splice(self.table, dst, src, len),
        )
    }
}

impl streams::HostInputStream for DeadlineIo<'_> {
    fn drop(&mut self, stream: Resource<Input>) -> wasmtime::Result<()> {
        bounded(self.deadline, AsyncInput::drop(self.table, stream))?
    }
    fn read(&mut self, stream: Resource<Input>, len: u64) -> StreamResult<Vec<u8>> {
        streams::HostInputStream::read(self.table, stream, len)
    }
    fn blocking_read(&mut self, stream: Resource<Input>, len: u64) -> StreamResult<Vec<u8>> {
        bounded_stream(
            self.deadline,
            AsyncInput::blocking_read(self.table, stream, len),
        )
    }
    fn skip(&mut self, stream: Resource<Input>, len: u64) -> StreamResult<u64> {
        streams::HostInputStream::skip(self.table, stream, len)
    }
    fn blocking_skip(&mut self, stream: Resource<Input>, len: u64) -> StreamResult<u64> {
        bounded_stream(
            self.deadline,
            AsyncInput::blocking_skip(self.table, stream, len),
        )
    }
    fn subscribe(&mut self, stream: Resource<Input>) -> wasmtime::Result<Resource<DynPollable>> {
        streams::HostInputStream::subscribe(self.table, stream)
    }
}
