//! The operator's views of a running client: `status --watch` (on a
//! pseudo-terminal the table is redrawn in place; through a pipe each
//! refresh is one line per subflow; with --json one JSON object per
//! refresh; a UDP stream across the bond shows up as current rates), and
//! `up --http`'s Prometheus metrics. Real controllers in namespaces; run as
//! root.

mod support;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Stdio};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use mptcp_testbed::{udp_stream, Testbed};
use support::*;

/// A watch process, killed on Drop.
struct Watch(Child);

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn watch_args<'a>(name: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec!["status", "--watch", "--interval", "0.2", "--instance", name];
    a.extend(extra);
    a
}

#[test]
fn status_watch_redraws_on_a_terminal_and_streams_lines_and_json_elsewhere() -> Result<()> {
    let bed = Testbed::new(1, 2)?;
    let _conc = start_conc(&bed, &[])?;
    let cl = &bed.clients[0];
    let client = start_client(&bed, 0, &[])?;

    // On a pseudo-terminal: cleared and redrawn, the subflows listed.
    let pty = nix::pty::openpty(None, None)?;
    let child = cl.command(BIN).args(watch_args(&client.name, &[])).stdout(Stdio::from(pty.slave)).spawn()?;
    let mut watch = Watch(child);
    let mut master = std::fs::File::from(pty.master);
    let reader = std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        // Ends with EIO once the watch is killed and the terminal closes.
        while let Ok(n) = master.read(&mut buf) {
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&seen).into_owned()
    });
    std::thread::sleep(Duration::from_millis(1500));
    drop(watch);
    let screen = reader.join().map_err(|_| anyhow::anyhow!("reader panicked"))?;
    let redraws = screen.matches("\x1b[H\x1b[2J").count();
    ensure!(redraws >= 3, "{redraws} redraws in 1.5 s at 0.2 s:\n{screen}");
    ensure!(screen.contains("tx_mbit") && screen.contains("u0") && screen.contains("u1"), "no subflows:\n{screen}");

    // Through a pipe: stamped lines, no terminal codes, a UDP stream's rate.
    let child = cl.command(BIN).args(watch_args(&client.name, &[])).stdout(Stdio::piped()).spawn()?;
    watch = Watch(child);
    let out = watch.0.stdout.take().context("no stdout")?;
    let lines = std::thread::spawn(move || BufReader::new(out).lines().map_while(Result::ok).collect::<Vec<_>>());
    // About 8 Mbit/s for 1.5 s.
    assert_eq!(udp_stream(&bed.server, cl, server(5011), 3000, Duration::from_micros(500))?, (3000, 0));
    drop(watch);
    let lines = lines.join().map_err(|_| anyhow::anyhow!("reader panicked"))?;
    ensure!(!lines.is_empty() && lines.iter().all(|l| !l.contains('\x1b')), "{lines:?}");
    let tx: f64 = lines
        .iter()
        .filter_map(|l| l.split_whitespace().skip_while(|w| *w != "tx_mbit").nth(1)?.parse::<f64>().ok())
        .fold(0.0, f64::max);
    ensure!(tx > 1.0, "the UDP stream never showed as a rate above 1 Mbit/s on a subflow: {lines:#?}");

    // --json: every line one object with the status and the rates.
    let child = cl.command(BIN).args(watch_args(&client.name, &["--json"])).stdout(Stdio::piped()).spawn()?;
    watch = Watch(child);
    let out = watch.0.stdout.take().context("no stdout")?;
    let mut reader = BufReader::new(out);
    for _ in 0..3 {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let v: serde_json::Value = serde_json::from_str(&line).with_context(|| format!("not JSON: {line}"))?;
        ensure!(v["status"]["instance"] == client.name.as_str() && v["rates"].is_object(), "{line}");
    }
    Ok(())
}

/// `GET path` on the client namespace's 127.0.0.1:`port`: (status line, body).
fn http_get(ns: &mptcp_testbed::Netns, port: u16, path: &'static str) -> Result<(String, String)> {
    ns.run(move || {
        use std::io::Write;
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
        let mut reply = String::new();
        s.read_to_string(&mut reply)?;
        let (head, body) = reply.split_once("\r\n\r\n").context("no end of headers")?;
        Ok((head.lines().next().unwrap_or_default().to_string(), body.to_string()))
    })
}

/// `up --http`: a running client serves its status in Prometheus' text
/// format on /metrics (a UDP stream's packets counted on its subflows, the
/// drop counters by reason, the controller up), 404 elsewhere; an address
/// already taken fails another start naming it, with nothing set up.
#[test]
fn a_client_serves_prometheus_metrics() -> Result<()> {
    let bed = Testbed::new(1, 2)?;
    let _conc = start_conc(&bed, &[])?;
    let cl = &bed.clients[0];
    let client = start_client(&bed, 0, &["--http", "127.0.0.1:9477"])?;
    assert_eq!(udp_stream(&bed.server, cl, server(5012), 500, Duration::from_micros(500))?, (500, 0));

    let (head, body) = http_get(cl, 9477, "/metrics")?;
    ensure!(head.starts_with("HTTP/1.1 200"), "{head}\n{body}");
    let value = |l: &str| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    let sent: f64 = body.lines().filter(|l| l.starts_with("mptcp_subflow_tx_packets_total{")).map(value).sum();
    ensure!(sent >= 500.0, "the subflows sent {sent} packets by /metrics, of a 500-datagram stream:\n{body}");
    ensure!(body.contains("path=\"u0\"") && body.contains("path=\"u1\""), "{body}");
    ensure!(body.contains("mptcp_drops_total{") && body.contains("reason=\"forged\""), "{body}");
    let up = body.lines().find(|l| l.starts_with("mptcp_controller_up{")).map(value);
    ensure!(up == Some(1.0), "controller_up {up:?}");
    let (head, _) = http_get(cl, 9477, "/nowhere")?;
    ensure!(head.starts_with("HTTP/1.1 404"), "{head}");

    let other = format!("{}x", client.name);
    let out = cl
        .command(BIN)
        .args(["up", "--instance", &other])
        .args(client_args(&bed, 0, &key_file(), &["--http", "127.0.0.1:9477"]))
        .output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(!out.status.success() && err.contains("cannot serve metrics on 127.0.0.1:9477"), "{err}");
    ensure!(!pins_exist(&other), "a start refused for its metrics address left pins");
    Ok(())
}
