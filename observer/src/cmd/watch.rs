//! `observer watch`: the live event stream, each flow named and classified.

use std::io::{self, BufWriter};

use observer::{eventlog::Sink, session};

use crate::cli::WatchArgs;

pub async fn run(args: &WatchArgs) -> anyhow::Result<()> {
    let mut correlator = args
        .catalog
        .options()
        .correlator()?
        .forgetting_closed_flows();
    let config = args.capture.config(correlator.catalog());
    let mut sink = Sink::new(BufWriter::new(io::stdout().lock()), args.json);
    session::run(&config, session::after(args.capture.duration()), |batch| {
        for (ts, observed) in batch.iter_mut() {
            correlator.observe(*ts, observed);
        }
        sink.write(&*batch).map_err(anyhow::Error::from)
    })
    .await
}
