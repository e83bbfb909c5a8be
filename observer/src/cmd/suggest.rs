//! `observer suggest`: firewall rules (or a `/meta` comparison) from a report or an event log.

use observer::{
    outfile,
    suggest::{self, Action, Input, Options},
};

use crate::cli::SuggestArgs;

pub fn run(args: &SuggestArgs) -> anyhow::Result<()> {
    let input = match (&args.report, &args.events) {
        (Some(path), _) => Input::Report(path.clone()),
        (None, Some(path)) => Input::Events(path.clone()),
        (None, None) => anyhow::bail!("give --report FILE or --events FILE"),
    };
    let mut inputs = args.catalog.inputs();
    inputs.extend(
        args.report
            .iter()
            .chain(&args.events)
            .chain(&args.diff_meta)
            .map(std::path::PathBuf::as_path),
    );
    outfile::refuse_input(&args.out, &inputs)?;
    let action = match &args.diff_meta {
        Some(meta) => Action::DiffMeta(meta.clone()),
        None => Action::Rules {
            format: args.format,
            follow_cnames: args.follow_cnames,
            include_undeclared: args.include_undeclared,
        },
    };
    suggest::run(&Options {
        input,
        action,
        out: args.out.clone(),
        catalog: args.catalog.options(),
    })
}
