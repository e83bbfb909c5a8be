//! `observer watch`: the live event stream, each flow named and classified.

use std::io::{self, BufWriter};

use crate::{
    cli::{CatalogArgs, WatchArgs},
    correlate::Correlator,
    output::Sink,
    session,
};

pub async fn run(args: &WatchArgs) -> anyhow::Result<()> {
    let mut correlator = args.catalog.correlator()?.forgetting_closed_flows();
    let config = args.capture.config(correlator.catalog());
    let mut sink = Sink::new(BufWriter::new(io::stdout().lock()), args.json);
    let result = session::run(
        &config,
        session::after(args.capture.duration()),
        |mut batch| {
            for (ts, observed) in &mut batch {
                correlator.observe(*ts, observed);
            }
            sink.write(&batch).map_err(anyhow::Error::from)
        },
    )
    .await;
    match result {
        Err(e) if is_broken_pipe(&e) => Ok(()),
        other => other,
    }
}

/// `observer watch | head` ends quietly.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.downcast_ref::<io::Error>()
        .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
}

impl CatalogArgs {
    /// The built-in catalog with `--catalog` and `--meta` files applied.
    pub fn load(&self) -> anyhow::Result<crate::catalog::Catalog> {
        Ok(crate::catalog::Catalog::load(&self.catalog, &self.meta)?)
    }

    /// A correlator with this catalog and these sinkhole addresses.
    pub fn correlator(&self) -> anyhow::Result<Correlator> {
        let limits = crate::correlate::Limits {
            min_bps: self.min_throughput * 1000.0,
            long_poll_ns: u64::try_from(self.long_poll.as_nanos()).unwrap_or(u64::MAX),
        };
        Ok(Correlator::new(self.load()?)
            .with_sinkholes(self.sinkhole.clone())
            .with_limits(limits))
    }
}
