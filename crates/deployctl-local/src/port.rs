//! Is the host port free, and if not, who holds it?
//!
//! Checked before a container is started, so a taken port is an error naming the holder at
//! once instead of a container that cannot bind and a health check that waits for nothing.
//! The holder is a container publishing the port (asked of the engine) or, on Linux, the
//! process listening on it (`/proc/net/tcp{,6}` gives the socket inode, `/proc/<pid>/fd` the
//! process that owns it).

use bollard::Docker;
use bollard::query_parameters::ListContainersOptionsBuilder;

/// Whether something listens on `port` on this machine's loopback or any address.
pub(crate) fn in_use(port: u16) -> bool {
    ["127.0.0.1", "0.0.0.0"].iter().any(|ip| {
        matches!(
            std::net::TcpListener::bind((*ip, port)),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse
        )
    })
}

/// Who holds `port`, in words: `container web-1`, `process nginx (pid 812)`, or a hint when
/// it cannot be told. `ours` is the container deployctl manages (never reported).
pub(crate) async fn holder(docker: &Docker, port: u16, ours: &str) -> String {
    let filters = std::collections::HashMap::from([("publish".to_owned(), vec![port.to_string()])]);
    let options = ListContainersOptionsBuilder::new()
        .all(false)
        .filters(&filters)
        .build();
    if let Ok(list) = docker.list_containers(Some(options)).await {
        let names: Vec<String> = list
            .iter()
            .flat_map(|c| c.names.clone().unwrap_or_default())
            .map(|n| n.trim_start_matches('/').to_owned())
            .filter(|n| n != ours)
            .collect();
        if !names.is_empty() {
            return format!("container {}", names.join(", "));
        }
    }
    match listening_process(port) {
        Some((pid, name)) => format!("process {name} (pid {pid})"),
        None => format!("another program (find it with `ss -ltnp 'sport = :{port}'`)"),
    }
}

/// The socket inodes listening on `port` (state 0A) in a `/proc/net/tcp`-format table.
fn listening_inodes(table: &str, port: u16) -> Vec<String> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let local = cols.get(1)?;
            let hex_port = local.rsplit(':').next()?;
            let listening = cols.get(3) == Some(&"0A");
            (listening && u16::from_str_radix(hex_port, 16).ok()? == port)
                .then(|| cols.get(9).map(|s| (*s).to_owned()))
                .flatten()
        })
        .collect()
}

/// The process that owns a socket listening on `port`: (pid, command name).
fn listening_process(port: u16) -> Option<(u32, String)> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        if let Ok(text) = std::fs::read_to_string(table) {
            inodes.extend(listening_inodes(&text, port));
        }
    }
    if inodes.is_empty() {
        return None;
    }
    let wanted: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    for proc_entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = proc_entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(proc_entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(link) = std::fs::read_link(fd.path())
                && wanted.iter().any(|w| link.as_os_str() == w.as_str())
            {
                let name = std::fs::read_to_string(proc_entry.path().join("comm"))
                    .map(|c| c.trim().to_owned())
                    .unwrap_or_else(|_| "?".to_owned());
                return Some((pid, name));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::{in_use, listening_inodes, listening_process};

    #[test]
    fn reads_listening_sockets_from_a_proc_table() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0\n   1: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 4343 1 0000000000000000 20 4 30 10 -1\n";
        assert_eq!(listening_inodes(table, 8080), ["4242"]);
        assert!(listening_inodes(table, 8081).is_empty());
    }

    #[test]
    fn finds_this_process_holding_a_port() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        assert!(in_use(port));
        let (pid, _) = listening_process(port).expect("the test's own listener");
        assert_eq!(pid, std::process::id());
        drop(l);
        assert!(!in_use(port));
    }
}
