//! `cargo run -p sentinel-guest-build`: builds every plugin of the repository (examples and
//! test guests) and prints the plugin folders.

fn main() {
    let root = sentinel_guest_build::workspace_root();
    match sentinel_guest_build::build(&root) {
        Ok(a) => {
            println!("example plugins: {}", a.plugins_dir.display());
            println!("test guests:     {}", a.hostile_dir.display());
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
}
