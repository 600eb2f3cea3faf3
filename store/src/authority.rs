//! Accepts etcdctl 3.4's scheme-prefixed HTTP/2 `:authority`.
//!
//! etcdctl 3.4 dials `endpoint status|health|hashkv` with the endpoint string
//! as given, so a user's `--endpoints=http://127.0.0.1:2379` arrives as
//! `:authority: http://127.0.0.1:2379`. Go's gRPC server ignores the header;
//! h2 (under tonic) rejects it as malformed and resets the stream.
//!
//! [`AuthorityFix`] sits between the socket and the HTTP/2 server and reads the
//! client's frames. It decodes the connection's first header block; if its
//! `:authority` carries a scheme, the connection switches to rewrite mode:
//! every header block is decoded (HPACK state mirrors the client's encoder)
//! and re-encoded (state mirrors h2's decoder) with the scheme and any path
//! removed from `:authority`. Otherwise the connection is passed through
//! untouched from then on, at no cost.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const PREFACE_LEN: usize = 24;
const FRAME_HEADER: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// HTTP/2's default SETTINGS_MAX_FRAME_SIZE; re-encoded blocks are split to it.
const MAX_FRAME: usize = 16_384;
/// A header block larger than this is not inspected (passed through as is).
const MAX_BLOCK: usize = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Preface,
    Sniff,
    Rewrite,
    Passthrough,
}

/// A header block being collected across HEADERS + CONTINUATION frames.
struct Pending {
    /// The raw frames, emitted unchanged if the block is not rewritten.
    raw: BytesMut,
    stream_id: u32,
    flags: u8,
    priority: Option<[u8; 5]>,
    block: BytesMut,
}

/// The HTTP/2 client-to-server byte stream, with `:authority` fixed; see the module docs.
pub struct AuthorityFix<S> {
    inner: S,
    mode: Mode,
    input: BytesMut,
    output: BytesMut,
    pending: Option<Pending>,
    decoder: Option<loona_hpack::Decoder<'static>>,
    encoder: Option<loona_hpack::Encoder<'static>>,
    eof: bool,
}

impl<S> AuthorityFix<S> {
    /// Wraps a freshly accepted connection.
    pub fn new(inner: S) -> Self {
        AuthorityFix {
            inner,
            mode: Mode::Preface,
            input: BytesMut::new(),
            output: BytesMut::new(),
            pending: None,
            decoder: Some(loona_hpack::Decoder::new()),
            encoder: None,
            eof: false,
        }
    }

    /// Moves whatever is buffered to the output and stops inspecting.
    fn pass_through(&mut self) {
        if let Some(p) = self.pending.take() {
            self.output.extend_from_slice(&p.raw);
        }
        let rest = self.input.split();
        self.output.extend_from_slice(&rest);
        self.mode = Mode::Passthrough;
        self.decoder = None;
        self.encoder = None;
    }

    /// Turns complete input into output; returns once more input is needed.
    fn process(&mut self) {
        loop {
            match self.mode {
                Mode::Passthrough => {
                    let rest = self.input.split();
                    self.output.extend_from_slice(&rest);
                    return;
                }
                Mode::Preface => {
                    if self.input.len() < PREFACE_LEN {
                        return;
                    }
                    let preface = self.input.split_to(PREFACE_LEN);
                    self.output.extend_from_slice(&preface);
                    self.mode = Mode::Sniff;
                }
                Mode::Sniff | Mode::Rewrite => {
                    if self.input.len() < FRAME_HEADER {
                        return;
                    }
                    let len = (usize::from(self.input[0]) << 16)
                        | (usize::from(self.input[1]) << 8)
                        | usize::from(self.input[2]);
                    if self.input.len() < FRAME_HEADER + len {
                        return;
                    }
                    let frame = self.input.split_to(FRAME_HEADER + len);
                    self.frame(frame);
                }
            }
        }
    }

    fn frame(&mut self, frame: BytesMut) {
        let kind = frame[3];
        let flags = frame[4];
        let stream_id = u32::from_be_bytes([frame[5] & 0x7f, frame[6], frame[7], frame[8]]);
        let payload = &frame[FRAME_HEADER..];
        match (kind, self.pending.as_mut()) {
            (HEADERS, None) => {
                let mut p = payload;
                let mut pad = 0usize;
                if flags & PADDED != 0 {
                    let Some((&n, rest)) = p.split_first() else {
                        return self.give_up(frame);
                    };
                    pad = usize::from(n);
                    p = rest;
                }
                let mut priority = None;
                if flags & PRIORITY != 0 {
                    if p.len() < 5 {
                        return self.give_up(frame);
                    }
                    let mut pr = [0u8; 5];
                    pr.copy_from_slice(&p[..5]);
                    priority = Some(pr);
                    p = &p[5..];
                }
                if pad > p.len() {
                    return self.give_up(frame);
                }
                let block = BytesMut::from(&p[..p.len() - pad]);
                self.pending = Some(Pending {
                    raw: frame.clone(),
                    stream_id,
                    flags,
                    priority,
                    block,
                });
                if flags & END_HEADERS != 0 {
                    self.finish_block();
                }
            }
            (CONTINUATION, Some(p)) if p.stream_id == stream_id => {
                p.raw.extend_from_slice(&frame);
                p.block.extend_from_slice(payload);
                if p.block.len() > MAX_BLOCK {
                    return self.pass_through_with(BytesMut::new());
                }
                if flags & END_HEADERS != 0 {
                    self.finish_block();
                }
            }
            // Anything else in the middle of a header block is a protocol error
            // that h2 reports better than we could: hand it everything.
            (_, Some(_)) => self.give_up(frame),
            (_, None) => self.output.extend_from_slice(&frame),
        }
    }

