//! vigie-peer: the lab's echo servers and probes (std only).
//!
//! ```text
//! vigie-peer serve [--udp ADDR:PORT]... [--tcp ADDR:PORT]...
//! vigie-peer probe udp|tcp ADDR:PORT [--timeout-ms N]
//! vigie-peer stream --to ADDR:PORT [--to ADDR:PORT]... --count N --first-port P [--interval-us U]
//! ```
//! `serve` binds every address (one thread each), prints `ready` on stdout, and echoes until
//! killed, printing `udp|tcp LOCAL FROM` for each datagram or connection that arrives. `probe` sends one message and prints one line: `passed ...` with exit 0 when the echo
//! came back, `blocked ...` with exit 1 and the reason (timeout, refused, unreachable...).
//! `stream` sends N UDP datagrams, each its own flow: datagram i goes from source port P+i to
//! the i-th target in turn (so the lab can tell, from the port alone, where it went), one every
//! U microseconds; it prints `sent N` at the end. Usage errors exit 2.

use std::io::{ErrorKind, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::ExitCode;
use std::time::{Duration, Instant};

const USAGE: &str = "usage: vigie-peer serve [--udp ADDR:PORT]... [--tcp ADDR:PORT]...\n       \
                     vigie-peer probe udp|tcp ADDR:PORT [--timeout-ms N]\n       \
                     vigie-peer stream --to ADDR:PORT... --count N --first-port P [--interval-us U]";
const DEFAULT_TIMEOUT_MS: u64 = 1000;
/// Large enough for any probe; the echo returns what it read.
const BUFFER: usize = 2048;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("serve") => parse_serve(&args[1..]).map(serve),
        Some("probe") => parse_probe(&args[1..]).map(|p| probe(&p)),
        Some("stream") => parse_stream(&args[1..]).map(|s| stream(&s)),
        _ => Err(USAGE.to_owned()),
    };
    result.unwrap_or_else(|e| {
        eprintln!("vigie-peer: {e}");
        ExitCode::from(2)
    })
}

struct Serve {
    udp: Vec<SocketAddr>,
    tcp: Vec<SocketAddr>,
}

fn parse_addr(s: Option<&String>) -> Result<SocketAddr, String> {
    let s = s.ok_or_else(|| format!("missing ADDR:PORT\n{USAGE}"))?;
    s.parse().map_err(|e| format!("bad address {s:?}: {e}"))
}

fn parse_serve(args: &[String]) -> Result<Serve, String> {
    let mut serve = Serve {
        udp: Vec::new(),
        tcp: Vec::new(),
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--udp" => serve.udp.push(parse_addr(it.next())?),
            "--tcp" => serve.tcp.push(parse_addr(it.next())?),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    if serve.udp.is_empty() && serve.tcp.is_empty() {
        return Err(format!("nothing to serve\n{USAGE}"));
    }
    Ok(serve)
}

fn serve(serve: Serve) -> ExitCode {
    let mut threads = Vec::new();
    for addr in serve.udp {
        match UdpSocket::bind(addr) {
            Ok(sock) => threads.push(std::thread::spawn(move || udp_echo(&sock))),
            Err(e) => return fail(&format!("binding udp {addr}: {e}")),
        }
    }
    for addr in serve.tcp {
        match TcpListener::bind(addr) {
            Ok(listener) => threads.push(std::thread::spawn(move || tcp_accept(&listener))),
            Err(e) => return fail(&format!("binding tcp {addr}: {e}")),
        }
    }
    println!("ready");
    let _ = std::io::stdout().flush();
    for t in threads {
        let _ = t.join();
    }
    ExitCode::SUCCESS
}

fn fail(message: &str) -> ExitCode {
    eprintln!("vigie-peer: {message}");
    ExitCode::FAILURE
}

/// Reports on stdout what reached the server, one line each (`udp LOCAL FROM`), so that the lab
/// can tell "never arrived" from "arrived but the answer was lost".
fn arrived(proto: &str, local: SocketAddr, from: SocketAddr) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{proto} {local} {from}");
    let _ = out.flush();
}

fn udp_echo(sock: &UdpSocket) {
    let mut buf = [0u8; BUFFER];
    loop {
        match sock.recv_from(&mut buf) {
            Ok((n, from)) => {
                if let Ok(local) = sock.local_addr() {
                    arrived("udp", local, from);
                }
                let _ = sock.send_to(&buf[..n], from);
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => {
                eprintln!("vigie-peer: udp receive: {e}");
                return;
            }
        }
    }
}

fn tcp_accept(listener: &TcpListener) {
    for stream in listener.incoming() {
        match stream {
            Ok(s) => {
                if let (Ok(local), Ok(from)) = (s.local_addr(), s.peer_addr()) {
                    arrived("tcp", local, from);
                }
                std::thread::spawn(move || tcp_echo(s));
            }
            Err(e) => eprintln!("vigie-peer: tcp accept: {e}"),
        }
    }
}

fn tcp_echo(mut stream: TcpStream) {
    let mut buf = [0u8; BUFFER];
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 || stream.write_all(&buf[..n]).is_err() {
            return;
        }
    }
}

#[derive(Clone, Copy)]
enum Proto {
    Udp,
    Tcp,
}

struct Probe {
    proto: Proto,
    target: SocketAddr,
    timeout: Duration,
}

