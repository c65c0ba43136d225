//! `shard-tool`: moves cities between shards and regions online.
//!
//! Not built yet: it only says so, so that the workspace has its final shape.

fn main() {
    eprintln!("shard-tool: not implemented yet (see the resharding issue)");
    std::process::exit(2);
}
