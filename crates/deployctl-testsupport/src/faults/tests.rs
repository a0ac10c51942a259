//! The proxy against a small local upstream (threads and std sockets, no runtime).

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::*;

/// A keep-alive HTTP/1.1 upstream: `GET /ok` → 200 `ok`; `POST /echo` → the body;
/// `GET /big` → 200 with 64 KiB; `GET /stream` → three chunks 400 ms apart.
struct Upstream {
    addr: String,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Upstream {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let record = record.clone();
                std::thread::spawn(move || serve(stream, &record));
            }
        });
        Self { addr, seen }
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

fn serve(stream: TcpStream, record: &Mutex<Vec<String>>) {
    let mut w = stream.try_clone().unwrap();
    let mut r = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let line = line.trim_end().to_owned();
        let mut length = 0;
        loop {
            let mut h = String::new();
            r.read_line(&mut h).unwrap();
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; length];
        r.read_exact(&mut body).unwrap();
        record.lock().unwrap().push(line.clone());
        let ok = |w: &mut TcpStream, body: &[u8]| {
            write!(
                w,
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n",
                body.len()
            )
            .unwrap();
            w.write_all(body).unwrap();
        };
        if line.starts_with("GET /ok ") {
            ok(&mut w, b"ok");
        } else if line.starts_with("POST /echo ") {
            ok(&mut w, &body);
        } else if line.starts_with("GET /big ") {
            ok(&mut w, &vec![b'x'; 64 * 1024]);
        } else if line.starts_with("GET /stream ") {
            w.write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
                .unwrap();
            for part in ["one\n", "two\n", "three\n"] {
                write!(w, "{:x}\r\n{part}\r\n", part.len()).unwrap();
                w.flush().unwrap();
                std::thread::sleep(Duration::from_millis(400));
            }
            w.write_all(b"0\r\n\r\n").unwrap();
        } else {
            w.write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
                .unwrap();
        }
    }
}

/// Sends `GET path` with `connection: close`; (status, body) or the read error.
fn get(proxy: &Proxy, path: &str) -> std::io::Result<(u16, Vec<u8>)> {
    request(
        proxy,
        &format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"),
    )
}

fn request(proxy: &Proxy, raw: &str) -> std::io::Result<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect(proxy.addr())?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(raw.as_bytes())?;
    let mut all = Vec::new();
    s.read_to_end(&mut all)?;
    let text = String::from_utf8_lossy(&all).into_owned();
    let (head, _) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let at = text.find("\r\n\r\n").map_or(all.len(), |i| i + 4);
    Ok((status, all[at..].to_vec()))
}

#[test]
fn forwards_and_counts_per_operation() {
    let up = Upstream::start();
    let proxy = Proxy::start(&up.addr).unwrap();
    for _ in 0..3 {
        assert_eq!(get(&proxy, "/ok").unwrap(), (200, b"ok".to_vec()));
    }
    assert_eq!(proxy.count("GET /ok"), 3);
    assert_eq!(proxy.counts().get("http:GET /ok"), Some(&3));
    assert_eq!(up.seen().len(), 3);
    let calls = proxy.calls();
    assert!(
        calls
            .iter()
            .all(|c| c.status == Some(200) && c.took.is_some())
    );
    assert!(calls.windows(2).all(|w| w[0].at <= w[1].at));
}

#[test]
fn the_nth_matching_request_gets_the_fault_and_never_reaches_the_upstream() {
    let up = Upstream::start();
    let proxy = Proxy::start(&up.addr).unwrap();
    proxy.push(Rule::new(
        Match::op("GET /ok"),
        When::Nth(2),
        Effect::Throttle,
    ));
    proxy.push(Rule::new(
        Match::op("GET /ok"),
        When::Nth(3),
        Effect::ServerError(503),
    ));
    let statuses: Vec<u16> = (0..4).map(|_| get(&proxy, "/ok").unwrap().0).collect();
    assert_eq!(statuses, [200, 429, 503, 200]);
    assert_eq!(up.seen().len(), 2);
    assert_eq!(proxy.faulted().len(), 2);
}

#[test]
fn after_matches_only_once_another_request_was_seen() {
    let up = Upstream::start();
    let proxy = Proxy::start(&up.addr).unwrap();
    proxy.push(Rule::new(
        Match::op("GET /ok").after(Match::op("GET /big")),
        When::Nth(1),
        Effect::ServerError(500),
    ));
    assert_eq!(get(&proxy, "/ok").unwrap().0, 200);
    assert_eq!(get(&proxy, "/big").unwrap().0, 200);
    assert_eq!(get(&proxy, "/ok").unwrap().0, 500);
    assert_eq!(get(&proxy, "/ok").unwrap().0, 200);
}

#[test]
fn latency_delays_every_matching_request() {
    let up = Upstream::start();
    let proxy = Proxy::start(&up.addr).unwrap();
    proxy.push(Rule::new(
        Match::Any,
        When::Every,
        Effect::Latency(Duration::from_millis(300)),
    ));
    let t = Instant::now();
    assert_eq!(get(&proxy, "/ok").unwrap().0, 200);
    assert!(t.elapsed() >= Duration::from_millis(300));
}

