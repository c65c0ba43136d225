// `sqlx::migrate!` embeds the migrations at compile time; rebuild when they
// change so a binary never carries stale ones.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
