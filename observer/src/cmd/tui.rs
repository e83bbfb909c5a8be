//! `observer tui`: the live terminal UI, or a recorded event log replayed.

use observer::tui::{self, Feed, Options};

use crate::cli::TuiArgs;

pub fn run(args: &TuiArgs) -> anyhow::Result<()> {
    let catalog = args.catalog.options();
    let feed = match &args.replay {
        Some(path) => Feed::Replay {
            path: path.clone(),
            speed: args.speed,
        },
        None => Feed::Live {
            config: args.capture.config(&catalog.load()?),
            duration: args.capture.duration(),
        },
    };
    tui::run(&Options {
        feed,
        export_dir: args.export_dir.clone(),
        catalog,
    })
}
