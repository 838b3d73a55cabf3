//! `vigie catalog list` and `vigie catalog import`, from the command line to the catalog.

use anyhow::{Context as _, Result, bail};

use crate::{
    catalog::{
        import::{self, Format, M365Selection, Provenance},
        listing,
    },
    cli::{CatalogCommand, ImportArgs},
    run::EXIT_INVALID_CONFIG,
    source::PolicySource,
};

/// Runs the subcommand; returns the exit status.
pub fn run(command: CatalogCommand) -> Result<i32> {
    match command {
        CatalogCommand::List { policy, json } => {
            list(&PolicySource::resolve(policy.policy.as_deref()), json)
        }
        CatalogCommand::Import(args) => import(&args),
    }
}

fn list(source: &PolicySource, json: bool) -> Result<i32> {
    let compilation = match source.compile() {
        Ok(compilation) => compilation,
        Err(errors) => {
            eprintln!("{errors}");
            return Ok(EXIT_INVALID_CONFIG);
        }
    };
    let rows = listing::rows(&compilation.catalog, listing::today());
    if json {
        for row in &rows {
            println!("{}", serde_json::to_string(row)?);
        }
    } else {
        print!("{}", listing::Table(&rows));
    }
    Ok(0)
}

fn import(args: &ImportArgs) -> Result<i32> {
    let selection = M365Selection {
        service_area: Some(args.service_area.clone()),
        ids: args.ids.clone(),
    };
    if args.format == Format::Cidr && !args.ids.is_empty() {
        bail!("--ids selects Microsoft 365 endpoint sets: it needs --format m365");
    }
    let list = import::read_list(&args.file, args.format, &selection)?;
    let retrieved = args
        .date
        .clone()
        .unwrap_or_else(|| listing::today().to_string());
    let file_name = args
        .file
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let vendor = args.vendor.clone().unwrap_or_else(|| match args.format {
        Format::Cidr => format!("published prefix list {file_name}"),
        Format::M365 => format!(
            "Microsoft 365 endpoints {file_name}, service area {}{}",
            args.service_area,
            if args.ids.is_empty() {
                String::new()
            } else {
                format!(
                    ", ids {}",
                    args.ids
                        .iter()
                        .map(u32::to_string)
                        .collect::<Vec<_>>()
                        .join(",")
                )
            }
        ),
    });
    let provenance = Provenance {
        vendor: &vendor,
        retrieved: &retrieved,
    };
    match import::import(&args.policy, &args.service, &list, &provenance, args.force) {
        Ok(done) => {
            println!(
                "{}: {} prefixes (was {}: {} added, {} removed), retrieved {retrieved}",
                done.entry.display(),
                done.after,
                done.before,
                done.added,
                done.removed
            );
            Ok(0)
        }
        Err(e @ (import::ImportError::Shrinks { .. } | import::ImportError::Invalid(_))) => {
            eprintln!("vigie: {e}");
            Ok(EXIT_INVALID_CONFIG)
        }
        Err(e) => Err(e).context("catalog import"),
    }
}
