//! Just enough HTTP/1.1 for a forwarding proxy: message heads, body framing, and copying a
//! body chunk by chunk as it arrives (watches and log streams are never buffered whole).

use std::io;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The largest message head accepted.
const MAX_HEAD: usize = 64 * 1024;

/// A request or response head, parsed, with its bytes as received.
#[derive(Debug, Clone)]
pub(crate) struct Head {
    /// `GET /path HTTP/1.1` or `HTTP/1.1 200 OK`.
    pub line: String,
    /// Header fields in order, names as sent.
    pub headers: Vec<(String, String)>,
    /// The head exactly as received, the empty line included.
    pub raw: Vec<u8>,
}

impl Head {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether header `name` lists `token` (comma-separated, case-insensitive).
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    /// The status of a response head (0 when it does not parse).
    pub fn status(&self) -> u16 {
        self.line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }

    /// Whether the connection ends after this message (HTTP/1.0 without keep-alive, or
    /// `Connection: close`).
    pub fn closes(&self) -> bool {
        let http10 = self.line.contains("HTTP/1.0");
        self.has_token("connection", "close")
            || (http10 && !self.has_token("connection", "keep-alive"))
    }
}

/// Reads a message head; `None` on a clean end of stream before its first byte.
pub(crate) async fn read_head<R: AsyncBufRead + Unpin>(r: &mut R) -> io::Result<Option<Head>> {
    // Not HTTP (a TLS ClientHello starts with 0x16): refuse at once, so that a client that
    // tries TLS first (the Docker engine) falls back to plain HTTP without waiting.
    match r.fill_buf().await?.first() {
        None => return Ok(None),
        Some(b) if !(b.is_ascii_alphabetic() || *b == b'\r' || *b == b'\n') => {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "not HTTP/1.x"));
        }
        Some(_) => {}
    }
    let mut raw = Vec::new();
    loop {
        let start = raw.len();
        let n = r.read_until(b'\n', &mut raw).await?;
        if n == 0 {
            if raw.is_empty() {
                return Ok(None);
            }
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the peer closed the connection inside a message head",
            ));
        }
        let line = &raw[start..];
        if line == b"\r\n" || line == b"\n" {
            if start == 0 {
                // Stray empty lines between messages are allowed (RFC 9112 §2.2).
                raw.clear();
                continue;
            }
            break;
        }
        if raw.len() > MAX_HEAD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "message head too large",
            ));
        }
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let mut lines = text.lines().map(|l| l.trim_end_matches('\r'));
    let line = lines.next().unwrap_or_default().to_owned();
    let headers = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Ok(Some(Head { line, headers, raw }))
}

/// How a message body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body.
    Empty,
    /// `Content-Length`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// A response read until the connection closes.
    UntilClose,
}

fn length(head: &Head) -> Option<u64> {
    head.header("content-length").and_then(|v| v.parse().ok())
}

/// The framing of a request body.
pub(crate) fn request_framing(head: &Head) -> Framing {
    if head.has_token("transfer-encoding", "chunked") {
        Framing::Chunked
    } else {
        match length(head) {
            Some(0) | None => Framing::Empty,
            Some(n) => Framing::Length(n),
        }
    }
}

/// The framing of the response to a `method` request.
pub(crate) fn response_framing(method: &str, head: &Head) -> Framing {
    let status = head.status();
    if method.eq_ignore_ascii_case("HEAD") || (100..200).contains(&status) || status == 204 {
        return Framing::Empty;
    }
    if status == 304 {
        return Framing::Empty;
    }
    if head.has_token("transfer-encoding", "chunked") {
        Framing::Chunked
    } else {
        match length(head) {
            Some(0) => Framing::Empty,
            Some(n) => Framing::Length(n),
            None => Framing::UntilClose,
        }
    }
}

/// A writer that may be told to stop after a number of bytes (to cut a response short).
#[derive(Debug)]
pub(crate) struct Out<W> {
    pub w: W,
    written: u64,
    cut_at: Option<u64>,
}

impl<W: AsyncWrite + Unpin> Out<W> {
    pub fn new(w: W) -> Self {
        Self {
            w,
            written: 0,
            cut_at: None,
        }
    }

    /// From now, write at most `n` more bytes; `None`: no limit.
    pub fn cut_after(&mut self, n: Option<u64>) {
        self.cut_at = n.map(|n| self.written + n);
    }

    /// Writes `b` (flushed); `true` when the cut point was reached.
    pub async fn put(&mut self, b: &[u8]) -> io::Result<bool> {
        let room = self
            .cut_at
            .map_or(u64::MAX, |at| at.saturating_sub(self.written));
        let take = usize::try_from(room).unwrap_or(usize::MAX).min(b.len());
        self.w.write_all(&b[..take]).await?;
        self.w.flush().await?;
        self.written += take as u64;
        Ok(self.cut_at.is_some_and(|at| self.written >= at))
    }
}

/// Reads exactly `n` bytes.
pub(crate) async fn read_exact<R: AsyncBufRead + Unpin>(r: &mut R, n: u64) -> io::Result<Vec<u8>> {
    let mut buf = vec![0_u8; usize::try_from(n).unwrap_or(usize::MAX)];
    r.read_exact(&mut buf).await?;
    Ok(buf)
}

/// Copies up to `n` bytes as they arrive; an early end of stream is an error.
async fn copy_n<R, W>(r: &mut R, mut n: u64, out: &mut Out<W>) -> io::Result<bool>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    while n > 0 {
        let buf = r.fill_buf().await?;
        if buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the peer closed the connection inside a body",
            ));
        }
        let take = usize::try_from(n).unwrap_or(usize::MAX).min(buf.len());
        let chunk = buf[..take].to_vec();
        r.consume(take);
        n -= take as u64;
        if out.put(&chunk).await? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Copies one body with `framing` from `r` to `out`, as it arrives; `true` when `out` was
/// cut short.
pub(crate) async fn copy_body<R, W>(
    r: &mut R,
    framing: Framing,
    out: &mut Out<W>,
) -> io::Result<bool>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    match framing {
        Framing::Empty => Ok(false),
        Framing::Length(n) => copy_n(r, n, out).await,
        Framing::UntilClose => loop {
            let buf = r.fill_buf().await?;
            if buf.is_empty() {
                return Ok(false);
            }
            let chunk = buf.to_vec();
            r.consume(chunk.len());
            if out.put(&chunk).await? {
                return Ok(true);
            }
        },
        Framing::Chunked => loop {
            let mut line = Vec::new();
            if r.read_until(b'\n', &mut line).await? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the peer closed the connection inside a chunked body",
                ));
            }
            if out.put(&line).await? {
                return Ok(true);
            }
            let text = String::from_utf8_lossy(&line);
            let size_text = text.split(';').next().unwrap_or_default().trim();
            let size = u64::from_str_radix(size_text, 16)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size line"))?;
            if size == 0 {
                // Trailer fields, then the empty line.
                loop {
                    let mut t = Vec::new();
                    if r.read_until(b'\n', &mut t).await? == 0 {
                        return Ok(false);
                    }
                    if out.put(&t).await? {
                        return Ok(true);
                    }
                    if t == b"\r\n" || t == b"\n" {
                        return Ok(false);
                    }
                }
            }
            if copy_n(r, size + 2, out).await? {
                return Ok(true);
            }
        },
    }
}
