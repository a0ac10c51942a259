//! The services are real: each answers its own protocol.

#![allow(clippy::unwrap_used)] // helpers of integration tests: a failure here is a test failure

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;

fn exchange(mut stream: impl Read + Write, request: &str) -> String {
    stream.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).unwrap();
    out
}

fn basic(user: &str, password: &str) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let input = format!("{user}:{password}").into_bytes();
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn status(response: &str) -> u16 {
    response.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn dockerd_answers_ping_and_version() {
    let Some(d) = deployctl_testsupport::docker() else {
        return;
    };
    let sock = d.host.strip_prefix("unix://").unwrap();
    let r = exchange(
        UnixStream::connect(sock).unwrap(),
        "GET /_ping HTTP/1.0\r\n\r\n",
    );
    assert_eq!(status(&r), 200, "{r}");
    assert!(r.ends_with("OK"), "{r}");
    let r = exchange(
        UnixStream::connect(sock).unwrap(),
        "GET /version HTTP/1.0\r\n\r\n",
    );
    assert!(r.contains("\"ApiVersion\""), "{r}");
}

#[test]
fn registry_requires_the_right_password() {
    let Some(reg) = deployctl_testsupport::registry() else {
        return;
    };
    let get = |auth: Option<String>| {
        let header = auth
            .map(|a| format!("Authorization: Basic {a}\r\n"))
            .unwrap_or_default();
        status(&exchange(
            TcpStream::connect(&reg.addr).unwrap(),
            &format!("GET /v2/ HTTP/1.0\r\nHost: {}\r\n{header}\r\n", reg.addr),
        ))
    };
    assert_eq!(get(None), 401);
    assert_eq!(get(Some(basic(&reg.user, &reg.password))), 200);
    assert_eq!(get(Some(basic(&reg.user, "wrong-password"))), 401);
    // The ECR stand-in user (moto's ECR token decodes to AWS:123456789012-auth-token).
    assert_eq!(get(Some(basic("AWS", "123456789012-auth-token"))), 200);
}

#[test]
fn moto_answers_sts_get_caller_identity() {
    let Some(aws) = deployctl_testsupport::aws() else {
        return;
    };
    let addr = aws.endpoint.trim_start_matches("http://");
    let body = "Action=GetCallerIdentity&Version=2011-06-15";
    let r = exchange(
        TcpStream::connect(addr).unwrap(),
        &format!(
            "POST / HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
             Authorization: AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/sts/aws4_request, SignedHeaders=host, Signature=0\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    );
    assert_eq!(status(&r), 200, "{r}");
    assert!(r.contains("123456789012"), "{r}");
}

#[test]
fn basic_auth_encoding_is_standard() {
    assert_eq!(
        basic("Aladdin", "open sesame"),
        "QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
    );
    assert_eq!(basic("a", "b"), "YTpi");
}
