//! Rebuilds the crate when a file of the console changes: `include_dir!` reads them at
//! compile time, and cargo does not otherwise know it does.

fn main() {
    println!("cargo:rerun-if-changed=console");
}