#[test]
fn a_reset_cuts_the_answer_after_the_upstream_acted() {
    let up = Upstream::start();
    let proxy = Proxy::start(&up.addr).unwrap();
    proxy.push(Rule::new(
        Match::op("GET /big"),
        When::Nth(1),
        Effect::Reset(Cut::MidBody),
    ));
    match get(&proxy, "/big") {
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
        Ok((_, body)) => assert!(body.len() < 64 * 1024, "not cut: {} bytes", body.len()),
    }
    assert_eq!(up.seen().len(), 1, "the request reached the upstream");
    assert_eq!(get(&proxy, "/big").unwrap().1.len(), 64 * 1024);
    assert_eq!(proxy.calls()[0].took, None);
}

#[test]
fn a_stalled_request_waits_for_release_before_reaching_the_upstream() {
    let up = Upstream::start();
    let proxy = Arc::new(Proxy::start(&up.addr).unwrap());
    proxy.push(Rule::new(
        Match::op("POST /echo"),
        When::Nth(1),
        Effect::StallRequest,
    ));
    let p = proxy.clone();
    let client = std::thread::spawn(move || {
        request(
            &p,
            "POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello",
        )
    });
    let stalled = proxy.wait_for_stall(Duration::from_secs(5)).unwrap();
    assert_eq!(stalled.request.operation, "POST /echo");
    std::thread::sleep(Duration::from_millis(200));
    assert!(up.seen().is_empty(), "held before the upstream");
    proxy.release();
    assert_eq!(client.join().unwrap().unwrap(), (200, b"hello".to_vec()));
    assert_eq!(up.seen().len(), 1);
    assert!(proxy.wait_idle(Duration::from_secs(5)));
}

#[test]
fn a_stalled_answer_is_withheld_after_the_upstream_acted_and_can_be_dropped() {
    let up = Upstream::start();
    let proxy = Arc::new(Proxy::start(&up.addr).unwrap());
    proxy.push(Rule::new(
        Match::op("GET /ok"),
        When::Nth(1),
        Effect::StallResponse,
    ));
    let p = proxy.clone();
    let client = std::thread::spawn(move || get(&p, "/ok"));
    proxy.wait_for_stall(Duration::from_secs(5)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while up.seen().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(up.seen().len(), 1, "the upstream acted");
    proxy.drop_stalled();
    let (status, _) = client.join().unwrap().unwrap_or((0, Vec::new()));
    assert_eq!(status, 0, "no answer after a drop");
    assert!(proxy.wait_idle(Duration::from_secs(5)));
    assert_eq!(
        get(&proxy, "/ok").unwrap().0,
        200,
        "later requests go through"
    );
}

#[test]
fn streamed_bodies_are_forwarded_as_they_arrive() {
    let up = Upstream::start();
    let proxy = Proxy::start(&up.addr).unwrap();
    let mut s = TcpStream::connect(proxy.addr()).unwrap();
    let t = Instant::now();
    s.write_all(b"GET /stream HTTP/1.1\r\nhost: x\r\n\r\n")
        .unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    while !line.contains("one") {
        line.clear();
        r.read_line(&mut line).unwrap();
    }
    assert!(
        t.elapsed() < Duration::from_millis(350),
        "the first chunk waited for the rest: {:?}",
        t.elapsed()
    );
    // The rest, then a second request on the same connection.
    while line != "0\r\n" {
        line.clear();
        r.read_line(&mut line).unwrap();
    }
    r.read_line(&mut line).unwrap();
    s.write_all(b"GET /ok HTTP/1.1\r\nhost: x\r\n\r\n").unwrap();
    line.clear();
    r.read_line(&mut line).unwrap();
    assert_eq!(line, "HTTP/1.1 200 OK\r\n");
    assert_eq!(proxy.counts().values().sum::<usize>(), 2);
}

#[test]
fn query_protocol_calls_are_named_by_their_action() {
    let up = Upstream::start();
    let proxy = Proxy::start(&up.addr).unwrap();
    proxy.push(Rule::new(
        Match::op("iam:CreateRole"),
        When::Every,
        Effect::Throttle,
    ));
    let body = "Action=CreateRole&RoleName=r&Version=2010-05-08";
    let raw = format!(
        "POST /echo HTTP/1.1\r\nhost: x\r\nauthorization: AWS4-HMAC-SHA256 Credential=k/20250101/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=0\r\ncontent-type: application/x-www-form-urlencoded\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let (status, answer) = request(&proxy, &raw).unwrap();
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&answer).contains("<Code>Throttling</Code>"));
    assert_eq!(proxy.counts().get("iam:CreateRole"), Some(&1));
}

#[test]
fn a_client_speaking_tls_is_refused_at_once() {
    let up = Upstream::start();
    let proxy = Proxy::start(&up.addr).unwrap();
    let mut s = TcpStream::connect(proxy.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let t = Instant::now();
    s.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]).unwrap();
    let mut buf = [0_u8; 16];
    let n = s.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "closed without an answer");
    assert!(t.elapsed() < Duration::from_secs(2));
    assert!(up.seen().is_empty());
}
