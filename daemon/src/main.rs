//! The `vigie` binary: parse the command line, set up diagnostics on stderr, dispatch.
use std::process::ExitCode;

use anyhow::Result;
use clap::Parser as _;
use vigie::{
    cli::{Cli, Command, ExplainArgs, ReplayArgs},
    explain,
    geoip::GeoIp,
    probe::Transport,
    run,
    source::PolicySource,
    status,
};

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // Colours only for a person at a terminal: journald and log files get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match dispatch(Cli::parse()) {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            eprintln!("vigie: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(cli: Cli) -> Result<i32> {
    match cli.command {
        Command::Run(args) => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?
            .block_on(run::run(args)),
        Command::Check(args) => Ok(check(&PolicySource::resolve(args.policy.as_deref()))),
        Command::Explain(args) => explain(&args),
        Command::Replay(args) => replay(&args),
        Command::Catalog(command) => vigie::catalog_cli::run(command),
        Command::Status(args) => {
            status::print(&status::read(&args.pins.pin_dir)?, args.json)?;
            Ok(0)
        }
        Command::Detach(args) => {
            let removed = status::detach(&args.pin_dir)?;
            eprintln!(
                "vigie: removed {} attachment(s) and the pins in {}",
                removed.len(),
                args.pin_dir.display()
            );
            Ok(0)
        }
    }
}

/// The compiled policy, or None after printing every error of an invalid one.
fn compile_or_report(source: &PolicySource) -> Option<vigie::policy::Compilation> {
    source
        .compile()
        .map_err(|errors| eprintln!("{errors}"))
        .ok()
}

fn explain(args: &ExplainArgs) -> Result<i32> {
    let source = PolicySource::resolve(args.policy.policy.as_deref());
    let Some(compilation) = compile_or_report(&source) else {
        return Ok(run::EXIT_INVALID_CONFIG);
    };
    let question = explain::Question {
        src: args
            .src
            .unwrap_or_else(|| explain::unspecified_source(args.dst)),
        dst: args.dst,
        transport: args.port.unwrap_or(if args.sni.is_some() {
            Transport::Tcp { port: 443 }
        } else {
            Transport::Echo
        }),
        sni: args.sni.clone(),
        dns_name: args.dns_name.clone(),
    };
    let geoip = compilation.geoip.as_deref().map(GeoIp::open).transpose()?;
    let answer = explain::explain(&compilation.policy, geoip.as_ref(), &question)?;
    if args.json {
        println!("{}", serde_json::to_string(&answer)?);
    } else {
        println!("{answer}");
        println!(
            "  policy    {} (digest {})",
            source.describe(),
            &answer.policy_digest[..16]
        );
    }
    Ok(0)
}

fn replay(args: &ReplayArgs) -> Result<i32> {
    let source = PolicySource::resolve(args.policy.policy.as_deref());
    let Some(compilation) = compile_or_report(&source) else {
        return Ok(run::EXIT_INVALID_CONFIG);
    };
    let capture = vigie::replay::capture::read(&args.pcap)?;
    for (linktype, n) in &capture.skipped {
        eprintln!(
            "warning: {}: {n} packets of link type {linktype} skipped (not Ethernet, raw IP, Linux cooked or loopback)",
            args.pcap.display()
        );
    }
    let lan: Vec<ipnet::IpNet> = if args.lan.is_empty() {
        vigie::replay::DEFAULT_LAN
            .iter()
            .map(|n| n.parse().expect("valid default LAN prefix"))
            .collect()
    } else {
        args.lan.clone()
    };
    let report = vigie::replay::replay(&compilation.policy, &capture.frames, &lan)?;
    if args.json {
        for flow in &report.flows {
            println!("{}", serde_json::to_string(flow)?);
        }
    } else {
        println!(
            "{:<46} {:<46} {:<6} {:<12} {:<8} {:<32} {:<9} packets",
            "src", "dst", "proto", "service", "action", "rule", "evidence"
        );
        for f in &report.flows {
            println!(
                "{:<46} {:<46} {:<6} {:<12} {:<8} {:<32} {:<9} {}",
                f.src,
                f.dst,
                f.proto,
                f.service.as_deref().unwrap_or("-"),
                f.action,
                f.rule,
                f.evidence,
                f.packets
            );
        }
    }
    eprintln!(
        "{}: {} packets, {} flows, {} packets without an IP header vigie could place; policy {}",
        args.pcap.display(),
        report.packets,
        report.flows.len(),
        report.unplaced,
        source.describe()
    );
    let seen: Vec<String> = report
        .blind_spots
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(kind, n)| format!("{kind} {n}"))
        .collect();
    eprintln!(
        "learned {} addresses from {} DNS answers, read {} QUIC server names; blind spots: {}",
        report.learning.addresses_learned,
        report.learning.dns_responses,
        report.learning.quic_names_read,
        if seen.is_empty() {
            "none".to_owned()
        } else {
            seen.join(", ")
        }
    );
    Ok(0)
}

fn check(source: &PolicySource) -> i32 {
    match source.compile() {
        Ok(compilation) => {
            let warnings = compilation.warnings_today();
            for warning in &warnings {
                eprintln!("warning: {warning}");
            }
            let p = &compilation.policy;
            let countries = compilation.country_entries;
            println!(
                "{}: valid: {} rules, {} services, {} groups, {} destination prefixes, of which {} \
                 from the countries of rules ({} IPv4, {} IPv6) and {} from the catalog's ASNs \
                 ({} warnings)",
                source.describe(),
                p.rules.len(),
                p.services.len().saturating_sub(1),
                p.groups.len().saturating_sub(1),
                p.destinations_v4.len() + p.destinations_v6.len(),
                countries.v4 + countries.v6,
                countries.v4,
                countries.v6,
                compilation.asn_entries,
                warnings.len()
            );
            0
        }
        Err(errors) => {
            eprintln!("{errors}");
            run::EXIT_INVALID_CONFIG
        }
    }
}
