//! Forwarding one client connection: each request read, classified, faulted or forwarded
//! to the upstream, and its answer copied back as it arrives.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use super::http::{self, Framing, Head, Out};
use super::{BUFFERED_BODY, Canned, Cut, Effect, Request, Shared, classify};

struct Upstream {
    r: BufReader<OwnedReadHalf>,
    w: OwnedWriteHalf,
}

async fn connect(addr: &str) -> io::Result<Upstream> {
    let s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    let (r, w) = s.into_split();
    Ok(Upstream {
        r: BufReader::new(r),
        w,
    })
}

/// Serves one client connection: one request at a time, each forwarded over one upstream
/// connection kept while both sides keep theirs.
pub(super) async fn connection(shared: Arc<Shared>, client: TcpStream) {
    let _ = client.set_nodelay(true);
    let (cr, cw) = client.into_split();
    let mut cr = BufReader::new(cr);
    let mut out = Out::new(cw);
    let mut up: Option<Upstream> = None;
    loop {
        let Ok(Some(head)) = http::read_head(&mut cr).await else {
            return;
        };
        let framing = http::request_framing(&head);
        let body = match framing {
            Framing::Empty => Some(Vec::new()),
            Framing::Length(n) if n <= BUFFERED_BODY => match http::read_exact(&mut cr, n).await {
                Ok(b) => Some(b),
                Err(_) => return,
            },
            _ => None,
        };
        let request = classify::classify(&head, body.as_deref());
        let (id, latency, effect) = shared.decide(request.clone());
        let done = serve_one(
            &shared, id, &request, &head, framing, body, latency, effect, &mut cr, &mut out,
            &mut up,
        )
        .await;
        shared.finished(id, matches!(done, Ok(Next::Keep | Next::Close)));
        match done {
            Ok(Next::Keep) => {}
            Ok(Next::Close) | Err(_) => {
                let _ = out.w.shutdown().await;
                return;
            }
            // Dropped with SO_LINGER 0: the client sees RST, not FIN.
            Ok(Next::Reset) => return,
        }
    }
}

/// What happens to the client connection after a request.
enum Next {
    Keep,
    Close,
    Reset,
}

/// Serves one request.
#[allow(clippy::too_many_arguments)]
async fn serve_one(
    shared: &Shared,
    id: u64,
    request: &Request,
    head: &Head,
    framing: Framing,
    body: Option<Vec<u8>>,
    latency: Duration,
    effect: Option<Effect>,
    cr: &mut BufReader<OwnedReadHalf>,
    out: &mut Out<OwnedWriteHalf>,
    up: &mut Option<Upstream>,
) -> io::Result<Next> {
    let keep = |close: bool| if close { Next::Close } else { Next::Keep };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let canned = match &effect {
        Some(Effect::Throttle) => Some(classify::throttle(request)),
        Some(Effect::ServerError(s)) => Some(classify::server_error(request, *s)),
        Some(Effect::Respond(c)) => Some(c.clone()),
        _ => None,
    };
    if let Some(c) = canned {
        // An unread (large or chunked) request body: answer, then close.
        let close = body.is_none() || head.closes();
        out.put(&c.bytes(close)).await?;
        shared.answered(id, c.status);
        return Ok(keep(close));
    }
    if effect == Some(Effect::StallRequest) && !shared.stall(id).await {
        return Ok(Next::Close);
    }

    // Forward the request; a kept upstream connection the upstream has closed meanwhile
    // is replaced once (when the body can be sent again).
    let mut response = None;
    for attempt in 0..2 {
        let fresh = up.is_none();
        if up.is_none() {
            match connect(&shared.upstream).await {
                Ok(u) => *up = Some(u),
                Err(e) => {
                    let c = Canned {
                        status: 502,
                        headers: Vec::new(),
                        body: format!("fault proxy: cannot reach {}: {e}", shared.upstream),
                    };
                    out.put(&c.bytes(true)).await?;
                    shared.answered(id, 502);
                    return Ok(Next::Close);
                }
            }
        }
        let Some(u) = up.as_mut() else { continue };
        let sent = async {
            u.w.write_all(&head.raw).await?;
            match &body {
                Some(b) => u.w.write_all(b).await?,
                None => {
                    let mut to_up = Out::new(&mut u.w);
                    http::copy_body(cr, framing, &mut to_up).await?;
                }
            }
            u.w.flush().await
        }
        .await;
        if sent.is_ok() {
            if effect == Some(Effect::StallResponse) && attempt == 0 && !shared.stall(id).await {
                return Ok(Next::Close);
            }
            if let Ok(Some(h)) = http::read_head(&mut u.r).await {
                response = Some(h);
                break;
            }
        }
        *up = None;
        if fresh || body.is_none() {
            break;
        }
    }
    let Some(mut resp) = response else {
        // The upstream closed without answering: so does the proxy.
        return Ok(Next::Close);
    };
    let Some(u) = up.as_mut() else {
        return Ok(Next::Close);
    };
    // Interim answers (100 Continue) go straight through.
    while (100..200).contains(&resp.status()) && resp.status() != 101 {
        out.put(&resp.raw).await?;
        resp = match http::read_head(&mut u.r).await? {
            Some(h) => h,
            None => return Ok(Next::Close),
        };
    }
    let rframing = http::response_framing(&request.method, &resp);
    if let Some(Effect::Reset(cut)) = &effect {
        let at = match (cut, rframing) {
            (Cut::Bytes(n), _) => *n,
            (Cut::MidBody, Framing::Length(n)) => resp.raw.len() as u64 + n / 2,
            (Cut::MidBody, Framing::Empty) => resp.raw.len() as u64 / 2,
            (Cut::MidBody, _) => resp.raw.len() as u64 + 8,
        };
        out.cut_after(Some(at));
    }
    shared.answered(id, resp.status());
    let mut cut = out.put(&resp.raw).await?;
    if !cut {
        cut = http::copy_body(&mut u.r, rframing, out).await?;
    }
    if cut || matches!(effect, Some(Effect::Reset(_))) {
        // RST, not FIN: the client sees a reset connection.
        let _ = out.w.as_ref().set_zero_linger();
        *up = None;
        return Ok(Next::Reset);
    }
    if resp.closes() || rframing == Framing::UntilClose {
        *up = None;
    }
    Ok(keep(
        head.closes() || resp.closes() || rframing == Framing::UntilClose,
    ))
}