    fn give_up(&mut self, frame: BytesMut) {
        if self.mode == Mode::Rewrite {
            // The HPACK states can no longer be kept in step; h2 will see the
            // original bytes and fail the connection cleanly.
            self.mode = Mode::Passthrough;
        }
        self.pass_through_with(frame);
    }

    fn pass_through_with(&mut self, frame: BytesMut) {
        if let Some(p) = self.pending.take() {
            self.output.extend_from_slice(&p.raw);
        }
        self.output.extend_from_slice(&frame);
        self.pass_through();
    }

    fn finish_block(&mut self) {
        let Some(p) = self.pending.take() else { return };
        let Some(decoder) = self.decoder.as_mut() else {
            self.output.extend_from_slice(&p.raw);
            return;
        };
        let headers = match decoder.decode(&p.block) {
            Ok(h) => h,
            Err(_) => {
                self.output.extend_from_slice(&p.raw);
                self.mode = Mode::Passthrough;
                return self.pass_through();
            }
        };
        if self.mode == Mode::Sniff {
            let bad = headers
                .iter()
                .any(|(n, v)| n.as_slice() == b":authority" && v.windows(3).any(|w| w == b"://"));
            if !bad {
                self.output.extend_from_slice(&p.raw);
                return self.pass_through();
            }
            self.mode = Mode::Rewrite;
            self.encoder = Some(loona_hpack::Encoder::new());
        }
        let fixed: Vec<(Vec<u8>, Vec<u8>)> = headers
            .into_iter()
            .map(|(n, v)| {
                if n.as_slice() == b":authority" {
                    let v = fix_authority(&v);
                    (n, v)
                } else {
                    (n, v)
                }
            })
            .collect();
        let Some(encoder) = self.encoder.as_mut() else {
            return;
        };
        let block = encoder.encode(fixed.iter().map(|(n, v)| (n.as_slice(), v.as_slice())));
        write_block(&mut self.output, p.stream_id, p.flags, p.priority, &block);
    }
}

/// `http://host:port/path` → `host:port`.
fn fix_authority(v: &[u8]) -> Vec<u8> {
    let after = match v.windows(3).position(|w| w == b"://") {
        Some(i) => &v[i + 3..],
        None => v,
    };
    let end = after.iter().position(|&b| b == b'/').unwrap_or(after.len());
    after[..end].to_vec()
}

