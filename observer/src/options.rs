//! The catalog and judgement settings every command shares (`--catalog`, `--meta`,
//! `--sinkhole`, `--min-throughput`, `--long-poll`), as domain values: the command layer makes
//! them once from the command line, the subsystems take them as they are.

use std::{net::IpAddr, path::PathBuf};

use crate::{
    catalog::Catalog,
    pipeline::correlate::{Correlator, Limits},
};

/// Which catalog, and how flows are judged against it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CatalogOptions {
    /// Catalog files applied to the built-in catalog, in order (docs/catalog.md).
    pub catalog_files: Vec<PathBuf>,
    /// Saved `GET /meta` responses whose `domains.actions_inbound` becomes a group.
    pub meta_files: Vec<PathBuf>,
    /// Addresses a DNS filter answers instead of the real one (besides the built-in ones).
    pub sinkholes: Vec<IpAddr>,
    /// The minimum rate and the long poll's wait.
    pub limits: Limits,
}

impl CatalogOptions {
    /// The built-in catalog with the catalog and `/meta` files applied.
    pub fn load(&self) -> anyhow::Result<Catalog> {
        Ok(Catalog::load(&self.catalog_files, &self.meta_files)?)
    }

    /// A correlator with this catalog, these sinkhole addresses and these limits.
    pub fn correlator(&self) -> anyhow::Result<Correlator> {
        Ok(Correlator::new(self.load()?)
            .with_sinkholes(self.sinkholes.clone())
            .with_limits(self.limits))
    }
}
