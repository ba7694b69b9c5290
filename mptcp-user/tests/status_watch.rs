//! The operator's views of a running client: `status --watch` (on a
//! pseudo-terminal the table is redrawn in place; through a pipe each
//! refresh is one line per subflow; with --json one JSON object per
//! refresh; a UDP stream across the bond shows up as current rates), and
//! `up --http`'s Prometheus metrics and status page (in a real headless
//! browser). Real controllers in namespaces; run as root.

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

/// `url` loaded in headless Chromium (Debian's, as `cargo xtask setup`
/// installs it) inside `ns`, its scripts run for a while: the DOM they made.
fn browse(ns: &mptcp_testbed::Netns, url: &str) -> Result<String> {
    let profile = std::env::temp_dir().join(format!("{}-chromium-{}", ns.name, std::process::id()));
    let out = ns
        .command("/usr/bin/chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            // Its timers run ahead: the page polls its data several times.
            "--virtual-time-budget=3000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(url)
        .output()
        .context("cannot run /usr/bin/chromium (`cargo xtask setup` installs it)")?;
    let _ = std::fs::remove_dir_all(&profile);
    ensure!(out.status.success(), "chromium failed: {}", String::from_utf8_lossy(&out.stderr));
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The peak rate the page's chart legend gives `series`, Mbit/s.
fn peak(dom: &str, series: &str) -> Option<f64> {
    let at = dom.find(&format!("data-series=\"{series}\""))?;
    let rest = &dom[at..];
    let v = rest.split("data-peak=\"").nth(1)?.split('"').next()?;
    v.parse().ok()
}

/// `up --http`'s status page on `/`, loaded in a real browser: its script
/// fills in both paths, up, with a UDP stream's rate in the chart, and when
/// a path's link goes down the page shows it down and lists the event.
#[test]
fn the_status_page_shows_live_paths_rates_and_events_in_a_browser() -> Result<()> {
    let bed = Testbed::new(1, 2)?;
    let _conc = start_conc(&bed, &[])?;
    let cl = &bed.clients[0];
    let _client = start_client(&bed, 0, &["--http", "127.0.0.1:9478"])?;
    // Some 2.5 s of datagrams: the sampler reads the status every second.
    assert_eq!(udp_stream(&bed.server, cl, server(5013), 2500, Duration::from_millis(1))?.0, 2500);

    let dom = browse(cl, "http://127.0.0.1:9478/")?;
    for path in ["u0", "u1"] {
        ensure!(dom.contains(&format!("data-path=\"{path}\"")), "no row for {path}:\n{dom}");
    }
    ensure!(dom.matches("class=\"state up\"").count() == 2, "both paths up:\n{dom}");
    let peaks = [peak(&dom, "u0"), peak(&dom, "u1")];
    ensure!(peaks.iter().flatten().sum::<f64>() > 1.0, "the stream shows in the chart: peaks {peaks:?}\n{dom}");
    ensure!(dom.contains("policy auto") && dom.contains("controller pid"), "{dom}");

    Testbed::set_link(cl, &Testbed::client_dev(1), false)?;
    wait_status(&_client, cl, "path u1 down", |s| s.subflow(1).is_some_and(|f| f.state.to_string() == "down"))?;
    std::thread::sleep(Duration::from_millis(1500));
    let dom = browse(cl, "http://127.0.0.1:9478/")?;
    ensure!(dom.contains("path u1 down"), "the event is listed:\n{dom}");
    ensure!(dom.matches("class=\"state down\"").count() == 1, "u1's row says down:\n{dom}");
    Ok(())
}
