//! `elbe run --config FILE` on the system allocator, for heap profilers that see only `malloc` (heaptrack,
//! valgrind's massif): the `elbe` binary allocates through mimalloc, which they cannot see. How BENCHMARKS.md
//! "Idle connections" found where an idle connection's bytes go:
//!
//! ```sh
//! cargo build --release --example system_alloc
//! TOKIO_WORKER_THREADS=1 heaptrack target/release/examples/system_alloc elbe.toml   # Ctrl-C ends it
//! ```
#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Some(path) = std::env::args_os().nth(1) else {
        anyhow::bail!("usage: system_alloc CONFIG.toml");
    };
    let config = elbe::config::load(std::path::Path::new(&path))?;
    let server = elbe::server::start(config).await?;
    tokio::signal::ctrl_c().await?;
    server.run_until(std::future::ready(())).await;
    Ok(())
}
