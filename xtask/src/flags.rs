//! A small command-line parser: a subcommand, `--flag`, `--name value`, and positional rest.

use std::str::FromStr;

use anyhow::{Context, Result, bail};

/// The arguments after `cargo xtask`.
pub struct Args(Vec<String>);

impl Args {
    pub fn from_env() -> Self {
        Self(std::env::args().skip(1).collect())
    }

    /// Takes the first argument as the subcommand.
    pub fn subcommand(&mut self) -> Option<String> {
        (!self.0.is_empty()).then(|| self.0.remove(0))
    }

    /// Takes a boolean flag.
    pub fn flag(&mut self, name: &str) -> bool {
        let before = self.0.len();
        self.0.retain(|a| a != name);
        self.0.len() != before
    }

    /// Takes `name value` or `name=value`.
    pub fn value<T: FromStr>(&mut self, name: &str) -> Result<Option<T>>
    where
        T::Err: std::error::Error + Send + Sync + 'static,
    {
        let prefix = format!("{name}=");
        let Some(i) = self
            .0
            .iter()
            .position(|a| a == name || a.starts_with(&prefix))
        else {
            return Ok(None);
        };
        let arg = self.0.remove(i);
        let raw = match arg.strip_prefix(&prefix) {
            Some(v) => v.to_owned(),
            None if i < self.0.len() => self.0.remove(i),
            None => bail!("{name} needs a value"),
        };
        raw.parse()
            .map(Some)
            .with_context(|| format!("bad value for {name}: {raw:?}"))
    }

    /// Takes the remaining positional arguments, refusing unknown flags.
    pub fn rest(&mut self) -> Result<Vec<String>> {
        if let Some(flag) = self.0.iter().find(|a| a.starts_with("--")) {
            bail!("unknown flag {flag:?} (see `cargo xtask help`)");
        }
        Ok(std::mem::take(&mut self.0))
    }

    /// Fails on anything not taken.
    pub fn finish(self) -> Result<()> {
        if let Some(extra) = self.0.first() {
            bail!("unexpected argument {extra:?} (see `cargo xtask help`)");
        }
        Ok(())
    }
}
