//! `observer catalog`: the host-group catalog in effect, as a table or as a TOML catalog file.

use std::io::Write as _;

use crate::cli::CatalogCmdArgs;

pub fn run(args: &CatalogCmdArgs) -> anyhow::Result<()> {
    let catalog = args.catalog.options().load()?;
    let text = if args.toml {
        catalog.to_toml()
    } else {
        catalog.render_text()
    };
    Ok(std::io::stdout().lock().write_all(text.as_bytes())?)
}
