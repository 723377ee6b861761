//! Rebuilds the crate when a migration is added: `sqlx::migrate!` embeds the directory's files
//! but does not tell cargo to watch the directory itself.

fn main() {
    println!("cargo:rerun-if-changed=../../migrations");
}