/// Emits a header block as HEADERS (+ CONTINUATION) frames.
fn write_block(
    out: &mut BytesMut,
    stream_id: u32,
    flags: u8,
    priority: Option<[u8; 5]>,
    block: &[u8],
) {
    let keep = flags & !(PADDED | END_HEADERS | PRIORITY);
    let mut first = true;
    let mut rest = block;
    loop {
        let room = if first && priority.is_some() {
            MAX_FRAME - 5
        } else {
            MAX_FRAME
        };
        let n = rest.len().min(room);
        let (chunk, tail) = rest.split_at(n);
        let last = tail.is_empty();
        let mut f = if first { keep } else { 0 };
        if last {
            f |= END_HEADERS;
        }
        let kind = if first { HEADERS } else { CONTINUATION };
        let prio = if first { priority } else { None };
        if prio.is_some() {
            f |= PRIORITY;
        }
        let len = chunk.len() + if prio.is_some() { 5 } else { 0 };
        out.put_u8((len >> 16) as u8);
        out.put_u8((len >> 8) as u8);
        out.put_u8(len as u8);
        out.put_u8(kind);
        out.put_u8(f);
        out.put_u32(stream_id & 0x7fff_ffff);
        if let Some(pr) = prio {
            out.put_slice(&pr);
        }
        out.put_slice(chunk);
        if last {
            return;
        }
        first = false;
        rest = tail;
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for AuthorityFix<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if !this.output.is_empty() {
                let n = this.output.len().min(buf.remaining());
                buf.put_slice(&this.output[..n]);
                this.output.advance(n);
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            if this.mode == Mode::Passthrough && this.input.is_empty() {
                return Pin::new(&mut this.inner).poll_read(cx, buf);
            }
            let mut tmp = [0u8; 8192];
            let mut rb = ReadBuf::new(&mut tmp);
            match Pin::new(&mut this.inner).poll_read(cx, &mut rb) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {
                    if rb.filled().is_empty() {
                        // EOF: whatever is left goes out as it came.
                        this.pass_through();
                        this.eof = true;
                        continue;
                    }
                    this.input.extend_from_slice(rb.filled());
                    this.process();
                }
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for AuthorityFix<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl<S: tonic::transport::server::Connected> tonic::transport::server::Connected
    for AuthorityFix<S>
{
    type ConnectInfo = S::ConnectInfo;
    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

    fn headers_frame(stream: u32, block: &[u8]) -> Vec<u8> {
        let mut out = BytesMut::new();
        write_block(&mut out, stream, 0x1, None, block);
        out.to_vec()
    }

    fn settings_frame() -> Vec<u8> {
        vec![0, 0, 0, 0x4, 0, 0, 0, 0, 0]
    }

    async fn run(input: Vec<u8>) -> Vec<u8> {
        // Deliver in small pieces to exercise partial frames.
        let mut builder = tokio_test_reader(input);
        let mut out = Vec::new();
        builder.read_to_end(&mut out).await.expect("read");
        out
    }

    fn tokio_test_reader(input: Vec<u8>) -> AuthorityFix<std::io::Cursor<Vec<u8>>> {
        AuthorityFix::new(std::io::Cursor::new(input))
    }

    /// Splits the output back into frames and decodes every header block.
    fn decode_output(out: &[u8]) -> Vec<Vec<(Vec<u8>, Vec<u8>)>> {
        assert_eq!(&out[..PREFACE_LEN], PREFACE);
        let mut rest = &out[PREFACE_LEN..];
        let mut dec = loona_hpack::Decoder::new();
        let mut blocks = Vec::new();
        while !rest.is_empty() {
            let len =
                (usize::from(rest[0]) << 16) | (usize::from(rest[1]) << 8) | usize::from(rest[2]);
            if rest[3] == HEADERS {
                blocks.push(dec.decode(&rest[9..9 + len]).expect("valid hpack"));
            }
            rest = &rest[9 + len..];
        }
        blocks
    }

    #[tokio::test]
    async fn rewrites_scheme_prefixed_authority_and_keeps_hpack_in_step() {
        let mut enc = loona_hpack::Encoder::new();
        let h1: Vec<(&[u8], &[u8])> = vec![
            (b":method", b"POST"),
            (b":scheme", b"http"),
            (b":path", b"/etcdserverpb.Maintenance/Status"),
            (b":authority", b"http://127.0.0.1:2379"),
            (b"content-type", b"application/grpc"),
        ];
        // The second request reuses dynamic-table entries of the first.
        let mut input = PREFACE.to_vec();
        input.extend(settings_frame());
        input.extend(headers_frame(1, &enc.encode(h1.clone())));
        input.extend(headers_frame(3, &enc.encode(h1.clone())));
        let out = run(input).await;
        let blocks = decode_output(&out);
        assert_eq!(blocks.len(), 2);
        for b in blocks {
            let auth = b
                .iter()
                .find(|(n, _)| n == b":authority")
                .map(|(_, v)| v.clone());
            assert_eq!(auth.as_deref(), Some(&b"127.0.0.1:2379"[..]));
            assert!(b
                .iter()
                .any(|(n, v)| n == b":path" && v == b"/etcdserverpb.Maintenance/Status"));
        }
    }

    #[tokio::test]
    async fn leaves_ordinary_connections_byte_for_byte() {
        let mut enc = loona_hpack::Encoder::new();
        let h: Vec<(&[u8], &[u8])> =
            vec![(b":method", b"POST"), (b":authority", b"127.0.0.1:2379")];
        let mut input = PREFACE.to_vec();
        input.extend(headers_frame(1, &enc.encode(h.clone())));
        input.extend(settings_frame());
        input.extend(headers_frame(3, &enc.encode(h)));
        assert_eq!(run(input.clone()).await, input);
    }

    #[tokio::test]
    async fn garbage_is_passed_on_unchanged() {
        let input = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n plus garbage \x00\xff".to_vec();
        assert_eq!(run(input.clone()).await, input);
        let mut input = PREFACE.to_vec();
        input.extend([0, 0, 3, HEADERS, END_HEADERS, 0, 0, 0, 1, 0xff, 0xff, 0xff]);
        assert_eq!(run(input.clone()).await, input);
    }

    #[test]
    fn authority_forms() {
        assert_eq!(fix_authority(b"http://a:1"), b"a:1");
        assert_eq!(fix_authority(b"https://a:1/x/y"), b"a:1");
        assert_eq!(fix_authority(b"a:1"), b"a:1");
    }
}
