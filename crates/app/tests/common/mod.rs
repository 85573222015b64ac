//! What the app's tests share: the embedded configuration in a temporary directory.
#![allow(dead_code)]

use coffer_app::Config;

/// The defaults with the SQLite database and the key file in `dir`.
pub fn embedded(dir: &std::path::Path) -> Config {
    let mut c = Config::default();
    c.database.url = format!("sqlite://{}", dir.join("coffer.db").display());
    c.keys.key_file = dir.join("master.json");
    c
}