fn parse_probe(args: &[String]) -> Result<Probe, String> {
    let proto = match args.first().map(String::as_str) {
        Some("udp") => Proto::Udp,
        Some("tcp") => Proto::Tcp,
        _ => return Err(format!("probe needs udp or tcp\n{USAGE}")),
    };
    let target = parse_addr(args.get(1))?;
    let mut timeout = Duration::from_millis(DEFAULT_TIMEOUT_MS);
    let mut it = args.iter().skip(2);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--timeout-ms" => {
                let v = it.next().ok_or("--timeout-ms needs a value")?;
                let ms: u64 = v
                    .parse()
                    .map_err(|e| format!("bad --timeout-ms {v:?}: {e}"))?;
                timeout = Duration::from_millis(ms.max(1));
            }
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    Ok(Probe {
        proto,
        target,
        timeout,
    })
}

fn probe(p: &Probe) -> ExitCode {
    let name = match p.proto {
        Proto::Udp => "udp",
        Proto::Tcp => "tcp",
    };
    let start = Instant::now();
    let payload = format!("vigie-probe {} {}", std::process::id(), p.target);
    let outcome = match p.proto {
        Proto::Udp => probe_udp(p, payload.as_bytes()),
        Proto::Tcp => probe_tcp(p, payload.as_bytes()),
    };
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    match outcome {
        Ok(()) => {
            println!("passed {name} {} echo after {ms:.1} ms", p.target);
            ExitCode::SUCCESS
        }
        Err(reason) => {
            println!("blocked {name} {} {reason} after {ms:.1} ms", p.target);
            ExitCode::FAILURE
        }
    }
}

fn reason(e: &std::io::Error) -> String {
    match e.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => "timeout".to_owned(),
        ErrorKind::ConnectionRefused => "refused".to_owned(),
        ErrorKind::ConnectionReset => "reset".to_owned(),
        _ => format!("error: {e}"),
    }
}

fn probe_udp(p: &Probe, payload: &[u8]) -> Result<(), String> {
    let any: SocketAddr = if p.target.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    }
    .parse()
    .map_err(|e| format!("{e}"))?;
    let sock = UdpSocket::bind(any).map_err(|e| reason(&e))?;
    sock.connect(p.target).map_err(|e| reason(&e))?;
    let deadline = Instant::now() + p.timeout;
    sock.send(payload).map_err(|e| reason(&e))?;
    let mut buf = [0u8; BUFFER];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err("timeout".to_owned());
        }
        sock.set_read_timeout(Some(left)).map_err(|e| reason(&e))?;
        match sock.recv(&mut buf) {
            Ok(n) if &buf[..n] == payload => return Ok(()),
            // Not our echo: keep waiting.
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(reason(&e)),
        }
    }
}

fn probe_tcp(p: &Probe, payload: &[u8]) -> Result<(), String> {
    let deadline = Instant::now() + p.timeout;
    let mut stream = TcpStream::connect_timeout(&p.target, p.timeout).map_err(|e| reason(&e))?;
    stream.write_all(payload).map_err(|e| reason(&e))?;
    let mut got = Vec::with_capacity(payload.len());
    let mut buf = [0u8; BUFFER];
    while got.len() < payload.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err("timeout".to_owned());
        }
        stream
            .set_read_timeout(Some(left))
            .map_err(|e| reason(&e))?;
        match stream.read(&mut buf) {
            Ok(0) => return Err("closed before the echo".to_owned()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(reason(&e)),
        }
    }
    if got == payload {
        Ok(())
    } else {
        Err("wrong echo".to_owned())
    }
}

struct Stream {
    targets: Vec<SocketAddr>,
    count: u32,
    first_port: u16,
    interval: Duration,
}

fn parse_stream(args: &[String]) -> Result<Stream, String> {
    let mut stream = Stream {
        targets: Vec::new(),
        count: 0,
        first_port: 0,
        interval: Duration::from_micros(1000),
    };
    let number = |v: Option<&String>, flag: &str| -> Result<u64, String> {
        let v = v.ok_or_else(|| format!("{flag} needs a value"))?;
        v.parse().map_err(|e| format!("bad {flag} {v:?}: {e}"))
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--to" => stream.targets.push(parse_addr(it.next())?),
            "--count" => {
                stream.count =
                    u32::try_from(number(it.next(), flag)?).map_err(|e| e.to_string())?;
            }
            "--first-port" => {
                stream.first_port =
                    u16::try_from(number(it.next(), flag)?).map_err(|e| e.to_string())?;
            }
            "--interval-us" => stream.interval = Duration::from_micros(number(it.next(), flag)?),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    let last = u32::from(stream.first_port) + stream.count;
    if stream.targets.is_empty() || stream.count == 0 || stream.first_port == 0 || last > 65_536 {
        return Err(format!(
            "stream needs --to, --count and --first-port, within the port range\n{USAGE}"
        ));
    }
    Ok(stream)
}

/// Each datagram from its own port, so that each is a new flow for the datapath.
fn stream(s: &Stream) -> ExitCode {
    let start = Instant::now();
    for i in 0..s.count {
        let target = s.targets[i as usize % s.targets.len()];
        let local: SocketAddr = if target.is_ipv4() {
            (std::net::Ipv4Addr::UNSPECIFIED, s.first_port + i as u16).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, s.first_port + i as u16).into()
        };
        let sent = UdpSocket::bind(local)
            .and_then(|sock| sock.send_to(format!("vigie-stream {i}").as_bytes(), target));
        if let Err(e) = sent {
            return fail(&format!("datagram {i} from {local} to {target}: {e}"));
        }
        // Paced against the start, so that a slow iteration does not slow the whole stream.
        let due = start + s.interval * (i + 1);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    println!("sent {}", s.count);
    ExitCode::SUCCESS
}
